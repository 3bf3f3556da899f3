"""The parts family at the model level, on tiny random parts built offline: composition keeps the
LLM exact, save / reload, the processor's placeholder expansion, media encoded once and scattered,
batching, generation, frozen towers, the instruction gate's per-sample weights, and the
``emorl model build`` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from emorl.models.parts.tiny import write_tiny_parts

MSG = [{"role": "user", "content": [{"type": "video"}, {"type": "audio"}, {"type": "text", "text": "which emotion?"}]}]


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def built(request, tmp_path_factory):
    """(parts folders, built checkpoint folder): a tied Llama-shaped LLM or an untied Qwen2 one."""
    from emorl.models.parts.build import build_from_parts

    root = tmp_path_factory.mktemp(f"parts_{request.param}")
    dirs = write_tiny_parts(root / "parts", llm_family=request.param)
    return dirs, build_from_parts(dirs["llm"], dirs["vision"], dirs["audio"], root / "model")


@pytest.fixture(scope="module")
def loaded(built):
    from emorl.models.parts.build import load_parts_model

    model, proc = load_parts_model(built[1])
    return model.eval(), proc


def _clip(seed: int, frames: int = 8, h: int = 24, w: int = 40):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (frames, h, w, 3), dtype=np.uint8), rng.standard_normal(9000).astype(np.float32)


def test_text_only_logits_equal_the_llms(built, loaded):
    from emorl.models.parts.build import load_llm

    llm, tok = load_llm(built[0]["llm"])
    model, proc = loaded
    ids = tok("<|im_start|>user\nthe voice rises: which emotion?<|im_end|>", return_tensors="pt").input_ids
    with torch.no_grad():
        want = llm(input_ids=ids).logits
        got = model(input_ids=ids).logits
    assert got.shape[-1] == len(proc.tokenizer) > want.shape[-1]  # placeholders and markers were added
    torch.testing.assert_close(got[..., : want.shape[-1]], want, atol=1e-5, rtol=0)
    tied = model.lm_head.weight is model.model.language_model.embed_tokens.weight
    assert tied == llm.config.tie_word_embeddings


def test_processor_expands_each_medium(loaded):
    model, proc = loaded
    frames, wave = _clip(0)
    text = proc.apply_chat_template(MSG)
    assert "<|vision_start|><|video_pad|><|vision_end|>\n<|audio_start|><|audio_pad|><|audio_end|>\nwhich" in text
    enc = proc(text, videos=[frames], audio=[wave])
    # SigLIP 32/8 -> 4x4 patches, 2x pooled -> 2x2 per frame; Whisper 50 positions / 3 -> 16
    assert proc.video_tokens(8) == 8 * 4 and proc.audio_tokens() == 16 and proc.image_tokens() == 4
    ids = enc["input_ids"][0]
    assert (
        int((ids == model.config.video_token_id).sum()) == 32 and int((ids == model.config.audio_token_id).sum()) == 16
    )
    assert tuple(enc["pixel_values_videos"].shape) == (1, 8, 3, 32, 32)
    assert tuple(enc["input_features"].shape) == (1, 16, 100)
    with pytest.raises(ValueError, match="1 video inputs but 0 video placeholders"):
        proc("no media here", videos=[frames])
    with pytest.raises(ValueError, match="more audio placeholders"):
        proc(text, videos=[frames])


def test_pad_to_square_uses_the_image_mean():
    from PIL import Image

    from emorl.models.parts.processing import expand2square

    im = Image.fromarray(np.zeros((10, 30, 3), np.uint8))
    sq = np.asarray(expand2square(im, (127, 127, 127)))
    assert sq.shape == (30, 30, 3) and sq[0, 0, 0] == 127 and sq[15, 15, 0] == 0  # 10 rows centred at 10..19


def test_media_encoded_once_equals_forward(loaded):
    model, proc = loaded
    frames, wave = _clip(1)
    enc = proc(proc.apply_chat_template(MSG), videos=[frames], audio=[wave])
    media = {k: enc[k] for k in ("pixel_values_videos", "input_features")}
    with torch.no_grad():
        direct = model(input_ids=enc["input_ids"], **media).logits
        feats = model.get_media_features(enc["input_ids"], **media)
        assert set(feats) == {"video", "audio"} and feats["video"].shape == (
            1,
            32,
            model.config.text_config.hidden_size,
        )
        reused = model(input_ids=enc["input_ids"], media_features=feats).logits
        embeds = model.embed_inputs(enc["input_ids"], media_features=feats)
        via_embeds = model(inputs_embeds=embeds).logits
    torch.testing.assert_close(reused, direct, atol=0, rtol=0)
    torch.testing.assert_close(via_embeds, direct, atol=0, rtol=0)
    with pytest.raises(ValueError, match="32 placeholder tokens but 1 items x 31"):
        model.embed_inputs(enc["input_ids"], media_features={"video": feats["video"][:, :31], "audio": feats["audio"]})
    with pytest.raises(ValueError, match="no audio inputs"):
        model.embed_inputs(enc["input_ids"], media_features={"video": feats["video"]})


def test_left_padded_batch_equals_single_samples(loaded):
    model, proc = loaded
    (f0, w0), (f1, w1) = _clip(2), _clip(3)
    long_msg = [
        {
            "role": "user",
            "content": [
                *MSG[0]["content"][:2],
                {"type": "text", "text": "a much longer question about the face and the voice?"},
            ],
        }
    ]
    texts = [proc.apply_chat_template(MSG), proc.apply_chat_template(long_msg)]
    batch = proc(texts, videos=[f0, f1], audio=[w0, w1])
    with torch.no_grad():
        got = model(**batch).logits
        for i, (f, w) in enumerate([(f0, w0), (f1, w1)]):
            one = proc(texts[i], videos=[f], audio=[w])
            want = model(**one).logits[0]
            have = got[i][batch["attention_mask"][i].bool()]
            torch.testing.assert_close(have, want, atol=1e-5, rtol=1e-5)


def test_generate_greedy_matches_forward_argmax(loaded):
    model, proc = loaded
    frames, wave = _clip(4)
    enc = proc(proc.apply_chat_template(MSG), videos=[frames], audio=[wave])
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=3, do_sample=False, eos_token_id=None)
        first = model(**enc).logits[0, -1].argmax()
    assert out.shape == (1, enc["input_ids"].shape[1] + 3)
    assert out[0, enc["input_ids"].shape[1]] == first


def test_frozen_towers_build_no_graph_and_projectors_learn(loaded):
    model, proc = loaded
    frames, wave = _clip(5)
    enc = proc(proc.apply_chat_template(MSG) + "happy", videos=[frames], audio=[wave])
    model.freeze_towers()
    try:
        assert not model.model._frame_features(enc["pixel_values_videos"][0]).requires_grad
        model.zero_grad()
        out = model(**enc, labels=enc["input_ids"])
        out.loss.backward()
        assert all(
            p.grad is None for t in ("vision_tower", "audio_tower") for p in model.media_modules()[t].parameters()
        )
        for name in ("vision_projector", "audio_projector"):
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.media_modules()[name].parameters())
        assert model.decoder_layers is model.model.language_model.layers
    finally:
        model.freeze_towers(False)
        model.zero_grad()


def test_saved_checkpoint_reloads_with_equal_logits(built, loaded, tmp_path):
    from transformers import AutoModelForCausalLM

    import emorl.models.parts  # noqa: F401  registers emorl_omni with the Auto classes
    from emorl.models.parts import EmorlOmniProcessor

    model, proc = loaded
    model.save_pretrained(tmp_path / "again")
    proc.save_pretrained(tmp_path / "again")
    back = AutoModelForCausalLM.from_pretrained(tmp_path / "again").eval()
    proc2 = EmorlOmniProcessor.from_pretrained(tmp_path / "again")
    frames, wave = _clip(6)
    enc = proc(proc.apply_chat_template(MSG), videos=[frames], audio=[wave])
    enc2 = proc2(proc2.apply_chat_template(MSG), videos=[frames], audio=[wave])
    assert all(torch.equal(enc[k], enc2[k]) for k in enc)
    with torch.no_grad():
        torch.testing.assert_close(back(**enc).logits, model(**enc).logits, atol=0, rtol=0)
    assert json.loads((built[1] / "emorl_build.json").read_text())["options"]["vision_projector"] == "mlp2x_gelu"


def test_gate_weights_follow_the_sample(tmp_path):
    """With HumanOmni's gate, each clip is mixed with the weights of the sample it belongs to."""
    from emorl.models.parts.build import BuildOptions, compose, load_audio, load_fusion, load_llm, load_vision

    dirs = write_tiny_parts(tmp_path / "parts", bert=True)
    model, proc = compose(
        *load_llm(dirs["llm"]),
        *load_vision(dirs["vision"]),
        *load_audio(dirs["audio"]),
        BuildOptions(vision_projector="all_in_one_small", fusion_gate_hidden_size=8),
        *load_fusion(dirs["bert"]),
    )
    model.eval()
    weights = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    model.model.get_fusion_weights = lambda ids, mask=None: weights  # row 0: scene branch, row 1: face branch
    frames, wave = _clip(7)
    text_only = proc.apply_chat_template([{"role": "user", "content": "just text"}])
    enc = proc(
        [text_only, proc.apply_chat_template(MSG)],
        videos=[frames],
        audio=[wave],
        fusion_text=["just text", "which emotion?"],
    )
    with torch.no_grad():
        feats = model.get_media_features(
            enc["input_ids"], pixel_values_videos=enc["pixel_values_videos"], fusion_input_ids=enc["fusion_input_ids"]
        )
        face_only = model.model.get_video_features(enc["pixel_values_videos"], weights[1:])
        scene_only = model.model.get_video_features(enc["pixel_values_videos"], weights[:1])
    torch.testing.assert_close(feats["video"], face_only, atol=0, rtol=0)
    assert not torch.allclose(face_only, scene_only)
    with pytest.raises(ValueError, match="fusion_text is required"):
        proc(proc.apply_chat_template(MSG), videos=[frames], audio=[wave])


