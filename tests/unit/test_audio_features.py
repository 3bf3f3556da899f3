"""The log-mel input a Qwen-Omni prompt carries equals, on the clip's valid frames, what the
family's own processor computes by default (Qwen2.5-Omni: Whisper's 30 s padding; Qwen3-Omni:
padding to the clip), although emorl pads Qwen2.5-Omni's input only to the clip plus one window."""

import numpy as np
import pytest

from emorl.models.adapter import Modality


@pytest.mark.parametrize("family", ["qwen2.5-omni", "qwen3-omni"])
@pytest.mark.parametrize("n", [8000, 16000, 23456, 40001])  # whole hops (the old edge case) and not
def test_audio_features_equal_the_processors_default(tiny_dir_of, family, n):
    from emorl.config import RunConfig
    from emorl.runs import load_adapter

    adapter = load_adapter(RunConfig(), tiny_dir_of(family))
    rng = np.random.default_rng(n)
    audio = (0.3 * np.sin(np.arange(n) / 7) + 0.05 * rng.standard_normal(n)).astype(np.float32)
    p = adapter.encode(None, audio, "Which emotion?", Modality.AUDIO, key="a")
    proc = adapter.processor
    text = proc.apply_chat_template(
        [{"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": "x"}]}],
        tokenize=False,
        add_generation_prompt=True,
    )
    ref = proc(text=[text], audio=[audio], return_tensors="pt")
    valid = int(ref["feature_attention_mask"][0].sum())
    feats = p.mm["input_features"]
    assert feats.shape[-1] == valid
    assert float((feats - ref["input_features"][0, :, :valid]).abs().max()) == 0.0
