"""The synthetic omni-emotion world: cue distributions, per-clip sampling, splits and manifests.

Every clip has a label (one of DFEW's seven), an *informative modality* and two cue sets:

* ``both``  — face and voice cues are drawn from the label's distributions;
* ``video`` — the face follows the label, the voice is drawn from ``FLAT_AUDIO`` (class independent);
* ``audio`` — the voice follows the label, the face is drawn from ``FLAT_VIDEO`` (class independent,
  sometimes with a mask over the mouth).

Per-class continuous cues are clipped Gaussians ``N(mean, SD[cue])`` with
``mean = neutral_mean + intensity * (class_mean - neutral_mean)``, the latent per-modality
intensity drawn from ``INTENSITY`` (subtle expressions drift toward neutral). Class means overlap
on purpose (fear/surprise, angry/disgust, sad/neutral, happy/surprise voices are close);
categorical cues (head move, pitch contour) have per-class probabilities. With the values below
the Bayes-optimal accuracy from the true cues is about 0.86 on ``both`` clips, 0.73 from the face
alone and 0.62 from the voice alone (about 0.79 over the 60/20/20 mixture). Every clip is seeded from
``(seed, split, index)`` only, so its bytes do not depend on the worker count or on other clips.

Splits: ``train`` (RL and label SFT), ``coldstart`` (reasoning traces), ``test``, ``ood`` (other face
style, palette, background and voice timbre) and ``pretrain`` (the towers' perception pretraining,
emorl.perception; its labels are never used for training).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emorl.data.labels import LABEL_SETS
from emorl.data.manifest import Sample, write_manifest
from emorl.data.synthetic import face as facemod
from emorl.data.synthetic import voice as voicemod
from emorl.utils import atomic_write_json

GENERATOR_VERSION = "1.1"  # 1.1: H.264 without mbtree (deterministic bytes)
DATASET = "synthetic"
CLASSES: tuple[str, ...] = LABEL_SETS["synthetic"]
SPLITS: tuple[str, ...] = ("train", "coldstart", "test", "ood", "pretrain")
SPLIT_CODES: dict[str, int] = {"train": 0, "coldstart": 1, "test": 2, "ood": 3, "pretrain": 4}
SPLIT_STYLE: dict[str, str] = {
    "train": "default",
    "coldstart": "default",
    "test": "default",
    "ood": "ood",
    "pretrain": "default",
}
DEFAULT_SIZES: dict[str, int] = {"train": 1200, "coldstart": 240, "test": 280, "ood": 280, "pretrain": 1200}
INFORMATIVE: dict[str, float] = {"both": 0.6, "video": 0.2, "audio": 0.2}
OCCLUDED_P = 0.3  # share of audio-informative clips whose mouth is hidden by a mask
BLINK_P = 0.4  # share of clips with one blink (class independent)
INTENSITY = (0.3, 1.0)  # per-modality expression intensity: cue means move this far from neutral
_PLAN_TAG, _CLIP_TAG = 0, 1

# ----------------------------------------------------------------------------- cue distributions
# name -> (low, high) clip range
VIDEO_CUES: dict[str, tuple[float, float]] = {
    "brow_raise": (-1.0, 1.0),  # brow height: -1 lowered .. +1 raised
    "brow_tilt": (-1.0, 1.0),  # inner corners: -1 pulled down/together (V) .. +1 lifted (sad/fear)
    "eye_open": (0.0, 1.0),  # 0 squeezed .. 1 wide
    "mouth_curve": (-1.0, 1.0),  # -1 frown .. +1 smile
    "mouth_open": (0.0, 1.0),
    "mouth_width": (0.0, 1.0),  # 0 narrow/pursed .. 1 stretched
    "nose_wrinkle": (0.0, 1.0),
    "head_amp": (0.0, 1.0),  # amplitude of the head move
}
AUDIO_CUES: dict[str, tuple[float, float]] = {
    "pitch": (-9.0, 11.0),  # semitones above the style's base F0
    "pitch_range": (0.5, 12.0),  # semitones of contour excursion
    "energy": (-15.0, 13.0),  # dB relative to the reference level
    "rate": (1.8, 8.0),  # syllables / s
    "breathiness": (0.0, 1.0),
    "jitter": (0.0, 1.0),
    "harshness": (0.0, 1.0),
}
VIDEO_SD: dict[str, float] = {
    "brow_raise": 0.38,
    "brow_tilt": 0.38,
    "eye_open": 0.18,
    "mouth_curve": 0.38,
    "mouth_open": 0.18,
    "mouth_width": 0.18,
    "nose_wrinkle": 0.23,
    "head_amp": 0.23,
}
AUDIO_SD: dict[str, float] = {
    "pitch": 2.5,
    "pitch_range": 2.3,
    "energy": 3.7,
    "rate": 0.98,
    "breathiness": 0.23,
    "jitter": 0.23,
    "harshness": 0.23,
}
# class -> cue -> mean (same column order as VIDEO_CUES / AUDIO_CUES)
_V_COLS = tuple(VIDEO_CUES)
_A_COLS = tuple(AUDIO_CUES)
_V_TABLE = {  # brow_raise brow_tilt eye_open curve open width wrinkle head_amp
    "happy": (0.10, 0.00, 0.42, 0.80, 0.35, 0.80, 0.05, 0.50),
    "sad": (-0.15, 0.65, 0.35, -0.60, 0.05, 0.40, 0.05, 0.25),
    "neutral": (0.00, 0.00, 0.55, 0.00, 0.05, 0.50, 0.02, 0.20),
    "angry": (-0.75, -0.75, 0.50, -0.35, 0.20, 0.35, 0.30, 0.60),
    "surprise": (0.80, 0.10, 0.92, 0.05, 0.80, 0.30, 0.02, 0.50),
    "disgust": (-0.45, -0.35, 0.30, -0.50, 0.20, 0.55, 0.75, 0.45),
    "fear": (0.55, 0.60, 0.85, -0.30, 0.50, 0.85, 0.05, 0.60),
}
_A_TABLE = {  # pitch range energy rate breath jitter harsh
    "happy": (3.5, 6.0, 3.0, 5.0, 0.15, 0.10, 0.15),
    "sad": (-2.5, 2.0, -6.0, 3.0, 0.50, 0.30, 0.10),
    "neutral": (0.0, 2.0, -2.0, 4.0, 0.15, 0.10, 0.10),
    "angry": (2.0, 4.0, 7.0, 5.5, 0.10, 0.25, 0.75),
    "surprise": (5.0, 8.0, 3.0, 4.5, 0.30, 0.15, 0.20),
    "disgust": (-1.5, 3.5, 0.0, 3.3, 0.30, 0.20, 0.55),
    "fear": (5.5, 3.5, 1.0, 6.0, 0.55, 0.70, 0.30),
}
VIDEO_MEANS: dict[str, dict[str, float]] = {c: dict(zip(_V_COLS, _V_TABLE[c])) for c in CLASSES}
AUDIO_MEANS: dict[str, dict[str, float]] = {c: dict(zip(_A_COLS, _A_TABLE[c])) for c in CLASSES}
HEAD_MOVE_P: dict[str, dict[str, float]] = {  # still nod shake tremble
    "happy": {"still": 0.3, "nod": 0.5, "shake": 0.1, "tremble": 0.1},
    "sad": {"still": 0.6, "nod": 0.2, "shake": 0.1, "tremble": 0.1},
    "neutral": {"still": 0.7, "nod": 0.1, "shake": 0.1, "tremble": 0.1},
    "angry": {"still": 0.3, "nod": 0.2, "shake": 0.4, "tremble": 0.1},
    "surprise": {"still": 0.4, "nod": 0.3, "shake": 0.1, "tremble": 0.2},
    "disgust": {"still": 0.3, "nod": 0.1, "shake": 0.5, "tremble": 0.1},
    "fear": {"still": 0.2, "nod": 0.1, "shake": 0.2, "tremble": 0.5},
}
CONTOUR_P: dict[str, dict[str, float]] = {  # rising falling flat rise-fall
    "happy": {"rising": 0.3, "falling": 0.1, "flat": 0.1, "rise-fall": 0.5},
    "sad": {"rising": 0.05, "falling": 0.6, "flat": 0.3, "rise-fall": 0.05},
    "neutral": {"rising": 0.05, "falling": 0.35, "flat": 0.5, "rise-fall": 0.1},
    "angry": {"rising": 0.05, "falling": 0.55, "flat": 0.15, "rise-fall": 0.25},
    "surprise": {"rising": 0.65, "falling": 0.05, "flat": 0.05, "rise-fall": 0.25},
    "disgust": {"rising": 0.05, "falling": 0.45, "flat": 0.2, "rise-fall": 0.3},
    "fear": {"rising": 0.45, "falling": 0.15, "flat": 0.25, "rise-fall": 0.15},
}
# class-independent "gives little away" distributions: cue -> (mean, sd, low, high); low/high keep
# every draw inside the neutral description bins of emorl.data.synthetic.traces
FLAT_VIDEO: dict[str, tuple[float, float, float, float]] = {
    "brow_raise": (0.0, 0.1, -0.3, 0.3),
    "brow_tilt": (0.0, 0.1, -0.3, 0.3),
    "eye_open": (0.55, 0.06, 0.4, 0.7),
    "mouth_curve": (0.0, 0.1, -0.3, 0.3),
    "mouth_open": (0.06, 0.04, 0.0, 0.25),
    "mouth_width": (0.5, 0.07, 0.35, 0.65),
    "nose_wrinkle": (0.03, 0.05, 0.0, 0.3),
    "head_amp": (0.15, 0.07, 0.0, 0.35),
}
FLAT_AUDIO: dict[str, tuple[float, float, float, float]] = {
    "pitch": (0.5, 0.8, -1.4, 2.4),
    "pitch_range": (1.3, 0.3, 0.5, 1.9),
    "energy": (-1.0, 1.3, -3.5, 3.5),
    "rate": (4.1, 0.3, 3.5, 4.9),
    "breathiness": (0.1, 0.06, 0.0, 0.3),
    "jitter": (0.1, 0.06, 0.0, 0.3),
    "harshness": (0.1, 0.06, 0.0, 0.3),
}
FLAT_HEAD_MOVE = "still"
FLAT_CONTOUR = "flat"


# ----------------------------------------------------------------------------- sampling


def _r4(x: float) -> float:
    return round(float(x), 4)


def _choice(probs: Mapping[str, float], rng: np.random.Generator) -> str:
    keys = list(probs)
    p = np.asarray([probs[k] for k in keys], float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def cue_mean(modality: str, label: str, cue: str, intensity: float) -> float:
    """Mean of a continuous cue: the neutral mean moved ``intensity`` of the way to the label's mean."""
    means = VIDEO_MEANS if modality == "video" else AUDIO_MEANS
    base = means["neutral"][cue]
    return base + intensity * (means[label][cue] - base)


