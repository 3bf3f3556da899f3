"""The GRPO loop, owned by emorl (no framework trainer).

``train_grpo`` reads top to bottom; each step's phases are named and timed:

    rollout    sample G completions per clip (the clip's video + audio in the prompt)
    reward     rule components (format, accuracy, ...) + model-based ones (``extra_rewards``)
    advantage  group-normalised advantages (dynamic sampling may drop tied groups and refill)
    reference  log-probs under the frozen reference (skipped when beta == 0)
    old        log-probs of the sampling policy (only when epochs_per_rollout > 1; otherwise the
               policy's own detached log-probs, ratio 1)
    update     clipped policy-gradient loss (+ beta * KL), accumulated over micro-batches, one
               optimizer step per epoch over the rollout batch

Every log-prob pass receives the clip's media through the adapter. Several processes (torchrun,
accelerate launch) split each step's prompts; the model is replicated with gradients all-reduced
(``grpo.sharding=none``), sharded with FSDP2 (``grpo.sharding=fsdp2``) or with DeepSpeed ZeRO-2/3
(``grpo.sharding=zero2|zero3``). What SFT shares with this loop is ``emorl.train``'s ``Session``:
model set-up (freezing, LoRA, activation checkpointing), the strategy and optimizer (float32
masters), checkpoints written atomically every ``save_every`` steps and on SIGINT/SIGTERM with
exact ``resume``, non-finite handling (a non-finite reward, loss or gradient skips the step with a
logged reason; repeated ones stop the run), metrics and trackers, and the final save.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from emorl.config import RunConfig, run_config_yaml
from emorl.data.manifest import Sample, record_labels
from emorl.models.adapter import OmniAdapter, SamplingParams
from emorl.prompting import PromptBuilder
from emorl.recipes.rewards import recipe_for
from emorl.rl.grpo import group_advantages, policy_loss
from emorl.rl.rollout import ExtraRewards, Group, sample_groups, score_groups
from emorl.train.checkpoint import TrainState
from emorl.train.session import Knobs, Session, check_same_micro_batches, next_batch
from emorl.train_utils import JsonlLogger, PhaseTimer, global_std, global_sum, world_info
from emorl.utils import chunks


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
                f"{self.rows_per_step}) must be divisible by grpo.micro_batch_rows ({self.micro_batch_rows})"
            )

    def describe(self) -> str:
        return (
            f"{self.prompts_per_step} prompts x {self.completions_per_prompt} completions = {self.rows_per_step} "
            f"rows/step; micro-batch {self.micro_batch_rows} rows -> {self.accumulation_steps} accumulation steps"
        )


@dataclass
class Row:
    """One completion as a training row. logp tensors are (L,) for this row's tokens."""

    group: Group
    index: int
    old: torch.Tensor | None = None
    ref: torch.Tensor | None = None

    @property
    def prompt(self):
        return self.group.prompt

    @property
    def completion(self) -> torch.Tensor:
        return self.group.completions[self.index]

    @property
    def advantage(self) -> torch.Tensor:
        return self.group.advantages[self.index]


# ---------------------------------------------------------------------------- phases
def micro_batches(rows: list[Row], size: int, by_modality: bool = True):
    """Micro-batches of at most ``size`` rows; with ``by_modality`` (the adapter's
    ``one_modality_per_batch``) each holds one modality."""
    by_mod: dict = {}
    for r in rows:
        by_mod.setdefault(r.prompt.modality if by_modality else None, []).append(r)
    for mod_rows in by_mod.values():
        yield from chunks(mod_rows, size)


def _group_ids(mb: list[Row]) -> list[int]:
    """The explicit group identity of a micro-batch's rows: rows of one group share its prompt."""
    return [id(r.group) for r in mb]


