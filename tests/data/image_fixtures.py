"""Fixture trees of the image emotion corpora in their official layouts, built at test time.

Images are tiny (12x12) and distinct (their colour encodes the index), so content addressing and
leakage checks see different files. Each builder returns the root it made; ``spoil_*`` functions
add row-level problems and return {reject id: reason} for what they broke. The counts the tests
expect are stated next to the assertions.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

MIKELS_WORDS = ("amusement", "anger", "awe", "contentment", "disgust", "excitement", "fear", "sadness")
EMOTION6_WORDS = ("anger", "disgust", "fear", "joy", "sadness", "surprise")


def image_bytes(i: int, fmt: str = "JPEG", size: int = 12) -> bytes:
    """A small image whose pixels depend on ``i`` (distinct bytes per index)."""
    rng = np.random.default_rng(i)
    arr = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    arr[0, 0] = (i % 256, (i // 256) % 256, 7)
    b = io.BytesIO()
    Image.fromarray(arr).save(b, fmt)
    return b.getvalue()


def put_image(path: Path, i: int, fmt: str = "JPEG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image_bytes(i, fmt))
    return path


# --------------------------------------------------------------------------- EmoSet-118K


def build_emoset(root: Path, per_class: int = 3) -> Path:
    """EmoSet-118K: 8 emotions x ``per_class`` images; image k of each class goes to train (k=0,1),
    val (k=2 when per_class>3 else none) or test (the last). With per_class=3: 16 train, 8 test."""
    splits: dict[str, list] = {"train": [], "val": [], "test": []}
    n = 0
    for emo in MIKELS_WORDS:
        for k in range(per_class):
            iid = f"{emo}_{k:05d}"
            put_image(root / "image" / emo / f"{iid}.jpg", n)
            n += 1
            ann = {
                "emotion": emo,
                "image_id": iid,
                "brightness": 0.4,
                "colorfulness": 0.7,
                "scene": "bakery/shop",
                "object": ["Alarm clock", "Person"],
                "facial_expression": "happy",
                "human_action": "boxing ",
            }
            if k == 1:
                del ann["human_action"], ann["object"]  # any attribute may be absent
            (root / "annotation" / emo).mkdir(parents=True, exist_ok=True)
            (root / "annotation" / emo / f"{iid}.json").write_text(json.dumps(ann))
            split = "test" if k == per_class - 1 else ("val" if k == 2 else "train")
            splits[split].append([emo, iid, f"image/{emo}/{iid}.jpg", f"annotation/{emo}/{iid}.json"])
    for name, rows in splits.items():
        (root / f"{name}.json").write_text(json.dumps(rows))
    (root / "info.json").write_text(
        json.dumps(
            {
                "label2idx": {
                    "emotion": {
                        w: i
                        for i, w in enumerate(
                            ("amusement", "awe", "contentment", "excitement", "anger", "disgust", "fear", "sadness")
                        )
                    }
                }
            }
        )
    )
    return root


def spoil_emoset(root: Path) -> dict[str, str]:
    """Bad entries appended to train.json, a bad annotation and a missing image."""
    rows = json.loads((root / "train.json").read_text())
    n = len(rows)
    rows += [
        ["awe", "awe_00099"],  # too short                                     -> malformed_row (entry id)
        ["boredom", "boredom_00001", "image/boredom/boredom_00001.jpg", "annotation/x.json"],  # -> unknown_label
        ["fear", "awe_00007", "image/awe/awe_00007.jpg", "annotation/awe/awe_00007.json"],  # -> label_conflict
        ["fear", "fear_00050", "../../outside.jpg", "annotation/fear/fear_00050.json"],  # -> bad_path
        ["fear", "fear_00051", "image/fear/fear_00051.jpg", "annotation/fear/fear_00051.json"],  # -> missing
    ]
    (root / "train.json").write_text(json.dumps(rows))
    (root / "annotation/amusement/amusement_00000.json").write_text("{not json")  # sample kept, reject listed
    return {
        f"emoset-train.json:{n + 1}": "malformed_row",
        "emoset-boredom_00001": "unknown_label",
        "emoset-awe_00007": "label_conflict",
        "emoset-fear_00050": "bad_path",
        "emoset-fear_00051": "missing",
        "emoset-annotation/amusement/amusement_00000.json": "malformed_row",
    }


# --------------------------------------------------------------------------- Emotion6

EMOTION6_HEADER = (
    "[image_filename]\t[valence]\t[arousal]\t[prob. anger]\t[prob. disgust]\t[prob. fear]\t"
    "[prob. joy]\t[prob. sadness]\t[prob. surprise]\t[prob. neutral]"
)


def emotion6_line(rel: str, votes: tuple[float, ...], valence: float = 5.0, arousal: float = 4.5) -> str:
    return "\t".join([rel, f"{valence:g}", f"{arousal:g}", *(f"{v:g}" for v in votes)])


def build_emotion6(root: Path, per_class: int = 5) -> Path:
    """Emotion6: 6 folders x ``per_class`` images (unpadded names 1..n), each voted for its own
    keyword with share 0.6, except image 2 of each folder whose votes favour the next class."""
    lines = [EMOTION6_HEADER]
    n = 0
    for c, emo in enumerate(EMOTION6_WORDS):
        for k in range(1, per_class + 1):
            put_image(root / "images" / emo / f"{k}.jpg", 1000 + n)
            n += 1
            votes = [0.0] * 7
            votes[(c + 1) % 6 if k == 2 else c] = 0.6
            votes[6] = 0.1
            votes[(c + 2) % 6] = 0.3
            lines.append(emotion6_line(f"{emo}/{k}.jpg", tuple(votes)))
    (root / "ground_truth.txt").write_text("\n".join(lines) + "\n")
    return root


def spoil_emotion6(root: Path) -> dict[str, str]:
    gt = root / "ground_truth.txt"
    lines = gt.read_text().splitlines()
    lines += [
        "anger/90.jpg\t5\t4",  # too few fields                                -> malformed_row
        emotion6_line("boredom/1.jpg", (0.1,) * 7),  # folder outside the six       -> unknown_label
        emotion6_line("fear/77.jpg", (0, 0, 0.7, 0, 0, 0, 0.3)),  # not on disk     -> missing
        "joy/8.jpg\t5\tx\t0\t0\t0\t1\t0\t0\t0",  # arousal not a number          -> malformed_row
    ]
    put_image(root / "images/anger/90.jpg", 5000)
    put_image(root / "images/sadness/55.jpg", 5001)  # on disk, not listed       -> unlisted
    put_image(root / "images/joy/8.jpg", 5002)
    gt.write_text("\n".join(lines) + "\n")
    return {
        "emotion6-anger-90": "malformed_row",
        "emotion6-boredom-1": "unknown_label",
        "emotion6-fear-77": "missing",
        "emotion6-joy-8": "malformed_row",
        "emotion6-sadness-55": "unlisted",
    }


# --------------------------------------------------------------------------- FI


def build_fi(root: Path, per_class: int = 6, nested: str = "emotion_dataset") -> Path:
    """FI: 8 emotion folders (one level down in ``nested`` unless it is empty) x ``per_class``
    images named ``<emotion>_<k>.jpg``; a macOS junk file and a non-emotion folder are ignored."""
    base = root / nested if nested else root
    n = 0
    for emo in MIKELS_WORDS:
        for k in range(per_class):
            put_image(base / emo / f"{emo}_{k}.jpg", 2000 + n)
            n += 1
    (base / "amusement" / ".DS_Store").write_bytes(b"junk")
    (base / "README_not_an_emotion").mkdir(parents=True, exist_ok=True)
    return root


def spoil_fi(root: Path, nested: str = "emotion_dataset") -> dict[str, str]:
    base = root / nested if nested else root
    put_image(base / "awe" / "fear_12.jpg", 6000)  # the name says fear            -> label_conflict
    (base / "anger" / "notes.txt").write_text("annotator notes")  # not an image -> not_image
    return {"fi-awe-fear_12": "label_conflict", "fi-anger-notes": "not_image"}


# --------------------------------------------------------------------------- EmotionROI


def build_emotionroi(root: Path, per_class: int = 4, crlf: bool = True) -> Path:
    """EmotionROI: 6 folders x ``per_class`` images; images 1..per_class-1 in training.txt, the
    last in testing.txt (CRLF line endings by default). 18 train + 6 test with per_class=4."""
    train, test = [], []
    n = 0
    for emo in EMOTION6_WORDS:
        for k in range(1, per_class + 1):
            put_image(root / "images" / emo / f"{k}.jpg", 3000 + n)
            n += 1
            (test if k == per_class else train).append(f"{emo}/{k}.jpg")
    sep = "\r\n" if crlf else "\n"
    d = root / "training_testing_split"
    d.mkdir(parents=True, exist_ok=True)
    (d / "training.txt").write_bytes((sep.join(train) + sep).encode())
    (d / "testing.txt").write_bytes((sep.join(test) + sep).encode())
    (root / "ground_truth" / "anger").mkdir(parents=True, exist_ok=True)  # ROI maps, not read
    return root


def spoil_emotionroi(root: Path) -> dict[str, str]:
    d = root / "training_testing_split"
    with (d / "training.txt").open("ab") as f:
        f.write(b"just-a-name.jpg\r\nboredom/1.jpg\r\nfear/99.jpg\r\n")
    put_image(root / "images/joy/42.jpg", 7000)  # in no list -> unlisted
    n = len((d / "training.txt").read_bytes().decode().splitlines())
    return {
        f"emotionroi-training_testing_split/training.txt:{n - 2}": "malformed_row",
        "emotionroi-boredom-1": "unknown_label",
        "emotionroi-fear-99": "missing",
        "emotionroi-joy-42": "unlisted",
    }


# --------------------------------------------------------------------------- hub copies (parquet)


def build_hub(root: Path, rows: dict[str, list[dict]], *, column: str = "images") -> Path:
    """A hub snapshot: ``data/<split>-00000-of-00001.parquet`` per split, written with ``datasets``
    (HF ``Image`` features: ``{bytes, path}``), columns ``column``, problem, course_grained, answer."""
    import datasets

    img = datasets.List(datasets.Image()) if column == "images" else datasets.Image()
    feats = datasets.Features(
        {
            column: img,
            "problem": datasets.Value("string"),
            "course_grained": datasets.Value("string"),
            "answer": datasets.Value("string"),
        }
    )
    for split, items in rows.items():
        cols = {k: [r[k] for r in items] for k in (column, "problem", "course_grained", "answer")}
        ds = datasets.Dataset.from_dict(cols, features=feats)
        (root / "data").mkdir(parents=True, exist_ok=True)
        ds.to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))
    return root


def emoset2k_rows(n_train: int = 8, n_test: int = 4) -> dict[str, list[dict]]:
    """EMO-R3-style rows: one image each, the Mikels word as the answer; test row 0 repeats train
    row 0's image (a leak the guard must see)."""
    problem = (
        "<image>Which emotion best describes the image? amusement, anger, awe, contentment, disgust, "
        "excitement, fear, sadness"
    )

    def row(i: int, word: str) -> dict:
        return {
            "images": [{"bytes": image_bytes(4000 + i, "PNG" if i % 2 else "JPEG"), "path": f"{i}.jpg"}],
            "problem": problem,
            "course_grained": "positive",
            "answer": word,
        }

    train = [row(i, MIKELS_WORDS[i % 8]) for i in range(n_train)]
    test = [row(100 + i, MIKELS_WORDS[(i + 3) % 8]) for i in range(n_test)]
    test[0] = {**row(0, MIKELS_WORDS[0])}
    return {"train": train, "test": test}
