"""MAFW (https://mafw-database.github.io/MAFW): 11 classes, 5 folds, clips with audio.

Layout (names vary between copies; the variants below are all accepted)::

    MAFW/
      data/clips/00025.mp4                      (or clips/, data/videos/, videos/)
      Train & Test Set/                         (or Train_Test_Set/, split/)
        single/no_caption/set_1/{train,test}.txt      "00025.mp4 anger"            (default)
        single/with_caption/set_1/{train,test}.txt    clip TAB label TAB zh TAB en (not UTF-8)
        compound/no_caption/set_1/...                 "00031.mp4 anger_disgust"
        compound/with_caption/set_1/...

Subsets: ``single`` (default), ``single-caption``, ``compound``, ``compound-caption``.

Compound lists: a row naming one class is an ordinary sample (``meta.compound=[label]``); a row
naming several classes has no single label, so it is *not* a sample: it is returned as a
``Reject(reason="compound")`` whose ``meta.compound`` keeps the canonical classes, so single-label
training never sees an invented label and the row is still listed.

Splits: ``train``, ``test`` or ``all`` (default), fold-aware: ``fold=k, split="train"`` reads only
``set_k/train.txt``; ``fold=None, split="test"`` every fold's ``test.txt``.

Row-level rejects: ``malformed_row`` (wrong number of fields, a clip name that is not a number, an
empty label; id ``mafw-<list file>:<line>``), ``unknown_label`` (a word or id outside the 11 classes),
``compound`` (also a multi-class label in a ``single`` list); these keep the row's usual id when
its clip name was readable.

Clips without an audio stream (21 in MAFW) stay samples with ``meta.has_audio=False`` (probed from
the container header, not decoded); ``emorl data check`` then lists them as ``no_audio``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NamedTuple

from emorl.data.corpora.common import (
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
    probe_has_audio,
    read_text,
    row_reject,
    select_folds,
    select_splits,
    split_choices,
)
from emorl.data.manifest import Sample

NAME = "mafw"
FOLDS = (1, 2, 3, 4, 5)
SPLITS = ("train", "test")
SPLIT_CHOICES = split_choices(SPLITS)
OFFICIAL = (
    "anger",
    "disgust",
    "fear",
    "happiness",
    "neutral",
    "sadness",
    "surprise",
    "contempt",
    "anxiety",
    "helplessness",
    "disappointment",
)  # ids 1..11
SPLIT_ROOTS = ("Train & Test Set", "Train_Test_Set", "Train&Test Set", "Train & Test set", "split")
CLIP_DIRS = ("data/clips", "clips", "data/videos", "videos", "data/video", "video")
# subset -> (label kind folder, caption folder variants, captioned)
SUBSETS: dict[str, tuple[str, tuple[str, ...], bool]] = {
    "single": ("single", ("no_caption", "no_caption_new"), False),
    "single-caption": ("single", ("with_caption", "with_caption_new"), True),
    "compound": ("compound", ("no_caption", "no_caption_new"), False),
    "compound-caption": ("compound", ("with_caption", "with_caption_new"), True),
}
_CJK = re.compile(r"[\u3400-\u9fff]")


def list_file(root: Path, subset: str, fold: int, split: str) -> Path:
    """The fold list for ``subset`` / ``fold`` / ``split`` under any split-folder spelling."""
    kind, cap_dirs, _ = SUBSETS[subset]
    cands = [f"{r}/{kind}/{c}/set_{fold}/{split}.txt" for r in SPLIT_ROOTS for c in cap_dirs]
    return find_path(root, cands, what=f"MAFW {subset} fold {fold} {split} list", kind="file")


def _english_is_latin(text: str) -> bool:
    """Reject a decoding that turns the English caption column into CJK (cp1252 read as GB18030)."""
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) >= 4 and _CJK.search(fields[3]):
            return False
    return True


class ListRows(NamedTuple):
    """A MAFW fold list: readable rows, unreadable rows and the file's encoding."""

    rows: list[tuple[int, str, str, dict[str, str]]]  # (line, 5-digit clip, raw label, captions)
    bad: list[tuple[int, RowError]]  # (line, malformed_row error)
    encoding: str


