"""Fixture trees in each corpus's official layout, built under a temporary folder at test time.

Media are tiny: one 4-frame 32x32 H.264 clip with 0.5 s of AAC audio, one without audio, one
16 kHz wav and one jpg are encoded once per session (``MediaBank``) and copied to every path a
layout needs. Each builder writes annotation files with the real headers and quirks and returns
nothing; the tests state the counts they expect next to the assertions.
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emorl.data.media import write_mp4, write_wav

LFS_STUB = (
    b"version https://git-lfs.github.com/spec/v1\n"
    b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 1234567\n"
)


@dataclass(frozen=True)
class MediaBank:
    """Template media files, copied into fixture trees."""

    av_mp4: Path  # 4 frames 32x32 @ 8 fps + 0.5 s audio
    silent_mp4: Path  # same video, no audio stream
    wav: Path  # 0.5 s, 16 kHz
    jpg: Path  # one 32x32 face frame

    def put(self, kind: str, dest: Path) -> Path:
        """Copy template ``kind`` (av, silent, wav) to ``dest``; ``frames`` makes a folder of 3 jpgs."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        if kind == "frames":
            dest.mkdir(parents=True, exist_ok=True)
            for i in (1, 2, 10):  # natural sort matters: 1, 2, 10
                shutil.copyfile(self.jpg, dest / f"{i}.jpg")
            return dest
        src = {"av": self.av_mp4, "silent": self.silent_mp4, "wav": self.wav}[kind]
        shutil.copyfile(src, dest)
        return dest


