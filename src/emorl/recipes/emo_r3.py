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

The model-based reflective components (coherence, grounding) live in ``emorl.rl.reflection``.
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
