"""DeepSpeed ZeRO-2 / ZeRO-3 for the training loops: ``grpo.sharding`` / ``sft.sharding`` ``zero2`` or
``zero3`` (``ZeroStrategy``).

The loop stays emorl's own: it runs the model's parts directly, as in every other mode, and
hands only the parts DeepSpeed must own to a ``DeepSpeedEngine``: the backward pass (gradient
reduce-scatter into partitions), gradient clipping, the optimizer step over partitioned AdamW
states (ZeRO-2 and 3) and, for ZeRO-3, the partitioned parameters, gathered by DeepSpeed's module
hooks as each part runs.

- **Gradient accumulation.** The engine is built with ``gradient_accumulation_steps: 1`` and
  ``backward_fn`` marks the last micro-batch of a step as the accumulation boundary
  (``set_gradient_accumulation_boundary``), so one ``engine.step()`` follows all micro-batches,
  whatever their number. The micro-batch losses are already normalised by the global row and
  token counts, so gradients must be summed over processes: DeepSpeed averages them, so
  ``backward_fn`` scales each loss by the number of processes.
- **Generation under ZeRO-3** runs inside ``gathered``: every parameter is all-gathered once and
  the module hooks are removed, so no collective runs per decoding step (processes stop decoding
  at different steps), then the hooks are put back and the parameters re-partitioned.
- **Precision.** A bf16 model runs DeepSpeed's bf16 mode: float32 master partitions in the
  optimizer, bf16 compute. A float32 model trains in float32.
- **Checkpoints** use DeepSpeed's own format (``engine.save_checkpoint``: each process writes its
  partitions) inside emorl's atomic step folder; ``load_checkpoint`` restores them exactly.
"""

from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from torch import nn

from emorl.train.sharding import Strategy

ZERO_STAGES = {"zero2": 2, "zero3": 3}


def ds_config(
    stage: int, *, dtype: str, max_grad_norm: float, offload_optimizer: str = "none", offload_param: str = "none"
) -> dict:
    """The DeepSpeed config emorl's loop needs (batch sizes are emorl's: one "micro-batch" here is
    one optimizer step's worth of backward passes, see the module docstring)."""
    if stage not in (2, 3):
        raise ValueError(f"ZeRO stage must be 2 or 3, got {stage!r}")
    if dtype == "float16":
        raise ValueError(
            "sharding zero2/zero3 supports model.dtype float32 or bfloat16, not float16 (DeepSpeed "
            "would need dynamic loss scaling, which emorl's non-finite checks do not model)"
        )
    zero: dict = {"stage": stage, "overlap_comm": False, "contiguous_gradients": True}
    if offload_optimizer != "none":
        zero["offload_optimizer"] = {"device": offload_optimizer}
    cfg_extra = {"zero_force_ds_cpu_optimizer": False} if offload_optimizer != "none" else {}
    if offload_param != "none":
        if stage != 3:
            raise ValueError(f"parameter offload needs ZeRO-3, got stage {stage}")
        zero["offload_param"] = {"device": offload_param}
    return {
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": max_grad_norm,
        "zero_optimization": zero,
        "bf16": {"enabled": dtype == "bfloat16"},
        "zero_allow_untested_optimizer": True,  # torch's AdamW (fused on CUDA)
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
        # an offloaded optimizer: torch's AdamW steps the float32 partitions on the CPU (DeepSpeed
        # refuses a client optimizer there unless told; its own CPUAdam would be faster)
        **cfg_extra,
    }


def offload_from_launch() -> tuple[str, str]:
    """ZeRO offload devices (optimizer, parameters) of an ``accelerate launch`` DeepSpeed config
    (``offload_optimizer_device`` / ``offload_param_device``); "none" otherwise."""
    env = os.environ
    return (
        env.get("ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE") or "none",
        env.get("ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE") or "none",
    )


def initialize(model: nn.Module, opt: torch.optim.Optimizer | None, config: dict):
    """Wrap ``model`` (in place: ZeRO-3 partitions its parameters) and ``opt`` in a DeepSpeed engine.
    ``opt=None``: a frozen model (the reference), partitioned for inference only."""
    try:
        import deepspeed
    except ImportError as e:
        raise ImportError(
            "sharding zero2/zero3 needs the deepspeed package: pip install 'emorl[deepspeed]' "
            "(or pip install deepspeed)"
        ) from e
    engine, *_ = deepspeed.initialize(model=model, optimizer=opt, config=config, dist_init_required=False)
    return engine


def stage_of(engine) -> int:
    return int(engine.zero_optimization_stage())


def backward_fn(engine, n_micro: int, world: int):
    """A ``backward(loss)`` for ``n_micro`` micro-batches: the last one is the accumulation boundary.
    Each process's loss is already normalised by the global counts, so the gradients must be summed
    over processes; DeepSpeed averages them, hence the factor ``world``."""
    seen = 0

    def backward(loss: torch.Tensor) -> None:
        nonlocal seen
        seen += 1
        if hasattr(engine.optimizer, "clear_backward_seen_flag"):
            # what engine.forward does first: emorl runs the model's parts, not the engine, and without
            # it ZeRO-3 never advances its micro-step and each backward overwrites the last one's gradients
            engine.optimizer.clear_backward_seen_flag()
        engine.set_gradient_accumulation_boundary(seen == n_micro)
        engine.backward(loss * world)

    return backward


