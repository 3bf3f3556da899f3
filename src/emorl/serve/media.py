"""Client media, checked and decoded in a separate process with resource limits that is killed
when it runs past its time, so a hostile file can neither hang nor crash the server.

Checks, in order (each failure is a ``ServeError`` with a 4xx status and a stable code):

1. the file name's extension is an accepted container (``settings.CONTAINERS``) or, when the
   model's family takes still images (``DecodeSpec.images``), an image (``settings.IMAGE_EXTS``);
   a still image for a model without image input: ``image_input``, others: ``unsupported_type``, 415;
2. libav opens it (``unreadable``, 422) and its demuxer is one the extension allows
   (``wrong_container``, 415: e.g. WAV bytes named ``.mp4``);
3. a video file has a video stream (``no_video``), an audio file an audio stream (``no_audio``);
4. the duration (header, else the demuxed timestamps) is at most ``max_seconds`` (``too_long``),
   a frame at most ``max_pixels`` (``frame_too_large``), and the frames decoded in memory (emorl
   decodes every frame, then samples ``data.num_frames``) at most ``max_decoded_mb``
   (``too_large_decoded``), estimated from the header before anything is decoded;
A still image is opened with PIL (``emorl.data.images``: ``unreadable`` when it cannot be read,
``frame_too_large`` past ``max_pixels``) and decoded to its one frame by the same ``load_clip``.

5. ``emorl.data.media.load_clip``, the decoding training and evaluation use, with the model's
   frames, frame size, missing-audio policy and degenerate-media flags (``MediaError`` outcomes
   become codes: ``no_audio``, ``empty`` (zero frames), ``unreadable``, ...).

The worker process (``multiprocessing`` forkserver: forked from a small process that never loaded
torch) runs with an address-space limit (``decode_memory_mb`` beyond its start) and a CPU-time
limit; one that does not answer within ``decode_timeout`` s is killed (``decode_timeout``, 422), one
whose allocation fails at the limit answers ``too_large_decoded`` (422), one that dies (a crash in
a codec) is reported as ``decode_failed`` (422).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
from dataclasses import dataclass
from pathlib import Path

from emorl.data.media import Clip, MediaLimits
from emorl.serve.settings import AUDIO_ONLY_EXTS, CONTAINERS, IMAGE_EXTS, ServeError

_PRELOAD = ["numpy", "av", "PIL.Image", "emorl.data.media", "emorl.serve.media"]


@dataclass(frozen=True)
class DecodeSpec:
    """How to decode (the model's run config) and the limits (the server's settings); picklable."""

    num_frames: int
    frame_size: int | None
    want_video: bool
    want_audio: bool
    on_missing_audio: str
    limits: MediaLimits
    max_seconds: float
    max_pixels: int
    max_decoded_bytes: int
    images: bool = False  # the model's family takes still images (``Modality.IMAGE``)


@dataclass
class Decoded:
    clip: Clip
    kind: str  # video | audio | image
    container: str
    width: int | None
    height: int | None


def _clean(msg: str, path: str, name: str) -> str:
    """A library message with the server-side path replaced by the client's name."""
    return msg.replace(str(path), name).replace(Path(path).name, name)


def check_name(name: str, images: bool = False) -> str:
    """The lower-case extension of a client's file name, if it is an accepted container (or, with
    ``images``, a still image's extension)."""
    ext = Path(name).suffix.lower()
    if ext in IMAGE_EXTS:
        if images:
            return ext
        raise ServeError(
            415,
            "image_input",
            f"{name}: still images are not an input of this server's model family; send a video clip or an audio file",
        )
    if ext not in CONTAINERS:
        raise ServeError(
            415,
            "unsupported_type",
            f"{name}: unsupported file type {ext or '(no extension)'!r}; accepted: {', '.join(sorted(CONTAINERS))}",
        )
    return ext


def _duration(container, streams) -> float | None:
    """Seconds from the header, else from demuxed packet timestamps (bounded: 200k packets)."""
    if container.duration:
        return container.duration / 1e6
    known = [float(s.duration * s.time_base) for s in streams if s.duration and s.time_base]
    if known:
        return max(known)
    end = 0.0
    for i, pkt in enumerate(container.demux(*streams)):
        if pkt.pts is not None and pkt.time_base:
            end = max(end, float((pkt.pts + (pkt.duration or 0)) * pkt.time_base))
        if i > 200_000:
            return None
    return end


