"""FI, Flickr & Instagram (You et al., AAAI 2016): 23,308 images in 8 Mikels folders.

Layout (the emotion folders at the root, or one level down in a single folder such as
``emotion_dataset/``; folder names in any case)::

    FI/
      amusement/amusement_0001.jpg ...
      anger/ awe/ contentment/ disgust/ excitement/ fear/ sadness/

The folder is the label (loaders also read it from the name prefix, ``name.split("_")[0]``).
Samples carry canonical labels (angry, sad, ...) with dataset ``fi``, whose label set says FI's
words (``anger``, ``sadness``). Per sample ``meta``: ``modality: image``, ``folder``,
``split_rule``.

Splits: FI has no official split. The common protocol is a random 80/5/15 split; emorl's is
deterministic per image (``hash_split``: 80 % ``train``, 5 % ``val``, 15 % ``test``). ``all``
(default) gives every image with its split.

Rejects besides LFS stubs: ``label_conflict`` (a name whose emotion prefix names another class,
e.g. ``fear_12.jpg`` in ``awe/``), ``not_image`` (a file without an image extension in an
emotion folder). Folders that are not a Mikels emotion are not read.
"""

from __future__ import annotations

import os
from pathlib import Path

from emorl.data.corpora.common import (
    DatasetError,
    Prepared,
    Reject,
    check_root,
    index_dirs,
    media_problem,
    require_no_fold,
    select_splits,
    split_choices,
)
from emorl.data.corpora.image_common import hash_split, image_files, image_sample, is_image_name
from emorl.data.labels import LABEL_SETS, canonical, label_words

NAME = "fi"
SPLITS = ("train", "val", "test")
SPLIT_CHOICES = split_choices(SPLITS)
SUBSETS: tuple[str, ...] = ()
SPLIT_FRACTIONS = (("train", 0.8), ("val", 0.05), ("test", 0.15))
SPLIT_RULE = "emorl hash split 80/5/15 (no official split)"


def emotion_folders(folder: Path) -> dict[str, Path]:
    """canonical label -> folder, for the sub-folders of ``folder`` that name a Mikels class."""
    out = {}
    for name, p in sorted(index_dirs(folder).items()):
        lab = canonical(name)
        if lab in LABEL_SETS[NAME]:
            out.setdefault(lab, p)
    return out


def find_emotion_root(root: Path) -> dict[str, Path]:
    """The emotion folders at ``root`` or in one sub-folder of it; DatasetError otherwise."""
    found = emotion_folders(root)
    if not found:
        subs = [p for p in index_dirs(root).values() if emotion_folders(p)]
        if len(subs) > 1:
            raise DatasetError(
                f"{root}: several folders hold FI emotion folders ({', '.join(p.name for p in subs)}); "
                "point --root at one of them"
            )
        found = emotion_folders(subs[0]) if subs else {}
    if not found:
        words = label_words(NAME)
        expected = ", ".join(words.get(lab, lab) for lab in LABEL_SETS[NAME])
        raise DatasetError(
            f"{root}: no FI emotion folders found; expected folders named {expected} at the root or one level down"
        )
    return found


def prepare(
    root: str | os.PathLike, *, fold: int | None = None, subset: str | None = None, split: str | None = "all"
) -> Prepared:
    """FI samples of ``split`` (train, val, test, all: emorl's hash split)."""
    root = check_root(root, NAME)
    require_no_fold(NAME, fold)
    if subset is not None:
        raise DatasetError(f"{NAME}: unknown subset {subset!r}; FI has no subsets")
    splits = set(select_splits(NAME, split, SPLITS))
    samples, rejects = [], []
    for label, folder in find_emotion_root(root).items():
        for p in image_files(folder):
            sid = f"{NAME}-{folder.name.lower()}-{p.stem}"
            split_name = hash_split(NAME, sid, SPLIT_FRACTIONS)
            if split_name not in splits:
                continue
            info = {"label": label, "split": split_name}
            if not is_image_name(p.name):
                rejects.append(
                    Reject(sid, str(p), "not_image", f"{p}: not an image file name (expected .jpg, .png, ...)", info)
                )
                continue
            prefix = p.stem.rsplit("_", 1)[0] if "_" in p.stem else ""
            if prefix and canonical(prefix) not in (None, label):
                rejects.append(
                    Reject(
                        sid,
                        str(p),
                        "label_conflict",
                        f"{p}: the name says {prefix!r} but the folder says {folder.name!r}",
                        info,
                    )
                )
                continue
            problem = media_problem(p)
            if problem:
                rejects.append(Reject(sid, str(p), problem[0], problem[1], info))
                continue
            samples.append(
                image_sample(NAME, sid, p, label, split_name, {"folder": folder.name, "split_rule": SPLIT_RULE})
            )
    return Prepared(samples, rejects)
