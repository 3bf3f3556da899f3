"""Supervised fine-tuning on (clip, target completion) pairs: cold-start reasoning traces
(R1-Omni's EMER-SFT; ``emorl traces generate`` makes them for any corpus) or label-only answers
(R1-Omni's MAFW-DFEW-SFT baseline).

Loss: cross-entropy on the assistant tokens only (the target completion and its EOS), with the
clip's full media in the prompt, summed over the step's target tokens and divided by their number
over all processes (a token mean over the whole step).

Batches, with units (checked and printed at start-up):

    sft.samples_per_step      samples per optimizer step, over all processes
    sft.micro_batch_samples   samples per forward/backward on one process (at most its share of a
                              step); gradients accumulate over a step's micro-batches
    sft.group_by_length       a process's share of a step is cut into micro-batches of similar
                              total length (prompt + target), so less of each is padding

Each micro-batch's loss is divided by the step's global token count, so the micro-batch size, the
length grouping and the number of processes do not change the update (tests: micro-batches of 1
and one batch give the same loss and gradients; two processes give one process's step). Samples
are drawn from shuffled passes over the data (``epochs`` passes, ``round(epochs x samples /
samples_per_step)`` steps). Synthetic-world traces are re-worded at every pass.

Everything else is the GRPO loop's machinery (``emorl.train.Session``): LoRA (merged into the
saved model), activation checkpointing (frozen towers build no graphs), ``sft.sharding`` (FSDP2,
DeepSpeed ZeRO-2/3), float32 master weights for bf16 models, atomic checkpoints with exact resume
(``sft.save_every``, ``sft.resume``, SIGINT/SIGTERM), non-finite steps skipped, metrics and
trackers. Data and loss are in ``emorl.sft.batch``, validation (``sft.val``) in ``emorl.sft.val``.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from emorl.config import RunConfig, run_config_yaml
from emorl.data.manifest import Sample, record_labels
from emorl.models.adapter import OmniAdapter
from emorl.prompting import PromptBuilder
from emorl.recipes.rewards import recipe_for
from emorl.sft.batch import Item, sft_loss, sft_micro_batches, sft_targets, target_ids
from emorl.train.session import Knobs, Session, check_same_micro_batches, next_batch
from emorl.train_utils import PhaseTimer, global_sum


@dataclass
class SFTPlan:
    """Batch semantics with units, checked at start-up."""

    samples_per_step: int
    micro_batch_samples: int
    processes: int = 1

    @property
    def per_process(self) -> int:
        return self.samples_per_step // self.processes

    @property
    def micro(self) -> int:
        """Samples per micro-batch: ``micro_batch_samples``, at most a process's share of a step."""
        return min(self.micro_batch_samples, self.per_process)

    @property
    def accumulation_steps(self) -> int:
        return self.per_process // self.micro

    def check(self) -> None:
        for name in ("samples_per_step", "micro_batch_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"sft.{name} must be >= 1, got {getattr(self, name)}")
        if self.samples_per_step % self.processes:
            raise ValueError(
                f"sft.samples_per_step ({self.samples_per_step}) must be divisible by the number of "
                f"processes ({self.processes})"
            )
        if self.per_process % self.micro:
            raise ValueError(
                f"samples per process and step ({self.samples_per_step} / {self.processes} = "
                f"{self.per_process}) must be divisible by sft.micro_batch_samples "
                f"({self.micro_batch_samples})"
            )

    def describe(self) -> str:
        return (
            f"{self.samples_per_step} samples/step over {self.processes} process(es) = {self.per_process} each; "
            f"micro-batch {self.micro} samples -> {self.accumulation_steps} accumulation steps"
        )


class Targets:
    """The targets of every sample as token ids, re-worded at every pass over the data for
    synthetic traces (``fresh``). ``state`` records the trace RNG before the last wording, so a
    resumed run words them again identically."""

    def __init__(self, cfg: RunConfig, adapter, samples: list[Sample], fresh: bool):
        self.cfg, self.adapter, self.samples, self.fresh = cfg, adapter, samples, fresh
        self.rng = np.random.default_rng(cfg.seed)
        self.style = recipe_for(cfg).style
        self.texts: list[str] | None = None
        self.state: dict | None = None

    def reword(self, rng_state: dict | None = None) -> None:
        if rng_state is not None:
            self.rng.bit_generator.state = rng_state
        self.state = copy.deepcopy(self.rng.bit_generator.state)
        self.texts = sft_targets(self.samples, self.cfg.sft.target, self.rng, self.style)

    def ids(self, i: int) -> torch.Tensor:
        return target_ids(self.adapter, self.texts[i])


def train_sft(
    cfg: RunConfig,
    adapter: OmniAdapter,
    builder: PromptBuilder,
    samples: list[Sample],
    out: Path,
    *,
    progress: bool = True,
    fresh_traces_each_epoch: bool = True,
    stop_after: int | None = None,
    val_samples: list[Sample] | None = None,
) -> dict:
    """SFT for ``cfg.sft.epochs`` passes (or ``stop_after`` more steps); writes ``out/metrics.jsonl``,
    checkpoints, ``out/model`` (and with ``sft.val``: validation rows in the metrics and the best
    model in ``out/best_model``). Returns a summary."""
    from emorl.sft.val import Validator

    c = cfg.sft
    total = max(1, round(c.epochs * len(samples) / c.samples_per_step))
    s = Session(
        cfg,
        Knobs.of("sft", c, command="sft", steps=total, warmup_steps=int(c.warmup_ratio * total), schedule="cosine"),
        adapter,
        out,
        progress=progress,
    )
    plan = SFTPlan(c.samples_per_step, c.micro_batch_samples, s.world)
    plan.check()
    targets = Targets(cfg, adapter, samples, fresh_traces_each_epoch)
    val = Validator(cfg, adapter, builder, val_samples, s) if (val_samples or c.val) else None
    peft_model = s.setup_model()
    s.setup_optimizer()
    state = s.open()
    if state.extra.get("trace_rng") is not None:  # resumed: the targets as they were worded
        targets.reword(state.extra["trace_rng"])
    if val is not None:
        val.best = state.extra.get("best")
    if s.main:
        print(
            f"[sft] {plan.describe()}; {len(samples)} samples, {total} steps; sharding {c.sharding}; target "
            f"{c.target}, lr {c.lr}; {s.trainable_params() / 1e6:.2f}M trainable parameters"
            + (f" (LoRA r={cfg.model.lora_rank})" if peft_model else "")
        )
    saved_cfg = _model_config(cfg, samples)

    def step() -> dict:
        return _step(s, plan, builder, samples, targets)

    def after(row: dict) -> None:
        if val is not None and val.due(state.step):
            row.update(val.run(state.step, saved_cfg))
            state.extra["best"] = val.best

    history = s.run(step, after_step=after, stop_after=stop_after, postfix=lambda r: {"loss": f"{r['loss']:.3f}"})
    interrupted = s.finish(saved_cfg)
    losses = [r["loss"] for r in history]
    return {
        "steps": state.step,
        "interrupted": interrupted,
        "first_loss": losses[0] if losses else float("nan"),
        "last_loss": losses[-1] if losses else float("nan"),
        "best": val.best if val else None,
        "history": history,
    }


def _step(s: Session, plan: SFTPlan, builder: PromptBuilder, samples: list[Sample], targets: Targets) -> dict:
    """One optimizer step: draw the global batch, take this process's share, accumulate its
    micro-batches, step. Returns the metrics row (``loss``: the step's token-mean loss over all
    processes; ``tokens``: its target tokens)."""
    state, adapter = s.state, s.adapter
    timer = PhaseTimer()
    t0 = time.perf_counter()
    new_pass = len(state.order) < plan.samples_per_step
    idx = next_batch(state, s.rng, len(samples), plan.samples_per_step)
    if targets.texts is None or (new_pass and targets.fresh):  # varied wording across passes
        targets.reword()
        state.extra["trace_rng"] = targets.state
    with timer("encode"):
        items = [Item(samples[i], builder.prompt(samples[i]), targets.ids(i)) for i in idx[s.rank :: s.world]]
    n_tok = global_sum(sum(len(it.target) for it in items))
    micro = sft_micro_batches(
        items, plan.micro, by_modality=adapter.one_modality_per_batch, by_length=s.cfg.sft.group_by_length
    )
    if s.k.sharding != "none":
        check_same_micro_batches([mb[0].prompt.modality.value for mb in micro], "sft.sharding")
    reason, grad_norm, stats = None, None, {"loss": float("nan")}
    adapter.model.train()
    try:
        with timer("update"):
            stats = sft_loss(adapter, micro, s.strategy.backward_fn(len(micro)), norm_tokens=n_tok)
            grad_norm = s.step_optimizer(stats)
        s.sched.step()
    except FloatingPointError as e:
        reason = str(e)
        s.strategy.discard()
    row = {"loss": global_sum(stats["loss"]), "lr": s.sched.get_last_lr()[0], "tokens": n_tok}
    if grad_norm is not None:
        row["grad_norm"] = grad_norm
    s.account(reason, row)
    row.update(
        {
            "epoch": (state.step + 1) * plan.samples_per_step / len(samples),
            "micro_batches": len(micro),
            "step_s": time.perf_counter() - t0,
            **{f"time/{k}": v for k, v in timer.seconds.items()},
        }
    )
    if builder.substitutions:
        row["media_substitutions"] = dict(builder.substitutions)
    return row


def _model_config(cfg: RunConfig, samples: list[Sample]) -> str:
    """The run config saved inside the model (its label set recorded from ``samples`` if unset)."""
    saved = copy.deepcopy(cfg)
    record_labels(saved, samples)
    return run_config_yaml(saved)