@torch.no_grad()
def fill_logps(adapter: OmniAdapter, rows: list[Row], size: int, temperature: float, attr: str) -> None:
    """Store per-row log-probs (no grad) in ``row.<attr>`` ('old' or 'ref')."""
    for mb in micro_batches(rows, size, adapter.one_modality_per_batch):
        lp, _, _ = adapter.completion_logprobs(
            [r.prompt for r in mb], [r.completion for r in mb], temperature=temperature, groups=_group_ids(mb)
        )
        for i, r in enumerate(mb):
            setattr(r, attr, lp[i, : len(r.completion)].detach())


def _pad(seqs: list[torch.Tensor], length: int, device) -> torch.Tensor:
    out = torch.zeros(len(seqs), length, device=device)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out


def policy_update(
    adapter: OmniAdapter,
    rows: list[Row],
    cfg: RunConfig,
    backward,
    *,
    temperature: float,
    norm_rows: int | None = None,
    norm_tokens: int | None = None,
) -> dict:
    """Accumulate the loss's gradients over micro-batches (no optimizer step). The micro-batch
    losses are normalised by the whole batch's rows/tokens (``norm_*``: across all processes),
    so they sum to the full-batch loss whatever ``micro_batch_rows`` is. Returns mean statistics
    (with ``nonfinite_loss`` when a micro-batch's loss was not finite: its gradients are then
    NaN, so the caller's gradient-norm check skips the step on every process)."""
    g = cfg.grpo
    n_rows = norm_rows or len(rows)
    n_tokens = norm_tokens or sum(len(r.completion) for r in rows)
    stats = {"loss": 0.0, "kl": 0.0, "clip_frac": 0.0, "entropy": 0.0, "ratio": 0.0}
    for mb in micro_batches(rows, g.micro_batch_rows, adapter.one_modality_per_batch):
        lp, mask, ent = adapter.completion_logprobs(
            [r.prompt for r in mb],
            [r.completion for r in mb],
            temperature=temperature,
            with_entropy=True,
            groups=_group_ids(mb),
        )
        old = lp.detach() if mb[0].old is None else _pad([r.old for r in mb], lp.shape[1], lp.device)
        ref = None if g.beta == 0 else _pad([r.ref for r in mb], lp.shape[1], lp.device)
        adv = torch.stack([r.advantage for r in mb]).to(lp.device)
        out = policy_loss(
            lp,
            old,
            adv,
            mask,
            loss_type=g.loss_type,
            eps_low=g.epsilon_low,
            eps_high=g.epsilon_high,
            ref_logp=ref,
            beta=g.beta,
            kl_kind=g.kl_estimator,
            max_len=cfg.sampling.max_new_tokens,
            norm_rows=n_rows,
            norm_tokens=n_tokens,
            dual_clip=g.dual_clip_c,
        )
        loss = out.loss
        if not torch.isfinite(loss):
            # no early exit: the other processes are already in (or about to enter) this step's
            # gradient reduction. A NaN through every log-prob poisons every gradient, so the
            # global gradient norm is non-finite on every process and all of them skip the step.
            stats["nonfinite_loss"] = float(loss.detach())
            loss = (lp * float("nan")).sum()
        backward(loss)
        w = len(mb) / len(rows)
        stats["loss"] += float(out.loss.detach())
        stats["kl"] += out.kl * w
        stats["clip_frac"] += out.clip_frac * w
        stats["ratio"] += out.ratio_mean * w
        stats["entropy"] += float((ent * mask).sum() / mask.sum().clamp(min=1)) * w
    return stats


def _reference(cfg: RunConfig, adapter, peft_model):
    """The frozen reference: LoRA -> the same model with adapters disabled (no copy); else a copy."""
    if cfg.grpo.beta == 0.0:
        return None
    if peft_model is not None:
        return peft_model  # the policy with its LoRA adapters disabled
    ref = copy.copy(adapter)
    ref.model = copy.deepcopy(adapter.model).eval().requires_grad_(False)
    if cfg.model.ref_device:
        ref.model.to(cfg.model.ref_device)
        ref.device = torch.device(cfg.model.ref_device)
    return ref


