"""Still images: one decoding function with limits and a defined outcome for every bad file.

``load_image(path)`` decodes an image fully with PIL and returns it as 8-bit RGB, with ``notes``
saying what was converted and ``flags`` saying what is degenerate; a file that cannot be used
raises ``ImageError`` (a ``emorl.data.media.MediaError``) with an ``outcome`` code. ``data check``
calls it on every image sample (``check_image``); model-side image loading uses the same function,
so what was checked is what a model sees.

Outcomes (the file is not used):

=============  ===============================================================================
missing        no such file
lfs_pointer    a Git-LFS pointer stub instead of the image (run ``git lfs pull``)
empty          a zero-byte file
unreadable     PIL cannot identify or decode it (not an image, a format PIL lacks, corrupt
               header or data)
truncated      the header reads but the data stops early (PIL: "image file is truncated",
               "Truncated File Read"); never padded with grey as ``LOAD_TRUNCATED_IMAGES`` would
too_large      width x height above ``ImageLimits.max_pixels`` (decompression bombs: the header
               is read, the pixels are never allocated), or above PIL's own bomb threshold
=============  ===============================================================================

Notes (the image is used, converted to RGB; every note is counted by ``data check``):

=========================  ==================================================================
ext_mismatch:<fmt>         the content is a <fmt> image whose name says otherwise (a PNG
                           named ``.jpg``). Accepted: PIL, HF ``datasets`` and EasyR1 decode by
                           content, the pixels are intact, and Flickr-sourced corpora (FI,
                           Emotion6) hold such files; rejecting would drop valid images.
grayscale_to_rgb           an L / 1 image, channels replicated
high_bit_depth             a 16-bit image (I;16: scaled by 255/65535) or a 32-bit integer or
                           float one (I, F: scaled by its own min..max); also grayscale_to_rgb
cmyk_to_rgb                a CMYK image (PIL's conversion; CMYK JPEGs from print workflows)
<mode>_to_rgb              another colour space (YCbCr, LAB, HSV, P without transparency)
alpha_composited           an image with transparency (RGBA, LA, PA, P with a transparent
                           colour), composited over ``ImageLimits.background`` (white): a
                           plain ``convert("RGB")``, as EMO-R3 does, keeps whatever colour the
                           transparent pixels happen to store (often black)
animated:<n>               an animated image (GIF, APNG, WebP) of n frames; the first is used
exif_rotated               an EXIF orientation tag was applied, so the pixels are upright as a
                           viewer shows them (transformers' ``load_image`` does the same)
=========================  ==================================================================

Flags (the image is used; ``data.exclude_flagged`` drops flagged samples): ``small`` when the
shorter side is below ``ImageLimits.min_side`` (``data.min_side``).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emorl.data.mediafile import MediaError, is_lfs_pointer

IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
# PIL format name -> the extensions that name it
FORMAT_EXTS: dict[str, frozenset[str]] = {
    "JPEG": frozenset({".jpg", ".jpeg", ".jpe", ".jfif"}),
    "PNG": frozenset({".png"}),
    "BMP": frozenset({".bmp", ".dib"}),
    "GIF": frozenset({".gif"}),
    "WEBP": frozenset({".webp"}),
    "TIFF": frozenset({".tif", ".tiff"}),
    "MPO": frozenset({".jpg", ".jpeg", ".mpo"}),
}
MAX_PIXELS = 89_478_485  # PIL's Image.MAX_IMAGE_PIXELS default (about 9459 x 9459)
OUTCOMES = ("missing", "lfs_pointer", "empty", "unreadable", "truncated", "too_large")


class ImageError(MediaError):
    """An image that cannot be used; ``outcome`` is one of ``OUTCOMES``."""


@dataclass(frozen=True)
class ImageLimits:
    """max_pixels: width x height above which an image is ``too_large`` (0 = PIL's own threshold
    only); min_side: shorter sides below it get the ``small`` flag (0 disables); background: the
    RGB colour transparent pixels are composited over."""

    max_pixels: int = MAX_PIXELS
    min_side: int = 32
    background: tuple[int, int, int] = (255, 255, 255)


@dataclass
class LoadedImage:
    """A decoded image. ``image``: PIL RGB; ``format``/``mode``: as stored (e.g. PNG, RGBA);
    ``notes``/``flags``: see the module docstring."""

    image: object
    width: int
    height: int
    format: str
    mode: str
    notes: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)


def _is_truncation(e: BaseException) -> bool:
    return "truncat" in str(e).lower() or isinstance(e, EOFError)


def _open(path: Path, limits: ImageLimits):
    """The opened (header-only) PIL image; ImageError for an unidentifiable file or a bomb."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # limits.max_pixels decides
            im = Image.open(path)
    except Image.DecompressionBombError as e:
        raise ImageError(path, "too_large", f"decompression bomb guard: {e}") from None
    except UnidentifiedImageError:
        raise ImageError(path, "unreadable", "not an image PIL can identify") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        outcome = "truncated" if _is_truncation(e) else "unreadable"
        raise ImageError(path, outcome, f"{type(e).__name__}: {e}") from None
    w, h = im.size
    if w < 1 or h < 1:
        im.close()
        raise ImageError(path, "unreadable", f"header gives an empty size {w}x{h}")
    if limits.max_pixels and w * h > limits.max_pixels:
        im.close()
        raise ImageError(
            path,
            "too_large",
            f"{w}x{h} = {w * h} pixels, above the limit of {limits.max_pixels} (ImageLimits.max_pixels)",
        )
    return im


