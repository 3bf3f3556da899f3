"""The machinery of one training run, shared by SFT (emorl.sft) and GRPO (emorl.rl.trainer).

A loop builds a ``Session`` and calls, in order::

    s = Session(cfg, knobs, adapter, out)      # launch check, process group, Strategy
    s.setup_model()                            # freezing, LoRA, activation checkpointing
    s.setup_optimizer(ref)                     # master weights, Strategy set-up, AdamW + schedule
    state = s.open()                           # RNG, exact resume, metrics.jsonl + trackers
    history = s.run(step_fn)                   # the steps; checkpoints; SIGINT/SIGTERM
    s.finish(run_config_yaml)                  # final model (LoRA merged) or an interruption checkpoint

Inside ``step_fn`` a loop runs its micro-batches through ``s.strategy.backward_fn(n)``, then
``s.step_optimizer(stats)`` (reduce, clip, step; a non-finite norm raises ``FloatingPointError``)
and ``s.sched.step()``, and reports the step's outcome with ``s.account(reason, row)`` (a skipped
step is logged with its reason; ``max_nonfinite_steps`` in a row stop the run).

``Knobs`` are the settings both loops have under their own section (``grpo.*`` / ``sft.*``).
"""

from __future__ import annotations

import atexit
import copy
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from emorl.config import to_dict
from emorl.train.checkpoint import StopFlag, TrainState, load_checkpoint, save_checkpoint, truncate_log
from emorl.train.setup import check_sharded, make_strategy, setup_model
from emorl.train_utils import (
    JsonlLogger,
    barrier,
    check_launch,
    make_optimizer,
    master_weights,
    open_trackers,
    save_model_atomic,
    world_info,
)
from emorl.utils import atomic_write_json


@dataclass
class Knobs:
    """The settings every loop has, read from its config section ``section`` (``grpo`` / ``sft``)."""

    section: str
    command: str  # the CLI command (train / sft): what an accelerate launch config is checked against
    steps: int
    lr: float
    weight_decay: float
    warmup_steps: int
    schedule: str  # linear (R1-Omni GRPO) | cosine (R1-Omni SFT)
    max_grad_norm: float
    save_every: int
    keep_checkpoints: int
    resume: bool
    max_nonfinite_steps: int
    gradient_checkpointing: bool
    sharding: str

    @classmethod
    def of(cls, section: str, cfg_section, *, command: str, steps: int, warmup_steps: int, schedule: str) -> Knobs:
        c = cfg_section
        return cls(
            section,
            command,
            steps,
            c.lr,
            c.weight_decay,
            warmup_steps,
            schedule,
            c.max_grad_norm,
            c.save_every,
            c.keep_checkpoints,
            c.resume,
            c.max_nonfinite_steps,
            c.gradient_checkpointing,
            c.sharding,
        )


