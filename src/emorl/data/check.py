"""Decode every sample of a manifest once and split it into usable rows and listed rejects.

``check_manifest`` runs ``load_clip`` on each sample in a process pool and writes::

    out_dir/clean.jsonl    the usable rows (a manifest, media paths relative to out_dir)
    out_dir/rejects.jsonl  one row per rejected sample: id, media, audio, dataset, label, outcome, reason
    out_dir/check.json     the summary: counts, outcomes, class histograms, durations, frame counts

Nothing is dropped without being listed. Usable but degenerate samples (too few decoded frames,
too short, too small: ``emorl.data.media.MediaLimits``) stay in ``clean.jsonl`` with their flags in
``meta.flags`` (an empty list when fine, so a checked row is recognisable) and are counted in
``check.json``; ``data.exclude_flagged=true`` drops them from training and evaluation. Whether audio is required is decided per sample from
``meta.modality``: ``"image"`` (a still image, decoded by ``emorl.data.images.load_image``: outcomes
missing, lfs_pointer, empty, unreadable, truncated, too_large; conversions such as
``grayscale_to_rgb`` or ``alpha_composited`` counted in ``notes``; ``images`` sums up formats, modes
and sizes), ``"video"`` (frame folders, FERV39k, DFEW frames, RAVDESS video-only) never needs
audio, ``"audio"`` never needs frames, anything else (``"audio+video"``, the default for video
files) needs both. Without ``meta.modality`` a frame folder counts as ``video``, an image file
(``emorl.data.images.IMAGE_EXTS``) as ``image`` and an audio file as ``audio``. Clip outcomes are ``MediaError`` codes: unreadable, no_video, no_audio, empty, lfs_pointer, missing.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import statistics
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from emorl.data.images import MAX_PIXELS, ImageLimits, check_image
from emorl.data.manifest import Sample, read_manifest, write_manifest
from emorl.data.media import AUDIO_EXTS, MediaError, MediaLimits, is_image, is_lfs_pointer, load_clip
from emorl.utils import atomic_write_json, atomic_write_text


@dataclass
class CheckReport:
    """Summary of one ``check_manifest`` run (also written as ``check.json``)."""

    manifest: str
    total: int
    usable: int
    rejected: int
    outcomes: dict[str, int]  # reject outcome -> count
    classes: dict[str, dict[str, int]]  # dataset -> label -> usable count
    rejected_classes: dict[str, dict[str, int]]  # dataset -> label -> rejected count
    duration_s: dict[str, float]  # min / median / mean / max over usable clips with a duration
    source_frames: dict[str, float]  # same, decoded frame counts
    notes: dict[str, int] = field(default_factory=dict)
    flags: dict[str, int] = field(default_factory=dict)  # degenerate-media flag -> count (usable rows)
    leakage: dict[str, Any] = field(default_factory=dict)  # shared clips / subjects between splits or manifests
    images: dict[str, Any] = field(default_factory=dict)  # usable images: formats, modes, shorter side
    clean_path: str = ""
    rejects_path: str = ""
    summary_path: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def sample_modality(sample: Sample) -> str:
    """``image``, ``video``, ``audio`` or ``audio+video``: from ``meta.modality``, else guessed from
    the media path (a still-image file: ``image``)."""
    mod = sample.meta.get("modality")
    if mod in ("image", "video", "audio", "audio+video"):
        return mod
    path = Path(sample.media)
    if is_image(path):
        return "image"
    if path.is_dir():
        return "video"
    if path.suffix.lower() in AUDIO_EXTS:
        return "audio"
    return "audio+video"


def check_sample(
    sample: Sample, num_frames: int = 8, limits: MediaLimits | None = None, max_image_pixels: int = MAX_PIXELS
) -> dict[str, Any]:
    """Decode one sample; ``{"ok": True, duration, source_frames, ...}`` or ``{"ok": False, outcome, reason}``.
    Images use ``limits.min_side`` for the ``small`` flag and ``max_image_pixels`` (0: PIL's own
    bomb threshold only) for ``too_large``."""
    modality = sample_modality(sample)
    if modality == "image":
        lim = ImageLimits(max_pixels=max_image_pixels, min_side=(limits or MediaLimits()).min_side)
        r = check_image(sample.media, lim)
        if r["ok"]:
            r.update(duration=0.0, source_frames=0, audio_s=0.0, modality=modality)
        return r
    want_video, want_audio = modality != "audio", modality != "video"
    if want_audio and sample.audio and is_lfs_pointer(sample.audio):
        return {
            "ok": False,
            "outcome": "lfs_pointer",
            "reason": f"{sample.audio}: Git-LFS pointer stub, not media: run `git lfs pull` in the dataset",
        }
    try:
        clip = load_clip(
            sample.media,
            num_frames=num_frames,
            audio_path=sample.audio if want_audio else None,
            want_video=want_video,
            want_audio=want_audio,
            on_missing_audio="error",
            limits=limits,
        )
    except MediaError as e:
        return {"ok": False, "outcome": e.outcome, "reason": str(e)}
    return {
        "ok": True,
        "duration": clip.duration,
        "source_frames": clip.source_frames,
        "audio_s": (len(clip.audio) / clip.sample_rate) if clip.audio is not None else 0.0,
        "notes": clip.notes,
        "flags": clip.flags,
        "modality": modality,
    }


def _check_task(task: tuple[Sample, int, MediaLimits | None, int]) -> dict[str, Any]:
    return check_sample(*task)


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "n": len(values),
        "min": min(values),
        "median": statistics.median(values),
        "mean": statistics.fmean(values),
        "max": max(values),
    }


def _run(
    samples: list[Sample],
    workers: int,
    num_frames: int,
    limits: MediaLimits | None,
    progress: bool,
    max_image_pixels: int = MAX_PIXELS,
) -> list[dict[str, Any]]:
    from tqdm import tqdm

    tasks = [(s, num_frames, limits, max_image_pixels) for s in samples]
    bar = tqdm(total=len(tasks), desc="check", unit="clip", disable=not progress)
    try:
        if workers <= 1:
            results = []
            for t in tasks:
                results.append(_check_task(t))
                bar.update()
            return results
        chunk = max(1, min(32, len(tasks) // (workers * 8)))
        ctx = multiprocessing.get_context("spawn")  # safe beside threads (torch, tqdm) in the parent
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            results = []
            for r in pool.map(_check_task, tasks, chunksize=chunk):
                results.append(r)
                bar.update()
            return results
    finally:
        bar.close()


def check_manifest(
    manifest_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    workers: int = 2,
    num_frames: int = 8,
    limits: MediaLimits | None = None,
    against: list[str] = (),
    progress: bool = True,
    max_image_pixels: int = MAX_PIXELS,
) -> CheckReport:
    """Decode every sample of ``manifest_path``; write clean.jsonl, rejects.jsonl and check.json to
    ``out_dir``. Leakage is checked between the manifest's training rows and its other splits, and
    against each manifest of ``against`` (their evaluation rows). ``max_image_pixels``: images with
    more pixels are ``too_large`` rejects."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    samples = read_manifest(manifest_path)
    results = _run(samples, workers, num_frames, limits, progress, max_image_pixels)

    clean: list[Sample] = []
    reject_rows: list[dict[str, Any]] = []
    classes: dict[str, Counter] = {}
    rejected_classes: dict[str, Counter] = {}
    durations, frames, notes, flags = [], [], Counter(), Counter()
    formats, modes, sides = Counter(), Counter(), []
    for s, r in zip(samples, results, strict=True):
        if r["ok"]:
            clean.append(Sample(**{**s.__dict__, "meta": {**s.meta, "flags": r["flags"]}}))
            flags.update(r["flags"])
            classes.setdefault(s.dataset, Counter())[s.label] += 1
            if r["duration"]:
                durations.append(r["duration"])
            if r["source_frames"]:
                frames.append(r["source_frames"])
            notes.update(r["notes"])
            if r["modality"] == "image":
                formats[r["format"]] += 1
                modes[r["mode"]] += 1
                sides.append(min(r["width"], r["height"]))
        else:
            rejected_classes.setdefault(s.dataset, Counter())[s.label] += 1
            reject_rows.append(
                {
                    "id": s.id,
                    "media": s.media,
                    "audio": s.audio,
                    "dataset": s.dataset,
                    "label": s.label,
                    "split": s.split,
                    "fold": s.fold,
                    "outcome": r["outcome"],
                    "reason": r["reason"],
                }
            )

    clean_path, rejects_path, summary_path = out / "clean.jsonl", out / "rejects.jsonl", out / "check.json"
    write_manifest(clean_path, clean, relative_to=out)
    atomic_write_text(rejects_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in reject_rows))
    report = CheckReport(
        manifest=str(manifest_path),
        total=len(samples),
        usable=len(clean),
        rejected=len(reject_rows),
        outcomes=dict(Counter(r["outcome"] for r in reject_rows)),
        classes={d: dict(sorted(c.items())) for d, c in sorted(classes.items())},
        rejected_classes={d: dict(sorted(c.items())) for d, c in sorted(rejected_classes.items())},
        duration_s=_stats(durations),
        source_frames=_stats(frames),
        notes=dict(notes),
        flags=dict(flags),
        leakage=leakage_summary(samples, against),
        images={"formats": dict(formats.most_common()), "modes": dict(modes.most_common()), "min_side": _stats(sides)}
        if sides
        else {},
        clean_path=str(clean_path),
        rejects_path=str(rejects_path),
        summary_path=str(summary_path),
    )
    atomic_write_json(summary_path, report.to_json())
    return report


