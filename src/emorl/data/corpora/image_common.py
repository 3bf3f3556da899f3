"""Helpers shared by the image corpus adapters (EmoSet, Emotion6, FI, EmotionROI, hub copies).

Image samples carry ``media`` = the image file and ``meta.modality = "image"``; ``data check``
decodes them with ``emorl.data.images.load_image``. Corpora without an official split (Emotion6,
FI) get emorl's deterministic split: each image's id is hashed (SHA-1 of ``"<dataset>:<id>"``)
to a number in [0, 1) and bucketed by the split fractions, so an image's split never depends on
which other images exist, on the file system's order or on a random seed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emorl.data.corpora.common import RowError, is_junk
from emorl.data.images import IMAGE_EXTS
from emorl.data.manifest import Sample


def hash_fraction(key: str) -> float:
    """A stable number in [0, 1) for ``key`` (the first 8 bytes of its SHA-1).

    >>> round(hash_fraction("fi:fi-awe-awe_0001"), 6) == round(hash_fraction("fi:fi-awe-awe_0001"), 6)
    True
    """
    return int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big") / 2**64


def hash_split(dataset: str, sid: str, fractions: Sequence[tuple[str, float]]) -> str:
    """The split of sample ``sid`` under ``fractions`` ((split, share) pairs summing to 1)."""
    x, acc = hash_fraction(f"{dataset}:{sid}"), 0.0
    for name, share in fractions:
        acc += share
        if x < acc:
            return name
    return fractions[-1][0]


def inside(base: Path, rel: str, where: str) -> Path:
    """``base / rel`` resolved, which must stay inside ``base``; else a ``bad_path`` RowError
    (a listed path such as ``../../etc/passwd`` never reaches the file system)."""
    rel = rel.strip().replace("\\", "/")
    if not rel or rel.startswith("/") or os.path.isabs(rel):
        raise RowError("bad_path", where, f"image path {rel!r} must be relative to {base}")
    p = (base / rel).resolve()
    if p != base and base not in p.parents:
        raise RowError("bad_path", where, f"image path {rel!r} points outside {base}")
    return p


def is_image_name(name: str) -> bool:
    """A file name with an image extension (``emorl.data.images.IMAGE_EXTS``), junk excluded."""
    return not is_junk(name) and os.path.splitext(name)[1].lower() in IMAGE_EXTS


def image_files(folder: Path) -> list[Path]:
    """Regular non-junk files of ``folder``, sorted by name (images and others alike)."""
    with os.scandir(folder) as it:
        return sorted((Path(e.path) for e in it if e.is_file() and not is_junk(e.name)), key=lambda p: p.name)


def image_sample(dataset: str, sid: str, path: Path, label: str, split: str, meta: dict[str, Any]) -> Sample:
    """An image sample: ``meta.modality = "image"`` first, then the corpus's own fields."""
    return Sample(
        id=sid,
        media=str(path),
        label=label,
        dataset=dataset,
        split=split,
        fold=None,
        meta={"modality": "image", **meta},
    )
