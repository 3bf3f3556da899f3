"""check_manifest on a fixture with bad media, and mixture weighting."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from corpora_fixtures import build_ferv39k, build_mafw, write_corrupt, write_lfs_stub

from emorl.data.check import check_manifest, sample_modality
from emorl.data.corpora import prepare
from emorl.data.labels import LABEL_SETS
from emorl.data.manifest import Sample, read_manifest, write_manifest
from emorl.data.mixture import load_mixture, mixture_counts

# --------------------------------------------------------------------------- check


@pytest.fixture
def mixed_manifest(tmp_path, bank) -> Path:
    """One usable and one unusable sample of every kind the checker must tell apart."""
    d = tmp_path / "media"
    ferv, _ = prepare("ferv39k", build_ferv39k(tmp_path / "FERV39k", bank), subset="train")
    mafw, _ = prepare("mafw", build_mafw(tmp_path / "MAFW", bank), fold=1)
    silent = next(s for s in mafw if s.meta["has_audio"] is False)
    samples = [
        Sample(
            "good-av", str(bank.put("av", d / "good.mp4")), "happy", "dfew", "test", 1, meta={"modality": "audio+video"}
        ),
        Sample("corrupt", str(write_corrupt(d / "corrupt.mp4")), "sad", "dfew", "test", 1),
        Sample(
            "lfs",
            str(write_lfs_stub(d / "lfs.flv")),
            "angry",
            "crema-d",
            "test",
            1,
            audio=str(bank.put("wav", d / "lfs.wav")),
        ),
        Sample(
            "lfs-audio",
            str(bank.put("av", d / "x.flv")),
            "fear",
            "crema-d",
            "test",
            1,
            audio=str(write_lfs_stub(d / "x.wav")),
        ),
        Sample("gone", str(d / "gone.mp4"), "neutral", "meld", "test"),
        Sample(
            "wav-only",
            str(bank.put("wav", d / "03-01-02-01-01-01-01.wav")),
            "calm",
            "ravdess",
            "test",
            1,
            meta={"modality": "audio"},
        ),
        Sample(
            "split-av",
            str(bank.put("silent", d / "02-01-03-01-01-01-01.mp4")),
            "happy",
            "ravdess",
            "test",
            1,
            audio=str(bank.put("wav", d / "03-01-03-01-01-01-01.wav")),
            meta={"modality": "audio+video"},
        ),
        silent,  # MAFW clip without an audio stream: rejected as no_audio
        *ferv[:2],  # frame folders, video-only: never rejected for missing audio
    ]
    path = tmp_path / "manifest.jsonl"
    write_manifest(path, samples, relative_to=tmp_path)
    return path


def test_check_manifest_lists_every_reject(mixed_manifest, tmp_path):
    out = tmp_path / "check"
    report = check_manifest(mixed_manifest, out, workers=2, progress=False)
    assert (report.total, report.usable, report.rejected) == (10, 5, 5)
    assert report.outcomes == {"unreadable": 1, "lfs_pointer": 2, "missing": 1, "no_audio": 1}
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    by_id = {r["id"]: r for r in rejects}
    assert {k: by_id[k]["outcome"] for k in ("corrupt", "lfs", "lfs-audio", "gone")} == {
        "corrupt": "unreadable",
        "lfs": "lfs_pointer",
        "lfs-audio": "lfs_pointer",
        "gone": "missing",
    }
    assert by_id["mafw-f1-train-00005"]["outcome"] == "no_audio"
    assert all(r["reason"] and r["media"] for r in rejects)
    clean = read_manifest(out / "clean.jsonl")
    assert {s.id for s in clean} == {
        "good-av",
        "wav-only",
        "split-av",
        "ferv39k-train-Action-Happy-0267",
        "ferv39k-train-Argue-Angry-0012",
    }
    assert all(Path(s.media).exists() for s in clean)
    assert len(clean) + len(rejects) == report.total  # nothing dropped without being listed
    summary = json.loads((out / "check.json").read_text())
    assert summary["classes"]["ferv39k"] == {"angry": 1, "happy": 1}
    assert summary["rejected_classes"]["crema-d"] == {"angry": 1, "fear": 1}
    assert summary["duration_s"]["max"] == pytest.approx(0.5, abs=0.1)
    assert summary["source_frames"]["min"] == 3 and summary["source_frames"]["max"] == 4  # 3 jpgs, 4 frames


def test_check_inline_matches_pool(mixed_manifest, tmp_path):
    a = check_manifest(mixed_manifest, tmp_path / "a", workers=1, progress=False)
    b = check_manifest(mixed_manifest, tmp_path / "b", workers=2, progress=False)
    assert (tmp_path / "a/rejects.jsonl").read_text() == (tmp_path / "b/rejects.jsonl").read_text()
    assert a.classes == b.classes


def test_sample_modality_defaults(tmp_path):
    (tmp_path / "frames").mkdir()
    assert sample_modality(Sample("a", str(tmp_path / "frames"), "happy", "x", "t")) == "video"
    assert sample_modality(Sample("b", str(tmp_path / "a.wav"), "happy", "x", "t")) == "audio"
    assert sample_modality(Sample("c", str(tmp_path / "a.mp4"), "happy", "x", "t")) == "audio+video"
    tagged = Sample("d", str(tmp_path / "a.mp4"), "happy", "x", "t", meta={"modality": "video"})
    assert sample_modality(tagged) == "video"


# --------------------------------------------------------------------------- mixture


def _manifest(path: Path, dataset: str, n: int) -> Path:
    labels = LABEL_SETS[dataset]
    write_manifest(
        path,
        [
            Sample(f"{dataset}-{i}", f"/data/{dataset}/{i}.mp4", labels[i % len(labels)], dataset, "train", 1)
            for i in range(n)
        ],
    )
    return path


@pytest.fixture
def two_manifests(tmp_path) -> tuple[Path, Path]:
    return _manifest(tmp_path / "dfew.jsonl", "dfew", 10), _manifest(tmp_path / "mafw.jsonl", "mafw", 20)


def test_mixture_counts_are_exact():
    assert mixture_counts([1, 3], 30) == [8, 22]
    assert mixture_counts([1, 1, 1], 10) == [4, 3, 3]
    assert mixture_counts([0.2, 0.8], 5) == [1, 4]
    assert sum(mixture_counts([0.3, 1.7, 2.9], 1001)) == 1001


def test_mixture_weights_and_label_sets(two_manifests):
    dfew, mafw = two_manifests
    mixed = load_mixture([{"manifest": dfew, "weight": 1}, {"manifest": mafw, "weight": 3}], seed=0)
    assert len(mixed) == 30 and Counter(s.dataset for s in mixed) == {"dfew": 8, "mafw": 22}
    assert len({s.id for s in mixed}) == 30
    assert sum(s.id.endswith("#rep1") for s in mixed) == 2  # 22 drawn from 20: two repeats
    assert len({s.id for s in mixed if s.dataset == "mafw" and "#rep" not in s.id}) == 20
    assert all(s.labels == LABEL_SETS[s.dataset] for s in mixed)
    assert {s.labels for s in mixed} == {LABEL_SETS["dfew"], LABEL_SETS["mafw"]}


def test_mixture_is_deterministic_and_sized(two_manifests):
    dfew, mafw = two_manifests
    spec = [{"manifest": dfew, "weight": 1.0}, {"manifest": mafw, "weight": 1.0}]
    a = [s.id for s in load_mixture(spec, seed=3)]
    assert a == [s.id for s in load_mixture(spec, seed=3)]
    assert a != [s.id for s in load_mixture(spec, seed=4)]
    big = load_mixture(spec, seed=3, size=300)
    assert Counter(s.dataset for s in big) == {"dfew": 150, "mafw": 150}
    assert Counter(s.id.split("#")[0] for s in big if s.dataset == "dfew") == {f"dfew-{i}": 15 for i in range(10)}


def test_mixture_bad_specs(two_manifests):
    dfew, _ = two_manifests
    with pytest.raises(ValueError, match="weight must be a positive number"):
        load_mixture([{"manifest": dfew, "weight": 0}], seed=0)
    with pytest.raises(ValueError, match="expected"):
        load_mixture([{"path": dfew}], seed=0)
    with pytest.raises(ValueError, match="unknown key"):
        load_mixture([{"manifest": dfew, "weigth": 2}], seed=0)
    with pytest.raises(ValueError, match="occurs in both"):
        load_mixture([{"manifest": dfew}, {"manifest": dfew}], seed=0)


def test_training_mixture_from_config_string(tmp_path):
    """`data.train=a.jsonl:1,b.jsonl:3` loads a weighted mixture; samples keep their label sets."""
    from emorl.data.labels import LABEL_SETS
    from emorl.data.manifest import Sample, write_manifest
    from emorl.runs import load_samples

    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_manifest(a, [Sample(f"a{i}", "x.mp4", "happy", "dfew", "train") for i in range(20)])
    write_manifest(b, [Sample(f"b{i}", "y.mp4", "contempt", "mafw", "train") for i in range(20)])
    mix = load_samples(f"{a}:1,{b}:3", seed=0)
    n_a = sum(s.dataset == "dfew" for s in mix)
    assert len(mix) == 40 and n_a == 10  # 1:3 of 40
    assert {s.labels for s in mix} == {LABEL_SETS["dfew"], LABEL_SETS["mafw"]}
    assert len(load_samples(a)) == 20
    with pytest.raises(ValueError, match="expected path:weight"):
        load_samples(f"{a}:x,{b}:1")
