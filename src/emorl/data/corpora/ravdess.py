"""RAVDESS (Zenodo 1188976): 24 actors, file names ``MM-VV-EE-II-SS-RR-AA.ext`` carry every label.

Layout: ``Actor_01`` .. ``Actor_24`` folders anywhere under the root (as the zips extract, e.g.
``Video_Speech_Actor_01/Actor_01/01-01-03-02-01-01-01.mp4`` and
``Audio_Speech_Actors_01-24/Actor_01/03-01-03-02-01-01-01.wav``); files are found recursively.

Code fields: modality (01 full-AV, 02 video-only, 03 audio-only), vocal channel (01 speech,
02 song), emotion (01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust,
08 surprised), intensity (01 normal, 02 strong; never 02 with neutral), statement (01 "Kids are
talking by the door", 02 "Dogs are sitting by the door"), repetition, actor (odd male, even female).

Folds (MAE-DFER / HiCMAE, unofficial): 6 actor-disjoint folds; fold k tests actors 4k-3..4k and
trains on the other 20. Splits: ``train``, ``test`` or ``all`` (default), fold-aware: with
``fold=k, split="train"`` only the 20 training actors' clips of fold k. ``meta.subject`` is
``ravdess-actor-XX`` (for the leakage check across manifests).

Rejects: every ``.mp4``/``.wav`` file whose name does not decode is one reject with id
``ravdess-<file stem>``: ``bad_name`` (not seven 2-digit codes, or a modality, channel, intensity,
statement, repetition or actor code outside its table), ``unknown_label`` (emotion code outside
01..08), ``impossible_code`` (intensity 02 with emotion 01: RAVDESS has no strong neutral);
``duplicate`` for a second copy of a code. They are listed with the subset their first two codes
name (all subsets when those are unreadable), and, when the actor code is readable, only for the
selected folds and splits.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from emorl.data.corpora.common import (
    DatasetError,
    Prepared,
    Reject,
    RowError,
    check_root,
    is_junk,
    label_for,
    normalise_subset,
    row_reject,
    select_folds,
    select_splits,
    split_choices,
)
from emorl.data.manifest import Sample

NAME = "ravdess"
FOLDS = (1, 2, 3, 4, 5, 6)
SPLITS = ("train", "test")
SPLIT_CHOICES = split_choices(SPLITS)
CODE = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})\.(mp4|wav)$", re.IGNORECASE)
MEDIA_EXTS = (".mp4", ".wav")
_PREFIX = re.compile(r"^(\d{2})-(\d{2})-")
MODALITY = {"01": "full-AV", "02": "video-only", "03": "audio-only"}
CHANNEL = {"01": "speech", "02": "song"}
EMOTION = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
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


def subject(actor: int) -> str:
    """Corpus-qualified subject id of ``actor``: ``ravdess-actor-01``."""
    return f"{NAME}-actor-{actor:02d}"


def decode_name(path: Path) -> dict[str, object]:
    """Every field of a RAVDESS file name; a RowError naming the file if a field is invalid
    (reason ``bad_name``, ``unknown_label`` for the emotion code, ``impossible_code``)."""
    m = CODE.match(path.name)
    if not m:
        raise RowError(
            "bad_name",
            str(path),
            "not a RAVDESS file name; expected seven 2-digit codes "
            "MM-VV-EE-II-SS-RR-AA.mp4|wav (e.g. 01-01-03-02-01-01-01.mp4)",
        )
    mm, vv, ee, ii, ss, rr, aa, _ = m.groups()
    tables = (
        ("modality", MODALITY, mm),
        ("vocal_channel", CHANNEL, vv),
        ("emotion", EMOTION, ee),
        ("intensity", INTENSITY, ii),
        ("statement", STATEMENT, ss),
        ("repetition", REPETITION, rr),
    )
    out: dict[str, object] = {}
    for field_name, table, code in tables:
        if code not in table:
            reason = "unknown_label" if field_name == "emotion" else "bad_name"
            raise RowError(reason, str(path), f"invalid {field_name} code {code!r}; expected one of {', '.join(table)}")
        out[field_name] = table[code]
    actor = int(aa)
    if not 1 <= actor <= 24:
        raise RowError("bad_name", str(path), f"invalid actor code {aa!r}; expected 01..24")
    if ee == "01" and ii == "02":
        raise RowError(
            "impossible_code",
            str(path),
            "intensity 02 (strong) with emotion 01 (neutral); RAVDESS has no strong neutral",
        )
    out.update(actor=actor, gender="male" if actor % 2 else "female", code=path.stem, subject=subject(actor))
    return out


def scan(root: Path) -> tuple[dict[str, Path], list[tuple[Path, RowError | None]]]:
    """(code -> file for every valid RAVDESS file under ``root``, (file, error) for every media file
    whose name does not decode, and (file, None) for an extra copy of a code)."""
    found: dict[str, Path] = {}
    bad: list[tuple[Path, RowError | None]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not is_junk(d))
        for fn in sorted(filenames):
            if is_junk(fn) or not fn.lower().endswith(MEDIA_EXTS):
                continue
            p = Path(dirpath) / fn
            try:
                decode_name(p)  # validates every file, also those outside the chosen subset
            except RowError as e:
                bad.append((p, e))
                continue
            key = fn.lower()
            if key in found:
                bad.append((p, None))
            else:
                found[key] = p
    if not found:
        raise DatasetError(
            f"{root}: no RAVDESS files found; expected Actor_XX/MM-VV-EE-II-SS-RR-AA.mp4|wav "
            "(e.g. Actor_01/01-01-03-02-01-01-01.mp4)"
        )
    return found, bad


def _actor(path: Path) -> int | None:
    """The actor of a file whose name has the seven codes and a valid actor code, else None."""
    m = CODE.match(path.name)
    return int(m.group(7)) if m and 1 <= int(m.group(7)) <= 24 else None


def _selected(path: Path, subset: tuple[str, str, bool], folds: list[int], splits: list[str]) -> bool:
    """Whether a file that did not become a sample belongs to the chosen subset, folds and splits,
    as far as its name can tell (unreadable codes count as belonging)."""
    mod, chan, _ = subset
    pre = _PREFIX.match(path.name)
    if pre and (pre.groups() != (mod, chan) or path.suffix.lower() != (".wav" if mod == "03" else ".mp4")):
        return False
    actor = _actor(path)
    if actor is not None:
        test_fold = fold_of_actor(actor)
        return any(("test" if k == test_fold else "train") in splits for k in folds)
    return True


def _file_rejects(bad: list[tuple[Path, RowError | None]], found: dict[str, Path]) -> list[Reject]:
    rejects = []
    for path, err in bad:
        sid = f"{NAME}-{path.stem}"
        actor = _actor(path)
        meta = {"actor": actor, "subject": subject(actor)} if actor is not None else {}
        if err is None:
            rejects.append(Reject(sid, str(path), "duplicate", f"same code as {found[path.name.lower()]}", meta))
        else:
            rejects.append(row_reject(sid, path, err, meta))
    return rejects


def prepare(
    root: str | os.PathLike, *, fold: int | None = None, subset: str | None = None, split: str | None = "all"
) -> Prepared:
    """RAVDESS samples of ``subset`` (default speech AV clips) for ``fold`` (all 6 when None) and
    ``split`` (train, test, all)."""
    root = check_root(root, NAME)
    subset = normalise_subset(NAME, subset, tuple(SUBSETS), "speech")
    folds = select_folds(NAME, fold, FOLDS)
    splits = select_splits(NAME, split, SPLITS)
    mod, chan, pair = SUBSETS[subset]
    files, bad = scan(root)
    rejects = _file_rejects([(p, e) for p, e in bad if _selected(p, SUBSETS[subset], folds, splits)], files)
    ext = "wav" if mod == "03" else "mp4"
    chosen = sorted((k, p) for k, p in files.items() if k.startswith(f"{mod}-{chan}-") and k.endswith(ext))
    if not chosen:
        raise DatasetError(f"{root}: no RAVDESS {subset} files ({mod}-{chan}-*.{ext}) found")

    samples: list[Sample] = []
    for _, path in chosen:
        info = decode_name(path)
        try:
            label = label_for(NAME, str(info["emotion"]), str(path))
        except RowError as e:
            rejects.append(
                row_reject(f"{NAME}-{path.stem}", path, e, {"actor": info["actor"], "subject": info["subject"]})
            )
            continue
        audio = files.get(f"03-{path.stem[3:]}.wav") if pair else None
        modality = {"01": "audio+video", "02": "audio+video" if audio else "video", "03": "audio"}[mod]
        file_modality = info.pop("modality")
        meta = {**info, "file_modality": file_modality, "modality": modality}
        test_fold = fold_of_actor(int(info["actor"]))
        for k in folds:
            split_name = "test" if k == test_fold else "train"
            if split_name not in splits:
                continue
            samples.append(
                Sample(
                    id=f"{NAME}-f{k}-{split_name}-{path.stem}",
                    media=str(path),
                    label=label,
                    dataset=NAME,
                    split=split_name,
                    fold=k,
                    audio=str(audio) if audio else None,
                    meta=dict(meta),
                )
            )
    return Prepared(samples, rejects)
