"""Tiny random parts (a Llama-shaped LLM with emorl's tiny tokenizer, a SigLIP vision encoder, a
Whisper encoder-decoder and a BERT) written as ordinary checkpoint folders, and a tiny
parts-family model built from them offline: for tests and CPU demos. ``init_tiny`` is the
family's builder behind ``emorl model init-tiny --family parts`` (emorl.models.tiny.init_tiny).
``train_tokenizer`` / ``build_config`` / ``model_class`` / ``build_processor`` build a random-weight
parts model of any size in memory, of the tiny architecture or HumanOmni-0.5B's
(``ARCHITECTURES``): benchmarks/grpo_step.py --family parts."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# a ChatML template that accepts string content (the parts processor flattens media items first)
CHATML = (
    "{% for m in messages %}{% if loop.first and m['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
BERT_WORDS = ("which", "emotion", "is", "in", "the", "video", "clip", "face", "voice", "expert", "?", ",", ".")


@dataclass
class TinyPartsShape:
    """Sizes of the tiny parts. SigLIP: image_size / patch -> a 4x4 grid; Whisper: 50 encoder
    positions = 100 mel frames = a 1 s window (chunk_length 1). intermediate 0: twice hidden;
    tie_embeddings None: the LLM family's usual (Llama tied, Qwen2 untied)."""

    hidden: int = 32
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    vocab_size: int = 400
    vision_hidden: int = 24
    vision_layers: int = 3
    image_size: int = 32
    patch_size: int = 8
    audio_hidden: int = 16
    mel_bins: int = 16
    audio_positions: int = 50
    bert_hidden: int = 16
    intermediate: int = 0
    vision_heads: int = 2
    audio_layers: int = 2
    tie_embeddings: bool | None = None


