"""Splits that cannot leak: split selection, the leakage guard, paths that resolve from anywhere,
and degenerate media flagged rather than silently used."""

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from corpora_fixtures import build_dfew, build_ravdess
from media_helpers import make_clip

from emorl.cli import main
from emorl.config import load_config
from emorl.data.leakage import LeakageError, find_leakage, guard
from emorl.data.manifest import ManifestError, Sample, read_manifest, select_split, write_manifest
from emorl.data.media import MediaLimits, load_clip
from emorl.runs import drop_flagged, load_samples, training_samples


def _rows(tmp_path, splits, name="m.jsonl", dataset="dfew", fold=None):
    clip = make_clip(tmp_path / "c.mp4", seconds=0.5, size=32)
    samples = [
        Sample(id=f"{sp}-{i}", media=str(clip), label="happy", dataset=dataset, split=sp, fold=fold)
        for sp, n in splits.items()
        for i in range(n)
    ]
    path = tmp_path / name
    write_manifest(path, samples)
    return path


def test_split_selection_defaults_and_errors(tmp_path):
    mixed = read_manifest(_rows(tmp_path, {"train": 3, "test": 2}))
    assert {s.split for s in select_split(mixed, "", default="train", source="m", key="data.split")} == {"train"}
    assert {s.split for s in select_split(mixed, "", default="test", source="m", key="eval.split")} == {"test"}
    assert len(select_split(mixed, "all", default="train", source="m", key="data.split")) == 5
    with pytest.raises(ManifestError, match=r"no rows of split 'val'.*train 3, test 2"):
        select_split(mixed, "val", default="train", source="m", key="data.split")
    other = read_manifest(_rows(tmp_path, {"train": 1, "val": 4}, "o.jsonl"))
    with pytest.raises(ManifestError, match=r"mixes splits \(val 4, train 1\) and has no 'test' rows.*eval.split"):
        select_split(other, "", default="test", source="o.jsonl", key="eval.split")
    only_test = read_manifest(_rows(tmp_path, {"test": 2}, "t.jsonl"))
    with pytest.raises(ManifestError, match="holds only 'test' rows.*data.split=test"):
        select_split(only_test, "", default="train", source="t.jsonl", key="data.split")
    assert len(select_split(only_test, "test", default="train", source="t", key="data.split")) == 2
    cold = read_manifest(_rows(tmp_path, {"coldstart": 2}, "c.jsonl"))  # one non-evaluation split: used whole
    assert len(select_split(cold, "", default="train", source="c", key="data.split")) == 2


def test_training_rows_of_several_folds_are_refused(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", seconds=0.5, size=32)
    rows = [
        Sample(id=f"f{k}-{i}", media=str(clip), label="sad", dataset="dfew", split="train", fold=k)
        for k in (1, 2)
        for i in range(2)
    ]
    write_manifest(tmp_path / "two.jsonl", rows)
    with pytest.raises(ManifestError, match=r"span folds \[1, 2\] of dfew"):
        load_samples(tmp_path / "two.jsonl")


def distinct_clips(folder):
    """The fixture trees copy one clip everywhere: give every clip file its own content (identical
    bytes are the same clip to the leakage guard)."""
    for i, f in enumerate(sorted(folder.glob("*.mp4"))):
        make_clip(f, seconds=0.5, size=32, seed=100 + i)


def test_dfew_fold_manifests_are_disjoint_and_a_cross_fold_pair_is_refused(tmp_path, bank):
    root = build_dfew(tmp_path / "DFEW", bank)
    distinct_clips(root / "Clip" / "original")
    files = {}
    for fold, split in ((1, "train"), (1, "test"), (2, "test")):
        files[fold, split] = tmp_path / f"dfew-f{fold}-{split}.jsonl"
        assert (
            main(
                [
                    "data",
                    "prepare",
                    "dfew",
                    "--root",
                    str(root),
                    "--fold",
                    str(fold),
                    "--split",
                    split,
                    "--out",
                    str(files[fold, split]),
                ]
            )
            == 0
        )
    train = read_manifest(files[1, "train"])
    assert {s.split for s in train} == {"train"} and {s.fold for s in train} == {1}
    assert not find_leakage(train, {"f1": read_manifest(files[1, "test"])}).clips
    # fold 2's test clips are fold 1's training clips: the guard names them
    with pytest.raises(LeakageError, match="training clip.*also evaluation clips") as e:
        guard(train, {"f2": read_manifest(files[2, "test"])})
    assert "same media" in str(e.value)
    cfg = load_config(None, [f"data.train={files[1, 'train']}", f"data.eval={files[2, 'test']}"])
    with pytest.raises(LeakageError):
        training_samples(cfg)
    cfg = load_config(None, [f"data.train={files[1, 'train']}", f"data.eval={files[1, 'test']}"])
    assert len(training_samples(cfg)) == len(train)


def test_content_hash_catches_a_copied_clip(tmp_path):
    a = make_clip(tmp_path / "a.mp4", seconds=0.5, size=32, seed=3)
    (tmp_path / "copy").mkdir()
    b = tmp_path / "copy" / "renamed.mp4"
    b.write_bytes(a.read_bytes())
    train = [Sample(id="x", media=str(a), label="sad", dataset="dfew", split="train")]
    test = [Sample(id="y", media=str(b), label="sad", dataset="dfew", split="test")]
    assert [o.how for o in find_leakage(train, {"t": test}).clips] == ["content"]


def test_shared_subjects_are_reported_not_refused(tmp_path, capsys, bank):
    root = build_ravdess(tmp_path / "RAVDESS", bank)
    assert (
        main(
            [
                "data",
                "prepare",
                "ravdess",
                "--root",
                str(root),
                "--fold",
                "1",
                "--split",
                "all",
                "--out",
                str(tmp_path / "r.jsonl"),
            ]
        )
        == 0
    )
    rows = read_manifest(tmp_path / "r.jsonl")
    train = [s for s in rows if s.split == "train"]
    test = [s for s in rows if s.split == "test"]
    assert train and test and not find_leakage(train, {"t": test}).subjects  # actor-independent folds
    other_clip = make_clip(tmp_path / "other.mp4", seconds=0.5, size=32, seed=9)
    same_actor = Sample(
        id="other",
        media=str(other_clip),
        label="sad",
        dataset="ravdess",
        split="test",
        meta={"subject": train[0].meta["subject"]},
    )
    found = guard(train, {"t": [same_actor]})  # no exception: a note
    assert found.subjects == {"t": [train[0].meta["subject"]]} and "share 1 subject" in capsys.readouterr().out


def test_prepare_with_a_relative_root_resolves_from_another_directory(tmp_path, bank, monkeypatch):
    build_dfew(tmp_path / "data" / "DFEW", bank)
    monkeypatch.chdir(tmp_path / "data")
    (tmp_path / "manifests").mkdir()
    assert (
        main(
            [
                "data",
                "prepare",
                "dfew",
                "--root",
                "DFEW",
                "--fold",
                "1",
                "--split",
                "test",
                "--out",
                "../manifests/dfew-f1-test.jsonl",
            ]
        )
        == 0
    )
    manifest = tmp_path / "manifests" / "dfew-f1-test.jsonl"
    assert '"media": "../data/DFEW/' in manifest.read_text()  # stored relative to the manifest's folder
    monkeypatch.chdir("/")
    rows = read_manifest(manifest)
    assert rows and all(Path(s.media).is_file() for s in rows)


def _write_video(path, frames: np.ndarray, fps: int = 25, codec: str = "png", pix_fmt: str = "rgb24"):
    """Any frame size (PNG in QuickTime; H.264 would need even sides)."""
    with av.open(str(path), mode="w") as out:
        s = out.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, fps)
            for pkt in s.encode(vf):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
    return path


