"""Procedural cartoon face renderer (numpy only).

A face is drawn from *video cues* (see ``emorl.data.synthetic.world.VIDEO_CUES``): brow height and
tilt, eye openness, mouth curvature / openness / width, nose wrinkle, and a head-motion pattern.
Colours, head placement and background come from an :class:`Appearance`, drawn independently of
the emotion, so colour is never a shortcut to the label.

Geometry lives in *face units*: the frame spans ``[-1, 1]`` on both axes (y points down) and the
head is an ellipse (default style) or a rounded square (``ood`` style) of radius about 0.8-0.9,
so the face fills most of the frame. Strokes are thick (brows ~4.5 px, lips ~4 px at 112 px) so
the expression survives a resize to 56×56. Shapes are anti-aliased signed-distance fields.

A clip is rendered as one face sprite (plus an eyes-closed variant when the clip blinks) that is
shifted by whole pixels per frame for head motion and composited over a static background.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

HEAD_MOVES: tuple[str, ...] = ("still", "nod", "shake", "tremble")
MAX_SHIFT = 0.10  # largest head offset, face units (fraction of half the frame)


@dataclass(frozen=True)
class FaceStyle:
    """How faces of one style look; the class→cue mapping is the same for every style."""

    name: str
    head_shape: str  # "ellipse" | "squircle"
    head_radii: tuple[float, float]  # (rx, ry), face units
    outline: float  # head outline half-width, face units (0 = none)
    hair: bool
    eye_style: str  # "sclera" (white eye, dark pupil) | "solid" (dark oval with a highlight)
    background: str  # "gradient" | "stripes"
    skin_hues: tuple[float, float]  # HSV hue range of the skin
    skin_sat: tuple[float, float]
    skin_val: tuple[float, float]


FACE_STYLES: dict[str, FaceStyle] = {
    "default": FaceStyle(
        "default", "ellipse", (0.78, 0.92), 0.0, True, "sclera", "gradient", (0.04, 0.09), (0.25, 0.55), (0.62, 0.98)
    ),
    "ood": FaceStyle(
        "ood", "squircle", (0.80, 0.84), 0.035, False, "solid", "stripes", (0.22, 0.80), (0.18, 0.40), (0.70, 0.95)
    ),
}


@dataclass(frozen=True)
class Appearance:
    """Class-independent look of one clip. Colours are RGB floats in [0, 1]."""

    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    brow: tuple[float, float, float]
    lip: tuple[float, float, float]
    mouth: tuple[float, float, float]
    iris: tuple[float, float, float]
    outline: tuple[float, float, float]
    mask: tuple[float, float, float]
    bg_a: tuple[float, float, float]
    bg_b: tuple[float, float, float]
    bg_angle: float  # radians, stripe / gradient direction
    bg_period: float  # stripe period, face units
    center: tuple[float, float]  # head centre, face units
    scale: float
    hair_phase: float

    def to_json(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return (round(r, 4), round(g, 4), round(b, 4))


def sample_appearance(style: FaceStyle, rng: np.random.Generator) -> Appearance:
    """Draw colours, head placement and background for one clip (independent of the emotion)."""
    u = rng.uniform
    skin = _hsv(u(*style.skin_hues), u(*style.skin_sat), u(*style.skin_val))
    hair = _hsv(u(0.02, 0.12), u(0.3, 0.8), u(0.08, 0.55))
    brow = tuple(round(0.35 * c, 4) for c in hair) if style.hair else _hsv(u(0.55, 0.75), u(0.4, 0.8), u(0.08, 0.22))
    lip = _hsv(u(-0.03, 0.03), u(0.45, 0.7), u(0.35, 0.55))
    mouth = _hsv(u(-0.02, 0.02), u(0.6, 0.9), u(0.10, 0.22))
    iris = _hsv(u(0.0, 1.0), u(0.2, 0.7), u(0.08, 0.25))
    outline = _hsv(u(0.0, 1.0), u(0.3, 0.6), u(0.08, 0.2))
    mask = _hsv(u(0.5, 0.65), u(0.0, 0.35), u(0.8, 0.97))
    hue = u(0.0, 1.0)
    if style.background == "gradient":
        bg_a = _hsv(hue, u(0.15, 0.5), u(0.35, 0.9))
        bg_b = _hsv(hue + u(-0.1, 0.1), u(0.15, 0.5), u(0.35, 0.9))
    else:
        bg_a = _hsv(hue, u(0.4, 0.8), u(0.3, 0.8))
        bg_b = _hsv(hue + u(0.3, 0.7), u(0.4, 0.8), u(0.3, 0.8))
    return Appearance(
        skin=skin,
        hair=hair,
        brow=brow,
        lip=lip,
        mouth=mouth,
        iris=iris,
        outline=outline,
        mask=mask,
        bg_a=bg_a,
        bg_b=bg_b,
        bg_angle=round(float(u(0, math.pi)), 4),
        bg_period=round(float(u(0.18, 0.4)), 4),
        center=(round(float(u(-0.04, 0.04)), 4), round(float(u(-0.03, 0.05)), 4)),
        scale=round(float(u(0.95, 1.04)), 4),
        hair_phase=round(float(u(0, 2 * math.pi)), 4),
    )


# ----------------------------------------------------------------------------- distance fields


def _cov(d: np.ndarray, aa: float) -> np.ndarray:
    """Anti-aliased coverage of the region ``d < 0`` (d: signed distance, same shape), in [0, 1]."""
    return np.clip(0.5 - d / aa, 0.0, 1.0)


def _sd_ellipse(u: np.ndarray, v: np.ndarray, cx: float, cy: float, a: float, b: float) -> np.ndarray:
    """Approximate signed distance to an axis-aligned ellipse (first-order, exact on the boundary)."""
    x, y = (u - cx) / a, (v - cy) / b
    k = np.sqrt(x * x + y * y) + 1e-9
    g = np.sqrt((x / a) ** 2 + (y / b) ** 2) / k + 1e-9
    return (k - 1.0) / g


def _sd_squircle(u: np.ndarray, v: np.ndarray, a: float, b: float, p: float = 4.0) -> np.ndarray:
    """Approximate signed distance to the superellipse |u/a|^p + |v/b|^p = 1."""
    x, y = np.abs(u) / a + 1e-9, np.abs(v) / b + 1e-9
    s = x**p + y**p
    k = s ** (1.0 / p)
    # gradient of k: k^(1-p) * (x^(p-1)/a, y^(p-1)/b)
    g = k ** (1.0 - p) * np.sqrt((x ** (p - 1) / a) ** 2 + (y ** (p - 1) / b) ** 2) + 1e-9
    return (k - 1.0) / g


def _sd_segment(u: np.ndarray, v: np.ndarray, p0: tuple[float, float], p1: tuple[float, float], r: float) -> np.ndarray:
    """Signed distance to a capsule of radius ``r`` around the segment p0–p1."""
    ax, ay = p0
    bx, by = p1
    dx, dy = bx - ax, by - ay
    h = np.clip(((u - ax) * dx + (v - ay) * dy) / (dx * dx + dy * dy + 1e-12), 0.0, 1.0)
    return np.hypot(u - ax - h * dx, v - ay - h * dy) - r


def _sd_mouth(u: np.ndarray, v: np.ndarray, cues: dict[str, Any]) -> np.ndarray:
    """Signed distance to the mouth opening: a curved slot (smile/frown) of given width and gap.

    The centre line is a parabola whose corners sit ``curve`` higher than its middle; the opening
    spans 30% above / 70% below that line, tapering to the corners.
    """
    w = 0.16 + 0.20 * float(cues["mouth_width"])
    a = 0.16 * float(cues["mouth_curve"])  # >0: corners up (smile)
    h = 0.02 + 0.26 * float(cues["mouth_open"])
    y0 = 0.44
    xc = np.clip(u, -w, w)
    t = xc / w
    line = y0 + a * (1.0 - t * t) - a / 2.0
    slope = -2.0 * a * xc / (w * w)
    env = np.sqrt(np.clip(1.0 - t * t, 0.0, 1.0))
    top, bottom = line - 0.3 * h * env, line + 0.7 * h * env
    d_in = np.maximum(top - v, v - bottom) / np.sqrt(1.0 + slope * slope)
    d_x = np.abs(u) - w
    out = (d_in > 0) & (d_x > 0)
    return np.where(out, np.hypot(np.maximum(d_in, 0), np.maximum(d_x, 0)), np.maximum(d_in, d_x))


class _Canvas:
    """Premultiplied RGBA accumulator over a pixel grid in face units.

    ``u`` (1, N) and ``v`` (N, 1) are the face-unit coordinates of pixel columns / rows; ``aa`` is
    one pixel in face units. Shapes are painted inside a bounding box only (speed).
    """

    def __init__(self, size: int, pad: int, app: Appearance):
        n = size + 2 * pad
        coord = 2.0 * (np.arange(n, dtype=np.float32) - pad + 0.5) / size - 1.0
        self.u = ((coord - app.center[0]) / app.scale)[None, :]
        self.v = ((coord - app.center[1]) / app.scale)[:, None]
        self.aa = 2.0 / size / app.scale
        self._size, self._pad, self._app = size, pad, app
        self.rgb = np.zeros((n, n, 3), np.float32)
        self.alpha = np.zeros((n, n), np.float32)

    def box(self, x0: float, x1: float, y0: float, y1: float) -> tuple[slice, slice]:
        """(row slice, column slice) of the pixels whose centres fall in [x0, x1] × [y0, y1] (+1 px)."""
        n, half, a = self.rgb.shape[0], self._size / 2.0, self._app

        def idx(lo: float, hi: float, c: float) -> slice:
            j0 = math.floor((lo * a.scale + c + 1.0) * half + self._pad - 0.5) - 1
            j1 = math.ceil((hi * a.scale + c + 1.0) * half + self._pad - 0.5) + 2
            return slice(min(max(j0, 0), n), min(max(j1, 0), n))

        return idx(y0, y1, a.center[1]), idx(x0, x1, a.center[0])

    def uv(self, box: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray]:
        """Coordinates inside ``box``: u (1, w) and v (h, 1)."""
        return self.u[:, box[1]], self.v[box[0], :]

    def over(self, color: tuple[float, float, float], cov: np.ndarray, box: tuple[slice, slice]) -> None:
        """Paint ``color`` with coverage ``cov`` (h, w) inside ``box``."""
        k = np.broadcast_to(cov, (box[0].stop - box[0].start, box[1].stop - box[1].start)).astype(np.float32)
        rgb, alpha = self.rgb[box], self.alpha[box]
        rgb *= 1.0 - k[..., None]
        rgb += k[..., None] * np.asarray(color, np.float32)
        alpha *= 1.0 - k
        alpha += k


def _shade(c: tuple[float, float, float], f: float) -> tuple[float, float, float]:
    return (c[0] * f, c[1] * f, c[2] * f)


def render_face_sprite(
    cues: dict[str, Any], app: Appearance, style: FaceStyle, size: int, pad: int = 0, *, eyes_closed: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Draw the face (no background) on a (size+2·pad)² canvas.

    Returns premultiplied colour (N, N, 3) float32 and alpha (N, N) float32, N = size + 2·pad.
    ``cues`` holds the video cues; ``cues["occluded"]`` draws a mask over nose and mouth.
    """
    cv = _Canvas(size, pad, app)
    aa = cv.aa
    rx, ry = style.head_radii
    hb = cv.box(-rx - 0.1, rx + 0.1, -ry - 0.1, ry + 0.1)
    u, v = cv.uv(hb)
    head = _sd_squircle(u, v, rx, ry) if style.head_shape == "squircle" else _sd_ellipse(u, v, 0, 0, rx, ry)
    if style.outline > 0:
        cv.over(app.outline, _cov(head - style.outline, aa), hb)
        cv.over(app.skin, _cov(head + style.outline, aa), hb)
    else:
        cv.over(app.skin, _cov(head, aa), hb)
    if style.hair:
        b = cv.box(-rx, rx, -ry - 0.05, -0.55)
        u, v = cv.uv(b)
        hairline = -0.64 + 0.04 * np.sin(6.0 * u + app.hair_phase)
        head_b = _sd_ellipse(u, v, 0, 0, rx, ry)
        cv.over(app.hair, np.minimum(_cov(head_b, aa), _cov(v - hairline, aa)), b)

    # nose (class independent) and the disgust wrinkle lines on the bridge
    b = cv.box(-0.05, 0.09, -0.06, 0.24)
    cv.over(_shade(app.skin, 0.72), _cov(_sd_segment(*cv.uv(b), (0.0, -0.02), (0.035, 0.2), 0.022), aa), b)
    wrinkle = float(np.clip((float(cues["nose_wrinkle"]) - 0.15) / 0.6, 0.0, 1.0))
    if wrinkle > 0:
        for s in (-1.0, 1.0):
            b = cv.box(min(s * 0.03, s * 0.2), max(s * 0.03, s * 0.2), -0.12, 0.12)
            u, v = cv.uv(b)
            d = np.minimum.reduce(
                [_sd_segment(u, v, (s * 0.06, y), (s * 0.17, y - 0.035), 0.02) for y in (-0.05, 0.015, 0.08)]
            )
            cv.over(_shade(app.skin, 0.35), wrinkle * _cov(d, aa), b)

    _draw_eyes(cv, cues, app, style, eyes_closed)
    _draw_brows(cv, cues, app)

    b = cv.box(-0.45, 0.45, 0.1, 0.8)
    mouth = _sd_mouth(*cv.uv(b), cues)
    cv.over(app.lip, _cov(mouth - 0.036, aa), b)
    cv.over(app.mouth, _cov(mouth, aa), b)

    if cues.get("occluded"):
        b = cv.box(-0.75, 0.75, 0.02, 0.9)
        u, v = cv.uv(b)
        head_b = _sd_squircle(u, v, rx, ry) if style.head_shape == "squircle" else _sd_ellipse(u, v, 0, 0, rx, ry)
        inside = _cov(head_b, aa)
        band = _cov(np.maximum(np.abs(u) - 0.7, np.maximum(0.06 - v, v - 0.86)), aa)
        cv.over(app.mask, np.minimum(inside, band), b)
        cv.over(_shade(app.mask, 0.8), np.minimum(inside, _cov(np.abs(v - 0.3) - 0.012, aa) * band), b)
    return cv.rgb, cv.alpha