def read_list(path: Path, captioned: bool) -> ListRows:
    """Rows of a MAFW fold list; a row that cannot be split into clip and label is in ``bad``."""
    if captioned:  # not UTF-8 in the official copies: GB18030 when the Chinese survives, else cp1252
        text, enc = read_text(path, ("utf-8-sig", "gb18030", "cp1252"), accept=_english_is_latin)
    else:
        text, enc = read_text(path, ("utf-8-sig", "cp1252"))
    rows, bad = [], []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        fields = line.rstrip("\r\n").split("\t", 3) if captioned else line.split()
        if len(fields) < 2 or (not captioned and len(fields) != 2):
            want = "clip TAB label TAB zh TAB en" if captioned else "'<clip>.mp4 <label>'"
            bad.append(
                (lineno, RowError("malformed_row", where, f"malformed row: expected {want}, got {line.strip()!r}"))
            )
            continue
        clip = os.path.splitext(fields[0].strip())[0]
        if not clip.isdigit():
            bad.append(
                (
                    lineno,
                    RowError(
                        "malformed_row",
                        where,
                        f"malformed row: clip name {fields[0]!r} is not a number (expected e.g. 00025.mp4)",
                    ),
                )
            )
            continue
        caps = {}
        if captioned:
            caps = {k: v.strip() for k, v in zip(("caption_zh", "caption_en"), fields[2:], strict=False) if v.strip()}
        rows.append((lineno, f"{int(clip):05d}", fields[1].strip(), caps))
    return ListRows(rows, bad, enc)


def parse_labels(raw: str, where: str) -> list[str]:
    """Canonical classes of a MAFW label: ``anger``, ``4`` (official id) or ``anger_disgust``.

    An empty label is a ``malformed_row`` RowError, an unknown word or id an ``unknown_label`` one.
    """
    parts = [p for p in re.split(r"[_,]", raw) if p.strip()]
    if not parts:
        raise RowError("malformed_row", where, f"malformed row: empty label {raw!r}")
    out = []
    for p in parts:
        p = p.strip()
        if p.isdigit():
            if not 1 <= int(p) <= len(OFFICIAL):
                raise RowError(
                    "unknown_label", where, f"unknown label {raw!r}; MAFW ids are 1..11 ({', '.join(OFFICIAL)})"
                )
            p = OFFICIAL[int(p) - 1]
        out.append(label_for(NAME, p, where))
    return out


def prepare(
    root: str | os.PathLike, *, fold: int | None = None, subset: str | None = None, split: str | None = "all"
) -> Prepared:
    """MAFW samples of ``fold`` (all 5 when None) and ``split`` (train, test, all) from the ``subset``
    lists (default single/no_caption)."""
    root = check_root(root, NAME)
    subset = normalise_subset(NAME, subset, tuple(SUBSETS), "single")
    folds = select_folds(NAME, fold, FOLDS)
    splits = select_splits(NAME, split, SPLITS)
    kind, _, captioned = SUBSETS[subset]
    clip_dir = find_path(root, CLIP_DIRS, what="MAFW clip folder", kind="dir")
    clips = index_files(clip_dir, (".mp4", ".avi"))
    audio_cache: dict[str, tuple[bool | None, str | None]] = {}
    tag = NAME if subset == "single" else f"{NAME}-{subset}"

    samples: list[Sample] = []
    rejects: list[Reject] = []
    for k in folds:
        for split_name in splits:
            path = list_file(root, subset, k, split_name)
            listed = read_list(path, captioned)
            for lineno, err in listed.bad:
                rejects.append(
                    row_reject(
                        line_id(NAME, root, path, lineno),
                        path,
                        err,
                        {"fold": k, "split": split_name, "source": f"{path.relative_to(root)}:{lineno}"},
                    )
                )
            for lineno, clip, raw, caps in listed.rows:
                sid = f"{tag}-f{k}-{split_name}-{clip}"
                media = clips.get(clip, clip_dir / f"{clip}.mp4")
                source = f"{path.relative_to(root)}:{lineno}"
                info = {"label_raw": raw, "fold": k, "split": split_name, "source": source, **caps}
                try:
                    labels = parse_labels(raw, f"{path}:{lineno}")
                    if kind == "single" and len(labels) != 1:
                        raise RowError(
                            "compound",
                            f"{path}:{lineno}",
                            f"compound label {raw!r} in a single-label list (expected one class)",
                        )
                except RowError as e:
                    rejects.append(row_reject(sid, media, e, info))
                    continue
                if len(labels) == 1:
                    info["label"] = labels[0]
                if kind == "compound":
                    info["compound"] = labels
                problem = media_problem(media)
                if problem:
                    rejects.append(Reject(sid, str(media), problem[0], problem[1], info))
                    continue
                if len(labels) > 1:
                    rejects.append(
                        Reject(
                            sid,
                            str(media),
                            "compound",
                            f"multi-label {raw!r} has no single label; kept out of single-label training",
                            info,
                        )
                    )
                    continue
                if clip not in audio_cache:
                    audio_cache[clip] = probe_has_audio(media)
                has_audio, err = audio_cache[clip]
                meta = {
                    "clip": clip,
                    "modality": "audio+video",
                    "has_audio": has_audio,
                    "label_raw": raw,
                    "source": source,
                    **caps,
                }
                if captioned:
                    meta["encoding"] = listed.encoding
                if kind == "compound":
                    meta["compound"] = labels
                if err:
                    meta["probe_error"] = err
                samples.append(
                    Sample(id=sid, media=str(media), label=labels[0], dataset=NAME, split=split_name, fold=k, meta=meta)
                )
    return Prepared(samples, rejects)
