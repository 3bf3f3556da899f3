"""Shared fixtures: tiny Qwen2.5-Omni and Qwen3-Omni thinkers built offline and real mp4 clips
(H.264 + AAC)."""

from __future__ import annotations

import pytest
from media_helpers import make_clip

_CORPUS = ["<think>The brows are pulled down and the voice is loud and harsh.</think><answer>angry</answer>",
           "<think>The mouth curves up and the voice rises.</think><answer>happy</answer>"] * 20


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from emorl.models.tiny import TinyShape, init_tiny

    out = tmp_path_factory.mktemp("tiny")
    return init_tiny(out / "model", corpus=_CORPUS, shape=TinyShape(hidden=64, layers=2, vocab_size=512),
                     frame_size=56)


@pytest.fixture(scope="session")
def tiny_qwen3_dir(tmp_path_factory):
    """A tiny Qwen3-Omni MoE thinker: 4 routed experts (top 2), interleaved MRoPE, deepstack."""
    from emorl.models.tiny import TinyShape, init_tiny

    out = tmp_path_factory.mktemp("tiny_qwen3")
    return init_tiny(out / "model", corpus=_CORPUS, shape=TinyShape(hidden=64, layers=2, vocab_size=512),
                     frame_size=64, family="qwen3-omni")


@pytest.fixture(scope="module", params=["qwen2.5-omni", "qwen3-omni"])
def model_dir(request):
    """Each family's tiny thinker in turn: a test taking it runs once per family."""
    return request.getfixturevalue("tiny_model_dir" if request.param == "qwen2.5-omni" else "tiny_qwen3_dir")


@pytest.fixture(scope="session")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    return [make_clip(d / "a.mp4", seconds=2.0, seed=0), make_clip(d / "b.mp4", seconds=3.0, seed=1),
            make_clip(d / "c.mp4", seconds=2.5, seed=2)]
