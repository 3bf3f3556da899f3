"""EmoSet-118K (Yang et al., ICCV 2023; github.com/JingyuanYY/EmoSet): 8 Mikels classes, official
train / val / test split files.

Layout (the root may also hold it one level down, in ``EmoSet-118K/``)::

    EmoSet-118K/
      info.json                     label2idx / idx2label (not needed: labels are read by name)
      train.json val.json test.json
      annotation/<emotion>/<id>.json
      image/<emotion>/<id>.jpg

A split file is a JSON list of ``[emotion, image_id, "image/<emotion>/<id>.jpg",
"annotation/<emotion>/<id>.json"]`` entries, paths relative to the root; ids are
``<emotion>_<number>`` (``amusement_12865``). Emotions are EmoSet's words (``anger``,
``sadness``, ``excitement``); samples carry the canonical labels (angry, sad, ...) with dataset
``emoset``, whose label set says the EmoSet words (``LABEL_SETS_INFO["emoset"]``).

Per sample ``meta``: ``modality: image``, ``image_id``, ``source`` (``<split>.json:<entry>``,
1-based) and, when the annotation file is there, ``attributes``: the annotation's
``brightness``, ``colorfulness``, ``scene``, ``object``, ``facial_expression`` and
``human_action`` values that are present (any may be absent, as in EmoSet's own loader). A
sample whose annotation file is missing is kept without ``attributes``.

Splits: ``train``, ``val``, ``test`` (the three files), ``all`` (default). Rejects besides
missing images: ``malformed_row`` (an entry that is not a list of 4 strings; id
``emoset-<split>.json:<entry>``; an annotation file that is not a JSON object, id
``emoset-<annotation path>``, its sample kept without attributes), ``unknown_label`` (an emotion
outside Mikels-8), ``label_conflict`` (the entry's emotion disagrees with its id's prefix or its
image folder), ``bad_path`` (an image path outside the root).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from emorl.data.corpora.common import (
    DatasetError,
    Prepared,
    Reject,
    RowError,
    check_root,
    find_path,
    label_for,
    line_id,
    media_problem,
    require_no_fold,
    row_reject,
    select_splits,
    split_choices,
)
from emorl.data.corpora.image_common import image_sample, inside
from emorl.data.labels import canonical

NAME = "emoset"
SPLITS = ("train", "val", "test")
SPLIT_CHOICES = split_choices(SPLITS)
SUBSETS: tuple[str, ...] = ()
ATTRIBUTES = ("brightness", "colorfulness", "scene", "object", "facial_expression", "human_action")


def data_root(root: Path) -> Path:
    """The folder holding the split files: ``root`` or ``root/EmoSet-118K``."""
    found = find_path(
        root,
        [f"{d}train.json" for d in ("", "EmoSet-118K/", "EmoSet/")]
        + [f"{d}test.json" for d in ("", "EmoSet-118K/", "EmoSet/")],
        what="EmoSet split file train.json",
    )
    return found.parent


def read_split_file(path: Path) -> list[Any]:
    """The entries of a split file; DatasetError when it is not a JSON list."""
    if not path.is_file():
        raise DatasetError(f"{path}: EmoSet split file not found (expected train.json, val.json, test.json)")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path}: not a JSON file ({e})") from None
    if not isinstance(data, list):
        raise DatasetError(
            f"{path}: expected a JSON list of [emotion, image_id, image path, annotation path] entries, "
            f"got {type(data).__name__}"
        )
    return data


def read_attributes(path: Path, where: str) -> dict[str, Any] | None:
    """The six attributes present in an annotation file; None when the file is missing; a
    ``malformed_row`` RowError when it is not a JSON object."""
    if not path.is_file():
        return None
    try:
        ann = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RowError("malformed_row", where, f"annotation is not valid JSON ({e})") from None
    if not isinstance(ann, dict):
        raise RowError("malformed_row", where, f"annotation must be a JSON object, got {type(ann).__name__}")
    return {k: ann[k] for k in ATTRIBUTES if k in ann}


def _entry(row: Any, where: str) -> tuple[str, str, str, str]:
    if not (isinstance(row, list) and len(row) == 4 and all(isinstance(x, str) and x.strip() for x in row)):
        raise RowError(
            "malformed_row",
            where,
            "malformed entry: expected [emotion, image_id, image path, "
            f"annotation path] (4 strings), got {json.dumps(row)[:120]}",
        )
    return row[0].strip(), row[1].strip(), row[2].strip(), row[3].strip()


def _check_consistent(emotion: str, image_id: str, rel: str, label: str, where: str) -> None:
    """The id's prefix and the image's folder must name the entry's emotion."""
    prefix = image_id.rsplit("_", 1)[0]
    folder = Path(rel.replace("\\", "/")).parent.name
    for what, value in (("image id", prefix), ("image folder", folder)):
        if value and canonical(value) != label:
            raise RowError("label_conflict", where, f"emotion {emotion!r} but the {what} says {value!r}")


def prepare(
    root: str | os.PathLike, *, fold: int | None = None, subset: str | None = None, split: str | None = "all"
) -> Prepared:
    """EmoSet-118K samples of ``split`` (train, val, test, all)."""
    root = check_root(root, NAME)
    require_no_fold(NAME, fold)
    if subset is not None:
        raise DatasetError(
            f"{NAME}: unknown subset {subset!r}; EmoSet-118K has no subsets "
            "(the EmoSet2k subset EMO-R3 trained on is the hub copy: emorl data prepare emoset2k)"
        )
    base = data_root(root)
    samples, rejects = [], []
    for split_name in select_splits(NAME, split, SPLITS):
        path = base / f"{split_name}.json"
        for i, row in enumerate(read_split_file(path), 1):
            where = f"{path}:{i}"
            sid, media = line_id(NAME, base, path, i), path
            try:
                emotion, image_id, rel, ann_rel = _entry(row, where)
                sid = f"{NAME}-{image_id}"
                label = label_for(NAME, emotion, where)
                media = inside(base, rel, where)
                _check_consistent(emotion, image_id, rel, label, where)
            except RowError as e:
                rejects.append(row_reject(sid, media, e, {"split": split_name, "source": f"{split_name}.json:{i}"}))
                continue
            problem = media_problem(media)
            if problem:
                rejects.append(Reject(sid, str(media), problem[0], problem[1], {"label": label, "split": split_name}))
                continue
            meta: dict[str, Any] = {"image_id": image_id, "source": f"{split_name}.json:{i}"}
            try:
                ann = inside(base, ann_rel, where)
                attrs = read_attributes(ann, str(ann))
            except RowError as e:
                rejects.append(row_reject(line_id(NAME, base, base / ann_rel), base / ann_rel, e))
                attrs = None
            if attrs is not None:
                meta["attributes"] = attrs
            samples.append(image_sample(NAME, sid, media, label, split_name, meta))
    return Prepared(samples, rejects)
