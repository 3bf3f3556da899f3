"""RAVDESS (Zenodo 1188976): 24 actors, file names ``MM-VV-EE-II-SS-RR-AA.ext`` carry every label.

Layout: ``Actor_01`` .. ``Actor_24`` folders anywhere under the root (as the zips extract, e.g.
``Video_Speech_Actor_01/Actor_01/01-01-03-02-01-01-01.mp4`` and
``Audio_Speech_Actors_01-24/Actor_01/03-01-03-02-01-01-01.wav``); files are found recursively.

Code fields: modality (01 full-AV, 02 video-only, 03 audio-only), vocal channel (01 speech,
02 song), emotion (01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust,
08 surprised), intensity (01 normal, 02 strong; never 02 with neutral), statement (01 "Kids are
talking by the door", 02 "Dogs are sitting by the door"), repetition, actor (odd male, even female).

Folds (MAE-DFER / HiCMAE, unofficial): 6 actor-disjoint folds; fold k tests actors 4k-3..4k and
trains on the other 20.
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
    is_junk,
    label_for,
    normalise_subset,
    select_folds,
)
from emorl.data.manifest import Sample

NAME = "ravdess"
FOLDS = (1, 2, 3, 4, 5, 6)
CODE = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})\.(mp4|wav)$", re.IGNORECASE)
MODALITY = {"01": "full-AV", "02": "video-only", "03": "audio-only"}
CHANNEL = {"01": "speech", "02": "song"}
EMOTION = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry",
           "06": "fearful", "07": "disgust", "08": "surprised"}
INTENSITY = {"01": "normal", "02": "strong"}
STATEMENT = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
REPETITION = {"01": 1, "02": 2}
# subset -> (modality code, channel code, pair with the matching audio-only wav)
SUBSETS: dict[str, tuple[str, str, bool]] = {
    "speech": ("01", "01", True),
    "song": ("01", "02", True),
    "video-only": ("02", "01", False),
    "song-video-only": ("02", "02", False),
    "video-only+audio": ("02", "01", True),  # MAE-DFER / HiCMAE: video from 02-, audio from 03-
    "audio-only": ("03", "01", False),
    "song-audio-only": ("03", "02", False),
}


def fold_of_actor(actor: int) -> int:
    """The fold whose test set holds ``actor`` (1..24)."""
    return (actor - 1) // 4 + 1


def decode_name(path: Path) -> dict[str, object]:
    """Every field of a RAVDESS file name; DatasetError naming the file if a field is invalid."""
    m = CODE.match(path.name)
    if not m:
        raise DatasetError(f"{path}: not a RAVDESS file name (MM-VV-EE-II-SS-RR-AA.mp4|wav)")
    mm, vv, ee, ii, ss, rr, aa, _ = m.groups()
    tables = (("modality", MODALITY, mm), ("vocal_channel", CHANNEL, vv), ("emotion", EMOTION, ee),
              ("intensity", INTENSITY, ii), ("statement", STATEMENT, ss), ("repetition", REPETITION, rr))
    out: dict[str, object] = {}
    for field_name, table, code in tables:
        if code not in table:
            raise DatasetError(f"{path}: invalid {field_name} code {code!r}; expected one of {', '.join(table)}")
        out[field_name] = table[code]
    actor = int(aa)
    if not 1 <= actor <= 24:
        raise DatasetError(f"{path}: invalid actor code {aa!r}; expected 01..24")
    if ee == "01" and ii == "02":
        raise DatasetError(f"{path}: intensity 02 (strong) with emotion 01 (neutral); RAVDESS has no strong neutral")
    out.update(actor=actor, gender="male" if actor % 2 else "female", code=path.stem)
    return out


def scan(root: Path) -> tuple[dict[str, Path], list[Reject]]:
    """code -> file for every RAVDESS file under ``root``; extra copies of a code are rejects."""
    found: dict[str, Path] = {}
    dupes: list[Reject] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not is_junk(d))
        for fn in sorted(filenames):
            if is_junk(fn) or not CODE.match(fn):
                continue
            p = Path(dirpath) / fn
            decode_name(p)  # validates every file, also those outside the chosen subset
            key = fn.lower()
            if key in found:
                dupes.append(Reject(f"{NAME}-{p.stem}", str(p), "duplicate", f"same code as {found[key]}"))
            else:
                found[key] = p
    if not found:
        raise DatasetError(f"{root}: no RAVDESS files found; expected Actor_XX/MM-VV-EE-II-SS-RR-AA.mp4|wav "
                           "(e.g. Actor_01/01-01-03-02-01-01-01.mp4)")
    return found, dupes


def prepare(root: str | os.PathLike, *, fold: int | None = None, subset: str | None = None) -> Prepared:
    """RAVDESS samples of ``subset`` (default speech AV clips) for ``fold`` (all 6 when None)."""
    root = check_root(root, NAME)
    subset = normalise_subset(NAME, subset, tuple(SUBSETS), "speech")
    folds = select_folds(NAME, fold, FOLDS)
    mod, chan, pair = SUBSETS[subset]
    files, rejects = scan(root)
    ext = "wav" if mod == "03" else "mp4"
    chosen = sorted((k, p) for k, p in files.items() if k.startswith(f"{mod}-{chan}-") and k.endswith(ext))
    if not chosen:
        raise DatasetError(f"{root}: no RAVDESS {subset} files ({mod}-{chan}-*.{ext}) found")

    samples: list[Sample] = []
    for _, path in chosen:
        info = decode_name(path)
        label = label_for(NAME, str(info["emotion"]), str(path))
        audio = files.get(f"03-{path.stem[3:]}.wav") if pair else None
        modality = {"01": "audio+video", "02": "audio+video" if audio else "video", "03": "audio"}[mod]
        file_modality = info.pop("modality")
        meta = {**info, "file_modality": file_modality, "modality": modality}
        test_fold = fold_of_actor(int(info["actor"]))
        for k in folds:
            split = "test" if k == test_fold else "train"
            samples.append(Sample(id=f"{NAME}-f{k}-{split}-{path.stem}", media=str(path), label=label,
                                  dataset=NAME, split=split, fold=k, audio=str(audio) if audio else None,
                                  meta=dict(meta)))
    return Prepared(samples, rejects)
