"""Data-test fixtures: makes ``corpora_fixtures`` importable and encodes the template media once."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def bank(tmp_path_factory: pytest.TempPathFactory):
    """Template media (AV clip, silent clip, wav, jpg) shared by every fixture tree (a ``MediaBank``)."""
    from corpora_fixtures import make_media_bank

    return make_media_bank(tmp_path_factory.mktemp("media_bank"))
