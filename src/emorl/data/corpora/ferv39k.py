"""FERV39k (wangyanckxx/FERV39k): 22 scenes, 7 classes, face-frame folders without audio.

Layout::

    FERV39k/
      2_ClipsforFaceCrop/<Scene>/<Emotion>/<4-digit id>/*.jpg
      4_setups/All_scenes/train_All.csv   space-separated, no header: "Action/Happy/0267 Happy"
      4_setups/All_scenes/test_All.csv

Samples are video-only: ``media`` is the frame folder, ``meta.modality="video"``, ``meta.scene``.
``subset`` picks splits (train, test, comma-separated; default both). No folds.
"""

from __future__ import annotations

import os
from pathlib import Path

from emorl.data.corpora.common import (
    DatasetError,
    Prepared,
    Reject,
    check_root,
    find_path,
    label_for,
    media_problem,
    read_text,
    require_no_fold,
    split_list,
)
from emorl.data.manifest import Sample

NAME = "ferv39k"
SPLITS = ("train", "test")
BASES = ("", "FERV39k/", "FERV39K/")


def read_setup(path: Path) -> list[tuple[int, str, str, str, str, str]]:
    """(line, scene, emotion folder, clip id, raw label, canonical label) rows of a setup CSV."""
    text, _ = read_text(path, ("utf-8-sig", "cp1252"))
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        fields = line.split()
        parts = fields[0].strip("/").split("/") if fields else []
        if len(fields) != 2 or len(parts) != 3:
            raise DatasetError(f"{where}: malformed row: expected '<Scene>/<Emotion>/<id> <Label>', "
                               f"got {line.strip()!r}")
        rows.append((lineno, *parts, fields[1], label_for(NAME, fields[1], where)))
    return rows


def prepare(root: str | os.PathLike, *, fold: int | None = None, subset: str | None = None) -> Prepared:
    """FERV39k samples of the splits in ``subset`` (default train and test)."""
    root = check_root(root, NAME)
    require_no_fold(NAME, fold)
    clip_root = find_path(root, [f"{b}2_ClipsforFaceCrop" for b in BASES], what="FERV39k face-crop clips", kind="dir")
    samples: list[Sample] = []
    rejects: list[Reject] = []
    for split in split_list(NAME, subset, SPLITS):
        setup = find_path(root, [f"{b}4_setups/All_scenes/{split}_All.csv" for b in BASES],
                          what=f"FERV39k {split} setup", kind="file")
        for lineno, scene, emo_dir, clip, raw, label in read_setup(setup):
            sid = f"{NAME}-{split}-{scene}-{emo_dir}-{clip}"
            media = clip_root / scene / emo_dir / clip
            source = f"{setup.name}:{lineno}"
            problem = media_problem(media)
            if problem:
                rejects.append(Reject(sid, str(media), problem[0], "frame folder not found",
                                      {"label": label, "split": split, "source": source}))
                continue
            meta = {"scene": scene, "clip": clip, "label_raw": raw, "modality": "video", "source": source}
            samples.append(Sample(id=sid, media=str(media), label=label, dataset=NAME, split=split, meta=meta))
    return Prepared(samples, rejects)
