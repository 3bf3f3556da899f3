"""EMO-R3 on omni inputs: SET parsing (boxed and tags variants), the structure / valence-arousal
components, reflection text extraction and the scoring of reflection answers, the recipes and
configs, and the synthetic structured-trace converter."""

import numpy as np
import pytest

from emorl.config import load_config
from emorl.data.labels import LABEL_SETS, VALENCE_AROUSAL, emotions_in
from emorl.recipes.parse import parse_completion, parse_steps
from emorl.recipes.prompts import EMO_R3_FORMAT
from emorl.recipes.rewards import get_recipe, score
from emorl.rl.reflection import (
    coherence_prompt,
    coherence_score,
    grounding_prompt,
    grounding_score,
    grounding_views,
    reflection_reasoning,
    split_by_modality,
    stage1_description,
)

DFEW = LABEL_SETS["dfew"]
R3 = get_recipe("emo-r3")
R3_TAGS = get_recipe("emo-r3-tags")
S1 = "I see lowered brows and a drooping mouth. I hear a low pitch and slow speech."
S2 = "A person would feel heavy and low."
S3 = "The emotion is negative, with low arousal."
GOOD = f"<step1>{S1}</step1>\n<step2>{S2}</step2>\n<step3>{S3}</step3>\n\\boxed{{sad}}"
GOOD_TAGS = f"<step1>{S1}</step1><step2>{S2}</step2><step3>{S3}</step3><answer>sad</answer>"


def r3(text, label="sad", recipe=R3):
    return score(recipe, text, label, DFEW)


# ----------------------------------------------------------------------------- rule components
def test_well_formed_boxed_scores_every_rule_component():
    comps, parsed = r3(GOOD)
    assert comps == {"accuracy": 1.0, "format": 1.0, "structure": 1.0, "valence_arousal": 1.0, "overall": 0.9}
    assert parsed.steps == (S1, S2, S3)


def test_offline_score_leaves_model_components_out():
    comps, _ = r3(GOOD)
    assert not {"coherence", "grounding", "grounding_video", "grounding_audio"} & set(comps)
    comps, _ = score(R3, GOOD, "sad", DFEW, extra={"coherence": 1.0, "grounding": 0.0, "grounding_video": 1.0})
    assert comps["overall"] == pytest.approx(0.8 + 0.1 + 0.0 + 0.1)  # grounding_video logged, weight 0
    assert comps["grounding_video"] == 1.0


def test_well_formed_tags_variant():
    comps, parsed = r3(GOOD_TAGS, recipe=R3_TAGS)
    assert comps["format"] == comps["structure"] == comps["accuracy"] == 1.0
    assert parsed.emotion == "sad" and parsed.steps[0] == S1
    # the boxed recipe does not accept the tags variant's answer, and vice versa
    assert r3(GOOD_TAGS)[0]["format"] == 0.0 and r3(GOOD, recipe=R3_TAGS)[0]["format"] == 0.0


def test_whitespace_around_tags_is_normalised():
    text = f"< step1 >{S1}</ step1 > <step2 >{S2}< /step2><step3>{S3}</step3> \\boxed{{ Sadness }}"
    comps, _parsed = r3(text)
    assert comps["format"] == comps["structure"] == comps["accuracy"] == 1.0


@pytest.mark.parametrize(
    "text",
    [
        f"<step1>{S1}</step1><step3>{S3}</step3>\\boxed{{sad}}",  # missing stage
        f"<step2>{S2}</step2><step1>{S1}</step1><step3>{S3}</step3>\\boxed{{sad}}",  # out of order
        f"<step1>{S1}</step1><step3>{S3}</step3><step2>{S2}</step2>\\boxed{{sad}}",
        f"preamble <step1>{S1}</step1><step2>{S2}</step2><step3>{S3}</step3>\\boxed{{sad}}",  # must start with step1
        f"<step1>{S1} <step2>x</step2></step1><step2>{S2}</step2><step3>{S3}</step3>\\boxed{{sad}}",  # injected stage
        f"<step1>{S1} \\boxed{{sad}}</step1><step2>{S2}</step2><step3>{S3}</step3>\\boxed{{sad}}",  # injected box
        "\\boxed{sad}",
    ],
)
def test_structure_fails(text):
    comps, _ = r3(text)
    assert comps["structure"] == 0.0 and comps["format"] == 0.0


