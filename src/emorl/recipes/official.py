"""The papers' released graders, reproduced exactly (``grading.strict_official=true``), for
comparisons with published numbers. emorl's own grading (``emorl.recipes.parse``) differs on
purpose; docs/papers.md lists every difference with an example.

- R1-Omni (HumanMLLM/R1-Omni ``grpo.py``): accuracy is ``re.search(r'<answer>(.*?)</answer>')``
  (no DOTALL; the stripped whole content when there is no match) compared case-sensitively with
  the ground truth ``"<answer> {word} </answer>"`` parsed the same way; format is
  ``re.fullmatch(r"<think>.*?</think>\\s*<answer>.*?</answer>", content, re.DOTALL)``. R1-Omni's
  words are its option list's (``R1_OMNI_WORDS``: MAFW's adjectives).
- EMO-R3 (SeerRay-Lab/emo-r3 ``emor3.py``, EasyR1): whitespace around ``<``, ``>`` and ``/`` removed
  first; format is ``<step1>.*</step1>.*<step2>.*</step2>.*<step3>.*</step3>.*\\boxed\\{.*\\}.*``
  (fullmatch, DOTALL); accuracy is mathruler's ``extract_boxed_content`` (the LAST ``\\boxed{``,
  braces balanced, stripped; "None" without a box) lower-cased == the dataset's label word
  lower-cased.
- EMO-R3's naive-GRPO baseline (EasyR1 ``math.py``): the same normalisation and box, format
  ``<think>.*</think>.*\\boxed\\{.*\\}.*``.
"""

from __future__ import annotations

import re

from emorl.recipes.parse import normalize_tags

# R1-Omni's option words where they differ from emorl's canonical labels (its MAFW list)
R1_OMNI_WORDS = {
    "contempt": "contemptuous",
    "disappointment": "disappointed",
    "helplessness": "helpless",
    "anxiety": "anxious",
}

_R1_ANSWER = re.compile(r"<answer>(.*?)</answer>")
_R1_FORMAT = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
_EMO_R3_FORMAT = re.compile(r"<step1>.*</step1>.*<step2>.*</step2>.*<step3>.*</step3>.*\\boxed\{.*\}.*", re.DOTALL)
_MATH_FORMAT = re.compile(r"<think>.*</think>.*\\boxed\{.*\}.*", re.DOTALL)


def r1_omni_extract(content: str) -> str:
    """R1-Omni's answer: the first ``<answer>`` on one line, stripped, else the stripped content.

    >>> r1_omni_extract("<think>x</think><answer> sad </answer>"), r1_omni_extract(" sad ")
    ('sad', 'sad')
    """
    m = _R1_ANSWER.search(content)
    return m.group(1).strip() if m else content.strip()


def extract_boxed(text: str) -> str:
    r"""mathruler's ``extract_boxed_content``: the last ``\boxed{...}`` (braces balanced), stripped,
    or "None".

    >>> extract_boxed(r"\boxed{a} \boxed{ b{c} }"), extract_boxed("no box")
    ('b{c}', 'None')
    """
    start = text.rfind("\\boxed{")
    if start == -1:
        return "None"
    content, depth = text[start + len("\\boxed{") :], 0
    for i, ch in enumerate(content):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth == -1:
            return content[:i].strip()
    return "None"


def official_word(style: str, label: str, words: dict[str, str] | None) -> str:
    """The ground-truth string the released grader compares with."""
    if style == "tags":
        return R1_OMNI_WORDS.get(label, label)
    return (words or {}).get(label, label)


def official_answer(style: str, completion: str) -> str:
    """The answer string the released grader reads from ``completion``."""
    if style == "tags":
        return r1_omni_extract(completion)
    if style in ("boxed", "think_boxed"):
        return extract_boxed(normalize_tags(completion))
    raise ValueError(
        f"no released grader for answer style {style!r}; strict_official covers tags (R1-Omni), "
        "boxed (EMO-R3) and think_boxed (EMO-R3's naive GRPO)"
    )


def official_accuracy(style: str, completion: str, label: str, words: dict[str, str] | None = None) -> float:
    """1.0 when the released grader counts ``completion`` correct for ``label``."""
    got, want = official_answer(style, completion), official_word(style, label, words)
    if style == "tags":  # R1-Omni parses its ground truth "<answer> w </answer>" the same way: exact, case-sensitive
        return float(got == r1_omni_extract(f"<answer> {want} </answer>"))
    return float(got.lower() == want.lower())


def official_format(style: str, completion: str) -> float:
    """1.0 when the released format regex matches ``completion``."""
    if style == "tags":
        return float(_R1_FORMAT.fullmatch(completion) is not None)
    pattern = {"boxed": _EMO_R3_FORMAT, "think_boxed": _MATH_FORMAT}.get(style)
    if pattern is None:
        official_answer(style, completion)  # raises the clear error
    return float(pattern.fullmatch(normalize_tags(completion)) is not None)


def official_emotion(
    style: str, completion: str, labels: tuple[str, ...], words: dict[str, str] | None = None
) -> str | None:
    """The label the released grader would count ``completion`` correct for, if any."""
    return next((lab for lab in labels if official_accuracy(style, completion, lab, words)), None)