def leakage_summary(samples: list[Sample], against: list[str]) -> dict[str, Any]:
    """Shared clips and subjects (a) between the training rows and the other splits of each fold of
    the manifest itself (a fold's train and test must be disjoint), and (b) between the manifest's
    training rows (``train``, or every row when it has none) and each ``against`` manifest's
    evaluation rows."""
    from emorl.data.leakage import find_leakage
    from emorl.data.manifest import select_split

    clips: list[dict] = []
    subjects: dict[str, list[str]] = {}
    for fold in sorted({s.fold for s in samples}, key=lambda f: (f is None, f or 0)):
        rows = [s for s in samples if s.fold == fold]
        train, others = [s for s in rows if s.split == "train"], [s for s in rows if s.split != "train"]
        if train and others:
            found = find_leakage(train, {f"(fold {fold}: other splits)": others})
            clips += [o.__dict__ for o in found.clips]
            subjects.update(found.subjects)
    train = [s for s in samples if s.split == "train"] or samples
    for path in against:
        rows = select_split(read_manifest(path), "", default="test", source=str(path), key="--against split")
        found = find_leakage(train, {str(path): rows})
        clips += [o.__dict__ for o in found.clips]
        subjects.update(found.subjects)
    return {"shared_clips": clips, "shared_subjects": subjects, "against": [str(p) for p in against]}
