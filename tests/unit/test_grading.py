"""The answer grammar a policy cannot game, label sets beyond DFEW's, the papers' released graders
(strict_official), and property-based checks of the grammar's invariants."""

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from emorl.cli import main
from emorl.data.labels import FORMS, LABEL_SETS, answer_terms, label_words, parse_synonyms
from emorl.recipes.parse import FILLERS, HEDGES, NEGATIONS, parse_completion, read_answer
from emorl.recipes.rewards import RewardRecipe, get_recipe, score
from emorl.rl.grpo import group_advantages

DFEW = LABEL_SETS["dfew"]
R1 = get_recipe("r1-omni")
R3 = get_recipe("emo-r3")


def tags(answer: str) -> str:
    return f"<think>The brows are drawn together.</think>\n<answer>{answer}</answer>"


def acc(answer: str, label: str = "happy", labels=DFEW, recipe=R1, words=None) -> float:
    return score(recipe, tags(answer), label, labels, words=words)[0]["accuracy"]


@pytest.mark.parametrize(
    "answer,reason",
    [
        ("not happy", "negated"),
        ("isn't happy", "negated"),
        ("never happy", "negated"),
        ("NOT **happy**", "negated"),
        ("happy? no", "negated"),
        ("maybe happy", "hedged"),
        ("probably happy", "hedged"),
        ("happy or sad", "hedged"),
        ("a little happy", "hedged"),
        ("happy and sad", "several_emotions"),
        ("happy, surprised", "several_emotions"),
        ("happy because she smiles", "extra_words"),
        ("", "empty_answer"),
        ("I cannot tell", "no_emotion"),
    ],
)
def test_negated_hedged_and_multi_emotion_answers_are_never_correct(answer, reason):
    p = parse_completion(tags(answer), labels=DFEW)
    assert p.emotion is None and p.reason == reason
    assert acc(answer) == 0.0


@pytest.mark.parametrize("answer", ["unhappy", "glad", "joyful", "cheerful", "mad", "afraid", "scared"])
def test_loose_synonyms_are_other_words_not_the_label(answer):
    assert parse_completion(tags(answer), labels=DFEW).emotion is None
    assert acc(answer, "sad") == acc(answer, "happy") == acc(answer, "angry") == acc(answer, "fear") == 0.0


@pytest.mark.parametrize(
    "answer,label", [("hap", "happy"), ("NEU", "neutral"), ("ang", "angry"), ("fea", "fear"), ("worried", "anxiety")]
)
def test_corpus_codes_are_annotation_aliases_never_answers(answer, label):
    from emorl.data.labels import to_canonical

    assert to_canonical(answer) == label  # reading annotations
    assert acc(answer, label, LABEL_SETS["mafw"]) == 0.0  # reading a model's answer


def test_a_label_sets_own_word_is_an_answer_for_that_set_only():
    emotion6, meld = LABEL_SETS["emotion6"], LABEL_SETS["meld"]
    assert acc("Joy", "happy", emotion6, words=label_words("emotion6")) == 1.0
    assert acc("joyful", "happy", meld, words=label_words("meld")) == 1.0
    assert acc("joy", "happy", DFEW) == 0.0  # DFEW says happy
    assert acc("worried", "anxiety", LABEL_SETS["mer2023"], words=label_words("mer2023")) == 1.0


def test_out_of_set_emotion_is_recognised_and_wrong():
    p = parse_completion(tags("calm"), labels=DFEW)
    assert p.emotion == "calm" and acc("calm", "calm", DFEW) == 0.0


def test_mikels8_and_emotion6_label_sets():
    mikels = LABEL_SETS["emoset"]
    assert set(mikels) == {"amusement", "angry", "awe", "contentment", "disgust", "excitement", "fear", "sad"}
    for answer, label in (
        ("Amusement", "amusement"),
        ("amused", "amusement"),
        ("awe", "awe"),
        ("contentment", "contentment"),
        ("excited", "excitement"),
        ("anger", "angry"),
        ("sadness", "sad"),
    ):
        box = f"<step1>a</step1><step2>b</step2><step3>positive, high</step3>\\boxed{{{answer}}}"
        comps, p = score(R3, box, label, mikels, words=label_words("emoset"))
        assert p.emotion == label and comps["accuracy"] == 1.0 and comps["format"] == 1.0
    assert set(LABEL_SETS["emotion6"]) == {"angry", "disgust", "fear", "happy", "sad", "surprise"}


