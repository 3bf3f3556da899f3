"""Completion log-probs of the batched training pass equal a single-sample pass of the model's own
code with its full multimodal inputs (the model's forward over the prompt, then its cached
forward over the completion, positions from its own rope deltas: what ``generate`` computes), on
every registered family, and differ from a pass without the media (what TRL's GRPOTrainer
computes for video/audio prompts)."""

import pytest
import torch
import torch.nn.functional as F
from family_helpers import FAMILY_MODALITIES
from media_helpers import encode_clips

from emorl.models.adapter import Modality, SamplingParams
from emorl.models.registry import load_adapter

_prompts = encode_clips


@pytest.fixture(scope="module")
def adapter_of(tiny_dir_of):
    cache: dict = {}

    def get(family):
        if family not in cache:
            torch.manual_seed(0)
            cache[family] = load_adapter(tiny_dir_of(family))
        return cache[family]

    return get


def _reference_logps(adapter, p, completion, *, media: bool):
    """Independent path: the model's own forward over the prompt (its towers, media scatter and
    positions), then over the completion with the prompt's cache (positions from its rope deltas)."""
    model = adapter.model
    ids = p.input_ids.unsqueeze(0)
    if media:
        kw = {"input_ids": ids, **adapter.collate([p]), **adapter.generate_kwargs(ids)}
    else:  # the placeholder tokens' own embeddings, no media (a family may refuse placeholders without media)
        kw = {"inputs_embeds": model.get_input_embeddings()(ids)}
    model.model.rope_deltas = None
    first = model(attention_mask=torch.ones_like(ids), use_cache=True, **kw)
    logits = [first.logits[0, -1:]]
    if len(completion) > 1:
        rest = completion[:-1].unsqueeze(0)  # no padding: no mask, positions cache length + k + rope delta
        logits.append(model(input_ids=rest, cache=first.past_key_values, use_cache=True).logits[0])
    lp = F.log_softmax(torch.cat(logits).float(), -1)
    return lp.gather(-1, completion.unsqueeze(-1)).squeeze(-1)


@pytest.mark.parametrize("group_aware", [False, True], ids=["duplicated-rows", "shared-prefix"])
@pytest.mark.parametrize("family, modality", FAMILY_MODALITIES)
def test_batched_logprobs_equal_single_forward(adapter_of, clips, family, modality, group_aware, monkeypatch):
    adapter = adapter_of(family)
    monkeypatch.setattr(adapter, "group_aware", group_aware)
    prompts = _prompts(adapter, clips, Modality(modality))
    assert len({p.length for p in prompts}) > 1  # different prompt lengths -> real padding in the batch
    torch.manual_seed(1)
    comp = adapter.sample_groups(prompts, 2, SamplingParams(max_new_tokens=12))
    rows = [(p, c) for p, cs in zip(prompts, comp.ids) for c in cs]
    groups = [i for i, cs in enumerate(comp.ids) for _ in cs]
    with torch.no_grad():
        lp, mask, _ = adapter.completion_logprobs([r[0] for r in rows], [r[1] for r in rows], groups=groups)
        for i, (p, c) in enumerate(rows):
            ref = _reference_logps(adapter, p, c, media=True)
            assert int(mask[i].sum()) == len(c)
            torch.testing.assert_close(lp[i, : len(c)], ref, rtol=0, atol=1e-5)
            blind = _reference_logps(adapter, p, c, media=False)
            assert (lp[i, : len(c)] - blind).abs().max() > 1e-3, "media must change the log-probs"


def test_positions_continue_from_the_prompts_maximum(adapter_of):
    """Qwen2.5-VL, a long clip (0.8 frames per second: each temporal patch 2.5 s, 5 positions) and no
    question: the video's temporal positions run past the text after it, so the prompt's maximum
    position is not its last one. Generated tokens continue from the maximum (as ``generate`` does):
    the group paths agree with ``generate`` and with the model's own cached forward."""
    import numpy as np

    adapter = adapter_of("qwen2.5-vl")
    frames = np.random.default_rng(0).integers(0, 255, (8, 56, 56, 3), dtype=np.uint8)
    p = adapter.encode(frames, None, "", Modality.VIDEO, fps=0.8, key="long")
    pos = adapter.prompt_positions(p)
    assert pos.max() > pos[:, -1].max()  # the case under test
    greedy = SamplingParams(max_new_tokens=8, greedy=True)
    rows = adapter.sample_groups_rows([p], 2, greedy)
    shared = adapter.sample_groups([p], 2, greedy)
    assert [c.tolist() for c in rows.ids[0]] == [c.tolist() for c in shared.ids[0]]
    c = rows.ids[0][0]
    with torch.no_grad():
        lp_rows, _, _ = adapter.completion_logprobs_rows([p, p], [c, c])
        lp_shared, _, _ = adapter.completion_logprobs([p, p], [c, c], groups=[0, 0])
        ref = _reference_logps(adapter, p, c, media=True)
    torch.testing.assert_close(lp_rows[0, : len(c)], ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(lp_shared[1, : len(c)], ref, rtol=0, atol=1e-5)


def test_batch_must_share_modality_where_the_family_needs_it(adapter_of, clips):
    omni = adapter_of("qwen2.5-omni")
    a = _prompts(omni, clips[:1], Modality.AV)[0]
    v = _prompts(omni, clips[:1], Modality.VIDEO)[0]
    with pytest.raises(ValueError, match="share one modality"):
        omni.completion_logprobs([a, v], [torch.tensor([5, 6]), torch.tensor([5])])
    # a VL model takes video and text rows in one batch: the same log-probs as apart
    vl = adapter_of("qwen2.5-vl")
    v, t = _prompts(vl, clips[:1], Modality.VIDEO)[0], vl.encode_text("Which emotion?", key="t")
    comps = [torch.tensor(vl.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in ("happy", "sad face")]
    with torch.no_grad():
        both, _, _ = vl.completion_logprobs_rows([v, t], comps)
        alone = [vl.completion_logprobs_rows([p], [c])[0][0] for p, c in zip([v, t], comps)]
    for i, c in enumerate(comps):
        torch.testing.assert_close(both[i, : len(c)], alone[i][: len(c)], rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="qwen2.5-vl takes video, image, text prompts, not video\\+audio"):
        vl.encode(None, None, "x", Modality.AV)


@pytest.mark.parametrize("group_aware", [False, True], ids=["duplicated-rows", "shared-prefix"])
@pytest.mark.parametrize("family", ["qwen2.5-omni", "qwen3-vl"])
def test_group_sampling_keeps_each_rows_media(adapter_of, clips, family, group_aware, monkeypatch):
    """Greedy completions of a prompt inside a mixed batch equal its completion alone: rows get
    their own media (unlike num_return_sequences, which scrambles video patches)."""
    adapter = adapter_of(family)
    monkeypatch.setattr(adapter, "group_aware", group_aware)
    prompts = _prompts(adapter, clips, Modality.VIDEO)
    greedy = SamplingParams(max_new_tokens=8, greedy=True)
    together = adapter.sample_groups(prompts, 2, greedy)
    for i, p in enumerate(prompts):
        alone = adapter.sample_groups([p], 1, greedy)
        assert together.ids[i][0].tolist() == alone.ids[0][0].tolist()
        assert together.ids[i][1].tolist() == alone.ids[0][0].tolist()
