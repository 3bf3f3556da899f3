"""Tiny random-init Qwen2.5-Omni and Qwen3-Omni (MoE) thinkers, with a byte-level BPE tokenizer and
a processor built offline, saved with ``save_pretrained`` so they load exactly like a real
checkpoint directory. Each family keeps its real checkpoint's special tokens, chat-template
placeholders, processor class and architecture (Qwen3-Omni: routed experts, interleaved MRoPE,
16-pixel patches and deepstack visual features), at toy sizes.

The tokenizer is trained on a small corpus (built-in emotion vocabulary and prompts, plus any
text the caller passes, e.g. cold-start traces), so short completions are few tokens and a tiny
model can learn them on a CPU.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>",
    "<|vision_bos|>", "<|vision_eos|>", "<|IMAGE|>", "<|VIDEO|>",
)
# Qwen3-Omni's names for the same ten roles, in the same order
QWEN3_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_pad|>", "<|audio_start|>", "<|audio_end|>",
    "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>",
)
# per family: its special tokens, vision patch side, and transformers' processor and thinker classes
_FAMILY = {
    "qwen2.5-omni": (SPECIAL_TOKENS, 14, "Qwen2_5OmniProcessor", "Qwen2_5OmniThinkerForConditionalGeneration"),
    "qwen3-omni": (QWEN3_SPECIAL_TOKENS, 16, "Qwen3OmniMoeProcessor", "Qwen3OmniMoeThinkerForConditionalGeneration"),
}
FAMILIES = tuple(_FAMILY)
# Ordinary (decoded) tokens that the recipes' formats use: one token each helps a tiny model.
FORMAT_TOKENS = ("<think>", "</think>", "<answer>", "</answer>", "<step1>", "</step1>", "<step2>", "</step2>",
                 "<step3>", "</step3>", "\\boxed{")

# Jinja chat template in Qwen2.5-Omni's shape: media blocks become bos/placeholder/eos triplets.
CHAT_TEMPLATE = (
    "{% set sys = namespace(done=false) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'video' %}<|vision_bos|><|VIDEO|><|vision_eos|>"
    "{% elif content['type'] == 'audio' %}<|audio_bos|><|AUDIO|><|audio_eos|>"
    "{% elif content['type'] == 'image' %}<|vision_bos|><|IMAGE|><|vision_eos|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _family(family: str) -> tuple:
    if family not in _FAMILY:
        raise ValueError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")
    return _FAMILY[family]


def _specials(family: str) -> tuple[str, ...]:
    return _family(family)[0]


def chat_template(family: str) -> str:
    """The tiny chat template with ``family``'s placeholder tokens."""
    text = CHAT_TEMPLATE
    for old, new in zip(SPECIAL_TOKENS, _specials(family), strict=True):
        text = text.replace(old, new)
    return text

BASE_CORPUS = """
As an emotional recognition expert; throughout the video, which emotion conveyed by the characters is the most obvious to you?
As an emotional recognition expert, in the video, when the characters display their emotions, which predominant feeling is most clearly expressed?
Output the thinking process in <think> </think> and final emotion in <answer> </answer> tags.
You First think the emotional meaning step by step, and then provide the final answer.
The reasoning process MUST follow the structure below:
<step1>Identify what in the clip could trigger emotion (face, action, scene, tone, intonation, words).</step1>
<step2>Describe how a human would feel about it.</step2>
<step3>Conclude if the emotion is positive or negative, and if it's high or low arousal.</step3>
The final answer MUST BE put in \\boxed{}.
Which emotion best describes the text above? Answer the question using one emotional category (one word only):
Can the following text describe the video? Please answer with yes or no.
Can the following text describe the audio? Please answer with yes or no.
yes no positive negative high low arousal valence the face the voice the video the audio
"""


