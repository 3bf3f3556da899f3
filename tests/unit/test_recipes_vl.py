"""EMO-R3 on images: the released prompts and configs, the naive-GRPO answer style, reward weights
as config keys (overrides, products, unknown names), hand-computed rewards."""

from __future__ import annotations

import json

import pytest

from emorl.config import ConfigError, load_config, packaged_config, run_config_yaml
from emorl.data.labels import LABEL_SETS, label_words
from emorl.recipes.parse import parse_completion
from emorl.recipes.prompts import (
    EMO_R3_FORMAT_IMAGE,
    IMAGE_RECIPE_PROMPTS,
    MATH_FORMAT,
    RECIPE_PROMPTS,
    recipe_prompt,
)
from emorl.recipes.rewards import RECIPES, check_weights, model_components, recipe_for, score

SET = "<step1>a dog in the rain</step1><step2>one would feel low</step2><step3>negative, low arousal</step3>"
EMOSET = LABEL_SETS["emoset"]
WORDS = label_words("emoset")


def test_released_set_prompt_is_verbatim():
    assert EMO_R3_FORMAT_IMAGE.splitlines() == [
        "You First think the emotional meaning step by step, and then provide the final answer.",
        "",
        "The reasoning process MUST follow the structure below:",
        "<step1>Identify what in the scene could trigger emotion (action, face, environment).</step1>",
        "<step2>Describe how a human would feel about it.</step2>",
        "<step3>Conclude if the emotion is positive or negative, and if it's high or low arousal.</step3>",
        "",
        "The final answer MUST BE put in \\boxed{}.",
    ]
    assert MATH_FORMAT.startswith("You FIRST think about the reasoning process as an internal monologue")
    assert recipe_prompt("emo-r3", image=True) == ("Which emotion best describes the image?", EMO_R3_FORMAT_IMAGE)
    assert recipe_prompt("naive-grpo", image=True)[1] == MATH_FORMAT
    assert recipe_prompt("emo-r3")[1] != EMO_R3_FORMAT_IMAGE  # clips keep their own wording
    assert set(RECIPES) <= set(RECIPE_PROMPTS) and set(RECIPES) <= set(IMAGE_RECIPE_PROMPTS)


def test_vl_configs_hold_the_released_settings():
    cfg = load_config(packaged_config("emo-r3-vl"))
    assert cfg.prompt.format == EMO_R3_FORMAT_IMAGE and cfg.prompt.recipe == "emo-r3"
    assert cfg.model.path == "Qwen/Qwen2.5-VL-3B-Instruct" and not cfg.model.freeze_vision
    g = cfg.grpo
    assert (g.completions_per_prompt, g.lr, g.epsilon_low, g.epsilon_high, g.dual_clip_c) == (8, 2e-6, 0.2, 0.3, 3.0)
    assert (g.beta, g.kl_estimator, g.loss_type, g.advantage_eps) == (0.01, "low_var_kl", "dapo", 1e-6)
    assert (cfg.sampling.temperature, cfg.sampling.top_p) == (1.0, 1.0)
    assert (cfg.reflection.enabled, cfg.reflection.temperature, cfg.reflection.top_p) == (True, 0.6, 0.95)
    assert cfg.grading.strict_official and cfg.data.modality == "image"
    r = recipe_for(cfg)
    assert r.official and r.style == "boxed"
    assert {k: w for k, w in r.weights.items() if w} == {
        "accuracy": 0.8,
        "coherence": 0.1,
        "grounding": 0.1,
        "format": 0.1,
    }
    naive = load_config(packaged_config("naive-grpo-vl"))
    assert naive.prompt.format == MATH_FORMAT and not naive.reflection.enabled
    rn = recipe_for(naive)
    assert rn.style == "think_boxed" and rn.weights == {"accuracy": 0.9, "format": 0.1} and model_components(rn) == []
    assert naive.grpo == cfg.grpo  # the same GRPO settings: only prompt and reward differ


def test_think_boxed_style():
    ok = parse_completion("<think>rain, a lone dog</think>\\boxed{sadness}", "think_boxed")
    assert ok.format_ok and ok.emotion == "sad" and ok.reasoning == "rain, a lone dog"
    assert parse_completion(" < think >x</ think > so \\boxed{Sadness.} done", "think_boxed").format_ok
    for bad in (
        "\\boxed{sad}",
        "<think>x</think>",
        "<think>x</think>\\boxed{sad}\\boxed{sad}",
        "<think>a \\boxed{x}</think>\\boxed{sad}",
        "<think>x</think>\\boxed{sad}<think>y</think>",
        "answer: <think>x</think>\\boxed{sad}",
    ):
        assert not parse_completion(bad, "think_boxed").format_ok, bad
    assert parse_completion("<think>x</think>\\boxed{happy} \\boxed{sad}", "think_boxed").reason == "several_answers"


@pytest.mark.parametrize(
    "completion,accuracy,fmt",
    [
        ("<think>x</think>\\boxed{Sadness}", 1.0, 1.0),
        ("<think>x</think> so: \\boxed{ sadness } tail", 1.0, 1.0),
        ("<think>x</think>\\boxed{sad}", 0.0, 1.0),  # EmoSet's word is sadness
        ("\\boxed{sadness}", 1.0, 0.0),  # no think: format 0
        ("<think>x</think>\\boxed{anger}\\boxed{sadness}", 1.0, 1.0),  # last box
    ],
)
def test_naive_grpo_official_reward_hand_computed(completion, accuracy, fmt):
    cfg = load_config(None, ["prompt.recipe=naive-grpo", "grading.strict_official=true"])
    comps, _ = score(recipe_for(cfg), completion, "sad", EMOSET, words=WORDS)
    assert (comps["accuracy"], comps["format"]) == (accuracy, fmt)
    assert comps["overall"] == pytest.approx(0.9 * accuracy + 0.1 * fmt)


