"""grpo.dual_clip_c reaches the policy update: with stale log-probs (ratio 5) and negative
advantages, the dual clip caps every token's loss at -A*C and cuts its gradient."""

import math

import pytest
import torch

from emorl.config import RunConfig
from emorl.data.manifest import Sample
from emorl.models.adapter import SamplingParams
from emorl.models.qwen_omni import QwenOmniAdapter
from emorl.prompting import PromptBuilder
from emorl.recipes.prompts import PromptSpec
from emorl.recipes.rewards import get_recipe
from emorl.rl.rollout import rollout
from emorl.rl.trainer import Row, policy_update

pytestmark = pytest.mark.e2e


def test_dual_clip_in_policy_update(tiny_model_dir, clips):
    torch.manual_seed(0)
    adapter = QwenOmniAdapter.from_pretrained(tiny_model_dir)
    builder = PromptBuilder(adapter, PromptSpec(), num_frames=4, frame_size=56)
    samples = [Sample(f"s{i}", str(p), "sad", "dfew", "train") for i, p in enumerate(clips[:2])]
    groups = rollout(
        adapter,
        samples,
        [builder.prompt(s) for s in samples],
        2,
        SamplingParams(max_new_tokens=5),
        get_recipe("r1-omni"),
    )
    for g in groups:
        g.advantages = torch.tensor([-1.0, -0.5])
    rows = [Row(g, j) for g in groups for j in range(2)]
    with torch.no_grad():
        lp, _, _ = adapter.completion_logprobs([r.prompt for r in rows], [r.completion for r in rows], temperature=1.0)
    for i, r in enumerate(rows):
        r.old = lp[i, : len(r.completion)] - math.log(5.0)  # every ratio is 5
    params = [p for p in adapter.model.parameters() if p.requires_grad]
    out = {}
    for c in (0.0, 3.0):
        cfg = RunConfig()
        cfg.grpo.loss_type, cfg.grpo.beta, cfg.grpo.epsilon_low, cfg.grpo.epsilon_high = "dapo", 0.0, 0.2, 0.3
        cfg.grpo.dual_clip_c = c
        for p in params:
            p.grad = None
        stats = policy_update(adapter, rows, cfg, lambda loss: loss.backward(), temperature=1.0)
        grad = sum(float(p.grad.abs().sum()) for p in params if p.grad is not None)
        out[c] = (stats["loss"], grad)
    # A < 0, ratio 5 (beyond 1 + eps_high): the PPO clip keeps the unclipped -A*5; the dual clip caps it at -A*3
    assert out[3.0][0] == pytest.approx(0.6 * out[0.0][0], rel=1e-4) and out[0.0][0] > 0
    assert out[0.0][1] > 0 and out[3.0][1] == 0.0  # capped tokens pass no gradient
    cfg.grpo.dual_clip_c = 0.5
    with pytest.raises(ValueError, match="dual_clip \\(grpo.dual_clip_c\\) must be 0 \\(off\\) or > 1"):
        policy_update(adapter, rows, cfg, lambda loss: loss.backward(), temperature=1.0)