def test_cli_model_build(tmp_path):
    from emorl.cli import main
    from emorl.models.parts import EmorlOmniConfig

    dirs = write_tiny_parts(tmp_path / "parts")
    out = tmp_path / "built"
    rc = main(
        [
            "model",
            "build",
            "--llm",
            str(dirs["llm"]),
            "--vision",
            str(dirs["vision"]),
            "--audio",
            str(dirs["audio"]),
            "--out",
            str(out),
            "--vision-projector",
            "linear",
            "--spatial-pool",
            "1",
            "--audio-pool",
            "2",
            "--num-frames",
            "4",
        ]
    )
    assert rc == 0
    cfg = EmorlOmniConfig.from_pretrained(out)
    assert (cfg.vision_projector_type, cfg.vision_spatial_pool, cfg.audio_pool_stride) == ("linear", 1, 2)
    settings = json.loads((out / "emorl_processor.json").read_text())
    assert settings["num_frames"] == 4 and settings["geometry"]["grid"] == 4
    assert (
        main(
            [
                "model",
                "build",
                "--llm",
                str(dirs["llm"]),
                "--vision",
                str(dirs["vision"]),
                "--audio",
                str(dirs["audio"]),
                "--out",
                str(out),
            ]
        )
        == 2
    )  # refuses to overwrite a checkpoint


def test_gguf_file_detection(tmp_path):
    from emorl.models.parts.build import find_gguf

    (tmp_path / "a.gguf").write_bytes(b"")
    assert find_gguf(tmp_path, None) == "a.gguf"
    (tmp_path / "b.gguf").write_bytes(b"")
    with pytest.raises(ValueError, match="several GGUF files"):
        find_gguf(tmp_path, None)
    assert find_gguf(tmp_path, "b.gguf") == "b.gguf"
    with pytest.raises(FileNotFoundError):
        find_gguf(tmp_path, "c.gguf")
    (tmp_path / "config.json").write_text("{}")
    assert find_gguf(tmp_path, None) is None
