"""Prompt templates per recipe. Recipes are data: a question, a format instruction and an
answer style; the same prompt is used for training and evaluation unless a config says otherwise."""

from __future__ import annotations

from dataclasses import dataclass

R1_OMNI_QUESTION = ("As an emotional recognition expert; throughout the video, which emotion conveyed by the "
                    "characters is the most obvious to you?")
R1_OMNI_EVAL_QUESTION = ("As an emotional recognition expert, in the video, when the characters display their "
                         "emotions, which predominant feeling is most clearly expressed?")
R1_OMNI_FORMAT = "Output the thinking process in <think> </think> and final emotion in <answer> </answer> tags."

EMO_R3_FORMAT = (
    "You First think the emotional meaning step by step, and then provide the final answer.\n\n"
    "The reasoning process MUST follow the structure below:\n"
    "<step1>Identify what in the clip could trigger emotion (face, action, scene, and what is heard: tone, "
    "intonation, words).</step1>\n"
    "<step2>Describe how a human would feel about it.</step2>\n"
    "<step3>Conclude if the emotion is positive or negative, and if it's high or low arousal.</step3>\n\n"
    "The final answer MUST BE put in \\boxed{}."
)
EMO_R3_FORMAT_TAGS = EMO_R3_FORMAT.replace("The final answer MUST BE put in \\boxed{}.",
                                           "The final answer MUST BE put in <answer> </answer> tags.")


# recipe -> (question, format instruction) used when the config leaves prompt.question / prompt.format empty
RECIPE_PROMPTS: dict[str, tuple[str, str]] = {
    "r1-omni": (R1_OMNI_QUESTION, R1_OMNI_FORMAT),
    "plain": (R1_OMNI_QUESTION, R1_OMNI_FORMAT),
    "emo-r3": ("Which emotion best describes the video?", EMO_R3_FORMAT),
    "emo-r3-va": ("Which emotion best describes the video?", EMO_R3_FORMAT),
    "emo-r3-tags": ("Which emotion best describes the video?", EMO_R3_FORMAT_TAGS),
}


def recipe_prompt(recipe: str, question: str = "", format: str = "") -> tuple[str, str]:
    """(question, format) of ``recipe``, with the given non-empty strings taking precedence."""
    q, f = RECIPE_PROMPTS.get(recipe, RECIPE_PROMPTS["r1-omni"])
    return question or q, format or f


@dataclass(frozen=True)
class PromptSpec:
    question: str = R1_OMNI_QUESTION
    format: str = R1_OMNI_FORMAT
    with_options: bool = False  # append the dataset's candidate labels (R1-Omni's "withchoice" commit)


def build_prompt(spec: PromptSpec, labels: tuple[str, ...] | None = None, words: dict[str, str] | None = None) -> str:
    """The user text of a prompt; options (``with_options``) name each label by the label set's own
    word for it (``words``: MELD's ``joy``) or the label itself.

    >>> build_prompt(PromptSpec(question="Q?", format="F."), ("happy", "sad"))
    'Q?\\nF.'
    >>> build_prompt(PromptSpec(question="Q?", format="F.", with_options=True), ("happy", "sad"))
    'Q?\\nhappy, sad\\nF.'
    """
    parts = [spec.question]
    if spec.with_options:
        if not labels:
            raise ValueError("with_options needs the sample's label set")
        parts.append(", ".join((words or {}).get(lab, lab) for lab in labels))
    parts.append(spec.format)
    return "\n".join(parts)
