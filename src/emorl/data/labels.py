"""One label vocabulary for every corpus, shared by the answer parser, the rewards and the metrics.

Canonical names follow DFEW's wording (``happy``, ``angry``, ``surprise`` ...). Every corpus
declares its label set in canonical names; its own spellings map through ``SYNONYMS`` (an
explicit, reviewable table). Labels with no counterpart elsewhere (RAVDESS ``calm``) stay
canonical labels of their own: they are never silently dropped or merged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CANONICAL: tuple[str, ...] = (
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
)

# surface form (lower-case) -> canonical label
SYNONYMS: dict[str, str] = {
    "happiness": "happy", "joy": "happy", "joyful": "happy", "glad": "happy", "hap": "happy",
    "sadness": "sad", "sorrow": "sad", "unhappy": "sad",
    "anger": "angry", "mad": "angry", "ang": "angry", "furious": "angry",
    "surprised": "surprise", "astonished": "surprise", "amazed": "surprise",
    "disgusted": "disgust", "dis": "disgust",
    "fearful": "fear", "afraid": "fear", "scared": "fear", "fea": "fear", "frightened": "fear",
    "contemptuous": "contempt",
    "anxious": "anxiety", "worried": "anxiety", "worry": "anxiety", "nervous": "anxiety",
    "helpless": "helplessness",
    "disappointed": "disappointment",
    "neu": "neutral",
    "relaxed": "calm",
}

# Each corpus's label set in canonical names, in the corpus's official class order.
LABEL_SETS: dict[str, tuple[str, ...]] = {
    "dfew": ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"),
    "synthetic": ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"),
    "mafw": ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise",
             "contempt", "anxiety", "helplessness", "disappointment"),
    "ravdess": ("neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise"),
    "crema-d": ("angry", "disgust", "fear", "happy", "neutral", "sad"),
    "mer2023": ("neutral", "angry", "happy", "sad", "anxiety", "surprise"),
    "mer2024": ("neutral", "angry", "happy", "sad", "anxiety", "surprise"),
    "meld": ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"),
    "ferv39k": ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"),
    "emer": CANONICAL,
}

# (valence, arousal) per canonical label, for EMO-R3's valence/arousal partial credit.
VALENCE_AROUSAL: dict[str, tuple[str, str]] = {
    "happy": ("positive", "high"),
    "surprise": ("positive", "high"),
    "calm": ("positive", "low"),
    "neutral": ("neutral", "low"),
    "sad": ("negative", "low"),
    "angry": ("negative", "high"),
    "disgust": ("negative", "high"),
    "fear": ("negative", "high"),
    "contempt": ("negative", "low"),
    "anxiety": ("negative", "high"),
    "helplessness": ("negative", "low"),
    "disappointment": ("negative", "low"),
}

_WORD = re.compile(r"[a-z]+")


class UnknownLabelError(ValueError):
    """A label string that maps to no canonical emotion."""


def canonical(word: str) -> str | None:
    """Map one surface word (any case) to its canonical label, or None if it is not an emotion."""
    w = word.strip().lower()
    if w in CANONICAL:
        return w
    return SYNONYMS.get(w)


def to_canonical(label: str, *, where: str = "label") -> str:
    """Canonical form of a dataset label; raises UnknownLabelError naming ``where`` if unknown."""
    c = canonical(label)
    if c is None:
        known = ", ".join(CANONICAL)
        raise UnknownLabelError(f"{where}: unknown emotion label {label!r}; expected one of {known} or a synonym")
    return c


def emotions_in(text: str) -> list[str]:
    """Distinct canonical emotions named in free text, in order of first mention.

    >>> emotions_in("Happy, maybe a little surprised")
    ['happy', 'surprise']
    """
    found: list[str] = []
    for w in _WORD.findall(text.lower()):
        c = canonical(w)
        if c is not None and c not in found:
            found.append(c)
    return found


def label_set(dataset: str) -> tuple[str, ...]:
    """The canonical label set a dataset is scored over."""
    try:
        return LABEL_SETS[dataset]
    except KeyError:
        raise KeyError(f"no label set for dataset {dataset!r}; known: {', '.join(sorted(LABEL_SETS))}") from None


@dataclass(frozen=True)
class CrossMapping:
    """How a label of one corpus relates to another corpus's label set."""

    label: str
    target: str | None  # canonical label in the target set, or None when it has no counterpart


def map_between(source: str, target: str) -> list[CrossMapping]:
    """Explicit cross-dataset mapping: each source label -> same label in target, or None.

    >>> [m for m in map_between("ravdess", "dfew") if m.target is None]
    [CrossMapping(label='calm', target=None)]
    """
    tgt = set(label_set(target))
    return [CrossMapping(lab, lab if lab in tgt else None) for lab in label_set(source)]
