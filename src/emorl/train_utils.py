"""Pieces both training loops use: optimizer and schedule, micro-batches, metrics (JSONL plus optional
TensorBoard / Weights & Biases), checkpoints, and the launch check."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

HALF = (torch.bfloat16, torch.float16)
MASTER_WEIGHTS = ("auto", "float32", "none")


def master_weights(setting: str, model: torch.nn.Module) -> bool:
    """Whether the optimizer keeps float32 master copies (``model.master_weights``): 'auto' and
    'float32' do when some trainable parameter is bf16/fp16 (LoRA adapters are fp32 already:
    peft upcasts them), 'none' never does."""
    if setting not in MASTER_WEIGHTS:
        raise ValueError(f"model.master_weights must be one of {', '.join(MASTER_WEIGHTS)}, got {setting!r}")
    return setting != "none" and any(p.requires_grad and p.dtype in HALF for p in model.parameters())


class MasterWeightAdamW(torch.optim.AdamW):
    """AdamW over float32 master copies of half-precision parameters.

    The model keeps its bf16/fp16 weights, so rollouts and the forward/backward passes run in half
    precision; ``step`` upcasts the gradients onto the masters, updates them in float32 and writes
    them back rounded. Updating bf16 weights directly loses every change smaller than half their
    spacing (at least |w| * 2^-9): at R1-Omni's lr 1e-6 an AdamW step (about lr per weight) leaves
    every weight larger than about 5e-4 in magnitude unchanged, i.e. almost all.

    Bytes per trainable parameter: 2 weight + 2 gradient + 4 master + 8 AdamW states (float32).
    The masters are stepped in chunks of at most ``chunk_numel`` elements (one parameter group
    each), so the float32 copy of the gradients exists for one chunk at a time. ``state_dict``
    carries the masters (exact resume)."""

    def __init__(self, params, *, chunk_numel: int = 1 << 28, **kwargs):
        self.model_params = [p for p in params]
        parts: list[list[torch.Tensor]] = [[]]
        size = 0
        for p in self.model_params:
            if parts[-1] and size + p.numel() > chunk_numel:
                parts.append([])
                size = 0
            parts[-1].append(p)
            size += p.numel()
        self._model_groups = parts
        super().__init__([{"params": [p.detach().float().clone() for p in c]} for c in parts], **kwargs)

    def _masters(self) -> list[torch.Tensor]:
        return [m for g in self.param_groups for m in g["params"]]

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:
            raise NotImplementedError("MasterWeightAdamW.step takes no closure")
        groups = self.param_groups
        try:
            for group, params in zip(groups, self._model_groups, strict=True):
                for p, m in zip(params, group["params"]):
                    m.grad = None if p.grad is None else p.grad.to(m.dtype)
                self.param_groups = [group]
                super().step()
                for p, m in zip(params, group["params"]):
                    p.copy_(m)
                    m.grad = None
        finally:
            self.param_groups = groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.model_params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()
        super().zero_grad(set_to_none)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "master_weights": [m.detach().clone() for m in self._masters()]}

    @torch.no_grad()
    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        masters = state_dict.pop("master_weights", None)
        if masters is None:
            raise ValueError(
                "optimizer state has no 'master_weights': it was saved without float32 master weights "
                "(model.master_weights=none, or a float32 model); resume with the same settings"
            )
        super().load_state_dict(state_dict)
        for p, m, saved in zip(self.model_params, self._masters(), masters, strict=True):
            m.copy_(saved)
            p.copy_(m)


def make_optimizer(
    model: torch.nn.Module,
    lr: float,
    weight_decay: float,
    total_steps: int,
    warmup_steps: int,
    schedule: str = "linear",
    master: bool = False,
):
    """AdamW over trainable parameters with warm-up then linear (R1-Omni GRPO) or cosine (SFT) decay;
    ``master``: float32 master weights for half-precision parameters (``MasterWeightAdamW``)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters (are all towers frozen?)")
    # CUDA: the fused kernel (no foreach temporaries: a 7B full fine-tune's step peaked 12 GB higher without it)
    fused = True if all(p.device.type == "cuda" for p in params) else None
    opt = (MasterWeightAdamW if master else torch.optim.AdamW)(params, lr=lr, weight_decay=weight_decay, fused=fused)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        frac = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        if schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))
        if schedule == "constant":
            return 1.0
        return max(0.0, 1.0 - frac)

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def freeze_towers(adapter, *, vision: bool, audio: bool) -> None:
    """Freeze the adapter's vision and/or audio tower (``adapter.towers()``; no autograd graphs for
    them). Projectors outside the towers stay trainable. Freezing a tower the family does not
    have (audio on a vision-language model) is a no-op: there is nothing of it to train."""
    towers = adapter.towers()
    for flag, name in ((vision, "vision"), (audio, "audio")):
        if flag and name in towers:
            towers[name].requires_grad_(False)


