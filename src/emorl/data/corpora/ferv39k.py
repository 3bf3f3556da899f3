"""FERV39k (wangyanckxx/FERV39k): 22 scenes, 7 classes, face-frame folders without audio.

Layout::

    FERV39k/
      2_ClipsforFaceCrop/<Scene>/<Emotion>/<4-digit id>/*.jpg
      4_setups/All_scenes/train_All.csv   space-separated, no header: "Action/Happy/0267 Happy"
      4_setups/All_scenes/test_All.csv

Samples are video-only: ``media`` is the frame folder, ``meta.modality="video"``, ``meta.scene``.
Splits: ``train``, ``test`` or ``all`` (default); ``subset`` is still accepted as an alias of
``split`` (not both). No folds.

Row-level rejects: ``malformed_row`` (not ``<Scene>/<Emotion>/<id> <Label>``; id
``ferv39k-4_setups/All_scenes/<split>_All.csv:<line>``), ``unknown_label`` (a label outside the
seven classes; the row's usual id).
"""

from __future__ import annotations

import os
from pathlib import Path

from emorl.data.corpora.common import (
    Prepared,
    Reject,
    RowError,
    check_root,
    find_path,
    label_for,
    line_id,
    media_problem,
    read_text,
    require_no_fold,
    row_reject,
    split_choices,
    split_from_subset,
)
from emorl.data.manifest import Sample

NAME = "ferv39k"
SPLITS = ("train", "test")
SPLIT_CHOICES = split_choices(SPLITS)
SUBSETS: tuple[str, ...] = ()  # ``subset`` names splits (alias of ``split``)
BASES = ("", "FERV39k/", "FERV39K/")


def read_setup(path: Path) -> tuple[list[tuple[int, str, str, str, str]], list[tuple[int, RowError]]]:
    """((line, scene, emotion folder, clip id, raw label) rows, (line, RowError) malformed rows) of a setup CSV."""
    text, _ = read_text(path, ("utf-8-sig", "cp1252"))
    rows, bad = [], []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        parts = fields[0].strip("/").split("/") if fields else []
        if len(fields) != 2 or len(parts) != 3 or not all(parts):
            bad.append(
                (
                    lineno,
                    RowError(
                        "malformed_row",
                        f"{path}:{lineno}",
                        f"malformed row: expected '<Scene>/<Emotion>/<id> <Label>', got {line.strip()!r}",
                    ),
                )
            )
            continue
        rows.append((lineno, *parts, fields[1]))
    return rows, bad


def prepare(
    root: str | os.PathLike, *, fold: int | None = None, subset: str | None = None, split: str | None = "all"
) -> Prepared:
    """FERV39k samples of ``split`` (train, test, all); ``subset`` is accepted as an alias of ``split``."""
    root = check_root(root, NAME)
    require_no_fold(NAME, fold)
    splits = split_from_subset(NAME, subset, split, SPLITS)
    clip_root = find_path(root, [f"{b}2_ClipsforFaceCrop" for b in BASES], what="FERV39k face-crop clips", kind="dir")
    samples: list[Sample] = []
    rejects: list[Reject] = []
    for split_name in splits:
        setup = find_path(
            root,
            [f"{b}4_setups/All_scenes/{split_name}_All.csv" for b in BASES],
            what=f"FERV39k {split_name} setup",
            kind="file",
        )
        rows, bad = read_setup(setup)
        for lineno, err in bad:
            rejects.append(
                row_reject(
                    line_id(NAME, root, setup, lineno),
                    setup,
                    err,
                    {"split": split_name, "source": f"{setup.name}:{lineno}"},
                )
            )
        for lineno, scene, emo_dir, clip, raw in rows:
            sid = f"{NAME}-{split_name}-{scene}-{emo_dir}-{clip}"
            media = clip_root / scene / emo_dir / clip
            source = f"{setup.name}:{lineno}"
            try:
                label = label_for(NAME, raw, f"{setup}:{lineno}")
            except RowError as e:
                rejects.append(row_reject(sid, media, e, {"split": split_name, "source": source}))
                continue
            problem = media_problem(media)
            if problem:
                rejects.append(
                    Reject(
                        sid,
                        str(media),
                        problem[0],
                        "frame folder not found",
                        {"label": label, "split": split_name, "source": source},
                    )
                )
                continue
            meta = {"scene": scene, "clip": clip, "label_raw": raw, "modality": "video", "source": source}
            samples.append(Sample(id=sid, media=str(media), label=label, dataset=NAME, split=split_name, meta=meta))
    return Prepared(samples, rejects)
