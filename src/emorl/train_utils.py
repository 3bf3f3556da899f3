"""Pieces both training loops use: optimizer and schedule, micro-batches, JSONL metrics, checkpoints."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float, total_steps: int, warmup_steps: int,
                   schedule: str = "linear"):
    """AdamW over trainable parameters with warm-up then linear (R1-Omni GRPO) or cosine (SFT) decay."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters (are all towers frozen?)")
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)

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


def freeze_towers(model: torch.nn.Module, *, vision: bool, audio: bool) -> None:
    """Freeze the vision and/or audio encoder of a Qwen-Omni thinker (no autograd graphs for them)."""
    inner = getattr(model, "model", model)
    for flag, name in ((vision, "visual"), (audio, "audio_tower")):
        if flag:
            tower = getattr(inner, name, None)
            if tower is None:
                raise ValueError(f"model has no {name!r} tower to freeze")
            tower.requires_grad_(False)


def chunks(seq: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


class JsonlLogger:
    """Appends one JSON object a line to ``path``, flushed per line, so a crash loses nothing written."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = self.path.open("a", encoding="utf-8")

    def log(self, row: dict[str, Any]) -> None:
        self._f.write(json.dumps(row, default=float) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


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


def save_model_atomic(adapter, out: str | os.PathLike) -> Path:
    """Save model + processor to ``out`` via a temporary folder and a rename."""
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    adapter.save(tmp)
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
