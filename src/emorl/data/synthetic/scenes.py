"""Procedural still scenes for the synthetic image world (``emorl.data.synthetic.image_world``).

A scene is drawn from its cues only: a background and props for the ``scene`` kind, a palette
from ``valence`` (warm vs cold hue), ``brightness`` and ``colorfulness``, restless zigzag strokes
whose number and amplitude follow ``arousal``, and an optional ``face`` with one of the
``EXPRESSIONS``. Two drawing styles: ``flat`` (filled shapes, the default) and ``sketch`` (outlines
on tinted paper with grain: the out-of-distribution style). Every random choice comes from the
``rng`` passed in, so an image is a pure function of its cues, style, size and seed.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np

SCENES = (
    "party",
    "fireworks",
    "mountains",
    "starry_sky",
    "meadow",
    "beach",
    "fire",
    "storm",
    "dark_forest",
    "rain",
    "garbage",
    "swamp",
    "room",
)
EXPRESSIONS = ("laugh", "smile", "serene", "wonder", "frown", "grimace", "scream", "tears", "blank")

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class DrawStyle:
    name: str
    fill: bool  # filled shapes (flat) or outlines only (sketch)
    line_width: int
    paper: bool  # background is tinted paper instead of sky / ground fills
    grain: float  # std of per-pixel noise added at the end (0..255 units)


STYLES: dict[str, DrawStyle] = {
    "flat": DrawStyle("flat", fill=True, line_width=1, paper=False, grain=0.0),
    "sketch": DrawStyle("sketch", fill=False, line_width=2, paper=True, grain=9.0),
}


def _hsv(h: float, s: float, v: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return int(r * 255), int(g * 255), int(b * 255)


def _shade(c: RGB, k: float) -> RGB:
    return tuple(int(min(255, max(0, x * k))) for x in c)  # type: ignore[return-value]


@dataclass(frozen=True)
class Palette:
    """Colours of one image: ``sky`` / ``ground`` from the mood hue, ``ink`` for strokes; ``light``
    scales every prop colour (brightness) and ``sat`` its saturation (colorfulness)."""

    hue: float
    light: float
    sat: float

    @classmethod
    def of(cls, valence: float, brightness: float, colorfulness: float, jitter: float) -> Palette:
        hue = (220 - (valence + 1) / 2 * 190 + jitter) / 360  # -1: cold blue (220 deg) .. +1: warm orange (30 deg)
        return cls(hue, 0.3 + 0.7 * brightness, 0.15 + 0.85 * colorfulness)

    def tone(self, hue_deg: float | None = None, s: float = 1.0, v: float = 1.0) -> RGB:
        h = self.hue if hue_deg is None else hue_deg / 360
        return _hsv(h, self.sat * s, self.light * v)

    @property
    def sky(self) -> RGB:
        return self.tone(s=0.55, v=0.95)

    @property
    def ground(self) -> RGB:
        return _hsv(self.hue + 0.05, self.sat * 0.8, self.light * 0.6)

    @property
    def ink(self) -> RGB:
        return _hsv(self.hue + 0.5, self.sat, min(1.0, self.light * 0.9 + 0.1))


class Painter:
    """ImageDraw calls in a drawing style: filled shapes with a darker outline (flat) or outlines
    only (sketch)."""

    def __init__(self, img, style: DrawStyle):
        from PIL import ImageDraw

        self.d = ImageDraw.Draw(img)
        self.style = style

    def _kw(self, color: RGB) -> dict:
        if self.style.fill:
            return {"fill": color, "outline": _shade(color, 0.6)}
        return {"outline": _shade(color, 0.75), "width": self.style.line_width}

    def poly(self, pts, color: RGB) -> None:
        self.d.polygon([tuple(map(float, p)) for p in pts], **self._kw(color))

    def ellipse(self, box, color: RGB) -> None:
        self.d.ellipse([float(x) for x in box], **self._kw(color))

    def rect(self, box, color: RGB) -> None:
        self.d.rectangle([float(x) for x in box], **self._kw(color))

    def line(self, pts, color: RGB, width: int = 1) -> None:
        self.d.line([tuple(map(float, p)) for p in pts], fill=color, width=max(width, self.style.line_width))


# ----------------------------------------------------------------------------- scene props


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _party(p: Painter, s: int, pal: Palette, rng) -> None:
    for _ in range(int(rng.integers(4, 8))):
        x, y, r = _u(rng, 0.1, 0.9) * s, _u(rng, 0.1, 0.45) * s, _u(rng, 0.05, 0.08) * s
        p.ellipse((x - r, y - 1.3 * r, x + r, y + 1.3 * r), pal.tone(_u(rng, 0, 360)))
        p.line([(x, y + 1.3 * r), (x + _u(rng, -4, 4), y + 3.5 * r)], (90, 90, 90))
    for _ in range(3):  # streamers
        y0 = _u(rng, 0.02, 0.2) * s
        p.line([(i * s / 6, y0 + (6 if i % 2 else -6)) for i in range(7)], pal.tone(_u(rng, 0, 360)), 2)


def _fireworks(p: Painter, s: int, pal: Palette, rng) -> None:
    p.rect((0, 0, s, 0.75 * s), _shade(pal.tone(240, 0.6, 0.35), 1.0))
    for _ in range(int(rng.integers(2, 4))):
        cx, cy, r = _u(rng, 0.2, 0.8) * s, _u(rng, 0.15, 0.45) * s, _u(rng, 0.1, 0.18) * s
        col = pal.tone(_u(rng, 0, 360), 1.0, 1.2)
        for k in range(12):
            a = 2 * math.pi * k / 12
            p.line(
                [
                    (cx + 0.3 * r * math.cos(a), cy + 0.3 * r * math.sin(a)),
                    (cx + r * math.cos(a), cy + r * math.sin(a)),
                ],
                col,
                1,
            )


def _mountains(p: Painter, s: int, pal: Palette, rng) -> None:
    for _ in range(3):
        cx, w, h = _u(rng, 0.1, 0.9) * s, _u(rng, 0.35, 0.6) * s, _u(rng, 0.45, 0.7) * s
        top = (cx, 0.8 * s - h)
        p.poly([(cx - w / 2, 0.8 * s), top, (cx + w / 2, 0.8 * s)], pal.tone(220, 0.25, 0.7))
        p.poly([(top[0] - w * 0.1, top[1] + h * 0.2), top, (top[0] + w * 0.1, top[1] + h * 0.2)], (245, 245, 250))


def _starry_sky(p: Painter, s: int, pal: Palette, rng) -> None:
    p.rect((0, 0, s, 0.8 * s), pal.tone(235, 0.7, 0.3))
    for _ in range(int(rng.integers(25, 45))):
        x, y = _u(rng, 0, 1) * s, _u(rng, 0, 0.75) * s
        p.d.point((x, y), fill=(250, 250, 220))
        if rng.random() < 0.2:
            p.line([(x - 2, y), (x + 2, y)], (250, 250, 220))
    r = 0.06 * s
    p.ellipse((0.75 * s - r, 0.15 * s - r, 0.75 * s + r, 0.15 * s + r), (240, 240, 200))


def _meadow(p: Painter, s: int, pal: Palette, rng) -> None:
    p.rect((0, 0.6 * s, s, s), pal.tone(110, 0.8, 0.8))
    r = 0.08 * s
    p.ellipse((0.8 * s - r, 0.15 * s - r, 0.8 * s + r, 0.15 * s + r), pal.tone(50, 1.0, 1.2))
    for _ in range(int(rng.integers(8, 14))):
        x, y, q = _u(rng, 0, 1) * s, _u(rng, 0.65, 0.95) * s, 0.02 * s
        p.ellipse((x - q, y - q, x + q, y + q), pal.tone(_u(rng, 0, 360), 0.9, 1.1))


def _beach(p: Painter, s: int, pal: Palette, rng) -> None:
    p.rect((0, 0.5 * s, s, 0.7 * s), pal.tone(200, 0.8, 0.8))
    p.rect((0, 0.7 * s, s, s), pal.tone(45, 0.5, 1.0))
    for k in range(3):
        y = 0.55 * s + k * 0.05 * s
        p.line([(i * s / 8, y + (2 if i % 2 else -2)) for i in range(9)], (240, 240, 250))
    r = 0.07 * s
    p.ellipse((0.2 * s - r, 0.2 * s - r, 0.2 * s + r, 0.2 * s + r), pal.tone(45, 1.0, 1.2))


def _fire(p: Painter, s: int, pal: Palette, rng) -> None:
    p.rect((0.25 * s, 0.45 * s, 0.75 * s, 0.85 * s), (70, 60, 60))
    for _ in range(int(rng.integers(4, 7))):
        x, h, w = _u(rng, 0.25, 0.75) * s, _u(rng, 0.25, 0.5) * s, _u(rng, 0.06, 0.12) * s
        p.poly(
            [(x - w, 0.5 * s), (x + _u(rng, -w, w), 0.5 * s - h), (x + w, 0.5 * s)],
            pal.tone(_u(rng, 5, 40), 1.0 / max(pal.sat, 0.3), 1.3),
        )
    p.rect((0.4 * s, 0.65 * s, 0.6 * s, 0.85 * s), (20, 20, 20))


def _storm(p: Painter, s: int, pal: Palette, rng) -> None:
    p.rect((0, 0, s, 0.75 * s), pal.tone(230, 0.3, 0.45))
    for _ in range(4):
        x, y, w = _u(rng, 0, 1) * s, _u(rng, 0.05, 0.25) * s, _u(rng, 0.2, 0.35) * s
        p.ellipse((x - w, y - 0.08 * s, x + w, y + 0.08 * s), (80, 80, 95))
    x = _u(rng, 0.3, 0.7) * s
    p.line(
        [(x, 0.25 * s), (x - 0.06 * s, 0.45 * s), (x + 0.03 * s, 0.45 * s), (x - 0.05 * s, 0.7 * s)], (255, 250, 150), 2
    )


def _dark_forest(p: Painter, s: int, pal: Palette, rng) -> None:
    p.rect((0, 0, s, s), pal.tone(150, 0.5, 0.3))
    for _ in range(int(rng.integers(6, 10))):
        x, w, h = _u(rng, 0, 1) * s, _u(rng, 0.08, 0.15) * s, _u(rng, 0.5, 0.85) * s
        p.poly([(x - w, 0.9 * s), (x, 0.9 * s - h), (x + w, 0.9 * s)], pal.tone(140, 0.6, 0.18))
    for _ in range(2):  # eyes in the dark
        x, y = _u(rng, 0.1, 0.9) * s, _u(rng, 0.4, 0.7) * s
        p.d.point([(x, y), (x + 3, y)], fill=(240, 230, 80))


def _rain(p: Painter, s: int, pal: Palette, rng) -> None:
    p.rect((0, 0, s, 0.7 * s), pal.tone(215, 0.2, 0.6))
    p.rect((0.1 * s, 0.35 * s, 0.35 * s, 0.7 * s), (110, 110, 120))
    p.rect((0.6 * s, 0.25 * s, 0.85 * s, 0.7 * s), (100, 100, 112))
    for _ in range(int(rng.integers(30, 50))):
        x, y = _u(rng, 0, 1) * s, _u(rng, 0, 0.95) * s
        p.line([(x, y), (x - 2, y + 0.05 * s)], (170, 180, 200))
    p.ellipse((0.3 * s, 0.85 * s, 0.7 * s, 0.93 * s), pal.tone(210, 0.3, 0.5))


def _garbage(p: Painter, s: int, pal: Palette, rng) -> None:
    for _ in range(int(rng.integers(6, 10))):
        x, y, w = _u(rng, 0.15, 0.85) * s, _u(rng, 0.6, 0.85) * s, _u(rng, 0.06, 0.12) * s
        p.ellipse((x - w, y - 0.7 * w, x + w, y + 0.7 * w), pal.tone(_u(rng, 30, 90), 0.6, 0.45))
    p.rect((0.15 * s, 0.45 * s, 0.35 * s, 0.8 * s), (60, 75, 60))
    for _ in range(int(rng.integers(5, 9))):  # flies
        x, y = _u(rng, 0.2, 0.8) * s, _u(rng, 0.3, 0.6) * s
        p.d.point([(x, y), (x + 1, y), (x, y + 1)], fill=(10, 10, 10))


def _swamp(p: Painter, s: int, pal: Palette, rng) -> None:
    p.rect((0, 0.55 * s, s, s), pal.tone(80, 0.6, 0.35))
    for _ in range(int(rng.integers(5, 9))):
        x, y, r = _u(rng, 0, 1) * s, _u(rng, 0.6, 0.95) * s, _u(rng, 0.01, 0.03) * s
        p.ellipse((x - r, y - r, x + r, y + r), pal.tone(90, 0.5, 0.55))
    for _ in range(3):
        x = _u(rng, 0, 1) * s
        p.line([(x, 0.55 * s), (x + _u(rng, -5, 5), 0.3 * s)], pal.tone(60, 0.5, 0.3), 2)


def _room(p: Painter, s: int, pal: Palette, rng) -> None:
    p.rect((0, 0, s, 0.75 * s), pal.tone(None, 0.3, 0.8))
    p.rect((0, 0.75 * s, s, s), pal.tone(30, 0.4, 0.5))
    x = _u(rng, 0.1, 0.5) * s
    p.rect((x, 0.15 * s, x + 0.3 * s, 0.4 * s), pal.tone(200, 0.5, 1.0))
    p.line([(x + 0.15 * s, 0.15 * s), (x + 0.15 * s, 0.4 * s)], (80, 80, 80))
    p.rect((0.55 * s, 0.6 * s, 0.9 * s, 0.65 * s), pal.tone(25, 0.6, 0.45))


_PROPS = {
    "party": _party,
    "fireworks": _fireworks,
    "mountains": _mountains,
    "starry_sky": _starry_sky,
    "meadow": _meadow,
    "beach": _beach,
    "fire": _fire,
    "storm": _storm,
    "dark_forest": _dark_forest,
    "rain": _rain,
    "garbage": _garbage,
    "swamp": _swamp,
    "room": _room,
}


# ----------------------------------------------------------------------------- faces


def draw_face(p: Painter, expression: str, cx: float, cy: float, r: float, skin: RGB) -> None:
    """A round face at (cx, cy) with radius r showing ``expression``."""
    p.ellipse((cx - r, cy - r, cx + r, cy + r), skin)
    ink = (30, 25, 25)
    ey, ex, er = cy - 0.25 * r, 0.38 * r, 0.1 * r
    wide = expression in ("wonder", "scream")
    closed = expression in ("serene", "laugh")
    for sx in (-1, 1):
        x = cx + sx * ex
        if closed:
            p.line([(x - er * 1.5, ey), (x, ey - er), (x + er * 1.5, ey)], ink)
        else:
            k = 1.8 if wide else 1.0
            p.ellipse((x - er * k, ey - er * k, x + er * k, ey + er * k), (250, 250, 250) if wide else ink)
            if wide:
                p.ellipse((x - er * 0.6, ey - er * 0.6, x + er * 0.6, ey + er * 0.6), ink)
        by = ey - 0.28 * r
        if expression in ("frown", "grimace"):  # brows down towards the nose
            p.line([(x - sx * 0.2 * r, by + 0.12 * r), (x + sx * 0.2 * r, by - 0.04 * r)], ink, 2)
        elif expression in ("tears", "scream"):  # inner corners up
            p.line([(x - sx * 0.2 * r, by - 0.08 * r), (x + sx * 0.2 * r, by + 0.06 * r)], ink, 2)
        elif expression == "wonder":
            p.line([(x - 0.2 * r, by - 0.1 * r), (x + 0.2 * r, by - 0.1 * r)], ink, 1)
    my, mw = cy + 0.45 * r, 0.45 * r
    if expression == "laugh":
        p.poly([(cx - mw, my - 0.1 * r), (cx + mw, my - 0.1 * r), (cx, my + 0.35 * r)], (150, 30, 40))
    elif expression in ("smile", "serene"):
        bend = 0.2 if expression == "smile" else 0.1
        p.line([(cx - mw, my - bend * r), (cx, my + bend * r * 0.5), (cx + mw, my - bend * r)], ink, 2)
    elif expression == "wonder":
        q = 0.12 * r
        p.ellipse((cx - q, my - q, cx + q, my + q * 1.4), (90, 30, 40))
    elif expression == "scream":
        p.ellipse((cx - 0.25 * r, my - 0.2 * r, cx + 0.25 * r, my + 0.35 * r), (70, 10, 20))
    elif expression in ("frown", "tears"):
        p.line([(cx - mw, my + 0.12 * r), (cx, my - 0.08 * r), (cx + mw, my + 0.12 * r)], ink, 2)
    elif expression == "grimace":
        p.line([(cx - mw, my), (cx - mw / 3, my - 0.08 * r), (cx + mw / 3, my + 0.08 * r), (cx + mw, my)], ink, 2)
        p.ellipse((cx - 0.1 * r, my, cx + 0.1 * r, my + 0.22 * r), (210, 80, 100))  # tongue out
        for dx in (-0.08, 0.08):  # wrinkled nose
            p.line([(cx + dx * r, cy), (cx + dx * r * 0.5, cy + 0.08 * r)], ink)
    else:  # blank
        p.line([(cx - mw * 0.8, my), (cx + mw * 0.8, my)], ink, 1)
    if expression == "tears":
        for sx in (-1, 1):
            x = cx + sx * ex
            p.ellipse((x - 0.05 * r, ey + 0.15 * r, x + 0.05 * r, ey + 0.35 * r), (90, 160, 240))


# ----------------------------------------------------------------------------- the image


def _strokes(p: Painter, s: int, arousal: float, pal: Palette, rng) -> int:
    """Restless zigzags: their number and amplitude grow with arousal. Returns how many."""
    n = round(arousal * 6)
    for _ in range(n):
        x0, y0 = _u(rng, 0, 0.7) * s, _u(rng, 0.05, 0.95) * s
        length, amp = _u(rng, 0.2, 0.35) * s, (0.01 + 0.05 * arousal) * s
        k = 6
        p.line([(x0 + length * i / k, y0 + (amp if i % 2 else -amp)) for i in range(k + 1)], pal.ink, 1)
    return n


def render_scene(cues: dict, style: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw one image from its cues (``scene``, ``face``, ``valence``, ``arousal``, ``brightness``,
    ``colorfulness``, ``hue_jitter``); returns (size, size, 3) uint8."""
    from PIL import Image

    st = STYLES[style]
    pal = Palette.of(cues["valence"], cues["brightness"], cues["colorfulness"], cues["hue_jitter"])
    if st.paper:
        img = Image.new("RGB", (size, size), _hsv(pal.hue, 0.08 + 0.1 * pal.sat, 0.93))
    else:
        img = Image.new("RGB", (size, size), pal.sky)
    p = Painter(img, st)
    if st.paper:
        p.line([(0, 0.75 * size), (size, 0.75 * size)], pal.ground, 1)
    else:
        p.rect((0, 0.75 * size, size, size), pal.ground)
    _PROPS[cues["scene"]](p, size, pal, rng)
    _strokes(p, size, cues["arousal"], pal, rng)
    if cues["face"] != "none":
        r = 0.17 * size
        cx, cy = _u(rng, 0.25, 0.75) * size, _u(rng, 0.5, 0.72) * size
        draw_face(p, cues["face"], cx, cy, r, _hsv(0.08, 0.35 + 0.2 * pal.sat, 0.6 + 0.35 * pal.light))
    arr = np.asarray(img, dtype=np.float32)
    if st.grain:
        arr = arr + rng.normal(0.0, st.grain, arr.shape)
    return np.clip(np.round(arr), 0, 255).astype(np.uint8)
