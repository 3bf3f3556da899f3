"""Corpus adapters on fixture trees that follow each official layout (see corpora_fixtures.py)."""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path

import pytest
from corpora_fixtures import (
    CREMAD_BAD,
    CREMAD_GOOD,
    CREMAD_STUB,
    MAFW_SILENT,
    MELD_HEADER,
    build_cremad,
    build_dfew,
    build_emer,
    build_ferv39k,
    build_mafw,
    build_meld,
    build_mer2023,
    build_mer2024,
    build_ravdess,
    spoil,
    write_csv,
)

from emorl.data.corpora import (
    CORPORA,
    DatasetError,
    Prepared,
    Reject,
    corpus_folds,
    corpus_splits,
    corpus_subsets,
    dedupe,
    prepare,
)
from emorl.data.labels import LABEL_SETS
from emorl.data.manifest import Sample, read_manifest, write_manifest

BUILDERS = {
    "dfew": build_dfew,
    "mafw": build_mafw,
    "ravdess": build_ravdess,
    "crema-d": build_cremad,
    "mer2023": build_mer2023,
    "mer2024": build_mer2024,
    "meld": build_meld,
    "emer": build_emer,
    "ferv39k": build_ferv39k,
}


def by_id(samples: list[Sample]) -> dict[str, Sample]:
    return {s.id: s for s in samples}


def reasons(rejects: list[Reject]) -> dict[str, str]:
    return {r.id: r.reason for r in rejects}


# --------------------------------------------------------------------------- registry, schema


def test_registry_names():
    assert list(CORPORA) == [
        "dfew",
        "mafw",
        "ravdess",
        "crema-d",
        "mer2023",
        "mer2024",
        "meld",
        "emer",
        "ferv39k",
        "emoset",
        "emotion6",
        "fi",
        "emotionroi",
        "emoset2k",
        "emotion6-hub",
    ]
    with pytest.raises(DatasetError, match=r"unknown dataset 'affectnet'.*dfew, mafw"):
        prepare("affectnet", ".")


@pytest.mark.parametrize("name", list(BUILDERS))
def test_every_corpus_writes_a_valid_manifest(name, tmp_path, bank):
    root = BUILDERS[name](tmp_path / name, bank)
    samples, rejects = prepare(name, root)
    assert samples and all(isinstance(r, Reject) for r in rejects)
    assert len({s.id for s in samples}) == len(samples)
    assert all(s.dataset == name and s.label in LABEL_SETS[name] for s in samples)
    assert all(s.id.startswith(f"{name}-") and Path(s.media).exists() for s in samples)
    if name not in ("dfew", "mafw", "ravdess", "crema-d"):
        assert all(s.fold is None for s in samples)
    n = write_manifest(tmp_path / "m.jsonl", samples, relative_to=tmp_path)
    back = read_manifest(tmp_path / "m.jsonl")
    assert n == len(back) and [s.id for s in back] == [s.id for s in samples]
    assert all(r.to_json()["reason"] for r in rejects)