class Session:
    """One run's model set-up, optimizer, checkpoints, logs and final save (module docstring)."""

    def __init__(self, cfg, knobs: Knobs, adapter, out: Path, *, progress: bool = True):
        from accelerate import Accelerator

        self.cfg, self.k, self.adapter, self.out = cfg, knobs, adapter, Path(out)
        self.strategy = make_strategy(knobs.sharding, f"{knobs.section}.sharding")
        check_launch(knobs.command, knobs.sharding)
        started = not _group_started()
        Accelerator(cpu=cfg.model.device == "cpu")  # starts the process group under torchrun / accelerate launch
        if started and _group_started():
            atexit.register(_end_process_group)
        self.world, self.rank = world_info()
        check_sharded(f"{knobs.section}.sharding", knobs.sharding, self.world, cfg.model)
        self.main = self.rank == 0
        self.progress = progress and self.main
        self.peft_model = self.sched = self.log = None
        self.rng = random.Random(cfg.seed)
        self.state = TrainState()
        self.interrupted = False

    # ---------------------------------------------------------------- set-up
    def setup_model(self, *, encoder_cache_items: int = 0):
        """Freezing, LoRA and activation checkpointing (emorl.train.setup.setup_model); returns the
        peft wrapper or None."""
        self.peft_model = setup_model(
            self.adapter,
            self.cfg.model,
            gradient_checkpointing=self.k.gradient_checkpointing,
            encoder_cache_items=encoder_cache_items,
        )
        return self.peft_model

    def setup_optimizer(self, ref=None) -> None:
        """AdamW with warm-up and the knobs' decay, float32 master weights for a half-precision model
        (``model.master_weights``: ``MasterWeightAdamW``, FSDP2 float32 shards or DeepSpeed's bf16
        mode), built by the strategy, which also shards the model (and ``ref``, a reference adapter)."""
        k, model = self.k, self.adapter.model
        master = master_weights(self.cfg.model.master_weights, model)
        _, self.sched = self.strategy.setup(
            self.adapter,
            ref,
            master=master,
            max_grad_norm=k.max_grad_norm,
            dtype=self.cfg.model.dtype,
            shard_ref=not self.cfg.model.ref_device,
            make_opt=lambda m: make_optimizer(
                model, k.lr, k.weight_decay, k.steps, k.warmup_steps, k.schedule, master=m
            ),
        )

    def open(self, logs: tuple[str, ...] = ("metrics.jsonl",)) -> TrainState:
        """The run's state: fresh, or (``<section>.resume``) the last checkpoint's, with ``logs``
        cut back to its step; opens ``metrics.jsonl`` (process 0; the others write
        ``.metrics_rank<N>.jsonl``) and the ``report_to`` trackers."""
        self.out.mkdir(parents=True, exist_ok=True)
        if self.k.resume:
            self.state = load_checkpoint(
                self.out, self.strategy, self.sched, self.rng, self.peft_model, section=self.k.section
            )
            print(f"[{self.k.section}] resumed from step {self.state.step}")
            if self.main:
                for name in logs:
                    truncate_log(self.out / name, self.state.step)
        barrier()
        trackers = (
            open_trackers(self.cfg.report_to, self.out, to_dict(self.cfg), resume_step=self.state.step)
            if self.main
            else []
        )
        name = "metrics.jsonl" if self.main else f".metrics_rank{self.rank}.jsonl"
        self.log = JsonlLogger(self.out / name, trackers)
        return self.state

    def trainable_params(self) -> int:
        return sum(p.numel() for p in self.adapter.model.parameters() if p.requires_grad)

    # ---------------------------------------------------------------- the steps
    def run(
        self,
        step_fn: Callable[[], dict],
        *,
        after_step: Callable[[dict], None] | None = None,
        stop_after: int | None = None,
        postfix: Callable[[dict], dict] | None = None,
    ) -> list[dict]:
        """Call ``step_fn`` (one optimizer step; returns its metrics row) until ``knobs.steps`` (or
        ``stop_after`` more steps, or a signal); each row gets its ``step``, goes to
        ``after_step`` (which may add or pop keys), then to ``metrics.jsonl`` and the trackers.
        A checkpoint every ``save_every`` steps. Returns the rows."""
        k, state = self.k, self.state
        last = k.steps if stop_after is None else min(k.steps, state.step + stop_after)
        history: list[dict] = []
        bar = tqdm(total=k.steps, initial=state.step, desc=k.section, disable=not self.progress, dynamic_ncols=True)
        with StopFlag(k.section) as stop:
            while state.step < last and stop.signal is None:
                row = step_fn()
                state.step += 1
                row["step"] = state.step
                if after_step is not None:
                    after_step(row)
                self.log.log(row)
                history.append(row)
                if k.save_every and state.step % k.save_every == 0 and state.step < k.steps:
                    self.save_checkpoint()
                bar.update(1)
                if postfix is not None:
                    bar.set_postfix(postfix(row))
        bar.close()
        self.log.close()
        self.interrupted = stop.signal is not None or state.step < k.steps
        return history

    def step_optimizer(self, stats: dict) -> float:
        """Reduce (unless sharded), clip and step through the strategy; returns the global gradient
        norm. A non-finite norm raises FloatingPointError naming the cause (a non-finite loss on this
        process, when ``stats`` says so); the caller then calls ``strategy.discard()``."""
        try:
            return self.strategy.step(self.k.max_grad_norm)
        except FloatingPointError as e:
            if "nonfinite_loss" in stats:
                raise FloatingPointError(
                    f"non-finite loss ({stats['nonfinite_loss']}) on this process, so {e}"
                ) from None
            raise

    def account(self, reason: str | None, row: dict) -> None:
        """Record the step's outcome: ``reason`` (why the update was skipped, or None) goes to
        ``row['skipped']``; ``max_nonfinite_steps`` skipped steps in a row stop the run."""
        state, k = self.state, self.k
        if reason is None:
            state.nonfinite_streak = 0
            return
        state.nonfinite_streak += 1
        row["skipped"] = reason
        print(f"[{k.section}] step {state.step + 1}: {reason}; update skipped ({state.nonfinite_streak} in a row)")
        if state.nonfinite_streak >= k.max_nonfinite_steps:
            hint = "check the reward functions, " if k.section == "grpo" else "check the data, "
            raise RuntimeError(
                f"{k.section.upper()} stopped: {state.nonfinite_streak} consecutive steps with "
                f"non-finite values (last: {reason}). Lower {k.section}.lr, {hint}or raise "
                f"{k.section}.max_nonfinite_steps."
            )

    def save_checkpoint(self) -> Path:
        return save_checkpoint(
            self.out, self.strategy, self.sched, self.state, self.rng, self.k.keep_checkpoints, self.peft_model
        )

    # ---------------------------------------------------------------- the end
    def save_model(self, dest: Path, run_config: str, *, adapter_dir: Path | None = None) -> None:
        """The current weights as a normal model folder (``save_pretrained``; collective): gathered
        from the shards and cast to ``model.dtype`` when sharded, LoRA merged into a copy (the
        adapter itself to ``adapter_dir``), with the run config inside."""
        model_sd = self.strategy.final_state_dict()  # gathered on process 0 (collective)
        if self.main:
            if model_sd is not None:
                dtype = getattr(
                    torch, self.cfg.model.dtype
                )  # float32 shards (mixed precision) saved in the model's dtype
                save_model_atomic(
                    self.adapter,
                    dest,
                    run_config=run_config,
                    state_dict={k: v.to(dtype) if v.is_floating_point() else v for k, v in model_sd.items()},
                )
            elif self.peft_model is not None:
                if adapter_dir is not None:
                    self.peft_model.save_pretrained(adapter_dir)
                merged = copy.copy(self.adapter)
                merged.model = copy.deepcopy(self.peft_model).merge_and_unload()
                save_model_atomic(merged, dest, run_config=run_config)
            else:
                save_model_atomic(self.adapter, dest, run_config=run_config)
        barrier()

    def finish(self, run_config: str) -> bool:
        """After ``run``: check that replicated processes agree (``sync_check.json``), then write
        a checkpoint when interrupted, else the final model to ``out/model`` (LoRA: merged, with
        ``out/adapter``). Returns whether the run was interrupted."""
        self.adapter.model.eval()
        in_sync = None if self.strategy.partitioned else check_in_sync(self.adapter.model)
        if self.world > 1 and self.main:
            skipped = (
                {"skipped": f"{self.k.sharding}: every parameter has one sharded copy"}
                if self.strategy.partitioned
                else {}
            )
            atomic_write_json(
                self.out / "sync_check.json",
                {"processes": self.world, "params_in_sync": in_sync, "step": self.state.step, **skipped},
            )
        if self.interrupted:
            path = self.save_checkpoint()
            print(
                f"[{self.k.section}] stopped at step {self.state.step}; checkpoint {path}; continue with "
                f"{self.k.section}.resume=true"
            )
        else:
            self.save_model(self.out / "model", run_config, adapter_dir=self.out / "adapter")
        return self.interrupted