def tiny_tokenizer(vocab_size: int, corpus: Iterable[str] = ()):
    """A byte-level BPE ``PreTrainedTokenizerFast`` trained offline (emorl.models.tiny.train_bpe, on
    its base corpus and ``corpus``) with ChatML's specials (``<|endoftext|>`` pad, ``<|im_end|>``
    EOS) and the format tags."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import AddedToken, PreTrainedTokenizerFast

    from emorl.models.tiny import FORMAT_TOKENS, train_bpe

    specials = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
    vocab, merges = train_bpe(corpus, vocab_size, specials)
    bpe = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in FORMAT_TOKENS])
    tok.chat_template = CHATML
    return tok


def write_tiny_parts(
    out: str | Path,
    shape: TinyPartsShape | None = None,
    seed: int = 0,
    llm_family: str = "llama",
    bert: bool = False,
    corpus: Iterable[str] = (),
) -> dict[str, Path]:
    """Write {"llm", "vision", "audio"[, "bert"]} folders under ``out``; returns their paths.
    ``llm_family``: ``llama`` (tied embeddings unless the shape says otherwise) or ``qwen2``
    (untied); ``corpus``: extra text the tokenizer is trained on."""
    import torch
    from transformers import (
        BertConfig,
        BertModel,
        BertTokenizer,
        LlamaConfig,
        LlamaForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
        SiglipImageProcessor,
        SiglipVisionConfig,
        SiglipVisionModel,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
    )

    s = shape or TinyPartsShape()
    out = Path(out)
    torch.manual_seed(seed)
    tok = tiny_tokenizer(s.vocab_size, corpus)
    common = {
        "vocab_size": len(tok),
        "hidden_size": s.hidden,
        "intermediate_size": s.intermediate or 2 * s.hidden,
        "num_hidden_layers": s.layers,
        "num_attention_heads": s.heads,
        "num_key_value_heads": s.kv_heads,
        "pad_token_id": tok.pad_token_id,
        "eos_token_id": tok.eos_token_id,
    }
    if llm_family == "llama":
        tie = True if s.tie_embeddings is None else s.tie_embeddings
        llm = LlamaForCausalLM(LlamaConfig(**common, tie_word_embeddings=tie))
    elif llm_family == "qwen2":
        tie = False if s.tie_embeddings is None else s.tie_embeddings
        llm = Qwen2ForCausalLM(Qwen2Config(**common, tie_word_embeddings=tie))
    else:
        raise ValueError(f"llm_family: expected llama or qwen2, got {llm_family!r}")
    dirs = {k: out / k for k in ("llm", "vision", "audio")}
    llm.save_pretrained(dirs["llm"])
    tok.save_pretrained(dirs["llm"])
    vision = SiglipVisionModel(
        SiglipVisionConfig(
            hidden_size=s.vision_hidden,
            intermediate_size=2 * s.vision_hidden,
            num_hidden_layers=s.vision_layers,
            num_attention_heads=s.vision_heads,
            image_size=s.image_size,
            patch_size=s.patch_size,
        )
    )
    vision.save_pretrained(dirs["vision"])
    SiglipImageProcessor(size={"height": s.image_size, "width": s.image_size}).save_pretrained(dirs["vision"])
    audio = WhisperForConditionalGeneration(
        WhisperConfig(
            d_model=s.audio_hidden,
            encoder_layers=s.audio_layers,
            encoder_attention_heads=2,
            encoder_ffn_dim=2 * s.audio_hidden,
            decoder_layers=1,
            decoder_attention_heads=2,
            decoder_ffn_dim=2 * s.audio_hidden,
            num_mel_bins=s.mel_bins,
            max_source_positions=s.audio_positions,
            vocab_size=64,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=1,
        )
    )
    audio.save_pretrained(dirs["audio"])
    WhisperFeatureExtractor(feature_size=s.mel_bins, chunk_length=2 * s.audio_positions // 100).save_pretrained(
        dirs["audio"]
    )
    if bert:
        dirs["bert"] = out / "bert"
        vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *BERT_WORDS])}
        BertModel(
            BertConfig(
                vocab_size=len(vocab),
                hidden_size=s.bert_hidden,
                num_hidden_layers=1,
                num_attention_heads=2,
                intermediate_size=2 * s.bert_hidden,
            )
        ).save_pretrained(dirs["bert"])
        BertTokenizer(vocab=vocab).save_pretrained(dirs["bert"])
    return dirs


def init_tiny_parts(out: str | Path, shape: TinyPartsShape | None = None, seed: int = 0, **options) -> Path:
    """Write tiny parts under ``out/parts`` and build the parts-family model in ``out/model``."""
    from emorl.models.parts.build import BuildOptions, build_from_parts

    out = Path(out)
    dirs = write_tiny_parts(out / "parts", shape, seed)
    return build_from_parts(
        dirs["llm"], dirs["vision"], dirs["audio"], out / "model", options=BuildOptions(seed=seed, **options)
    )


# the tiny family model: SigLIP patches of 14 pixels (frames of frame_size, a multiple of 28: an even
# grid, pooled 2x2), a 4 s Whisper window (200 encoder frames, pooled by 4: 50 audio tokens)
TINY_PATCH, TINY_AUDIO_POSITIONS, TINY_AUDIO_POOL = 14, 200, 4


def init_tiny(out: Path, *, corpus: Iterable[str], shape, seed: int, frame_size: int, family: str = "parts") -> Path:
    """Build and save a tiny random-init parts model (called by ``emorl.models.tiny.init_tiny`` with
    its ``TinyShape``): a Llama-shaped LLM over emorl's tiny BPE (trained on ``corpus`` too), a SigLIP
    encoder of ``frame_size`` pixels (patch 14), a Whisper encoder (4 s window) and MLP projectors,
    composed as ``emorl model build`` does. Returns ``out``."""
    from emorl.models.parts.build import BuildOptions, compose, load_audio, load_llm, load_vision, save_checkpoint

    if family != "parts":
        raise ValueError(f"the parts tiny builder builds family 'parts', not {family!r}")
    parts = TinyPartsShape(
        hidden=shape.hidden,
        layers=shape.layers,
        heads=shape.heads,
        kv_heads=shape.kv_heads,
        intermediate=shape.intermediate,
        vocab_size=shape.vocab_size,
        vision_hidden=shape.vision_hidden,
        vision_layers=shape.vision_depth,
        vision_heads=shape.vision_heads,
        image_size=frame_size,
        patch_size=TINY_PATCH,
        audio_hidden=shape.audio_d_model,
        audio_layers=shape.audio_layers,
        audio_positions=TINY_AUDIO_POSITIONS,
        tie_embeddings=shape.tie_embeddings,
    )
    options = BuildOptions(audio_pool=TINY_AUDIO_POOL, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        dirs = write_tiny_parts(tmp, parts, seed, corpus=corpus)
        llm, tok = load_llm(dirs["llm"])
        model, proc = compose(llm, tok, *load_vision(dirs["vision"]), *load_audio(dirs["audio"]), options)
    return save_checkpoint(model, proc, out, {"tiny": {**parts.__dict__, "seed": seed}, "options": options.__dict__})


# ---- random-weight models of a given shape (benchmarks/grpo_step.py --family parts) ----------
# The builder interface of the other families' tiny builders (train_tokenizer, build_config,
# model_class, build_processor), building the composed model directly from its config: the
# weights are random (no parts written and copied), so any size builds in memory.
@dataclass(frozen=True)
class PartsArchitecture:
    """What a parts model's sizes (``TinyShape``) leave open. llm: ``llama`` or ``qwen2``; patch:
    the vision encoder's patch side (SigLIP); projector / spatial_pool: the vision projector;
    gate: HumanOmni's BERT gate over the three branches of an ``all_in_one*`` projector (a
    BERT-base of transformers' default sizes, gate width 3584); whisper_heads: the Whisper
    encoder's 64-wide heads and 4x FFN (else 2 heads and 2x FFN, as ``write_tiny_parts``);
    audio_positions / audio_pool / mel_bins: the Whisper window (2 mel frames a position, 100 a
    second) and its average pooling; num_frames / pad_to_square: the processor's settings."""

    llm: str = "llama"
    patch: int = TINY_PATCH
    projector: str = "mlp2x_gelu"
    spatial_pool: int = 2
    gate: bool = False
    whisper_heads: bool = False
    mel_bins: int = 16
    audio_positions: int = TINY_AUDIO_POSITIONS
    audio_pool: int = TINY_AUDIO_POOL
    vision_feature_layer: int = -2
    num_frames: int = 8
    pad_to_square: bool = False


