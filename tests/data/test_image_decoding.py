"""Image decoding with limits: every hostile image made here gets its defined outcome or note."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emorl.data.images import ImageError, ImageLimits, check_image, load_image, sniff_format

LFS_STUB = (
    b"version https://git-lfs.github.com/spec/v1\n"
    b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 1234567\n"
)


def noise(w: int = 48, h: int = 40, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


def save(im: Image.Image, path: Path, fmt: str, **kw) -> Path:
    im.save(path, fmt, **kw)
    return path


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose IHDR claims width x height 8-bit grey pixels, with a tiny IDAT: a header-only
    decompression bomb (opening it must not allocate the pixels)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
    )
    return path


def outcome(path: Path, limits: ImageLimits | None = None) -> str:
    with pytest.raises(ImageError) as e:
        load_image(path, limits)
    assert str(path) in str(e.value)  # the message names the file
    return e.value.outcome


def test_plain_rgb_jpeg_and_png_load_without_notes(tmp_path):
    for fmt, ext in (("JPEG", ".jpg"), ("PNG", ".png")):
        got = load_image(save(noise(), tmp_path / f"a{ext}", fmt))
        assert (got.width, got.height, got.format, got.mode) == (48, 40, fmt, "RGB")
        assert got.image.mode == "RGB" and got.notes == [] and got.flags == []
    png = load_image(tmp_path / "a.png")
    assert np.array_equal(np.asarray(png.image), np.asarray(noise()))  # lossless: the same pixels


def test_missing_empty_lfs_unreadable(tmp_path):
    assert outcome(tmp_path / "nope.jpg") == "missing"
    (tmp_path / "zero.jpg").write_bytes(b"")
    assert outcome(tmp_path / "zero.jpg") == "empty"
    (tmp_path / "stub.jpg").write_bytes(LFS_STUB)
    assert outcome(tmp_path / "stub.jpg") == "lfs_pointer"
    (tmp_path / "junk.jpg").write_bytes(np.random.default_rng(1).integers(0, 255, 900, dtype=np.uint8).tobytes())
    assert outcome(tmp_path / "junk.jpg") == "unreadable"
    (tmp_path / "text.png").write_text("not an image at all\n")
    assert outcome(tmp_path / "text.png") == "unreadable"


@pytest.mark.parametrize("fmt,ext,keep", [("JPEG", ".jpg", 0.5), ("JPEG", ".jpg", 0.1), ("PNG", ".png", 0.5)])
def test_truncated_files_are_rejected_not_padded(tmp_path, fmt, ext, keep):
    data = io.BytesIO()
    noise(64, 64).save(data, fmt)
    raw = data.getvalue()
    p = tmp_path / f"cut{ext}"
    p.write_bytes(raw[: int(len(raw) * keep)])
    assert outcome(p) == "truncated"
    assert check_image(p)["outcome"] == "truncated"


def test_png_named_jpg_is_accepted_with_a_note(tmp_path):
    p = save(noise(), tmp_path / "really_png.jpg", "PNG")
    got = load_image(p)
    assert got.format == "PNG" and got.notes == ["ext_mismatch:png"]
    assert np.array_equal(np.asarray(got.image), np.asarray(noise()))
    assert load_image(save(noise(), tmp_path / "b.jpeg", "JPEG")).notes == []  # .jpeg is a JPEG name


def test_grayscale_cmyk_and_16_bit_become_rgb_with_notes(tmp_path):
    gray = load_image(save(Image.new("L", (40, 40), 100), tmp_path / "g.jpg", "JPEG"))
    assert gray.mode == "L" and gray.notes == ["grayscale_to_rgb"]
    px = np.asarray(gray.image)
    assert px.shape == (40, 40, 3) and np.all(px[..., 0] == px[..., 1]) and abs(int(px[0, 0, 0]) - 100) <= 2
    cmyk = load_image(save(Image.new("CMYK", (40, 40), (0, 255, 255, 0)), tmp_path / "c.jpg", "JPEG"))
    assert cmyk.mode == "CMYK" and cmyk.notes == ["cmyk_to_rgb"]
    r, g, b = np.asarray(cmyk.image)[20, 20].astype(int)
    assert r > 200 and g < 60 and b < 60  # full magenta + yellow ink = red
    deep = np.full((32, 32), 65535, np.uint16)
    deep[:, :16] = 0
    hb = load_image(save(Image.fromarray(deep), tmp_path / "d.png", "PNG"))
    assert hb.mode.startswith("I") and hb.notes == ["high_bit_depth", "grayscale_to_rgb"]
    assert np.asarray(hb.image)[0, 0, 0] == 0 and np.asarray(hb.image)[0, 31, 0] == 255


def test_alpha_is_composited_on_white(tmp_path):
    rgba = np.zeros((32, 32, 4), np.uint8)  # fully transparent black ...
    rgba[:, 16:] = (200, 10, 10, 255)  # ... and an opaque red half
    got = load_image(save(Image.fromarray(rgba, "RGBA"), tmp_path / "a.png", "PNG"))
    px = np.asarray(got.image)
    assert got.notes == ["alpha_composited"]
    assert tuple(px[0, 0]) == (255, 255, 255) and tuple(px[0, 31]) == (200, 10, 10)
    blue = load_image(tmp_path / "a.png", ImageLimits(background=(0, 0, 255)))
    assert tuple(np.asarray(blue.image)[0, 0]) == (0, 0, 255)
    la = load_image(save(Image.new("LA", (32, 32), (90, 0)), tmp_path / "la.png", "PNG"))
    assert la.notes == ["alpha_composited"] and tuple(np.asarray(la.image)[3, 3]) == (255, 255, 255)
    pal = Image.new("P", (32, 32), 0)
    pal.putpalette([0, 0, 0, 250, 0, 0] + [0] * 762)
    pal.paste(1, (0, 0, 16, 32))
    got = load_image(save(pal, tmp_path / "t.gif", "GIF", transparency=0))
    assert got.notes == ["alpha_composited"]
    assert tuple(np.asarray(got.image)[0, 31]) == (255, 255, 255) and tuple(np.asarray(got.image)[0, 0]) == (250, 0, 0)


def test_palette_animation_and_exif_orientation(tmp_path):
    pal = load_image(save(noise().convert("P"), tmp_path / "p.png", "PNG"))
    assert pal.notes == ["p_to_rgb"]
    frames = [Image.new("RGB", (32, 32), c) for c in ("red", "blue", "green")]
    anim = load_image(save(frames[0], tmp_path / "a.gif", "GIF", save_all=True, append_images=frames[1:]))
    assert "animated:3" in anim.notes and np.asarray(anim.image)[0, 0, 0] > 200  # the first (red) frame
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    rot = load_image(save(noise(48, 40), tmp_path / "r.jpg", "JPEG", exif=exif.tobytes()))
    assert rot.notes == ["exif_rotated"] and (rot.width, rot.height) == (40, 48)


def test_decompression_bombs_never_allocate(tmp_path):
    huge = png_header_only(tmp_path / "bomb.png", 100_000, 100_000)  # 1e10 pixels: PIL's own guard
    assert outcome(huge) == "too_large"
    over = png_header_only(tmp_path / "over.png", 10_000, 9_000)  # 9e7: above emorl's default limit only
    assert outcome(over) == "too_large"
    ok = save(noise(64, 64), tmp_path / "ok.png", "PNG")
    assert outcome(ok, ImageLimits(max_pixels=4000)) == "too_large"
    assert "4096 pixels, above the limit of 4000" in check_image(ok, ImageLimits(max_pixels=4000))["reason"]
    assert load_image(ok, ImageLimits(max_pixels=0)).width == 64  # 0: PIL's own threshold only


def test_small_images_are_flagged_not_rejected(tmp_path):
    p = save(noise(20, 60), tmp_path / "s.png", "PNG")
    assert load_image(p).flags == ["small"]
    assert load_image(p, ImageLimits(min_side=0)).flags == []
    assert check_image(p) == {
        "ok": True,
        "width": 20,
        "height": 60,
        "format": "PNG",
        "mode": "RGB",
        "notes": [],
        "flags": ["small"],
    }


def test_sniff_format():
    for fmt, ext in (
        ("PNG", ".png"),
        ("JPEG", ".jpg"),
        ("GIF", ".gif"),
        ("BMP", ".bmp"),
        ("WEBP", ".webp"),
        ("TIFF", ".tif"),
    ):
        b = io.BytesIO()
        noise(8, 8).save(b, fmt)
        assert sniff_format(b.getvalue()) == ext
    assert sniff_format(b"") is None and sniff_format(b"<html>") is None


def test_data_check_counts_image_outcomes_and_notes(tmp_path):
    """``data check`` on an image manifest: every hostile file gets its outcome, conversions are
    counted as notes, small images are flagged, and nothing is dropped without being listed."""
    import json

    from emorl.data.check import check_manifest, sample_modality
    from emorl.data.manifest import Sample, read_manifest, write_manifest

    d = tmp_path / "img"
    d.mkdir()
    files = {
        "good": save(noise(), d / "good.jpg", "JPEG"),
        "png-as-jpg": save(noise(), d / "png_as.jpg", "PNG"),
        "gray": save(Image.new("L", (40, 40), 80), d / "gray.jpg", "JPEG"),
        "cmyk": save(Image.new("CMYK", (40, 40)), d / "cmyk.jpg", "JPEG"),
        "alpha": save(Image.new("RGBA", (40, 40)), d / "alpha.png", "PNG"),
        "tiny": save(noise(16, 16), d / "tiny.png", "PNG"),
        "bomb": png_header_only(d / "bomb.png", 100_000, 100_000),
    }
    (d / "zero.jpg").write_bytes(b"")
    files["zero"] = d / "zero.jpg"
    raw = io.BytesIO()
    noise(64, 64).save(raw, "JPEG")
    (d / "cut.jpg").write_bytes(raw.getvalue()[:600])
    files["cut"] = d / "cut.jpg"
    (d / "junk.png").write_bytes(b"\x00" * 300)
    files["junk"] = d / "junk.png"
    files["gone"] = d / "gone.jpg"
    labels = ("amusement", "awe", "fear", "sad")
    samples = [
        Sample(k, str(p), labels[i % 4], "emoset", "train", meta={"modality": "image"} if i % 2 else {})
        for i, (k, p) in enumerate(files.items())
    ]
    assert {sample_modality(s) for s in samples} == {"image"}  # tagged, or guessed from the extension
    write_manifest(tmp_path / "m.jsonl", samples)
    report = check_manifest(tmp_path / "m.jsonl", tmp_path / "out", workers=1, progress=False)
    assert report.outcomes == {"too_large": 1, "empty": 1, "truncated": 1, "unreadable": 1, "missing": 1}
    assert report.usable == 6 and report.rejected == 5
    assert report.notes == {"ext_mismatch:png": 1, "grayscale_to_rgb": 1, "cmyk_to_rgb": 1, "alpha_composited": 1}
    assert report.flags == {"small": 1}
    summary = json.loads((tmp_path / "out/check.json").read_text())
    assert summary["images"]["formats"] == {"JPEG": 3, "PNG": 3} and summary["images"]["min_side"]["min"] == 16
    clean = {s.id: s for s in read_manifest(tmp_path / "out/clean.jsonl")}
    assert clean["tiny"].meta["flags"] == ["small"] and clean["good"].meta["flags"] == []
    rejects = {json.loads(line)["id"]: json.loads(line) for line in (tmp_path / "out/rejects.jsonl").open()}
    assert rejects["bomb"]["outcome"] == "too_large" and str(files["bomb"]) in rejects["bomb"]["reason"]
    loose = check_manifest(tmp_path / "m.jsonl", tmp_path / "out2", workers=1, progress=False, max_image_pixels=100)
    assert loose.outcomes["too_large"] == 7  # every image above 100 pixels, the bomb included