def _draw_cues(modality: str, label: str | None, intensity: float, rng: np.random.Generator) -> dict[str, Any]:
    if modality == "video":
        ranges, sds, flat = VIDEO_CUES, VIDEO_SD, FLAT_VIDEO
    else:
        ranges, sds, flat = AUDIO_CUES, AUDIO_SD, FLAT_AUDIO
    out: dict[str, Any] = {}
    for cue, (lo, hi) in ranges.items():
        if label is None:
            m, s, lo, hi = flat[cue]
        else:
            m, s = cue_mean(modality, label, cue, intensity), sds[cue]
        out[cue] = _r4(np.clip(rng.normal(m, s), lo, hi))
    return out


def draw_intensity(rng: np.random.Generator) -> float:
    """Expression intensity of one modality, uniform on ``INTENSITY`` (latent, class independent)."""
    return _r4(rng.uniform(*INTENSITY))


def draw_video_cues(label: str | None, rng: np.random.Generator, intensity: float = 1.0) -> dict[str, Any]:
    """Face cues for ``label`` at ``intensity``, or from ``FLAT_VIDEO`` when ``label`` is None.

    Continuous cues are clipped Gaussians (rounded to 4 dp); ``head_move`` is categorical.
    """
    out = _draw_cues("video", label, intensity, rng)
    out["head_move"] = FLAT_HEAD_MOVE if label is None else _choice(HEAD_MOVE_P[label], rng)
    return out


