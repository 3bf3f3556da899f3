"""EMO-R3's reflective reward with a tiny Qwen2.5-Omni thinker on real mp4 clips: the extra
generation passes run batched over every completion of a step, return per-completion components
of the right shape and range, leave the weights untouched, and flow into the scored rewards and
the trainer's logs."""

import json

import pytest
import torch

from emorl.config import RunConfig
from emorl.data.manifest import Sample
from emorl.models.adapter import SamplingParams
from emorl.models.qwen_omni import QwenOmniAdapter
from emorl.prompting import PromptBuilder
from emorl.recipes.prompts import EMO_R3_FORMAT, PromptSpec
from emorl.recipes.rewards import get_recipe
from emorl.rl.reflection import Reflection, make_reflection
from emorl.rl.rollout import Group, sample_groups, score_groups

pytestmark = pytest.mark.e2e

S1 = "I see lowered brows and a drooping mouth. I hear a low pitch and slow speech."
GOOD = (
    f"<step1>{S1}</step1><step2>A person would feel heavy.</step2><step3>Negative, low arousal.</step3>\\boxed{{sad}}"
)
TEXTS = [
    GOOD,
    f"<step1>{S1}</step1><step2>x</step2>",  # stages 1-2 only: reflected on, no answer
    "<step1>I see a smile.</step1><step2>warm</step2><step3>positive</step3>\\boxed{happy}",  # no audio sentence
    "no stages at all \\boxed{sad}",  # nothing to reflect on
]
COMPONENTS = {"coherence", "grounding", "grounding_video", "grounding_audio"}


def _cfg(tmp_path, grounding="per_modality") -> RunConfig:
    cfg = RunConfig(out=str(tmp_path), seed=3)
    cfg.prompt.recipe = "emo-r3"
    cfg.data.sampling, cfg.data.num_frames, cfg.data.frame_size = "fixed", 8, 56
    cfg.reflection.enabled, cfg.reflection.grounding, cfg.reflection.max_new_tokens = True, grounding, 4
    return cfg


@pytest.fixture(scope="module")
def setup(tiny_model_dir, clips):
    torch.manual_seed(0)
    adapter = QwenOmniAdapter.from_pretrained(tiny_model_dir)
    builder = PromptBuilder(
        adapter, PromptSpec(question="Which emotion?", format=EMO_R3_FORMAT), num_frames=4, frame_size=56
    )
    samples = [
        Sample("a", str(clips[0]), "sad", "dfew", "train"),
        Sample("b", str(clips[1]), "happy", "dfew", "train"),
        Sample("v", str(clips[2]), "angry", "dfew", "train", meta={"modality": "video"}),
    ]  # video-only
    return adapter, builder, samples


def _groups(adapter, builder, samples) -> list[Group]:
    """Group 0: hand-written completions; groups 1-2: completions sampled from the tiny policy."""
    hand = Group(
        samples[0], builder.prompt(samples[0]), [torch.tensor([1])] * len(TEXTS), list(TEXTS), [False] * len(TEXTS)
    )
    sampled = sample_groups(adapter, samples[1:], [builder.prompt(s) for s in samples[1:]], 3, SamplingParams(8))
    return [hand, *sampled]


def test_reflection_components_shapes_and_ranges(setup, tmp_path):
    adapter, builder, samples = setup
    groups = _groups(adapter, builder, samples)
    before = {k: v.clone() for k, v in adapter.model.state_dict().items()}
    reflection = make_reflection(adapter, builder, _cfg(tmp_path))
    out = reflection(groups)
    assert [len(g) for g in out] == [len(g.texts) for g in groups]
    for g_out in out:
        for comps in g_out:
            assert set(comps) == COMPONENTS
            assert all(v in (0.0, 0.5, 1.0) for v in comps.values()), comps
    hand = out[0]
    # nothing to reflect on: coherence 0.5, grounding 0 (no description), per-modality likewise
    assert hand[3] == {"coherence": 0.5, "grounding": 0.0, "grounding_video": 0.0, "grounding_audio": 0.0}
    assert hand[2]["grounding_audio"] == 0.0  # stage 1 says nothing about the voice
    # the passes really ran for completions with stages: the judge answered something
    raw = reflection.last_outputs[0]
    assert all(isinstance(raw[i][k], str) for i in (0, 1) for k in COMPONENTS)
    assert raw[3] == {k: None for k in COMPONENTS}
    # a video-only clip has no audio to check: neutral 0.5, whatever was written
    assert all(c["grounding_audio"] == 0.5 for c in out[2])
    assert set(reflection.last_seconds) == COMPONENTS and reflection.total_seconds > 0
    # no gradients, no weight change, no grad state left behind
    after = adapter.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in adapter.model.parameters())


