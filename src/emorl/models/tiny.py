"""Tiny random-init checkpoints of every model family, built offline: one entry point
(``init_tiny(out, family=...)``) over the per-family builders named in the registry
(``emorl.models.registry.FAMILIES[...].tiny``). Each builder keeps its real checkpoint's special
tokens, chat-template placeholders, processor class and architecture at toy sizes, and saves with
``save_pretrained`` so the result loads exactly like a real checkpoint directory.

The pieces every builder shares live here: the shape (``TinyShape``), the tokenizer corpus and a
byte-level BPE trained on it (built-in emotion vocabulary and prompts, plus any text the caller
passes, e.g. cold-start traces), so short completions are few tokens and a tiny model can learn
them on a CPU.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from emorl.models.registry import FAMILIES as _REGISTRY
from emorl.models.registry import family as _family
from emorl.models.registry import resolve

FAMILIES = tuple(_REGISTRY)
# Ordinary (decoded) tokens that the recipes' formats use: one token each helps a tiny model.
FORMAT_TOKENS = (
    "<think>",
    "</think>",
    "<answer>",
    "</answer>",
    "<step1>",
    "</step1>",
    "<step2>",
    "</step2>",
    "<step3>",
    "</step3>",
    "\\boxed{",
)

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
    "happy",
    "sad",
    "neutral",
    "angry",
    "surprise",
    "disgust",
    "fear",
    "contempt",
    "anxiety",
    "helplessness",
    "disappointment",
    "calm",
    "happiness",
    "joy",
    "joyful",
    "glad",
    "hap",
    "sadness",
    "sorrow",
    "unhappy",
    "anger",
    "mad",
    "ang",
    "furious",
    "surprised",
    "astonished",
    "amazed",
    "disgusted",
    "dis",
    "fearful",
    "afraid",
    "scared",
    "fea",
    "frightened",
    "contemptuous",
    "anxious",
    "worried",
    "worry",
    "nervous",
    "helpless",
    "disappointed",
    "neu",
    "relaxed",
)


@dataclass
class TinyShape:
    """Sizes of a tiny model. Defaults: ~2M parameters, fast on a CPU core."""

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
    vision_heads: int = 2
    vision_intermediate: int = 0  # 0: twice vision_hidden
    tie_embeddings: bool = False  # LM head tied to the input embeddings

    @property
    def vision_ffn(self) -> int:
        return self.vision_intermediate or 2 * self.vision_hidden


def train_bpe(corpus: Iterable[str], vocab_size: int, specials: tuple[str, ...]) -> tuple[dict[str, int], list]:
    """Byte-level BPE trained on ``BASE_CORPUS``, the label vocabulary and ``corpus``, with
    ``specials`` at ids 0.. and room left for ``FORMAT_TOKENS``: (vocab, merges as tuples)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

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
    merges = json.loads(bpe.to_str())["model"]["merges"]
    return bpe.get_vocab(), [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in merges]


def patch_factor(family: str) -> int:
    """Frame sides must be multiples of this for ``family`` (patch size x spatial merge)."""
    return _family(family).frame_factor


def check_frame_size(family: str, frame_size: int) -> None:
    factor = patch_factor(family)
    if frame_size <= 0 or frame_size % factor:
        raise ValueError(
            f"frame_size must be a multiple of {factor} for {family} (patch {factor // 2} x merge 2), got {frame_size}"
        )


def init_tiny(
    out: str | Path,
    *,
    corpus: Iterable[str] = (),
    shape: TinyShape | None = None,
    seed: int = 0,
    frame_size: int | None = None,
    family: str = "qwen2.5-omni",
) -> Path:
    """Build and save a tiny random-init model of ``family`` (``FAMILIES``), its tokenizer and
    processor into ``out``. ``frame_size``: the frame side the processor resizes to (default:
    3 merged patches, the family's ``default_frame_size``). Returns ``out``."""
    fam = _family(family)
    frame_size = fam.default_frame_size if frame_size is None else frame_size
    check_frame_size(family, frame_size)
    build = resolve(fam.tiny)
    return build(
        Path(out), corpus=list(corpus), shape=shape or TinyShape(), seed=seed, frame_size=frame_size, family=family
    )
