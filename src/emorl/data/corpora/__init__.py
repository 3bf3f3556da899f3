"""Adapters for the real emotion corpora in their official layouts.

``prepare(name, root, fold=..., subset=..., split=...)`` returns ``Prepared(samples, rejects)``:
every sample carries its canonical ``label``, ``split``, ``fold`` (None for corpora without folds),
``dataset=name`` and an absolute ``media`` path (the root is resolved, so a relative root works from
any working directory); every listed row or file that could not become a sample is a ``Reject``
with a reason code, so one bad annotation never stops a corpus. Layout problems (missing root,
annotation file or media folder, a CSV without its header columns, unknown fold, subset or split)
raise ``DatasetError`` naming the file and what was expected. See docs/datasets.md for each layout.

``corpus_folds``, ``corpus_subsets`` and ``corpus_splits`` say what each corpus accepts (for
``--help`` texts and for iterating over folds).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

from emorl.data.corpora import (
    cremad,
    dfew,
    emer,
    emoset,
    emotion6,
    emotionroi,
    ferv39k,
    fi,
    hub,
    mafw,
    meld,
    mer,
    ravdess,
)
from emorl.data.corpora.common import DatasetError, Prepared, Reject, RowError

PrepareFn = Callable[..., Prepared]


class CorpusSpec(NamedTuple):
    """What one corpus accepts.

    folds: official (or customary) folds, () without folds; subsets: the variants ``subset=``
    takes, the default first (() when ``subset`` only names splits, as an alias of ``split``);
    splits: every value ``split=`` takes, ``all`` last (comma-separated combinations also work);
    extracts: a hub-format corpus whose images are extracted from parquet files (``prepare`` needs
    ``image_dir=``; ``emorl data prepare`` passes ``images/`` beside the manifest).
    """

    prepare: PrepareFn
    folds: tuple[int, ...]
    subsets: tuple[str, ...]
    splits: tuple[str, ...]
    extracts: bool = False


SPECS: dict[str, CorpusSpec] = {
    "dfew": CorpusSpec(dfew.prepare, dfew.FOLDS, tuple(dfew.SUBSETS), dfew.SPLIT_CHOICES),
    "mafw": CorpusSpec(mafw.prepare, mafw.FOLDS, tuple(mafw.SUBSETS), mafw.SPLIT_CHOICES),
    "ravdess": CorpusSpec(ravdess.prepare, ravdess.FOLDS, tuple(ravdess.SUBSETS), ravdess.SPLIT_CHOICES),
    "crema-d": CorpusSpec(cremad.prepare, cremad.FOLDS, cremad.SUBSETS, cremad.SPLIT_CHOICES),
    "mer2023": CorpusSpec(mer.prepare_mer2023, (), mer.MER2023_SUBSETS, mer.MER2023_SPLIT_CHOICES),
    "mer2024": CorpusSpec(mer.prepare_mer2024, (), mer.MER2024_SUBSETS, mer.MER2024_SPLIT_CHOICES),
    "meld": CorpusSpec(meld.prepare, (), meld.SUBSETS, meld.SPLIT_CHOICES),
    "emer": CorpusSpec(emer.prepare, (), emer.SUBSETS, emer.SPLIT_CHOICES),
    "ferv39k": CorpusSpec(ferv39k.prepare, (), ferv39k.SUBSETS, ferv39k.SPLIT_CHOICES),
    # still images (EMO-R3's ground): official layouts, then hub-format parquet copies
    "emoset": CorpusSpec(emoset.prepare, (), emoset.SUBSETS, emoset.SPLIT_CHOICES),
    "emotion6": CorpusSpec(emotion6.prepare, (), emotion6.SUBSETS, emotion6.SPLIT_CHOICES),
    "fi": CorpusSpec(fi.prepare, (), fi.SUBSETS, fi.SPLIT_CHOICES),
    "emotionroi": CorpusSpec(emotionroi.prepare, (), emotionroi.SUBSETS, emotionroi.SPLIT_CHOICES),
    **{
        name: CorpusSpec(partial(hub.prepare_hub, name), (), hub.SUBSETS, hub.split_choices_of(name), extracts=True)
        for name in hub.HUB
    },
}

CORPORA: dict[str, PrepareFn] = {name: spec.prepare for name, spec in SPECS.items()}

__all__ = [
    "CORPORA",
    "SPECS",
    "CorpusSpec",
    "DatasetError",
    "Prepared",
    "Reject",
    "RowError",
    "corpus_folds",
    "corpus_splits",
    "corpus_subsets",
    "prepare",
]


def _spec(name: str) -> CorpusSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(SPECS)}") from None


def corpus_folds(name: str) -> tuple[int, ...]:
    """The folds of corpus ``name`` (() when it has none); DatasetError for an unknown corpus."""
    return _spec(name).folds


def corpus_subsets(name: str) -> tuple[str, ...]:
    """The subsets of corpus ``name``, the default first (() when it has none)."""
    return _spec(name).subsets


def corpus_splits(name: str) -> tuple[str, ...]:
    """Every value ``split=`` takes for corpus ``name``, ``all`` last (e.g. dfew: train, test, all)."""
    return _spec(name).splits


def prepare(
    name: str,
    root: str | os.PathLike,
    *,
    fold: int | None = None,
    subset: str | None = None,
    split: str | None = "all",
    **options: Any,
) -> Prepared:
    """Samples and rejects of corpus ``name`` under ``root``.

    ``fold``: only that fold's rows (None: every fold's rows, each with its fold).
    ``subset``: a corpus-specific variant (e.g. DFEW ``frames``, MAFW ``compound``, RAVDESS ``song``).
    ``split``: which rows, fold-aware (``train``, ``test``, ``all`` = None, a corpus's own names such
    as MELD ``dev`` or MER2023 ``test1``; see ``corpus_splits``). ``fold=k, split="train"`` gives
    fold k's training rows only; ``fold=None, split="test"`` every fold's test rows.
    ``options``: corpus-specific keywords (EMER: ``mer2023_root``, ``mer2024_root``; hub-format
    image corpora: ``image_dir``, where their images are extracted).
    Ids are unique: a repeated id is moved to the rejects as ``duplicate``.
    """
    got = _spec(name).prepare(root, fold=fold, subset=subset, split=split, **options)
    return dedupe(got)


def dedupe(got: Prepared) -> Prepared:
    """Keep the first sample of each id; later ones become ``duplicate`` rejects."""
    seen: set[str] = set()
    samples, rejects = [], list(got.rejects)
    for s in got.samples:
        if s.id in seen:
            rejects.append(
                Reject(
                    s.id,
                    s.media,
                    "duplicate",
                    "id already used by an earlier row",
                    {"label": s.label, "split": s.split, "fold": s.fold},
                )
            )
            continue
        seen.add(s.id)
        samples.append(s)
    return Prepared(samples, rejects)
