"""Media I/O with PyAV: uniformly sampled frames and a 16 kHz mono audio track, and writers.

Decoding never substitutes data silently. A file that cannot be decoded raises ``MediaError``
with an ``outcome`` code; a missing audio track is either an error (``on_missing_audio="error"``,
the default) or, when configured, silence that is recorded in ``Clip.notes`` so it can be counted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from emorl.data.images import IMAGE_EXTS, ImageLimits, load_image
from emorl.data.mediafile import MediaError, is_lfs_pointer

VIDEO_EXTS = {".mp4", ".avi", ".flv", ".mkv", ".mov", ".webm"}
AUDIO_EXTS = {".wav", ".mp3", ".flac", ".m4a", ".ogg"}
SAMPLE_RATE = 16_000


@dataclass
class Clip:
    """Decoded media of one sample.

    frames: (T, H, W, 3) uint8 or None; audio: (S,) float32 at ``sample_rate`` or None.
    notes: what was substituted, e.g. ``["no_audio:silence"]``; empty when the media was used as is.
    flags: why the media are degenerate (``MediaLimits``): few_frames, short, small; empty when fine.
    fps: frames per second of the clip's time that ``frames`` stand for (T / duration, or the
    family's own rate under native sampling); 0 when unknown (a still image, no duration).
    """

    frames: np.ndarray | None
    audio: np.ndarray | None
    sample_rate: int = SAMPLE_RATE
    duration: float = 0.0
    source_frames: int = 0
    notes: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    fps: float = 0.0


@dataclass(frozen=True)
class MediaLimits:
    """Thresholds below which decoded media are flagged as degenerate rather than silently used:
    the frame sampler would repeat frames of a clip with fewer than ``min_frames`` decoded frames,
    and the resizer would upscale a frame whose shorter side is below ``min_side`` pixels. 0
    disables a check. Flags never stop decoding; ``data.exclude_flagged`` drops flagged samples."""

    min_frames: int = 4
    min_seconds: float = 0.3
    min_side: int = 32

    def flags(self, *, source_frames: int, duration: float, side: int | None, still: bool = False) -> list[str]:
        """few_frames / short / small, for what was decoded (frame checks only when frames were, and
        for a ``still`` image only its size)."""
        out = []
        if side is not None and not still and self.min_frames and source_frames < self.min_frames:
            out.append("few_frames")
        if self.min_seconds and duration and duration < self.min_seconds:
            out.append("short")
        if side is not None and self.min_side and side < self.min_side:
            out.append("small")
        return out


class ClipCache:
    """Decoded clips kept for reuse across every ``PromptBuilder`` of a process, so a pipeline
    that trains and evaluates several models on the same clips (the demo) decodes each file once,
    not once per stage. Least recently used clips are evicted beyond ``max_bytes``.

    Only regular files are cached, keyed by their resolved path, size and modification time (and
    the audio file's) plus every decoding setting, so a rewritten file is decoded again. Frame
    folders are never cached (a folder's mtime does not change when an image is rewritten in
    place). Callers must not modify a clip's arrays in place (the processors copy them: uint8
    frames become float tensors); they are not flagged read-only because torch warns on those.
    """

    def __init__(self, max_bytes: int):
        from collections import OrderedDict

        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, Clip] = OrderedDict()
        self.bytes = 0
        self.hits = self.misses = 0

    @staticmethod
    def key(path, audio_path, settings: tuple) -> tuple | None:
        parts = []
        for p in (path, audio_path):
            if p is None:
                parts.append(None)
                continue
            p = Path(p)
            if not p.is_file():
                return None
            st = p.stat()
            parts.append((str(p.resolve()), st.st_size, st.st_mtime_ns))
        return (*parts, *settings)

    @staticmethod
    def _size(c: Clip) -> int:
        return sum(a.nbytes for a in (c.frames, c.audio) if a is not None)

    def get(self, key: tuple) -> Clip | None:
        c = self._items.get(key)
        if c is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return c

    def put(self, key: tuple, clip: Clip) -> None:
        size = self._size(clip)
        if size > self.max_bytes or key in self._items:
            return
        self._items[key] = clip
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, old = self._items.popitem(last=False)
            self.bytes -= self._size(old)


def _default_cache() -> ClipCache:
    """The process-wide cache: ``EMORL_CLIP_CACHE_MB`` megabytes (default 3072; 0 disables)."""
    raw = os.environ.get("EMORL_CLIP_CACHE_MB", "3072")
    try:
        mb = int(raw)
    except ValueError:
        raise ValueError(f"EMORL_CLIP_CACHE_MB must be an integer number of megabytes, got {raw!r}") from None
    return ClipCache(mb * 2**20)


CLIP_CACHE: ClipCache | None = None


def clip_cache() -> ClipCache:
    global CLIP_CACHE
    if CLIP_CACHE is None:
        CLIP_CACHE = _default_cache()
    return CLIP_CACHE


def segment_middles(n_total: int, n_sample: int) -> list[int]:
    """Indices of the middle frame of ``n_sample`` equal segments of ``n_total`` frames.

    >>> segment_middles(16, 4)
    [2, 6, 10, 14]
    >>> segment_middles(3, 4)   # short clips repeat frames rather than invent them
    [0, 1, 1, 2]
    """
    if n_total <= 0:
        raise ValueError("no frames to sample from")
    return [min(n_total - 1, int((i + 0.5) * n_total / n_sample)) for i in range(n_sample)]


def _natural_key(p: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]


def _resize(frames: np.ndarray, size: int | tuple[int, int] | None, resample: str = "bilinear") -> np.ndarray:
    """Frames resized to ``size``² (an int) or ``size`` = (height, width); None keeps them."""
    if size is None:
        return frames
    h, w = (size, size) if isinstance(size, int) else size
    if frames.shape[1] == h and frames.shape[2] == w:
        return frames
    from PIL import Image

    mode = Image.BICUBIC if resample == "bicubic" else Image.BILINEAR
    return np.stack([np.asarray(Image.fromarray(f).resize((w, h), mode)) for f in frames])


# plan(total decoded frames, their rate or None for a frame folder, height, width) -> FramePlan
# (emorl.models.adapter: indices, size or None, rate of the kept frames): a family's native sampling
FramePlanner = Callable[[int, "float | None", int, int], Any]


def _pick(n_total: int, num_frames: int, fps: float | None, hw: tuple[int, int], plan: FramePlanner | None):
    """(indices, size to resize to or None, rate of the kept frames or None when unknown here)."""
    if plan is None:
        return segment_middles(n_total, num_frames), None, None
    p = plan(n_total, fps, *hw)
    if not p.indices or min(p.indices) < 0 or max(p.indices) >= n_total:
        raise ValueError(f"frame plan indices {p.indices[:4]}... outside 0..{n_total - 1}")
    return list(p.indices), p.size, p.fps


def _decode_video(path: Path, num_frames: int, plan: FramePlanner | None = None):
    """(frames, duration s, decoded frame count, size to resize to or None, rate of the kept frames)."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise MediaError(path, "no_video", "file has no video stream")
        stream = container.streams.video[0]
        all_frames = [fr.to_ndarray(format="rgb24") for fr in container.decode(stream)]
        duration = float(container.duration / 1e6) if container.duration else 0.0
        rate = float(stream.average_rate) if stream.average_rate else None
    if not all_frames:
        raise MediaError(path, "empty", "video stream decoded to zero frames")
    if rate is None and duration:
        rate = len(all_frames) / duration
    idx, size, fps = _pick(len(all_frames), num_frames, rate, all_frames[0].shape[:2], plan)
    return np.stack([all_frames[i] for i in idx]), duration, len(all_frames), size, fps


