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

Clips without an audio stream (21 in MAFW) stay samples with ``meta.has_audio=False`` (probed from
the container header, not decoded); ``emorl data check`` then lists them as ``no_audio``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from emorl.data.corpora.common import (
    DatasetError,
    Prepared,
    Reject,
    check_root,
    find_path,
    index_files,
    label_for,
    media_problem,
    normalise_subset,
    probe_has_audio,
    read_text,
    select_folds,
)
from emorl.data.manifest import Sample

NAME = "mafw"
FOLDS = (1, 2, 3, 4, 5)
OFFICIAL = ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise",
            "contempt", "anxiety", "helplessness", "disappointment")  # ids 1..11
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


def read_list(path: Path, captioned: bool) -> tuple[list[tuple[int, str, str, dict[str, str]]], str]:
    """((line, clip stem, raw label, captions) rows, encoding) of a MAFW fold list."""
    if captioned:  # not UTF-8 in the official copies: GB18030 when the Chinese survives, else cp1252
        text, enc = read_text(path, ("utf-8-sig", "gb18030", "cp1252"), accept=_english_is_latin)
    else:
        text, enc = read_text(path, ("utf-8-sig", "cp1252"))
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.rstrip("\r\n").split("\t", 3) if captioned else line.split()
        if len(fields) < 2 or (not captioned and len(fields) != 2):
            want = "clip TAB label TAB zh TAB en" if captioned else "'<clip>.mp4 <label>'"
            raise DatasetError(f"{path}:{lineno}: malformed row: expected {want}, got {line.strip()!r}")
        clip = os.path.splitext(fields[0].strip())[0]
        if not clip.isdigit():
            raise DatasetError(f"{path}:{lineno}: malformed row: clip name {fields[0]!r} is not a number")
        caps = {}
        if captioned:
            caps = {k: v.strip() for k, v in zip(("caption_zh", "caption_en"), fields[2:], strict=False) if v.strip()}
        rows.append((lineno, f"{int(clip):05d}", fields[1].strip(), caps))
    return rows, enc


def parse_labels(raw: str, where: str) -> list[str]:
    """Canonical classes of a MAFW label: ``anger``, ``4`` (official id) or ``anger_disgust``."""
    parts = [p for p in re.split(r"[_,]", raw) if p.strip()]
    if not parts:
        raise DatasetError(f"{where}: malformed row: empty label")
    out = []
    for p in parts:
        p = p.strip()
        if p.isdigit():
            if not 1 <= int(p) <= len(OFFICIAL):
                raise DatasetError(f"{where}: unknown label {raw!r}; MAFW ids are 1..11 ({', '.join(OFFICIAL)})")
            p = OFFICIAL[int(p) - 1]
        out.append(label_for(NAME, p, where))
    return out


def prepare(root: str | os.PathLike, *, fold: int | None = None, subset: str | None = None) -> Prepared:
    """MAFW samples of ``fold`` (all 5 when None) from the ``subset`` lists (default single/no_caption)."""
    root = check_root(root, NAME)
    subset = normalise_subset(NAME, subset, tuple(SUBSETS), "single")
    folds = select_folds(NAME, fold, FOLDS)
    kind, _, captioned = SUBSETS[subset]
    clip_dir = find_path(root, CLIP_DIRS, what="MAFW clip folder", kind="dir")
    clips = index_files(clip_dir, (".mp4", ".avi"))
    audio_cache: dict[str, tuple[bool | None, str | None]] = {}
    tag = NAME if subset == "single" else f"{NAME}-{subset}"

    samples: list[Sample] = []
    rejects: list[Reject] = []
    for k in folds:
        for split in ("train", "test"):
            path = list_file(root, subset, k, split)
            rows, enc = read_list(path, captioned)
            for lineno, clip, raw, caps in rows:
                where = f"{path}:{lineno}"
                labels = parse_labels(raw, where)
                if kind == "single" and len(labels) != 1:
                    raise DatasetError(f"{where}: compound label {raw!r} in a single-label list")
                sid = f"{tag}-f{k}-{split}-{clip}"
                media = clips.get(clip, clip_dir / f"{clip}.mp4")
                info = {"label_raw": raw, "fold": k, "split": split, **caps}
                if len(labels) == 1:
                    info["label"] = labels[0]
                if kind == "compound":
                    info["compound"] = labels
                problem = media_problem(media)
                if problem:
                    rejects.append(Reject(sid, str(media), problem[0], problem[1], info))
                    continue
                if len(labels) > 1:
                    rejects.append(Reject(sid, str(media), "compound",
                                          f"multi-label {raw!r} has no single label; kept out of single-label training",
                                          info))
                    continue
                if clip not in audio_cache:
                    audio_cache[clip] = probe_has_audio(media)
                has_audio, err = audio_cache[clip]
                meta = {"clip": clip, "modality": "audio+video", "has_audio": has_audio,
                        "label_raw": raw, "source": f"{path.relative_to(root)}:{lineno}", **caps}
                if captioned:
                    meta["encoding"] = enc
                if kind == "compound":
                    meta["compound"] = labels
                if err:
                    meta["probe_error"] = err
                samples.append(Sample(id=sid, media=str(media), label=labels[0], dataset=NAME,
                                      split=split, fold=k, meta=meta))
    return Prepared(samples, rejects)
