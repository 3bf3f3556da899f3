"""Tiny random-init Qwen2.5-Omni and Qwen3-Omni (MoE) thinkers with their real checkpoints'
special tokens, chat-template placeholders, processor class and architecture (Qwen3-Omni: routed
experts, interleaved MRoPE, 16-pixel patches and deepstack visual features), at toy sizes."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from emorl.models.qwen import tiny as qtiny
from emorl.models.tiny import TinyShape

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|AUDIO|>",
    "<|audio_bos|>",
    "<|audio_eos|>",
    "<|vision_bos|>",
    "<|vision_eos|>",
    "<|IMAGE|>",
    "<|VIDEO|>",
)
# Qwen3-Omni's names for the same ten roles, in the same order
QWEN3_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|audio_pad|>",
    "<|audio_start|>",
    "<|audio_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# per family: its special tokens, vision patch side, and transformers' processor and thinker classes
_FAMILY = {
    "qwen2.5-omni": (SPECIAL_TOKENS, 14, "Qwen2_5OmniProcessor", "Qwen2_5OmniThinkerForConditionalGeneration"),
    "qwen3-omni": (QWEN3_SPECIAL_TOKENS, 16, "Qwen3OmniMoeProcessor", "Qwen3OmniMoeThinkerForConditionalGeneration"),
}


def _specials(family: str) -> dict[str, str]:
    """Role (Qwen2.5-Omni's token name) -> this family's token."""
    return dict(zip(SPECIAL_TOKENS, _FAMILY[family][0], strict=True))


def chat_template(family: str) -> str:
    """The tiny chat template with ``family``'s placeholder tokens: media blocks become
    bos / placeholder / eos triplets, as in the real checkpoints' templates."""
    t = _specials(family)
    return qtiny.chat_template(
        {
            "video": t["<|vision_bos|>"] + t["<|VIDEO|>"] + t["<|vision_eos|>"],
            "audio": t["<|audio_bos|>"] + t["<|AUDIO|>"] + t["<|audio_eos|>"],
            "image": t["<|vision_bos|>"] + t["<|IMAGE|>"] + t["<|vision_eos|>"],
        }
    )


def train_tokenizer(corpus: Iterable[str], vocab_size: int, family: str = "qwen2.5-omni"):
    """The tiny BPE wrapped as a Qwen2Tokenizer with ``family``'s Omni specials (ids 0-9)."""
    t = _specials(family)
    roles = {
        "image_token": t["<|IMAGE|>"],
        "video_token": t["<|VIDEO|>"],
        "audio_token": t["<|AUDIO|>"],
        "vision_bos_token": t["<|vision_bos|>"],
        "vision_eos_token": t["<|vision_eos|>"],
        "audio_bos_token": t["<|audio_bos|>"],
        "audio_eos_token": t["<|audio_eos|>"],
    }
    return qtiny.tokenizer(corpus, vocab_size, _FAMILY[family][0], roles, chat_template(family))


def build_processor(tokenizer, frame_pixels: int = 84 * 84, family: str = "qwen2.5-omni"):
    import transformers
    from transformers import WhisperFeatureExtractor
    from transformers.models.qwen2_vl import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    _, patch, processor, _ = _FAMILY[family]
    return getattr(transformers, processor)(
        image_processor=Qwen2VLImageProcessor(patch_size=patch),
        video_processor=Qwen2VLVideoProcessor(
            patch_size=patch, size={"shortest_edge": frame_pixels, "longest_edge": frame_pixels}
        ),
        feature_extractor=WhisperFeatureExtractor(feature_size=128, sampling_rate=16000),
        tokenizer=tokenizer,
        chat_template=chat_template(family),
    )


def build_config(tokenizer, shape: TinyShape, family: str = "qwen2.5-omni"):
    ids = {role: tokenizer.convert_tokens_to_ids(t) for role, t in _specials(family).items()}
    head_dim = shape.hidden // shape.heads
    mrope = qtiny.mrope_section(head_dim)  # temporal, height, width
    user = qtiny.user_token(tokenizer)
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=4096,
        tie_word_embeddings=shape.tie_embeddings,
    )
    vision = dict(
        depth=shape.vision_depth,
        hidden_size=shape.vision_hidden,
        intermediate_size=shape.vision_ffn,
        num_heads=shape.vision_heads,
        spatial_merge_size=2,
        temporal_patch_size=2,
        out_hidden_size=shape.hidden,
    )
    audio = dict(
        num_mel_bins=128,
        encoder_layers=shape.audio_layers,
        encoder_attention_heads=2,
        encoder_ffn_dim=2 * shape.audio_d_model,
        d_model=shape.audio_d_model,
        max_source_positions=1500,
        output_dim=shape.hidden,
    )
    if family == "qwen3-omni":
        from transformers import Qwen3OmniMoeThinkerConfig

        # routed experts (4, top 2) in every layer, interleaved MRoPE, deepstack from the first
        # vision block, 13 positions per second (the real checkpoint's thinker settings)
        text.update(
            head_dim=head_dim,
            moe_intermediate_size=shape.intermediate // 2,
            num_experts=4,
            num_experts_per_tok=2,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 1_000_000.0,
                "mrope_section": mrope,
                "mrope_interleaved": True,
            },
        )
        vision.update(patch_size=16, num_position_embeddings=64, deepstack_visual_indexes=[0])
        audio.update(downsample_hidden_size=16)
        return Qwen3OmniMoeThinkerConfig(
            text_config=text,
            vision_config=vision,
            audio_config=audio,
            audio_token_id=ids["<|AUDIO|>"],
            image_token_id=ids["<|IMAGE|>"],
            video_token_id=ids["<|VIDEO|>"],
            audio_start_token_id=ids["<|audio_bos|>"],
            vision_start_token_id=ids["<|vision_bos|>"],
            user_token_id=user,
            position_id_per_seconds=13,
            pad_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
        )
    from transformers import Qwen2_5OmniThinkerConfig

    text.update(rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": mrope})
    vision.update(patch_size=14, window_size=112, fullatt_block_indexes=[shape.vision_depth - 1])
    audio.update(n_window=100)
    cfg = Qwen2_5OmniThinkerConfig(
        text_config=text,
        vision_config=vision,
        audio_config=audio,
        audio_token_index=ids["<|AUDIO|>"],
        image_token_index=ids["<|IMAGE|>"],
        video_token_index=ids["<|VIDEO|>"],
        audio_start_token_id=ids["<|audio_bos|>"],
        audio_end_token_id=ids["<|audio_eos|>"],
        vision_start_token_id=ids["<|vision_bos|>"],
        vision_end_token_id=ids["<|vision_eos|>"],
        user_token_id=user,
        position_id_per_seconds=25,
        seconds_per_chunk=2,
        pad_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
    )
    # get_rope_index reads these from the config even though the class does not declare them
    cfg.vision_start_token_id = ids["<|vision_bos|>"]
    cfg.vision_end_token_id = ids["<|vision_eos|>"]
    return cfg


def model_class(family: str):
    """The transformers class of ``family``'s thinker."""
    import transformers

    return getattr(transformers, _FAMILY[family][3])


def init_tiny(out: Path, *, corpus: Iterable[str], shape: TinyShape, seed: int, frame_size: int, family: str) -> Path:
    """Build and save a tiny random-init thinker of ``family`` (``qwen2.5-omni`` or ``qwen3-omni``)
    with its tokenizer and processor into ``out`` (called by ``emorl.models.tiny.init_tiny``)."""
    import torch

    tok = train_tokenizer(corpus, shape.vocab_size, family)
    proc = build_processor(tok, frame_size * frame_size, family)
    cfg = build_config(tok, shape, family)
    torch.manual_seed(seed)
    model = model_class(family)(cfg)
    return qtiny.save(out, model, proc, frame_size)