# ---------------------------------------------------------------------------- the loop
def train_grpo(
    cfg: RunConfig,
    adapter: OmniAdapter,
    builder: PromptBuilder,
    samples: list[Sample],
    out: Path,
    *,
    progress: bool = True,
    extra_rewards: ExtraRewards | None = None,
    stop_after: int | None = None,
) -> dict:
    """Run GRPO until ``cfg.grpo.steps`` (or ``stop_after`` more steps); writes ``out/metrics.jsonl``,
    ``out/samples.jsonl``, checkpoints and the final model to ``out/model``. Returns a summary."""
    g = cfg.grpo
    plan = BatchPlan(g.prompts_per_step, g.completions_per_prompt, g.micro_batch_rows)
    plan.check()
    if g.epochs_per_rollout < 1:
        raise ValueError(f"grpo.epochs_per_rollout must be >= 1, got {g.epochs_per_rollout}")
    recipe = recipe_for(cfg)
    s = Session(
        cfg,
        Knobs.of("grpo", g, command="train", steps=g.steps, warmup_steps=g.warmup_steps, schedule="linear"),
        adapter,
        out,
        progress=progress,
    )
    if plan.prompts_per_step % s.world:
        raise ValueError(
            f"grpo.prompts_per_step ({plan.prompts_per_step}) must be divisible by the number of processes ({s.world})"
        )
    if g.sharding != "none" and g.dynamic_sampling:
        raise ValueError(
            f"grpo.sharding={g.sharding} does not support grpo.dynamic_sampling=true (the processes "
            "would end a step with different batches); use grpo.sharding=none"
        )
    _set_decode(cfg, adapter)
    # frozen towers: each clip's encoder outputs are computed once and reused by the generation,
    # reference and policy passes (and across steps while the clip is cached)
    peft_model = s.setup_model(encoder_cache_items=4 * g.prompts_per_step)
    ref = _reference(cfg, adapter, peft_model)
    s.setup_optimizer(ref)
    params = SamplingParams(
        cfg.sampling.max_new_tokens, cfg.sampling.temperature, cfg.sampling.top_p, cfg.sampling.top_k
    )
    s.open(logs=("metrics.jsonl", "samples.jsonl"))
    sample_log = JsonlLogger(out / "samples.jsonl" if s.main else out / f".samples_rank{s.rank}.jsonl")
    if s.main:
        print(
            f"[grpo] {plan.describe()}; {s.world} process(es), sharding {g.sharding}; {g.steps} steps; "
            f"loss {g.loss_type}, beta {g.beta}, lr {g.lr}; {s.trainable_params() / 1e6:.2f}M trainable parameters"
            + (f" (LoRA r={cfg.model.lora_rank})" if peft_model else "")
        )

    def log_sample(row: dict) -> None:
        sample = row.pop("_sample", None)
        if g.sample_every and sample and (s.state.step % g.sample_every == 1 or s.state.step == g.steps):
            sample_log.log({"step": s.state.step, **sample})

    history = s.run(
        lambda: _step(s, plan, builder, samples, recipe, params, extra_rewards, ref),
        after_step=log_sample,
        stop_after=stop_after,
        postfix=lambda row: {
            "reward": f"{row.get('reward/overall', float('nan')):.2f}",
            "acc": f"{row.get('reward/accuracy', 0):.2f}",
            "kl": f"{row.get('kl', 0):.3f}",
        },
    )
    sample_log.close()
    interrupted = s.finish(_model_config(cfg, samples))
    return {
        "steps": s.state.step,
        "interrupted": interrupted,
        "first_reward": history[0].get("reward/overall") if history else None,
        "last_reward": history[-1].get("reward/overall") if history else None,
        "history": history,
    }