def test_explicit_answer_synonyms_from_the_config():
    syn = parse_synonyms(["unhappy=sad", "over the moon=happy"])
    recipe = RewardRecipe(synonyms=tuple(syn.items()))
    assert score(recipe, tags("Unhappy"), "sad", DFEW)[0]["accuracy"] == 1.0
    assert score(recipe, tags("over the moon!"), "happy", DFEW)[0]["accuracy"] == 1.0
    assert score(recipe, tags("not unhappy"), "sad", DFEW)[0]["accuracy"] == 0.0
    with pytest.raises(ValueError, match="word=label"):
        parse_synonyms(["unhappy"])
    with pytest.raises(ValueError, match="bored"):
        parse_synonyms(["meh=bored"])


def test_declared_labels_of_ones_own():
    labels = ("frustrated", "mixed feelings", "happy")
    assert parse_completion(tags("Mixed feelings."), labels=labels).emotion == "mixed feelings"
    assert parse_completion(tags("frustrated"), labels=labels).emotion == "frustrated"
    assert parse_completion(tags("not frustrated"), labels=labels).emotion is None


# ------------------------------------------------------------------------------ the released graders
OFF_R1 = RewardRecipe("tags", {"accuracy": 1.0, "format": 1.0}, official=True)
OFF_R3 = RewardRecipe("boxed", {"accuracy": 0.8, "format": 0.1}, official=True)


@pytest.mark.parametrize(
    "completion,label,accuracy,fmt",
    [
        ("<think>x</think><answer>sad</answer>", "sad", 1.0, 1.0),
        ("<think>x</think><answer> sad </answer>", "sad", 1.0, 1.0),  # stripped
        ("<think>x</think><answer>Sad</answer>", "sad", 0.0, 1.0),  # case-sensitive
        ("<think>x</think><answer>sadness</answer>", "sad", 0.0, 1.0),  # no inflections
        ("<think>x</think><answer>not sad</answer>", "sad", 0.0, 1.0),
        (" <think>x</think><answer>sad</answer> ", "sad", 1.0, 0.0),  # fullmatch: whitespace fails format
        ("<think>x</think><answer></answer>", "sad", 0.0, 1.0),  # empty answer passes R1-Omni's format
        ("sad", "sad", 1.0, 0.0),  # no tags: the stripped content is the answer
        ("<think>x</think><answer>\nsad</answer>", "sad", 0.0, 1.0),  # no DOTALL: falls back to the whole content
        ("<think>x</think><answer>anxious</answer>", "anxiety", 1.0, 1.0),  # R1-Omni's MAFW word
    ],
)
def test_strict_official_r1_omni(completion, label, accuracy, fmt):
    comps, _ = score(OFF_R1, completion, label, LABEL_SETS["mafw"])
    assert (comps["accuracy"], comps["format"]) == (accuracy, fmt)


@pytest.mark.parametrize(
    "completion,label,accuracy,fmt",
    [
        ("<step1>a</step1><step2>b</step2><step3>c</step3>\\boxed{Sadness}", "sad", 1.0, 1.0),  # lower-cased
        ("< step1 >a</ step1 ><step2>b</step2><step3>c</step3>\\boxed{ sadness } tail", "sad", 1.0, 1.0),
        ("<step1>a</step1><step2>b</step2><step3>c</step3>\\boxed{sad}", "sad", 0.0, 1.0),  # EmoSet's word is sadness
        (
            "<step1>a</step1><step2>b</step2><step3>c</step3>\\boxed{anger} \\boxed{sadness}",
            "sad",
            1.0,
            1.0,
        ),  # last box
        ("<step2>b</step2><step1>a</step1><step3>c</step3>\\boxed{sadness}", "sad", 1.0, 0.0),
        ("no box at all", "sad", 0.0, 0.0),
    ],
)
def test_strict_official_emo_r3(completion, label, accuracy, fmt):
    comps, _ = score(OFF_R3, completion, label, LABEL_SETS["emoset"], words=label_words("emoset"))
    assert (comps["accuracy"], comps["format"]) == (accuracy, fmt)
    assert comps["overall"] == pytest.approx(0.8 * accuracy + 0.1 * fmt)


