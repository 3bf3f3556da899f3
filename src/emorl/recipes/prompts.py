"""Prompt templates per recipe. Recipes are data: a question, a format instruction and an
answer style; the same prompt is used for training and evaluation unless a config says otherwise."""

from __future__ import annotations

from dataclasses import dataclass

R1_OMNI_QUESTION = (
    "As an emotional recognition expert; throughout the video, which emotion conveyed by the "
    "characters is the most obvious to you?"
)
R1_OMNI_EVAL_QUESTION = (
    "As an emotional recognition expert, in the video, when the characters display their "
    "emotions, which predominant feeling is most clearly expressed?"
)
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
EMO_R3_FORMAT_TAGS = EMO_R3_FORMAT.replace(
    "The final answer MUST BE put in \\boxed{}.", "The final answer MUST BE put in <answer> </answer> tags."
)
# The released SET prompt for still images (SeerRay-Lab/emo-r3 examples/format_prompt/emor3.jinja,
# after "{{ content | trim }}\n\n"), verbatim
EMO_R3_FORMAT_IMAGE = (
    "You First think the emotional meaning step by step, and then provide the final answer.\n\n"
    "The reasoning process MUST follow the structure below:\n"
    "<step1>Identify what in the scene could trigger emotion (action, face, environment).</step1>\n"
    "<step2>Describe how a human would feel about it.</step2>\n"
    "<step3>Conclude if the emotion is positive or negative, and if it's high or low arousal.</step3>\n\n"
    "The final answer MUST BE put in \\boxed{}."
)
# EasyR1's math.jinja (after "{{ content | trim }} "), EMO-R3's naive-GRPO baseline prompt, verbatim
MATH_FORMAT = (
    "You FIRST think about the reasoning process as an internal monologue and then provide the final "
    "answer. The reasoning process MUST BE enclosed within <think> </think> tags. The final answer MUST "
    "BE put in \\boxed{}."
)
# EMO-R3's `problem` text is not released; its other prompts ask this, then list the categories
IMAGE_QUESTION = "Which emotion best describes the image?"


# recipe -> (question, format instruction) used when the config leaves prompt.question / prompt.format empty
RECIPE_PROMPTS: dict[str, tuple[str, str]] = {
    "r1-omni": (R1_OMNI_QUESTION, R1_OMNI_FORMAT),
    "plain": (R1_OMNI_QUESTION, R1_OMNI_FORMAT),
    "emo-r3": ("Which emotion best describes the video?", EMO_R3_FORMAT),
    "emo-r3-va": ("Which emotion best describes the video?", EMO_R3_FORMAT),
    "emo-r3-tags": ("Which emotion best describes the video?", EMO_R3_FORMAT_TAGS),
    "emo-r3-text": ("Which emotion best describes the video?", EMO_R3_FORMAT),
    "emo-r3-mult": ("Which emotion best describes the video?", EMO_R3_FORMAT),
    "naive-grpo": ("Which emotion best describes the video?", MATH_FORMAT),
}
# the same recipes on still images (EMO-R3's own ground): the released prompts
IMAGE_RECIPE_PROMPTS: dict[str, tuple[str, str]] = {
    **{r: (IMAGE_QUESTION, EMO_R3_FORMAT_IMAGE) for r in ("emo-r3", "emo-r3-va", "emo-r3-text", "emo-r3-mult")},
    "emo-r3-tags": (
        IMAGE_QUESTION,
        EMO_R3_FORMAT_IMAGE.replace(
            "The final answer MUST BE put in \\boxed{}.", "The final answer MUST BE put in <answer> </answer> tags."
        ),
    ),
    "naive-grpo": (IMAGE_QUESTION, MATH_FORMAT),
    "r1-omni": (
        "As an emotional recognition expert, which emotion conveyed in the image is the most obvious to you?",
        R1_OMNI_FORMAT,
    ),
    "plain": (
        "As an emotional recognition expert, which emotion conveyed in the image is the most obvious to you?",
        R1_OMNI_FORMAT,
    ),
}


def recipe_prompt(recipe: str, question: str = "", format: str = "", *, image: bool = False) -> tuple[str, str]:
    """(question, format) of ``recipe``, with the given non-empty strings taking precedence;
    ``image``: the still-image variant (``IMAGE_RECIPE_PROMPTS``: EMO-R3's released SET prompt)."""
    table = IMAGE_RECIPE_PROMPTS if image else RECIPE_PROMPTS
    q, f = table.get(recipe, table["r1-omni"])
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