# Emotion words the tiny tokenizer learns as single tokens. Frozen (it was the label vocabulary's
# word list when the demo's results were recorded): a new label must not change the demo's tokenizer.
TOKENIZER_WORDS = (
    "happy", "sad", "neutral", "angry", "surprise", "disgust", "fear", "contempt", "anxiety", "helplessness",
    "disappointment", "calm", "happiness", "joy", "joyful", "glad", "hap", "sadness", "sorrow", "unhappy", "anger",
    "mad", "ang", "furious", "surprised", "astonished", "amazed", "disgusted", "dis", "fearful", "afraid", "scared",
    "fea", "frightened", "contemptuous", "anxious", "worried", "worry", "nervous", "helpless", "disappointed", "neu",
    "relaxed",
)


@dataclass
class TinyShape:
    """Sizes of a tiny thinker. Defaults: ~2M parameters, fast on a CPU core."""

    hidden: int = 128
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 256
    vision_hidden: int = 64
    vision_depth: int = 2
    audio_d_model: int = 64
    audio_layers: int = 2
    vocab_size: int = 1024


def train_tokenizer(corpus: Iterable[str], vocab_size: int, family: str = "qwen2.5-omni"):
    """Byte-level BPE trained on ``corpus`` and wrapped as a Qwen2Tokenizer with ``family``'s Omni
    specials (ids 0-9, in ``SPECIAL_TOKENS`` order)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import AddedToken, Qwen2Tokenizer

    specials = _specials(family)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(FORMAT_TOKENS),
        special_tokens=list(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    words = " ".join(TOKENIZER_WORDS) + "\n"
    # Label words repeated so each becomes one token (with and without a leading space).
    texts = [BASE_CORPUS, *(words for _ in range(50)), *corpus]
    bpe.train_from_iterator(texts, trainer=trainer)
    state = bpe.get_vocab()
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in _merges_of(bpe)]
    _, _, _, audio, audio_bos, audio_eos, vision_bos, vision_eos, image, video = specials
    tok = Qwen2Tokenizer(
        vocab=state,
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={
            "image_token": image, "video_token": video, "audio_token": audio,
            "vision_bos_token": vision_bos, "vision_eos_token": vision_eos,
            "audio_bos_token": audio_bos, "audio_eos_token": audio_eos,
        },
    )
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in FORMAT_TOKENS])
    tok.chat_template = chat_template(family)
    return tok


def _merges_of(bpe) -> list:
    return json.loads(bpe.to_str())["model"]["merges"]


def patch_factor(family: str) -> int:
    """Frame sides must be multiples of this (patch size x spatial merge)."""
    return 2 * _family(family)[1]


def build_processor(tokenizer, frame_pixels: int = 84 * 84, family: str = "qwen2.5-omni"):
    import transformers
    from transformers import WhisperFeatureExtractor
    from transformers.models.qwen2_vl import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    _, patch, processor, _ = _family(family)
    return getattr(transformers, processor)(
        image_processor=Qwen2VLImageProcessor(patch_size=patch),
        video_processor=Qwen2VLVideoProcessor(patch_size=patch,
                                              size={"shortest_edge": frame_pixels, "longest_edge": frame_pixels}),
        feature_extractor=WhisperFeatureExtractor(feature_size=128, sampling_rate=16000),
        tokenizer=tokenizer,
        chat_template=chat_template(family),
    )


def build_config(tokenizer, shape: TinyShape, family: str = "qwen2.5-omni"):
    ids = {role: tokenizer.convert_tokens_to_ids(t) for role, t in zip(SPECIAL_TOKENS, _specials(family))}
    head_dim = shape.hidden // shape.heads
    half = head_dim // 2
    mrope = [half - 2 * (half * 3 // 8), half * 3 // 8, half * 3 // 8]  # temporal, height, width
    vocab = len(tokenizer)
    user = tokenizer.convert_tokens_to_ids("user") if "user" in tokenizer.get_vocab() else ids["<|im_start|>"]
    text = dict(vocab_size=vocab, hidden_size=shape.hidden, intermediate_size=shape.intermediate,
                num_hidden_layers=shape.layers, num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads,
                max_position_embeddings=4096, tie_word_embeddings=False)
    vision = dict(depth=shape.vision_depth, hidden_size=shape.vision_hidden, intermediate_size=2 * shape.vision_hidden,
                  num_heads=2, spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=shape.hidden)
    audio = dict(num_mel_bins=128, encoder_layers=shape.audio_layers, encoder_attention_heads=2,
                 encoder_ffn_dim=2 * shape.audio_d_model, d_model=shape.audio_d_model, max_source_positions=1500,
                 output_dim=shape.hidden)
    if family == "qwen3-omni":
        from transformers import Qwen3OmniMoeThinkerConfig

        # routed experts (4, top 2) in every layer, interleaved MRoPE, deepstack from the first
        # vision block, 13 positions per second (the real checkpoint's thinker settings)
        text.update(head_dim=head_dim, moe_intermediate_size=shape.intermediate // 2, num_experts=4,
                    num_experts_per_tok=2,
                    rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": mrope,
                                     "mrope_interleaved": True})
        vision.update(patch_size=16, num_position_embeddings=64, deepstack_visual_indexes=[0])
        audio.update(downsample_hidden_size=16)
        return Qwen3OmniMoeThinkerConfig(
            text_config=text, vision_config=vision, audio_config=audio,
            audio_token_id=ids["<|AUDIO|>"], image_token_id=ids["<|IMAGE|>"], video_token_id=ids["<|VIDEO|>"],
            audio_start_token_id=ids["<|audio_bos|>"], vision_start_token_id=ids["<|vision_bos|>"],
            user_token_id=user, position_id_per_seconds=13,
            pad_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
        )
    from transformers import Qwen2_5OmniThinkerConfig

    text.update(rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": mrope})
    vision.update(patch_size=14, window_size=112, fullatt_block_indexes=[shape.vision_depth - 1])
    audio.update(n_window=100)
    cfg = Qwen2_5OmniThinkerConfig(
        text_config=text, vision_config=vision, audio_config=audio,
        audio_token_index=ids["<|AUDIO|>"], image_token_index=ids["<|IMAGE|>"], video_token_index=ids["<|VIDEO|>"],
        audio_start_token_id=ids["<|audio_bos|>"], audio_end_token_id=ids["<|audio_eos|>"],
        vision_start_token_id=ids["<|vision_bos|>"], vision_end_token_id=ids["<|vision_eos|>"],
        user_token_id=user, position_id_per_seconds=25, seconds_per_chunk=2,
        pad_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
    )
    # get_rope_index reads these from the config even though the class does not declare them
    cfg.vision_start_token_id = ids["<|vision_bos|>"]
    cfg.vision_end_token_id = ids["<|vision_eos|>"]
    return cfg


def init_tiny(out: str | Path, *, corpus: Iterable[str] = (), shape: TinyShape | None = None, seed: int = 0,
              frame_size: int | None = None, family: str = "qwen2.5-omni") -> Path:
    """Build and save a tiny random-init thinker of ``family`` (``FAMILIES``), its tokenizer and
    processor into ``out``. ``frame_size``: the frame side the processor resizes to (default 84
    for Qwen2.5-Omni, 96 for Qwen3-Omni: 3 x 3 merged patches)."""
    import torch
    import transformers

    shape = shape or TinyShape()
    out = Path(out)
    factor = patch_factor(family)
    frame_size = 3 * factor if frame_size is None else frame_size
    if frame_size <= 0 or frame_size % factor:
        raise ValueError(f"frame_size must be a multiple of {factor} for {family} (patch {factor // 2} x merge 2), "
                         f"got {frame_size}")
    tok = train_tokenizer(corpus, shape.vocab_size, family)
    proc = build_processor(tok, frame_size * frame_size, family)
    cfg = build_config(tok, shape, family)
    torch.manual_seed(seed)
    model = getattr(transformers, _family(family)[3])(cfg)
    model.generation_config = transformers.GenerationConfig(eos_token_id=tok.eos_token_id,
                                                            pad_token_id=tok.pad_token_id)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    proc.save_pretrained(out)
    (out / "emorl_model.json").write_text(json.dumps({"frame_pixels": frame_size * frame_size}) + "\n")
    return out
