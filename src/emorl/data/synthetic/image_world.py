"""The synthetic still-image emotion world: Mikels-8 scenes for CPU tests and the demo.

Each image has a label (one of the 8 Mikels classes: amusement, anger, awe, contentment, disgust,
excitement, fear, sadness) and ground-truth cues drawn from per-class distributions that overlap
on purpose:

* ``valence`` (-1..1) and ``arousal`` (0..1): clipped Gaussians around the class's affect
  (``AFFECT``); they set the palette (warm vs cold hue) and the restless strokes. They separate the
  four valence x arousal quadrants, never the classes inside one (amusement / excitement,
  awe / contentment, anger / disgust / fear);
* ``brightness`` and ``colorfulness`` (0..1, EmoSet's attribute names): valence and arousal plus
  noise;
* ``scene`` (``SCENE_P``): a few likely scenes per class, shared between classes (fireworks for
  excitement and amusement, storms for fear, anger and awe), every scene possible for every class;
* ``face`` (``FACE_P`` then ``EXPRESSION_P``): none, or an expression shared between classes
  (laughing for amusement and excitement, screaming for fear and excitement, wide-eyed wonder for
  awe and fear).

Splits: ``train``, ``coldstart`` (SET traces for the cold start), ``test`` (the flat style),
``ood`` (the same cue distributions drawn in the ``sketch`` style: outlines on tinted paper with
grain) and, when asked for, ``pretrain`` (flat images whose cues, not labels, pretrain a tiny
model's vision tower: ``emorl.perception``; not in ``DEFAULT_SIZES``). Labels are balanced per split (counts differ by at most one). Every image is seeded from
``(seed, split, index)`` only, so its bytes do not depend on other images; ids are
``synimg-<split>-<index>``, so splits never share an image.

``synthesize_images(out_dir, seed, sizes)`` writes ``images/<split>/<id>.png`` (or .jpg),
``<split>.jsonl`` (dataset ``synthetic-images``, ``meta.modality = "image"``, ``meta.cues`` = the
true cues, ``meta.style``, ``meta.seed``) and ``world.json``. SET cold-start traces come from the
true cues (``emorl.data.synthetic.image_traces``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emorl.data.labels import LABEL_SETS
from emorl.data.manifest import Sample, write_manifest
from emorl.data.synthetic.scenes import EXPRESSIONS, SCENES, STYLES, render_scene
from emorl.utils import atomic_write_bytes, atomic_write_json

GENERATOR_VERSION = "1.0"
DATASET = "synthetic-images"
CLASSES: tuple[str, ...] = LABEL_SETS[DATASET]  # canonical: amusement, angry, awe, contentment, ...
SPLITS: tuple[str, ...] = ("train", "coldstart", "test", "ood", "pretrain")
SPLIT_CODES: dict[str, int] = {"train": 10, "coldstart": 11, "test": 12, "ood": 13, "pretrain": 14}
SPLIT_STYLE: dict[str, str] = {
    "train": "flat",
    "coldstart": "flat",
    "test": "flat",
    "ood": "sketch",
    "pretrain": "flat",
}
DEFAULT_SIZES: dict[str, int] = {"train": 800, "coldstart": 160, "test": 240, "ood": 240}
FORMATS = {"png": ".png", "jpeg": ".jpg"}

# class -> (valence mean, arousal mean); SDs below. Quadrants: (+, high) amusement, excitement;
# (+, low) awe, contentment; (-, high) anger, disgust, fear; (-, low) sadness (EMO-R3's map).
AFFECT: dict[str, tuple[float, float]] = {
    "amusement": (0.6, 0.65),
    "excitement": (0.7, 0.85),
    "awe": (0.45, 0.35),
    "contentment": (0.6, 0.15),
    "angry": (-0.6, 0.8),
    "disgust": (-0.5, 0.55),
    "fear": (-0.7, 0.75),
    "sad": (-0.6, 0.2),
}
VALENCE_SD, AROUSAL_SD, ATTR_SD = 0.3, 0.16, 0.1
SCENE_FLOOR = 0.02  # every scene has at least this weight for every class (before normalising)
_SCENE_MAIN: dict[str, dict[str, float]] = {
    "amusement": {"party": 0.45, "beach": 0.15, "meadow": 0.1, "fireworks": 0.1},
    "excitement": {"fireworks": 0.4, "party": 0.25, "beach": 0.1, "mountains": 0.05},
    "awe": {"mountains": 0.4, "starry_sky": 0.35, "storm": 0.05, "beach": 0.05},
    "contentment": {"meadow": 0.4, "beach": 0.3, "room": 0.1, "starry_sky": 0.05},
    "angry": {"fire": 0.35, "storm": 0.2, "room": 0.15, "garbage": 0.05},
    "disgust": {"garbage": 0.45, "swamp": 0.35, "room": 0.05},
    "fear": {"dark_forest": 0.35, "storm": 0.25, "fire": 0.1, "swamp": 0.05},
    "sad": {"rain": 0.45, "room": 0.2, "dark_forest": 0.1},
}
SCENE_P: dict[str, dict[str, float]] = {
    c: {
        s: (_SCENE_MAIN[c].get(s, 0.0) + SCENE_FLOOR) / (sum(_SCENE_MAIN[c].values()) + SCENE_FLOOR * len(SCENES))
        for s in SCENES
    }
    for c in _SCENE_MAIN
}
FACE_P: dict[str, float] = {
    "amusement": 0.7,
    "excitement": 0.5,
    "awe": 0.3,
    "contentment": 0.4,
    "angry": 0.7,
    "disgust": 0.5,
    "fear": 0.5,
    "sad": 0.6,
}
EXPRESSION_P: dict[str, dict[str, float]] = {
    "amusement": {"laugh": 0.6, "smile": 0.35, "blank": 0.05},
    "excitement": {"laugh": 0.4, "smile": 0.3, "wonder": 0.15, "scream": 0.15},
    "awe": {"wonder": 0.7, "serene": 0.2, "blank": 0.1},
    "contentment": {"serene": 0.5, "smile": 0.45, "blank": 0.05},
    "angry": {"frown": 0.75, "scream": 0.15, "blank": 0.1},
    "disgust": {"grimace": 0.7, "frown": 0.2, "blank": 0.1},
    "fear": {"scream": 0.6, "wonder": 0.25, "tears": 0.05, "blank": 0.1},
    "sad": {"tears": 0.6, "blank": 0.25, "frown": 0.15},
}
CUE_NAMES = ("valence", "arousal", "brightness", "colorfulness", "scene", "face")


@dataclass
class ImageSpec:
    """Everything that determines one image; rendering is a pure function of it."""

    id: str
    split: str
    index: int
    label: str
    style: str
    seed: list[int]
    cues: dict[str, Any] = field(default_factory=dict)

    def meta(self) -> dict[str, Any]:
        return {"modality": "image", "style": self.style, "cues": dict(self.cues), "seed": list(self.seed)}


def _check_split(split: str) -> None:
    if split not in SPLIT_CODES:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


def _choice(probs: Mapping[str, float], rng: np.random.Generator) -> str:
    keys = list(probs)
    p = np.asarray([probs[k] for k in keys], float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _r3(x: float) -> float:
    return round(float(x), 3)


def draw_cues(label: str, rng: np.random.Generator) -> dict[str, Any]:
    """The ground-truth cues of one image of class ``label`` (module docstring)."""
    if label not in AFFECT:
        raise ValueError(f"label {label!r} is not one of {', '.join(CLASSES)}")
    mv, ma = AFFECT[label]
    v = float(np.clip(rng.normal(mv, VALENCE_SD), -1, 1))
    a = float(np.clip(rng.normal(ma, AROUSAL_SD), 0, 1))
    brightness = float(np.clip(0.5 + 0.3 * v + rng.normal(0, ATTR_SD), 0, 1))
    colorfulness = float(np.clip(0.4 + 0.25 * v + 0.25 * (a - 0.5) + rng.normal(0, ATTR_SD), 0, 1))
    scene = _choice(SCENE_P[label], rng)
    face = _choice(EXPRESSION_P[label], rng) if rng.random() < FACE_P[label] else "none"
    return {
        "valence": _r3(v),
        "arousal": _r3(a),
        "brightness": _r3(brightness),
        "colorfulness": _r3(colorfulness),
        "scene": scene,
        "face": face,
        "hue_jitter": _r3(rng.uniform(-15, 15)),
    }


def plan_labels(seed: int, split: str, n: int) -> list[str]:
    """The labels of a split's ``n`` images: balanced (counts differ by at most one), shuffled by
    ``(seed, split)``."""
    _check_split(split)
    rng = np.random.default_rng([seed, SPLIT_CODES[split], 0])
    labels = [CLASSES[i % len(CLASSES)] for i in range(n)]
    return [labels[int(i)] for i in rng.permutation(n)]


def make_spec(seed: int, split: str, index: int, label: str) -> ImageSpec:
    _check_split(split)
    seed_list = [int(seed), SPLIT_CODES[split], 1, int(index)]
    rng = np.random.default_rng(seed_list)
    return ImageSpec(
        f"synimg-{split}-{index:05d}", split, index, label, SPLIT_STYLE[split], seed_list, draw_cues(label, rng)
    )


def split_specs(seed: int, split: str, n: int) -> list[ImageSpec]:
    """All image specs of one split (no rendering)."""
    return [make_spec(seed, split, i, lab) for i, lab in enumerate(plan_labels(seed, split, n))]


def render_image(spec: ImageSpec, size: int = 112) -> np.ndarray:
    """(size, size, 3) uint8 pixels of a spec (its own generator: the same spec draws the same image)."""
    if size < 32:
        raise ValueError(f"image size must be at least 32 pixels, got {size}")
    rng = np.random.default_rng([*spec.seed, 2])
    return render_scene(spec.cues, spec.style, size, rng)


def encode(pixels: np.ndarray, fmt: str) -> bytes:
    """PNG (lossless) or JPEG (quality 90, no optimisation passes) bytes; deterministic."""
    import io

    from PIL import Image

    b = io.BytesIO()
    if fmt == "png":
        Image.fromarray(pixels).save(b, "PNG", compress_level=6)
    else:
        Image.fromarray(pixels).save(b, "JPEG", quality=90)
    return b.getvalue()


def describe_world(seed: int, sizes: Mapping[str, int], size: int, fmt: str) -> dict[str, Any]:
    """The JSON description of a generated world (parameters, not data)."""
    return {
        "generator": "emorl.data.synthetic.image_world",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "sizes": dict(sizes),
        "image_size": size,
        "format": fmt,
        "classes": list(CLASSES),
        "split_style": dict(SPLIT_STYLE),
        "affect": {c: list(v) for c, v in AFFECT.items()},
        "sd": {"valence": VALENCE_SD, "arousal": AROUSAL_SD, "attributes": ATTR_SD},
        "scene_p": SCENE_P,
        "face_p": FACE_P,
        "expression_p": EXPRESSION_P,
        "scenes": list(SCENES),
        "expressions": list(EXPRESSIONS),
        "styles": {k: v.__dict__ for k, v in STYLES.items()},
    }


def synthesize_images(
    out_dir: str | os.PathLike,
    seed: int = 0,
    sizes: Mapping[str, int] | None = None,
    *,
    size: int = 112,
    fmt: str = "png",
    progress: bool = True,
) -> dict[str, Path]:
    """Generate the world into ``out_dir``; returns {split: manifest path}. Same arguments =>
    byte-identical files. ``sizes``: split -> image count (None: ``DEFAULT_SIZES``)."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown image format {fmt!r}; expected one of {', '.join(FORMATS)}")
    sizes = dict(DEFAULT_SIZES if sizes is None else sizes)
    for split, n in sizes.items():
        _check_split(split)
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"size of split {split!r} must be a non-negative int, got {n!r}")
    from tqdm.auto import tqdm

    out = Path(out_dir)
    manifests: dict[str, Path] = {}
    total = sum(sizes.values())
    with tqdm(total=total, desc="synthesize images", unit="img", disable=not progress) as bar:
        for split in SPLITS:
            if not sizes.get(split):
                continue
            samples = []
            for spec in split_specs(seed, split, sizes[split]):
                path = out / "images" / split / f"{spec.id}{FORMATS[fmt]}"
                atomic_write_bytes(path, encode(render_image(spec, size), fmt))
                samples.append(Sample(spec.id, str(path), spec.label, DATASET, split, meta=spec.meta()))
                bar.update(1)
            manifests[split] = out / f"{split}.jsonl"
            write_manifest(manifests[split], samples, relative_to=out)
    atomic_write_json(out / "world.json", describe_world(seed, sizes, size, fmt))
    return manifests


def cue_overlap(samples_meta: list[dict[str, Any]], labels: list[str], cue: str) -> float:
    """Accuracy of the best single-cue rule (each value of a categorical cue -> its most frequent
    class) on the given images: how far one cue alone goes (well below 1 by design)."""
    from collections import Counter, defaultdict

    by: dict[str, Counter] = defaultdict(Counter)
    for m, lab in zip(samples_meta, labels, strict=True):
        by[str(m["cues"][cue])][lab] += 1
    return sum(c.most_common(1)[0][1] for c in by.values()) / max(1, len(labels))


__all__ = [
    "AFFECT",
    "CLASSES",
    "DATASET",
    "DEFAULT_SIZES",
    "EXPRESSION_P",
    "FACE_P",
    "SCENE_P",
    "SPLITS",
    "SPLIT_STYLE",
    "ImageSpec",
    "cue_overlap",
    "draw_cues",
    "make_spec",
    "plan_labels",
    "render_image",
    "split_specs",
    "synthesize_images",
]