def draw_audio_cues(label: str | None, rng: np.random.Generator, intensity: float = 1.0) -> dict[str, Any]:
    """Voice cues for ``label`` at ``intensity``, or from ``FLAT_AUDIO`` when ``label`` is None."""
    out = _draw_cues("audio", label, intensity, rng)
    out["pitch_contour"] = FLAT_CONTOUR if label is None else _choice(CONTOUR_P[label], rng)
    return out


@dataclass
class ClipSpec:
    """Everything that determines one clip; rendering it is a pure function of this spec."""

    id: str
    split: str
    index: int
    label: str
    informative: str
    style: str
    n_frames: int
    fps: int
    seed: list[int]
    video: dict[str, Any] = field(default_factory=dict)
    audio: dict[str, Any] = field(default_factory=dict)
    intensity: dict[str, float | None] = field(default_factory=dict)  # latent; None = flat modality

    @property
    def duration(self) -> float:
        return self.n_frames / self.fps

    def meta(self) -> dict[str, Any]:
        """The manifest ``meta`` of this clip."""
        return {
            "informative": self.informative,
            "cues": {"video": dict(self.video), "audio": dict(self.audio)},
            "style": self.style,
            "duration": round(self.duration, 4),
            "seed": list(self.seed),
            "intensity": dict(self.intensity),
        }


