"""The layering of src/emorl, kept by CI: every import between emorl's packages goes down (or
sideways within a layer), never up, and no two packages import each other.

The layers, lowest first (docs/architecture.md draws the same picture):

0. ``utils``                      helpers with no emorl imports
1. ``config``                     the one config schema
2. ``data``                       manifests, labels, media decoding, corpora (not the synthetic world)
3. ``recipes``                    prompts, the answer parser, rewards (read labels from ``data``)
4. ``data.synthetic``             the synthetic world and its traces for every recipe
5. ``models``                     one adapter per family (may read ``data``'s media helpers)
6. ``prompting`` ``train_utils``  a sample into a model prompt; saving and logging
7. ``train`` ``eval`` ``perception``  training machinery; evaluation (not RL); tower pretraining
8. ``rl`` ``sft``                 the two training stages
9. ``runs``                       a run's orchestration (config → model → stage → eval)
10. ``stages`` ``demo`` ``compare`` ``cv`` ``traces``  experiments as stage lists
11. ``serve`` ``share`` ``errors`` ``cli``  the interfaces

Every import counts, including the lazy ones inside functions (they break the layering as much)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "emorl"

LAYERS: dict[str, int] = {
    "utils": 0,
    "config": 1,
    "data": 2,
    "recipes": 3,
    "data.synthetic": 4,
    "models": 5,
    "prompting": 6,
    "train_utils": 6,
    "train": 7,
    "eval": 7,
    "perception": 7,
    "rl": 8,
    "sft": 8,
    "runs": 9,
    "stages": 10,
    "demo": 10,
    "compare": 10,
    "cv": 10,
    "traces": 10,
    "serve": 11,
    "share": 11,
    "errors": 11,
    "cli": 11,
}


def unit_of(module: str) -> str:
    """The layering unit of a dotted module name under emorl: ``emorl.data.synthetic.world`` ->
    ``data.synthetic``, ``emorl.rl.grpo`` -> ``rl``, ``emorl.prompting`` -> ``prompting``."""
    parts = module.split(".")[1:]
    if parts[:2] == ["data", "synthetic"]:
        return "data.synthetic"
    return parts[0] if parts else "emorl"


def module_name(path: Path, src: Path) -> str:
    rel = path.relative_to(src).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(["emorl", *parts])


def imports_of(tree: ast.AST, module: str) -> list[tuple[str, int]]:
    """``(imported emorl module, line)`` for every import in ``tree`` (relative ones resolved
    against ``module``), at any depth: top-level, in functions, under ``if TYPE_CHECKING``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "emorl"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # from . import x / from ..y import z
                base = module.split(".")[: -node.level]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.split(".")[0] == "emorl":
                # `from emorl import demo` imports the module emorl.demo
                names = [f"{name}.{a.name}" for a in node.names] if name == "emorl" else [name]
                found += [(n, node.lineno) for n in names]
    return found


def violations(src: Path) -> tuple[list[str], dict[tuple[str, str], list[str]]]:
    """Upward imports (``file:line: unit (layer) imports unit (layer)``) and the package-level
    import graph ``{(from, to): [where, ...]}`` of the tree under ``src`` (an ``emorl`` package)."""
    bad, graph = [], defaultdict(list)
    for path in sorted(src.rglob("*.py")):
        module = module_name(path, src)
        here = unit_of(module)
        for target, line in imports_of(ast.parse(path.read_text(), str(path)), module):
            there = unit_of(target)
            if there == here or there == "emorl":
                continue
            where = f"{path.relative_to(src.parent)}:{line}"
            missing = [u for u in (here, there) if u not in LAYERS]
            if missing:
                bad.append(f"{where}: {' and '.join(missing)} has no layer (tests/unit/test_layers.py: LAYERS)")
                continue
            graph[(here, there)].append(where)
            if LAYERS[there] > LAYERS[here]:
                bad.append(f"{where}: {here} (layer {LAYERS[here]}) imports {target} ({there}, layer {LAYERS[there]})")
    return bad, graph


def test_every_import_goes_down():
    bad, _ = violations(SRC)
    assert not bad, "imports against the layering (docs/architecture.md):\n" + "\n".join(bad)


def test_no_two_packages_import_each_other():
    _, graph = violations(SRC)
    both = sorted({tuple(sorted(k)) for k in graph if (k[1], k[0]) in graph})
    assert not both, "\n".join(f"{a} <-> {b}: {graph[(a, b)][0]} and {graph[(b, a)][0]}" for a, b in both)


def test_every_package_has_a_layer():
    units = {unit_of(module_name(p, SRC)) for p in SRC.rglob("*.py")} - {"emorl"}
    assert units <= set(LAYERS), f"add {sorted(units - set(LAYERS))} to LAYERS (and docs/architecture.md)"


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    src = tmp_path / "emorl"
    for rel, text in files.items():
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return src


@pytest.mark.parametrize(
    "code",
    [
        "from emorl.rl.grpo import grpo_loss\n",  # top level
        "def f():\n    from emorl.runs import load_run\n",  # lazy, inside a function
        "import emorl.rl.trainer\n",  # plain import
        "from .. import runs\n",  # relative import
    ],
)
def test_the_check_catches_an_upward_import(tmp_path, code):
    """eval importing rl or runs (what issue 19 found) is reported, with its file and line."""
    src = _tree(tmp_path, {"eval/evaluate.py": code, "rl/grpo.py": "", "runs.py": ""})
    bad, _ = violations(src)
    assert len(bad) == 1 and bad[0].startswith("emorl/eval/evaluate.py:") and "eval (layer 7) imports" in bad[0]


def test_the_check_passes_downward_and_sideways_imports(tmp_path):
    src = _tree(
        tmp_path,
        {
            "eval/evaluate.py": "from emorl.models.adapter import Modality\nfrom emorl.eval import stats\n",
            "data/synthetic/world.py": "from emorl.recipes.prompts import PromptSpec\n",
            "models/adapter.py": "",
            "recipes/prompts.py": "",
        },
    )
    assert violations(src)[0] == []


def test_the_synthetic_world_is_above_data(tmp_path):
    """data.synthetic may read recipes; the rest of data may not (it is below recipes)."""
    src = _tree(
        tmp_path,
        {
            "data/loader.py": "from emorl.recipes.prompts import PromptSpec\n",
            "data/synthetic/traces.py": "from emorl.recipes.prompts import PromptSpec\n",
        },
    )
    bad, _ = violations(src)
    assert len(bad) == 1 and bad[0].startswith("emorl/data/loader.py:1: data (layer 2)")


def test_a_new_package_needs_a_layer(tmp_path):
    src = _tree(tmp_path, {"eval/evaluate.py": "from emorl.newthing import x\n"})
    bad, _ = violations(src)
    assert bad == ["emorl/eval/evaluate.py:1: newthing has no layer (tests/unit/test_layers.py: LAYERS)"]