def make_media_bank(folder: Path) -> MediaBank:
    """Encode the template media once."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(4, 32, 32, 3), dtype=np.uint8)
    t = np.arange(8000) / 16000
    tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    write_mp4(folder / "av.mp4", frames, fps=8, audio=tone)
    write_mp4(folder / "silent.mp4", frames, fps=8)
    write_wav(folder / "a.wav", tone)
    Image.fromarray(frames[0]).save(folder / "f.jpg")
    return MediaBank(folder / "av.mp4", folder / "silent.mp4", folder / "a.wav", folder / "f.jpg")


def write_lfs_stub(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(LFS_STUB)
    return path


def write_corrupt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    return path


def write_csv(
    path: Path, header: list[str] | None, rows: list[list], *, encoding: str = "utf-8", delimiter: str = ","
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding=encoding, newline="") as f:
        w = csv.writer(f, delimiter=delimiter)
        if header:
            w.writerow(header)
        w.writerows(rows)
    return path


# --------------------------------------------------------------------------- DFEW

DFEW_CLIPS = range(1, 11)  # clip n: label (n-1)%7+1, test fold (n-1)%5+1; clip 10 has no original mp4


def dfew_label_id(clip: int) -> int:
    return (clip - 1) % 7 + 1


def dfew_test_fold(clip: int) -> int:
    return (clip - 1) % 5 + 1


def build_dfew(root: Path, bank: MediaBank, *, spelling: str = "single-labeled") -> Path:
    """DFEW/: 10 clips, 5 folds; odd clips padded (00001.mp4), even unpadded (2.mp4); clip 10 has no
    mp4 and clip 3 no frame folder; annotation.xlsx with 7 vote columns."""
    from openpyxl import Workbook

    for n in DFEW_CLIPS:
        if n != 10:
            bank.put("av", root / "Clip/original" / (f"{n:05d}.mp4" if n % 2 else f"{n}.mp4"))
        if n != 3:
            bank.put("frames", root / "Clip/clip_224x224" / f"{n:05d}")
    for k in range(1, 6):
        for split in ("train", "test"):
            rows = [[n, dfew_label_id(n)] for n in DFEW_CLIPS if (dfew_test_fold(n) == k) == (split == "test")]
            write_csv(root / f"EmoLabel_DataSplit/{split}({spelling})/set_{k}.csv", ["video_name", "label"], rows)
    wb = Workbook()
    ws = wb.active
    ws.append(
        [
            "vote_happy",
            "vote_sad",
            "vote_neutral",
            "vote_angry",
            "vote_surprise",
            "vote_disgust",
            "vote_fear",
            "clip_name",
            "annotation",
        ]
    )
    for n in DFEW_CLIPS:
        votes = [0] * 7
        votes[dfew_label_id(n) - 1] = 9
        votes[(dfew_label_id(n)) % 7] = 1
        ws.append([*votes, f"{n:05d}", dfew_label_id(n)])
    (root / "Annotation").mkdir(parents=True, exist_ok=True)
    wb.save(root / "Annotation/annotation.xlsx")
    return root


# --------------------------------------------------------------------------- MAFW

MAFW_WORDS = (
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
)
MAFW_CLIPS = range(1, 13)  # clip n: label MAFW_WORDS[(n-1)%11], test fold (n-1)%5+1
MAFW_SILENT = 5  # clip without an audio stream
MAFW_MISSING = 12  # listed but absent
MAFW_COMPOUND = {
    1: "anger_disgust",
    2: "disgust",
    3: "fear_surprise",
    4: "happiness",
    6: "sadness_helplessness",
    7: "surprise",
}


def mafw_test_fold(clip: int) -> int:
    return (clip - 1) % 5 + 1


def build_mafw(root: Path, bank: MediaBank, *, split_root: str = "Train & Test Set") -> Path:
    """MAFW/: 12 clips (00005 without audio, 00012 missing), single no_caption / with_caption
    (TAB, fold 1 in GB18030 with Chinese, others cp1252; neutral uncaptioned) and compound lists."""
    for n in MAFW_CLIPS:
        if n != MAFW_MISSING:
            bank.put("silent" if n == MAFW_SILENT else "av", root / "data/clips" / f"{n:05d}.mp4")
    base = root / split_root
    for k in range(1, 6):
        for split in ("train", "test"):
            chosen = [n for n in MAFW_CLIPS if (mafw_test_fold(n) == k) == (split == "test")]
            lines = [f"{n:05d}.mp4 {MAFW_WORDS[(n - 1) % 11]}" for n in chosen]
            _write_lines(base / f"single/no_caption/set_{k}/{split}.txt", lines, "utf-8")
            enc = "gb18030" if k == 1 else "cp1252"
            cap = []
            for n in chosen:
                word = MAFW_WORDS[(n - 1) % 11]
                if word == "neutral":
                    continue
                zh = "他看起来很生气" if enc == "gb18030" else "caf\u00e9"
                en = f"The man\u2019s face shows {word} \u2013 caf\u00e9 scene"
                cap.append(f"{n:05d}.mp4\t{word}\t{zh}\t{en}")
            _write_lines(base / f"single/with_caption/set_{k}/{split}.txt", cap, enc)
            comp = [f"{n:05d}.mp4 {MAFW_COMPOUND[n]}" for n in chosen if n in MAFW_COMPOUND]
            _write_lines(base / f"compound/no_caption/set_{k}/{split}.txt", comp, "utf-8")
    return root


def _write_lines(path: Path, lines: list[str], encoding: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))


# --------------------------------------------------------------------------- RAVDESS

RAVDESS_SPEECH = {  # actor -> AV speech codes (without modality/channel/actor)
    1: ["01-01-01-01", "06-02-02-01", "08-01-01-02"],
    2: ["01-01-01-01", "02-02-01-01", "06-02-02-01"],
    5: ["03-02-01-01", "08-01-02-02"],
    24: ["05-02-01-01", "07-01-02-01"],
}


def build_ravdess(root: Path, bank: MediaBank) -> Path:
    """Actor folders as the zips extract: AV speech in Video_Speech_Actor_XX/Actor_XX, audio-only wavs
    in Audio_Speech_Actors_01-24/Actor_XX (not for every clip), one song and one video-only clip."""
    for actor, codes in RAVDESS_SPEECH.items():
        a = f"{actor:02d}"
        for i, code in enumerate(codes):
            bank.put("av", root / f"Video_Speech_Actor_{a}/Actor_{a}/01-01-{code}-{a}.mp4")
            bank.put("silent", root / f"Video_Speech_Actor_{a}/Actor_{a}/02-01-{code}-{a}.mp4")
            if i < 2:
                bank.put("wav", root / f"Audio_Speech_Actors_01-24/Actor_{a}/03-01-{code}-{a}.wav")
    bank.put("av", root / "Video_Song_Actor_01/Actor_01/01-02-02-02-01-01-01.mp4")
    bank.put("wav", root / "Audio_Song_Actors_01-24/Actor_01/03-02-02-02-01-01-01.wav")
    (root / "Video_Speech_Actor_01/Actor_01/._01-01-01-01-01-01-01.mp4").write_bytes(b"\x00\x05\x16\x07junk")
    (root / "README.txt").write_text("RAVDESS\n")
    return root


# --------------------------------------------------------------------------- CREMA-D

CREMAD_GOOD = ["1001_DFA_ANG_XX", "1001_IEO_HAP_HI", "1002_TIE_SAD_LO", "1019_MTI_NEU_XX", "1091_WSI_DIS_HI"]
CREMAD_STUB = "1002_ITS_FEA_MD"  # flv is a Git-LFS pointer
CREMAD_BAD = ["1064_TIE_SAD_XX", "1076_MTI_NEU_XX"]


def build_cremad(root: Path, bank: MediaBank) -> Path:
    """CREMA-D/: VideoFlash/*.flv (MP4 bytes under the .flv name: decoders probe content) and
    AudioWAV/*.wav; one LFS stub, two of the known bad files, VideoDemographics.csv."""
    for stem in CREMAD_GOOD + CREMAD_BAD + [CREMAD_STUB]:
        if stem == CREMAD_STUB:
            write_lfs_stub(root / "VideoFlash" / f"{stem}.flv")
        else:
            bank.put("av", root / "VideoFlash" / f"{stem}.flv")
        bank.put("wav", root / "AudioWAV" / f"{stem}.wav")
    (root / "AudioWAV/._1001_DFA_ANG_XX.wav").write_bytes(b"junk")
    write_csv(
        root / "VideoDemographics.csv",
        ["ActorID", "Age", "Sex", "Race", "Ethnicity"],
        [[1001, 51, "Male", "Caucasian", "Not Hispanic"], [1002, 21, "Female", "Caucasian", "Not Hispanic"]],
    )
    return root


# --------------------------------------------------------------------------- MER2023 / MER2024

MER2023 = {  # split -> rows (name, discrete, valence or None)
    "train": [
        ("sample_00000000", "happy", "2.5"),
        ("sample_00000001", "worried", "-1.0"),
        ("sample_00000002", "neutral", "0.0"),
        ("sample_00000003", "angry", "-3.2"),
    ],
    "test1": [("sample_00000007", "sad", "-2.0"), ("sample_00000008", "surprise", "1.5")],
    "test2": [("sample_00000009", "angry", "-4.0")],
    "test3": [("sample_00000010", "worried", None), ("sample_00000011", "happy", None)],
}
MER2024 = [
    ("sample_00000000", "happy", "2.5"),
    ("sample_00000001", "worried", "-1.0"),
    ("sample_00000020", "sad", "-2.2"),
]


def build_mer2023(root: Path, bank: MediaBank) -> Path:
    """MER2023/: four splits, label CSVs name,discrete,valence (test3 without valence)."""
    for split, rows in MER2023.items():
        for name, _, _ in rows:
            bank.put("av", root / split / f"{name}.mp4")
        if split == "test3":
            write_csv(root / f"{split}-label.csv", ["name", "discrete"], [[n, d] for n, d, _ in rows])
        else:
            write_csv(root / f"{split}-label.csv", ["name", "discrete", "valence"], [list(r) for r in rows])
    return root


def build_mer2024(root: Path, bank: MediaBank) -> Path:
    """MER2024/: video-labeled/ and label-disdim.csv; check-openset.csv for one sample."""
    for name, _, _ in MER2024:
        bank.put("av", root / "video-labeled" / f"{name}.mp4")
    write_csv(root / "label-disdim.csv", ["name", "discrete", "valence"], [list(r) for r in MER2024])
    write_csv(root / "check-openset.csv", ["name", "openset"], [["sample_00000000", "['happy', 'excited']"]])
    return root


# --------------------------------------------------------------------------- EMER


def build_emer(root: Path, bank: MediaBank) -> Path:
    """root/EMER/dataset-v{1,2} beside root/MER2023 and root/MER2024.

    v2: sample_00000000 (label from MER2024), sample_00000007 (only MER2023 test1),
    sample_00000099 (in no label file: rejected). v1: two rows with MER2023 labels.
    """
    build_mer2023(root / "MER2023", bank)
    build_mer2024(root / "MER2024", bank)
    bank.put("av", root / "MER2023/train/sample_00000099.mp4")
    write_csv(
        root / "EMER/dataset-v2/final-EMER-reason.csv",
        ["name", "chinese", "english"],
        [
            [
                "sample_00000000",
                "在视频中，他在笑。",
                'In the video, he smiles. In the text, the subtitle reads: "Great!"',
            ],
            ["sample_00000007", "在视频中，她在哭。", "In the video, she cries."],
            ["sample_00000099", "在视频中。", "In the video, nothing."],
        ],
    )
    write_csv(
        root / "EMER/dataset-v1/gt-eng.csv",
        ["names", "emotions", "subtitles", "reasons"],
        [
            ["sample_00000001", "worried", "What now?", "Her brows are knitted; the voice trembles."],
            ["sample_00000000", "happy", "Great!", "He laughs."],
        ],
    )
    return root


# --------------------------------------------------------------------------- MELD

MELD_HEADER = [
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
]


def build_meld(root: Path, bank: MediaBank) -> Path:
    """MELD/: the three CSVs (curly quotes, both time formats) and clip folders; dia125_utt3 (train)
    and dia110_utt7 (dev) missing; a test clip named final_videos_testdia1_utt0.mp4; ``._`` junk;
    a duplicated test row."""
    train = [
        [
            1,
            "also I was the point person on my company\u2019s transition",
            "Chandler",
            "neutral",
            "neutral",
            0,
            0,
            8,
            21,
            "00:16:16,059",
            "00:16:21,731",
        ],
        [
            2,
            "You must\u2019ve had your hands full.",
            "The Interviewer",
            "joy",
            "positive",
            0,
            1,
            8,
            21,
            "0:16:21,940",
            "0:16:23,442",
        ],
        [3, "\u201cOh my God!\u201d", "Monica", "surprise", "positive", 125, 3, 3, 19, "0:05:01,100", "0:05:02,200"],
    ]
    dev = [
        [
            1,
            "Oh my God, he\u2019s lost it.",
            "Phoebe",
            "sadness",
            "negative",
            0,
            0,
            4,
            7,
            "00:03:58,000",
            "00:04:00,500",
        ],
        [2, "Hey!", "Joey", "anger", "negative", 110, 7, 4, 7, "00:04:01,000", "00:04:02,000"],
    ]
    test = [
        [
            1,
            "Why do all you\u2019re coffee mugs have numbers?",
            "Mark",
            "surprise",
            "positive",
            0,
            0,
            6,
            1,
            "0:14:38,000",
            "0:14:40,000",
        ],
        [2, "Oh.", "Rachel", "fear", "negative", 1, 0, 6, 1, "0:14:41,000", "0:14:42,000"],
        [2, "Oh.", "Rachel", "fear", "negative", 1, 0, 6, 1, "0:14:41,000", "0:14:42,000"],
        [3, "Ew.", "Ross", "disgust", "negative", 2, 0, 6, 1, "0:14:43,000", "0:14:44,000"],
    ]
    for split, rows in (("train", train), ("dev", dev), ("test", test)):
        write_csv(root / f"{split}_sent_emo.csv", MELD_HEADER, rows)
    bank.put("av", root / "train/train_splits/dia0_utt0.mp4")
    bank.put("av", root / "train/train_splits/dia0_utt1.mp4")
    write_corrupt(root / "train/train_splits/._dia0_utt0.mp4")
    bank.put("av", root / "dev/dev_splits_complete/dia0_utt0.mp4")
    bank.put("av", root / "test/output_repeated_splits_test/dia0_utt0.mp4")
    bank.put("av", root / "test/output_repeated_splits_test/final_videos_testdia1_utt0.mp4")
    bank.put("av", root / "test/output_repeated_splits_test/dia2_utt0.mp4")
    write_corrupt(root / "test/output_repeated_splits_test/._dia2_utt0.mp4")
    return root


# --------------------------------------------------------------------------- FERV39k

FERV_TRAIN = [("Action/Happy/0267", "Happy"), ("Argue/Angry/0012", "Angry"), ("DailyLife/Neutral/0001", "Neutral")]
FERV_TEST = [("Action/Sad/0001", "Sad"), ("Crime/Fear/0003", "Fear")]  # Crime/Fear/0003 has no folder


def build_ferv39k(root: Path, bank: MediaBank) -> Path:
    """FERV39k/: frame folders 2_ClipsforFaceCrop/<Scene>/<Emotion>/<id>/ and the All_scenes setups."""
    for rel, _ in FERV_TRAIN + FERV_TEST[:1]:
        bank.put("frames", root / "2_ClipsforFaceCrop" / rel)
    for split, rows in (("train", FERV_TRAIN), ("test", FERV_TEST)):
        _write_lines(root / f"4_setups/All_scenes/{split}_All.csv", [f"{r} {lab}" for r, lab in rows], "utf-8")
    return root


# --------------------------------------------------------------------------- row-level problems


def _append_lines(path: Path, lines: list[str], encoding: str = "utf-8") -> None:
    """Append ``lines`` (CRLF, as the fixture files are written) to an existing text file."""
    with path.open("ab") as f:
        f.write(("\r\n".join(lines) + "\r\n").encode(encoding))


def _append_rows(path: Path, rows: list[list]) -> None:
    with path.open("a", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)


def _spoil_dfew(root: Path, bank: MediaBank) -> dict[str, str]:
    from openpyxl import load_workbook

    train1 = next(root.glob("EmoLabel_DataSplit/train(*)/set_1.csv"))  # header + 8 rows: lines 1..9
    _append_lines(train1, ["abc,1", "11,9", "12"])
    xlsx = root / "Annotation/annotation.xlsx"  # header + 10 rows: rows 1..11
    wb = load_workbook(xlsx)
    wb.active.append([1, 0, 0, 0, 0, 0, 0, "x", 1])
    wb.save(xlsx)
    rel = train1.relative_to(root).as_posix()
    return {
        f"dfew-{rel}:10": "malformed_row",
        "dfew-f1-train-00011": "unknown_label",
        f"dfew-{rel}:12": "malformed_row",
        "dfew-Annotation/annotation.xlsx:12": "malformed_row",
    }


def _spoil_mafw(root: Path, bank: MediaBank) -> dict[str, str]:
    lst = next(root.glob("*/single/no_caption/set_1/test.txt"))  # 3 rows: lines 1..3
    _append_lines(lst, ["00013.mp4 boredom", "abc.mp4 anger", "00014.mp4", "00015.mp4 anger_disgust", "00016.mp4 12"])
    rel = lst.relative_to(root).as_posix()
    return {
        "mafw-f1-test-00013": "unknown_label",
        f"mafw-{rel}:5": "malformed_row",
        f"mafw-{rel}:6": "malformed_row",
        "mafw-f1-test-00015": "compound",
        "mafw-f1-test-00016": "unknown_label",
    }