ARCHITECTURES = {
    # the tiny parts of init_tiny: Llama LLM, SigLIP patch 14, MLP projectors, a 4 s Whisper window
    "tiny": PartsArchitecture(),
    # HumanOmni-0.5B / R1-Omni (docs/families-parts.md; R1-Omni's README and training script): a Qwen2
    # LLM, SigLIP-base-patch16-224 (penultimate layer), the three-branch all_in_one_small projector
    # mixed by the BERT gate, the whisper-large-v3 encoder (128 mels, 30 s: 1500 frames pooled by 3
    # to 500 tokens), 8 frames padded to square
    "humanomni-0.5b": PartsArchitecture(
        llm="qwen2",
        patch=16,
        projector="all_in_one_small",
        spatial_pool=1,
        gate=True,
        whisper_heads=True,
        mel_bins=128,
        audio_positions=1500,
        audio_pool=3,
        num_frames=8,
        pad_to_square=True,
    ),
}


def _architecture(arch: str | PartsArchitecture) -> PartsArchitecture:
    if isinstance(arch, PartsArchitecture):
        return arch
    try:
        return ARCHITECTURES[arch]
    except KeyError:
        raise ValueError(f"unknown parts architecture {arch!r}; expected one of {', '.join(ARCHITECTURES)}") from None


def train_tokenizer(corpus: Iterable[str], vocab_size: int, family: str = "parts"):
    """The tiny BPE (``tiny_tokenizer``) with the parts placeholders and their markers added."""
    from emorl.models.parts.build import add_placeholder_tokens

    tok = tiny_tokenizer(vocab_size, corpus)
    add_placeholder_tokens(tok)
    return tok


