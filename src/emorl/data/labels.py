"""One label vocabulary for every corpus, shared by the answer grammar, the rewards and the metrics.

Canonical names follow DFEW's wording (``happy``, ``angry``, ``surprise`` ...) and add the classes
other corpora have (MAFW's ``contempt`` ..., RAVDESS ``calm``, the Mikels-8 image classes
``amusement``, ``awe``, ``contentment``, ``excitement``). Labels with no counterpart elsewhere stay
canonical labels of their own: they are never silently dropped or merged.

Two directions, two tables, never mixed:

- **Reading annotations** (``to_canonical``): a corpus's own spellings, abbreviations and codes
  (``hap``, ``NEU``, MELD's ``joy``, MER's ``worried``) map to canonical labels through
  ``ANNOTATION_ALIASES`` (and every answer form below).
- **Reading model answers** (``answer_terms``): a label is named by its *forms* only: the label
  word and its inflections (``FORMS``: happy, happiness; fear, fearful; ...) and the word the
  sample's own label set uses for it (``LabelSet.words``: Emotion6 and MELD say ``joy`` for
  happy; a prompt with options shows that word). Abbreviations, codes and loose synonyms
  (``unhappy``, ``glad``) are never an answer, unless a config lists them explicitly
  (``grading.answer_synonyms``).

``emotions_in`` (does free text *mention* an emotion?) reads both tables plus ``MENTIONS`` (common
synonyms), because a reasoning that says "she is scared" names fear even though "scared" would
not be accepted as an answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

# label -> its forms: the label word first, then inflections and derived forms of the same word
FORMS: dict[str, tuple[str, ...]] = {
    "happy": ("happy", "happiness", "happily"),
    "sad": ("sad", "sadness", "sadly"),
    "neutral": ("neutral", "neutrality", "neutrally"),
    "angry": ("angry", "anger", "angered", "angrily"),
    "surprise": ("surprise", "surprised", "surprising", "surprisingly"),
    "disgust": ("disgust", "disgusted", "disgusting", "disgustingly"),
    "fear": ("fear", "fearful", "fearfully", "fearfulness"),
    "contempt": ("contempt", "contemptuous", "contemptuously"),
    "anxiety": ("anxiety", "anxious", "anxiously"),
    "helplessness": ("helplessness", "helpless", "helplessly"),
    "disappointment": ("disappointment", "disappointed", "disappointing"),
    "calm": ("calm", "calmness", "calmly"),
    "amusement": ("amusement", "amused", "amusing"),
    "awe": ("awe", "awed", "awestruck", "awesome"),
    "contentment": ("contentment", "content", "contented"),
    "excitement": ("excitement", "excited", "exciting"),
}
CANONICAL: tuple[str, ...] = tuple(FORMS)

# annotation side only: corpus abbreviations, codes and corpus words for a canonical class
ANNOTATION_ALIASES: dict[str, str] = {
    "hap": "happy",
    "ang": "angry",
    "neu": "neutral",
    "dis": "disgust",
    "fea": "fear",
    "sur": "surprise",
    "joy": "happy",  # MELD, Emotion6
    "worried": "anxiety",  # MER2023 / MER2024
}

# free-text mentions (reasoning analysis), never answers
MENTIONS: dict[str, str] = {
    "joy": "happy",
    "joyful": "happy",
    "glad": "happy",
    "cheerful": "happy",
    "delighted": "happy",
    "unhappy": "sad",
    "sorrow": "sad",
    "sorrowful": "sad",
    "mad": "angry",
    "furious": "angry",
    "astonished": "surprise",
    "amazed": "surprise",
    "afraid": "fear",
    "scared": "fear",
    "frightened": "fear",
    "worried": "anxiety",
    "worry": "anxiety",
    "nervous": "anxiety",
    "relaxed": "calm",
}


@dataclass(frozen=True)
class LabelSet:
    """A corpus's classes in canonical names, in its official order, with the word it uses for a
    class where that is not one of the class's forms (Emotion6 ``joy`` for happy)."""

    name: str
    labels: tuple[str, ...]
    words: tuple[tuple[str, str], ...] = ()

    def word(self, label: str) -> str:
        """The word prompts and the official graders use for ``label``."""
        return dict(self.words).get(label, label)


