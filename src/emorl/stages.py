"""The stage runner every multi-stage experiment uses (demo, compare, cv, protocol): a stage is a
name, an output folder and a function; it runs once, writes ``DONE.json`` (its returned summary and
its wall time) atomically into its folder, and is skipped with that summary when the marker is
there, so an interrupted experiment resumes where it stopped.

An experiment can be written as a list of ``Stage`` records run in order by ``run_stages`` over one
context object (its ``out`` folder, and a ``results`` dict that collects each stage's summary):
the list says what the experiment is, the functions what each step does. ``emorl.compare``'s image
and clip comparisons are such lists.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emorl.utils import atomic_write_json

MARKER = "DONE.json"


def done(d: Path) -> dict | None:
    """The summary a finished stage left in ``d``, or None."""
    f = Path(d) / MARKER
    return json.loads(f.read_text()) if f.is_file() else None


class Stages:
    """Runs stages and keeps their wall times in ``seconds`` (name -> s); prints ``[tag] ...``."""

    def __init__(self, tag: str):
        self.tag = tag
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str, d: Path, fn: Callable[[], dict | None]) -> dict:
        prev = done(d)
        if prev is not None:
            print(f"[{self.tag}] {name}: already done ({d}), skipping")
            self.seconds[name] = prev.get("seconds", 0.0)
            return prev
        print(f"[{self.tag}] {name} ...")
        t = time.perf_counter()
        info = {k: v for k, v in (fn() or {}).items() if k != "history"}
        info["seconds"] = round(time.perf_counter() - t, 1)
        self.seconds[name] = info["seconds"]
        Path(d).mkdir(parents=True, exist_ok=True)
        atomic_write_json(Path(d) / MARKER, info)
        print(f"[{self.tag}] {name}: done in {info['seconds']:.0f}s")
        return info


@dataclass(frozen=True)
class Stage:
    """One step of an experiment: ``fn(ctx)`` runs once into ``ctx.out / dir`` and returns its
    summary (a dict, or None); ``name`` is what the log prints and the key in ``ctx.results``."""

    name: str
    dir: str
    fn: Callable[[Any], dict | None]


def run_stages(stages: Iterable[Stage], ctx: Any, runner: Stages) -> dict[str, dict]:
    """Run ``stages`` in order with ``runner`` (finished ones are skipped with their saved
    summary); ``ctx`` needs ``out`` (a folder) and ``results`` (a dict), where each summary lands
    under the stage's name (without its ``seconds``). Returns ``ctx.results``."""
    stages = list(stages)
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"stage names must be unique: {names}")
    for st in stages:
        info = runner(st.name, Path(ctx.out) / st.dir, lambda st=st: st.fn(ctx))
        ctx.results[st.name] = {k: v for k, v in info.items() if k != "seconds"}
    return ctx.results