# ---------------------------------------------------------------------------- several processes


def world_info() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def global_sum(x: float) -> int | float:
    """``x`` summed over processes (``x`` itself in a single process); keeps int or float."""
    import torch.distributed as dist

    if world_info()[0] == 1:
        return x
    t = torch.tensor([x], dtype=torch.float64)  # exact for the integer counts used here (< 2**53)
    dist.all_reduce(t)
    return type(x)(t.item())


def global_std(x: torch.Tensor) -> float:
    """Unbiased std of every element of ``x`` on every process (two passes: the global mean, then
    the global sum of squared deviations); ``x.std()`` in a single process; 0 for fewer than two
    elements (no spread to scale by, rather than NaN)."""
    if world_info()[0] == 1:
        return float(x.std()) if x.numel() > 1 else 0.0
    x = x.double()
    n = global_sum(x.numel())  # the same on every process, so they all take the same branch
    if n < 2:
        return 0.0
    mean = global_sum(float(x.sum())) / n
    return (global_sum(float(((x - mean) ** 2).sum())) / (n - 1)) ** 0.5


def barrier() -> None:
    import torch.distributed as dist

    if world_info()[0] > 1:
        dist.barrier()


def all_reduce_grads(model: torch.nn.Module) -> None:
    """Data parallelism over replicated parameters: sum gradients over processes (each process's
    loss is already normalised by the global row/token counts, so the sum is the global batch's
    gradient). Sharded modes reduce them themselves (emorl.train.sharding strategies)."""
    import torch.distributed as dist

    if world_info()[0] == 1:
        return
    for p in model.parameters():
        if p.requires_grad:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad)


class JsonlLogger:
    """Appends one JSON object a line to ``path``, flushed per line, so a crash loses nothing written.
    Each row's numbers also go to ``trackers`` (``open_trackers``) at the row's ``step``."""

    def __init__(self, path: str | os.PathLike, trackers: Sequence = ()):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = self.path.open("a", encoding="utf-8")
        self.trackers = list(trackers)

    def log(self, row: dict[str, Any]) -> None:
        self._f.write(json.dumps(row, default=float) + "\n")
        self._f.flush()
        for t in self.trackers:
            t.log(scalar_metrics(row), row["step"])

    def close(self) -> None:
        self._f.close()
        for t in self.trackers:
            t.close()


# ---------------------------------------------------------------------------- trackers
TRACKERS = ("tensorboard", "wandb")


def scalar_metrics(row: dict[str, Any]) -> dict[str, float]:
    """A metrics row's numbers (not its step, strings, flags or nested values), as trackers take them."""
    return {
        k: float(v) for k, v in row.items() if k != "step" and isinstance(v, int | float) and not isinstance(v, bool)
    }


def _missing(tracker: str, package: str) -> ImportError:
    return ImportError(f"report_to={tracker} needs the {package} package: pip install 'emorl[{tracker}]'")


class TensorBoardTracker:
    """Scalars to ``out/tensorboard``. ``purge_step`` (on resume) hides events a previous run wrote
    at that step or later."""

    def __init__(self, out: Path, purge_step: int | None = None):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise _missing("tensorboard", "tensorboard") from None
        self.writer = SummaryWriter(str(out / "tensorboard"), purge_step=purge_step)

    def log(self, scalars: dict[str, float], step: int) -> None:
        for k, v in scalars.items():
            self.writer.add_scalar(k, v, step)

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    """A Weights & Biases run (project ``$WANDB_PROJECT``, default emorl; files under ``out/wandb``).
    ``WANDB_MODE=offline`` logs without an account; ``wandb sync`` uploads later."""

    def __init__(self, out: Path, config: dict | None = None):
        try:
            import wandb
        except ImportError:
            raise _missing("wandb", "wandb") from None
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "emorl"), name=out.name, dir=str(out), config=config
        )

    def log(self, scalars: dict[str, float], step: int) -> None:
        self.run.log(scalars, step=step)

    def close(self) -> None:
        self.run.finish()


