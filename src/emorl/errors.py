"""Errors that mean "the input is wrong" (not a bug): the CLI prints their message, which names
the file, line, field or value and what was expected, without a traceback."""

from __future__ import annotations

from emorl.config import ConfigError
from emorl.data.labels import UnknownLabelError
from emorl.data.manifest import ManifestError
from emorl.data.media import MediaError


def _dataset_error() -> tuple[type[BaseException], ...]:
    try:
        from emorl.data.corpora.common import DatasetError
    except ImportError:
        return ()
    return (DatasetError,)


USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    ManifestError,
    MediaError,
    UnknownLabelError,
    FileNotFoundError,
    KeyError,
    ValueError,
    *_dataset_error(),
)
