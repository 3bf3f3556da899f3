"""DFEW (https://dfew-dataset.github.io/): 7 classes, 5 folds from ``EmoLabel_DataSplit``.

Layout::

    DFEW/
      EmoLabel_DataSplit/{train,test}(single-labeled)/set_1.csv .. set_5.csv   (or "(single_labeled)")
      Clip/original/02522.mp4 | 2522.mp4        original clips with audio (default subset)
      Clip/clip_224x224/02522/*.jpg             face frames, no audio   (subset="frames")
      Clip/clip_224x224_16f/02522/*.jpg         16 interpolated frames  (subset="frames-16f")
      Annotation/annotation.xlsx                optional: 7 vote columns -> meta.votes

``set_k.csv`` has the header ``video_name,label`` with unpadded clip numbers and labels 1..7
(1 Happy, 2 Sad, 3 Neutral, 4 Angry, 5 Surprise, 6 Disgust, 7 Fear).
"""

from __future__ import annotations

import os
from pathlib import Path

from emorl.data.corpora.common import (
    DatasetError,
    Prepared,
    Reject,
    check_root,
    find_optional,
    find_path,
    index_dirs,
    index_files,
    media_problem,
    normalise_subset,
    parse_int,
    read_csv_rows,
    read_xlsx_rows,
    select_folds,
)
from emorl.data.labels import LABEL_SETS
from emorl.data.manifest import Sample

NAME = "dfew"
FOLDS = (1, 2, 3, 4, 5)
CLASSES = LABEL_SETS[NAME]  # label id k (1-based) -> CLASSES[k - 1]
SPLIT_DIRS = {
    "train": ("train(single-labeled)", "train(single_labeled)"),
    "test": ("test(single-labeled)", "test(single_labeled)"),
}
# subset -> (candidate media folders, media kind, sample modality)
SUBSETS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "original": (("Clip/original", "Clip/Original", "original", "videos", "Clip/videos"), "video", "audio+video"),
    "frames": (("Clip/clip_224x224", "clip_224x224"), "frames", "video"),
    "frames-16f": (("Clip/clip_224x224_16f", "clip_224x224_16f"), "frames", "video"),
}


def fold_file(root: Path, split: str, fold: int) -> Path:
    """``EmoLabel_DataSplit/<split>(single-labeled)/set_<fold>.csv``, either spelling."""
    cands = [f"EmoLabel_DataSplit/{d}/set_{fold}.csv" for d in SPLIT_DIRS[split]]
    return find_path(root, cands, what=f"DFEW fold {fold} {split} list", kind="file")


def read_fold_file(path: Path) -> list[tuple[int, int, str]]:
    """(line, clip number, canonical label) rows of a ``set_k.csv`` (header ``video_name,label``)."""
    rows = read_csv_rows(path)
    out = []
    for i, (lineno, fields) in enumerate(rows):
        where = f"{path}:{lineno}"
        if i == 0 and not fields[0].strip().split(".")[0].isdigit():
            continue  # header
        if len(fields) != 2:
            raise DatasetError(f"{where}: malformed row: expected 2 fields (video_name,label), got {len(fields)}")
        clip = parse_int(os.path.splitext(fields[0].strip())[0], where, "video_name")
        raw = fields[1].strip()
        lab_id = parse_int(raw, where, "label") if raw.lstrip("-").isdigit() else None
        if lab_id is None or not 1 <= lab_id <= len(CLASSES):
            raise DatasetError(f"{where}: unknown label {raw!r}; DFEW labels are 1..7 "
                               f"({', '.join(f'{k + 1} {c}' for k, c in enumerate(CLASSES))})")
        out.append((lineno, clip, CLASSES[lab_id - 1]))
    return out


def _numeric_index(entries: dict[str, Path]) -> dict[int, Path]:
    """``{"02522": p, "2522": q}`` -> ``{2522: p}`` (padded name preferred); non-numeric names skipped."""
    out: dict[int, Path] = {}
    for name in sorted(entries, key=lambda n: (-len(n), n)):
        if name.isdigit():
            out.setdefault(int(name), entries[name])
    return out


def read_votes(path: Path) -> dict[int, dict[str, int]]:
    """clip number -> {class: votes} from ``Annotation/annotation.xlsx`` (columns matched by name)."""
    rows = read_xlsx_rows(path)
    if not rows:
        raise DatasetError(f"{path}: empty spreadsheet")
    head_row, header = rows[0]
    names = [str(h or "").strip().lower() for h in header]
    clip_col = next((i for i, n in enumerate(names) if "clip" in n or n in ("order", "name", "video_name")), None)
    vote_cols = {c: next((i for i, n in enumerate(names) if c in n), None) for c in CLASSES}
    missing = [c for c, i in vote_cols.items() if i is None]
    if clip_col is None or missing:
        raise DatasetError(f"{path}:{head_row}: cannot find the clip column and 7 vote columns "
                           f"(missing {', '.join(missing) or 'clip name'}); header is {header}")
    votes: dict[int, dict[str, int]] = {}
    for rowno, cells in rows[1:]:
        where = f"{path}:{rowno}"
        clip = parse_int(os.path.splitext(str(cells[clip_col]))[0], where, "clip")
        votes[clip] = {c: parse_int(cells[i] if cells[i] is not None else 0, where, f"vote {c}")
                       for c, i in vote_cols.items()}
    return votes


def prepare(root: str | os.PathLike, *, fold: int | None = None, subset: str | None = None) -> Prepared:
    """DFEW samples of ``fold`` (all 5 when None); ``subset`` original (default), frames, frames-16f."""
    root = check_root(root, NAME)
    subset = normalise_subset(NAME, subset, tuple(SUBSETS), "original")
    folds = select_folds(NAME, fold, FOLDS)
    cands, kind, modality = SUBSETS[subset]
    media_dir = find_path(root, cands, what=f"DFEW {subset} clip folder", kind="dir")
    entries = index_files(media_dir, (".mp4", ".avi")) if kind == "video" else index_dirs(media_dir)
    media = _numeric_index(entries)
    xlsx = find_optional(root, ("Annotation/annotation.xlsx", "annotation.xlsx"))
    votes = read_votes(xlsx) if xlsx else {}

    samples: list[Sample] = []
    rejects: list[Reject] = []
    for k in folds:
        for split in ("train", "test"):
            path = fold_file(root, split, k)
            for lineno, clip, label in read_fold_file(path):
                sid = f"{NAME}-f{k}-{split}-{clip:05d}"
                expected = media.get(clip) or media_dir / (f"{clip:05d}.mp4" if kind == "video" else f"{clip:05d}")
                meta = {"clip": f"{clip:05d}", "modality": modality, "source": f"{path.relative_to(root)}:{lineno}"}
                problem = media_problem(expected)
                if problem:
                    rejects.append(Reject(sid, str(expected), problem[0], problem[1],
                                          {"label": label, "fold": k, "split": split}))
                    continue
                if clip in votes:
                    meta["votes"] = votes[clip]
                samples.append(Sample(id=sid, media=str(expected), label=label, dataset=NAME,
                                      split=split, fold=k, meta=meta))
    return Prepared(samples, rejects)