def _group_started() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def _end_process_group() -> None:
    """At exit, tear down the process group a Session started: left to the interpreter's teardown,
    gloo's threads can abort the process ("terminate called without an active exception") after
    the run's work is written."""
    import torch.distributed as dist

    if _group_started():
        dist.destroy_process_group()


@torch.no_grad()
def check_in_sync(model: torch.nn.Module) -> bool | None:
    """Multi-process runs with replicated parameters: do all processes hold the same ones? (None
    when single-process; callers skip partitioned models, FSDP2 and ZeRO-3, which hold one copy of
    each parameter.) Raises if they differ: a silent divergence would make the run meaningless."""
    import torch.distributed as dist

    world, _ = world_info()
    if world == 1:
        return None
    local = torch.tensor(
        [
            sum(float(p.double().sum()) for p in model.parameters()),
            sum(float(p.double().abs().sum()) for p in model.parameters()),
        ],
        dtype=torch.float64,
    )
    every = [torch.zeros_like(local) for _ in range(world)]
    dist.all_gather(every, local)
    if any(not torch.equal(every[0], x) for x in every[1:]):
        raise RuntimeError(f"processes hold different parameters after training: {[x.tolist() for x in every]}")
    return True


def next_batch(state: TrainState, rng: random.Random, n_samples: int, k: int) -> list[int]:
    """The next ``k`` sample indices of the run's data stream: shuffled passes over the
    ``n_samples`` samples, one after the other (``state.order`` holds what is left, so a resumed
    run draws the same batches). The same on every process (each takes its share)."""
    while len(state.order) < k:
        perm = list(range(n_samples))
        rng.shuffle(perm)
        state.order += perm
    batch, state.order = state.order[:k], state.order[k:]
    return batch


def check_same_micro_batches(modalities: list[str], key: str) -> None:
    """Sharded modes: FSDP2 and ZeRO-3 all-gather in every forward, FSDP2 and ZeRO reduce gradients
    in every backward, so every process must run the same micro-batches (count, and the modality
    of each: ``modalities``); otherwise they would wait on each other forever. Collective; raises
    naming what differs."""
    import torch.distributed as dist

    every: list = [None] * world_info()[0]
    dist.all_gather_object(every, modalities)
    if any(x != every[0] for x in every):
        raise RuntimeError(
            f"sharded training needs the same micro-batches on every process, got {every} "
            "(modality per micro-batch): the clips' modalities differ between processes (e.g. "
            f"data.on_missing_audio=skip fell back to video); use {key}=none"
        )
