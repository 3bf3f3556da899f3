"""EmotionROI (Peng et al., 2016, "Where do emotions come from?"): 1,980 Flickr images of 6
Ekman classes, with an official train / test split.

Layout (the root may also hold it one level down, in ``EmotionROI/``)::

    EmotionROI/
      images/<anger|disgust|fear|joy|sadness|surprise>/<n>.jpg
      training_testing_split/training.txt     lines "anger/12.jpg" (relative to images/)
      training_testing_split/testing.txt
      ground_truth/...                        ROI maps (not read)

The folder is the label. Samples carry canonical labels with dataset ``emotionroi``, whose label
set says ``joy`` for happy, ``anger`` and ``sadness``. Per sample ``meta``: ``modality: image``,
``source`` (``training.txt:<line>``).

Splits: ``train`` (training.txt), ``test`` (testing.txt), ``all`` (default). Line endings may be
LF or CRLF. Rejects besides missing images: ``malformed_row`` (a line that is not
``<emotion>/<file>``; id ``emotionroi-training_testing_split/<file>:<line>``), ``unknown_label``
(a folder outside the six), ``bad_path`` (outside ``images/``), ``unlisted`` (an image in
``images/`` that neither list names; only with ``split=all``).
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
    find_path,
    index_dirs,
    label_for,
    line_id,
    media_problem,
    read_text,
    require_no_fold,
    row_reject,
    select_splits,
    split_choices,
)
from emorl.data.corpora.image_common import image_files, image_sample, inside, is_image_name

NAME = "emotionroi"
SPLITS = ("train", "test")
SPLIT_CHOICES = split_choices(SPLITS)
SUBSETS: tuple[str, ...] = ()
SPLIT_FILES = {"train": "training.txt", "test": "testing.txt"}


def prepare(
    root: str | os.PathLike, *, fold: int | None = None, subset: str | None = None, split: str | None = "all"
) -> Prepared:
    """EmotionROI samples of ``split`` (train, test, all)."""
    root = check_root(root, NAME)
    require_no_fold(NAME, fold)
    if subset is not None:
        raise DatasetError(f"{NAME}: unknown subset {subset!r}; EmotionROI has no subsets")
    images = find_path(root, ("images", "EmotionROI/images"), what="EmotionROI images folder", kind="dir")
    base = images.parent
    chosen = select_splits(NAME, split, SPLITS)
    samples, rejects, listed = [], [], set()
    for split_name in SPLITS:
        path = find_path(
            base,
            (f"training_testing_split/{SPLIT_FILES[split_name]}", SPLIT_FILES[split_name]),
            what=f"EmotionROI {split_name} list",
        )
        text, _ = read_text(path, ("utf-8-sig", "cp1252"))
        for lineno, line in enumerate(text.splitlines(), 1):
            rel = line.strip().replace("\\", "/")
            if not rel:
                continue
            where = f"{path}:{lineno}"
            parts = rel.split("/")
            sid = f"{NAME}-{parts[0]}-{Path(parts[-1]).stem}" if len(parts) == 2 else line_id(NAME, base, path, lineno)
            media: Path = path
            try:
                if len(parts) != 2 or not all(parts) or not is_image_name(parts[1]):
                    raise RowError("malformed_row", where, f"malformed line {rel!r}: expected <emotion>/<image file>")
                media = inside(images, rel, where)
                listed.add(media)
                label = label_for(NAME, parts[0], where)
            except RowError as e:
                if split_name in chosen:
                    rejects.append(row_reject(sid, media, e, {"split": split_name, "source": f"{path.name}:{lineno}"}))
                continue
            if split_name not in chosen:
                continue
            problem = media_problem(media)
            if problem:
                rejects.append(Reject(sid, str(media), problem[0], problem[1], {"label": label, "split": split_name}))
                continue
            samples.append(image_sample(NAME, sid, media, label, split_name, {"source": f"{path.name}:{lineno}"}))
    if len(chosen) == len(SPLITS):
        for folder, d in sorted(index_dirs(images).items()):
            rejects += [
                Reject(
                    f"{NAME}-{folder}-{p.stem}",
                    str(p.resolve()),
                    "unlisted",
                    f"{p}: listed in neither training.txt nor testing.txt",
                )
                for p in image_files(d)
                if is_image_name(p.name) and p.resolve() not in listed
            ]
    return Prepared(samples, rejects)