def test_emo_r3_official_total_with_reflection_hand_computed():
    cfg = load_config("emo-r3-vl")
    r = recipe_for(cfg)
    comps, _ = score(r, SET + "\\boxed{Sadness}", "sad", EMOSET, {"coherence": 0.5, "grounding": 1.0}, words=WORDS)
    assert comps["overall"] == pytest.approx(0.8 * 1 + 0.1 * 0.5 + 0.1 * 1.0 + 0.1 * 1)  # 1.05
    comps, _ = score(r, SET + "\\boxed{awe}", "sad", EMOSET, {"coherence": 1.0, "grounding": 0.0}, words=WORDS)
    assert comps["overall"] == pytest.approx(0.1 + 0.1)  # wrong answer: coherence + format
    no_model, _ = score(r, SET + "\\boxed{sadness}", "sad", EMOSET, words=WORDS)
    assert "coherence" not in no_model and no_model["overall"] == pytest.approx(0.9)  # never counted as 0 or 1


def test_reward_weights_are_config_keys():
    cfg = load_config("emo-r3-vl", ["reward.weights.grounding=0", "reward.weights.valence_arousal=0.5"])
    w = recipe_for(cfg).weights
    assert w["grounding"] == 0.0 and w["valence_arousal"] == 0.5 and w["accuracy"] == 0.8  # others keep defaults
    assert model_components(recipe_for(cfg)) == ["coherence"]
    whole = load_config(None, ["prompt.recipe=plain", "reward.weights=accuracy=2,format=0.5"])
    comps, _ = score(recipe_for(whole), "<think>x</think><answer>sad</answer>", "sad", LABEL_SETS["dfew"])
    assert comps["overall"] == pytest.approx(2.5)
    yaml_cfg = load_config(None, ["reward.weights={accuracy: 0.3, format: 0.7}"])
    assert yaml_cfg.reward.weights == {"accuracy": 0.3, "format": 0.7}
    assert load_config(None, ["reward.weights=[accuracy=1]"]).reward.weights == {"accuracy": 1.0}


def test_reward_weights_round_trip_through_a_saved_run_config(tmp_path):
    cfg = load_config(None, ["reward.weights.accuracy*coherence=0.9", "reward.weights.format=0.1"])
    (tmp_path / "config.yaml").write_text(run_config_yaml(cfg).replace("git_revision", "# git_revision", 1))
    back = load_config(tmp_path / "config.yaml")
    assert back.reward.weights == {"accuracy*coherence": 0.9, "format": 0.1}


@pytest.mark.parametrize(
    "weights,msg",
    [
        ({"acc": 1.0}, "unknown reward component 'acc'"),
        ({"accuracy*cohernce": 1.0}, "unknown reward component 'cohernce' in 'accuracy\\*cohernce'"),
        ({"format": float("nan")}, "weight of 'format' must be a finite number"),
    ],
)
def test_unknown_components_and_bad_weights_are_errors(weights, msg):
    with pytest.raises(ValueError, match=msg):
        check_weights(weights)
    cfg = load_config(None, [f"reward.weights.{k}={v}" for k, v in weights.items()])
    with pytest.raises(ValueError, match="reward.weights: "):
        recipe_for(cfg)


def test_bad_weight_values_fail_at_load():
    with pytest.raises(ConfigError, match="'reward.weights.accuracy' expects float"):
        load_config(None, ["reward.weights.accuracy=high"])
    with pytest.raises(ConfigError, match="expects name=value entries"):
        load_config(None, ["reward.weights=accuracy"])


def test_multiplicative_variants_hand_computed():
    text = load_config(None, ["prompt.recipe=emo-r3-text"])
    r = recipe_for(text)
    assert model_components(r) == ["coherence"]
    comps, _ = score(r, SET + "\\boxed{sad}", "sad", EMOSET, {"coherence": 0.5}, words=WORDS)
    assert comps["accuracy*coherence"] == 0.5 and comps["accuracy"] == 1.0 and comps["coherence"] == 0.5
    assert comps["overall"] == pytest.approx(0.9 * 0.5 + 0.1)
    comps, _ = score(r, SET + "\\boxed{sad}", "sad", EMOSET, words=WORDS)  # no reflection: the product is left out
    assert "accuracy*coherence" not in comps and comps["overall"] == pytest.approx(0.1)
    mult = recipe_for(load_config(None, ["prompt.recipe=emo-r3-mult"]))
    comps, _ = score(mult, SET + "\\boxed{sad}", "sad", EMOSET, {"coherence": 1.0, "grounding": 0.5}, words=WORDS)
    assert comps["overall"] == pytest.approx(0.9 * 1 * 1 * 0.5 + 0.1)
    assert model_components(mult) == ["coherence", "grounding"]


def test_reward_cli_takes_weight_overrides(tmp_path, capsys):
    from emorl.cli import main

    f = tmp_path / "c.jsonl"
    f.write_text(json.dumps({"completion": SET + "\\boxed{sadness}", "label": "sadness", "dataset": "emoset"}) + "\n")
    assert main(["reward", "--recipe", "emo-r3", str(f), "reward.weights.accuracy=0.5"]) == 0
    out = json.loads(capsys.readouterr().out.splitlines()[0])
    assert out["overall"] == pytest.approx(0.5 + 0.1)  # accuracy 0.5 + format 0.1 (no reflection offline)