@pytest.mark.parametrize(
    "text",
    [
        f"<step1></step1><step2>{S2}</step2><step3>{S3}</step3>\\boxed{{sad}}",  # empty stage
        f"<step1>{S1} <answer>sad</answer></step1><step2>{S2}</step2><step3>{S3}</step3>\\boxed{{sad}}",  # injected answer
    ],
)
def test_structure_is_stricter_than_emo_r3_format(text):
    """EMO-R3's format regex (``.*`` per stage) accepts an empty stage and foreign tags in a stage;
    ``structure`` does not."""
    comps, _ = r3(text)
    assert comps["structure"] == 0.0 and comps["format"] == 1.0


@pytest.mark.parametrize(
    "text,reason,fmt",
    [
        (GOOD.replace("\\boxed{sad}", "\\boxed{sad} \\boxed{happy}"), "several_answers", 0.0),  # several boxes
        (GOOD.replace("\\boxed{sad}", "\\boxed{sad, angry}"), "several_emotions", 1.0),  # one box, several emotions
        (GOOD.replace("\\boxed{sad}", "\\boxed{not sure}"), "no_emotion", 1.0),
        (GOOD.replace("\\boxed{sad}", ""), "no_answer", 0.0),
        (GOOD.replace("\\boxed{sad}", "the answer is sad"), "no_answer", 0.0),  # no fallback to raw content
    ],
)
def test_no_single_boxed_emotion_is_not_correct(text, reason, fmt):
    comps, parsed = r3(text)
    assert parsed.reason == reason and comps["accuracy"] == 0.0 and comps["format"] == fmt
    assert comps["structure"] == 1.0  # the stages are fine; only the answer is not


def test_repeated_identical_boxes_parse_but_fail_format():
    comps, parsed = r3(GOOD + " \\boxed{sad}")
    assert parsed.emotion == "sad" and comps["accuracy"] == 1.0 and comps["format"] == 0.0


def test_anything_may_follow_the_box_as_in_emo_r3():
    comps, _ = r3(GOOD + " That is my answer.")
    assert comps["format"] == 1.0


@pytest.mark.parametrize(
    "text",
    [
        GOOD_TAGS + " trailing",
        GOOD_TAGS.replace("<answer>sad</answer>", "<answer></answer>"),
        GOOD_TAGS.replace("<answer>sad</answer>", "<answer>sad</answer><answer>sad</answer>"),
        GOOD_TAGS.replace(f"{S2}", f"{S2} <answer>happy</answer>"),
        GOOD_TAGS.replace("<answer>sad</answer>", "\\boxed{sad}"),
    ],
)
def test_tags_variant_format_failures(text):
    assert not parse_steps(text).format_ok


def test_tags_variant_injected_answer_is_several_answers():
    p = parse_steps(GOOD_TAGS.replace(S2, f"{S2} <answer>happy</answer>"))
    assert p.emotion is None and p.reason == "several_answers"


def test_parse_completion_styles_and_unknown_style():
    assert parse_completion("<think>x</think><answer>sad</answer>", "tags").emotion == "sad"
    with pytest.raises(ValueError, match="unknown answer style"):
        parse_completion("x", "nope")


@pytest.mark.parametrize(
    "step3,label,expected",
    [
        ("The emotion is negative, with low arousal.", "sad", 1.0),
        ("Negative valence, high arousal.", "sad", 0.5),
        ("Positive and low arousal.", "sad", 0.5),
        ("Positive, high arousal.", "sad", 0.0),
        ("It is positive or negative, high or low.", "sad", 0.0),  # echoing the instruction states nothing
        ("Neutral, low arousal.", "neutral", 1.0),
        ("Positive and high-arousal.", "happy", 1.0),
        ("", "sad", 0.0),
    ],
)
def test_valence_arousal(step3, label, expected):
    text = f"<step1>{S1}</step1><step2>{S2}</step2><step3>{step3}</step3>\\boxed{{{label}}}"
    assert get_recipe("emo-r3-va").weights["valence_arousal"] == 0.1
    assert score(get_recipe("emo-r3-va"), text, label, DFEW)[0]["valence_arousal"] == expected


def test_valence_arousal_needs_the_stages():
    assert r3("\\boxed{sad}")[0]["valence_arousal"] == 0.0