def _set(name: str, labels: tuple[str, ...], **words: str) -> LabelSet:
    return LabelSet(name, labels, tuple(words.items()))


_DFEW = ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear")
_MIKELS = ("amusement", "angry", "awe", "contentment", "disgust", "excitement", "fear", "sad")
_SETS = (
    _set("dfew", _DFEW),
    _set("synthetic", _DFEW),
    _set(
        "mafw",
        (
            "angry",
            "disgust",
            "fear",
            "happy",
            "neutral",
            "sad",
            "surprise",
            "contempt",
            "anxiety",
            "helplessness",
            "disappointment",
        ),
        angry="anger",
        happy="happiness",
        sad="sadness",
    ),
    _set(
        "ravdess",
        ("neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise"),
        fear="fearful",
        surprise="surprised",
    ),
    _set("crema-d", ("angry", "disgust", "fear", "happy", "neutral", "sad")),
    _set("mer2023", ("neutral", "angry", "happy", "sad", "anxiety", "surprise"), anxiety="worried"),
    _set("mer2024", ("neutral", "angry", "happy", "sad", "anxiety", "surprise"), anxiety="worried"),
    _set(
        "meld",
        ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"),
        angry="anger",
        happy="joy",
        sad="sadness",
    ),
    _set("ferv39k", ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")),
    _set("emer", CANONICAL[:12]),
    # image corpora (EMO-R3): Mikels-8 in EmoSet / FI / EmotionROI wording, Emotion6
    _set("mikels8", _MIKELS, angry="anger", sad="sadness"),
    _set("emoset", _MIKELS, angry="anger", sad="sadness"),
    _set("fi", _MIKELS, angry="anger", sad="sadness"),
    _set(
        "emotion6", ("angry", "disgust", "fear", "happy", "sad", "surprise"), angry="anger", happy="joy", sad="sadness"
    ),
    _set(
        "emotionroi",
        ("angry", "disgust", "fear", "happy", "sad", "surprise"),
        angry="anger",
        happy="joy",
        sad="sadness",
    ),
    _set("synthetic-images", _MIKELS, angry="anger", sad="sadness"),  # emorl.data.synthetic.image_world
)
LABEL_SETS_INFO: dict[str, LabelSet] = {s.name: s for s in _SETS}
# dataset -> canonical labels in the corpus's official class order
LABEL_SETS: dict[str, tuple[str, ...]] = {s.name: s.labels for s in _SETS}

# (valence, arousal) per canonical label, for EMO-R3's valence/arousal partial credit (Mikels-8 as
# in EMO-R3's emothink_think_reward).
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
    "amusement": ("positive", "high"),
    "awe": ("positive", "low"),
    "contentment": ("positive", "low"),
    "excitement": ("positive", "high"),
}

_WORD = re.compile(r"[a-z]+")
_FORM_OF = {f: lab for lab, forms in FORMS.items() for f in forms}
_LABEL_TEXT = re.compile(r"[a-z][a-z '\-]*[a-z]|[a-z]")


class UnknownLabelError(ValueError):
    """A label string that maps to no canonical emotion."""


def canonical(word: str) -> str | None:
    """The canonical label a surface word names when read as an *annotation* (forms and corpus
    aliases, any case), or None if it is not an emotion label."""
    w = word.strip().lower()
    return _FORM_OF.get(w) or ANNOTATION_ALIASES.get(w)


def to_canonical(label: str, *, where: str = "label") -> str:
    """Canonical form of a dataset label; raises UnknownLabelError naming ``where`` if unknown."""
    c = canonical(label)
    if c is None:
        known = ", ".join(CANONICAL)
        raise UnknownLabelError(
            f"{where}: unknown emotion label {label!r}; expected one of {known}, "
            f"one of their forms (e.g. happiness, fearful) or a corpus alias "
            f"({', '.join(sorted(ANNOTATION_ALIASES))})"
        )
    return c