def _spoil_ravdess(root: Path, bank: MediaBank) -> dict[str, str]:
    bad = {
        "Actor_03/01-01-01-02-01-01-03.mp4": "impossible_code",  # strong neutral
        "Actor_03/01-01-09-01-01-01-03.mp4": "unknown_label",  # emotion 09
        "Actor_03/01-01-03-01-01-03-03.mp4": "bad_name",  # repetition 03
        "Actor_03/01-01-03-01-01-01.mp4": "bad_name",  # six codes
        "Actor_25/01-01-03-01-01-01-25.mp4": "bad_name",
    }  # actor 25
    for rel in bad:
        bank.put("av", root / rel)
    return {f"ravdess-{Path(rel).stem}": reason for rel, reason in bad.items()}


def _spoil_cremad(root: Path, bank: MediaBank) -> dict[str, str]:
    bank.put("av", root / "VideoFlash/1003_DFA_XYZ_XX.flv")
    bank.put("wav", root / "AudioWAV/1003_DFA_XYZ_XX.wav")
    bank.put("av", root / "VideoFlash/1003_DFA_ANG.flv")
    bank.put("wav", root / "AudioWAV/1092_DFA_ANG_XX.wav")
    bank.put("av", root / "VideoFlash/1003_ABC_ANG_XX.flv")
    _append_rows(root / "VideoDemographics.csv", [["x", 30, "Male", "Asian", "Not Hispanic"], [1003]])  # lines 4, 5
    return {
        "crema-d-1003_DFA_XYZ_XX": "unknown_label",
        "crema-d-1003_DFA_ANG": "bad_name",
        "crema-d-1092_DFA_ANG_XX": "bad_name",
        "crema-d-1003_ABC_ANG_XX": "bad_name",
        "crema-d-VideoDemographics.csv:4": "malformed_row",
        "crema-d-VideoDemographics.csv:5": "malformed_row",
    }


