"""Metrics against hand-computed and scikit-learn values; config loading and overrides."""

import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, recall_score

from emorl.config import ConfigError, load_config, packaged_config
from emorl.eval.metrics import confusion, fold_summary, per_class_recall, summarize, uar, war, weighted_f1

LABELS = ("happy", "sad", "angry")
TRUE = ["happy", "happy", "happy", "sad", "sad", "angry"]
PRED = ["happy", "sad", None, "sad", "sad", "happy"]


def test_hand_computed():
    # recall: happy 1/3, sad 2/2, angry 0/1 -> UAR = (1/3 + 1 + 0) / 3 = 0.44444
    assert war(TRUE, PRED) == pytest.approx(3 / 6)
    assert uar(TRUE, PRED, LABELS) == pytest.approx((1 / 3 + 1 + 0) / 3)
    assert per_class_recall(TRUE, PRED, LABELS) == pytest.approx({"happy": 1 / 3, "sad": 1.0, "angry": 0.0})
    assert confusion(TRUE, PRED, LABELS) == [[1, 1, 0, 1], [0, 2, 0, 0], [1, 0, 0, 0]]


def test_against_sklearn():
    pred = [p if p is not None else "none" for p in PRED]
    assert war(TRUE, PRED) == pytest.approx(accuracy_score(TRUE, pred), abs=1e-12)
    assert uar(TRUE, PRED, LABELS) == pytest.approx(balanced_accuracy_score(TRUE, pred), abs=1e-12)
    assert uar(TRUE, PRED, LABELS) == pytest.approx(
        recall_score(TRUE, pred, labels=list(LABELS), average="macro", zero_division=0), abs=1e-12
    )
    assert weighted_f1(TRUE, PRED, LABELS) == pytest.approx(
        f1_score(TRUE, pred, labels=list(LABELS), average="weighted", zero_division=0), abs=1e-12
    )


def test_uar_ignores_classes_without_support_and_rejects_unknown_truth():
    assert uar(["happy", "sad"], ["happy", "happy"], ("happy", "sad", "fear")) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="not in the label set"):
        confusion(["calm"], ["calm"], LABELS)


def test_summary_and_folds():
    m = summarize(TRUE, PRED, LABELS, [True] * 5 + [False], ["ok"] * 5 + ["no_answer"])
    assert m["format_rate"] == pytest.approx(5 / 6) and m["parse_failures"] == {"no_answer": 1}
    f = fold_summary({"1": {"war": 0.5, "uar": 0.4, "n": 10}, "2": {"war": 0.7, "uar": 0.6, "n": 12}})
    assert f["mean"] == pytest.approx({"war": 0.6, "uar": 0.5}) and f["n_folds"] == 2


def test_config_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("grpo:\n  steps: 7\n  lr: 1.0e-5\ndata:\n  eval: [a.jsonl, b.jsonl]\n")
    cfg = load_config(p, ["grpo.beta=0", "sampling.temperature=0.7", "model.freeze_vision=true", "data.eval=x,y"])
    assert cfg.grpo.steps == 7 and cfg.grpo.lr == 1e-5 and cfg.grpo.beta == 0.0
    assert cfg.sampling.temperature == 0.7 and cfg.model.freeze_vision is True and cfg.data.eval == ["x", "y"]


@pytest.mark.parametrize(
    "ov,msg",
    [
        ("grpo.stepz=3", "unknown config key 'grpo.stepz'"),
        ("grpo.steps=abc", "expects int"),
        ("grpo=3", "is a section"),
        ("model.freeze_vision=maybe", "true/false"),
        ("nokey", "expected key.sub=value"),
    ],
)
def test_config_errors_name_the_key(ov, msg):
    with pytest.raises(ConfigError, match=msg):
        load_config(None, [ov])


def test_packaged_configs_load():
    for name in ("demo", "demo-quick"):
        cfg = load_config(packaged_config(name))
        assert cfg.grpo.steps > 0
    with pytest.raises(ConfigError, match="no packaged config"):
        packaged_config("nope")
