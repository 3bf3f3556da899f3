"""Checkpoints with exact resume, for both loops: the model (or its LoRA adapter) and optimizer
through the ``Strategy``, the scheduler, the loop's own state (``TrainState``: step, data order,
non-finite streak, anything else the loop keeps in ``extra``), and the Python and torch random
states of every process. Written to a temporary folder and renamed, then ``latest.json`` is
replaced atomically; SIGINT / SIGTERM ask the loop to write one after the current step."""

from __future__ import annotations

import json
import random
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from emorl.train.sharding import Strategy
from emorl.train_utils import barrier, world_info
from emorl.utils import atomic_write_json


@dataclass
class TrainState:
    """What a loop needs, besides weights and optimizer, to continue exactly: ``order`` (sample
    indices still to draw), ``extra`` (loop-specific, e.g. SFT's epoch and best validation score)."""

    step: int = 0
    order: list[int] = field(default_factory=list)
    nonfinite_streak: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def ckpt_root(out: Path) -> Path:
    return out / "checkpoints"


def save_checkpoint(
    out: Path, strategy: Strategy, sched, state: TrainState, rng: random.Random, keep: int, peft_model=None
) -> Path:
    """Write checkpoints/step-N atomically (temp folder + rename), then point latest.json at it.
    Process 0 writes the weights (gathered first when sharded) and the trainer state; a strategy
    that keeps its own partitions (DeepSpeed) has every process write them (``zero/``); every
    process writes its own RNG state. Keeps the ``keep`` newest step folders. Collective."""
    world, rank = world_info()
    model_sd, optim_sd = strategy.checkpoint_state()
    root = ckpt_root(out)
    name = f"step-{state.step:06d}"
    tmp, final = root / f".{name}.tmp", root / name
    if rank == 0:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        if model_sd is None:
            pass  # model and optimizer partitions: save_partitions below, on every process
        elif peft_model is not None:
            peft_model.save_pretrained(tmp / "adapter")
        else:  # the exact in-memory state dict (save_pretrained renames keys on the way to disk)
            torch.save(model_sd, tmp / "model_state.pt")
        torch.save(
            {
                "step": state.step,
                "order": list(state.order),
                "nonfinite_streak": state.nonfinite_streak,
                "extra": state.extra,
                "python_rng": rng.getstate(),
                "optimizer": optim_sd,
                "scheduler": sched.state_dict(),
                "world_size": world,
                "sharding": strategy.name,
            },
            tmp / "trainer_state.pt",
        )
    barrier()
    strategy.save_partitions(tmp)
    torch.save(
        {
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        },
        tmp / f"rng_rank{rank}.pt",
    )
    barrier()
    if rank == 0:
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        atomic_write_json(root / "latest.json", {"step": state.step, "path": name})
        done = sorted(p for p in root.glob("step-*") if p.is_dir())
        for old in done[:-keep] if keep > 0 else []:
            shutil.rmtree(old)
    barrier()
    return final


def load_checkpoint(
    out: Path, strategy: Strategy, sched, rng: random.Random, peft_model=None, *, section: str = "grpo"
) -> TrainState:
    """Restore what ``save_checkpoint`` wrote last (``section``: the loop's config section, named
    in errors). The number of processes and the sharding mode must be the checkpoint's."""
    root = ckpt_root(out)
    latest = root / "latest.json"
    if not latest.is_file():
        raise FileNotFoundError(f"{latest}: no checkpoint to resume from (was {section}.save_every set?)")
    path = root / json.loads(latest.read_text())["path"]
    st = torch.load(path / "trainer_state.pt", weights_only=False)
    world, rank = world_info()
    if st["world_size"] != world:
        raise ValueError(f"{path}: checkpoint was written by {st['world_size']} processes, resuming with {world}")
    if st.get("sharding", "none") != strategy.name:
        raise ValueError(
            f"{path}: checkpoint was written with {section}.sharding={st.get('sharding', 'none')}, "
            f"resuming with {section}.sharding={strategy.name}; resume with the same setting"
        )
    strategy.load_checkpoint(path, st, peft_model)
    sched.load_state_dict(st["scheduler"])
    rng.setstate(st["python_rng"])
    r = torch.load(path / f"rng_rank{rank}.pt", weights_only=False)
    torch.set_rng_state(r["torch_rng"])
    if r.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(r["cuda_rng"])
    return TrainState(
        step=st["step"],
        order=list(st["order"]),
        nonfinite_streak=st["nonfinite_streak"],
        extra=dict(st.get("extra") or {}),
    )


def truncate_log(path: Path, step: int) -> None:
    """Drop the rows of a JSONL log written after ``step`` (what an interrupted run logged past
    its checkpoint), so a resumed run continues the log instead of duplicating it."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= step]
    path.write_text("".join(line + "\n" for line in keep))


class StopFlag:
    """SIGINT/SIGTERM set a flag; the loop saves a checkpoint after the current step and exits.
    A second signal stops at once."""

    def __init__(self, name: str = "train"):
        self.name = name
        self.signal: int | None = None
        self._old: dict = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not in the main thread
                pass
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:  # second signal: stop now
            raise KeyboardInterrupt
        self.signal = signum
        print(f"\n[{self.name}] received signal {signum}: finishing this step, saving a checkpoint and exiting")

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
