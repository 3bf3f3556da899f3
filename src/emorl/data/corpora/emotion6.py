"""Emotion6 (Peng et al., CVPR 2015, "A Mixed Bag of Emotions"): 1,980 Flickr images in 6
folders with a voted emotion distribution, valence and arousal per image.

Layout (the root may also hold it one level down, in ``Emotion6/``)::

    Emotion6/
      images/<anger|disgust|fear|joy|sadness|surprise>/<n>.jpg
      ground_truth.txt

``ground_truth.txt``: a header line, then one tab-separated line per image::

    [image_filename] [valence] [arousal] [prob. anger] [prob. disgust] [prob. fear] [prob. joy]
    [prob. sadness] [prob. surprise] [prob. neutral]

with file names relative to ``images/`` (``disgust/1.jpg``). Lines split on whitespace are
accepted too (copies re-saved with spaces).

Subsets (the label):
- ``keyword`` (default): the folder, i.e. the Flickr search keyword; 330 images per class. The
  usual 6-class protocol.
- ``voted``: the arg-max of the 7-way voted distribution. Rejects ``neutral_vote`` (neutral won)
  and ``tied_vote`` (two emotions share the top share).

Splits: Emotion6 has no official split; emorl's is deterministic per image (``hash_split``:
80 % ``train``, 20 % ``test``; ``meta.split_rule`` says so). ``all`` (default) gives every
image with its split.

Per sample ``meta``: ``modality: image``, ``keyword`` (the folder), ``valence``, ``arousal`` (1-9
SAM scale), ``distribution`` (the 7 voted shares), ``split_rule``, ``source``
(``ground_truth.txt:<line>``). Samples carry canonical labels with dataset ``emotion6``, whose
label set says ``joy`` for happy, ``anger`` and ``sadness``.

Rejects besides missing images: ``malformed_row`` (not 10 fields, a value that is not a number;
id ``emotion6-ground_truth.txt:<line>``), ``unknown_label`` (a folder outside the six),
``bad_path`` (a file name outside ``images/``), ``neutral_vote`` / ``tied_vote`` (subset voted),
``unlisted`` (an image in ``images/`` that ``ground_truth.txt`` does not list).
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
    index_dirs,
    label_for,
    line_id,
    media_problem,
    normalise_subset,
    parse_float,
    read_text,
    require_no_fold,
    row_reject,
    select_splits,
    split_choices,
)
from emorl.data.corpora.image_common import hash_split, image_files, image_sample, inside, is_image_name

NAME = "emotion6"
SPLITS = ("train", "test")
SPLIT_CHOICES = split_choices(SPLITS)
SUBSETS = ("keyword", "voted")
SPLIT_FRACTIONS = (("train", 0.8), ("test", 0.2))
SPLIT_RULE = "emorl hash split 80/20 (no official split)"
VOTE_NAMES = ("anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral")


def read_ground_truth(path: Path) -> tuple[list[tuple[int, list[str]]], int]:
    """(line number, fields) of every data line and the header's line number (0 when there is
    none). Tabs split the fields; a line without tabs is split on whitespace."""
    text, _ = read_text(path, ("utf-8-sig", "cp1252"))
    rows, header = [], 0
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = [f.strip() for f in (line.split("\t") if "\t" in line else line.split())]
        if not rows and not header and not is_image_name(os.path.basename(fields[0])):
            header = lineno  # "[image_filename] [valence] ..." or any other header wording
            continue
        rows.append((lineno, fields))
    return rows, header


def _numbers(fields: list[str], where: str) -> tuple[float, float, dict[str, float]]:
    if len(fields) != 10:
        raise RowError(
            "malformed_row",
            where,
            f"malformed row: expected 10 tab-separated fields (file, valence, "
            f"arousal, 7 probabilities), got {len(fields)}",
        )
    vals = []
    for name, v in zip(("valence", "arousal", *(f"prob. {n}" for n in VOTE_NAMES)), fields[1:], strict=True):
        x = parse_float(v, where, name)
        if x is None:
            raise RowError("malformed_row", where, f"malformed row: {name} is empty")
        vals.append(x)
    return vals[0], vals[1], dict(zip(VOTE_NAMES, vals[2:], strict=True))


def voted_label(dist: dict[str, float], where: str) -> str:
    """The label the votes give; ``neutral_vote`` / ``tied_vote`` RowErrors otherwise."""
    top = max(dist.values())
    winners = [k for k, v in dist.items() if v == top]
    if len(winners) > 1:
        raise RowError("tied_vote", where, f"votes tie between {', '.join(winners)} ({top:g} each)")
    if winners[0] == "neutral":
        raise RowError("neutral_vote", where, f"neutral has the largest share ({top:g}); not an Emotion6 class")
    return label_for(NAME, winners[0], where)


def prepare(
    root: str | os.PathLike, *, fold: int | None = None, subset: str | None = None, split: str | None = "all"
) -> Prepared:
    """Emotion6 samples of ``split`` (train, test, all: emorl's hash split) labelled by ``subset``
    (keyword = folder, default; voted = arg-max of the votes)."""
    root = check_root(root, NAME)
    require_no_fold(NAME, fold)
    subset = normalise_subset(NAME, subset, SUBSETS, "keyword")
    splits = set(select_splits(NAME, split, SPLITS))
    gt = find_path(root, ("ground_truth.txt", "Emotion6/ground_truth.txt"), what="Emotion6 ground_truth.txt")
    base = gt.parent
    images = find_path(base, ("images",), what="Emotion6 images folder", kind="dir")
    rows, _ = read_ground_truth(gt)
    samples, rejects, listed = [], [], set()
    for lineno, fields in rows:
        where = f"{gt}:{lineno}"
        rel = fields[0].replace("\\", "/")
        folder, stem = Path(rel).parent.name, Path(rel).stem
        sid = f"{NAME}-{folder}-{stem}" if folder else line_id(NAME, base, gt, lineno)
        split_name = hash_split(NAME, sid, SPLIT_FRACTIONS)
        media: Path = gt
        try:
            media = inside(images, rel, where)
            listed.add(media)
            valence, arousal, dist = _numbers(fields, where)
            keyword = label_for(NAME, folder, where)
            label = keyword if subset == "keyword" else voted_label(dist, where)
        except RowError as e:
            if split_name in splits:
                rejects.append(row_reject(sid, media, e, {"split": split_name, "source": f"ground_truth.txt:{lineno}"}))
            continue
        if split_name not in splits:
            continue
        problem = media_problem(media)
        if problem:
            rejects.append(Reject(sid, str(media), problem[0], problem[1], {"label": label, "split": split_name}))
            continue
        meta = {
            "keyword": folder,
            "valence": valence,
            "arousal": arousal,
            "distribution": dist,
            "split_rule": SPLIT_RULE,
            "source": f"ground_truth.txt:{lineno}",
        }
        samples.append(image_sample(NAME, sid, media, label, split_name, meta))
    rejects += unlisted(images, listed, splits)
    return Prepared(samples, rejects)


def unlisted(images: Path, listed: set[Path], splits: set[str]) -> list[Reject]:
    """Images under ``images/<folder>/`` that ground_truth.txt does not list (in the chosen splits)."""
    out = []
    for folder, d in sorted(index_dirs(images).items()):
        for p in image_files(d):
            if not is_image_name(p.name) or p.resolve() in listed:
                continue
            sid = f"{NAME}-{folder}-{p.stem}"
            split_name = hash_split(NAME, sid, SPLIT_FRACTIONS)
            if split_name in splits:
                out.append(
                    Reject(
                        sid, str(p.resolve()), "unlisted", f"{p}: not listed in ground_truth.txt", {"split": split_name}
                    )
                )
    return out