def _draw_eyes(cv: _Canvas, cues: dict[str, Any], app: Appearance, style: FaceStyle, closed: bool) -> None:
    """Eyes at (±0.3, -0.1); height grows with ``eye_open``. Closed eyes are a lid line."""
    aa = cv.aa
    b = 0.018 + 0.125 * float(cues["eye_open"])
    for s in (-1.0, 1.0):
        cx, cy = s * 0.3, -0.1
        box = cv.box(cx - 0.2, cx + 0.2, cy - b - 0.05, cy + b + 0.05)
        u, v = cv.uv(box)
        if closed:
            cv.over(
                app.outline if style.outline else _shade(app.skin, 0.3),
                _cov(_sd_segment(u, v, (cx - 0.15, cy), (cx + 0.15, cy), 0.025), aa),
                box,
            )
            continue
        eye = _sd_ellipse(u, v, cx, cy, 0.15, b)
        if style.eye_style == "sclera":
            cv.over((0.12, 0.1, 0.1), _cov(eye - 0.024, aa), box)
            cv.over((0.97, 0.97, 0.95), _cov(eye, aa), box)
            pupil = np.hypot(u - cx, v - cy) - 0.07
            cv.over(app.iris, np.minimum(_cov(pupil, aa), _cov(eye, aa)), box)
        else:
            cv.over(app.outline, _cov(eye - 0.01, aa), box)
            glint = np.hypot(u - cx - 0.05, v - cy + 0.4 * b) - 0.028
            cv.over((0.95, 0.95, 0.95), np.minimum(_cov(glint, aa), _cov(eye + 0.01, aa)), box)


