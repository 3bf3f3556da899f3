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

Splits: ``train``, ``test`` or ``all`` (default), fold-aware: ``fold=k, split="train"`` reads only
``train(single-labeled)/set_k.csv``; ``fold=None, split="test"`` every fold's test list (the five
test lists partition the clips, so each clip appears once).

Rejects besides missing media: ``malformed_row`` (not two fields, a clip number that is not an
integer; id ``dfew-<list file>:<line>``), ``unknown_label`` (a label outside 1..7; the row's usual
id), and ``malformed_row`` for an ``annotation.xlsx`` row whose clip or votes are not integers (id
``dfew-Annotation/annotation.xlsx:<row>``; that clip's sample is kept without ``meta.votes``).
"""

from __future__ import annotations

import os
from pathlib import Path

from emorl.data.corpora.common import (
    DatasetError,
    Prepared,
    Reject,
    RowError,
    check_root,
    find_optional,
    find_path,
    index_dirs,
    index_files,
    line_id,
    media_problem,
    normalise_subset,
    parse_int,
    read_csv_rows,
    read_xlsx_rows,
    row_reject,
    select_folds,
    select_splits,
    split_choices,
)
from emorl.data.labels import LABEL_SETS
from emorl.data.manifest import Sample

NAME = "dfew"
FOLDS = (1, 2, 3, 4, 5)
SPLITS = ("train", "test")
SPLIT_CHOICES = split_choices(SPLITS)
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


def read_fold_file(path: Path) -> tuple[list[tuple[int, int, str]], list[tuple[int, int | None, RowError]]]:
    """Rows of a ``set_k.csv`` (header ``video_name,label``): ((line, clip number, canonical label)
    rows, (line, clip number or None, RowError) rows that cannot be used)."""
    rows = read_csv_rows(path)
    out, bad = [], []
    for i, (lineno, fields) in enumerate(rows):
        where = f"{path}:{lineno}"
        if i == 0 and not fields[0].strip().split(".")[0].isdigit():
            continue  # header
        clip = None
        try:
            if len(fields) != 2:
                raise RowError(
                    "malformed_row",
                    where,
                    f"malformed row: expected 2 fields (video_name,label), got {len(fields)}: {fields!r}",
                )
            clip = parse_int(os.path.splitext(fields[0].strip())[0], where, "video_name")
            if clip < 1:
                clip, value = None, fields[0]
                raise RowError(
                    "malformed_row", where, f"malformed row: video_name must be a clip number >= 1, got {value!r}"
                )
            out.append((lineno, clip, _label(fields[1].strip(), where)))
        except RowError as e:
            bad.append((lineno, clip, e))
    return out, bad


def _label(raw: str, where: str) -> str:
    """DFEW label id ``raw`` (1..7) as its canonical class; an ``unknown_label`` RowError otherwise."""
    if raw.isdigit() and 1 <= int(raw) <= len(CLASSES):
        return CLASSES[int(raw) - 1]
    raise RowError(
        "unknown_label",
        where,
        f"unknown label {raw!r}; DFEW labels are 1..7 ({', '.join(f'{k + 1} {c}' for k, c in enumerate(CLASSES))})",
    )


def _numeric_index(entries: dict[str, Path]) -> dict[int, Path]:
    """``{"02522": p, "2522": q}`` -> ``{2522: p}`` (padded name preferred); non-numeric names skipped."""
    out: dict[int, Path] = {}
    for name in sorted(entries, key=lambda n: (-len(n), n)):
        if name.isdigit():
            out.setdefault(int(name), entries[name])
    return out


def read_votes(path: Path) -> tuple[dict[int, dict[str, int]], list[tuple[int, RowError]]]:
    """(clip number -> {class: votes}, (row, RowError) unreadable rows) from ``Annotation/annotation.xlsx``
    (columns matched by name; a header without them is a DatasetError)."""
    rows = read_xlsx_rows(path)
    if not rows:
        raise DatasetError(f"{path}: empty spreadsheet")
    head_row, header = rows[0]
    names = [str(h or "").strip().lower() for h in header]
    clip_col = next((i for i, n in enumerate(names) if "clip" in n or n in ("order", "name", "video_name")), None)
    vote_cols = {c: next((i for i, n in enumerate(names) if c in n), None) for c in CLASSES}
    missing = [c for c, i in vote_cols.items() if i is None]
    if clip_col is None or missing:
        raise DatasetError(
            f"{path}:{head_row}: cannot find the clip column and 7 vote columns "
            f"(missing {', '.join(missing) or 'clip name'}); header is {header}"
        )
    votes: dict[int, dict[str, int]] = {}
    bad: list[tuple[int, RowError]] = []
    for rowno, cells in rows[1:]:
        where = f"{path}:{rowno}"
        cells = list(cells) + [None] * (len(header) - len(cells))
        try:
            clip = parse_int(os.path.splitext(str(cells[clip_col]))[0], where, "clip")
            votes[clip] = {
                c: parse_int(cells[i] if cells[i] is not None else 0, where, f"vote {c}") for c, i in vote_cols.items()
            }
        except RowError as e:
            bad.append((rowno, e))
    return votes, bad


def prepare(
    root: str | os.PathLike, *, fold: int | None = None, subset: str | None = None, split: str | None = "all"
) -> Prepared:
    """DFEW samples of ``fold`` (all 5 when None) and ``split`` (train, test, all);
    ``subset`` original (default), frames, frames-16f."""
    root = check_root(root, NAME)
    subset = normalise_subset(NAME, subset, tuple(SUBSETS), "original")
    folds = select_folds(NAME, fold, FOLDS)
    splits = select_splits(NAME, split, SPLITS)
    cands, kind, modality = SUBSETS[subset]
    media_dir = find_path(root, cands, what=f"DFEW {subset} clip folder", kind="dir")
    entries = index_files(media_dir, (".mp4", ".avi")) if kind == "video" else index_dirs(media_dir)
    media = _numeric_index(entries)

    def expected(clip: int) -> Path:
        return media.get(clip) or media_dir / (f"{clip:05d}.mp4" if kind == "video" else f"{clip:05d}")

    xlsx = find_optional(root, ("Annotation/annotation.xlsx", "annotation.xlsx"))
    votes, bad_votes = read_votes(xlsx) if xlsx else ({}, [])

    samples: list[Sample] = []
    rejects: list[Reject] = [row_reject(line_id(NAME, root, xlsx, n), xlsx, e) for n, e in bad_votes]
    for k in folds:
        for split_name in splits:
            path = fold_file(root, split_name, k)
            rows, bad = read_fold_file(path)
            for lineno, clip, err in bad:
                sid = f"{NAME}-f{k}-{split_name}-{clip:05d}" if clip is not None else line_id(NAME, root, path, lineno)
                rejects.append(
                    row_reject(
                        sid,
                        expected(clip) if clip is not None else path,
                        err,
                        {"fold": k, "split": split_name, "source": f"{path.relative_to(root)}:{lineno}"},
                    )
                )
            for lineno, clip, label in rows:
                sid = f"{NAME}-f{k}-{split_name}-{clip:05d}"
                clip_path = expected(clip)
                meta = {"clip": f"{clip:05d}", "modality": modality, "source": f"{path.relative_to(root)}:{lineno}"}
                problem = media_problem(clip_path)
                if problem:
                    rejects.append(
                        Reject(
                            sid,
                            str(clip_path),
                            problem[0],
                            problem[1],
                            {"label": label, "fold": k, "split": split_name},
                        )
                    )
                    continue
                if clip in votes:
                    meta["votes"] = votes[clip]
                samples.append(
                    Sample(id=sid, media=str(clip_path), label=label, dataset=NAME, split=split_name, fold=k, meta=meta)
                )
    return Prepared(samples, rejects)
