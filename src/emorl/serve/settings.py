"""Server settings: network, limits, batching. Model and inference settings come from the model's
saved run config (``emorl.config.config_for_model``), not from here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# accepted uploads: file extension -> the libav demuxers whose data it may hold ("wrong container"
# otherwise: e.g. WAV bytes named .mp4)
CONTAINERS: dict[str, tuple[str, ...]] = {
    ".mp4": ("mov,mp4,m4a,3gp,3g2,mj2",),
    ".mov": ("mov,mp4,m4a,3gp,3g2,mj2",),
    ".m4v": ("mov,mp4,m4a,3gp,3g2,mj2",),
    ".mkv": ("matroska,webm",),
    ".webm": ("matroska,webm",),
    ".avi": ("avi",),
    ".flv": ("flv",),
    ".wav": ("wav",),
    ".mp3": ("mp3",),
    ".flac": ("flac",),
    ".ogg": ("ogg",),
    ".m4a": ("mov,mp4,m4a,3gp,3g2,mj2",),
}
AUDIO_ONLY_EXTS = {".wav", ".mp3", ".flac", ".ogg", ".m4a"}
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}


@dataclass
class ServeSettings:
    """What ``emorl serve`` flags set (defaults in parentheses are the flags' defaults).

    Network: ``host`` (127.0.0.1: this machine only), ``port``, ``token`` (bearer token; None: no
    auth), ``media_root`` (JSON requests may name files under it; None: uploads only).
    Limits: ``max_upload_mb`` per file, ``max_seconds`` of a clip, ``max_pixels`` of a frame,
    ``max_decoded_mb`` (frames decoded in memory, estimated from the header before decoding),
    ``decode_timeout`` s and ``decode_memory_mb`` of the decoding process, ``max_batch_items``
    files per batch request.
    Batching: ``max_batch`` clips per model call (1 = batching off), ``batch_wait_ms`` to wait for
    more clips once one is queued, ``queue_size`` admitted requests at most (more: 503),
    ``timeout`` s per request from arrival to answer (504 past it).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    media_root: Path | None = None
    max_upload_mb: float = 64.0
    max_seconds: float = 60.0
    max_pixels: int = 1920 * 1088
    max_decoded_mb: float = 4096.0
    decode_timeout: float = 30.0
    decode_memory_mb: float = 6144.0
    decode_workers: int = 2
    max_batch_items: int = 16
    max_batch: int = 8
    batch_wait_ms: float = 20.0
    queue_size: int = 64
    timeout: float = 120.0

    def __post_init__(self) -> None:
        checks = {
            "max_upload_mb": self.max_upload_mb > 0,
            "max_seconds": self.max_seconds > 0,
            "max_pixels": self.max_pixels > 0,
            "max_decoded_mb": self.max_decoded_mb > 0,
            "decode_timeout": self.decode_timeout > 0,
            "decode_memory_mb": self.decode_memory_mb >= 256,
            "decode_workers": self.decode_workers >= 1,
            "max_batch_items": self.max_batch_items >= 1,
            "max_batch": self.max_batch >= 1,
            "batch_wait_ms": self.batch_wait_ms >= 0,
            "queue_size": self.queue_size >= 1,
            "timeout": self.timeout > 0,
            "port": 0 <= self.port < 65536,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(
                f"serve settings out of range: {', '.join(f'{k}={getattr(self, k)!r}' for k in bad)} "
                "(sizes and times must be positive, decode_memory_mb >= 256, counts >= 1)"
            )
        if self.media_root is not None:
            root = Path(self.media_root).expanduser()
            if not root.is_dir():
                raise FileNotFoundError(f"--media-root {root}: no such directory")
            self.media_root = root.resolve()
        if self.token is not None and len(self.token) < 16:
            raise ValueError(
                "the bearer token must be at least 16 characters (e.g. `python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'`)"
            )

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    @property
    def batching(self) -> bool:
        return self.max_batch > 1


class ServeError(Exception):
    """An answer other than 200: HTTP ``status``, a stable ``code`` (counted in /metrics) and a
    message for the client; ``headers`` (e.g. Retry-After)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, "status": self.status}}