def open_trackers(names: Sequence[str], out: Path, config: dict | None = None, *, resume_step: int = 0) -> list:
    """The trackers ``report_to`` names, writing under ``out`` (``config``: the run config, which W&B
    records; ``resume_step``: the step a resumed run continues from)."""
    unknown = [n for n in names if n not in TRACKERS]
    if unknown:
        raise ValueError(
            f"report_to: unknown tracker(s) {', '.join(map(repr, unknown))}; "
            f"expected a list of {', '.join(TRACKERS)} (or [])"
        )
    trackers: list = []
    try:
        for n in dict.fromkeys(names):
            trackers.append(
                TensorBoardTracker(out, resume_step + 1 if resume_step else None)
                if n == "tensorboard"
                else WandbTracker(out, config)
            )
    except BaseException:
        for t in trackers:
            t.close()
        raise
    return trackers


def check_launch(command: str, sharding: str = "none") -> None:
    """Refuse accelerate launches whose engine the loop would silently ignore (the loops call the
    model's parts directly and reduce gradients themselves, so accelerate's plugins never see them):
    an FSDP config needs the sharding key (``grpo.sharding`` for ``emorl train``, ``sft.sharding``
    for ``emorl sft``) set to ``fsdp2``, and a DeepSpeed config needs it set to ``zero<stage>`` of
    the same ZeRO stage. Other commands do not shard at all."""
    env = os.environ
    key = {"train": "grpo.sharding", "sft": "sft.sharding"}.get(command)
    if env.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        stage = env.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "?")
        if key is None:
            raise RuntimeError(
                f"emorl {command} does not shard: launch it with configs/accelerate/ddp.yaml or "
                "torchrun, not an accelerate DeepSpeed config"
            )
        if stage not in ("2", "3"):
            raise RuntimeError(
                f"accelerate DeepSpeed config with zero_stage {stage}: emorl supports ZeRO stages 2 "
                "and 3 (configs/accelerate/deepspeed_zero2.yaml, deepspeed_zero3.yaml)"
            )
        if sharding != f"zero{stage}":
            raise ValueError(
                f"launched with an accelerate DeepSpeed ZeRO-{stage} config but {key}={sharding}: "
                f"add {key}=zero{stage} (emorl {command} does not shard without it; emorl hands the "
                "model to DeepSpeed itself)"
            )
    if env.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        if key is None:
            raise RuntimeError(
                f"emorl {command} does not shard: launch it with configs/accelerate/ddp.yaml or "
                "torchrun, not an accelerate FSDP config"
            )
        if env.get("FSDP_VERSION", "1") != "2":
            raise RuntimeError(
                f"accelerate FSDP1 configs are not supported: use configs/accelerate/fsdp2.yaml "
                f"(fsdp_version: 2) with {key}=fsdp2"
            )
        if sharding != "fsdp2":
            raise ValueError(
                f"launched with an accelerate FSDP config but {key}={sharding}: add {key}=fsdp2 "
                f"(emorl {command} does not shard without it; emorl applies FSDP2 itself)"
            )


class PhaseTimer:
    """Named wall-clock phases of one step: ``with timer('rollout'): ...``; ``timer.seconds``."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t


def save_model_atomic(
    adapter, out: str | os.PathLike, state_dict: dict | None = None, *, run_config: str | None = None
) -> Path:
    """Save model + processor to ``out`` via a temporary folder and a rename (``state_dict``: the
    gathered weights of a sharded model; ``run_config``: the run's resolved config as YAML, saved
    as ``emorl_config.yaml`` so every command that uses the model reads how it was trained)."""
    from emorl.config import RUN_CONFIG_FILE

    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    adapter.save(tmp, state_dict=state_dict)
    if run_config is not None:
        (tmp / RUN_CONFIG_FILE).write_text(run_config)
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old)
    else:
        os.replace(tmp, out)
    return out
