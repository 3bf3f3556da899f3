"""The family registry: a checkpoint's config.json picks its adapter, unknown model types are a
clear error, and each family's tiny builder writes the real family's model type, processor
class, special tokens and chat-template placeholders."""

import json

import pytest
import torch
from family_helpers import FAMILY_NAMES

from emorl.models import registry
from emorl.models.adapter import Modality

EXPECTED = {  # model_type, processor class, video placeholder token, audio placeholder token
    "qwen2.5-omni": ("qwen2_5_omni_thinker", "Qwen2_5OmniProcessor", "<|VIDEO|>", "<|AUDIO|>"),
    "qwen3-omni": ("qwen3_omni_moe_thinker", "Qwen3OmniMoeProcessor", "<|video_pad|>", "<|audio_pad|>"),
    "qwen2.5-vl": ("qwen2_5_vl", "Qwen2_5_VLProcessor", "<|video_pad|>", None),
    "qwen3-vl": ("qwen3_vl", "Qwen3VLProcessor", "<|video_pad|>", None),
    "parts": ("emorl_omni", "EmorlOmniProcessor", "<|video_pad|>", "<|audio_pad|>"),
}


def test_every_family_has_an_expectation():
    assert set(EXPECTED) == set(registry.FAMILIES) == set(FAMILY_NAMES)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_tiny_checkpoint_is_the_family_and_loads_through_the_registry(tiny_dir_of, family):
    d = tiny_dir_of(family)
    model_type, processor, video, audio = EXPECTED[family]
    assert json.loads((d / "config.json").read_text())["model_type"] == model_type
    assert registry.family_of_checkpoint(d).name == family
    ad = registry.load_adapter(d)
    proc = ad.processor  # AutoProcessor's for the Qwen families; the parts family saves its own
    assert type(proc).__name__ == processor
    assert ad.family == family and type(ad).__name__ == registry.resolve(registry.FAMILIES[family].adapter).__name__
    assert {m.value for m in ad.modalities} == set(registry.FAMILIES[family].modalities)
    vocab = proc.tokenizer.get_vocab()
    assert ad.placeholder_ids()["video"] == vocab[video]
    if audio:
        assert ad.placeholder_ids()["audio"] == vocab[audio] and "audio" in ad.towers()
    else:
        assert "audio" not in ad.placeholder_ids() and set(ad.towers()) == {"vision"}
    rendered = proc.apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "hi"}]}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert video in rendered and rendered.endswith("<|im_start|>assistant\n")
    # anatomy: the LM head and decoder layers are the model's own
    assert ad.lm_head() is ad.model.get_output_embeddings()
    assert len(ad.decoder_layers()) == 2 and all(isinstance(m, torch.nn.Module) for m in ad.decoder_layers())


def test_unknown_model_type_lists_the_known_ones(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(
        ValueError, match="no emorl model family reads model_type 'llama'; known model types: .*qwen2_5_vl"
    ):
        registry.load_adapter(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["X"]}))
    with pytest.raises(ValueError, match="no model_type field"):
        registry.family_of_checkpoint(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        registry.load_adapter(tmp_path)
    with pytest.raises(FileNotFoundError, match="model directory not found"):
        registry.load_adapter(tmp_path / "missing" / "model")


def test_unknown_family_and_bad_frame_size(tmp_path):
    from emorl.models.tiny import init_tiny

    with pytest.raises(ValueError, match="unknown model family 'gpt'; expected one of qwen2.5-omni, qwen3-omni"):
        init_tiny(tmp_path / "x", family="gpt")
    with pytest.raises(ValueError, match="frame_size must be a multiple of 32 for qwen3-vl"):
        init_tiny(tmp_path / "x", family="qwen3-vl", frame_size=56)
    assert not (tmp_path / "x").exists()


def test_vl_prompt_layouts(tiny_dir_of):
    """Qwen2.5-VL: one vision_start/video_pad run/vision_end block with seconds per temporal patch
    from the frames' rate; Qwen3-VL: a timestamp and a vision_start/end pair per temporal patch."""
    import numpy as np

    frames = np.random.default_rng(0).integers(0, 255, (8, 56, 56, 3), dtype=np.uint8)
    q25 = registry.load_adapter(tiny_dir_of("qwen2.5-vl"))
    p = q25.encode(frames, None, "Which emotion?", Modality.VIDEO, fps=4.0)
    assert float(p.mm["second_per_grid_ts"]) == pytest.approx(0.5)  # temporal patch 2 / 4 fps
    assert q25.tokenizer.decode(p.input_ids).count("<|vision_start|>") == 1
    q3 = registry.load_adapter(tiny_dir_of("qwen3-vl"))
    p = q3.encode(frames, None, "Which emotion?", Modality.VIDEO, fps=4.0)
    text = q3.tokenizer.decode(p.input_ids)
    assert p.mm["video_grid_thw"].tolist() == [[4, 4, 4]]  # 8 frames of 64 px (the tiny model's per-frame budget)
    assert text.count("<|vision_start|>") == 4 and "<0.1 seconds>" in text and "<1.6 seconds>" in text


def test_init_tiny_command_builds_a_parts_model(tmp_path, capsys):
    """`emorl model init-tiny --family parts`: the single init_tiny entry, through the CLI, writes a
    parts checkpoint the registry loads (SigLIP at the frame size, patch 14)."""
    from emorl.cli import main

    out = tmp_path / "parts"
    assert (
        main(
            [
                "model",
                "init-tiny",
                "--family",
                "parts",
                "--out",
                str(out),
                "--hidden",
                "32",
                "--layers",
                "1",
                "--vocab-size",
                "400",
                "--frame-size",
                "28",
            ]
        )
        == 0
    )
    assert "tiny parts model written" in capsys.readouterr().out
    ad = registry.load_adapter(out)
    assert ad.family == "parts" and ad.model.config.vision_config.image_size == 28
    assert len(ad.decoder_layers()) == 1 and ad.processor.video_tokens(8) == 8  # 2x2 patches pooled to 1 a frame
