"""MER2023 and MER2024 (zeroQiaoba/MERTools): 6 discrete classes, Chinese speech, valence.

MER2023 layout::

    MER2023/
      train/sample_00000000.mp4   train-label.csv    name,discrete,valence
      test1/...                   test1-label.csv    MER-MULTI
      test2/...                   test2-label.csv    MER-NOISE
      test3/...                   test3-label.csv    MER-SEMI, name,discrete (no valence)

MER2024 layout::

    MER2024/
      video-labeled/sample_00000000.mp4
      label-disdim.csv            name,discrete,valence,...
      check-openset.csv           optional: name,openset -> meta.openset

``discrete`` is a class name (neutral, angry, happy, sad, worried, surprise) or its id 0..5;
``worried`` maps to ``anxiety`` through the label vocabulary. Neither corpus has official folds.

Splits: MER2023 ``train``, ``test1`` (MER-MULTI), ``test2`` (MER-NOISE), ``test3`` (MER-SEMI),
``test`` (the three test sets), ``all`` (default), or several comma-separated (``train,test3``);
``subset`` is still accepted as an alias of ``split`` (not both). MER2024: ``train`` (the labeled
set) or ``all``; its only subset is ``labeled``.

Row-level rejects: ``malformed_row`` (a row with the wrong number of fields or an empty name: id
``<dataset>-<label file>:<line>``; a valence that is not a number: the row's usual id),
``unknown_label`` (a discrete label outside the six classes), ``duplicate`` (a name listed twice).
A ``check-openset.csv`` row that cannot be read is a ``malformed_row`` reject (id
``mer2024-check-openset.csv:<line>``); its sample is kept without ``meta.openset``.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import NamedTuple

from emorl.data.corpora.common import (
    Prepared,
    Reject,
    RowError,
    check_root,
    find_optional,
    find_path,
    index_files,
    label_for,
    line_id,
    media_problem,
    normalise_subset,
    parse_float,
    read_csv_dicts,
    require_no_fold,
    row_reject,
    select_splits,
    split_choices,
    split_from_subset,
    strip_media_ext,
)
from emorl.data.manifest import Sample
from emorl.data.media import VIDEO_EXTS

MER2023_SPLITS = ("train", "test1", "test2", "test3")
MER2023_GROUPS = {"test": ("test1", "test2", "test3")}
MER2023_SPLIT_CHOICES = split_choices(MER2023_SPLITS, MER2023_GROUPS)
MER2023_SUBSETS: tuple[str, ...] = ()  # ``subset`` names splits (alias of ``split``)
MER2024_SPLITS = ("train",)
MER2024_SPLIT_CHOICES = split_choices(MER2024_SPLITS)
MER2024_SUBSETS = ("labeled",)
TRACKS = {"train": "train&val", "test1": "MER-MULTI", "test2": "MER-NOISE", "test3": "MER-SEMI"}
DISCRETE = ("neutral", "angry", "happy", "sad", "worried", "surprise")  # ids 0..5
_EXTS = tuple(sorted(VIDEO_EXTS))


class LabelRows(NamedTuple):
    """A MER label CSV: readable rows and the rows that cannot become samples."""

    rows: list[tuple[int, str, str, str, float | None]]  # (line, name, canonical label, raw label, valence)
    bad: list[tuple[int, str | None, RowError]]  # (line, name when readable, error)


def read_labels(path: Path, dataset: str) -> LabelRows:
    """Rows of a MER label CSV (``name,discrete[,valence]``; a header without them is a DatasetError)."""
    table = read_csv_dicts(path, ("name", "discrete"))
    rows = []
    bad: list[tuple[int, str | None, RowError]] = [(n, None, e) for n, e in table.bad]
    for lineno, row in table.rows:
        where = f"{path}:{lineno}"
        name = strip_media_ext(row["name"]) or None
        try:
            if name is None:
                raise RowError(
                    "malformed_row", where, f"malformed row: empty name (expected e.g. sample_00000000), row {row}"
                )
            raw = row["discrete"]
            word = DISCRETE[int(raw)] if raw.isdigit() and int(raw) < len(DISCRETE) else raw
            label = label_for(dataset, word, where)
            valence = parse_float(row["valence"], where, "valence") if "valence" in row else None
        except RowError as e:
            bad.append((lineno, name, e))
            continue
        rows.append((lineno, name, label, raw, valence))
    return LabelRows(rows, sorted(bad, key=lambda b: b[0]))


def read_openset(path: Path) -> tuple[dict[str, list[str]], list[tuple[int, RowError]]]:
    """(name -> open-vocabulary labels, (line, RowError) unreadable rows) from ``check-openset.csv``
    (``name,openset`` list strings)."""
    out = {}
    table = read_csv_dicts(path, ("name", "openset"))
    bad = list(table.bad)
    for lineno, row in table.rows:
        text = row["openset"].strip()
        try:
            value = ast.literal_eval(text) if text.startswith("[") else text.split(",")
        except (ValueError, SyntaxError):
            value = None
        if not isinstance(value, list | tuple):
            bad.append(
                (
                    lineno,
                    RowError(
                        "malformed_row",
                        f"{path}:{lineno}",
                        f"malformed openset list {text!r}; expected e.g. ['happy', 'excited']",
                    ),
                )
            )
            continue
        out[strip_media_ext(row["name"])] = [str(v).strip() for v in value if str(v).strip()]
    return out, sorted(bad, key=lambda b: b[0])


def _rows_to_samples(
    dataset: str, root: Path, split: str, label_path: Path, video_dir: Path, extra: dict[str, dict]
) -> Prepared:
    videos = index_files(video_dir, _EXTS)
    samples, rejects, seen = [], [], {}
    table = read_labels(label_path, dataset)
    for lineno, name, err in table.bad:
        source = f"{label_path.relative_to(root)}:{lineno}"
        if name is None:
            rejects.append(
                row_reject(
                    line_id(dataset, root, label_path, lineno), label_path, err, {"split": split, "source": source}
                )
            )
        else:
            rejects.append(
                row_reject(
                    f"{dataset}-{split}-{name}",
                    videos.get(name, video_dir / f"{name}.mp4"),
                    err,
                    {"split": split, "source": source},
                )
            )
    for lineno, name, label, raw, valence in table.rows:
        sid = f"{dataset}-{split}-{name}"
        media = videos.get(name, video_dir / f"{name}.mp4")
        info = {"label": label, "split": split, "source": f"{label_path.name}:{lineno}"}
        if name in seen:
            rejects.append(Reject(sid, str(media), "duplicate", f"{name} already listed on line {seen[name]}", info))
            continue
        seen[name] = lineno
        problem = media_problem(media)
        if problem:
            rejects.append(Reject(sid, str(media), problem[0], problem[1], info))
            continue
        meta = {
            "name": name,
            "label_raw": raw,
            "modality": "audio+video",
            "source": info["source"],
            **extra.get(name, {}),
        }
        if valence is not None:
            meta["valence"] = valence
        if split in TRACKS and dataset == "mer2023":
            meta["track"] = TRACKS[split]
        samples.append(Sample(id=sid, media=str(media), label=label, dataset=dataset, split=split, meta=meta))
    return Prepared(samples, rejects)


def prepare_mer2023(
    root: str | os.PathLike, *, fold: int | None = None, subset: str | None = None, split: str | None = "all"
) -> Prepared:
    """MER2023 samples of ``split`` (train, test1, test2, test3, test = test1..3, all; comma-separate
    several); ``subset`` is accepted as an alias of ``split``."""
    root = check_root(root, "mer2023")
    require_no_fold("mer2023", fold)
    samples, rejects = [], []
    for split_name in split_from_subset("mer2023", subset, split, MER2023_SPLITS, MER2023_GROUPS):
        label_path = find_path(root, (f"{split_name}-label.csv",), what=f"MER2023 {split_name} labels", kind="file")
        video_dir = find_path(root, (split_name,), what=f"MER2023 {split_name} video folder", kind="dir")
        got = _rows_to_samples("mer2023", root, split_name, label_path, video_dir, {})
        samples += got.samples
        rejects += got.rejects
    return Prepared(samples, rejects)


def prepare_mer2024(
    root: str | os.PathLike, *, fold: int | None = None, subset: str | None = None, split: str | None = "all"
) -> Prepared:
    """MER2024 labeled samples (``video-labeled`` + ``label-disdim.csv``), split ``train``
    (``split`` train or all; ``subset`` labeled, the only one)."""
    root = check_root(root, "mer2024")
    require_no_fold("mer2024", fold)
    normalise_subset("mer2024", subset, MER2024_SUBSETS, "labeled")
    select_splits("mer2024", split, MER2024_SPLITS)
    label_path = find_path(root, ("label-disdim.csv",), what="MER2024 labels", kind="file")
    video_dir = find_path(root, ("video-labeled",), what="MER2024 labeled video folder", kind="dir")
    openset_path = find_optional(root, ("check-openset.csv",))
    openset, bad = read_openset(openset_path) if openset_path else ({}, [])
    extra = {name: {"openset": labels} for name, labels in openset.items()}
    got = _rows_to_samples("mer2024", root, "train", label_path, video_dir, extra)
    return Prepared(
        got.samples,
        [row_reject(line_id("mer2024", root, openset_path, n), openset_path, e) for n, e in bad] + got.rejects,
    )
