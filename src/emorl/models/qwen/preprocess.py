"""The Qwen families' native video preprocessing, re-implemented from qwen-vl-utils 0.0.14 /
qwen-omni-utils 0.0.9 (``vision_process.py``: ``smart_nframes``, ``smart_resize``, ``fetch_video``;
the two packages hold the same rules): frames at 2 per second, resized with the aspect ratio kept
to multiples of the vision tower's patch x merge within a per-frame pixel budget.

- frames: ``n = total / fps x 2``, clamped to [4, min(768, total)] and floored to a multiple of 2,
  taken at ``linspace(0, total - 1, n).round()``; a list of frames (a frame folder: no rate) keeps
  every frame, padded by repeating the last to a multiple of 2, at a nominal 2 per second, each
  frame first resized by the image rules (4 to 16384 merged patches) as ``fetch_image`` does (at
  twice the factor: the package passes the merged factor as the patch size there);
- size: ``smart_resize(h, w, factor, min_pixels, max_pixels)`` with factor 28 (Qwen2.5: patch 14,
  merge 2) or 32 (Qwen3: patch 16), ``min_pixels = 128 factor^2`` and ``max_pixels = max(min(768
  factor^2, total_pixels / n x 2), 1.05 min_pixels)``, ``total_pixels = 128000 factor^2 x 0.9``.

tests/unit/test_native_preprocessing.py checks these against the packages themselves.
"""

from __future__ import annotations

import math

import numpy as np

FPS = 2.0
FRAME_FACTOR = 2
FPS_MIN_FRAMES = 4
FPS_MAX_FRAMES = 768
IMAGE_MIN_TOKENS, IMAGE_MAX_TOKENS = 4, 16384  # per image, in merged patches (factor^2 pixels each)
VIDEO_MIN_TOKENS = 128  # per frame
VIDEO_MAX_TOKENS = 768
MODEL_SEQ_LEN = 128_000  # the utils' default MODEL_SEQ_LEN: the total pixel budget of a video
MAX_RATIO = 200


def round_by_factor(x: float, factor: int) -> int:
    return round(x / factor) * factor


def ceil_by_factor(x: float, factor: int) -> int:
    return math.ceil(x / factor) * factor


def floor_by_factor(x: float, factor: int) -> int:
    return math.floor(x / factor) * factor


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """(h, w): multiples of ``factor``, h*w within [min_pixels, max_pixels], aspect ratio kept as
    closely as possible.

    >>> smart_resize(240, 320, 28, 128 * 28 * 28, 768 * 28 * 28)   # a 320x240 frame
    (280, 392)
    """
    if max(height, width) / min(height, width) > MAX_RATIO:
        raise ValueError(f"frame {width}x{height}: aspect ratio above {MAX_RATIO}")
    h = max(factor, round_by_factor(height, factor))
    w = max(factor, round_by_factor(width, factor))
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h, w = floor_by_factor(height / beta, factor), floor_by_factor(width / beta, factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h, w = ceil_by_factor(height * beta, factor), ceil_by_factor(width * beta, factor)
    return h, w


def smart_nframes(total_frames: int, video_fps: float) -> int:
    """Frames taken from a video of ``total_frames`` at ``video_fps`` (2 per second, see module doc).

    >>> smart_nframes(24, 8.0)   # 3 s at 8 fps
    6
    """
    min_frames = ceil_by_factor(FPS_MIN_FRAMES, FRAME_FACTOR)
    max_frames = floor_by_factor(min(FPS_MAX_FRAMES, total_frames), FRAME_FACTOR)
    n = total_frames / video_fps * FPS
    n = floor_by_factor(min(min(max(n, min_frames), max_frames), total_frames), FRAME_FACTOR)
    if not FRAME_FACTOR <= n <= total_frames:
        raise ValueError(f"nframes should be in [{FRAME_FACTOR}, {total_frames}], got {n}")
    return n


def frame_indices(total_frames: int, video_fps: float | None) -> tuple[list[int], float]:
    """(indices into the decoded frames, rate of the kept frames). A video: ``smart_nframes`` frames
    at ``linspace(0, total - 1, n).round()``; a frame list (``video_fps`` None) or a video too
    short for two frames: every frame, the last repeated up to a multiple of 2, at 2 per second."""
    if video_fps is None or total_frames < FRAME_FACTOR:
        n = ceil_by_factor(total_frames, FRAME_FACTOR)
        return list(range(total_frames)) + [total_frames - 1] * (n - total_frames), FPS
    n = smart_nframes(total_frames, video_fps)
    idx = np.linspace(0, total_frames - 1, n).round().astype(int).tolist()  # round half to even, as torch
    return idx, n / total_frames * video_fps


def frame_budget(factor: int, n_frames: int) -> tuple[int, int]:
    """(min_pixels, max_pixels) of each frame of an ``n_frames`` video (see module doc)."""
    min_pixels = VIDEO_MIN_TOKENS * factor * factor
    total = MODEL_SEQ_LEN * factor * factor * 0.9
    max_pixels = max(min(VIDEO_MAX_TOKENS * factor * factor, total / n_frames * FRAME_FACTOR), int(min_pixels * 1.05))
    return min_pixels, int(max_pixels)


def native_video(
    total_frames: int, video_fps: float | None, height: int, width: int, factor: int
) -> tuple[list[int], tuple[int, int], float]:
    """(frame indices, (h, w), rate of the kept frames) of the Qwen rules for a video of
    ``total_frames`` decoded frames at ``video_fps`` (None: a frame folder) and ``height`` x ``width``.

    >>> idx, size, fps = native_video(24, 8.0, 240, 320, 28)   # the 3 s 320x240 clip of issue 21
    >>> len(idx), size, fps
    (6, (280, 392), 2.0)
    """
    idx, fps = frame_indices(total_frames, video_fps)
    if video_fps is None:  # a list of frames: each is first resized by the image rules (fetch_image), where
        # qwen-vl-utils 0.0.14 passes the merged factor as the patch size: multiples of 2 x factor (reproduced)
        f2 = 2 * factor
        height, width = smart_resize(height, width, f2, IMAGE_MIN_TOKENS * f2 * f2, IMAGE_MAX_TOKENS * f2 * f2)
    return idx, smart_resize(height, width, factor, *frame_budget(factor, len(idx))), fps