def is_custom_label(label: str) -> bool:
    """A label a manifest may declare beyond the canonical vocabulary: lower-case words (letters,
    spaces, hyphens, apostrophes), e.g. ``frustrated`` or ``mixed feelings``."""
    return bool(_LABEL_TEXT.fullmatch(label)) and label not in _FORM_OF


def mentioned(word: str) -> str | None:
    """The canonical emotion a word *mentions* in free text (forms, corpus words, common synonyms
    such as "scared"), or None; for analysing reasoning, never for grading answers."""
    w = word.strip().lower()
    return _FORM_OF.get(w) or MENTIONS.get(w) or ANNOTATION_ALIASES.get(w)


def emotions_in(text: str) -> list[str]:
    """Distinct canonical emotions *mentioned* in free text, in order of first mention (forms,
    corpus words and common synonyms: for analysing reasoning, not for grading answers).

    >>> emotions_in("Happy, maybe a little scared")
    ['happy', 'fear']
    """
    found: list[str] = []
    for w in _WORD.findall(text.lower()):
        c = mentioned(w)
        if c is not None and c not in found:
            found.append(c)
    return found


def label_set(dataset: str) -> tuple[str, ...]:
    """The canonical label set a dataset is scored over."""
    try:
        return LABEL_SETS[dataset]
    except KeyError:
        raise KeyError(f"no label set for dataset {dataset!r}; known: {', '.join(sorted(LABEL_SETS))}") from None


def label_words(dataset: str) -> dict[str, str]:
    """label -> the dataset's own word for it, where that differs from the label (may be empty)."""
    info = LABEL_SETS_INFO.get(dataset)
    return dict(info.words) if info else {}


# forms of the corpus words that are not a canonical label's form (``LabelSet.words``)
WORD_FORMS: dict[str, tuple[str, ...]] = {"joy": ("joy", "joyful", "joyous"), "worried": ("worried",)}


@lru_cache(maxsize=256)
def _terms(
    labels: tuple[str, ...], words: tuple[tuple[str, str], ...], synonyms: tuple[tuple[str, str], ...]
) -> dict[tuple[str, ...], str]:
    terms: dict[tuple[str, ...], str] = {(f,): lab for f, lab in _FORM_OF.items()}
    for lab in labels:
        if lab not in FORMS:  # a label a manifest declares: its own words are its only form
            terms[tuple(_WORD.findall(lab))] = lab
    for lab, word in words:
        if word not in _FORM_OF:  # a canonical form keeps meaning its own label
            for f in WORD_FORMS.get(word, (word,)):
                terms[tuple(_WORD.findall(f))] = lab
    for lab, word in synonyms:
        terms[tuple(_WORD.findall(word))] = lab
    return terms


def answer_terms(
    labels: tuple[str, ...] = (), words: dict[str, str] | None = None, synonyms: dict[str, str] | None = None
) -> dict[tuple[str, ...], str]:
    """Word sequences that name a label in a model's *answer* -> the label.

    Every canonical label's forms (so an out-of-set emotion is still recognised as an emotion,
    and graded wrong); declared non-canonical ``labels`` (their own words); ``words``, a label
    set's own words for its labels (label -> word, e.g. happy -> joy, with the word's forms when it
    is itself a canonical form); ``synonyms``, extra word -> label pairs a config lists
    (``grading.answer_synonyms``).
    """
    return _terms(
        tuple(labels),
        tuple(sorted((words or {}).items())),
        tuple(sorted((lab, w) for w, lab in (synonyms or {}).items())),
    )


def parse_synonyms(pairs: list[str], *, where: str = "grading.answer_synonyms") -> dict[str, str]:
    """``["unhappy=sad", ...]`` -> ``{"unhappy": "sad"}``; the label must be canonical."""
    out: dict[str, str] = {}
    for p in pairs:
        word, sep, lab = p.partition("=")
        word, lab = word.strip().lower(), lab.strip().lower()
        if not sep or not _WORD.fullmatch(word.replace(" ", "a")) or not lab:
            raise ValueError(f"{where}: expected word=label pairs like unhappy=sad, got {p!r}")
        out[word] = to_canonical(lab, where=f"{where} {p!r}")
    return out


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