def _spoil_mer2023(root: Path, bank: MediaBank) -> dict[str, str]:
    _append_rows(
        root / "train-label.csv",
        [  # header + 4 rows: lines 1..5
            ["sample_00000050", "bored", "1"],
            ["sample_00000051", "happy", "high"],
            ["", "happy", "1"],
            ["sample_00000052", "happy", "1", "x"],
            ["sample_00000053", "7", "0"],
        ],
    )
    return {
        "mer2023-train-sample_00000050": "unknown_label",
        "mer2023-train-sample_00000051": "malformed_row",
        "mer2023-train-label.csv:8": "malformed_row",
        "mer2023-train-label.csv:9": "malformed_row",
        "mer2023-train-sample_00000053": "unknown_label",
    }


def _spoil_mer2024(root: Path, bank: MediaBank) -> dict[str, str]:
    _append_rows(root / "label-disdim.csv", [["sample_00000060", "bored", "1"]])  # line 5
    _append_rows(root / "check-openset.csv", [["sample_00000001", "['oops"]])  # line 3
    return {"mer2024-train-sample_00000060": "unknown_label", "mer2024-check-openset.csv:3": "malformed_row"}


def _spoil_meld(root: Path, bank: MediaBank) -> dict[str, str]:
    _append_rows(
        root / "train_sent_emo.csv",
        [  # header + 3 rows: lines 1..4
            [4, "Hm.", "Joey", "bored", "neutral", 0, 2, 8, 21, "0:16:24,000", "0:16:25,000"],
            [5, "Hm.", "Joey", "joy", "positive", "x", 0, 8, 21, "0:16:24,000", "0:16:25,000"],
            [6, "Hm.", "Joey", "joy", "positive", 0, 3, 8, 21, "soon", "0:16:25,000"],
            [7, "Hm.", "Joey", "joy", "positive", 0, 4, 8, 21, "0:16:24,000"],
        ],
    )
    return {
        "meld-train-dia0_utt2": "unknown_label",
        "meld-train_sent_emo.csv:6": "malformed_row",
        "meld-train-dia0_utt3": "malformed_row",
        "meld-train_sent_emo.csv:8": "malformed_row",
    }