def test_reflection_components_flow_into_scored_rewards(setup, tmp_path):
    adapter, builder, samples = setup
    groups = _groups(adapter, builder, samples)
    recipe = get_recipe("emo-r3")
    score_groups(groups, recipe, make_reflection(adapter, builder, _cfg(tmp_path)))
    for g in groups:
        assert COMPONENTS | {"accuracy", "format", "structure", "valence_arousal", "overall"} == set(g.rewards)
        assert all(v.shape == (len(g.texts),) for v in g.rewards.values())
        expected = sum(recipe.weights[k] * g.rewards[k] for k in recipe.weights)
        assert torch.allclose(g.rewards["overall"], expected)
    assert groups[0].rewards["structure"].tolist() == [1.0, 0.0, 1.0, 0.0]


def test_joint_and_none_modes(setup):
    adapter, builder, samples = setup
    groups = _groups(adapter, builder, samples)
    joint = Reflection(adapter, builder, grounding="joint", params=SamplingParams(4, 0.6, 0.95), batch_size=2)(groups)
    assert all(set(c) == {"coherence", "grounding"} for g in joint for c in g)
    none = Reflection(adapter, builder, grounding="none", params=SamplingParams(4, 0.6, 0.95))(groups)
    assert all(set(c) == {"coherence"} for g in none for c in g)
    with pytest.raises(ValueError, match="reflection.grounding"):
        Reflection(adapter, builder, grounding="audio")


def test_trainer_logs_reflection_components(tiny_model_dir, clips, tmp_path):
    from emorl.rl.trainer import train_grpo

    torch.manual_seed(0)
    cfg = _cfg(tmp_path, grounding="joint")
    cfg.sampling.max_new_tokens = 6
    g = cfg.grpo
    g.steps, g.prompts_per_step, g.completions_per_prompt, g.micro_batch_rows = 2, 2, 2, 4
    g.lr, g.beta, g.sample_every = 1e-3, 0.0, 0
    adapter = QwenOmniAdapter.from_pretrained(tiny_model_dir)
    builder = PromptBuilder(
        adapter, PromptSpec(question="Which emotion?", format=EMO_R3_FORMAT), num_frames=4, frame_size=56
    )
    samples = [Sample(f"s{i}", str(p), lab, "dfew", "train") for i, (p, lab) in enumerate(zip(clips, ["sad", "happy"]))]
    reflection = make_reflection(adapter, builder, cfg)
    train_grpo(cfg, adapter, builder, samples, tmp_path / "grpo", progress=False, extra_rewards=reflection)
    rows = [json.loads(x) for x in (tmp_path / "grpo" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for row in rows:
        for k in ("coherence", "grounding", "accuracy", "format", "structure", "overall"):
            assert 0.0 <= row[f"reward/{k}"] <= 1.1, (k, row)
    assert reflection.total_seconds > 0


def test_logprob_scoring_on_clips(setup):
    """The log-prob judge on omni clips: one scoring pass per view, expected scores in [0, 1] that
    are not the sampled judge's three values, the candidates' probabilities in the raw answers."""
    adapter, builder, samples = setup
    refl = Reflection(adapter, builder, grounding="per_modality", scoring="logprob", batch_size=2)
    comps, raw = refl.score([samples[0], samples[2]], [GOOD, GOOD])
    for c in comps:
        assert set(c) == COMPONENTS and all(0.0 <= v <= 1.0 for v in c.values())
    assert comps[0]["grounding"] not in (0.0, 0.5, 1.0) and comps[0]["coherence"] not in (0.0, 0.5, 1.0)
    assert set(raw[0]["grounding"]) == {"yes", "no"} and set(raw[0]["coherence"]) == set(samples[0].labels)
    assert comps[1]["grounding_audio"] == 0.5 and raw[1]["grounding_audio"] is None  # video-only: nothing to hear