def probe(path: str, name: str, spec: DecodeSpec) -> tuple[str, str, int | None, int | None]:
    """Checks 1-4 of the module docstring; returns (kind, demuxer, width, height)."""
    import av

    ext = check_name(name, spec.images)
    if ext in IMAGE_EXTS:
        w, h = probe_image(path, name, spec)
        return "image", "image", w, h
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except Exception as e:  # noqa: BLE001 - every libav failure means "not media we can read"
        raise ServeError(
            422, "unreadable", f"{name}: not a readable media file ({_clean(str(e), path, name)})"
        ) from None
    with container:
        fmt = container.format.name
        if fmt not in CONTAINERS[ext]:
            raise ServeError(
                415,
                "wrong_container",
                f"{name}: the file holds {fmt!r} data, not the {ext} container its "
                f"name says; send it with its own extension",
            )
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        kind = "audio" if ext in AUDIO_ONLY_EXTS else "video"
        if kind == "video" and video is None:
            raise ServeError(422, "no_video", f"{name}: the file has no video stream")
        if kind == "audio" and audio is None:
            raise ServeError(422, "no_audio", f"{name}: the file has no audio stream")
        seconds = _duration(container, [s for s in (video, audio) if s is not None])
        if seconds is None or seconds > spec.max_seconds:
            said = "of unknown length" if seconds is None else f"{seconds:.1f} s long"
            raise ServeError(
                422,
                "too_long",
                f"{name}: the clip is {said}; this server accepts clips of up to {spec.max_seconds:g} s",
            )
        w = h = None
        if kind == "video":
            w, h = video.codec_context.width, video.codec_context.height
            if w * h > spec.max_pixels:
                raise ServeError(
                    422,
                    "frame_too_large",
                    f"{name}: frames of {w}x{h} pixels; this server accepts up to {spec.max_pixels} pixels a frame",
                )
            rate = float(video.average_rate or video.guessed_rate or 30)
            frames = max(video.frames, int(seconds * rate) + 1)
            need = frames * w * h * 3
            if need > spec.max_decoded_bytes:
                raise ServeError(
                    422,
                    "too_large_decoded",
                    f"{name}: decoding needs about {need / 2**20:.0f} MB ({frames} frames of {w}x{h}); this "
                    f"server decodes at most {spec.max_decoded_bytes / 2**20:.0f} MB a clip: send a shorter "
                    f"or smaller clip",
                )
    return kind, fmt, w, h