def _decode_frame_dir(path: Path, num_frames: int, plan: FramePlanner | None = None):
    """(frames, decoded frame count, size to resize to or None, rate of the kept frames or None)."""
    from PIL import Image

    files = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS), key=_natural_key)
    if not files:
        raise MediaError(path, "empty", "frame folder holds no images")
    with Image.open(files[0]) as first:
        hw = (first.height, first.width)
    idx, size, fps = _pick(len(files), num_frames, None, hw, plan)
    frames = [np.asarray(Image.open(files[i]).convert("RGB")) for i in idx]
    h, w = frames[0].shape[:2]
    frames = [f if f.shape[:2] == (h, w) else np.asarray(Image.fromarray(f).resize((w, h))) for f in frames]
    return np.stack(frames), len(files), size, fps


def is_image(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a still-image file (a photo sample, not a frame folder or a video)."""
    return Path(path).suffix.lower() in IMAGE_EXTS and not Path(path).is_dir()


def _decode_image(path: Path) -> tuple[np.ndarray, list[str]]:
    """One still image as a (1, H, W, 3) frame, decoded by ``emorl.data.images.load_image`` (its
    outcomes, and its notes such as ``grayscale_to_rgb``); flags are the caller's (MediaLimits)."""
    got = load_image(path, ImageLimits(min_side=0))
    return np.array(got.image)[None], got.notes  # a writable copy (the processors make tensors of it)


def decode_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray | None:
    """The first audio stream of ``path`` as mono float32 at ``sample_rate``; None if it has none."""
    import av

    path = Path(path)
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks = []
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
        dur = stream.duration * stream.time_base if stream.duration else None
    audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if dur:  # AAC pads the last frame: trim to the stream's declared duration
        audio = audio[: round(float(dur) * sample_rate)]
    return audio


def load_clip(
    path: str | os.PathLike,
    *,
    num_frames: int = 8,
    size: int | None = None,
    audio_path: str | os.PathLike | None = None,
    want_video: bool = True,
    want_audio: bool = True,
    on_missing_audio: str = "error",
    min_audio_seconds: float = 0.1,
    sample_rate: int = SAMPLE_RATE,
    limits: MediaLimits | None = None,
    plan: FramePlanner | None = None,
) -> Clip:
    """Decode one sample: ``num_frames`` frames at segment middles (resized to ``size``² if
    given) and its audio as mono at ``sample_rate`` (16 kHz). A still image (``is_image``) decodes to
    its one frame (T = 1, duration 0) and has no audio track of its own.

    ``plan`` (a family's native sampling, ``OmniAdapter.native_video``) replaces ``num_frames`` and
    ``size`` for videos and frame folders: it is called with the decoded frame count, their rate
    (None for a frame folder), height and width, and says which frames to keep and the size to
    resize them to (bicubic; None: the decoded size). A still image keeps its size.

    ``on_missing_audio``: ``"error"`` raises MediaError(outcome="no_audio"); ``"silence"`` uses
    ``min_audio_seconds`` of zeros and records ``"no_audio:silence"`` in ``Clip.notes``;
    ``"skip"`` leaves ``audio=None`` and records ``"no_audio:skip"``. Degenerate media (``limits``,
    default ``MediaLimits()``) are flagged in ``Clip.flags``.
    """
    if on_missing_audio not in ("error", "silence", "skip"):
        raise ValueError(f"on_missing_audio must be error, silence or skip, got {on_missing_audio!r}")
    path = Path(path)
    if not path.exists():
        raise MediaError(path, "missing", "file not found")
    if path.is_file() and is_lfs_pointer(path):
        raise MediaError(path, "lfs_pointer", "Git-LFS pointer stub, not media: run `git lfs pull` in the dataset")
    if plan is not None and size is not None:
        raise ValueError("load_clip: a frame plan sets the size itself; size must be None with plan")
    frames, audio, duration, n_src, notes = None, None, 0.0, 0, []
    target, rate, resample = size, None, "bilinear"
    try:
        if path.is_dir():
            if want_video:
                frames, n_src, planned, rate = _decode_frame_dir(path, num_frames, plan)
                target = planned if plan is not None else size
        elif is_image(path):
            if want_video:
                (frames, image_notes), n_src = _decode_image(path), 1
                notes += image_notes
                target = None if plan is not None else size
        elif path.suffix.lower() in AUDIO_EXTS:
            if want_video:
                raise MediaError(path, "no_video", "an audio file cannot give video frames")
        elif want_video:
            frames, duration, n_src, planned, rate = _decode_video(path, num_frames, plan)
            target = planned if plan is not None else size
        if plan is not None:
            resample = "bicubic"  # qwen-vl-utils: bicubic with antialias (PIL's filter covers the whole support)
        if want_audio:
            src = Path(audio_path) if audio_path else path
            if src.is_dir() or is_image(src):
                audio = None
            else:
                if not src.exists():
                    raise MediaError(src, "missing", "audio file not found")
                audio = decode_audio(src, sample_rate)
            if audio is not None and len(audio) == 0:
                audio = None
            if audio is None:
                if on_missing_audio == "error":
                    raise MediaError(
                        src, "no_audio", "no audio track (set media.on_missing_audio to 'silence' or 'skip' to allow)"
                    )
                if on_missing_audio == "silence":
                    audio = np.zeros(int(min_audio_seconds * sample_rate), np.float32)
                notes.append(f"no_audio:{on_missing_audio}")
            elif not duration:
                duration = len(audio) / sample_rate
    except MediaError:
        raise
    except Exception as e:  # PyAV / PIL decoding failures
        raise MediaError(path, "unreadable", f"{type(e).__name__}: {e}") from e
    side = min(frames.shape[1:3]) if frames is not None else None
    flags = (limits or MediaLimits()).flags(
        source_frames=n_src, duration=duration, side=side, still=frames is not None and is_image(path)
    )
    if frames is not None:
        frames = _resize(frames, target, resample)
        if rate is None:
            rate = len(frames) / duration if duration else 0.0
    return Clip(
        frames=frames,
        audio=audio,
        sample_rate=sample_rate,
        duration=duration,
        source_frames=n_src,
        notes=notes,
        flags=flags,
        fps=float(rate or 0.0),
    )


def write_mp4(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: int,
    audio: np.ndarray | None = None,
    sample_rate: int = SAMPLE_RATE,
    *,
    crf: int = 23,
) -> None:
    """Write (T, H, W, 3) uint8 frames as H.264 (yuv420p) and optional mono float audio as AAC.

    The file is written under a temporary name and renamed, so a crash leaves no half file.
    Deterministic for the same inputs (single-threaded encoders, x264 without mbtree).
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"H.264 yuv420p needs even frame sizes, got {w}x{h}")
    try:
        with av.open(str(tmp), mode="w", format="mp4") as out:
            vs = out.add_stream("libx264", rate=fps)
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
            # no-mbtree: x264's macroblock-tree rate control gave different bytes for the same
            # frames on some CPUs (its assembly, run twice in one process); without it, and on one
            # thread, the output is a function of the input
            vs.options = {"crf": str(crf), "preset": "veryfast", "threads": "1", "x264-params": "no-mbtree=1"}
            vs.codec_context.thread_count = 1
            as_ = None
            if audio is not None:
                as_ = out.add_stream("aac", rate=sample_rate)
                as_.layout = "mono"
                as_.options = {"aac_coder": "fast"}  # ~2x faster encoding; output stays deterministic
            for i in range(t):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[i]), format="rgb24")
                frame.pts = i
                frame.time_base = Fraction(1, fps)
                for pkt in vs.encode(frame):
                    out.mux(pkt)
            for pkt in vs.encode():
                out.mux(pkt)
            if as_ is not None:
                a = np.clip(np.asarray(audio, np.float32), -1, 1).reshape(1, -1)
                step = 1024
                for start in range(0, a.shape[1], step):
                    af = av.AudioFrame.from_ndarray(
                        np.ascontiguousarray(a[:, start : start + step]), format="flt", layout="mono"
                    )
                    af.sample_rate = sample_rate
                    af.pts = start
                    af.time_base = Fraction(1, sample_rate)
                    for pkt in as_.encode(af):
                        out.mux(pkt)
                for pkt in as_.encode():
                    out.mux(pkt)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write mono float audio as 16-bit PCM WAV, atomically."""
    import soundfile as sf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.wav")
    try:
        sf.write(str(tmp), np.clip(np.asarray(audio, np.float32), -1, 1), sample_rate, subtype="PCM_16")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
