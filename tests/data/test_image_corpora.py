"""Image corpus adapters on fixture trees in each official layout (see image_fixtures.py), and the
hub-format parquet copies read through ``datasets``."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from image_fixtures import (
    build_emoset,
    build_emotion6,
    build_emotionroi,
    build_fi,
    build_hub,
    emoset2k_rows,
    emotion6_line,
    image_bytes,
    spoil_emoset,
    spoil_emotion6,
    spoil_emotionroi,
    spoil_fi,
)

from emorl.data.corpora import SPECS, DatasetError, corpus_splits, prepare
from emorl.data.corpora.image_common import hash_split
from emorl.data.labels import LABEL_SETS
from emorl.data.manifest import read_manifest, write_manifest

BUILDERS = {"emoset": build_emoset, "emotion6": build_emotion6, "fi": build_fi, "emotionroi": build_emotionroi}
SPOILERS = {"emoset": spoil_emoset, "emotion6": spoil_emotion6, "fi": spoil_fi, "emotionroi": spoil_emotionroi}
COUNTS = {"emoset": 24, "emotion6": 30, "fi": 48, "emotionroi": 24}


def test_registry_has_the_image_corpora():
    for name in ("emoset", "emotion6", "fi", "emotionroi", "emoset2k", "emotion6-hub"):
        assert name in SPECS and SPECS[name].folds == () and SPECS[name].splits[-1] == "all"
    assert corpus_splits("emoset") == ("train", "val", "test", "all") == corpus_splits("fi")
    assert corpus_splits("emotion6") == ("train", "test", "all") == corpus_splits("emoset2k")
    assert SPECS["emoset2k"].extracts and not SPECS["emoset"].extracts
    assert SPECS["emotion6"].subsets == ("keyword", "voted")


@pytest.mark.parametrize("name", list(BUILDERS))
def test_every_image_corpus_writes_a_valid_manifest(name, tmp_path):
    root = BUILDERS[name](tmp_path / name)
    samples, rejects = prepare(name, root)
    assert len(samples) == COUNTS[name] and rejects == []
    assert len({s.id for s in samples}) == len(samples)
    assert all(s.dataset == name and s.label in LABEL_SETS[name] and s.fold is None for s in samples)
    assert all(s.id.startswith(f"{name}-") and Path(s.media).is_absolute() and Path(s.media).is_file() for s in samples)
    assert all(s.meta["modality"] == "image" for s in samples)
    assert set(Counter(s.label for s in samples)) == set(LABEL_SETS[name])  # every class read
    write_manifest(tmp_path / "m.jsonl", samples, relative_to=tmp_path)
    assert [s.id for s in read_manifest(tmp_path / "m.jsonl")] == [s.id for s in samples]


@pytest.mark.parametrize("name", list(BUILDERS))
def test_row_level_problems_are_image_rejects(name, tmp_path):
    root = BUILDERS[name](tmp_path / name)
    before = prepare(name, root)
    expected = SPOILERS[name](root)
    after = prepare(name, root)
    assert {r.id: r.reason for r in after.rejects} == expected
    kept = {s.id for s in after.samples}
    assert {s.id for s in before.samples} <= kept  # one bad row never stops the corpus
    for r in after.rejects:
        assert r.detail and Path(r.path).is_absolute()
    assert all(str(root.resolve()) in r.detail for r in after.rejects if r.reason not in ("missing",))


@pytest.mark.parametrize("name", list(BUILDERS))
def test_relative_root_and_unknown_split(name, tmp_path, monkeypatch):
    BUILDERS[name](tmp_path / "data" / name)
    monkeypatch.chdir(tmp_path / "data")
    samples, _ = prepare(name, name)
    assert samples and all(Path(s.media).is_absolute() for s in samples)
    valid = ", ".join(corpus_splits(name))
    with pytest.raises(DatasetError, match=rf"{name}: unknown split 'validation'; valid splits: {valid}"):
        prepare(name, name, split="validation")
    with pytest.raises(DatasetError, match="fold 1 does not exist"):
        prepare(name, name, fold=1)


def test_emoset_splits_labels_and_attributes(tmp_path):
    root = build_emoset(tmp_path / "EmoSet-118K", per_class=4)
    train, test, val = (prepare("emoset", tmp_path, split=s).samples for s in ("train", "test", "val"))  # nested root
    assert (len(train), len(val), len(test)) == (16, 8, 8)
    assert {s.split for s in train} == {"train"} and {s.split for s in test} == {"test"}
    anger = next(s for s in train if s.meta["image_id"] == "anger_00000")
    assert anger.label == "angry" and anger.id == "emoset-anger_00000" and anger.meta["source"] == "train.json:3"
    assert anger.meta["attributes"]["scene"] == "bakery/shop" and anger.meta["attributes"]["human_action"] == "boxing "
    no_action = next(s for s in train if s.meta["image_id"] == "anger_00001")
    assert "human_action" not in no_action.meta["attributes"]  # absent attributes stay absent
    assert {s.label for s in train} == set(LABEL_SETS["emoset"])
    (root / "annotation/fear/fear_00000.json").unlink()
    fear = next(s for s in prepare("emoset", root, split="train").samples if s.meta["image_id"] == "fear_00000")
    assert "attributes" not in fear.meta  # a missing annotation keeps the sample
    with pytest.raises(DatasetError, match="EmoSet2k subset"):
        prepare("emoset", root, subset="emoset2k")
    (root / "test.json").write_text('{"not": "a list"}')
    with pytest.raises(DatasetError, match="test.json: expected a JSON list"):
        prepare("emoset", root, split="test")


def test_emotion6_keyword_and_voted_labels(tmp_path):
    root = build_emotion6(tmp_path / "Emotion6")
    keyword = {s.id: s for s in prepare("emotion6", root).samples}
    voted = {s.id: s for s in prepare("emotion6", root, subset="voted").samples}
    s = keyword["emotion6-anger-2"]
    assert s.label == "angry" and voted["emotion6-anger-2"].label == "disgust"  # votes favour the next class
    assert keyword["emotion6-joy-1"].label == "happy" == voted["emotion6-joy-1"].label
    assert s.meta["keyword"] == "anger" and s.meta["valence"] == 5.0 and s.meta["distribution"]["disgust"] == 0.6
    assert s.meta["source"] == "ground_truth.txt:3" and "no official split" in s.meta["split_rule"]
    gt = root / "ground_truth.txt"
    lines = [x for x in gt.read_text().splitlines() if not x.startswith(("fear/4.jpg", "fear/5.jpg"))]
    lines += [
        emotion6_line("fear/5.jpg", (0.2, 0, 0.2, 0, 0, 0, 0.6)),  # neutral wins
        emotion6_line("fear/4.jpg", (0.4, 0, 0.4, 0, 0, 0, 0.2)),
    ]  # anger and fear tie
    gt.write_text("\n".join(lines) + "\n")
    got = prepare("emotion6", root, subset="voted")
    assert {r.id: r.reason for r in got.rejects} == {"emotion6-fear-5": "neutral_vote", "emotion6-fear-4": "tied_vote"}
    assert "votes tie between anger, fear (0.4 each)" in got.rejects[1].detail
    assert len(prepare("emotion6", root).samples) == 30  # the keyword labels do not need the votes
    with pytest.raises(DatasetError, match="unknown subset 'votes'; valid subsets: keyword, voted"):
        prepare("emotion6", root, subset="votes")


def test_hash_splits_are_stable_disjoint_and_near_their_shares(tmp_path):
    root = build_fi(tmp_path / "FI", per_class=40)
    every = prepare("fi", root).samples
    parts = {s: prepare("fi", root, split=s).samples for s in ("train", "val", "test")}
    assert sum(map(len, parts.values())) == len(every) == 320
    ids = [{x.id for x in v} for v in parts.values()]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert 0.72 < len(parts["train"]) / 320 < 0.88 and 0.09 < len(parts["test"]) / 320 < 0.21
    assert all(s.split == hash_split("fi", s.id, (("train", 0.8), ("val", 0.05), ("test", 0.15))) for s in every)
    (root / "emotion_dataset/awe/awe_0.jpg").unlink()  # removing an image moves no other image
    after = {s.id: s.split for s in prepare("fi", root).samples}
    assert all(after[s.id] == s.split for s in every if s.id in after) and len(after) == 319
    assert prepare("fi", root, split="train,val").samples  # combinations


def test_fi_layout_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no FI emotion folders found; expected folders named amusement, anger"):
        prepare("fi", tmp_path / "empty")
    build_fi(tmp_path / "flat", per_class=1, nested="")
    assert len(prepare("fi", tmp_path / "flat").samples) == 8  # folders at the root work too


def test_emotionroi_official_split_with_crlf(tmp_path):
    root = build_emotionroi(tmp_path / "EmotionROI")
    assert len(prepare("emotionroi", root, split="train").samples) == 18
    test = prepare("emotionroi", root, split="test").samples
    assert len(test) == 6 and all(s.id.endswith("-4") for s in test)
    joy = next(s for s in test if s.id == "emotionroi-joy-4")
    assert joy.label == "happy" and joy.meta["source"] == "testing.txt:4"
    root2 = build_emotionroi(tmp_path / "lf", crlf=False)
    assert len(prepare("emotionroi", root2).samples) == 24


# --------------------------------------------------------------------------- hub-format parquet copies


def test_emoset2k_hub_copy_extracts_images_once(tmp_path):
    root = build_hub(tmp_path / "EmoSet2k", emoset2k_rows())
    images = tmp_path / "out" / "images"
    samples, rejects = prepare("emoset2k", root, image_dir=images)
    assert rejects == [] and len(samples) == 12
    assert Counter(s.split for s in samples) == {"train": 8, "test": 4}
    s = samples[1]
    assert s.id == "emoset2k-train-00001" and s.dataset == "emoset" and s.label == "angry"
    assert s.meta["answer"] == "anger" and s.meta["source"] == "train:1" and s.meta["modality"] == "image"
    assert s.meta["fields"]["problem"].startswith("<image>Which emotion") and s.meta["fields"]["course_grained"]
    p = Path(s.media)
    assert p.suffix == ".png" and p.parent.parent == images.resolve()  # PNG bytes named 1.jpg: sniffed
    assert p.name.startswith(s.meta["sha256"]) and p.parent.name == s.meta["sha256"][:2]
    assert p.read_bytes() == image_bytes(4001, "PNG")
    leak = next(x for x in samples if x.id == "emoset2k-test-00000")
    assert leak.media == samples[0].media  # identical bytes share one file: the leakage guard sees it
    mtimes = {f: f.stat().st_mtime_ns for f in images.rglob("*") if f.is_file()}
    assert len(mtimes) == 11
    again, _ = prepare("emoset2k", root, image_dir=images)
    assert [x.media for x in again] == [x.media for x in samples]
    assert {f: f.stat().st_mtime_ns for f in images.rglob("*") if f.is_file()} == mtimes  # nothing rewritten
    assert not list(images.rglob("*.tmp"))
    only_test = prepare("emoset2k", root, split="test", image_dir=images).samples
    assert [x.id for x in only_test] == [x.id for x in samples if x.split == "test"]


def test_hub_rejects_and_layout_errors(tmp_path):
    rows = emoset2k_rows(4, 1)
    rows["train"][1]["answer"] = "boredom"
    rows["train"][2]["images"] = []
    rows["train"][3]["images"] = rows["train"][3]["images"] * 2
    root = build_hub(tmp_path / "hub", rows)
    got = prepare("emoset2k", root, image_dir=tmp_path / "img")
    assert {r.id: r.reason for r in got.rejects} == {
        "emoset2k-train-00001": "unknown_label",
        "emoset2k-train-00002": "no_image",
        "emoset2k-train-00003": "several_images",
    }
    assert "train row 1" in got.rejects[0].detail and "boredom" in got.rejects[0].detail
    with pytest.raises(DatasetError, match="give image_dir="):
        prepare("emoset2k", root)
    (root / "data/test-00000-of-00001.parquet").unlink()
    assert {s.split for s in prepare("emoset2k", root, image_dir=tmp_path / "img").samples} == {"train"}
    with pytest.raises(DatasetError, match="no parquet files for split"):
        prepare("emoset2k", root, split="test", image_dir=tmp_path / "img")


def test_emotion6_hub_single_image_column_and_joy(tmp_path):
    rows = {
        "train": [
            {
                "image": {"bytes": image_bytes(9000 + i), "path": None},
                "problem": "<image>Q",
                "course_grained": "",
                "answer": w,
            }
            for i, w in enumerate(("joy", "Anger", "surprise"))
        ]
    }
    root = build_hub(tmp_path / "e6", rows, column="image")
    samples, rejects = prepare("emotion6-hub", root, image_dir=tmp_path / "img")
    assert rejects == [] and [s.label for s in samples] == ["happy", "angry", "surprise"]
    assert all(s.dataset == "emotion6" and Path(s.media).suffix == ".jpg" for s in samples)


def test_prepare_command_puts_hub_images_beside_the_manifest(tmp_path):
    from emorl.data.prepare import prepare_manifest

    root = build_hub(tmp_path / "EmoSet2k", emoset2k_rows())
    r = prepare_manifest("emoset2k", str(root), tmp_path / "m" / "emoset2k.jsonl")
    assert r["rows"] == 12 and (tmp_path / "m" / "images").is_dir()
    rows = [json.loads(x) for x in (tmp_path / "m/emoset2k.jsonl").read_text().splitlines()]
    assert all(x["media"].startswith("images/") for x in rows)  # relative to the manifest
    assert all(Path(s.media).is_file() for s in read_manifest(tmp_path / "m/emoset2k.jsonl"))
    with pytest.raises(DatasetError, match="only applies to hub-format image corpora"):
        prepare_manifest("fi", str(root), tmp_path / "x.jsonl", image_dir=str(tmp_path / "i"))


def test_a_corrupt_parquet_file_is_a_dataset_error(tmp_path):
    root = build_hub(tmp_path / "hub", emoset2k_rows(2, 1))
    f = root / "data/train-00000-of-00001.parquet"
    f.write_bytes(f.read_bytes()[:200])
    with pytest.raises(DatasetError, match="train-00000-of-00001.parquet"):
        prepare("emoset2k", root, split="train", image_dir=tmp_path / "img")