def _set_decode(cfg: RunConfig, adapter) -> None:
    """``sampling.decode`` to the adapter's rollout decoder (group-aware adapters)."""
    if hasattr(adapter, "decode_mode"):
        from emorl.models.group import DECODE_MODES

        if cfg.sampling.decode not in ("auto", *DECODE_MODES):
            raise ValueError(
                f"sampling.decode must be one of auto, {', '.join(DECODE_MODES)}, got {cfg.sampling.decode!r}"
            )
        adapter.decode_mode = cfg.sampling.decode


def _rollout(cfg, plan, adapter, builder, samples, recipe, params, extra_rewards, state: TrainState, rng, timer):
    """This process's groups for one step. With dynamic sampling, tied groups are dropped and
    refilled. How many to refill is decided on the global count, so every process runs the same
    rounds and draws the same global batches; a process may end with fewer groups than another,
    or none (its share of a small refill is empty, or all its groups tied)."""
    g = cfg.grpo
    world, rank = world_info()
    groups: list[Group] = []
    dropped = 0
    for round_ in range(1 + (g.max_refill_rounds if g.dynamic_sampling else 0)):
        need = plan.prompts_per_step - (global_sum(len(groups)) if round_ else 0)
        if need <= 0:
            break
        # every process draws the same global batch and takes its share (prompts_per_step is global)
        batch = [samples[i] for i in next_batch(state, rng, len(samples), need)[rank::world]]
        if not batch:
            continue
        with timer("encode"):
            prompts = [builder.prompt(s) for s in batch]
        adapter.model.eval()
        with timer("rollout"):
            new = sample_groups(adapter, batch, prompts, plan.completions_per_prompt, params)
        with timer("reward"):
            score_groups(new, recipe, extra_rewards)
        if g.dynamic_sampling:
            keep = [grp for grp in new if float(grp.rewards["overall"].std()) > 0]
            dropped += len(new) - len(keep)
            new = keep
        groups += new
    return groups, dropped


def _step(s: Session, plan: BatchPlan, builder, samples, recipe, params, extra_rewards, ref) -> dict:
    cfg, adapter, strategy, state = s.cfg, s.adapter, s.strategy, s.state
    g = cfg.grpo
    timer = PhaseTimer()
    t0 = time.perf_counter()
    # FSDP2 / ZeRO-3: all-gathered once for the whole rollout, not per decoding step
    with strategy.gathered():
        groups, dropped = _rollout(
            cfg, plan, adapter, builder, samples, recipe, params, extra_rewards, state, s.rng, timer
        )
    row: dict = {"dynamic_sampling_dropped": dropped, "groups": len(groups)} if g.dynamic_sampling else {}
    if g.dynamic_sampling and global_sum(len(groups)) == 0:  # decided globally, as every skip
        state.nonfinite_streak = 0
        row.update({"skipped": "every group's rewards tied (dynamic sampling)", "step_s": time.perf_counter() - t0})
        return row
    with timer("advantage"):
        # (N, G); a process whose groups all tied has N = 0 and still joins every reduction below
        rewards = (
            torch.stack([grp.rewards["overall"] for grp in groups])
            if groups
            else torch.zeros(0, plan.completions_per_prompt)
        )
        batch_std = global_std(rewards) if g.advantage_scale == "batch" and world_info()[0] > 1 else None
        adv = group_advantages(rewards, g.advantage_scale, g.advantage_eps, batch_std)
        for grp, a in zip(groups, adv):
            grp.advantages = a
    rows = [Row(grp, j) for grp in groups for j in range(grp.size)]
    n_tokens = sum(len(r.completion) for r in rows)
    if groups:
        row.update(_reward_stats(groups, rewards))
    # decided globally: a process that skipped alone would leave the others waiting in the reduction
    reason = None if global_sum(int(not torch.isfinite(rewards).all())) == 0 else "non-finite reward"
    if reason is None:
        try:
            row.update(_update(s, rows, ref, params.temperature, n_tokens, timer))
        except FloatingPointError as e:
            reason = str(e)
            strategy.discard()
        finally:
            adapter.model.eval()
    s.account(reason, row)
    row.update(
        {
            "lr": s.sched.get_last_lr()[0],
            "step_s": time.perf_counter() - t0,
            **{f"time/{k}": v for k, v in timer.seconds.items()},
        }
    )
    if builder.substitutions:
        row["media_substitutions"] = dict(builder.substitutions)
    if not rows:
        return row
    row.update(
        {
            "completion_len": n_tokens / len(rows),
            "max_len": max(len(r.completion) for r in rows),
            "truncated_frac": sum(sum(grp.truncated) for grp in groups) / len(rows),
            "tokens_per_s": n_tokens / max(timer.seconds.get("rollout", 1e-9), 1e-9),
        }
    )
    grp = groups[0]
    row["_sample"] = {
        "id": grp.sample.id,
        "label": grp.sample.label,
        "completions": [
            {"text": t, **{k: float(v[j]) for k, v in grp.rewards.items()}, "advantage": float(grp.advantages[j])}
            for j, t in enumerate(grp.texts)
        ],
    }
    return row


