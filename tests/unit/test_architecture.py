"""The package's shape: only a model family's own package names its classes and attributes, and
no module imports itself back through a cycle (read from the source with ``ast``, nothing run)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from emorl.models.registry import FAMILIES, SHARED_PACKAGES

SRC = Path(__file__).resolve().parents[2] / "src" / "emorl"

# what only a family's own package may name: Qwen classes (e.g. Qwen2_5OmniThinker..., QwenOmniAdapter),
# the Qwen models' module attributes and tensor names, and the family packages themselves
FAMILY_SPECIFIC = [
    re.compile(r"\bQwen[0-9_]*[A-Z]\w*"),
    re.compile(r"\.(visual|audio_tower|language_model)\b"),
    re.compile(r"""getattr\([^)]*["']visual["']"""),
    re.compile(
        r"""["'](audio_tower|language_model|pixel_values_videos|video_grid_thw|input_features|"""
        r"""feature_attention_mask|video_second_per_grid|second_per_grid_ts|mm_token_type_ids)["']"""
    ),
    re.compile(r"\bpixel_values_videos\b|\bget_rope_index\b|\buse_audio_in_video\b"),
    re.compile(r"emorl\.models\.(qwen_omni|qwen_vl|qwen|parts)\b"),
]


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _allowed(module: str) -> bool:
    """Family packages (and the packages they share) may name their own classes; the registry
    names where each family lives."""
    own = {f.package for f in FAMILIES.values()} | set(SHARED_PACKAGES) | {"emorl.models.parts"}
    return module == "emorl.models.registry" or any(module == p or module.startswith(p + ".") for p in own)


def _code_lines(path: Path) -> list[tuple[int, str]]:
    """The file's lines without comments (docstrings count: they are read as the module's story)."""
    out = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        code = line.split("#", 1)[0] if "#" in line and not re.search(r"""["'][^"']*#""", line) else line
        out.append((i, code))
    return out


def test_only_family_packages_name_family_classes_and_attributes():
    offences = []
    for path in sorted(SRC.rglob("*.py")):
        module = _module_name(path)
        if _allowed(module):
            continue
        for i, line in _code_lines(path):
            for pattern in FAMILY_SPECIFIC:
                m = pattern.search(line)
                if m:
                    offences.append(f"{path.relative_to(SRC.parent)}:{i}: {m.group(0)!r}")
    assert not offences, "family-specific names outside the family packages:\n" + "\n".join(offences)


def test_the_check_would_catch_an_offence():
    """The patterns match what they are for (a test that could not fail would prove nothing)."""
    for line in (
        "from transformers import Qwen2_5OmniThinkerForConditionalGeneration",
        "tower = model.model.visual",
        "getattr(inner, 'audio_tower')",
        "mm['pixel_values_videos']",
        "from emorl.models.qwen_omni import QwenOmniAdapter",
        "lm = inner.language_model",
    ):
        assert any(p.search(line) for p in FAMILY_SPECIFIC), line
    for line in ("Qwen2.5-Omni and Qwen3-Omni thinkers", "the visual words", "adapter.towers()['vision']"):
        assert not any(p.search(line) for p in FAMILY_SPECIFIC), line


def _imports() -> dict[str, set[str]]:
    """module -> the emorl modules it imports (at any level of the file, lazily or not)."""
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[str]] = {m: set() for m in modules}
    for m, path in modules.items():
        package = m if path.name == "__init__.py" else m.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for t in targets:
                r = resolve(t) if t.startswith("emorl") else None
                if r and r != m:
                    edges[m].add(r)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle():
    edges = _imports()
    assert "emorl.models.group" in edges["emorl.models.base"]  # the walk sees imports
    assert not _cycles(edges)


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize(
    "module",
    [
        "emorl.models.group",
        "emorl.models.decoder",
        "emorl.models.encoder_cache",
        "emorl.rl.trainer",
        "emorl.train.sharding",
        "emorl.train.zero",
        "emorl.train.session",
        "emorl.train.setup",
        "emorl.train.checkpoint",
        "emorl.train_utils",
        "emorl.sft.loop",
        "emorl.perception",
    ],
)
def test_generic_modules_import_no_family(module):
    edges = _imports()
    assert not {e for e in edges[module] if e.startswith(("emorl.models.qwen", "emorl.models.parts"))}
