"""EMER (arXiv 2306.15401; zeroQiaoba/AffectGPT ``EMER/``): explained emotions on MER2023 videos,
turned into cold-start SFT traces.

Root layout (the annotation CSVs from the AffectGPT repository beside the MER video folders)::

    root/
      EMER/dataset-v1/gt-eng.csv                  names,emotions,subtitles,reasons   (100 samples)
      EMER/dataset-v2/final-EMER-reason.csv       name,chinese,english              (332 samples)
      MER2024/video-labeled/ + label-disdim.csv   (override: mer2024_root=...)
      MER2023/{train,test1,test2,test3}/ + *-label.csv  (override: mer2023_root=...)

Subsets: ``v2`` (default), ``v1``, ``all`` (both; ids carry the version, 39 names occur in both).

Every sample gets ``meta.trace = "<think>{english reasons}</think><answer>{label}</answer>"`` with the
canonical label, split ``coldstart``. Labels are never invented: v1 uses its ``emotions`` column
(MER2023's discrete labels); v2 has no label column, so its label comes from MER2024
``label-disdim.csv``, else from MER2023 ``*-label.csv``; a v2 row found in neither is
``Reject(reason="no_label")``.

Splits: ``coldstart`` (every EMER row) or ``all``. No folds.

Row-level rejects: ``malformed_row`` (a row with the wrong number of fields or an empty name: id
``emer-<annotation file>:<line>``), ``unknown_label`` (a v1 ``emotions`` value outside the
vocabulary); a v2 row whose only MER label row is itself malformed or unknown gets that row's
reason, with a detail naming both files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from emorl.data.corpora.common import (
    DatasetError,
    Prepared,
    Reject,
    RowError,
    check_root,
    find_path,
    index_files,
    label_for,
    line_id,
    media_problem,
    normalise_subset,
    read_csv_dicts,
    require_no_fold,
    row_reject,
    select_splits,
    split_choices,
    strip_media_ext,
)
from emorl.data.corpora.mer import MER2023_SPLITS, read_labels, read_openset
from emorl.data.manifest import Sample
from emorl.data.media import VIDEO_EXTS

NAME = "emer"
SUBSETS = ("v2", "v1", "all")
SPLITS = ("coldstart",)
SPLIT_CHOICES = split_choices(SPLITS)
V1 = ("EMER/dataset-v1/gt-eng.csv", "dataset-v1/gt-eng.csv", "gt-eng.csv")
V2 = ("EMER/dataset-v2/final-EMER-reason.csv", "dataset-v2/final-EMER-reason.csv", "final-EMER-reason.csv")


def make_trace(reasons: str, label: str) -> str:
    """The cold-start target: reasoning in ``<think>``, the canonical label in ``<answer>``."""
    return f"<think>{reasons.strip()}</think><answer>{label}</answer>"


class MerIndex(NamedTuple):
    """What EMER needs from the MER folders."""

    videos: dict[str, Path]  # name -> video file
    labels: dict[str, tuple[str, str]]  # name -> (canonical label, "folder/file.csv:line")
    bad_labels: dict[str, RowError]  # name -> why its MER label row could not be read (no good row)
    openset: dict[str, list[str]]  # name -> MER2024 open-vocabulary labels
    video_dir: Path  # first existing video folder (for paths of missing videos)


def mer_sources(root: Path, mer2023_root: str | os.PathLike | None, mer2024_root: str | os.PathLike | None) -> MerIndex:
    """Index the MER2024 (first) and MER2023 video folders and label files."""
    r24 = Path(mer2024_root).expanduser().resolve() if mer2024_root else root / "MER2024"
    r23 = Path(mer2023_root).expanduser().resolve() if mer2023_root else root / "MER2023"
    video_dirs = [r24 / "video-labeled"] + [r23 / s for s in MER2023_SPLITS]
    if not any(d.is_dir() for d in video_dirs):
        tried = "\n  ".join(str(d) for d in video_dirs)
        raise DatasetError(f"EMER needs the MER2023/MER2024 videos; no video folder found, expected one of:\n  {tried}")
    videos: dict[str, Path] = {}
    for d in video_dirs:
        if d.is_dir():
            for name, p in index_files(d, tuple(sorted(VIDEO_EXTS))).items():
                videos.setdefault(name, p)
    labels: dict[str, tuple[str, str]] = {}
    bad: dict[str, RowError] = {}
    label_files = [r24 / "label-disdim.csv"] + [r23 / f"{s}-label.csv" for s in MER2023_SPLITS]
    for path in label_files:
        if path.is_file():
            table = read_labels(path, "mer2024")
            for lineno, name, label, _, _ in table.rows:
                labels.setdefault(name, (label, f"{path.parent.name}/{path.name}:{lineno}"))
            for _, name, err in table.bad:
                if name is not None:
                    bad.setdefault(name, err)
    openset_path = r24 / "check-openset.csv"
    openset = read_openset(openset_path)[0] if openset_path.is_file() else {}
    return MerIndex(
        videos,
        labels,
        {k: v for k, v in bad.items() if k not in labels},
        openset,
        next(d for d in video_dirs if d.is_dir()),
    )


Row = tuple[int, str, str | None, str, dict[str, str]]  # (line, name, label or None, reasons, extra meta)


def _read_v1(path: Path) -> tuple[list[Row], list[tuple[int, str | None, RowError]]]:
    table = read_csv_dicts(path, ("names", "emotions", "reasons"))
    rows: list[Row] = []
    bad: list[tuple[int, str | None, RowError]] = [(n, None, e) for n, e in table.bad]
    for lineno, row in table.rows:
        where = f"{path}:{lineno}"
        name = strip_media_ext(row["names"])
        try:
            if not name:
                raise RowError("malformed_row", where, f"malformed row: empty names field, row {row}")
            label = label_for(NAME, row["emotions"], where)
        except RowError as e:
            bad.append((lineno, name or None, e))
            continue
        extra = {"emotion_raw": row["emotions"], "subtitle": row.get("subtitles", "")}
        rows.append((lineno, name, label, row["reasons"], extra))
    return rows, bad


def _read_v2(path: Path) -> tuple[list[Row], list[tuple[int, str | None, RowError]]]:
    table = read_csv_dicts(path, ("name", "english"))
    rows: list[Row] = []
    bad: list[tuple[int, str | None, RowError]] = [(n, None, e) for n, e in table.bad]
    for lineno, row in table.rows:
        name = strip_media_ext(row["name"])
        if not name:
            bad.append(
                (
                    lineno,
                    None,
                    RowError("malformed_row", f"{path}:{lineno}", f"malformed row: empty name field, row {row}"),
                )
            )
            continue
        rows.append((lineno, name, None, row["english"], {"reason_zh": row.get("chinese", "")}))
    return rows, bad


def prepare(
    root: str | os.PathLike,
    *,
    fold: int | None = None,
    subset: str | None = None,
    split: str | None = "all",
    mer2023_root: str | os.PathLike | None = None,
    mer2024_root: str | os.PathLike | None = None,
) -> Prepared:
    """EMER cold-start traces (``subset`` v2 default, v1, all; ``split`` coldstart or all) joined with
    MER videos and labels."""
    root = check_root(root, NAME)
    require_no_fold(NAME, fold)
    subset = normalise_subset(NAME, subset, SUBSETS, "v2")
    select_splits(NAME, split, SPLITS)
    versions = ("v1", "v2") if subset == "all" else (subset,)
    files = {v: find_path(root, V1 if v == "v1" else V2, what=f"EMER {v} annotations", kind="file") for v in versions}
    mer = mer_sources(root, mer2023_root, mer2024_root)

    samples: list[Sample] = []
    rejects: list[Reject] = []
    for version, path in files.items():
        rows, bad = (_read_v1 if version == "v1" else _read_v2)(path)
        for lineno, name, err in bad:
            sid = f"{NAME}-{version}-{name}" if name else line_id(NAME, root, path, lineno)
            media = mer.videos.get(name, mer.video_dir / f"{name}.mp4") if name else path
            rejects.append(row_reject(sid, media, err, {"version": version, "source": f"{path.name}:{lineno}"}))
        for lineno, name, label, reasons, extra in rows:
            sid = f"{NAME}-{version}-{name}"
            source = f"{path.name}:{lineno}"
            label_source = source
            if label is None and name in mer.labels:
                label, label_source = mer.labels[name]
            media = mer.videos.get(name, mer.video_dir / f"{name}.mp4")
            info = {"version": version, "source": source}
            if label is None and name in mer.bad_labels:
                err = mer.bad_labels[name]
                rejects.append(
                    Reject(
                        sid,
                        str(media),
                        err.reason,
                        f"{path}:{lineno}: EMER v2 takes its label from "
                        f"MER, whose only row for {name} cannot be used: {err}",
                        info,
                    )
                )
                continue
            if label is None:
                rejects.append(
                    Reject(
                        sid,
                        str(media),
                        "no_label",
                        "no discrete label in MER2024 label-disdim.csv "
                        "or MER2023 *-label.csv; EMER v2 has none and none is invented",
                        info,
                    )
                )
                continue
            problem = media_problem(media)
            if problem:
                rejects.append(Reject(sid, str(media), problem[0], problem[1], {**info, "label": label}))
                continue
            meta = {
                "name": name,
                "version": version,
                "trace": make_trace(reasons, label),
                "reason_en": reasons,
                "label_source": label_source,
                "modality": "audio+video",
                "source": source,
                **extra,
            }
            if name in mer.openset:
                meta["openset"] = mer.openset[name]
            samples.append(Sample(id=sid, media=str(media), label=label, dataset=NAME, split="coldstart", meta=meta))
    return Prepared(samples, rejects)
