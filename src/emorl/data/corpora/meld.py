"""MELD (declare-lab/MELD): Friends utterances, 7 emotions, train / dev / test.

Layout (the root may also be the ``MELD.Raw`` folder's parent)::

    MELD/
      train_sent_emo.csv  dev_sent_emo.csv  test_sent_emo.csv
          Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime
      train/train_splits/dia0_utt0.mp4
      dev/dev_splits_complete/dia0_utt0.mp4
      test/output_repeated_splits_test/dia0_utt0.mp4   (some named final_videos_testdia0_utt0.mp4)

Quirks handled: ``final_videos_test`` prefixes in test, macOS ``._*`` junk (ignored), missing clips
(dia125_utt3 train, dia110_utt7 dev: ``Reject(reason="missing")``), duplicate CSV rows
(``Reject(reason="duplicate")``, first kept), times ``h:mm:ss,ms`` -> seconds in meta.
Labels: anger -> angry, joy -> happy, sadness -> sad, the rest unchanged. No folds.

Splits: ``train``, ``dev``, ``test``, ``all`` (default), or several comma-separated; ``subset`` is
still accepted as an alias of ``split`` (not both). Speakers are Friends characters recurring
across the show, so no ``meta.subject`` is set.

Row-level rejects: ``malformed_row`` (a row with the wrong number of fields or a Dialogue_ID /
Utterance_ID that is not an integer: id ``meld-<split>_sent_emo.csv:<line>``; a Season, Episode or
time that does not parse: the row's usual id), ``unknown_label`` (an Emotion outside the seven).
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
    find_path,
    is_junk,
    label_for,
    line_id,
    media_problem,
    parse_int,
    read_csv_dicts,
    require_no_fold,
    row_reject,
    split_choices,
    split_from_subset,
)
from emorl.data.manifest import Sample

NAME = "meld"
SPLITS = ("train", "dev", "test")
SPLIT_CHOICES = split_choices(SPLITS)
SUBSETS: tuple[str, ...] = ()  # ``subset`` names splits (alias of ``split``)
VIDEO_DIRS = {"train": "train_splits", "dev": "dev_splits_complete", "test": "output_repeated_splits_test"}
COLUMNS = (
    "Sr No.",
    "Utterance",
    "Speaker",
    "Emotion",
    "Sentiment",
    "Dialogue_ID",
    "Utterance_ID",
    "Season",
    "Episode",
    "StartTime",
    "EndTime",
)
BASES = ("", "MELD.Raw/", "MELD/", "data/MELD/")
CLIP = re.compile(r"^(final_videos_test)?dia(\d+)_utt(\d+)\.mp4$", re.IGNORECASE)
TIME = re.compile(r"^(\d+):(\d{1,2}):(\d{1,2})[,.](\d{1,3})$")


def parse_time(value: str, where: str) -> float:
    """``"0:00:16,059"`` / ``"00:00:16,059"`` -> 16.059 seconds; a ``malformed_row`` RowError otherwise."""
    m = TIME.match(value.strip())
    if not m:
        raise RowError("malformed_row", where, f"malformed row: time {value!r} is not h:mm:ss,ms")
    h, mi, s, ms = m.groups()
    return int(h) * 3600 + int(mi) * 60 + int(s) + int(ms.ljust(3, "0")) / 1000


def index_clips(directory: Path) -> dict[tuple[int, int], Path]:
    """(dialogue, utterance) -> clip; plain ``diaD_uttU.mp4`` preferred over ``final_videos_test`` names."""
    out: dict[tuple[int, int], tuple[int, Path]] = {}
    with os.scandir(directory) as it:
        for e in it:
            m = CLIP.match(e.name)
            if is_junk(e.name) or not m or not e.is_file():
                continue
            key, rank = (int(m.group(2)), int(m.group(3))), 1 if m.group(1) else 0
            if key not in out or rank < out[key][0]:
                out[key] = (rank, Path(e.path))
    return {k: p for k, (_, p) in out.items()}


def _split_samples(root: Path, split: str) -> Prepared:
    csv_path = find_path(
        root, [f"{b}{split}_sent_emo.csv" for b in BASES], what=f"MELD {split} annotations", kind="file"
    )
    sub = VIDEO_DIRS[split]
    video_dir = find_path(
        root,
        [f"{b}{split}/{sub}" for b in BASES] + [f"{b}{sub}" for b in BASES],
        what=f"MELD {split} clip folder",
        kind="dir",
    )
    clips = index_clips(video_dir)
    table = read_csv_dicts(csv_path, COLUMNS, encodings=("utf-8-sig", "cp1252"))
    samples, rejects, seen = [], [], {}
    for lineno, err in table.bad:
        rejects.append(
            row_reject(
                line_id(NAME, root, csv_path, lineno),
                csv_path,
                err,
                {"split": split, "source": f"{csv_path.name}:{lineno}"},
            )
        )
    for lineno, row in table.rows:
        where = f"{csv_path}:{lineno}"
        info = {"split": split, "source": f"{csv_path.name}:{lineno}"}
        try:
            dia = parse_int(row["Dialogue_ID"], where, "Dialogue_ID")
            utt = parse_int(row["Utterance_ID"], where, "Utterance_ID")
        except RowError as e:
            rejects.append(row_reject(line_id(NAME, root, csv_path, lineno), csv_path, e, info))
            continue
        key = f"dia{dia}_utt{utt}"
        sid = f"{NAME}-{split}-{key}"
        media = clips.get((dia, utt), video_dir / f"{key}.mp4")
        try:
            info["label"] = label_for(NAME, row["Emotion"], where)
            meta = {
                "dialogue": dia,
                "utterance_id": utt,
                "utterance": row["Utterance"],
                "speaker": row["Speaker"],
                "emotion_raw": row["Emotion"],
                "sentiment": row["Sentiment"].lower(),
                "season": parse_int(row["Season"], where, "Season"),
                "episode": parse_int(row["Episode"], where, "Episode"),
                "start": parse_time(row["StartTime"], where),
                "end": parse_time(row["EndTime"], where),
                "modality": "audio+video",
                "source": info["source"],
            }
        except RowError as e:
            rejects.append(row_reject(sid, media, e, info))
            continue
        if (dia, utt) in seen:
            rejects.append(Reject(sid, str(media), "duplicate", f"{key} already listed on line {seen[dia, utt]}", info))
            continue
        seen[dia, utt] = lineno
        problem = media_problem(media)
        if problem:
            rejects.append(Reject(sid, str(media), problem[0], problem[1], info))
            continue
        samples.append(Sample(id=sid, media=str(media), label=info["label"], dataset=NAME, split=split, meta=meta))
    return Prepared(samples, rejects)


def prepare(
    root: str | os.PathLike, *, fold: int | None = None, subset: str | None = None, split: str | None = "all"
) -> Prepared:
    """MELD samples of ``split`` (train, dev, test, all; comma-separate several); ``subset`` is
    accepted as an alias of ``split``."""
    root = check_root(root, NAME)
    require_no_fold(NAME, fold)
    samples, rejects = [], []
    for split_name in split_from_subset(NAME, subset, split, SPLITS):
        got = _split_samples(root, split_name)
        samples += got.samples
        rejects += got.rejects
    return Prepared(samples, rejects)