def clip_id(split: str, index: int) -> str:
    return f"syn-{split}-{index:05d}"


def _check_split(split: str) -> None:
    if split not in SPLIT_CODES:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


def plan_split(seed: int, split: str, n: int) -> list[tuple[str, str]]:
    """(label, informative) for each of the ``n`` clips of a split.

    Labels are balanced (counts differ by at most one) and informative modalities follow
    ``INFORMATIVE`` as closely as ``n`` allows; both are shuffled by ``(seed, split)``.
    """
    _check_split(split)
    rng = np.random.default_rng([seed, SPLIT_CODES[split], _PLAN_TAG, 0])
    labels = [CLASSES[i % len(CLASSES)] for i in range(n)]
    counts = {k: math.floor(p * n) for k, p in INFORMATIVE.items()}
    rest = sorted(INFORMATIVE, key=lambda k: -(INFORMATIVE[k] * n - counts[k]))
    for k in rest[: n - sum(counts.values())]:
        counts[k] += 1
    modes = [k for k in INFORMATIVE for _ in range(counts[k])]
    lab_perm, mode_perm = rng.permutation(n), rng.permutation(n)
    return [(labels[int(lab_perm[i])], modes[int(mode_perm[i])]) for i in range(n)]


def clip_rngs(seed_list: list[int]) -> tuple[np.random.Generator, ...]:
    """Independent generators (cues, face, voice) of one clip from its seed list."""
    return tuple(np.random.default_rng(s) for s in np.random.SeedSequence(seed_list).spawn(3))


