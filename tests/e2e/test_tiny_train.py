"""Tiny-model end-to-end: SFT then GRPO on real mp4 clips; parameters change and the reward moves."""

import json
import random

import pytest
import torch

from emorl.config import RunConfig
from emorl.data.manifest import Sample
from emorl.models.adapter import Modality
from emorl.models.registry import load_adapter
from emorl.prompting import PromptBuilder
from emorl.recipes.prompts import PromptSpec
from emorl.rl.trainer import BatchPlan, train_grpo
from emorl.sft import train_sft

pytestmark = pytest.mark.e2e


def _cfg(tmp_path) -> RunConfig:
    cfg = RunConfig(out=str(tmp_path))
    cfg.data.sampling, cfg.data.num_frames, cfg.data.frame_size = "fixed", 8, 56
    cfg.sft.epochs, cfg.sft.lr, cfg.sft.samples_per_step, cfg.sft.target = 40, 3e-3, 3, "label"
    cfg.sampling.max_new_tokens = 8
    g = cfg.grpo
    g.steps, g.prompts_per_step, g.completions_per_prompt, g.micro_batch_rows = 12, 3, 8, 12
    g.lr, g.beta, g.sample_every = 2e-3, 0.01, 5
    return cfg


@pytest.mark.timeout(1200)  # 200-282 s measured on a loaded 2-core machine
def test_sft_then_grpo_moves_reward_and_parameters(model_dir, clips, tmp_path):
    """SFT teaches '<answer>X</answer>' with X half 'happy', half 'sad'; GRPO on clips labelled 'sad'
    must then raise the accuracy reward (the policy shifts to the rewarded answer). On every
    family: Qwen3's routed experts, deepstack and fractional positions, the VL models' video-only
    prompts, all through the same group-aware loop."""
    torch.manual_seed(0)
    random.seed(0)
    cfg = _cfg(tmp_path)
    adapter = load_adapter(model_dir)
    modality = Modality.AV if Modality.AV in adapter.modalities else Modality.VIDEO
    builder = PromptBuilder(adapter, PromptSpec(), num_frames=4, frame_size=56, modality=modality)
    sft_samples = [
        Sample(f"c{i}-{lab}", str(p), lab, "dfew", "train") for i, p in enumerate(clips) for lab in ("happy", "sad")
    ]
    before = {k: v.clone() for k, v in adapter.model.state_dict().items()}
    res = train_sft(cfg, adapter, builder, sft_samples, tmp_path / "sft", progress=False)
    assert res["last_loss"] < res["first_loss"] * 0.5

    rl_samples = [Sample(f"r{i}", str(p), "sad", "dfew", "train") for i, p in enumerate(clips)]
    builder = PromptBuilder(adapter, PromptSpec(), num_frames=4, frame_size=56, modality=modality)
    cfg.sampling.temperature = 1.0
    out = train_grpo(cfg, adapter, builder, rl_samples, tmp_path / "grpo", progress=False)
    hist = out["history"]
    first = sum(h["reward/accuracy"] for h in hist[:3]) / 3
    last = sum(h["reward/accuracy"] for h in hist[-3:]) / 3
    assert last > first + 0.15, (first, last)
    after = adapter.model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    llm = _names(adapter, adapter.decoder_layers())
    assert llm and llm <= set(changed), "every LLM layer tensor should have been updated"
    for tower in adapter.towers().values():  # every tower the family has trained too
        assert _names(adapter, [tower]) & set(changed)
    # logs: every reward component and the phases are there
    rows = [json.loads(line) for line in (tmp_path / "grpo" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == cfg.grpo.steps
    for key in (
        "reward/accuracy",
        "reward/format",
        "reward/overall",
        "kl",
        "clip_frac",
        "entropy",
        "time/rollout",
        "time/update",
        "time/reference",
        "completion_len",
        "tokens_per_s",
    ):
        assert key in rows[0], key
    assert (tmp_path / "grpo" / "model" / "config.json").is_file()
    reloaded = load_adapter(tmp_path / "grpo" / "model")
    torch.testing.assert_close(reloaded.model.state_dict()["lm_head.weight"], after["lm_head.weight"])


def test_batch_plan_checks_units():
    plan = BatchPlan(8, 8, 16)
    plan.check()
    assert plan.rows_per_step == 64 and plan.accumulation_steps == 4
    assert "4 accumulation steps" in plan.describe()
    with pytest.raises(ValueError, match="divisible by grpo.micro_batch_rows"):
        BatchPlan(3, 8, 16).check()
    with pytest.raises(ValueError, match="at least two"):
        BatchPlan(3, 1, 3).check()


def test_frozen_towers_stay_frozen(tiny_model_dir, clips, tmp_path, monkeypatch):
    """Frozen encoders with gradient checkpointing and the encoder cache: the LLM trains, the
    towers do not change."""
    from emorl.recipes import rewards

    monkeypatch.setitem(
        rewards.RECIPES, "judge-test", rewards.RewardRecipe("tags", {"accuracy": 1.0, "format": 1.0, "judge": 1.0})
    )
    cfg = _cfg(tmp_path)
    cfg.prompt.recipe = "judge-test"
    cfg.model.freeze_vision = cfg.model.freeze_audio = True
    cfg.grpo.gradient_checkpointing = True
    cfg.grpo.steps, cfg.grpo.beta = 2, 0.0
    adapter = load_adapter(tiny_model_dir)
    before = {k: v.clone() for k, v in adapter.model.state_dict().items()}
    builder = PromptBuilder(adapter, PromptSpec(), num_frames=4, frame_size=56)
    samples = [Sample(f"r{i}", str(p), "sad", "dfew", "train") for i, p in enumerate(clips)]
    judge = lambda groups: [[{"judge": (sum(map(ord, t)) % 7) / 6} for t in g.texts] for g in groups]
    train_grpo(cfg, adapter, builder, samples, tmp_path / "g", progress=False, extra_rewards=judge)
    after = adapter.model.state_dict()
    towers = _names(adapter, adapter.towers().values())
    assert towers and all(torch.equal(before[k], after[k]) for k in towers)
    assert any(not torch.equal(before[k], after[k]) for k in _names(adapter, adapter.decoder_layers()))


def _names(adapter, modules) -> set[str]:
    """State-dict names of the parameters of ``modules`` (parts of the adapter's model)."""
    ids = {id(p) for m in modules for p in m.parameters()}
    return {n for n, p in adapter.model.named_parameters() if id(p) in ids}
