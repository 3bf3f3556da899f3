"""EMO-R3's Structured Emotional Thinking (SET) on omni clips: the answer styles that carry it
and its rule-based reward components.

A SET completion has three tagged stages, then the answer::

    <step1>what in the clip could trigger emotion: face, action, scene; tone, intonation, words</step1>
    <step2>how a person would feel about it</step2>
    <step3>valence (positive / negative) and arousal (high / low)</step3>
    \\boxed{sad}                      style "boxed" (EMO-R3), parsed by emorl.recipes.parse
    <answer>sad</answer>              style "steps" (tags variant), parsed by emorl.recipes.parse

The prompt texts are ``EMO_R3_FORMAT`` / ``EMO_R3_FORMAT_TAGS`` in ``emorl.recipes.prompts``.
Components (registered in ``emorl.recipes.rewards.REWARDS``):

- ``structure``: the three stages are present, in order, non-empty and free of nested stage or
  answer tags (the answer part is ``format``'s business);
- ``valence_arousal``: +0.5 when step 3 names the label's valence, +0.5 when it names its arousal
  (``VALENCE_AROUSAL``); EMO-R3's emothink_think_reward ablation, weight 0 by default.

The model-based reflective components (coherence, grounding) are computed in
``emorl.rl.reflection``; what they read of a completion (``reflection_reasoning``,
``stage1_description``, ``split_by_modality``) and the questions they ask (``coherence_prompt``,
``grounding_prompt``) are defined here, with the recipe.
"""

from __future__ import annotations

import re

from emorl.data.labels import VALENCE_AROUSAL
from emorl.recipes.parse import _STEP_TAGS, Parsed, normalize_tags, parse_steps  # noqa: F401  (re-exported)

_ANSWER_TAGS = ("<answer>", "</answer>")
_WORDS = re.compile(r"[a-z]+")
VALENCE_WORDS = ("positive", "negative", "neutral")
AROUSAL_WORDS = ("high", "low")


def structure_reward(parsed: Parsed, label: str, labels: tuple[str, ...]) -> float:
    """1 if the three stages are present, in order, each non-empty and free of nested stage,
    answer or box tags; else 0. Only SET styles have stages, so ``tags`` completions score 0."""
    if len(parsed.steps) != 3 or not all(parsed.steps):
        return 0.0
    inner = "".join(parsed.steps)
    return float(not any(t in inner for t in (*_STEP_TAGS, *_ANSWER_TAGS, "\\boxed{")))


def stated(text: str, vocabulary: tuple[str, ...]) -> str | None:
    """The single word of ``vocabulary`` that ``text`` uses, or None (none, or several).

    >>> stated("Negative, and high arousal.", VALENCE_WORDS), stated("positive or negative", VALENCE_WORDS)
    ('negative', None)
    """
    found = {w for w in _WORDS.findall(text.lower()) if w in vocabulary}
    return found.pop() if len(found) == 1 else None


def valence_arousal_reward(parsed: Parsed, label: str, labels: tuple[str, ...]) -> float:
    """+0.5 if step 3 states the label's valence, +0.5 if it states its arousal (0..1).

    A step that names both poles (e.g. echoes "positive or negative") states neither. Labels
    without a ``VALENCE_AROUSAL`` entry score 0."""
    if len(parsed.steps) != 3 or label not in VALENCE_AROUSAL:
        return 0.0
    valence, arousal = VALENCE_AROUSAL[label]
    step3 = parsed.steps[2]
    return 0.5 * (stated(step3, VALENCE_WORDS) == valence) + 0.5 * (stated(step3, AROUSAL_WORDS) == arousal)


# ----------------------------------------------------------------------------- reflection texts
# What EMO-R3's reflective reward (emorl.rl.reflection) reads of a completion and asks its judge.
# They live here, with the recipe, so the synthetic worlds can write the reflection tasks a tiny
# judge is taught (emorl.data.synthetic) without importing the RL loop.
COHERENCE_PROMPT = (
    "{reasoning}\nWhich emotion best describes the text above?\n"
    "Answer the question using one emotional category (one word only): {labels}."
)
GROUNDING_PROMPT = "Can the following text describe the {what}?Please answer with yes or no.{description}"
# grounding view -> what the question names ("image" is EMO-R3's own wording, for still images)
GROUNDING_WHAT: dict[str, str] = {"joint": "clip", "video": "video", "audio": "audio", "image": "image"}

