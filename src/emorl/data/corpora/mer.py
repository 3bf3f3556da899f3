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
``subset`` picks splits, comma-separated (MER2023: train,test1,test2,test3; default all).
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

from emorl.data.corpora.common import (
    DatasetError,
    Prepared,
    Reject,
    check_root,
    find_optional,
    find_path,
    index_files,
    label_for,
    media_problem,
    parse_float,
    read_csv_dicts,
    require_no_fold,
    split_list,
    strip_media_ext,
)
from emorl.data.manifest import Sample
from emorl.data.media import VIDEO_EXTS

MER2023_SPLITS = ("train", "test1", "test2", "test3")
TRACKS = {"train": "train&val", "test1": "MER-MULTI", "test2": "MER-NOISE", "test3": "MER-SEMI"}
DISCRETE = ("neutral", "angry", "happy", "sad", "worried", "surprise")  # ids 0..5
_EXTS = tuple(sorted(VIDEO_EXTS))


def read_labels(path: Path, dataset: str) -> list[tuple[int, str, str, str, float | None]]:
    """(line, name, canonical label, raw label, valence or None) rows of a MER label CSV."""
    rows = []
    for lineno, row in read_csv_dicts(path, ("name", "discrete")):
        where = f"{path}:{lineno}"
        name = strip_media_ext(row["name"])
        if not name:
            raise DatasetError(f"{where}: malformed row: empty name")
        raw = row["discrete"]
        word = DISCRETE[int(raw)] if raw.isdigit() and int(raw) < len(DISCRETE) else raw
        label = label_for(dataset, word, where)
        valence = parse_float(row["valence"], where, "valence") if "valence" in row else None
        rows.append((lineno, name, label, raw, valence))
    return rows


def read_openset(path: Path) -> dict[str, list[str]]:
    """name -> open-vocabulary labels from ``check-openset.csv`` (``name,openset`` list strings)."""
    out = {}
    for lineno, row in read_csv_dicts(path, ("name", "openset")):
        text = row["openset"].strip()
        try:
            value = ast.literal_eval(text) if text.startswith("[") else text.split(",")
        except (ValueError, SyntaxError):
            raise DatasetError(f"{path}:{lineno}: malformed openset list {text!r}") from None
        out[strip_media_ext(row["name"])] = [str(v).strip() for v in value if str(v).strip()]
    return out


def _rows_to_samples(dataset: str, split: str, label_path: Path, video_dir: Path,
                     extra: dict[str, dict]) -> Prepared:
    videos = index_files(video_dir, _EXTS)
    samples, rejects, seen = [], [], {}
    for lineno, name, label, raw, valence in read_labels(label_path, dataset):
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
        meta = {"name": name, "label_raw": raw, "modality": "audio+video", "source": info["source"],
                **extra.get(name, {})}
        if valence is not None:
            meta["valence"] = valence
        if split in TRACKS and dataset == "mer2023":
            meta["track"] = TRACKS[split]
        samples.append(Sample(id=sid, media=str(media), label=label, dataset=dataset, split=split, meta=meta))
    return Prepared(samples, rejects)


def prepare_mer2023(root: str | os.PathLike, *, fold: int | None = None, subset: str | None = None) -> Prepared:
    """MER2023 samples of the splits in ``subset`` (default train,test1,test2,test3)."""
    root = check_root(root, "mer2023")
    require_no_fold("mer2023", fold)
    samples, rejects = [], []
    for split in split_list("mer2023", subset, MER2023_SPLITS):
        label_path = find_path(root, (f"{split}-label.csv",), what=f"MER2023 {split} labels", kind="file")
        video_dir = find_path(root, (split,), what=f"MER2023 {split} video folder", kind="dir")
        got = _rows_to_samples("mer2023", split, label_path, video_dir, {})
        samples += got.samples
        rejects += got.rejects
    return Prepared(samples, rejects)


def prepare_mer2024(root: str | os.PathLike, *, fold: int | None = None, subset: str | None = None) -> Prepared:
    """MER2024 labeled samples (``video-labeled`` + ``label-disdim.csv``), split ``train``."""
    root = check_root(root, "mer2024")
    require_no_fold("mer2024", fold)
    split_list("mer2024", subset, ("labeled",))
    label_path = find_path(root, ("label-disdim.csv",), what="MER2024 labels", kind="file")
    video_dir = find_path(root, ("video-labeled",), what="MER2024 labeled video folder", kind="dir")
    openset_path = find_optional(root, ("check-openset.csv",))
    openset = read_openset(openset_path) if openset_path else {}
    extra = {name: {"openset": labels} for name, labels in openset.items()}
    return _rows_to_samples("mer2024", "train", label_path, video_dir, extra)