def _spoil_emer(root: Path, bank: MediaBank) -> dict[str, str]:
    _append_rows(root / "EMER/dataset-v1/gt-eng.csv", [["sample_00000002", "bored", "Hm.", "He shrugs."]])  # line 4
    _append_rows(
        root / "EMER/dataset-v2/final-EMER-reason.csv",
        [  # header + 3 rows: lines 1..4
            ["", "在视频中。", "In the video."],
            ["sample_00000070", "在视频中。", "In the video, he yawns."],
        ],
    )
    _append_rows(root / "MER2023/train-label.csv", [["sample_00000070", "bored", "1"]])
    bank.put("av", root / "MER2023/train/sample_00000070.mp4")
    return {
        "emer-v1-sample_00000002": "unknown_label",
        "emer-EMER/dataset-v2/final-EMER-reason.csv:5": "malformed_row",
        "emer-v2-sample_00000070": "unknown_label",
    }


def _spoil_ferv39k(root: Path, bank: MediaBank) -> dict[str, str]:
    _append_lines(root / "4_setups/All_scenes/train_All.csv", ["Action/Sad Sad", "Action/Sad/0002 Bored"])  # 4, 5
    return {
        "ferv39k-4_setups/All_scenes/train_All.csv:4": "malformed_row",
        "ferv39k-train-Action-Sad-0002": "unknown_label",
    }