def step(engine) -> float:
    """Clip (DeepSpeed's ``gradient_clipping``) and step; returns the global gradient norm before
    clipping (NaN when clipping is off: DeepSpeed then does not compute it). A non-finite norm:
    DeepSpeed skips the update (and, applied or not, zeroes the gradients), and this raises
    FloatingPointError."""
    engine.step()
    norm = engine.get_global_grad_norm()
    if not engine.was_step_applied():
        raise FloatingPointError(f"non-finite gradient norm ({norm}); DeepSpeed skipped the update")
    return float(norm) if norm is not None else float("nan")


@contextmanager
def gathered(engine):
    """ZeRO-3: inside, every parameter is whole and the module hooks are off, so a process may run
    any number of forward calls without collectives (generation). A no-op below ZeRO-3."""
    if engine is None or stage_of(engine) < 3:
        yield
        return
    import deepspeed

    offload = (
        engine.optimizer.parameter_offload
        if hasattr(engine.optimizer, "parameter_offload")
        else engine.parameter_offload
    )  # training engine / inference-only engine
    with deepspeed.zero.GatheredParameters(list(engine.module.parameters())):
        offload._remove_module_hooks()
        try:
            yield
        finally:
            offload._register_deepspeed_module(offload.module)


def full_state_dict(engine) -> dict:
    """The whole model's state dict on process 0 (CPU tensors), empty elsewhere. Collective."""
    import deepspeed
    import torch.distributed as dist

    rank = dist.get_rank() if dist.is_initialized() else 0
    whole = (
        deepspeed.zero.GatheredParameters(list(engine.module.parameters()), modifier_rank=None)
        if stage_of(engine) == 3
        else nullcontext()
    )  # ZeRO-2: every process holds the whole model
    with whole:
        return {k: v.detach().cpu().clone() for k, v in engine.module.state_dict().items()} if rank == 0 else {}


def save(engine, folder: Path) -> None:
    """Every process writes its partitions (DeepSpeed's format) under ``folder/zero``. Collective."""
    engine.save_checkpoint(str(folder), tag="zero", save_latest=False)


def load(engine, folder: Path) -> None:
    path, _ = engine.load_checkpoint(
        str(folder), tag="zero", load_optimizer_states=True, load_lr_scheduler_states=False, load_module_strict=True
    )
    if path is None:
        raise FileNotFoundError(f"{folder / 'zero'}: no DeepSpeed checkpoint to resume from")


class ZeroStrategy(Strategy):
    """``zero2|zero3`` behind the loops' ``Strategy`` interface: the optimizer is
    handed to a ``DeepSpeedEngine`` (ZeRO-3: the reference too, for inference), which reduces,
    clips, steps and checkpoints (see the module docstring)."""

    def __init__(self, stage: int, offload: tuple[str, str] | None = None):
        """``offload``: (optimizer, parameter) offload devices; default: the accelerate launch's."""
        super().__init__()
        if stage not in (2, 3):
            raise ValueError(f"ZeRO stage must be 2 or 3, got {stage!r}")
        self.stage, self.name, self.partitioned = stage, f"zero{stage}", stage == 3
        self.engine = None
        self.offload = offload

    def setup(self, adapter, ref, *, master: bool, make_opt, max_grad_norm: float, dtype: str, shard_ref: bool = True):
        """``master`` is DeepSpeed's own (bf16 mode keeps float32 master partitions)."""
        self.adapter = adapter
        self.opt, sched = make_opt(False)  # the scheduler keeps driving the optimizer DeepSpeed wraps
        off_opt, off_param = self.offload or offload_from_launch()
        ds = ds_config(
            self.stage, dtype=dtype, max_grad_norm=max_grad_norm, offload_optimizer=off_opt, offload_param=off_param
        )
        self.engine = initialize(adapter.model, self.opt, ds)
        if ref is not None and self.stage == 3 and shard_ref:
            initialize(ref.model, None, ds)  # the reference partitioned too (inference only)
        return self.opt, sched

    def gathered(self):
        return gathered(self.engine)

    def backward_fn(self, n_micro: int):
        from emorl.train_utils import world_info

        return backward_fn(self.engine, n_micro, world_info()[0])

    def step(self, max_grad_norm: float) -> float:  # clipping is DeepSpeed's gradient_clipping
        return step(self.engine)

    def discard(self) -> None:  # DeepSpeed's step has zeroed its gradients already
        pass

    def checkpoint_state(self) -> tuple[dict | None, dict | None]:
        return None, None

    def save_partitions(self, folder: Path) -> None:
        save(self.engine, folder)

    def load_checkpoint(self, folder: Path, trainer_state: dict, peft_model=None) -> None:
        load(self.engine, folder)

    def final_state_dict(self) -> dict | None:
        return full_state_dict(self.engine)
