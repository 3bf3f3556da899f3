"""The one answer parser. Training rewards, evaluation and analysis all call ``parse_completion``,
so what counts as "the model answered X" can never drift between them.

Two answer styles:

- ``tags`` (R1-Omni): ``<think>…</think><answer>…</answer>``; format is the whole completion
  being exactly that (whitespace around allowed), no nested or repeated tags.
- ``boxed`` (EMO-R3): ``<step1>…</step1><step2>…</step2><step3>…</step3>`` then ``\\boxed{…}``.
- ``steps`` (EMO-R3's stages with R1-Omni's answer tags): the three stages, then ``<answer>…</answer>``.

An answer is *one* emotion: text inside the answer that names several different emotions, or
none, or several answer blocks that disagree, yields ``emotion=None`` with a reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from emorl.data.labels import emotions_in

_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
_THINK_ANSWER = re.compile(r"\A\s*<think>(?P<think>.*?)</think>\s*<answer>(?P<answer>.*?)</answer>\s*\Z", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_STEP_TAGS = tuple(f"<{c}step{i}>" for i in (1, 2, 3) for c in ("", "/"))
_STEPS = re.compile(
    r"\A\s*<step1>(?P<s1>.*?)</step1>\s*<step2>(?P<s2>.*?)</step2>\s*<step3>(?P<s3>.*?)</step3>(?P<rest>.*)\Z", re.DOTALL
)


@dataclass(frozen=True)
class Parsed:
    """What a completion says.

    format_ok: the completion follows the style's format exactly.
    answer: raw text of the answer ('' when there is none).
    emotion: the single canonical emotion the answer names, else None.
    reason: 'ok' or why there is no emotion: no_answer, several_answers, no_emotion, several_emotions.
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


def _emotion_of(answers: list[str]) -> tuple[str, str | None, str]:
    """(answer text, emotion, reason) from the answer blocks found."""
    if not answers:
        return "", None, "no_answer"
    named = [emotions_in(a) for a in answers]
    distinct = {e for n in named for e in n}
    text = answers[-1].strip()
    if len(answers) > 1 and len({tuple(n) for n in named}) > 1:
        return text, None, "several_answers"
    if not distinct:
        return text, None, "no_emotion"
    if len(distinct) > 1:
        return text, None, "several_emotions"
    return text, distinct.pop(), "ok"


def parse_tags(text: str) -> Parsed:
    m = _THINK_ANSWER.match(text)
    format_ok = bool(m) and not any(t in m.group("think") + m.group("answer") for t in _TAGS) and bool(
        m.group("answer").strip())
    answer, emotion, reason = _emotion_of(_ANSWER.findall(text))
    think = m.group("think").strip() if m else ""
    if not m and "<think>" in text and "</think>" in text:
        think = text.split("<think>", 1)[1].split("</think>", 1)[0].strip()
    return Parsed(format_ok, answer, emotion, reason, think)


def parse_boxed(text: str) -> Parsed:
    norm = normalize_tags(text)  # EMO-R3 normalises whitespace around '<', '>' and '/' first
    m = _STEPS.match(norm)
    steps: tuple[str, ...] = ()
    format_ok = False
    if m:
        steps = (m.group("s1").strip(), m.group("s2").strip(), m.group("s3").strip())
        inner_clean = not any(t in "".join(steps) for t in _STEP_TAGS) and "\\boxed{" not in "".join(steps)
        format_ok = inner_clean and len(boxed_contents(m.group("rest"))) == 1
    answer, emotion, reason = _emotion_of(boxed_contents(text))
    return Parsed(format_ok, answer, emotion, reason, " ".join(steps), steps)


_NORM = re.compile(r"\s*(<|>|/)\s*")
_ANSWER_TAIL = re.compile(r"\A\s*<answer>(?P<answer>.*?)</answer>\s*\Z", re.DOTALL)


def normalize_tags(text: str) -> str:
    """EMO-R3's normalisation: no whitespace around '<', '>' and '/'.

    >>> normalize_tags("< step1 > a / b </ step1 >")
    '<step1>a/b</step1>'
    """
    return _NORM.sub(r"\1", text)


def parse_steps(text: str) -> Parsed:
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
        format_ok = clean and tail is not None and bool(tail.group("answer").strip()) and \
            "<answer>" not in tail.group("answer")
    answer, emotion, reason = _emotion_of(_ANSWER.findall(text))
    return Parsed(format_ok, answer, emotion, reason, " ".join(steps), steps)


STYLES = {"tags": parse_tags, "boxed": parse_boxed, "steps": parse_steps}


def parse_completion(text: str, style: str = "tags") -> Parsed:
    """Parse a completion in answer ``style`` ('tags', 'boxed' or 'steps')."""
    try:
        return STYLES[style](text)
    except KeyError:
        raise ValueError(f"unknown answer style {style!r}; expected one of {', '.join(STYLES)}") from None
