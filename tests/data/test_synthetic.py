"""The synthetic omni-emotion world: files, determinism, cue statistics, rendering and traces."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from emorl.data.labels import emotions_in
from emorl.data.manifest import read_manifest
from emorl.data.media import load_clip
from emorl.data.synthetic import (
    CLASSES,
    CUE_LEXICON,
    INFORMATIVE,
    SPLITS,
    THINK_WORDS,
    describe_cues,
    make_trace,
    plan_split,
    split_specs,
    synthesize,
)
from emorl.data.synthetic import face as F
from emorl.data.synthetic import traces as T
from emorl.data.synthetic import voice as V
from emorl.data.synthetic import world as W

SMALL = {"train": 9, "coldstart": 4, "test": 4, "ood": 5, "pretrain": 2}
TRACE_RE = re.compile(r"^<think>(.+)</think><answer>([a-z]+)</answer>$", re.DOTALL)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "w"
    synthesize(out, seed=0, sizes=SMALL, frame_size=64, progress=False)
    return out


@pytest.fixture(scope="module")
def specs() -> dict[str, list[W.ClipSpec]]:
    """Cue draws only (no rendering): enough clips for statistics."""
    return {"train": split_specs(0, "train", 2100), "test": split_specs(0, "test", 1400)}


# ----------------------------------------------------------------------------- files


def test_same_seed_same_bytes_whatever_the_workers(world, tmp_path):
    again = tmp_path / "again"
    synthesize(again, seed=0, sizes=SMALL, frame_size=64, workers=2, progress=False)
    a, b = _files(world), _files(again)
    assert sorted(a) == sorted(b)
    assert len([k for k in a if k.endswith(".mp4")]) == sum(SMALL.values())
    assert [k for k in a if a[k] != b[k]] == []


def test_different_seed_different_bytes(world, tmp_path):
    other = tmp_path / "other"
    synthesize(other, seed=1, sizes={"train": 3}, frame_size=64, progress=False)
    for i in range(3):
        name = f"clips/train/syn-train-{i:05d}.mp4"
        assert (other / name).read_bytes() != (world / name).read_bytes()
    assert (other / "train.jsonl").read_bytes() != (world / "train.jsonl").read_bytes()
    assert not (other / "test.jsonl").exists()


def test_every_clip_decodes_with_video_and_audio(world):
    for split in SPLITS:
        for s in read_manifest(world / f"{split}.jsonl"):
            clip = load_clip(s.media, num_frames=8)
            assert clip.frames.shape == (8, 64, 64, 3) and clip.frames.dtype == np.uint8
            assert clip.audio is not None and clip.audio.dtype == np.float32
            dur = s.meta["duration"]
            assert 2.0 <= dur <= 4.0
            assert abs(clip.duration - dur) < 0.05
            assert abs(len(clip.audio) / 16000 - dur) < 0.05
            assert clip.source_frames == round(dur * 8)
            assert np.sqrt(np.mean(clip.audio**2)) > 1e-3  # not silence
            assert clip.frames.std() > 10  # not a blank frame


def test_manifests_validate_and_are_relocatable(world):
    for split in SPLITS:
        raw = [json.loads(line) for line in (world / f"{split}.jsonl").read_text().splitlines()]
        assert all(r["media"] == f"clips/{split}/{r['id']}.mp4" for r in raw)
        samples = read_manifest(world / f"{split}.jsonl")
        assert len(samples) == SMALL[split]
        for i, s in enumerate(samples):
            assert s.id == f"syn-{split}-{i:05d}"
            assert s.dataset == "synthetic" and s.split == split and s.fold is None
            assert s.label in CLASSES and s.labels == CLASSES
            m = s.meta
            assert m["informative"] in INFORMATIVE
            assert m["style"] == ("ood" if split == "ood" else "default")
            assert set(m["cues"]["video"]) >= set(W.VIDEO_CUES) | {"head_move"}
            assert set(m["cues"]["audio"]) >= set(W.AUDIO_CUES) | {"pitch_contour"}
            assert all(round(v, 4) == v for v in m["cues"]["audio"].values() if isinstance(v, float))
            assert m["seed"] == [0, W.SPLIT_CODES[split], 1, i]
    desc = json.loads((world / "world.json").read_text())
    assert desc["seed"] == 0 and desc["sizes"] == SMALL and desc["version"] == W.GENERATOR_VERSION
    assert desc["cues"]["video"]["means"]["angry"]["brow_raise"] == W.VIDEO_MEANS["angry"]["brow_raise"]


def test_splits_are_disjoint(world):
    ids, media, digests = set(), set(), set()
    for split in SPLITS:
        for s in read_manifest(world / f"{split}.jsonl"):
            assert s.id not in ids and s.media not in media
            ids.add(s.id)
            media.add(s.media)
            digests.add(hashlib.sha1(Path(s.media).read_bytes()).hexdigest())
    assert len(digests) == sum(SMALL.values())


def test_manifest_cues_are_the_spec_cues(world):
    specs = split_specs(0, "ood", SMALL["ood"])
    for spec, s in zip(specs, read_manifest(world / "ood.jsonl")):
        assert s.label == spec.label and s.meta == json.loads(json.dumps(spec.meta()))


def test_bad_arguments_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown split"):
        synthesize(tmp_path, sizes={"dev": 3}, progress=False)
    with pytest.raises(ValueError, match="even"):
        synthesize(tmp_path, sizes={"train": 1}, frame_size=63, progress=False)
    with pytest.raises(ValueError, match="seed"):
        synthesize(tmp_path, seed=-1, sizes={"train": 1}, progress=False)


# ----------------------------------------------------------------------------- cue statistics


def test_plan_is_balanced_with_fixed_modality_shares():
    plan = plan_split(0, "train", 1200)
    labels = Counter(lab for lab, _ in plan)
    assert set(labels) == set(CLASSES) and max(labels.values()) - min(labels.values()) <= 1
    modes = Counter(m for _, m in plan)
    assert modes == {"both": 720, "video": 240, "audio": 240}
    assert plan != plan_split(1, "train", 1200) and plan == plan_split(0, "train", 1200)
    # every (label, modality) cell is populated
    assert len(Counter(plan)) == len(CLASSES) * 3


def _matrix(specs: list[W.ClipSpec], modalities: tuple[str, ...]) -> np.ndarray:
    cols = [(m, c) for m in modalities for c in (W.VIDEO_CUES if m == "video" else W.AUDIO_CUES)]
    return np.array([[getattr(s, m)[c] for m, c in cols] for s in specs], float)


def _ncm_accuracy(train: list[W.ClipSpec], test: list[W.ClipSpec], modalities: tuple[str, ...]) -> float:
    """Nearest-class-mean accuracy on standardised numeric cue values."""
    xtr, xte = _matrix(train, modalities), _matrix(test, modalities)
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-9
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    ytr = np.array([CLASSES.index(s.label) for s in train])
    yte = np.array([CLASSES.index(s.label) for s in test])
    means = np.stack([xtr[ytr == k].mean(0) for k in range(len(CLASSES))])
    pred = ((xte[:, None] - means[None]) ** 2).sum(-1).argmin(1)
    return float((pred == yte).mean())


def _of(specs: list[W.ClipSpec], informative: str) -> list[W.ClipSpec]:
    return [s for s in specs if s.informative == informative]


def test_cues_separate_classes_but_overlap(specs):
    tr, te = specs["train"], specs["test"]
    chance = 1 / len(CLASSES)
    both = _ncm_accuracy(_of(tr, "both"), _of(te, "both"), ("video", "audio"))
    face = _ncm_accuracy(_of(tr, "both"), _of(te, "both"), ("video",))
    voice = _ncm_accuracy(_of(tr, "both"), _of(te, "both"), ("audio",))
    assert both > 0.65 and face > 0.5 and voice > 0.4  # well above chance (0.14) ...
    assert both < 0.97  # ... but not a lookup table
    assert both > max(face, voice) + 0.05  # the modalities complement each other
    # the informative modality of single-modality clips carries the label
    assert _ncm_accuracy(_of(tr, "video"), _of(te, "video"), ("video",)) > 0.5
    assert _ncm_accuracy(_of(tr, "audio"), _of(te, "audio"), ("audio",)) > 0.4
    # ... and the other one is near chance
    assert _ncm_accuracy(_of(tr, "video"), _of(te, "video"), ("audio",)) < chance + 0.1
    assert _ncm_accuracy(_of(tr, "audio"), _of(te, "audio"), ("video",)) < chance + 0.1


def test_confusable_pairs_are_closer_than_others():
    def dist(a: str, b: str) -> float:
        v = sum(((W.VIDEO_MEANS[a][c] - W.VIDEO_MEANS[b][c]) / W.VIDEO_SD[c]) ** 2 for c in W.VIDEO_CUES)
        return v + sum(((W.AUDIO_MEANS[a][c] - W.AUDIO_MEANS[b][c]) / W.AUDIO_SD[c]) ** 2 for c in W.AUDIO_CUES)

    assert dist("fear", "surprise") < dist("fear", "sad")
    assert dist("angry", "disgust") < dist("angry", "happy")
    assert dist("sad", "neutral") < dist("sad", "surprise")


def test_uninformative_face_is_class_independent(specs):
    audio_clips = _of(specs["train"] + specs["test"], "audio")
    x = _matrix(audio_clips, ("video",))
    y = np.array([s.label for s in audio_clips])
    overall = x.mean(0)
    for lab in CLASSES:
        assert np.all(np.abs(x[y == lab].mean(0) - overall) < 0.05), lab
    assert {s.video["head_move"] for s in audio_clips} == {W.FLAT_HEAD_MOVE}
    assert all(s.intensity["video"] is None for s in audio_clips)
    occluded = np.mean([s.video["occluded"] for s in audio_clips])
    assert 0.2 < occluded < 0.4
    assert not any(s.video["occluded"] for s in specs["train"] if s.informative != "audio")


def test_uninformative_voice_is_class_independent(specs):
    video_clips = _of(specs["train"] + specs["test"], "video")
    x = _matrix(video_clips, ("audio",))
    y = np.array([s.label for s in video_clips])
    sd = x.std(0) + 1e-9
    for lab in CLASSES:
        assert np.all(np.abs(x[y == lab].mean(0) - x.mean(0)) / sd < 0.3), lab
    assert {s.audio["pitch_contour"] for s in video_clips} == {W.FLAT_CONTOUR}


def test_cues_stay_in_range(specs):
    for s in specs["train"][:700]:
        for c, (lo, hi) in W.VIDEO_CUES.items():
            assert lo <= s.video[c] <= hi
        for c, (lo, hi) in W.AUDIO_CUES.items():
            assert lo <= s.audio[c] <= hi


# ----------------------------------------------------------------------------- rendering


def _appearance(style: str = "default") -> F.Appearance:
    app = F.sample_appearance(F.FACE_STYLES[style], np.random.default_rng(5))
    return replace(app, center=(0.0, 0.0), scale=1.0)


def _face(label: str, style: str = "default", size: int = 112) -> np.ndarray:
    cues = {**W.VIDEO_MEANS[label], "head_move": "still", "occluded": False}
    return F.render_still(cues, _appearance(style), F.FACE_STYLES[style], size)


def _mouth_top_rows(img: np.ndarray, half_width: float) -> tuple[float, float]:
    """Top edge (row) of the mouth (pixels far from the skin colour) below the nose, at the
    centre and near the corners (``half_width``: the mouth's half width in face units)."""
    size = img.shape[0]
    to_px = lambda f: round((f + 1) * size / 2)
    skin = np.asarray(_appearance().skin) * 255
    box = img[to_px(0.26) : to_px(0.85)].astype(float)
    mouth = np.abs(box - skin).sum(-1) > 60

    def top(c0: float, c1: float) -> float:
        cols = mouth[:, to_px(c0) : to_px(c1)]
        assert cols.any(0).all(), "no mouth pixels in these columns"
        return float(cols.argmax(0).mean())

    a, b = 0.7 * half_width, 0.88 * half_width
    return top(-0.04, 0.04), (top(-b, -a) + top(a, b)) / 2


def test_happy_and_sad_faces_differ_in_the_mouth():
    happy, sad = _face("happy"), _face("sad")
    size = happy.shape[0]
    mouth = slice(int(0.58 * size), int(0.9 * size)), slice(int(0.3 * size), int(0.7 * size))
    diff = np.abs(happy.astype(int) - sad.astype(int)).sum(-1)
    assert diff[mouth].mean() > 40
    assert diff[: size // 10].max() == 0  # same appearance: background rows are identical
    c_h, k_h = _mouth_top_rows(happy, 0.16 + 0.2 * W.VIDEO_MEANS["happy"]["mouth_width"])
    c_s, k_s = _mouth_top_rows(sad, 0.16 + 0.2 * W.VIDEO_MEANS["sad"]["mouth_width"])
    assert k_h < c_h - 2  # smile: corners above the middle
    assert k_s > c_s + 2  # frown: corners below the middle


def test_expression_survives_downscaling():
    from PIL import Image

    small = {c: np.asarray(Image.fromarray(_face(c)).resize((56, 56), Image.BILINEAR)).astype(float) for c in CLASSES}
    for a in CLASSES:
        for b in CLASSES:
            if a < b:
                assert np.abs(small[a] - small[b]).mean() > 2.0, (a, b)


def test_head_motion_moves_the_face():
    rng = np.random.default_rng(0)
    still = F.head_offsets("still", 0.2, 24, 8, rng)
    shake = F.head_offsets("shake", 1.0, 24, 8, rng)
    nod = F.head_offsets("nod", 1.0, 24, 8, rng)
    assert np.abs(still).max() < 0.01
    assert shake[:, 0].std() > 0.03 and shake[:, 1].std() == 0
    assert nod[:, 1].std() > 0.03 and nod[:, 0].std() == 0
    with pytest.raises(ValueError):
        F.head_offsets("spin", 1.0, 4, 8, rng)


def test_ood_style_looks_and_sounds_different():
    assert np.abs(_face("neutral").astype(int) - _face("neutral", "ood").astype(int)).mean() > 20
    cues = {**W.AUDIO_MEANS["neutral"], "pitch_contour": "flat", "jitter": 0.0}
    f0 = {st: _f0(_voice(cues, st)) for st in ("default", "ood")}
    assert f0["ood"] < 0.8 * f0["default"]


# ----------------------------------------------------------------------------- voice


def _voice(cues: dict, style: str = "default", seed: int = 0, duration: float = 3.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vs = V.VOICE_STYLES[style]
    return V.synth_voice(cues, V.sample_speaker(vs, rng), vs, duration, rng)


def _f0(audio: np.ndarray, sr: int = 16000) -> float:
    """Median autocorrelation F0 (Hz) over the loud 64 ms frames."""
    n = 1024
    frames = audio[: len(audio) // n * n].reshape(-1, n).astype(float)
    rms = np.sqrt((frames**2).mean(1))
    est = []
    for fr in frames[rms > 0.5 * rms.max()]:
        ac = np.fft.irfft(np.abs(np.fft.rfft(fr - fr.mean(), 2 * n)) ** 2)[:n]
        lo, hi = sr // 500, sr // 60
        est.append(sr / (lo + int(np.argmax(ac[lo:hi]))))
    return float(np.median(est))


def _flat_voice(**kw) -> dict:
    return {
        "pitch": 0.0,
        "pitch_range": 1.0,
        "pitch_contour": "flat",
        "energy": 0.0,
        "rate": 4.0,
        "breathiness": 0.0,
        "jitter": 0.0,
        "harshness": 0.0,
        **kw,
    }


def test_voice_prosody_follows_the_cues():
    lo, hi = _voice(_flat_voice(pitch=-4.0)), _voice(_flat_voice(pitch=6.0))
    assert _f0(hi) / _f0(lo) == pytest.approx(2 ** (10 / 12), rel=0.12)
    assert _f0(lo) == pytest.approx(175 * 2 ** (-4 / 12), rel=0.12)
    soft, loud = _voice(_flat_voice(energy=-8.0)), _voice(_flat_voice(energy=8.0))
    assert np.sqrt(np.mean(loud**2)) > 4 * np.sqrt(np.mean(soft**2))
    assert np.abs(loud).max() <= 1.0 and loud.dtype == np.float32 and len(loud) == 48000
    slow = V.syllable_plan(2.5, 4.0, np.random.default_rng(0))
    fast = V.syllable_plan(6.5, 4.0, np.random.default_rng(0))
    assert len(fast) > 1.8 * len(slow)


def test_voice_quality_cues_change_the_spectrum():
    def flatness(a: np.ndarray) -> float:  # spectral flatness of the loud part: noise-like -> higher
        spec = np.abs(np.fft.rfft(a[8000:40000].astype(float))) ** 2 + 1e-12
        return float(np.exp(np.mean(np.log(spec))) / np.mean(spec))

    assert flatness(_voice(_flat_voice(breathiness=0.9))) > 3 * flatness(_voice(_flat_voice()))
    rise = _voice(_flat_voice(pitch_contour="rising", pitch_range=8.0), duration=4.0)
    fall = _voice(_flat_voice(pitch_contour="falling", pitch_range=8.0), duration=4.0)
    assert _f0(rise[-24000:]) > _f0(rise[:24000]) * 1.2
    assert _f0(fall[-24000:]) < _f0(fall[:24000]) / 1.2


# ----------------------------------------------------------------------------- traces


def test_traces_parse_and_cite_only_true_cues(specs):
    rng = np.random.default_rng(0)
    all_phrases = {m: [p for d in T.DESCRIPTORS if d.modality == m for p in d.phrases] for m in ("video", "audio")}
    openings = set()
    for s in specs["train"][:700]:
        meta = s.meta()
        trace = make_trace(meta, s.label, rng)
        m = TRACE_RE.match(trace)
        assert m, trace
        think, answer = m.groups()
        assert answer == s.label
        assert THINK_WORDS[0] <= len(think.split()) <= THINK_WORDS[1], think
        assert emotions_in(think) == [s.label], think
        true = describe_cues(meta)
        cited = {mod: [p for p in all_phrases[mod] if p in think] for mod in ("video", "audio")}
        for mod in ("video", "audio"):
            assert set(cited[mod]) <= set(true[mod]), (think, mod)
            assert cited[mod], think  # both modalities are always addressed
        blank = {*T._BY_KEY[("video", "overall", "blank")].phrases, *T._BY_KEY[("video", "occluded", "mask")].phrases}
        plain = set(T._BY_KEY[("audio", "overall", "plain")].phrases)
        if s.informative == "audio":
            assert set(cited["video"]) <= blank and set(cited["video"]) & blank, think
        if s.informative == "video":
            assert set(cited["audio"]) <= plain and set(cited["audio"]) & plain, think
        if s.informative in ("video", "both") and s.label != "neutral":
            assert not set(cited["video"]) <= blank  # the face is actually described
        openings.add(think.split()[0])
    assert len(openings) >= 5  # wording varies
    assert make_trace(specs["test"][0].meta(), specs["test"][0].label, np.random.default_rng(3)) == make_trace(
        specs["test"][0].meta(), specs["test"][0].label, np.random.default_rng(3)
    )


def test_describe_cues_bins_the_values():
    meta = split_specs(0, "train", 1)[0].meta()
    meta["informative"] = "both"
    meta["cues"]["video"].update(brow_raise=-0.8, brow_tilt=-0.8, mouth_curve=0.7, occluded=False)
    meta["cues"]["audio"].update(pitch=6.0, energy=-8.0, pitch_contour="rising")
    d = describe_cues(meta)
    assert "lowered brows" in d["video"] and "knitted brows" in d["video"] and "a smile" in d["video"]
    assert "raised brows" not in d["video"] and "a downturned mouth" not in d["video"]
    assert {"a high-pitched voice", "a soft, quiet voice", "rising intonation"} <= set(d["audio"])
    assert "a loud voice" not in d["audio"] and "a blank face" not in d["video"]
    for mod in ("video", "audio"):
        assert set(d[mod]) <= set(CUE_LEXICON[mod])
    meta["cues"]["video"]["occluded"] = True
    d = describe_cues(meta)
    assert "a smile" not in d["video"] and "a mask over the mouth" in d["video"]


def test_cue_lexicon_is_unambiguous():
    phrases = [(d.modality, d.cue, d.bin, p) for d in T.DESCRIPTORS for p in d.phrases]
    for m1, c1, b1, p1 in phrases:
        assert emotions_in(p1) == [], p1
        for m2, c2, b2, p2 in phrases:
            if (m1, c1, b1) != (m2, c2, b2):
                assert p1 not in p2, (p1, p2)
    stop = {"a", "an", "the", "and", "in", "of", "at", "to", "up", "it", "with", "into", "over", "that"}

    def words(mod: str) -> set[str]:
        return {w for p in CUE_LEXICON[mod] for w in re.findall(r"[a-z]+", p)} - stop

    assert words("video") & words("audio") == set()