def _update(s: Session, rows: list[Row], ref, temperature: float, n_tokens: int, timer) -> dict:
    """Reference and old log-probs, then ``epochs_per_rollout`` passes of accumulated micro-batches,
    each followed by an optimizer step through the session. Returns the last pass's statistics and
    the gradient norm; a non-finite gradient norm raises FloatingPointError."""
    cfg, adapter = s.cfg, s.adapter
    g = cfg.grpo
    by_mod = adapter.one_modality_per_batch
    if g.sharding != "none":
        check_same_micro_batches(
            [mb[0].prompt.modality.value for mb in micro_batches(rows, g.micro_batch_rows, by_mod)], "grpo.sharding"
        )
    if ref is not None:
        with timer("reference"):
            if isinstance(ref, torch.nn.Module):  # peft model: base weights = initial policy
                with ref.disable_adapter():
                    fill_logps(adapter, rows, g.micro_batch_rows, temperature, "ref")
            else:
                fill_logps(ref, rows, g.micro_batch_rows, temperature, "ref")
    if g.epochs_per_rollout > 1:
        with timer("old"):
            fill_logps(adapter, rows, g.micro_batch_rows, temperature, "old")
    adapter.model.train()
    norm_rows, norm_tokens = global_sum(len(rows)), global_sum(n_tokens)
    for _epoch in range(g.epochs_per_rollout):
        with timer("update"):
            n_micro = sum(1 for _ in micro_batches(rows, g.micro_batch_rows, by_mod))
            stats = policy_update(
                adapter,
                rows,
                cfg,
                s.strategy.backward_fn(n_micro),
                temperature=temperature,
                norm_rows=norm_rows,
                norm_tokens=norm_tokens,
            )
            grad_norm = s.step_optimizer(stats)  # reduce (unless sharded), clip, step
    s.sched.step()
    return {**{k: round(v, 6) for k, v in stats.items()}, "grad_norm": grad_norm}


def _model_config(cfg: RunConfig, samples: list[Sample]) -> str:
    """The run config saved inside the model (its label set recorded from ``samples`` if unset)."""
    saved = copy.deepcopy(cfg)
    record_labels(saved, samples)
    return run_config_yaml(saved)


def _reward_stats(groups: list[Group], rewards: torch.Tensor) -> dict:
    row = {
        "reward_std_in_group": float(rewards.std(dim=1).mean()) if rewards.shape[1] > 1 else 0.0,
        "zero_adv_groups": int((rewards.std(dim=1) == 0).sum()),
    }
    for name in groups[0].rewards:
        vals = torch.cat([grp.rewards[name] for grp in groups])
        row[f"reward/{name}"] = float(vals.mean())
        row[f"reward/{name}_std"] = float(vals.std()) if len(vals) > 1 else 0.0
    return row
