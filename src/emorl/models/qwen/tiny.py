"""Pieces the Qwen families' tiny builders share: a ``Qwen2Tokenizer`` over emorl's tiny BPE with
the family's special tokens, a chat template in Qwen's shape, the M-RoPE section split and saving."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from emorl.models.tiny import FORMAT_TOKENS, train_bpe


def chat_template(blocks: dict[str, str]) -> str:
    """A Qwen chat template (default system turn, ChatML turns) rendering each content block by
    its ``type`` with ``blocks[type]`` (e.g. ``{"video": "<|vision_bos|><|VIDEO|><|vision_eos|>"}``);
    text blocks as their text."""
    media = "".join(
        f"{{% {'if' if i == 0 else 'elif'} content['type'] == '{kind}' %}}{block}"
        for i, (kind, block) in enumerate(blocks.items())
    )
    return (
        "{% for message in messages %}"
        "{% if loop.first and message['role'] != 'system' %}"
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "{% endif %}"
        "<|im_start|>{{ message['role'] }}\n"
        "{% if message['content'] is string %}{{ message['content'] }}"
        "{% else %}{% for content in message['content'] %}"
        f"{media}"
        "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
        "{% endfor %}{% endif %}"
        "<|im_end|>\n"
        "{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )


def tokenizer(corpus: Iterable[str], vocab_size: int, specials: tuple[str, ...], roles: dict[str, str], template: str):
    """A ``Qwen2Tokenizer`` over the tiny BPE: ``specials`` at ids 0.. (``<|endoftext|>`` pad,
    ``<|im_start|>``, ``<|im_end|>`` EOS first), ``roles`` the processor's named specials
    (image_token, video_token, ...), ``template`` its chat template."""
    from transformers import AddedToken, Qwen2Tokenizer

    vocab, merges = train_bpe(corpus, vocab_size, specials)
    tok = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=roles,
    )
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in FORMAT_TOKENS])
    tok.chat_template = template
    return tok


def mrope_section(head_dim: int) -> list[int]:
    """Temporal, height, width shares of the rotary half-dimension (sum = head_dim // 2)."""
    half = head_dim // 2
    return [half - 2 * (half * 3 // 8), half * 3 // 8, half * 3 // 8]


def user_token(tok) -> int:
    return tok.convert_tokens_to_ids("user") if "user" in tok.get_vocab() else tok.convert_tokens_to_ids("<|im_start|>")


def save(out: Path, model, processor, frame_size: int) -> Path:
    """``save_pretrained`` of model and processor, the generation config's EOS / pad, and the
    frame budget hint (``emorl_model.json``) the adapter reads back."""
    import transformers

    tok = processor.tokenizer
    model.generation_config = transformers.GenerationConfig(
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "emorl_model.json").write_text(json.dumps({"frame_pixels": frame_size * frame_size}) + "\n")
    return out