def test_recipes_and_weights():
    assert R3.weights["accuracy"] == 0.8 and R3.weights["format"] == 0.1
    assert R3.weights["coherence"] == R3.weights["grounding"] == 0.1
    assert R3.weights["structure"] == R3.weights["valence_arousal"] == 0.0
    assert R3_TAGS.style == "steps" and get_recipe("plain").weights == {"accuracy": 0.9, "format": 0.1}


# ----------------------------------------------------------------------------- reflection texts
def test_reflection_reasoning_is_stages_1_to_2_with_tags():
    assert reflection_reasoning(GOOD, "boxed") == f"<step1>{S1}</step1><step2>{S2}</step2>"
    assert reflection_reasoning(GOOD_TAGS, "steps") == f"<step1>{S1}</step1><step2>{S2}</step2>"
    # only step1: EMO-R3's regex needs </step2>
    assert reflection_reasoning(f"<step1>{S1}</step1>\\boxed{{sad}}", "boxed") is None
    assert reflection_reasoning("<step1></step1><step2></step2>", "boxed") is None
    assert reflection_reasoning("no stages at all", "boxed") is None


def test_reflection_reasoning_removes_injected_answers():
    text = f"<step1>{S1} \\boxed{{happy}}</step1><step2>{S2} <answer>happy</answer></step2>\\boxed{{sad}}"
    r = reflection_reasoning(text, "boxed")
    assert "happy" not in r and S1 in r


def test_tags_style_reasoning_is_the_think_text():
    text = "<think>The brows are lowered. The voice is loud.</think><answer>angry</answer>"
    assert (
        reflection_reasoning(text, "tags")
        == stage1_description(text, "tags")
        == "The brows are lowered. The voice is loud."
    )
    assert reflection_reasoning("<answer>angry</answer>", "tags") is None


def test_stage1_description():
    assert stage1_description(GOOD, "boxed") == f"<step1>{S1}</step1>"
    assert stage1_description(f"<step1>{S1}</step1>", "boxed") is None  # no <step2> follows


def test_split_by_modality():
    parts = split_by_modality(f"<step1>{S1} Taken together it is clear.</step1>")
    assert parts == {
        "video": "I see lowered brows and a drooping mouth.",
        "audio": "I hear a low pitch and slow speech.",
    }
    both = split_by_modality("The face and the voice agree.")
    assert both["video"] == both["audio"] == "The face and the voice agree."
    assert split_by_modality("Nothing here.") == {"video": "", "audio": ""}


def test_split_by_modality_on_synthetic_traces():
    """Every synthetic cue sentence is attributed to the modality it describes."""
    from emorl.data.synthetic import split_specs
    from emorl.data.synthetic.set_traces import cue_description
    from emorl.data.synthetic.traces import CUE_LEXICON

    rng = np.random.default_rng(0)
    for spec in split_specs(3, "train", 40):
        desc = cue_description(spec.meta(), spec.label, rng)
        parts = split_by_modality(desc)
        for m in ("video", "audio"):
            assert parts[m], (m, desc)
            other = "audio" if m == "video" else "video"
            assert not any(f" {p} " in f" {parts[m].lower()} " for p in CUE_LEXICON[other] if len(p) > 6), (m, desc)


def test_prompts_follow_the_reference():
    p = coherence_prompt("<step1>a</step1><step2>b</step2>", ("happy", "sad"))
    assert p == (
        "<step1>a</step1><step2>b</step2>\nWhich emotion best describes the text above?\n"
        "Answer the question using one emotional category (one word only): happy, sad."
    )
    assert (
        grounding_prompt("<step1>a</step1>", "joint")
        == "Can the following text describe the clip?Please answer with yes or no.<step1>a</step1>"
    )
    assert "the audio?" in grounding_prompt("x", "audio") and "the video?" in grounding_prompt("x", "video")


# ----------------------------------------------------------------------------- reflection scores
@pytest.mark.parametrize(
    "output,expected",
    [
        ("sad", 1.0),
        ("Sad.", 1.0),
        (" sadness\n", 1.0),
        ("SAD", 1.0),  # the reference's exact match fails these
        ("happy", 0.0),
        ("calm", 0.0),  # another emotion (in or out of the label set)
        ("sad, angry", 0.0),
        ("happy or sad", 0.0),  # several emotions: not the label
        ("None", 0.5),
        ("none", 0.5),
        ("", 0.5),
        ("I cannot tell", 0.5),  # no usable answer
        (None, 0.5),  # nothing to reflect on (no stages 1-2)
    ],
)
def test_coherence_score(output, expected):
    assert coherence_score(output, "sad") == expected


