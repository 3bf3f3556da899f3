"""Completion log-probs of the batched training pass equal a single-sample forward of the
thinker with its full multimodal inputs, and differ from a pass without the media (what TRL's
GRPOTrainer computes for video/audio prompts)."""

import pytest
import torch
import torch.nn.functional as F
from media_helpers import encode_clips

from emorl.models.adapter import Modality, SamplingParams
from emorl.models.qwen_omni import QwenOmniAdapter


@pytest.fixture(scope="module")
def adapter(tiny_model_dir):
    torch.manual_seed(0)
    return QwenOmniAdapter.from_pretrained(tiny_model_dir)


_prompts = encode_clips


def _reference_logps(model, p, completion, *, media: bool):
    """Independent path: the thinker's own forward (it computes TMRoPE positions itself)."""
    ids = torch.cat([p.input_ids, completion]).unsqueeze(0)
    kw = {}
    if media:
        kw = {k: v for k, v in p.mm.items() if k != "input_features"}
        if "input_features" in p.mm:
            kw["input_features"] = p.mm["input_features"].unsqueeze(0)
            kw["feature_attention_mask"] = torch.ones(1, p.mm["input_features"].shape[-1], dtype=torch.long)
        kw["use_audio_in_video"] = p.modality == Modality.AV
    model.model.rope_deltas = None
    logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), **kw).logits[0].float()
    lp = F.log_softmax(logits[p.length - 1 : p.length - 1 + len(completion)], -1)
    return lp.gather(-1, completion.unsqueeze(-1)).squeeze(-1)


@pytest.mark.parametrize("group_aware", [False, True], ids=["duplicated-rows", "shared-prefix"])
@pytest.mark.parametrize("modality", [Modality.AV, Modality.VIDEO, Modality.AUDIO])
def test_batched_logprobs_equal_single_forward(adapter, clips, modality, group_aware, monkeypatch):
    monkeypatch.setattr(adapter, "group_aware", group_aware)
    prompts = _prompts(adapter, clips, modality)
    assert len({p.length for p in prompts}) > 1  # different prompt lengths -> real padding in the batch
    torch.manual_seed(1)
    comp = adapter.sample_groups(prompts, 2, SamplingParams(max_new_tokens=12))
    rows = [(p, c) for p, cs in zip(prompts, comp.ids) for c in cs]
    assert len({len(c) for _, c in rows}) >= 1
    with torch.no_grad():
        lp, mask, _ = adapter.completion_logprobs([r[0] for r in rows], [r[1] for r in rows])
        for i, (p, c) in enumerate(rows):
            ref = _reference_logps(adapter.model, p, c, media=True)
            assert int(mask[i].sum()) == len(c)
            torch.testing.assert_close(lp[i, : len(c)], ref, rtol=0, atol=1e-5)
            blind = _reference_logps(adapter.model, p, c, media=False)
            assert (lp[i, : len(c)] - blind).abs().max() > 1e-3, "media must change the log-probs"


def test_batch_must_share_modality(adapter, clips):
    a = _prompts(adapter, clips[:1], Modality.AV)[0]
    v = _prompts(adapter, clips[:1], Modality.VIDEO)[0]
    with pytest.raises(ValueError, match="share one modality"):
        adapter.completion_logprobs([a, v], [torch.tensor([5, 6]), torch.tensor([5])])


@pytest.mark.parametrize("group_aware", [False, True], ids=["duplicated-rows", "shared-prefix"])
def test_group_sampling_keeps_each_rows_media(adapter, clips, group_aware, monkeypatch):
    monkeypatch.setattr(adapter, "group_aware", group_aware)
    """Greedy completions of a prompt inside a mixed batch equal its completion alone: rows get
    their own media (unlike num_return_sequences, which scrambles video patches)."""
    prompts = _prompts(adapter, clips, Modality.AV)
    greedy = SamplingParams(max_new_tokens=8, greedy=True)
    together = adapter.sample_groups(prompts, 2, greedy)
    for i, p in enumerate(prompts):
        alone = adapter.sample_groups([p], 1, greedy)
        assert together.ids[i][0].tolist() == alone.ids[0][0].tolist()
        assert together.ids[i][1].tolist() == alone.ids[0][0].tolist()