SPOILERS = {
    "dfew": _spoil_dfew,
    "mafw": _spoil_mafw,
    "ravdess": _spoil_ravdess,
    "crema-d": _spoil_cremad,
    "mer2023": _spoil_mer2023,
    "mer2024": _spoil_mer2024,
    "meld": _spoil_meld,
    "emer": _spoil_emer,
    "ferv39k": _spoil_ferv39k,
}


def spoil(name: str, root: Path, bank: MediaBank) -> dict[str, str]:
    """Add row-level problems to corpus ``name``'s fixture tree (malformed rows, unknown labels, bad
    file names, impossible codes, unreadable auxiliary rows); return {expected reject id: reason}."""
    return SPOILERS[name](root, bank)


def distinct_media(root: Path, seed: int = 1000) -> int:
    """Give every video file under ``root`` its own content (the trees copy one template clip
    everywhere, and identical bytes are one clip to the leakage guard). Returns the next seed."""
    from media_helpers import make_clip

    from emorl.data.corpora.common import probe_has_audio

    for f in sorted(p for p in root.rglob("*") if p.suffix in (".mp4", ".flv")):
        has_audio, _ = probe_has_audio(f)
        make_clip(f, seconds=0.5, size=32, seed=seed, audio=bool(has_audio))  # 4 frames at 8 fps, as the template
        seed += 1
    return seed
