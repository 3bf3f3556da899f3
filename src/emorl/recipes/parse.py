"""The one answer parser. Training rewards, evaluation and analysis all call ``parse_completion``,
so what counts as "the model answered X" can never drift between them.

Four answer styles:

- ``tags`` (R1-Omni): ``<think>…</think><answer>…</answer>``; format is the whole completion
  being exactly that (whitespace around allowed), no nested or repeated tags.
- ``boxed`` (EMO-R3): ``<step1>…</step1><step2>…</step2><step3>…</step3>`` then ``\\boxed{…}``.
- ``steps`` (EMO-R3's stages with R1-Omni's answer tags): the three stages, then ``<answer>…</answer>``.
- ``think_boxed`` (EasyR1's math format, EMO-R3's naive-GRPO baseline): ``<think>…</think>`` then
  ``\\boxed{…}``.

The answer grammar (``read_answer``), the same for rewards, evaluation and serving: after case
and markup are dropped (``**``, quotes, brackets, ``\\text{}``, stray tags, punctuation), the
answer must be one emotion term (a label word or its inflections, see
``emorl.data.labels.answer_terms``) with at most some filler words ("the emotion is", "the person
feels"). Negated ("not happy", "isn't sad"), hedged ("maybe happy", "happy or sad"),
multi-emotion and otherwise wordy answers name no emotion and are never correct; the reason says
which. Several answer blocks that disagree yield ``emotion=None`` too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from emorl.data.labels import answer_terms

_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
_THINK_ANSWER = re.compile(r"\A\s*<think>(?P<think>.*?)</think>\s*<answer>(?P<answer>.*?)</answer>\s*\Z", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_STEP_TAGS = tuple(f"<{c}step{i}>" for i in (1, 2, 3) for c in ("", "/"))
_STEPS = re.compile(
    r"\A\s*<step1>(?P<s1>.*?)</step1>\s*<step2>(?P<s2>.*?)</step2>\s*<step3>(?P<s3>.*?)</step3>(?P<rest>.*)\Z",
    re.DOTALL,
)


@dataclass(frozen=True)
class Parsed:
    """What a completion says.

    format_ok: the completion follows the style's format exactly.
    answer: raw text of the answer ('' when there is none).
    emotion: the single canonical emotion the answer names, else None.
    reason: 'ok' or why there is no emotion: no_answer, several_answers, empty_answer, no_emotion,
        several_emotions, negated, hedged, extra_words.
    reasoning: the reasoning text (think, or steps 1-3 joined), '' when absent.
    steps: (step1, step2, step3) for the boxed style, else ().
    """

    format_ok: bool
    answer: str
    emotion: str | None
    reason: str
    reasoning: str = ""
    steps: tuple[str, ...] = ()


def boxed_contents(text: str) -> list[str]:
    r"""Contents of every ``\boxed{…}``, braces balanced, in order.

    >>> boxed_contents(r"x \boxed{a{b}} y \boxed{c}")
    ['a{b}', 'c']
    """
    out, i = [], 0
    while (j := text.find("\\boxed{", i)) != -1:
        k, depth = j + len("\\boxed{"), 1
        start = k
        while k < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[k], 0)
            k += 1
        if depth:  # unbalanced: not a box
            break
        out.append(text[start : k - 1].strip())
        i = k
    return out


NEGATIONS = frozenset(
    [
        "not",
        "no",
        "never",
        "none",
        "neither",
        "nor",
        "without",
        "lack",
        "lacks",
        "lacking",
        "absent",
        "absence",
        "hardly",
        "barely",
        "non",
        "cannot",
        "nothing",
    ]
)
HEDGES = frozenset(
    [
        "maybe",
        "perhaps",
        "possibly",
        "possible",
        "probably",
        "probable",
        "likely",
        "unlikely",
        "might",
        "may",
        "could",
        "would",
        "seems",
        "seem",
        "seemingly",
        "appears",
        "appear",
        "apparently",
        "somewhat",
        "slightly",
        "little",
        "bit",
        "kind",
        "sort",
        "either",
        "or",
        "unsure",
        "uncertain",
        "unclear",
        "mixed",
        "mostly",
        "partly",
        "partially",
        "guess",
        "suspect",
    ]
)
FILLERS = frozenset(
    [
        "the",
        "a",
        "an",
        "and",
        "is",
        "are",
        "was",
        "were",
        "be",
        "it",
        "this",
        "that",
        "its",
        "emotion",
        "emotions",
        "emotional",
        "feeling",
        "feelings",
        "final",
        "answer",
        "label",
        "class",
        "category",
        "state",
        "predominant",
        "dominant",
        "main",
        "primary",
        "overall",
        "most",
        "clearly",
        "obvious",
        "expressed",
        "conveyed",
        "displayed",
        "shown",
        "person",
        "character",
        "characters",
        "speaker",
        "subject",
        "man",
        "woman",
        "people",
        "they",
        "he",
        "she",
        "i",
        "feels",
        "feel",
        "shows",
        "displays",
        "expresses",
        "conveys",
        "looks",
        "look",
        "of",
        "in",
        "video",
        "clip",
        "image",
    ]
)
_MARKUP = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|emph)\s*\{|<[^<>]{0,40}>")
_LETTERS = re.compile(r"[^\W\d_]+")


def answer_words(text: str) -> list[str]:
    r"""The words of an answer, lower-cased, markup and punctuation dropped, "n't" read as "not".

    >>> answer_words(r"**Not** \text{Happy}!  isn't <b>sad</b>")
    ['not', 'happy', 'is', 'not', 'sad']
    """
    t = _MARKUP.sub(" ", text.lower())
    t = re.sub(r"n[\'’]t\b", " not", t)
    return _LETTERS.findall(t)


def read_answer(text: str, terms: dict[tuple[str, ...], str] | None = None) -> tuple[str | None, str]:
    """(emotion, reason) for one answer under the answer grammar (module docstring).

    ``terms``: word sequences naming a label (``emorl.data.labels.answer_terms``; default: every
    canonical label's forms). Longest terms match first, so a declared label "mixed feelings" is one
    term.

    >>> [read_answer(a)[1] for a in ("Happiness.", "not happy", "maybe sad", "happy, sad", "sad eyes", "")]
    ['ok', 'negated', 'hedged', 'several_emotions', 'extra_words', 'empty_answer']
    """
    terms = answer_terms() if terms is None else terms
    words = answer_words(text)
    if not words:
        return None, "empty_answer"
    longest = max(map(len, terms), default=1)
    found, rest, i = [], [], 0
    while i < len(words):
        for k in range(min(longest, len(words) - i), 0, -1):
            lab = terms.get(tuple(words[i : i + k]))
            if lab is not None:
                found.append(lab)
                i += k
                break
        else:
            rest.append(words[i])
            i += 1
    if not found:
        return None, "no_emotion"
    if NEGATIONS.intersection(rest):
        return None, "negated"
    if HEDGES.intersection(rest):
        return None, "hedged"
    if len(set(found)) > 1:
        return None, "several_emotions"
    if any(w not in FILLERS for w in rest):
        return None, "extra_words"
    return found[0], "ok"


def _emotion_of(answers: list[str], terms: dict | None) -> tuple[str, str | None, str]:
    """(answer text, emotion, reason) from the answer blocks found."""
    if not answers:
        return "", None, "no_answer"
    verdicts = [read_answer(a, terms) for a in answers]
    text = answers[-1].strip()
    if len(set(verdicts)) > 1:
        return text, None, "several_answers"
    emotion, reason = verdicts[0]
    return text, emotion, reason


def parse_tags(text: str, terms: dict | None = None) -> Parsed:
    m = _THINK_ANSWER.match(text)
    format_ok = (
        bool(m)
        and not any(t in m.group("think") + m.group("answer") for t in _TAGS)
        and bool(m.group("answer").strip())
    )
    answer, emotion, reason = _emotion_of(_ANSWER.findall(text), terms)
    think = m.group("think").strip() if m else ""
    if not m and "<think>" in text and "</think>" in text:
        think = text.split("<think>", 1)[1].split("</think>", 1)[0].strip()
    return Parsed(format_ok, answer, emotion, reason, think)


def parse_boxed(text: str, terms: dict | None = None) -> Parsed:
    norm = normalize_tags(text)  # EMO-R3 normalises whitespace around '<', '>' and '/' first
    m = _STEPS.match(norm)
    steps: tuple[str, ...] = ()
    format_ok = False
    if m:
        steps = (m.group("s1").strip(), m.group("s2").strip(), m.group("s3").strip())
        inner_clean = not any(t in "".join(steps) for t in _STEP_TAGS) and "\\boxed{" not in "".join(steps)
        format_ok = inner_clean and len(boxed_contents(m.group("rest"))) == 1
    answer, emotion, reason = _emotion_of(boxed_contents(text), terms)
    return Parsed(format_ok, answer, emotion, reason, " ".join(steps), steps)


_NORM = re.compile(r"\s*(<|>|/)\s*")
_ANSWER_TAIL = re.compile(r"\A\s*<answer>(?P<answer>.*?)</answer>\s*\Z", re.DOTALL)


def normalize_tags(text: str) -> str:
    """EMO-R3's normalisation: no whitespace around '<', '>' and '/'.

    >>> normalize_tags("< step1 > a / b </ step1 >")
    '<step1>a/b</step1>'
    """
    return _NORM.sub(r"\1", text)


def parse_steps(text: str, terms: dict | None = None) -> Parsed:
    """The stages as in the boxed style (same normalisation and stage regex), then exactly one
    non-empty ``<answer>`` block and nothing else; no stage, answer or box tags inside the stages.
    The answer is read like the tags style: every ``<answer>`` block, one emotion."""
    m = _STEPS.match(normalize_tags(text))
    steps: tuple[str, ...] = ()
    format_ok = False
    if m:
        steps = (m.group("s1").strip(), m.group("s2").strip(), m.group("s3").strip())
        inner = "".join(steps)
        tail = _ANSWER_TAIL.match(m.group("rest"))
        clean = not any(t in inner for t in (*_STEP_TAGS, "<answer>", "</answer>", "\\boxed{"))
        format_ok = (
            clean and tail is not None and bool(tail.group("answer").strip()) and "<answer>" not in tail.group("answer")
        )
    answer, emotion, reason = _emotion_of(_ANSWER.findall(text), terms)
    return Parsed(format_ok, answer, emotion, reason, " ".join(steps), steps)


_THINK_BOX = re.compile(r"\A\s*<think>(?P<think>.*?)</think>(?P<rest>.*)\Z", re.DOTALL)
_THINK_TAGS = ("<think>", "</think>")


def parse_think_boxed(text: str, terms: dict | None = None) -> Parsed:
    """``<think>…</think>`` then exactly one ``\\boxed{…}`` (text may surround the box, as in the
    boxed style), after the same whitespace normalisation; no think tags or boxes inside the think
    part and no further think tags after it. The answer is read like the boxed style: every box,
    one emotion."""
    m = _THINK_BOX.match(normalize_tags(text))
    format_ok, think = False, ""
    if m:
        think, rest = m.group("think").strip(), m.group("rest")
        format_ok = (
            not any(t in think for t in (*_THINK_TAGS, "\\boxed{"))
            and not any(t in rest for t in _THINK_TAGS)
            and len(boxed_contents(rest)) == 1
        )
    answer, emotion, reason = _emotion_of(boxed_contents(text), terms)
    return Parsed(format_ok, answer, emotion, reason, think)


STYLES = {"tags": parse_tags, "boxed": parse_boxed, "steps": parse_steps, "think_boxed": parse_think_boxed}


def parse_completion(
    text: str,
    style: str = "tags",
    *,
    labels: tuple[str, ...] = (),
    words: dict[str, str] | None = None,
    synonyms: dict[str, str] | None = None,
) -> Parsed:
    """Parse a completion in answer ``style`` ('tags', 'boxed', 'steps' or 'think_boxed').

    ``labels`` / ``words`` / ``synonyms``: what may name a label in the answer besides the canonical
    forms (a manifest's own labels, a label set's own words such as Emotion6's ``joy``, a config's
    explicit extra synonyms); see ``emorl.data.labels.answer_terms``.
    """
    try:
        fn = STYLES[style]
    except KeyError:
        raise ValueError(f"unknown answer style {style!r}; expected one of {', '.join(STYLES)}") from None
    return fn(text, answer_terms(labels, words, synonyms))