def test_missing_root_is_an_error(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        prepare("dfew", tmp_path / "nowhere")


def test_dedupe_moves_repeated_ids_to_rejects():
    s = Sample("x", "/a.mp4", "happy", "dfew", "train")
    got = dedupe(Prepared([s, Sample("x", "/b.mp4", "sad", "dfew", "train")], []))
    assert [x.media for x in got.samples] == ["/a.mp4"]
    assert [(r.id, r.reason) for r in got.rejects] == [("x", "duplicate")]


# --------------------------------------------------------------------------- every corpus: rejects, splits, paths

SPOIL_OPTIONS = {"emer": {"subset": "all"}}  # EMER's default subset is v2; the v1 problem needs both


@pytest.mark.parametrize("name", list(BUILDERS))
def test_row_level_problems_are_rejects_not_aborts(name, tmp_path, bank):
    root = BUILDERS[name](tmp_path / name, bank)
    before = prepare(name, root, **SPOIL_OPTIONS.get(name, {}))
    expected = spoil(name, root, bank)
    after = prepare(name, root, **SPOIL_OPTIONS.get(name, {}))
    assert [s.id for s in after.samples] == [s.id for s in before.samples]  # the rest is prepared
    old = {(r.id, r.reason) for r in before.rejects}
    new = [r for r in after.rejects if (r.id, r.reason) not in old]
    assert reasons(new) == expected and len(new) == len(expected)
    for r in new:
        assert str(root.resolve()) in r.detail  # names the file
        if ":" in r.id:  # a row whose id could not be read: the detail names file:line
            assert r.detail.startswith(f"{root.resolve()}/{r.id.removeprefix(name + '-')}:")
    by = {r.id: r for r in new}
    if name == "dfew":
        assert "unknown label '9'; DFEW labels are 1..7" in by["dfew-f1-train-00011"].detail
        assert "set_1.csv:11:" in by["dfew-f1-train-00011"].detail
        assert by["dfew-f1-train-00011"].meta == {
            "fold": 1,
            "split": "train",
            "source": "EmoLabel_DataSplit/train(single-labeled)/set_1.csv:11",
        }
    if name == "ravdess":
        r = by["ravdess-01-01-01-02-01-01-03"]
        assert r.detail.endswith("intensity 02 (strong) with emotion 01 (neutral); RAVDESS has no strong neutral")
        assert r.meta == {"actor": 3, "subject": "ravdess-actor-03"}
        assert "invalid emotion code '09'; expected one of 01, 02" in by["ravdess-01-01-09-01-01-01-03"].detail
    if name == "crema-d":
        assert by["crema-d-1003_DFA_XYZ_XX"].path.endswith("VideoFlash/1003_DFA_XYZ_XX.flv")
        assert by["crema-d-1092_DFA_ANG_XX"].path.endswith("AudioWAV/1092_DFA_ANG_XX.wav")  # no video: the wav
        assert (
            "VideoDemographics.csv:4: malformed row: ActorID must be an integer, got 'x'"
            in by["crema-d-VideoDemographics.csv:4"].detail
        )
    if name == "meld":
        assert "train_sent_emo.csv:7: malformed row: time 'soon' is not h:mm:ss,ms" in by["meld-train-dia0_utt3"].detail
    if name == "emer":
        assert "MER2023/train-label.csv:" in by["emer-v2-sample_00000070"].detail


def test_row_rejects_follow_the_fold_and_split_selection(tmp_path, bank):
    root = build_dfew(tmp_path / "DFEW", bank)
    spoil("dfew", root, bank)  # the bad rows are in fold 1's train list
    assert {r.reason for r in prepare("dfew", root, fold=1, split="test").rejects} == {"malformed_row"}  # xlsx only
    assert len(prepare("dfew", root, fold=1, split="train").rejects) == 5  # 3 rows + xlsx + missing clip 10
    root = build_ravdess(tmp_path / "RAVDESS", bank)
    spoil("ravdess", root, bank)  # actor 3 is in fold 1's test set; the other two bad names have no readable actor
    assert set(reasons(prepare("ravdess", root, fold=1, split="train").rejects)) == {
        "ravdess-01-01-03-01-01-01",
        "ravdess-01-01-03-01-01-01-25",
    }
    assert len(prepare("ravdess", root, fold=1, split="test").rejects) == 5
    assert prepare("ravdess", root, subset="song").rejects == []  # speech names are not song rejects


@pytest.mark.parametrize("name", list(BUILDERS))
def test_relative_root_gives_absolute_paths(name, tmp_path, bank, monkeypatch):
    BUILDERS[name](tmp_path / "data" / name, bank)
    monkeypatch.chdir(tmp_path / "data")
    samples, rejects = prepare(name, name)
    assert samples
    for s in samples:
        assert Path(s.media).is_absolute() and Path(s.media).exists()
        assert s.audio is None or (Path(s.audio).is_absolute() and Path(s.audio).exists())
    assert all(Path(r.path).is_absolute() for r in rejects)
    monkeypatch.chdir(tmp_path)  # and they still resolve from another working directory
    assert all(Path(s.media).exists() for s in samples)


def test_split_helpers_and_unknown_split():
    assert corpus_splits("dfew") == ("train", "test", "all") == corpus_splits("crema-d")
    assert corpus_splits("meld") == ("train", "dev", "test", "all")
    assert corpus_splits("mer2023") == ("train", "test1", "test2", "test3", "test", "all")
    assert corpus_splits("mer2024") == ("train", "all") and corpus_splits("emer") == ("coldstart", "all")
    assert corpus_subsets("dfew") == ("original", "frames", "frames-16f") and corpus_subsets("meld") == ()
    assert corpus_subsets("ravdess")[0] == "speech" and corpus_subsets("crema-d") == ("audio-video", "audio-only")
    assert corpus_folds("ravdess") == (1, 2, 3, 4, 5, 6) and corpus_folds("mer2023") == ()
    for name in CORPORA:
        assert corpus_splits(name)[-1] == "all"
    with pytest.raises(DatasetError, match="unknown dataset 'affectnet'"):
        corpus_splits("affectnet")


@pytest.mark.parametrize("name", list(BUILDERS))
def test_unknown_split_lists_the_valid_ones(name, tmp_path, bank):
    root = BUILDERS[name](tmp_path / name, bank)
    valid = ", ".join(corpus_splits(name))
    with pytest.raises(DatasetError, match=rf"{name}: unknown split 'validation'; valid splits: {valid}"):
        prepare(name, root, split="validation")
    samples, _ = prepare(name, root)
    assert [s.id for s in prepare(name, root, split="all").samples] == [s.id for s in samples]
    assert [s.id for s in prepare(name, root, split=None).samples] == [s.id for s in samples]


@pytest.mark.parametrize(
    "name,fold,key", [("dfew", 1, "clip"), ("mafw", 2, "clip"), ("ravdess", 1, "code"), ("crema-d", 1, "code")]
)
def test_train_and_test_of_a_fold_are_disjoint_and_make_the_fold(name, fold, key, tmp_path, bank):
    root = BUILDERS[name](tmp_path / name, bank)
    whole, whole_rej = prepare(name, root, fold=fold)
    train, train_rej = prepare(name, root, fold=fold, split="train")
    test, test_rej = prepare(name, root, fold=fold, split="test")
    assert train and test
    assert {s.split for s in train} == {"train"} and {s.split for s in test} == {"test"}
    assert {s.fold for s in train + test} == {fold}
    clip = (lambda s: s.meta[key]) if name != "crema-d" else (lambda s: Path(s.media).stem)
    assert not {clip(s) for s in train} & {clip(s) for s in test}  # disjoint by clip identity
    assert not {s.media for s in train} & {s.media for s in test}
    assert sorted(s.id for s in train + test) == sorted(s.id for s in whole)  # their union is the fold
    assert sorted(r.id for r in train_rej + test_rej) == sorted(r.id for r in whole_rej)
    assert prepare(name, root, fold=fold, split="train,test").samples == whole


def test_dfew_test_split_over_all_folds_covers_each_clip_once(tmp_path, bank):
    root = build_dfew(tmp_path / "DFEW", bank)
    samples, rejects = prepare("dfew", root, split="test")
    clips = [s.meta["clip"] for s in samples]
    assert sorted(clips) == [f"{n:05d}" for n in range(1, 10)]  # clip 10 has no mp4: its row is a reject
    assert [(r.id, r.reason) for r in rejects] == [("dfew-f5-test-00010", "missing")]
    assert {s.fold: s.meta["clip"] for s in samples if s.meta["clip"] in ("00001", "00002")} == {1: "00001", 2: "00002"}
    assert Counter(s.fold for s in samples) == {1: 2, 2: 2, 3: 2, 4: 2, 5: 1}
    train = prepare("dfew", root, split="train").samples
    assert len(train) == 36 and all(s.split == "train" for s in train)


def test_subjects_for_leakage_checks(tmp_path, bank):
    rav, _ = prepare("ravdess", build_ravdess(tmp_path / "RAVDESS", bank), fold=1)
    assert {s.meta["subject"] for s in rav if s.split == "test"} == {"ravdess-actor-01", "ravdess-actor-02"}
    assert all(s.meta["subject"] == f"ravdess-actor-{s.meta['actor']:02d}" for s in rav)
    crema, _ = prepare("crema-d", build_cremad(tmp_path / "CREMA-D", bank), fold=1)
    assert {s.meta["subject"] for s in crema if s.split == "test"} == {"crema-d-1001", "crema-d-1002"}
    assert all(s.meta["subject"] == f"crema-d-{s.meta['actor']}" for s in crema)
    train = {s.meta["subject"] for s in crema if s.split == "train"}
    assert train == {"crema-d-1019", "crema-d-1091"} and not train & {"crema-d-1001", "crema-d-1002"}
    meld, _ = prepare("meld", build_meld(tmp_path / "MELD", bank))
    assert not any("subject" in s.meta for s in meld)  # Friends characters are not subjects


# --------------------------------------------------------------------------- DFEW


@pytest.mark.parametrize("spelling", ["single-labeled", "single_labeled"])
def test_dfew_folds_labels_and_names(spelling, tmp_path, bank):
    root = build_dfew(tmp_path / "DFEW", bank, spelling=spelling)
    samples, rejects = prepare("dfew", root, fold=1)
    assert len(samples) == 9 and Counter(s.split for s in samples) == {"train": 7, "test": 2}
    assert [(r.id, r.reason) for r in rejects] == [("dfew-f1-train-00010", "missing")]
    assert rejects[0].path.endswith("Clip/original/00010.mp4")
    s = by_id(samples)
    assert {i for i in s if "-test-" in i} == {"dfew-f1-test-00001", "dfew-f1-test-00006"}
    assert s["dfew-f1-test-00001"].label == "happy" and s["dfew-f1-test-00001"].media.endswith("/00001.mp4")
    assert s["dfew-f1-train-00002"].media.endswith("/original/2.mp4")  # unpadded name found
    assert s["dfew-f1-train-00004"].label == "angry" and s["dfew-f1-train-00007"].label == "fear"
    assert s["dfew-f1-train-00008"].label == "happy"
    assert s["dfew-f1-test-00001"].meta["votes"]["happy"] == 9
    assert s["dfew-f1-test-00001"].meta["modality"] == "audio+video" and s["dfew-f1-test-00001"].fold == 1


def test_dfew_all_folds(tmp_path, bank):
    samples, rejects = prepare("dfew", build_dfew(tmp_path / "DFEW", bank))
    assert len(samples) == 45 and len(rejects) == 5
    assert Counter(s.fold for s in samples) == {1: 9, 2: 9, 3: 9, 4: 9, 5: 9}
    tests = [s for s in samples if s.split == "test"]
    assert sorted(s.meta["clip"] for s in tests) == [f"{n:05d}" for n in range(1, 10)]  # test sets partition


def test_dfew_frames_subset(tmp_path, bank):
    samples, rejects = prepare("dfew", build_dfew(tmp_path / "DFEW", bank), fold=1, subset="frames")
    assert len(samples) == 9 and [r.id for r in rejects] == ["dfew-f1-train-00003"]
    s = by_id(samples)["dfew-f1-train-00010"]  # no mp4, but a frame folder
    assert Path(s.media).is_dir() and s.media.endswith("clip_224x224/00010") and s.meta["modality"] == "video"


def test_dfew_votes_with_order_header(tmp_path, bank):
    from openpyxl import Workbook

    root = build_dfew(tmp_path / "DFEW", bank)
    wb = Workbook()
    wb.active.append(["order", "1happy", "2sad", "3neutral", "4angry", "5surprise", "6disgust", "7fear"])
    wb.active.append([1, 2, 8, 0, 0, 0, 0, 0])
    wb.save(root / "Annotation/annotation.xlsx")
    s = by_id(prepare("dfew", root, fold=1).samples)
    assert s["dfew-f1-test-00001"].meta["votes"] == {
        "happy": 2,
        "sad": 8,
        "neutral": 0,
        "angry": 0,
        "surprise": 0,
        "disgust": 0,
        "fear": 0,
    }
    assert "votes" not in s["dfew-f1-test-00006"].meta
    wb = Workbook()
    wb.active.append(["order", "happy", "sad"])
    wb.active.append([1, 2, 8])
    wb.save(root / "Annotation/annotation.xlsx")
    with pytest.raises(DatasetError, match=r"annotation\.xlsx:1: cannot find the clip column and 7 vote columns"):
        prepare("dfew", root, fold=1)


def test_dfew_bad_inputs(tmp_path, bank):
    root = build_dfew(tmp_path / "DFEW", bank)
    with pytest.raises(DatasetError, match=r"fold 6 does not exist; valid folds: 1, 2, 3, 4, 5"):
        prepare("dfew", root, fold=6)
    with pytest.raises(DatasetError, match="unknown subset 'faces'; valid subsets: original, frames"):
        prepare("dfew", root, subset="faces")
    with pytest.raises(DatasetError, match="dfew: unknown split 'dev'; valid splits: train, test, all"):
        prepare("dfew", root, split="dev")
    test2 = root / "EmoLabel_DataSplit/test(single-labeled)/set_2.csv"
    test2.write_text(test2.read_text() + "5,9\n")
    samples, rejects = prepare("dfew", root, fold=2)
    assert len(samples) == 9
    r = next(r for r in rejects if r.reason == "unknown_label")
    assert r.id == "dfew-f2-test-00005" and re.search(r"set_2\.csv:4: unknown label '9'", r.detail)
    train1 = root / "EmoLabel_DataSplit/train(single-labeled)/set_1.csv"
    train1.write_text(train1.read_text() + "abc,1\n0,1\n")
    samples, rejects = prepare("dfew", root, fold=1)
    assert len(samples) == 9
    bad = [r for r in rejects if r.reason == "malformed_row"]
    assert [r.id for r in bad] == [
        "dfew-EmoLabel_DataSplit/train(single-labeled)/set_1.csv:10",
        "dfew-EmoLabel_DataSplit/train(single-labeled)/set_1.csv:11",
    ]
    assert re.search(r"set_1\.csv:10: malformed row: video_name must be an integer, got 'abc'", bad[0].detail)
    assert bad[0].path == str(train1.resolve())
    assert "video_name must be a clip number >= 1, got '0'" in bad[1].detail
    (root / "EmoLabel_DataSplit/test(single-labeled)/set_3.csv").unlink()
    with pytest.raises(
        DatasetError,
        match=r"(?s)fold 3 test list not found.*test\(single-labeled\)/set_3\.csv"
        r".*test\(single_labeled\)/set_3\.csv",
    ):
        prepare("dfew", root, fold=3)


# --------------------------------------------------------------------------- MAFW


@pytest.mark.parametrize("split_root", ["Train & Test Set", "Train_Test_Set", "split"])
def test_mafw_single_labels_and_audio_probe(split_root, tmp_path, bank):
    root = build_mafw(tmp_path / "MAFW", bank, split_root=split_root)
    samples, rejects = prepare("mafw", root, fold=1)
    assert len(samples) == 11 and Counter(s.split for s in samples) == {"train": 8, "test": 3}
    assert [(r.id, r.reason, r.meta["label"]) for r in rejects] == [("mafw-f1-train-00012", "missing", "angry")]
    s = by_id(samples)
    assert s["mafw-f1-test-00001"].label == "angry" and s["mafw-f1-train-00004"].label == "happy"
    assert s["mafw-f1-test-00006"].label == "sad" and s["mafw-f1-train-00008"].label == "contempt"
    assert s["mafw-f1-test-00011"].label == "disappointment"
    assert s["mafw-f1-train-00005"].meta["has_audio"] is False
    assert all(x.meta["has_audio"] is True for x in samples if x.meta["clip"] != f"{MAFW_SILENT:05d}")


def test_mafw_all_folds(tmp_path, bank):
    samples, rejects = prepare("mafw", build_mafw(tmp_path / "MAFW", bank))
    assert len(samples) == 55 and len(rejects) == 5 and set(Counter(s.fold for s in samples).values()) == {11}


def test_mafw_with_caption_is_not_utf8(tmp_path, bank):
    root = build_mafw(tmp_path / "MAFW", bank)
    raw = (root / "Train & Test Set/single/with_caption/set_2/train.txt").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    samples, _ = prepare("mafw", root, subset="single_caption")
    s = by_id(samples)
    gb = s["mafw-single-caption-f1-test-00001"]
    assert gb.meta["caption_zh"] == "他看起来很生气" and gb.meta["encoding"] == "gb18030"
    cp = s["mafw-single-caption-f2-train-00001"]
    assert cp.meta["encoding"] == "cp1252"
    assert cp.meta["caption_en"] == "The man\u2019s face shows anger \u2013 café scene"
    assert not any(x.label == "neutral" for x in samples)  # neutral clips carry no caption


def test_mafw_compound_rows(tmp_path, bank):
    samples, rejects = prepare("mafw", build_mafw(tmp_path / "MAFW", bank), subset="compound")
    assert len(samples) == 15 and len(rejects) == 15
    assert {s.meta["clip"] for s in samples} == {"00002", "00004", "00007"}
    assert all(s.meta["compound"] == [s.label] for s in samples)
    r = next(r for r in rejects if r.id == "mafw-compound-f1-test-00001")
    assert r.reason == "compound" and r.meta["compound"] == ["angry", "disgust"]
    assert next(r for r in rejects if r.id == "mafw-compound-f1-test-00006").meta["compound"] == ["sad", "helplessness"]


def test_mafw_bad_inputs(tmp_path, bank):
    root = build_mafw(tmp_path / "MAFW", bank)
    lst = root / "Train & Test Set/single/no_caption/set_1/test.txt"
    lst.write_text(lst.read_text() + "00002.mp4 boredom\n")
    r = next(r for r in prepare("mafw", root, fold=1, split="test").rejects if r.reason == "unknown_label")
    assert r.id == "mafw-f1-test-00002" and re.search(r"set_1/test\.txt:4: unknown label 'boredom'", r.detail)
    assert r.meta["label_raw"] == "boredom" and r.path.endswith("data/clips/00002.mp4")
    lst.write_text("00001.mp4\n00006.mp4 sadness\n")
    samples, rejects = prepare("mafw", root, fold=1, split="test")
    assert [s.id for s in samples] == ["mafw-f1-test-00006"]
    assert reasons(rejects) == {"mafw-Train & Test Set/single/no_caption/set_1/test.txt:1": "malformed_row"}
    assert "expected '<clip>.mp4 <label>', got '00001.mp4'" in rejects[0].detail
    lst.write_text("00001.mp4 anger_disgust\n")
    samples, rejects = prepare("mafw", root, fold=1, split="test")
    assert samples == [] and reasons(rejects) == {"mafw-f1-test-00001": "compound"}
    assert "compound label 'anger_disgust' in a single-label list" in rejects[0].detail
    (root / "Train & Test Set/single/no_caption/set_3/train.txt").unlink()
    with pytest.raises(
        DatasetError,
        match=r"(?s)Train & Test Set/single/no_caption/set_3/train\.txt"
        r".*Train_Test_Set/single/no_caption/set_3/train\.txt",
    ):
        prepare("mafw", root, fold=3)


# --------------------------------------------------------------------------- RAVDESS


def test_ravdess_speech_folds_and_codes(tmp_path, bank):
    root = build_ravdess(tmp_path / "RAVDESS", bank)
    samples, rejects = prepare("ravdess", root, fold=1)
    assert rejects == [] and len(samples) == 10
    assert Counter(s.split for s in samples) == {"test": 6, "train": 4}
    assert {s.meta["actor"] for s in samples if s.split == "test"} == {1, 2}
    s = by_id(samples)["ravdess-f1-test-01-01-06-02-02-01-01"]
    assert s.label == "fear"
    assert {
        k: s.meta[k]
        for k in (
            "file_modality",
            "modality",
            "vocal_channel",
            "emotion",
            "intensity",
            "statement",
            "repetition",
            "actor",
            "gender",
        )
    } == {
        "file_modality": "full-AV",
        "modality": "audio+video",
        "vocal_channel": "speech",
        "emotion": "fearful",
        "intensity": "strong",
        "statement": "Dogs are sitting by the door",
        "repetition": 1,
        "actor": 1,
        "gender": "male",
    }
    assert s.audio and s.audio.endswith("Actor_01/03-01-06-02-02-01-01.wav")
    assert by_id(samples)["ravdess-f1-test-01-01-08-01-01-02-01"].audio is None  # no matching wav
    assert by_id(samples)["ravdess-f1-test-01-01-08-01-01-02-01"].label == "surprise"
    assert by_id(samples)["ravdess-f1-test-01-01-02-02-01-01-02"].label == "calm"


def test_ravdess_all_folds_and_gender_parity(tmp_path, bank):
    samples, _ = prepare("ravdess", build_ravdess(tmp_path / "RAVDESS", bank))
    assert len(samples) == 60 and set(Counter(s.fold for s in samples).values()) == {10}
    assert all(s.meta["gender"] == ("male" if s.meta["actor"] % 2 else "female") for s in samples)
    tests = {(s.meta["actor"], s.fold) for s in samples if s.split == "test"}
    assert tests == {(1, 1), (2, 1), (5, 2), (24, 6)}


@pytest.mark.parametrize(
    "subset,n,modality,label,has_audio",
    [
        ("song", 1, "audio+video", "calm", True),
        ("video-only", 10, "video", None, False),
        ("video_only+audio", 10, None, None, None),
        ("audio-only", 8, "audio", None, False),
    ],
)
def test_ravdess_subsets(subset, n, modality, label, has_audio, tmp_path, bank):
    samples, _ = prepare("ravdess", build_ravdess(tmp_path / "RAVDESS", bank), fold=6, subset=subset)
    assert len(samples) == n
    if modality:
        assert {s.meta["modality"] for s in samples} == {modality}
    if label:
        assert {s.label for s in samples} == {label}
    if has_audio is not None:
        assert all((s.audio is not None) == has_audio for s in samples)
    if subset == "audio-only":
        assert all(s.media.endswith(".wav") and s.meta["file_modality"] == "audio-only" for s in samples)
    if subset == "video_only+audio":  # 8 of 10 video-only clips have a wav
        assert Counter(s.meta["modality"] for s in samples) == {"audio+video": 8, "video": 2}


def test_ravdess_bad_inputs(tmp_path, bank):
    root = build_ravdess(tmp_path / "RAVDESS", bank)
    with pytest.raises(DatasetError, match="fold 7 does not exist; valid folds: 1, 2, 3, 4, 5, 6"):
        prepare("ravdess", root, fold=7)
    good, _ = prepare("ravdess", root)
    bad = bank.put("av", root / "Actor_03/01-01-01-02-01-01-03.mp4")
    samples, rejects = prepare("ravdess", root)
    assert [s.id for s in samples] == [s.id for s in good]  # the rest of the corpus is prepared
    assert reasons(rejects) == {"ravdess-01-01-01-02-01-01-03": "impossible_code"}
    assert re.search(r"01-01-01-02-01-01-03\.mp4: intensity 02 \(strong\) with emotion 01", rejects[0].detail)
    assert rejects[0].path == str(bad.resolve())
    bad.unlink()
    bank.put("av", root / "Actor_03/01-01-09-01-01-01-03.mp4")
    rejects = prepare("ravdess", root).rejects
    assert reasons(rejects) == {"ravdess-01-01-09-01-01-01-03": "unknown_label"}
    assert re.search(r"01-01-09-01-01-01-03\.mp4: invalid emotion code '09'", rejects[0].detail)
    bank.put("av", root / "Actor_01/01-01-03-01-01-01-01.mp4")
    dup = bank.put("av", root / "Actor_01/copy/01-01-03-01-01-01-01.mp4")  # a second file with the same code
    assert dup.exists()
    rejects = prepare("ravdess", root).rejects
    assert reasons(rejects)["ravdess-01-01-03-01-01-01-01"] == "duplicate"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no RAVDESS files found"):
        prepare("ravdess", tmp_path / "empty")


# --------------------------------------------------------------------------- CREMA-D


def test_cremad_folds_stub_and_bad_files(tmp_path, bank):
    root = build_cremad(tmp_path / "CREMA-D", bank)
    samples, rejects = prepare("crema-d", root)
    assert len(samples) == 5 * len(CREMAD_GOOD)
    assert Counter(r.reason for r in rejects) == {"lfs_pointer": 5, "known_bad": 5 * len(CREMAD_BAD)}
    assert all(r.path.endswith(f"{CREMAD_STUB}.flv") for r in rejects if r.reason == "lfs_pointer")
    s = by_id(samples)
    x = s["crema-d-f1-test-1001_IEO_HAP_HI"]
    assert x.label == "happy" and x.media.endswith("VideoFlash/1001_IEO_HAP_HI.flv")
    assert x.audio.endswith("AudioWAV/1001_IEO_HAP_HI.wav")
    assert {k: x.meta[k] for k in ("actor", "sentence", "sentence_text", "emotion", "level", "gender", "age")} == {
        "actor": 1001,
        "sentence": "IEO",
        "sentence_text": "It's eleven o'clock",
        "emotion": "HAP",
        "level": "high",
        "gender": "male",
        "age": 51,
    }
    assert s["crema-d-f2-test-1019_MTI_NEU_XX"].label == "neutral"
    assert s["crema-d-f5-test-1091_WSI_DIS_HI"].label == "disgust"  # the last fold has 19 actors
    assert s["crema-d-f1-test-1002_TIE_SAD_LO"].meta["level"] == "low"
    fold1, _ = prepare("crema-d", root, fold=1)
    assert Counter(s.split for s in fold1) == {"test": 3, "train": 2}


def test_cremad_audio_only_and_bad_names(tmp_path, bank):
    root = build_cremad(tmp_path / "CREMA-D", bank)
    samples, rejects = prepare("crema-d", root, fold=2, subset="audio-only")
    assert len(samples) == 6 and all(s.media.endswith(".wav") and s.audio is None for s in samples)
    assert {r.reason for r in rejects} == {"known_bad"}
    good, _ = prepare("crema-d", root)
    bank.put("av", root / "VideoFlash/1003_DFA_XYZ_XX.flv")
    samples, rejects = prepare("crema-d", root)
    assert [s.id for s in samples] == [s.id for s in good]
    r = next(r for r in rejects if r.id == "crema-d-1003_DFA_XYZ_XX")
    assert r.reason == "unknown_label" and re.search(r"1003_DFA_XYZ_XX\.flv: unknown label 'XYZ'", r.detail)
    (root / "VideoFlash/1003_DFA_XYZ_XX.flv").rename(root / "VideoFlash/1003_DFA_ANG.flv")
    r = next(r for r in prepare("crema-d", root).rejects if r.id == "crema-d-1003_DFA_ANG")
    assert r.reason == "bad_name" and "'1003_DFA_ANG' is not a CREMA-D file name" in r.detail
    assert not any(r.id == "crema-d-1003_DFA_ANG" for r in prepare("crema-d", root, subset="audio-only").rejects)
    shutil.rmtree(root / "VideoFlash")
    with pytest.raises(DatasetError, match=r"(?s)VideoFlash folder not found.*CREMA-D/VideoFlash"):
        prepare("crema-d", root)


# --------------------------------------------------------------------------- MER


def test_mer2023_splits_labels_valence(tmp_path, bank):
    root = build_mer2023(tmp_path / "MER2023", bank)
    samples, rejects = prepare("mer2023", root)
    assert rejects == [] and Counter(s.split for s in samples) == {"train": 4, "test1": 2, "test2": 1, "test3": 2}
    s = by_id(samples)
    assert s["mer2023-train-sample_00000001"].label == "anxiety"  # worried
    assert s["mer2023-train-sample_00000001"].meta["valence"] == -1.0
    assert s["mer2023-test3-sample_00000010"].label == "anxiety"
    assert "valence" not in s["mer2023-test3-sample_00000010"].meta
    assert s["mer2023-test3-sample_00000010"].meta["track"] == "MER-SEMI"
    only, _ = prepare("mer2023", root, subset="train,test3")
    assert len(only) == 6
    assert [s.id for s in prepare("mer2023", root, split="train,test3").samples] == [s.id for s in only]
    tests, _ = prepare("mer2023", root, split="test")
    assert Counter(s.split for s in tests) == {"test1": 2, "test2": 1, "test3": 2}
    assert [s.split for s in prepare("mer2023", root, split="test1").samples] == ["test1", "test1"]


def test_mer2023_bad_inputs(tmp_path, bank):
    root = build_mer2023(tmp_path / "MER2023", bank)
    with pytest.raises(DatasetError, match="mer2023 has no official folds"):
        prepare("mer2023", root, fold=1)
    with pytest.raises(DatasetError, match="unknown subset 'test4'"):
        prepare("mer2023", root, subset="test4")
    with pytest.raises(DatasetError, match="give the splits once"):
        prepare("mer2023", root, subset="test1", split="test2")
    (root / "test1/sample_00000007.mp4").unlink()
    samples, rejects = prepare("mer2023", root, subset="test1")
    assert len(samples) == 1 and [(r.id, r.reason) for r in rejects] == [("mer2023-test1-sample_00000007", "missing")]
    write_csv(root / "test2-label.csv", ["name", "discrete", "valence"], [["sample_00000009", "bored", "1"]])
    samples, rejects = prepare("mer2023", root, split="test2")
    assert samples == [] and reasons(rejects) == {"mer2023-test2-sample_00000009": "unknown_label"}
    assert re.search(r"test2-label\.csv:2: unknown label 'bored'", rejects[0].detail)
    write_csv(root / "test2-label.csv", ["name", "discrete", "valence"], [["sample_00000009", "sad", "1", "x"]])
    rejects = prepare("mer2023", root, split="test2").rejects
    assert reasons(rejects) == {"mer2023-test2-label.csv:2": "malformed_row"}
    assert re.search(r"test2-label\.csv:2: malformed row: expected 3 fields", rejects[0].detail)
    write_csv(root / "test2-label.csv", ["name", "label"], [["sample_00000009", "sad"]])
    with pytest.raises(DatasetError, match=r"test2-label\.csv:1: missing column\(s\) discrete"):  # layout: an error
        prepare("mer2023", root, split="test2")
    (root / "test2-label.csv").unlink()
    with pytest.raises(DatasetError, match=r"(?s)MER2023 test2 labels not found.*MER2023/test2-label\.csv"):
        prepare("mer2023", root)


def test_mer2024(tmp_path, bank):
    samples, _ = prepare("mer2024", build_mer2024(tmp_path / "MER2024", bank))
    s = by_id(samples)
    assert len(samples) == 3 and {x.split for x in samples} == {"train"}
    assert s["mer2024-train-sample_00000001"].label == "anxiety"
    assert s["mer2024-train-sample_00000000"].meta["openset"] == ["happy", "excited"]
    assert s["mer2024-train-sample_00000020"].meta["valence"] == -2.2


# --------------------------------------------------------------------------- EMER


def test_emer_v2_traces_take_labels_from_mer(tmp_path, bank):
    root = build_emer(tmp_path / "emer", bank)
    samples, rejects = prepare("emer", root)
    s = by_id(samples)
    assert set(s) == {"emer-v2-sample_00000000", "emer-v2-sample_00000007"}
    assert s["emer-v2-sample_00000007"].meta["trace"] == "<think>In the video, she cries.</think><answer>sad</answer>"
    assert s["emer-v2-sample_00000007"].meta["label_source"].startswith("MER2023/test1-label.csv")
    assert s["emer-v2-sample_00000000"].label == "happy"
    assert s["emer-v2-sample_00000000"].meta["label_source"].startswith("MER2024/label-disdim.csv")
    assert '"Great!"' in s["emer-v2-sample_00000000"].meta["trace"]
    assert all(x.split == "coldstart" and x.fold is None for x in samples)
    assert [(r.id, r.reason) for r in rejects] == [("emer-v2-sample_00000099", "no_label")]


def test_emer_v1_and_all(tmp_path, bank):
    root = build_emer(tmp_path / "emer", bank)
    v1, _ = prepare("emer", root, subset="v1")
    s = by_id(v1)["emer-v1-sample_00000001"]
    assert s.label == "anxiety" and s.meta["emotion_raw"] == "worried" and s.meta["subtitle"] == "What now?"
    assert s.meta["trace"] == "<think>Her brows are knitted; the voice trembles.</think><answer>anxiety</answer>"
    both, rejects = prepare("emer", root, subset="all")
    assert len(both) == 4 and len(rejects) == 1


def test_emer_mer_root_option_and_missing_videos(tmp_path, bank):
    root = build_emer(tmp_path / "emer", bank)
    shutil.move(str(root / "MER2024"), str(tmp_path / "elsewhere"))
    samples, _ = prepare("emer", root, mer2024_root=tmp_path / "elsewhere")
    assert by_id(samples)["emer-v2-sample_00000000"].meta["label_source"].startswith("elsewhere/label-disdim.csv")
    shutil.rmtree(root / "MER2023")
    with pytest.raises(DatasetError, match="EMER needs the MER2023/MER2024 videos"):
        prepare("emer", root)
    with pytest.raises(DatasetError, match=r"(?s)EMER v1 annotations not found.*dataset-v1/gt-eng\.csv"):
        prepare("emer", tmp_path / "elsewhere", subset="v1")


# --------------------------------------------------------------------------- MELD


def test_meld_quirks(tmp_path, bank):
    root = build_meld(tmp_path / "MELD", bank)
    samples, rejects = prepare("meld", root)
    assert Counter(s.split for s in samples) == {"train": 2, "dev": 1, "test": 3}
    assert sorted((r.id, r.reason) for r in rejects) == [
        ("meld-dev-dia110_utt7", "missing"),
        ("meld-test-dia1_utt0", "duplicate"),
        ("meld-train-dia125_utt3", "missing"),
    ]
    s = by_id(samples)
    assert s["meld-train-dia0_utt0"].media.endswith("train/train_splits/dia0_utt0.mp4")  # not the ._ twin
    assert s["meld-test-dia1_utt0"].media.endswith("final_videos_testdia1_utt0.mp4")
    assert s["meld-train-dia0_utt1"].label == "happy" and s["meld-dev-dia0_utt0"].label == "sad"
    assert s["meld-test-dia1_utt0"].label == "fear"
    m = s["meld-train-dia0_utt0"].meta
    assert m["utterance"] == "also I was the point person on my company\u2019s transition"
    assert (m["start"], m["end"], m["speaker"], m["season"]) == (976.059, 981.731, "Chandler", 8)
    assert s["meld-train-dia0_utt1"].meta["start"] == pytest.approx(981.94)
    dev, _ = prepare("meld", root, subset="dev")
    assert [x.id for x in dev] == ["meld-dev-dia0_utt0"]
    assert [x.id for x in prepare("meld", root, split="dev").samples] == ["meld-dev-dia0_utt0"]
    assert Counter(x.split for x in prepare("meld", root, split="train,test").samples) == {"train": 2, "test": 3}
    with pytest.raises(DatasetError, match="give the splits once"):
        prepare("meld", root, subset="dev", split="test")


def test_meld_bad_inputs(tmp_path, bank):
    root = build_meld(tmp_path / "MELD", bank)
    write_csv(
        root / "dev_sent_emo.csv",
        MELD_HEADER,
        [[1, "Hi", "Joey", "bored", "neutral", 0, 0, 1, 1, "0:00:01,000", "0:00:02,000"]],
    )
    samples, rejects = prepare("meld", root, split="dev")
    assert samples == [] and reasons(rejects) == {"meld-dev-dia0_utt0": "unknown_label"}
    assert re.search(r"dev_sent_emo\.csv:2: unknown label 'bored'", rejects[0].detail)
    write_csv(root / "dev_sent_emo.csv", MELD_HEADER, [[1, "Hi", "Joey", "joy", "neutral", 0, 0, 1, 1, "0:00:01,000"]])
    rejects = prepare("meld", root, split="dev").rejects
    assert reasons(rejects) == {"meld-dev_sent_emo.csv:2": "malformed_row"}
    assert re.search(r"dev_sent_emo\.csv:2: malformed row: expected 11 fields", rejects[0].detail)
    write_csv(root / "dev_sent_emo.csv", MELD_HEADER, [[1, "Hi", "Joey", "joy", "neutral", 0, 0, 1, 1, "soon", "x"]])
    rejects = prepare("meld", root, split="dev").rejects
    assert reasons(rejects) == {"meld-dev-dia0_utt0": "malformed_row"}
    assert re.search(r"dev_sent_emo\.csv:2: malformed row: time 'soon'", rejects[0].detail)
    assert len(prepare("meld", root).samples) == 5  # train and test are prepared as before
    (root / "dev_sent_emo.csv").unlink()
    with pytest.raises(DatasetError, match=r"(?s)MELD dev annotations not found.*MELD/dev_sent_emo\.csv"):
        prepare("meld", root)


# --------------------------------------------------------------------------- FERV39k


def test_ferv39k(tmp_path, bank):
    root = build_ferv39k(tmp_path / "FERV39k", bank)
    samples, rejects = prepare("ferv39k", root)
    assert Counter(s.split for s in samples) == {"train": 3, "test": 1}
    assert [(r.id, r.reason) for r in rejects] == [("ferv39k-test-Crime-Fear-0003", "missing")]
    s = by_id(samples)["ferv39k-train-Action-Happy-0267"]
    assert s.label == "happy" and s.meta["scene"] == "Action" and s.meta["modality"] == "video"
    assert Path(s.media).is_dir() and s.media.endswith("2_ClipsforFaceCrop/Action/Happy/0267")
    assert len(prepare("ferv39k", root, subset="test").samples) == 1
    assert len(prepare("ferv39k", root, split="test").samples) == 1
    (root / "4_setups/All_scenes/test_All.csv").write_text("Action/Sad/0001 Sad\nAction/Sad Sad\n")
    samples, rejects = prepare("ferv39k", root, split="test")
    assert [s.id for s in samples] == ["ferv39k-test-Action-Sad-0001"]
    assert reasons(rejects) == {"ferv39k-4_setups/All_scenes/test_All.csv:2": "malformed_row"}
    assert re.search(r"test_All\.csv:2: malformed row", rejects[0].detail)
    (root / "4_setups/All_scenes/test_All.csv").write_text("Action/Sad/0001 Bored\n")
    rejects = prepare("ferv39k", root, split="test").rejects
    assert reasons(rejects) == {"ferv39k-test-Action-Sad-0001": "unknown_label"}
    assert re.search(r"test_All\.csv:1: unknown label 'Bored'", rejects[0].detail)
