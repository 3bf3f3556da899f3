"""Media helpers for tests (importable: tests/ is on sys.path via the root conftest)."""

from __future__ import annotations

import numpy as np

from emorl.data.media import write_mp4


def make_clip(path, *, seconds: float = 2.0, fps: int = 8, size: int = 56, seed: int = 0, audio: bool = True):
    rng = np.random.default_rng(seed)
    t = int(seconds * fps)
    frames = rng.integers(0, 255, (t, size, size, 3), dtype=np.uint8)
    sig = None
    if audio:
        n = int(seconds * 16000)
        f0 = 120 + 40 * seed
        sig = (0.3 * np.sin(2 * np.pi * f0 * np.arange(n) / 16000) + 0.01 * rng.standard_normal(n)).astype(np.float32)
    write_mp4(path, frames, fps, sig)
    return path


def encode_clips(adapter, clips, modality):
    """One prompt per clip, with different frame counts (8, 4, 6, ...) so prompt lengths differ;
    for a still image (``Modality.IMAGE``) the clip's first frame, with questions of different
    lengths instead, and so for audio (a fixed-window audio encoder gives every clip one length)."""
    from emorl.data.media import load_clip
    from emorl.models.adapter import Modality

    out = []
    for i, path in enumerate(clips):
        n = (8, 4, 6)[i % 3]
        c = load_clip(path, num_frames=n, size=56)
        if modality == Modality.IMAGE:
            text = ("Which emotion?", "What does the face show? Answer in one word.", "Describe the person.")[i % 3]
            out.append(adapter.encode(c.frames[:1], None, text, modality, key=str(i)))
            continue
        text = (
            ("Which emotion?", "Which emotion does the voice carry?", "What is felt?")[i % 3]
            if modality == Modality.AUDIO
            else "Which emotion?"
        )
        out.append(adapter.encode(c.frames, c.audio, text, modality, fps=n / c.duration, key=str(i)))
    return out