def probe_image(path: str, name: str, spec: DecodeSpec) -> tuple[int, int]:
    """A still image's size from its header (nothing decoded yet), checked against ``max_pixels``.
    Whatever the extension says, PIL reads the bytes by content (as ``emorl data check`` does)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ServeError(422, "unreadable", f"{name}: not a readable image ({_clean(str(e), path, name)})") from None
    except Image.DecompressionBombError:
        w = h = spec.max_pixels + 1
    if w * h > spec.max_pixels:
        raise ServeError(
            422,
            "frame_too_large",
            f"{name}: an image of {w}x{h} pixels; this server accepts up to {spec.max_pixels} pixels a frame",
        )
    return w, h


_OUTCOMES = {
    "no_audio": "the clip has no audio track and the model takes audio (start the server with "
    "data.on_missing_audio=skip to answer from the video alone, or =silence)",
    "empty": "the video stream decodes to zero frames",
    "no_video": "the file has no video stream",
    "unreadable": "the media could not be decoded",
    "missing": "the file is gone",
    "lfs_pointer": "the file is a Git-LFS pointer stub, not media",
}


def decode_checked(path: str, name: str, spec: DecodeSpec) -> Decoded:
    """Probe, then decode with ``load_clip`` (in the calling process: the worker calls this)."""
    from emorl.data.media import MediaError, load_clip

    kind, fmt, w, h = probe(path, name, spec)
    try:
        clip = load_clip(
            path,
            num_frames=spec.num_frames,
            size=spec.frame_size,
            want_video=(spec.want_video and kind == "video") or kind == "image",
            want_audio=(spec.want_audio or kind == "audio") and kind != "image",
            on_missing_audio=spec.on_missing_audio,
            limits=spec.limits,
        )
    except MediaError as e:
        if isinstance(e.__cause__, MemoryError):  # the worker's address-space limit
            raise ServeError(
                422,
                "too_large_decoded",
                f"{name}: decoding needs more memory than this server allows a clip; send a shorter or smaller clip",
            ) from None
        detail = str(e).split(f": {e.outcome}: ", 1)[-1]
        msg = _OUTCOMES.get(e.outcome, e.outcome)
        if e.outcome == "unreadable":
            msg += f" ({_clean(detail, path, name)})"
        raise ServeError(422, e.outcome, f"{name}: {msg}") from None
    if clip.frames is None and clip.audio is None:
        raise ServeError(422, "empty", f"{name}: nothing the model can use was decoded")
    return Decoded(clip, kind, fmt, w, h)


def _vm_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _limit(memory_bytes: int, cpu_seconds: int) -> None:
    try:
        import resource
    except ImportError:  # not POSIX: the timeout still applies
        return
    resource.setrlimit(resource.RLIMIT_AS, (_vm_bytes() + memory_bytes,) * 2)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))


def _worker(conn, path: str, name: str, spec: DecodeSpec, memory_bytes: int, cpu_seconds: int) -> None:
    try:
        _limit(memory_bytes, cpu_seconds)
        conn.send(("ok", decode_checked(path, name, spec)))
    except ServeError as e:
        conn.send(("error", (e.status, e.code, e.message)))
    except MemoryError:
        conn.send(("error", (422, "too_large_decoded", f"{name}: decoding needs more memory than this server allows")))
    except BaseException as e:  # noqa: BLE001 - the answer must say what happened, never crash silently
        conn.send(
            (
                "error",
                (
                    422,
                    "decode_failed",
                    (f"{name}: decoding failed ({type(e).__name__}: {_clean(str(e), path, name)[:300]})"),
                ),
            )
        )
    finally:
        conn.close()


class Decoder:
    """Decodes one file per worker process (``decode``: blocking; call it from a thread).

    As with any multiprocessing start method other than fork, a worker imports the parent's main
    module: a script that builds a server itself must guard its entry point with
    ``if __name__ == "__main__":`` (``emorl serve`` and ``python -m emorl.cli`` are safe)."""

    def __init__(self, spec: DecodeSpec, *, timeout: float, memory_mb: float):
        self.spec = spec
        self.timeout = timeout
        self.memory_bytes = int(memory_mb * 2**20)
        method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        self.ctx = mp.get_context(method)
        if method == "forkserver":
            self.ctx.set_forkserver_preload(_PRELOAD)
        self.killed = 0

    def decode(self, path: str | os.PathLike, name: str) -> Decoded:
        parent, child = self.ctx.Pipe(duplex=False)
        p = self.ctx.Process(
            target=_worker,
            daemon=True,
            args=(child, str(path), name, self.spec, self.memory_bytes, int(self.timeout) + 2),
        )
        p.start()
        child.close()
        try:
            if not parent.poll(self.timeout):
                self.killed += 1
                raise ServeError(
                    422, "decode_timeout", f"{name}: decoding took longer than {self.timeout:g} s and was stopped"
                )
            try:
                status, value = parent.recv()
            except (EOFError, OSError):
                p.join(2)
                raise ServeError(
                    422,
                    "decode_failed",
                    f"{name}: the decoder stopped (exit code {p.exitcode}): the file is "
                    "malformed or needs more memory than this server allows",
                ) from None
        finally:
            if p.is_alive():
                p.kill()
            p.join(5)
            parent.close()
        if status == "error":
            raise ServeError(*value)
        return value

    def warm_up(self) -> None:
        """Start the forkserver now rather than on the first request."""
        p = self.ctx.Process(target=os.getpid, daemon=True)
        p.start()
        p.join(60)


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: str | None, default: str = "upload") -> str:
    """A client file name reduced to its last component and harmless characters (for messages and
    the temporary file's extension; never used to choose a server path)."""
    base = Path((name or "").replace("\\", "/")).name
    return _SAFE.sub("_", base)[:120] or default
