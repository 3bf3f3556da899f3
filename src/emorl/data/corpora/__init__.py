"""Adapters for the real emotion corpora in their official layouts.

``prepare(name, root, fold=..., subset=...)`` returns ``Prepared(samples, rejects)``: every sample
carries its canonical ``label``, ``split``, ``fold`` (None for corpora without folds) and
``dataset=name``; every listed row that could not become a sample is a ``Reject`` with a reason.
Layout problems (missing annotation files, unknown labels, malformed rows, unknown folds) raise
``DatasetError`` naming the file, line and value. See docs/datasets.md for each layout.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from emorl.data.corpora import cremad, dfew, emer, ferv39k, mafw, meld, mer, ravdess
from emorl.data.corpora.common import DatasetError, Prepared, Reject

PrepareFn = Callable[..., Prepared]

CORPORA: dict[str, PrepareFn] = {
    "dfew": dfew.prepare,
    "mafw": mafw.prepare,
    "ravdess": ravdess.prepare,
    "crema-d": cremad.prepare,
    "mer2023": mer.prepare_mer2023,
    "mer2024": mer.prepare_mer2024,
    "meld": meld.prepare,
    "emer": emer.prepare,
    "ferv39k": ferv39k.prepare,
}

__all__ = ["CORPORA", "DatasetError", "Prepared", "Reject", "prepare"]


def prepare(name: str, root: str | os.PathLike, *, fold: int | None = None, subset: str | None = None,
            **options: Any) -> Prepared:
    """Samples and rejects of corpus ``name`` under ``root``.

    ``fold``: only that fold's rows (None: every fold's rows, each with its fold).
    ``subset``: a corpus-specific variant (e.g. DFEW ``frames``, MAFW ``compound``, RAVDESS ``song``).
    ``options``: corpus-specific keywords (EMER: ``mer2023_root``, ``mer2024_root``).
    Ids are unique: a repeated id is moved to the rejects as ``duplicate``.
    """
    try:
        fn = CORPORA[name]
    except KeyError:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(CORPORA)}") from None
    got = fn(root, fold=fold, subset=subset, **options)
    return dedupe(got)


def dedupe(got: Prepared) -> Prepared:
    """Keep the first sample of each id; later ones become ``duplicate`` rejects."""
    seen: set[str] = set()
    samples, rejects = [], list(got.rejects)
    for s in got.samples:
        if s.id in seen:
            rejects.append(Reject(s.id, s.media, "duplicate", "id already used by an earlier row",
                                  {"label": s.label, "split": s.split, "fold": s.fold}))
            continue
        seen.add(s.id)
        samples.append(s)
    return Prepared(samples, rejects)
