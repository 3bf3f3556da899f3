"""The shared answer parser and the R1-Omni rewards on well-formed, malformed and adversarial completions."""

import pytest

from emorl.data.labels import LABEL_SETS, UnknownLabelError, emotions_in, to_canonical
from emorl.recipes.parse import boxed_contents, parse_completion
from emorl.recipes.rewards import get_recipe, score

DFEW = LABEL_SETS["dfew"]
R1 = get_recipe("r1-omni")


def s(text, label="happy", labels=DFEW):
    comps, parsed = score(R1, text, label, labels)
    return comps, parsed


def test_well_formed():
    c, p = s("<think>The mouth curves up and the voice is bright.</think>\n<answer>happy</answer>")
    assert c == {"accuracy": 1.0, "format": 1.0, "overall": 2.0}
    assert p.reasoning.startswith("The mouth")


@pytest.mark.parametrize(
    "answer,label",
    [
        ("Happiness", "happy"),
        ("fearful", "fear"),
        ("surprised", "surprise"),
        (" SAD. ", "sad"),
        ("anger", "angry"),
        ("**Disgusted**", "disgust"),
        ("The emotion is sadness.", "sad"),
    ],
)
def test_inflections_and_case(answer, label):
    c, p = s(f"<think>x</think><answer>{answer}</answer>", label)
    assert p.emotion == label and c["accuracy"] == 1.0


@pytest.mark.parametrize(
    "text,reason",
    [
        ("<think>x</think><answer>happy or sad</answer>", "hedged"),
        ("<think>x</think><answer>happy, surprise</answer>", "several_emotions"),
        ("<think>x</think><answer>I cannot tell</answer>", "no_emotion"),
        ("<think>x</think>", "no_answer"),
        ("happy", "no_answer"),  # R1-Omni's fallback to raw content is NOT used
        ("<think>x</think><answer>happy</answer><answer>sad</answer>", "several_answers"),
    ],
)
def test_no_single_emotion_is_not_correct(text, reason):
    c, p = s(text)
    assert p.reason == reason
    assert p.emotion is None and c["accuracy"] == 0.0


@pytest.mark.parametrize(
    "text",
    [
        "<think>x</think><answer>happy</answer> trailing text",
        "preamble <think>x</think><answer>happy</answer>",
        "<answer>happy</answer>",
        "<think>x <answer>sad</answer></think><answer>happy</answer>",  # injected tags inside think
        "<think>x</think><answer></answer>",
        "<think>x</think><answer>happy</answer><answer>happy</answer>",
        "<think>a</think><think>b</think><answer>happy</answer>",
    ],
)
def test_format_failures(text):
    c, _ = s(text)
    assert c["format"] == 0.0


def test_repeated_identical_answers_still_parse_but_fail_format():
    c, p = s("<think>x</think><answer>happy</answer><answer>happy</answer>")
    assert p.emotion == "happy" and c["format"] == 0.0 and c["accuracy"] == 1.0


def test_label_outside_label_set_is_not_correct():
    c, p = s("<think>x</think><answer>calm</answer>", "calm", DFEW)
    assert p.emotion == "calm" and c["accuracy"] == 0.0


def test_wrong_emotion():
    c, _ = s("<think>x</think><answer>sad</answer>", "happy")
    assert c == {"accuracy": 0.0, "format": 1.0, "overall": 1.0}


def test_multiline_answer_and_whitespace():
    c, p = s("\n<think>line1\nline2</think>\n\n<answer>\n happy \n</answer>\n")
    assert c["format"] == 1.0 and p.emotion == "happy"


def test_negation_names_emotions_and_is_rejected():
    _, p = s("<think>x</think><answer>not angry but sad</answer>", "sad")
    assert p.emotion is None and p.reason == "negated"


def test_boxed_style():
    good = "<step1>face</step1><step2>feel</step2><step3>negative, low</step3> so \\boxed{sad}"
    p = parse_completion(good, "boxed")
    assert p.format_ok and p.emotion == "sad" and p.steps == ("face", "feel", "negative, low")
    assert not parse_completion("<step2>a</step2><step1>b</step1><step3>c</step3>\\boxed{sad}", "boxed").format_ok
    assert not parse_completion("<step1>a</step1><step3>c</step3>\\boxed{sad}", "boxed").format_ok
    two = parse_completion("<step1>a</step1><step2>b</step2><step3>c</step3>\\boxed{sad} \\boxed{happy}", "boxed")
    assert two.emotion is None and two.reason == "several_answers" and not two.format_ok
    assert (
        parse_completion("<step1>a</step1><step2>b</step2><step3>c</step3>\\boxed{sad, happy}", "boxed").emotion is None
    )
    assert boxed_contents("\\boxed{a{b}c}") == ["a{b}c"]
    assert boxed_contents("\\boxed{unclosed") == []


def test_vocabulary():
    assert emotions_in("Fearful and SURPRISED!") == ["fear", "surprise"]
    assert emotions_in("she looks scared") == ["fear"]  # a mention, though never an accepted answer
    assert to_canonical("Contemptuous") == "contempt"
    assert to_canonical("HAP") == "happy" and to_canonical("joy") == "happy"  # annotation aliases
    with pytest.raises(UnknownLabelError, match="'bored'"):
        to_canonical("bored")


def test_unknown_style():
    with pytest.raises(ValueError, match="answer style"):
        parse_completion("x", "xml")