def _draw_brows(cv: _Canvas, cues: dict[str, Any], app: Appearance) -> None:
    """Brows as thick capsules: height from ``brow_raise``, inner-corner lift from ``brow_tilt``."""
    raise_, tilt = float(cues["brow_raise"]), float(cues["brow_tilt"])
    yb = -0.40 - 0.13 * raise_
    inner_x = 0.13 + 0.04 * min(tilt, 0.0)  # frowning brows also pull together
    for s in (-1.0, 1.0):
        p_in = (s * inner_x, yb - 0.085 * tilt)
        p_out = (s * 0.46, yb + 0.05 * tilt)
        box = cv.box(
            min(p_in[0], p_out[0]) - 0.06,
            max(p_in[0], p_out[0]) + 0.06,
            min(p_in[1], p_out[1]) - 0.06,
            max(p_in[1], p_out[1]) + 0.06,
        )
        cv.over(app.brow, _cov(_sd_segment(*cv.uv(box), p_in, p_out, 0.045), aa=cv.aa), box)


def render_background(app: Appearance, style: FaceStyle, size: int) -> np.ndarray:
    """Static background (size, size, 3) float32 in [0, 1]: a soft gradient or stripes."""
    coord = 2.0 * (np.arange(size, dtype=np.float32) + 0.5) / size - 1.0
    x, y = coord[None, :], coord[:, None]
    proj = x * math.cos(app.bg_angle) + y * math.sin(app.bg_angle)
    if style.background == "gradient":
        t = np.clip(0.5 + 0.5 * proj, 0, 1)
    else:
        t = _cov(np.sin(2 * math.pi * proj / app.bg_period) * app.bg_period / (2 * math.pi), 2.0 / size)
    a, b = np.asarray(app.bg_a, np.float32), np.asarray(app.bg_b, np.float32)
    return (a * (1 - t[..., None]) + b * t[..., None]).astype(np.float32)