def _to_rgb(im, background: tuple[int, int, int], notes: list[str]):
    """``im`` as 8-bit RGB, each conversion noted."""
    from PIL import Image

    mode = im.mode
    if mode == "P":
        transparent = "transparency" in im.info or (im.palette is not None and im.palette.mode == "RGBA")
        if not transparent:
            notes.append("p_to_rgb")
            return im.convert("RGB")
        im, mode = im.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode in ("L", "RGB") and "transparency" in im.info):
        rgba = im.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (*background, 255))
        notes.append("alpha_composited")
        return Image.alpha_composite(base, rgba).convert("RGB")
    if mode == "RGB":
        return im
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        if mode.startswith("I;16"):
            a = a * (255.0 / 65535.0)
        else:  # 32-bit integers or floats: no fixed range, scaled by the image's own
            lo, hi = float(a.min()), float(a.max())
            a = np.zeros_like(a) if hi <= lo else (a - lo) / (hi - lo) * 255.0
        notes.append("high_bit_depth")
        notes.append("grayscale_to_rgb")
        return Image.fromarray(np.round(a).astype(np.uint8), "L").convert("RGB")
    if mode in ("L", "1"):
        notes.append("grayscale_to_rgb")
    elif mode == "CMYK":
        notes.append("cmyk_to_rgb")
    else:
        notes.append(f"{mode.lower()}_to_rgb")
    return im.convert("RGB")


def load_image(path: str | os.PathLike, limits: ImageLimits | None = None) -> LoadedImage:
    """Decode one image fully and return it as RGB (see the module docstring for outcomes, notes
    and flags). Raises ``ImageError`` for a file that cannot be used; never substitutes pixels."""
    from PIL import ImageOps

    limits = limits or ImageLimits()
    p = Path(path)
    if not p.is_file():
        raise ImageError(p, "missing", "file not found")
    if p.stat().st_size == 0:
        raise ImageError(p, "empty", "zero-byte file")
    if is_lfs_pointer(p):
        raise ImageError(p, "lfs_pointer", "Git-LFS pointer stub, not an image: run `git lfs pull` in the dataset")
    notes: list[str] = []
    src = im = _open(p, limits)
    try:
        fmt, mode = str(im.format or ""), im.mode
        try:
            im.load()
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            outcome = "truncated" if _is_truncation(e) else "unreadable"
            raise ImageError(p, outcome, f"{type(e).__name__}: {e}") from None
        ext = p.suffix.lower()
        if fmt and ext not in FORMAT_EXTS.get(fmt, frozenset({f".{fmt.lower()}"})):
            notes.append(f"ext_mismatch:{fmt.lower()}")
        n_frames = int(getattr(im, "n_frames", 1) or 1)
        if n_frames > 1:
            notes.append(f"animated:{n_frames}")
        orientation = im.getexif().get(0x0112, 1)
        if orientation not in (1, None):
            im = ImageOps.exif_transpose(im)
            notes.append("exif_rotated")
        rgb = _to_rgb(im, limits.background, notes)
        rgb = rgb.copy() if rgb is src else rgb  # detached from the file closed below
    finally:
        src.close()
    w, h = rgb.size
    flags = ["small"] if limits.min_side and min(w, h) < limits.min_side else []
    return LoadedImage(rgb, w, h, fmt, mode, notes, flags)


def check_image(path: str | os.PathLike, limits: ImageLimits | None = None) -> dict:
    """``data check``'s verdict on one image: ``{"ok": True, width, height, format, mode, notes,
    flags}`` or ``{"ok": False, outcome, reason}``."""
    try:
        got = load_image(path, limits)
    except ImageError as e:
        return {"ok": False, "outcome": e.outcome, "reason": str(e)}
    return {
        "ok": True,
        "width": got.width,
        "height": got.height,
        "format": got.format,
        "mode": got.mode,
        "notes": got.notes,
        "flags": got.flags,
    }


def sniff_format(data: bytes) -> str | None:
    """The file extension (with the dot) for image bytes by their magic number, or None.

    >>> sniff_format(b"\\x89PNG\\r\\n\\x1a\\n...."), sniff_format(b"\\xff\\xd8\\xff\\xe0"), sniff_format(b"hello")
    ('.png', '.jpg', None)
    """
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return ".png"
    if data.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return ".gif"
    if data.startswith(b"BM"):
        return ".bmp"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return ".tif"
    return None
