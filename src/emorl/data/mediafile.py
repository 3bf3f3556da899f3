"""What every media reader shares: the error a sample's media raise, and the Git-LFS stub check
(emorl.data.media for clips and frame folders, emorl.data.images for still images)."""

from __future__ import annotations

import os


class MediaError(RuntimeError):
    """A sample whose media cannot be used. ``outcome`` is one of
    unreadable, no_video, no_audio, empty, lfs_pointer, missing."""

    def __init__(self, path: str | os.PathLike, outcome: str, detail: str):
        super().__init__(f"{path}: {outcome}: {detail}")
        self.path = str(path)
        self.outcome = outcome


def is_lfs_pointer(path: str | os.PathLike) -> bool:
    """True if ``path`` is a Git-LFS pointer stub instead of the media it names."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return False
    return head.startswith(b"version https://git-lfs.github.com/spec/")
