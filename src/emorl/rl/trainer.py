"""The GRPO loop, owned by emorl (no framework trainer): one function whose phases are named and
timed — rollout, reward, advantage, reference, update — on accelerate.

Per step: ``prompts_per_step`` clips, ``completions_per_prompt`` (G) samples each, reward
components, group-normalised advantages, clipped policy-gradient loss with a k3 KL to a frozen
reference, one optimizer step. Every log-prob pass (generation, reference, policy) receives the
clip's video and audio through the adapter; with one update per rollout the old policy equals the
current one, so its log-probs are the detached policy log-probs of the same pass.
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from emorl.config import RunConfig
from emorl.data.loader import PromptBuilder
from emorl.data.manifest import Sample
from emorl.models.adapter import OmniAdapter, SamplingParams
from emorl.recipes.rewards import get_recipe
from emorl.rl.grpo import group_advantages, policy_loss
from emorl.rl.rollout import Group, rollout
from emorl.train_utils import JsonlLogger, PhaseTimer, chunks, freeze_towers, make_optimizer, save_model_atomic


@dataclass
class BatchPlan:
    """Batch semantics with units, checked at start-up."""

    prompts_per_step: int
    completions_per_prompt: int
    micro_batch_rows: int

    @property
    def rows_per_step(self) -> int:
        return self.prompts_per_step * self.completions_per_prompt

    @property
    def accumulation_steps(self) -> int:
        return -(-self.rows_per_step // self.micro_batch_rows)

    def check(self) -> None:
        for name in ("prompts_per_step", "completions_per_prompt", "micro_batch_rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"grpo.{name} must be >= 1, got {getattr(self, name)}")
        if self.completions_per_prompt < 2:
            raise ValueError("grpo.completions_per_prompt must be >= 2: group advantages need at least two samples")
        if self.rows_per_step % self.micro_batch_rows:
            raise ValueError(
                f"rows per step ({self.prompts_per_step} prompts x {self.completions_per_prompt} completions = "
                f"{self.rows_per_step}) must be divisible by grpo.micro_batch_rows ({self.micro_batch_rows})")

    def describe(self) -> str:
        return (f"{self.prompts_per_step} prompts x {self.completions_per_prompt} completions = {self.rows_per_step} "
                f"rows/step; micro-batch {self.micro_batch_rows} rows -> {self.accumulation_steps} accumulation steps")


def _rows(groups: list[Group]):
    """Flatten groups into rows (prompt, completion, advantage), bucketed by modality."""
    rows = [(g.prompt, c, g.advantages[j]) for g in groups for j, c in enumerate(g.completions)]
    rows.sort(key=lambda r: r[0].modality.value)  # stable: keeps group order within a modality
    return rows


def _logprob_batches(adapter, rows, size, temperature, with_grad, with_entropy=False):
    for mb in chunks(rows, size):
        mods = {r[0].modality for r in mb}
        parts = [list(filter(lambda r, m=m: r[0].modality == m, mb)) for m in mods] if len(mods) > 1 else [mb]
        for part in parts:
            ctx = torch.enable_grad() if with_grad else torch.no_grad()
            with ctx:
                yield part, adapter.completion_logprobs([r[0] for r in part], [r[1] for r in part],
                                                        temperature=temperature, with_entropy=with_entropy)


def train_grpo(cfg: RunConfig, adapter: OmniAdapter, builder: PromptBuilder, samples: list[Sample], out: Path,
               *, progress: bool = True) -> dict:
    """Run ``cfg.grpo.steps`` GRPO steps on ``samples``; writes ``out/metrics.jsonl``,
    ``out/samples.jsonl`` and the final model to ``out/model``. Returns a summary."""
    from accelerate import Accelerator

    g = cfg.grpo
    plan = BatchPlan(g.prompts_per_step, g.completions_per_prompt, g.micro_batch_rows)
    plan.check()
    recipe = get_recipe(cfg.prompt.recipe)
    accelerator = Accelerator(cpu=cfg.model.device == "cpu")
    model = adapter.model
    freeze_towers(model, vision=cfg.model.freeze_vision, audio=cfg.model.freeze_audio)
    opt, sched = make_optimizer(model, g.lr, g.weight_decay, g.steps, g.warmup_steps, "linear")
    model, opt = accelerator.prepare(model, opt)
    ref = None
    if g.beta != 0.0:
        ref = copy.copy(adapter)  # same processor, frozen copy of the initial weights
        ref.model = copy.deepcopy(accelerator.unwrap_model(model)).eval().requires_grad_(False)
    params = SamplingParams(cfg.sampling.max_new_tokens, cfg.sampling.temperature, cfg.sampling.top_p,
                            cfg.sampling.top_k)
    out.mkdir(parents=True, exist_ok=True)
    log = JsonlLogger(out / "metrics.jsonl")
    sample_log = JsonlLogger(out / "samples.jsonl")
    rng = random.Random(cfg.seed)
    order: list[int] = []
    print(f"[grpo] {plan.describe()}; {g.steps} steps; loss {g.loss_type}, beta {g.beta}, lr {g.lr}")
    history = []
    bar = tqdm(range(g.steps), desc="grpo", disable=not progress, dynamic_ncols=True)
    for step in bar:
        timer = PhaseTimer()
        t0 = time.perf_counter()
        if len(order) < plan.prompts_per_step:
            perm = list(range(len(samples)))
            rng.shuffle(perm)
            order += perm
        batch = [samples[i] for i in order[: plan.prompts_per_step]]
        del order[: plan.prompts_per_step]
        with timer("encode"):
            prompts = [builder.prompt(s) for s in batch]
        model.eval()
        with timer("rollout"):
            groups = rollout(adapter, batch, prompts, plan.completions_per_prompt, params, recipe)
        with timer("advantage"):
            rewards = torch.stack([grp.rewards["overall"] for grp in groups])  # (N, G)
            adv = group_advantages(rewards, g.advantage_scale, g.advantage_eps)
            for grp, a in zip(groups, adv):
                grp.advantages = a
        rows = _rows(groups)
        n_tokens = sum(len(r[1]) for r in rows)
        max_len = max(len(r[1]) for r in rows)
        ref_logps: dict[int, torch.Tensor] = {}
        if ref is not None:
            with timer("reference"):
                k = 0
                for part, (lp, _, _) in _logprob_batches(ref, rows, plan.micro_batch_rows, params.temperature, False):
                    for i in range(len(part)):
                        ref_logps[k + i] = lp[i]
                    k += len(part)
        model.train()
        stats = {"loss": 0.0, "kl": 0.0, "clip_frac": 0.0, "entropy": 0.0}
        with timer("update"):
            k = 0
            for part, (lp, mask, ent) in _logprob_batches(adapter, rows, plan.micro_batch_rows, params.temperature,
                                                          True, with_entropy=True):
                a = torch.stack([r[2] for r in part]).to(lp.device)
                rlp = torch.stack([ref_logps[k + i] for i in range(len(part))]) if ref is not None else None
                lo = policy_loss(lp, lp.detach(), a, mask, loss_type=g.loss_type, eps_low=g.epsilon_low,
                                 eps_high=g.epsilon_high, ref_logp=rlp, beta=g.beta, kl_kind=g.kl_estimator,
                                 max_len=cfg.sampling.max_new_tokens, norm_rows=len(rows), norm_tokens=n_tokens)
                accelerator.backward(lo.loss)
                w = len(part) / len(rows)
                stats["loss"] += float(lo.loss.detach())
                stats["kl"] += lo.kl * w
                stats["clip_frac"] += lo.clip_frac * w
                stats["entropy"] += float((ent * mask).sum() / mask.sum().clamp(min=1)) * w
                k += len(part)
            grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), g.max_grad_norm))
            if not torch.isfinite(torch.tensor(grad_norm)):
                opt.zero_grad(set_to_none=True)
                print(f"[grpo] step {step}: non-finite gradient norm, update skipped")
            else:
                opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        row = {"step": step + 1, **{k: round(v, 6) for k, v in stats.items()}, "grad_norm": grad_norm,
               "lr": sched.get_last_lr()[0], "completion_len": n_tokens / len(rows), "max_len": max_len,
               "truncated_frac": sum(sum(grp.truncated) for grp in groups) / len(rows),
               "reward_std_in_group": float(rewards.std(dim=1).mean()),
               "zero_adv_groups": int((rewards.std(dim=1) == 0).sum()),
               "tokens_per_s": n_tokens / max(timer.seconds.get("rollout", 1e-9), 1e-9),
               "step_s": dt, **{f"time/{k}": v for k, v in timer.seconds.items()}}
        for name in groups[0].rewards:
            vals = torch.cat([grp.rewards[name] for grp in groups])
            row[f"reward/{name}"] = float(vals.mean())
            row[f"reward/{name}_std"] = float(vals.std()) if len(vals) > 1 else 0.0
        if builder.substitutions:
            row["media_substitutions"] = dict(builder.substitutions)
        log.log(row)
        history.append(row)
        if g.sample_every and (step % g.sample_every == 0 or step == g.steps - 1):
            grp = groups[0]
            sample_log.log({"step": step + 1, "id": grp.sample.id, "label": grp.sample.label,
                            "completions": [{"text": t, **{k: float(v[j]) for k, v in grp.rewards.items()},
                                             "advantage": float(grp.advantages[j])}
                                            for j, t in enumerate(grp.texts)]})
        bar.set_postfix(reward=f"{row['reward/overall']:.2f}", acc=f"{row.get('reward/accuracy', 0):.2f}",
                        kl=f"{row['kl']:.3f}")
    log.close()
    sample_log.close()
    model.eval()
    save_model_atomic(adapter, out / "model")
    first, last = history[0], history[-1]
    return {"steps": g.steps, "first_reward": first["reward/overall"], "last_reward": last["reward/overall"],
            "history": history}