def make_spec(
    seed: int,
    split: str,
    index: int,
    label: str,
    informative: str,
    *,
    fps: int = 8,
    duration_range: tuple[float, float] = (2.0, 4.0),
) -> ClipSpec:
    """Draw one clip's duration and cues from ``(seed, split, index)``."""
    _check_split(split)
    if label not in CLASSES:
        raise ValueError(f"label {label!r} is not one of {CLASSES}")
    if informative not in INFORMATIVE:
        raise ValueError(f"informative must be one of {tuple(INFORMATIVE)}, got {informative!r}")
    seed_list = [int(seed), SPLIT_CODES[split], _CLIP_TAG, int(index)]
    rng = clip_rngs(seed_list)[0]
    lo_f, hi_f = math.ceil(duration_range[0] * fps - 1e-9), math.floor(duration_range[1] * fps + 1e-9)
    if hi_f < lo_f or lo_f < 1:
        raise ValueError(f"duration_range {duration_range} holds no whole number of frames at {fps} fps")
    n_frames = int(rng.integers(lo_f, hi_f + 1))
    v_label = label if informative in ("both", "video") else None
    a_label = label if informative in ("both", "audio") else None
    iv, ia = draw_intensity(rng), draw_intensity(rng)
    video = draw_video_cues(v_label, rng, iv)
    audio = draw_audio_cues(a_label, rng, ia)
    video["occluded"] = bool(informative == "audio" and rng.random() < OCCLUDED_P)
    video["blink"] = bool(rng.random() < BLINK_P)
    return ClipSpec(
        id=clip_id(split, index),
        split=split,
        index=index,
        label=label,
        informative=informative,
        style=SPLIT_STYLE[split],
        n_frames=n_frames,
        fps=fps,
        seed=seed_list,
        video=video,
        audio=audio,
        intensity={"video": iv if v_label else None, "audio": ia if a_label else None},
    )


def split_specs(
    seed: int, split: str, n: int, *, fps: int = 8, duration_range: tuple[float, float] = (2.0, 4.0)
) -> list[ClipSpec]:
    """All clip specs of one split (no rendering; cheap: ~0.3 ms a clip)."""
    return [
        make_spec(seed, split, i, lab, inf, fps=fps, duration_range=duration_range)
        for i, (lab, inf) in enumerate(plan_split(seed, split, n))
    ]


# ----------------------------------------------------------------------------- rendering


def render_clip(spec: ClipSpec, frame_size: int = 112) -> tuple[np.ndarray, np.ndarray]:
    """Render a spec: frames (T, frame_size, frame_size, 3) uint8 and audio (S,) float32 at 16 kHz."""
    if frame_size % 2 or frame_size < 16:
        raise ValueError(f"frame_size must be even and ≥ 16, got {frame_size}")
    _, rng_face, rng_voice = clip_rngs(spec.seed)
    fstyle, vstyle = facemod.FACE_STYLES[spec.style], voicemod.VOICE_STYLES[spec.style]
    app = facemod.sample_appearance(fstyle, rng_face)
    offsets = facemod.head_offsets(
        spec.video["head_move"], float(spec.video["head_amp"]), spec.n_frames, spec.fps, rng_face
    )
    blink = np.zeros(spec.n_frames, bool)
    if spec.video.get("blink"):
        blink[int(rng_face.integers(spec.n_frames))] = True
    frames = facemod.render_frames(spec.video, app, fstyle, offsets, blink, frame_size)
    speaker = voicemod.sample_speaker(vstyle, rng_voice)
    audio = voicemod.synth_voice(spec.audio, speaker, vstyle, spec.duration, rng_voice)
    return frames, audio


def _write_one(job: tuple[ClipSpec, str, int]) -> dict[str, Any]:
    """Worker: render and write one clip; returns its manifest row (absolute media path)."""
    from emorl.data.media import write_mp4

    spec, path, frame_size = job
    frames, audio = render_clip(spec, frame_size)
    write_mp4(path, frames, spec.fps, audio, voicemod.SAMPLE_RATE)
    return Sample(
        id=spec.id, media=path, label=spec.label, dataset=DATASET, split=spec.split, meta=spec.meta()
    ).to_json()


# ----------------------------------------------------------------------------- the world