def test_batch_scaled_advantages_of_one_reward_are_zero_not_nan():
    a = group_advantages(torch.tensor([[1.0]]), scale="batch")
    assert torch.isfinite(a).all() and a.item() == 0.0
    assert torch.isfinite(group_advantages(torch.tensor([[0.5]]), scale="group")).all()


def test_reward_cli_scores_mikels8_and_emotion6(tmp_path, capsys):
    rows = [
        {
            "completion": "<step1>a</step1><step2>b</step2><step3>c</step3>\\boxed{amusement}",
            "label": "amusement",
            "dataset": "emoset",
        },
        {
            "completion": "<step1>a</step1><step2>b</step2><step3>c</step3>\\boxed{joy}",
            "label": "joy",
            "dataset": "emotion6",
        },
        {
            "completion": "<step1>a</step1><step2>b</step2><step3>c</step3>\\boxed{anger}",
            "label": "anger",
            "label_set": ["anger", "disgust", "fear", "joy", "sadness", "surprise"],
        },
    ]
    f = tmp_path / "c.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["reward", "--recipe", "emo-r3", str(f)]) == 0
    out = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [o["accuracy"] for o in out] == [1.0, 1.0, 1.0] and out[1]["label"] == "happy"
    assert main(["reward", "--recipe", "emo-r3", str(f), "grading.strict_official=true"]) == 0
    strict = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [o["accuracy"] for o in strict] == [1.0, 1.0, 1.0]


# ------------------------------------------------------------------------------ properties
_LABELS = list(DFEW)
_OTHER = ["smile", "voice", "loud", "face", "eyes", "person"]
_MARKUP = [
    lambda w: w,
    lambda w: f"**{w}**",
    lambda w: f"`{w}`",
    lambda w: f'"{w}"',
    lambda w: f"({w})",
    lambda w: f"\\text{{{w}}}",
    lambda w: f"<b>{w}</b>",
    lambda w: f"{w}.",
    lambda w: f"{w}!",
    lambda w: f" {w} ",
]
_CASE = [str.lower, str.upper, str.title, str.capitalize]


@st.composite
def correct(draw):
    label = draw(st.sampled_from(_LABELS))
    form = draw(st.sampled_from(FORMS[label]))
    filler = draw(st.sampled_from(["", "the emotion is ", "final answer: ", "The person feels "]))
    return label, filler + form


def dress(text: str, mark, case) -> str:
    return mark(case(text))


@settings(max_examples=300, deadline=None)
@given(correct(), st.sampled_from(_MARKUP), st.sampled_from(_CASE))
def test_markup_and_case_keep_a_correct_answer_correct(item, mark, case):
    label, answer = item
    assert read_answer(dress(answer, mark, case), answer_terms(DFEW)) == (label, "ok")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [*FORMS["happy"], *FORMS["sad"], *sorted(NEGATIONS)[:6], *sorted(HEDGES)[:6], *sorted(FILLERS)[:8], *_OTHER]
        ),
        max_size=6,
    ),
    st.sampled_from(_MARKUP),
    st.sampled_from(_CASE),
)
def test_markup_and_case_never_change_a_verdict(words, mark, case):
    text = " ".join(words)
    assert read_answer(dress(text, mark, case)) == read_answer(text)


@settings(max_examples=300, deadline=None)
@given(
    correct(),
    st.sampled_from(
        ["not {}", "{}? no", "isn't {}", "never {}", "no {}", "without {}", "hardly {}", "{} - not", "not really {}"]
    ),
    st.sampled_from(_MARKUP),
)
def test_negating_a_correct_answer_never_keeps_it_correct(item, template, mark):
    label, answer = item
    comps, p = score(R1, tags(mark(template.format(answer))), label, DFEW)
    assert p.emotion is None and comps["accuracy"] == 0.0


@settings(max_examples=300, deadline=None)
@given(
    correct(),
    st.sampled_from(
        [
            "maybe {}",
            "perhaps {}",
            "{} or {other}",
            "{} and {other}",
            "either {} or {other}",
            "{}, possibly {other}",
            "{} {other}",
        ]
    ),
    st.sampled_from(_LABELS),
)
def test_hedging_or_adding_an_emotion_never_keeps_it_correct(item, template, other_label):
    label, answer = item
    other = FORMS[other_label][0] if other_label != label else FORMS[_LABELS[(_LABELS.index(label) + 1) % 7]][0]
    comps, _ = score(R1, tags(template.format(answer, other=other)), label, DFEW)
    assert comps["accuracy"] == 0.0
