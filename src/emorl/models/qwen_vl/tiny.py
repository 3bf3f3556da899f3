"""Tiny random-init Qwen2.5-VL and Qwen3-VL models with the real checkpoints' special tokens
(``<|vision_start|>``, ``<|video_pad|>``, ``<|image_pad|>``, ...), processor classes, chat-template
placeholders and architecture at toy sizes: Qwen2.5-VL's windowed vision tower (14-pixel patches)
and M-RoPE with temporal positions scaled by ``tokens_per_second``; Qwen3-VL's 16-pixel patches,
learned position embeddings, deepstack features and interleaved M-RoPE, with its processor's
per-frame timestamps."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from emorl.models.qwen import tiny as qtiny
from emorl.models.tiny import TinyShape

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# per family: vision patch side, processor class, model class, and the chat template's video block.
# Qwen3-VL's processor writes "<t seconds><|vision_start|><|video_pad|>...<|vision_end|>" per frame
# itself, so its template gives the bare placeholder (transformers 5 does not strip an outer pair).
_FAMILY = {
    "qwen2.5-vl": (
        14,
        "Qwen2_5_VLProcessor",
        "Qwen2_5_VLForConditionalGeneration",
        "<|vision_start|><|video_pad|><|vision_end|>",
    ),
    "qwen3-vl": (16, "Qwen3VLProcessor", "Qwen3VLForConditionalGeneration", "<|video_pad|>"),
}


def chat_template(family: str) -> str:
    return qtiny.chat_template({"video": _FAMILY[family][3], "image": "<|vision_start|><|image_pad|><|vision_end|>"})


def train_tokenizer(corpus: Iterable[str], vocab_size: int, family: str = "qwen2.5-vl"):
    roles = {
        "image_token": "<|image_pad|>",
        "video_token": "<|video_pad|>",
        "vision_start_token": "<|vision_start|>",
        "vision_end_token": "<|vision_end|>",
    }
    return qtiny.tokenizer(corpus, vocab_size, SPECIAL_TOKENS, roles, chat_template(family))


def build_processor(tokenizer, frame_pixels: int, family: str = "qwen2.5-vl"):
    import transformers
    from transformers.models.qwen2_vl import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    patch, processor, _, _ = _FAMILY[family]
    size = {"shortest_edge": frame_pixels, "longest_edge": frame_pixels}
    if family == "qwen3-vl":
        from transformers.models.qwen3_vl import Qwen3VLVideoProcessor

        # emorl samples the frames itself: the processor keeps them (no resampling at 2 fps)
        video = Qwen3VLVideoProcessor(patch_size=patch, size=size, do_sample_frames=False)
    else:
        video = Qwen2VLVideoProcessor(patch_size=patch, size=size)
    return getattr(transformers, processor)(
        image_processor=Qwen2VLImageProcessor(patch_size=patch),
        video_processor=video,
        tokenizer=tokenizer,
        chat_template=chat_template(family),
    )


def build_config(tokenizer, shape: TinyShape, family: str = "qwen2.5-vl"):
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    head_dim = shape.hidden // shape.heads
    rope = {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": qtiny.mrope_section(head_dim)}
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": shape.hidden,
        "intermediate_size": shape.intermediate,
        "num_hidden_layers": shape.layers,
        "num_attention_heads": shape.heads,
        "num_key_value_heads": shape.kv_heads,
        "max_position_embeddings": 4096,
        "pad_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "bos_token_id": None,
    }
    vision = {
        "depth": shape.vision_depth,
        "hidden_size": shape.vision_hidden,
        "intermediate_size": shape.vision_ffn,
        "num_heads": shape.vision_heads,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "out_hidden_size": shape.hidden,
    }
    special = {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
    }
    if family == "qwen3-vl":
        from transformers import Qwen3VLConfig

        # interleaved M-RoPE, deepstack from the first vision block (the real model: blocks 8, 16, 24)
        text.update(head_dim=head_dim, rope_parameters={**rope, "mrope_interleaved": True})
        vision.update(patch_size=16, num_position_embeddings=64, deepstack_visual_indexes=[0])
        return Qwen3VLConfig(
            text_config=text, vision_config=vision, tie_word_embeddings=shape.tie_embeddings, **special
        )
    from transformers import Qwen2_5_VLConfig

    # 2 temporal positions per second, as the released checkpoints
    vision.update(patch_size=14, window_size=112, fullatt_block_indexes=[shape.vision_depth - 1], tokens_per_second=2)
    return Qwen2_5_VLConfig(
        text_config={**text, "rope_parameters": rope},
        vision_config=vision,
        tie_word_embeddings=shape.tie_embeddings,
        **special,
    )


def model_class(family: str):
    """The transformers class of ``family``'s model."""
    import transformers

    return getattr(transformers, _FAMILY[family][2])


def init_tiny(out: Path, *, corpus: Iterable[str], shape: TinyShape, seed: int, frame_size: int, family: str) -> Path:
    """Build and save a tiny random-init ``family`` model (``qwen2.5-vl`` or ``qwen3-vl``) with its
    tokenizer and processor into ``out`` (called by ``emorl.models.tiny.init_tiny``)."""
    import torch

    tok = train_tokenizer(corpus, shape.vocab_size, family)
    proc = build_processor(tok, frame_size * frame_size, family)
    cfg = build_config(tok, shape, family)
    torch.manual_seed(seed)
    model = model_class(family)(cfg)
    return qtiny.save(out, model, proc, frame_size)