def head_offsets(move: str, amp: float, n_frames: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """Head displacement per frame, (n_frames, 2) float (dx, dy) in face units, |·| ≤ MAX_SHIFT.

    nod: vertical 1.2–2 Hz oscillation; shake: horizontal 1.5–2.5 Hz; tremble: small independent
    jitter every frame; still: a slow sub-pixel-to-pixel drift.
    """
    if move not in HEAD_MOVES:
        raise ValueError(f"unknown head move {move!r}; expected one of {HEAD_MOVES}")
    t = np.arange(n_frames) / fps
    phase = rng.uniform(0, 2 * math.pi)
    out = np.zeros((n_frames, 2))
    if move == "nod":
        out[:, 1] = amp * 0.09 * np.sin(2 * math.pi * rng.uniform(1.2, 2.0) * t + phase)
    elif move == "shake":
        out[:, 0] = amp * 0.09 * np.sin(2 * math.pi * rng.uniform(1.5, 2.5) * t + phase)
    elif move == "tremble":
        out[:] = amp * 0.045 * rng.standard_normal((n_frames, 2))
    else:
        out[:, 0] = amp * 0.025 * np.sin(2 * math.pi * 0.3 * t + phase)
        out[:, 1] = amp * 0.015 * np.cos(2 * math.pi * 0.25 * t + phase)
    return np.clip(out, -MAX_SHIFT, MAX_SHIFT)


def render_frames(
    cues: dict[str, Any],
    app: Appearance,
    style: FaceStyle,
    offsets: np.ndarray,
    blink_frames: np.ndarray,
    size: int,
) -> np.ndarray:
    """Render a clip: (T, size, size, 3) uint8 from per-frame offsets (T, 2) and blink flags (T,) bool."""
    pad = math.ceil(MAX_SHIFT * size / 2) + 1
    bg = render_background(app, style, size)
    sprites = {False: render_face_sprite(cues, app, style, size, pad)}
    if blink_frames.any():
        sprites[True] = render_face_sprite(cues, app, style, size, pad, eyes_closed=True)
    px = np.rint(offsets * size / 2).astype(int)
    frames = np.empty((len(offsets), size, size, 3), np.uint8)
    cache: dict[tuple[int, int, bool], np.ndarray] = {}
    for i, ((dx, dy), blink) in enumerate(zip(px.tolist(), blink_frames.tolist())):
        key = (dx, dy, bool(blink))
        if key not in cache:
            rgb, alpha = sprites[bool(blink)]
            ys, xs = slice(pad - dy, pad - dy + size), slice(pad - dx, pad - dx + size)
            img = bg * (1.0 - alpha[ys, xs, None]) + rgb[ys, xs]
            cache[key] = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
        frames[i] = cache[key]
    return frames


def render_still(cues: dict[str, Any], app: Appearance, style: FaceStyle, size: int) -> np.ndarray:
    """One centred frame (size, size, 3) uint8, eyes open, no motion."""
    return render_frames(cues, app, style, np.zeros((1, 2)), np.zeros(1, bool), size)[0]
