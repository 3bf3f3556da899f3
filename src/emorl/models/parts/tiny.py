"""Tiny random parts (a Llama-shaped LLM with emorl's tiny tokenizer, a SigLIP vision encoder, a
Whisper encoder-decoder and a BERT) written as ordinary checkpoint folders, and a tiny
parts-family model built from them offline: for tests and CPU demos."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# a ChatML template that accepts string content (the parts processor flattens media items first)
CHATML = ("{% for m in messages %}{% if loop.first and m['role'] != 'system' %}<|im_start|>system\n"
          "You are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
          "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
BERT_WORDS = ("which", "emotion", "is", "in", "the", "video", "clip", "face", "voice", "expert", "?", ",", ".")


@dataclass
class TinyPartsShape:
    """Sizes of the tiny parts. SigLIP: image_size / patch -> a 4x4 grid; Whisper: 50 encoder
    positions = 100 mel frames = a 1 s window (chunk_length 1)."""

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


def tiny_tokenizer(vocab_size: int):
    """A byte-level BPE ``PreTrainedTokenizerFast`` trained offline (emorl.models.tiny.train_bpe) with
    ChatML's specials (``<|endoftext|>`` pad, ``<|im_end|>`` EOS) and the format tags."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import AddedToken, PreTrainedTokenizerFast

    from emorl.models.tiny import FORMAT_TOKENS, train_bpe

    specials = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
    vocab, merges = train_bpe([], vocab_size, specials)
    bpe = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in FORMAT_TOKENS])
    tok.chat_template = CHATML
    return tok


def write_tiny_parts(out: str | Path, shape: TinyPartsShape | None = None, seed: int = 0,
                     llm_family: str = "llama", bert: bool = False) -> dict[str, Path]:
    """Write {"llm", "vision", "audio"[, "bert"]} folders under ``out``; returns their paths.
    ``llm_family``: ``llama`` (tied embeddings) or ``qwen2`` (untied)."""
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
    tok = tiny_tokenizer(s.vocab_size)
    common = {"vocab_size": len(tok), "hidden_size": s.hidden, "intermediate_size": 2 * s.hidden,
              "num_hidden_layers": s.layers, "num_attention_heads": s.heads, "num_key_value_heads": s.kv_heads,
              "pad_token_id": tok.pad_token_id, "eos_token_id": tok.eos_token_id}
    if llm_family == "llama":
        llm = LlamaForCausalLM(LlamaConfig(**common, tie_word_embeddings=True))
    elif llm_family == "qwen2":
        llm = Qwen2ForCausalLM(Qwen2Config(**common, tie_word_embeddings=False))
    else:
        raise ValueError(f"llm_family: expected llama or qwen2, got {llm_family!r}")
    dirs = {k: out / k for k in ("llm", "vision", "audio")}
    llm.save_pretrained(dirs["llm"])
    tok.save_pretrained(dirs["llm"])
    vision = SiglipVisionModel(SiglipVisionConfig(
        hidden_size=s.vision_hidden, intermediate_size=2 * s.vision_hidden, num_hidden_layers=s.vision_layers,
        num_attention_heads=2, image_size=s.image_size, patch_size=s.patch_size))
    vision.save_pretrained(dirs["vision"])
    SiglipImageProcessor(size={"height": s.image_size, "width": s.image_size}).save_pretrained(dirs["vision"])
    audio = WhisperForConditionalGeneration(WhisperConfig(
        d_model=s.audio_hidden, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=2 * s.audio_hidden,
        decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=2 * s.audio_hidden, num_mel_bins=s.mel_bins,
        max_source_positions=s.audio_positions, vocab_size=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        decoder_start_token_id=1))
    audio.save_pretrained(dirs["audio"])
    WhisperFeatureExtractor(feature_size=s.mel_bins, chunk_length=2 * s.audio_positions // 100
                            ).save_pretrained(dirs["audio"])
    if bert:
        dirs["bert"] = out / "bert"
        vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *BERT_WORDS])}
        BertModel(BertConfig(vocab_size=len(vocab), hidden_size=s.bert_hidden, num_hidden_layers=1,
                             num_attention_heads=2, intermediate_size=2 * s.bert_hidden)).save_pretrained(dirs["bert"])
        BertTokenizer(vocab=vocab).save_pretrained(dirs["bert"])
    return dirs


def init_tiny_parts(out: str | Path, shape: TinyPartsShape | None = None, seed: int = 0, **options) -> Path:
    """Write tiny parts under ``out/parts`` and build the parts-family model in ``out/model``."""
    from emorl.models.parts.build import BuildOptions, build_from_parts

    out = Path(out)
    dirs = write_tiny_parts(out / "parts", shape, seed)
    return build_from_parts(dirs["llm"], dirs["vision"], dirs["audio"], out / "model",
                            options=BuildOptions(seed=seed, **options))
