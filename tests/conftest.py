"""Shared fixtures: tiny models of every registered family built offline (one per session, on
first use) and real mp4 clips (H.264 + AAC).

``model_dir`` runs a test once per family; ``family_helpers.FAMILY_MODALITIES`` (for tests'
parametrize lists) pairs each family with each media condition it takes."""

from __future__ import annotations

import pytest
from family_helpers import FAMILY_NAMES, TINY_FRAME
from media_helpers import make_clip

_CORPUS = [
    "<think>The brows are pulled down and the voice is loud and harsh.</think><answer>angry</answer>",
    "<think>The mouth curves up and the voice rises.</think><answer>happy</answer>",
] * 20


@pytest.fixture(scope="session")
def tiny_dir_of(tmp_path_factory):
    """``tiny_dir_of(family)``: that family's tiny model directory, built once per session."""
    from emorl.models.tiny import TinyShape, init_tiny

    built: dict = {}

    def get(family: str):
        if family not in built:
            out = tmp_path_factory.mktemp(family.replace(".", "_"))
            built[family] = init_tiny(
                out / "model",
                corpus=_CORPUS,
                shape=TinyShape(hidden=64, layers=2, vocab_size=512),
                frame_size=TINY_FRAME[family],
                family=family,
            )
        return built[family]

    return get


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_dir_of):
    """A tiny Qwen2.5-Omni thinker."""
    return tiny_dir_of("qwen2.5-omni")


@pytest.fixture(scope="session")
def tiny_qwen3_dir(tiny_dir_of):
    """A tiny Qwen3-Omni MoE thinker: 4 routed experts (top 2), interleaved MRoPE, deepstack."""
    return tiny_dir_of("qwen3-omni")


@pytest.fixture(scope="module", params=FAMILY_NAMES)
def model_dir(request, tiny_dir_of):
    """Each registered family's tiny model in turn: a test taking it runs once per family."""
    return tiny_dir_of(request.param)


@pytest.fixture(scope="session")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    return [
        make_clip(d / "a.mp4", seconds=2.0, seed=0),
        make_clip(d / "b.mp4", seconds=3.0, seed=1),
        make_clip(d / "c.mp4", seconds=2.5, seed=2),
    ]