def _jsonable(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def describe_world(
    seed: int, sizes: Mapping[str, int], frame_size: int, fps: int, duration_range: tuple[float, float]
) -> dict[str, Any]:
    """The JSON description of a generated world (parameters, not data)."""
    return {
        "generator": "emorl.data.synthetic",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "sizes": dict(sizes),
        "classes": list(CLASSES),
        "frame_size": frame_size,
        "fps": fps,
        "duration_range": list(duration_range),
        "sample_rate": voicemod.SAMPLE_RATE,
        "split_style": dict(SPLIT_STYLE),
        "informative": dict(INFORMATIVE),
        "occluded_p": OCCLUDED_P,
        "blink_p": BLINK_P,
        "intensity_range": list(INTENSITY),
        "cue_mean_rule": "mean = neutral_mean + intensity * (class_mean - neutral_mean); "
        "cue ~ clip(N(mean, sd), range)",
        "cues": {
            "video": {
                "ranges": {k: list(v) for k, v in VIDEO_CUES.items()},
                "sd": VIDEO_SD,
                "means": VIDEO_MEANS,
                "head_move_p": HEAD_MOVE_P,
                "flat": {k: list(v) for k, v in FLAT_VIDEO.items()},
                "flat_head_move": FLAT_HEAD_MOVE,
            },
            "audio": {
                "ranges": {k: list(v) for k, v in AUDIO_CUES.items()},
                "sd": AUDIO_SD,
                "means": AUDIO_MEANS,
                "contour_p": CONTOUR_P,
                "flat": {k: list(v) for k, v in FLAT_AUDIO.items()},
                "flat_contour": FLAT_CONTOUR,
            },
        },
        "styles": {
            name: {
                "face": _jsonable(facemod.FACE_STYLES[name].__dict__),
                "voice": _jsonable(voicemod.VOICE_STYLES[name].__dict__),
            }
            for name in sorted(set(SPLIT_STYLE.values()))
        },
    }


def synthesize(
    out_dir: str | os.PathLike,
    seed: int = 0,
    sizes: Mapping[str, int] | None = None,
    *,
    frame_size: int = 112,
    fps: int = 8,
    duration_range: tuple[float, float] = (2.0, 4.0),
    workers: int = 1,
    progress: bool = True,
) -> dict[str, Path]:
    """Generate the world into ``out_dir``; returns {split: manifest path}.

    Writes ``clips/<split>/<id>.mp4`` (H.264 + AAC 16 kHz mono), ``<split>.jsonl`` (media paths
    relative to ``out_dir``) and ``world.json``. ``sizes`` maps split -> clip count (splits not
    named are skipped; None means ``DEFAULT_SIZES``). Same arguments ⇒ byte-identical files,
    whatever ``workers``.
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    sizes = dict(DEFAULT_SIZES if sizes is None else sizes)
    for split, n in sizes.items():
        _check_split(split)
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"size of split {split!r} must be a non-negative int, got {n!r}")
    if frame_size % 2 or frame_size < 16:
        raise ValueError(f"frame_size must be even and ≥ 16, got {frame_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs: list[tuple[ClipSpec, str, int]] = []
    for split in SPLITS:
        for spec in split_specs(seed, split, sizes.get(split, 0), fps=fps, duration_range=duration_range):
            jobs.append((spec, str(out / "clips" / split / f"{spec.id}.mp4"), frame_size))
    rows = _run_jobs(jobs, workers, progress)
    manifests: dict[str, Path] = {}
    for split in SPLITS:
        if not sizes.get(split):
            continue
        samples = [Sample(**r) for r in rows if r["split"] == split]
        path = out / f"{split}.jsonl"
        write_manifest(path, samples, relative_to=out)
        manifests[split] = path
    atomic_write_json(out / "world.json", describe_world(seed, sizes, frame_size, fps, duration_range))
    return manifests


def _run_jobs(jobs: list[tuple[ClipSpec, str, int]], workers: int, progress: bool) -> list[dict[str, Any]]:
    """Run ``_write_one`` over jobs in order, with a process pool when ``workers > 1``."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc="synthesize", unit="clip", disable=not progress)
    rows: list[dict[str, Any]] = []
    try:
        if workers > 1 and len(jobs) > 1:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")  # safe even when the caller has threads (torch)
            with ctx.Pool(min(workers, len(jobs))) as pool:
                for row in pool.imap(_write_one, jobs, chunksize=4):
                    rows.append(row)
                    bar.update(1)
        else:
            for job in jobs:
                rows.append(_write_one(job))
                bar.update(1)
    finally:
        bar.close()
    return rows