def build_config(tokenizer, shape, family: str = "parts", *, frame_size: int | None = None, architecture: str = "tiny"):
    """An ``EmorlOmniConfig`` of ``shape``'s sizes (``emorl.models.tiny.TinyShape``) and the named
    architecture (``ARCHITECTURES``), the vision encoder's input side ``frame_size`` (default: the
    registry's ``default_frame_size``)."""
    from transformers import BertConfig, LlamaConfig, Qwen2Config, SiglipVisionConfig, WhisperConfig

    from emorl.models.parts import EmorlOmniConfig
    from emorl.models.parts.build import PLACEHOLDERS
    from emorl.models.registry import family as registry_family

    if family != "parts":
        raise ValueError(f"the parts tiny builder builds family 'parts', not {family!r}")
    arch = _architecture(architecture)
    side = frame_size or registry_family("parts").default_frame_size
    if side % arch.patch:
        raise ValueError(f"frame_size {side} is not a multiple of the vision patch {arch.patch}")
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate or 2 * shape.hidden,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=bool(shape.tie_embeddings),
    )
    if arch.llm == "qwen2":  # Qwen2.5-0.5B's settings besides the sizes
        text_config = Qwen2Config(**text, max_position_embeddings=32768, rope_theta=1_000_000.0, rms_norm_eps=1e-6)
    elif arch.llm == "llama":
        text_config = LlamaConfig(**text)
    else:
        raise ValueError(f"llm: expected llama or qwen2, got {arch.llm!r}")
    d = shape.audio_d_model
    audio_heads, audio_ffn = (max(2, d // 64), 4 * d) if arch.whisper_heads else (2, 2 * d)
    audio_config = WhisperConfig(
        d_model=d,
        encoder_layers=shape.audio_layers,
        encoder_attention_heads=audio_heads,
        encoder_ffn_dim=audio_ffn,
        decoder_layers=1,
        decoder_attention_heads=audio_heads,
        decoder_ffn_dim=audio_ffn,
        num_mel_bins=arch.mel_bins,
        max_source_positions=arch.audio_positions,
        vocab_size=64,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    vision_config = SiglipVisionConfig(
        hidden_size=shape.vision_hidden,
        intermediate_size=shape.vision_ffn,
        num_hidden_layers=shape.vision_depth,
        num_attention_heads=shape.vision_heads,
        image_size=side,
        patch_size=arch.patch,
    )
    return EmorlOmniConfig(
        text_config=text_config,
        vision_config=vision_config,
        audio_config=audio_config,
        fusion_text_config=BertConfig() if arch.gate else None,
        fusion_type="bert_gate" if arch.gate else None,
        vision_feature_layer=arch.vision_feature_layer,
        vision_feature_select_strategy="full",
        vision_projector_type=arch.projector,
        vision_spatial_pool=arch.spatial_pool,
        audio_projector_type="mlp2x_gelu",
        audio_pool_stride=arch.audio_pool,
        **{f"{k}_token_id": tokenizer.convert_tokens_to_ids(t) for k, t in PLACEHOLDERS.items()},
    )


def model_class(family: str = "parts"):
    from emorl.models.parts import EmorlOmniForConditionalGeneration

    return EmorlOmniForConditionalGeneration


def build_processor(tokenizer, frame_pixels: int, family: str = "parts", *, config=None, architecture: str = "tiny"):
    """The ``EmorlOmniProcessor`` of a ``build_config`` model (``config``: its media geometry):
    SigLIP frames of side sqrt(frame_pixels), the Whisper window's log-mel features and, for a
    gated model, a BERT tokenizer over a few words (``BERT_WORDS``) for the instruction."""
    import math

    from transformers import BertTokenizer, SiglipImageProcessor, WhisperFeatureExtractor

    from emorl.models.parts import EmorlOmniProcessor
    from emorl.models.parts.build import MARKERS
    from emorl.models.parts.processing import ProcessorSettings

    if config is None:
        raise ValueError("build_processor of the parts family needs the model's config (its media geometry)")
    arch = _architecture(architecture)
    side = math.isqrt(frame_pixels)
    fusion = None
    if config.fusion_type is not None:  # the vocabulary of write_tiny_parts' BERT
        vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *BERT_WORDS])}
        fusion = BertTokenizer(vocab=vocab)
    settings = ProcessorSettings(
        geometry=config.media_geometry(),
        num_frames=arch.num_frames,
        pad_to_square=arch.pad_to_square,
        image_wrap=MARKERS["vision"],
        video_wrap=MARKERS["vision"],
        audio_wrap=MARKERS["audio"],
    )
    return EmorlOmniProcessor(
        tokenizer,
        SiglipImageProcessor(size={"height": side, "width": side}),
        WhisperFeatureExtractor(feature_size=arch.mel_bins, chunk_length=2 * arch.audio_positions // 100),
        settings,
        fusion_tokenizer=fusion,
    )