def test_degenerate_media_are_flagged(tmp_path):
    rng = np.random.default_rng(0)
    one = _write_video(tmp_path / "one.mov", rng.integers(0, 255, (1, 64, 64, 3), dtype=np.uint8))
    short = _write_video(tmp_path / "short.mov", rng.integers(0, 255, (2, 64, 64, 3), dtype=np.uint8), fps=20)
    tiny = _write_video(tmp_path / "tiny.mov", rng.integers(0, 255, (30, 1, 1, 3), dtype=np.uint8))
    fine = _write_video(tmp_path / "fine.mov", rng.integers(0, 255, (30, 64, 64, 3), dtype=np.uint8))
    kw = {"num_frames": 4, "want_audio": False}
    assert "few_frames" in load_clip(one, **kw).flags
    assert "short" in load_clip(short, **kw).flags
    assert load_clip(tiny, **kw).flags == ["small"]
    assert load_clip(fine, **kw).flags == []
    assert load_clip(one, **kw, limits=MediaLimits(min_frames=0, min_seconds=0, min_side=0)).flags == []

    samples = [
        Sample(id=p.stem, media=str(p), label="happy", dataset="dfew", split="test", meta={"modality": "video"})
        for p in (one, short, tiny, fine)
    ]
    write_manifest(tmp_path / "m.jsonl", samples)
    assert main(["data", "check", str(tmp_path / "m.jsonl"), "--out", str(tmp_path / "chk"), "--workers", "1"]) == 0
    summary = json.loads((tmp_path / "chk" / "check.json").read_text())
    assert summary["usable"] == 4 and summary["flags"] == {"few_frames": 2, "short": 2, "small": 1}
    clean = read_manifest(tmp_path / "chk" / "clean.jsonl")
    assert {s.id: s.meta["flags"] for s in clean}["fine"] == []
    assert [s.id for s in drop_flagged(clean, "clean")] == ["fine"]
    with pytest.raises(ManifestError, match="needs the clean manifest"):
        drop_flagged(samples, "m.jsonl")
    kept = load_samples(tmp_path / "chk" / "clean.jsonl", split="test", exclude_flagged=True)
    assert [s.id for s in kept] == ["fine"]
    # thresholds come from the config
    assert (
        main(
            [
                "data",
                "check",
                str(tmp_path / "m.jsonl"),
                "--out",
                str(tmp_path / "chk2"),
                "--workers",
                "1",
                "data.min_side=0",
                "data.min_frames=1",
                "data.min_seconds=0",
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "chk2" / "check.json").read_text())["flags"] == {}


def test_check_reports_leakage_against_an_evaluation_manifest(tmp_path, capsys):
    train = _rows(tmp_path, {"train": 2}, "train.jsonl")
    test = _rows(tmp_path, {"test": 1}, "test.jsonl")  # the same clip file
    assert (
        main(["data", "check", str(train), "--out", str(tmp_path / "chk"), "--workers", "1", "--against", str(test)])
        == 2
    )
    assert "also evaluation clips" in capsys.readouterr().out
    leak = json.loads((tmp_path / "chk" / "check.json").read_text())["leakage"]
    assert leak["shared_clips"] and (tmp_path / "chk" / "clean.jsonl").is_file()  # written before the verdict
