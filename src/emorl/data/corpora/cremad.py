"""CREMA-D (CheyneyComputerScience/CREMA-D): 91 actors, 6 emotions, names ``AAAA_SSS_EEE_LL``.

Layout::

    CREMA-D/
      VideoFlash/1001_DFA_ANG_XX.flv      video (with its own audio track)
      AudioWAV/1001_DFA_ANG_XX.wav        16 kHz audio, used as the sample's ``audio``
      VideoDemographics.csv               optional: ActorID, Age, Sex, Race, Ethnicity -> meta

Subsets: ``audio-video`` (default: media = flv, audio = wav) and ``audio-only`` (media = wav).

Git-LFS: a clone without ``git lfs pull`` holds ~130-byte pointer stubs; they are detected by their
header, never decoded, and returned as ``Reject(reason="lfs_pointer")``. The four known bad files
(1076_MTI_NEU_XX, 1076_MTI_SAD_XX, 1064_TIE_SAD_XX, 1064_IEO_DIS_MD) are ``Reject(reason="known_bad")``.

Folds: 5 subject-independent folds of 18 actors (1001-1018, 1019-1036, 1037-1054, 1055-1072,
1073-1091 (19)); fold k tests its actors and trains on the rest. Splits: ``train``, ``test`` or
``all`` (default), fold-aware. ``meta.subject`` is ``crema-d-<actor>`` (e.g. ``crema-d-1001``).

Name rejects (one per file stem, id ``crema-d-<stem>``, path the video or else the wav):
``bad_name`` (not ``AAAA_SSS_EEE_LL``, an actor outside 1001..1091, an unknown sentence or level
code), ``unknown_label`` (an emotion code outside ANG DIS FEA HAP NEU SAD); a name whose actor is
readable is listed only for the selected folds and splits. A ``VideoDemographics.csv`` row that
cannot be read is a ``malformed_row`` reject (id ``crema-d-VideoDemographics.csv:<line>``); that
actor's samples are kept without demographics.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from emorl.data.corpora.common import (
    Prepared,
    Reject,
    RowError,
    check_root,
    find_optional,
    find_path,
    index_files,
    label_for,
    line_id,
    media_problem,
    normalise_subset,
    parse_int,
    read_csv_dicts,
    row_reject,
    select_folds,
    select_splits,
    split_choices,
)
from emorl.data.manifest import Sample

NAME = "crema-d"
FOLDS = (1, 2, 3, 4, 5)
SPLITS = ("train", "test")
SPLIT_CHOICES = split_choices(SPLITS)
CODE = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")
SENTENCES = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
EMOTIONS = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")
LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
KNOWN_BAD = frozenset({"1076_MTI_NEU_XX", "1076_MTI_SAD_XX", "1064_TIE_SAD_XX", "1064_IEO_DIS_MD"})
SUBSETS = ("audio-video", "audio-only")


def fold_of_actor(actor: int) -> int:
    """The fold whose test set holds ``actor`` (1001..1091): 18 actors a fold, the last has 19."""
    return min((actor - 1001) // 18 + 1, 5)


def subject(actor: int) -> str:
    """Corpus-qualified subject id of ``actor``: ``crema-d-1001``."""
    return f"{NAME}-{actor}"


def decode_name(stem: str, where: str) -> dict[str, object]:
    """Fields of ``AAAA_SSS_EEE_LL``; a RowError naming ``where`` if any is invalid
    (reason ``bad_name``, or ``unknown_label`` for the emotion code)."""
    m = CODE.match(stem)
    if not m:
        raise RowError(
            "bad_name", where, f"{stem!r} is not a CREMA-D file name; expected AAAA_SSS_EEE_LL (e.g. 1001_DFA_ANG_XX)"
        )
    actor_s, sent, emo, level = m.groups()
    actor = int(actor_s)
    if not 1001 <= actor <= 1091:
        raise RowError("bad_name", where, f"actor {actor} outside 1001..1091")
    if sent not in SENTENCES:
        raise RowError("bad_name", where, f"unknown sentence code {sent!r}; expected one of {', '.join(SENTENCES)}")
    if emo not in EMOTIONS:
        raise RowError("unknown_label", where, f"unknown label {emo!r}; expected one of {', '.join(EMOTIONS)}")
    if level not in LEVELS:
        raise RowError("bad_name", where, f"unknown level {level!r}; expected one of {', '.join(LEVELS)}")
    return {
        "actor": actor,
        "sentence": sent,
        "sentence_text": SENTENCES[sent],
        "emotion": emo,
        "level": LEVELS[level],
        "level_code": level,
        "subject": subject(actor),
    }


def read_demographics(path: Path) -> tuple[dict[int, dict[str, object]], list[tuple[int, RowError]]]:
    """(ActorID -> {age, gender, race, ethnicity}, (line, RowError) unreadable rows) from
    ``VideoDemographics.csv``."""
    out: dict[int, dict[str, object]] = {}
    table = read_csv_dicts(path, ("ActorID", "Age", "Sex"))
    bad = list(table.bad)
    for lineno, row in table.rows:
        where = f"{path}:{lineno}"
        try:
            out[parse_int(row["ActorID"], where, "ActorID")] = {
                "age": parse_int(row["Age"], where, "Age"),
                "gender": row["Sex"].strip().lower(),
                **{k.lower(): row[k] for k in ("Race", "Ethnicity") if row.get(k)},
            }
        except RowError as e:
            bad.append((lineno, e))
    return out, sorted(bad, key=lambda b: b[0])


def _problem(stem: str, media: Path, audio: Path | None) -> tuple[str, str, Path] | None:
    """(reason, detail, path) when the sample cannot be used: known bad, missing or an LFS stub."""
    if stem in KNOWN_BAD:
        return "known_bad", "listed as unusable in the CREMA-D reference (7,438 usable)", media
    for p in (media, audio):
        problem = media_problem(p) if p is not None else None
        if problem:
            return problem[0], problem[1], p
    return None


def _selected(stem: str, folds: list[int], splits: list[str]) -> bool:
    """Whether a file whose name did not decode belongs to the chosen folds and splits (True when its
    actor is unreadable)."""
    m = re.match(r"^(\d{4})_", stem)
    if not m or not 1001 <= int(m.group(1)) <= 1091:
        return True
    test_fold = fold_of_actor(int(m.group(1)))
    return any(("test" if k == test_fold else "train") in splits for k in folds)


def prepare(
    root: str | os.PathLike, *, fold: int | None = None, subset: str | None = None, split: str | None = "all"
) -> Prepared:
    """CREMA-D samples for ``fold`` (all 5 when None) and ``split`` (train, test, all); ``subset``
    audio-video (default) or audio-only."""
    root = check_root(root, NAME)
    subset = normalise_subset(NAME, subset, SUBSETS, "audio-video")
    folds = select_folds(NAME, fold, FOLDS)
    splits = select_splits(NAME, split, SPLITS)
    wav_dir = find_optional(root, ("AudioWAV",), kind="dir")
    if subset == "audio-only":
        wav_dir = find_path(root, ("AudioWAV",), what="CREMA-D AudioWAV folder", kind="dir")
        video_dir, videos = None, {}
    else:
        video_dir = find_path(root, ("VideoFlash",), what="CREMA-D VideoFlash folder", kind="dir")
        videos = index_files(video_dir, (".flv", ".mp4"))
    wavs = index_files(wav_dir, (".wav",)) if wav_dir else {}
    demo_csv = find_optional(root, ("VideoDemographics.csv",))
    demographics, bad_rows = read_demographics(demo_csv) if demo_csv else ({}, [])

    stems = sorted(set(videos) | set(wavs)) if video_dir else sorted(wavs)
    samples: list[Sample] = []
    rejects: list[Reject] = [row_reject(line_id(NAME, root, demo_csv, n), demo_csv, e) for n, e in bad_rows]
    for stem in stems:
        if video_dir:
            media, audio = videos.get(stem, video_dir / f"{stem}.flv"), wavs.get(stem)
        else:
            media, audio = wavs[stem], None
        try:
            info = decode_name(stem, str(media if media.exists() else audio))
            label = label_for(NAME, str(info["emotion"]), stem)
        except RowError as e:
            if _selected(stem, folds, splits):
                rejects.append(row_reject(f"{NAME}-{stem}", media if media.exists() else audio, e))
            continue
        test_fold = fold_of_actor(int(info["actor"]))
        problem = _problem(stem, media, audio)
        meta = {
            **info,
            **demographics.get(int(info["actor"]), {}),
            "modality": "audio" if subset == "audio-only" else "audio+video",
        }
        for k in folds:
            split_name = "test" if k == test_fold else "train"
            if split_name not in splits:
                continue
            sid = f"{NAME}-f{k}-{split_name}-{stem}"
            if problem:
                reason, detail, bad = problem
                rejects.append(
                    Reject(
                        sid,
                        str(bad),
                        reason,
                        detail,
                        {"label": label, "fold": k, "split": split_name, "subject": info["subject"]},
                    )
                )
                continue
            samples.append(
                Sample(
                    id=sid,
                    media=str(media),
                    label=label,
                    dataset=NAME,
                    split=split_name,
                    fold=k,
                    audio=str(audio) if audio else None,
                    meta=dict(meta),
                )
            )
    return Prepared(samples, rejects)