_COHERENCE_SPAN = re.compile(r"(<step1>.*?</step2>)", re.DOTALL)
_STEP1_SPAN = re.compile(r"(<step1>.*?)(?=<step2>)", re.DOTALL)
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
THINK_STYLES = ("tags", "think_boxed")  # answer styles whose reasoning is one <think> block
_INJECTED = re.compile(r"\\boxed\{[^{}]*\}|<answer>.*?</answer>", re.DOTALL)
_TAG = re.compile(r"</?(?:step[123]|think|answer)>")
_SENTENCE = re.compile(r"(?<=[.!?;])\s+")

# Words that mark a sentence as citing what is seen / heard (general, not synthetic-world specific).
VISUAL_WORDS = frozenset(
    (
        "face",
        "facial",
        "expression",
        "expressions",
        "brow",
        "brows",
        "eyebrow",
        "eyebrows",
        "eye",
        "eyes",
        "gaze",
        "mouth",
        "lips",
        "lip",
        "jaw",
        "nose",
        "cheeks",
        "forehead",
        "head",
        "smile",
        "smiles",
        "smiling",
        "frown",
        "frowning",
        "grin",
        "tears",
        "stare",
        "staring",
        "glance",
        "gesture",
        "gestures",
        "posture",
        "body",
        "hands",
        "shoulders",
        "scene",
        "background",
        "see",
        "sees",
        "seen",
        "saw",
        "look",
        "looks",
        "looking",
        "visually",
        "visual",
        "video",
        "screen",
        "shows",
        "appears",
        "nodding",
        "nods",
    )
)
AUDIO_WORDS = frozenset(
    (
        "voice",
        "voices",
        "vocal",
        "hear",
        "hears",
        "heard",
        "listening",
        "listen",
        "tone",
        "tones",
        "intonation",
        "pitch",
        "pitched",
        "speech",
        "speaks",
        "speaking",
        "spoken",
        "speaker",
        "says",
        "said",
        "say",
        "words",
        "utterance",
        "sound",
        "sounds",
        "audio",
        "loud",
        "loudness",
        "quiet",
        "volume",
        "melody",
        "syllables",
        "pace",
        "tempo",
        "shouts",
        "shouting",
        "whisper",
        "whispers",
        "sigh",
        "sighs",
        "laughter",
        "murmur",
        "prosody",
    )
)


def reflection_reasoning(completion: str, style: str) -> str | None:
    """What the coherence judge reads: EMO-R3's ``<step1>…</step2>`` span (stages 1-2 with their
    tags; SET styles) or the ``<think>`` content (``tags`` and ``think_boxed`` styles), with
    injected answers removed; None when there is none."""
    text = normalize_tags(completion)
    m = _THINK.search(text) if style in THINK_STYLES else _COHERENCE_SPAN.search(text)
    if not m:
        return None
    reasoning = _INJECTED.sub("", m.group(1)).strip()
    return reasoning if _TAG.sub("", reasoning).strip() else None


def stage1_description(completion: str, style: str) -> str | None:
    """What the grounding judge checks against the clip or image: EMO-R3's ``<step1>…`` span up to
    ``<step2>`` (SET styles) or the ``<think>`` content (``tags``, ``think_boxed``); None when
    there is none."""
    text = normalize_tags(completion)
    m = _THINK.search(text) if style in THINK_STYLES else _STEP1_SPAN.search(text)
    if not m:
        return None
    desc = m.group(1).strip()
    return desc if _TAG.sub("", desc).strip() else None


def split_by_modality(description: str) -> dict[str, str]:
    """The sentences of a description that cite what is seen ('video') and heard ('audio').

    A sentence goes to every modality whose words it uses; one that uses none goes nowhere.

    >>> split_by_modality("<step1>I see a smile. The voice is loud. Taken together, it is clear.</step1>")
    {'video': 'I see a smile.', 'audio': 'The voice is loud.'}
    """
    plain = _TAG.sub(" ", description).strip()
    out: dict[str, list[str]] = {"video": [], "audio": []}
    for sentence in _SENTENCE.split(plain):
        words = set(_WORDS.findall(sentence.lower()))
        if words & VISUAL_WORDS:
            out["video"].append(sentence.strip())
        if words & AUDIO_WORDS:
            out["audio"].append(sentence.strip())
    return {m: " ".join(v) for m, v in out.items()}


def coherence_prompt(reasoning: str, labels: tuple[str, ...]) -> str:
    """The coherence question; ``labels`` as the sample's label set words them (EmoSet: anger, sadness)."""
    return COHERENCE_PROMPT.format(reasoning=reasoning, labels=", ".join(labels))


def grounding_prompt(description: str, view: str) -> str:
    """The grounding question of a view (joint clip, video, audio or image)."""
    return GROUNDING_PROMPT.format(what=GROUNDING_WHAT[view], description=description)