@pytest.mark.parametrize(
    "output,expected",
    [
        ("yes", 1.0),
        ("Yes.", 1.0),
        ("YES, it can", 1.0),
        ("no", 0.0),
        ("No.", 0.0),
        ("no, it cannot", 0.0),
        ("None", 0.5),  # the reference reads "None" as no (substring); emorl: neither
        ("the eyes", 0.5),  # the reference reads "eyes" as yes
        ("yes and no", 0.5),
        ("", 0.5),
        ("maybe", 0.5),
        ("not really", 0.5),
        (None, 0.0),  # no stage-1 description: not grounded (the reference's effective outcome)
    ],
)
def test_grounding_score(output, expected):
    assert grounding_score(output) == expected


def test_grounding_views():
    assert grounding_views("none") == ()
    assert grounding_views("joint") == ("joint",)
    assert grounding_views("per_modality") == ("joint", "video", "audio")
    with pytest.raises(ValueError, match="reflection.grounding"):
        grounding_views("both")


# ----------------------------------------------------------------------------- configs
@pytest.mark.parametrize("name", ["r1-omni", "emo-r3", "r1-omni-tiny", "emo-r3-tiny"])
def test_recipe_configs_load(name):
    cfg = load_config(name)
    get_recipe(cfg.prompt.recipe)
    grounding_views(cfg.reflection.grounding)
    assert cfg.grpo.completions_per_prompt == 8 and cfg.sampling.temperature == 1.0
    if name.startswith("emo-r3"):
        assert cfg.prompt.format == EMO_R3_FORMAT and cfg.reflection.enabled
        assert (cfg.reflection.temperature, cfg.reflection.top_p) == (0.6, 0.95)
        assert (cfg.grpo.epsilon_low, cfg.grpo.epsilon_high, cfg.grpo.beta) == (0.2, 0.3, 0.01)
    else:
        assert cfg.prompt.recipe == "r1-omni" and not cfg.reflection.enabled and cfg.grpo.beta == 0.04


def test_paper_hyperparameters():
    r1, r3 = load_config("r1-omni"), load_config("emo-r3")
    assert (r1.grpo.lr, r1.grpo.prompts_per_step, r1.sampling.max_new_tokens) == (1e-6, 16, 512)
    # a real checkpoint sees its family's own frames; R1-Omni's 8 fixed frames are the recipe's option
    assert (r1.data.sampling, r1.data.num_frames, r1.data.frame_size) == ("native", 0, 0)
    fixed = load_config("r1-omni", ["data.sampling=fixed", "data.num_frames=8", "data.frame_size=224"])
    assert (fixed.data.sampling, fixed.data.num_frames, fixed.data.frame_size) == ("fixed", 8, 224)
    assert (r3.grpo.lr, r3.grpo.weight_decay, r3.sampling.max_new_tokens, r3.grpo.advantage_eps) == (
        2e-6,
        0.01,
        2048,
        1e-6,
    )


def test_reflection_config_overrides():
    cfg = load_config("emo-r3-tiny", ["reflection.grounding=per_modality", "reflection.max_new_tokens=8"])
    assert cfg.reflection.grounding == "per_modality" and cfg.reflection.max_new_tokens == 8


# ----------------------------------------------------------------------------- structured traces
def test_structured_traces_from_true_cues():
    from emorl.data.synthetic import split_specs
    from emorl.data.synthetic.set_traces import HUMAN_RESPONSE, structured_trace

    rng = np.random.default_rng(1)
    for spec in split_specs(5, "coldstart", 28):
        text = structured_trace(spec.meta(), spec.label, rng)
        comps, parsed = r3(text, spec.label)
        assert comps == {
            "accuracy": 1.0,
            "format": 1.0,
            "structure": 1.0,
            "valence_arousal": 1.0,
            "overall": pytest.approx(0.9),
        }, text
        s1, s2, s3 = parsed.steps
        assert emotions_in(s1) == [] and emotions_in(s2) == [], text  # the reasoning never names the label
        assert s2 in HUMAN_RESPONSE[spec.label]
        assert VALENCE_AROUSAL[spec.label][0] in s3
        tags = structured_trace(spec.meta(), spec.label, rng, style="steps")
        assert score(R3_TAGS, tags, spec.label, DFEW)[0]["format"] == 1.0
    for phrases in HUMAN_RESPONSE.values():
        assert all(emotions_in(p) == [] for p in phrases)
