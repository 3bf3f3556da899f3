"""The reflection judge: AUC by hand, the log-prob judge's expected scores, judge and scoring
settings (config keys, errors), the still-image grounding view and the synthetic image world's
reflection tasks, the declarative stage list, and the comparisons' stage lists."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emorl.config import load_config, packaged_config
from emorl.data.labels import emotions_in
from emorl.data.manifest import Sample
from emorl.eval.stats import auc, auc_ci
from emorl.recipes.emo_r3 import grounding_prompt
from emorl.rl.judge import check_judge, expected_coherence, expected_grounding
from emorl.rl.reflection import label_names, sample_view
from emorl.stages import Stage, Stages, run_stages


# ----------------------------------------------------------------------------- AUC
def test_auc_by_hand():
    # pairs (pos, neg): (1,0) win, (1,.5) win, (.5,0) win, (.5,.5) tie -> (3 + 0.5) / 4
    assert auc([1.0, 0.5], [0.0, 0.5]) == 0.875
    assert auc([1, 1, 1], [0, 0]) == 1.0 and auc([0, 0], [1]) == 0.0
    assert auc([0.5] * 4, [0.5] * 3) == 0.5  # a judge that always says the same thing
    assert auc([0.9, 0.2, 0.6], [0.1, 0.7]) == pytest.approx(4 / 6)  # 0.9>both, 0.2>0.1, 0.6>0.1
    with pytest.raises(ValueError, match="positive and one negative"):
        auc([], [1.0])


def test_auc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    for _ in range(5):
        p, n = rng.integers(0, 3, 37) / 2, rng.integers(0, 3, 29) / 2
        assert auc(p, n) == pytest.approx(roc_auc_score([1] * 37 + [0] * 29, np.r_[p, n]))


def test_auc_ci_brackets_the_value_and_narrows_with_more_data():
    rng = np.random.default_rng(1)
    small = auc_ci(rng.normal(1, 1, 20), rng.normal(0, 1, 20), seed=0)
    large = auc_ci(rng.normal(1, 1, 400), rng.normal(0, 1, 400), seed=0)
    for r in (small, large):
        assert r["lo"] <= r["auc"] <= r["hi"]
    assert large["hi"] - large["lo"] < small["hi"] - small["lo"]
    assert auc_ci([1.0] * 5, [0.0] * 5) == {"auc": 1.0, "lo": 1.0, "hi": 1.0, "n_pos": 5, "n_neg": 5}


# ----------------------------------------------------------------------------- the log-prob judge
def test_expected_scores_by_hand():
    # the sampled score's expectation: yes 1, no 0, anything else 0.5
    assert expected_grounding(0.7, 0.1) == pytest.approx(0.7 + 0.5 * 0.2)
    assert expected_grounding(0.0, 0.0) == 0.5 and expected_grounding(0.0, 1.0) == 0.0
    # coherence: P(label) + 0.5 * P(no emotion word)
    assert expected_coherence(0.6, 0.9) == pytest.approx(0.6 + 0.05)
    assert expected_coherence(0.0, 1.0) == 0.0 and expected_coherence(0.5, 1.3) == 0.5  # mass clipped at 1


def test_judge_settings(tmp_path):
    cfg = load_config("emo-r3-vl", ["reflection.judge=frozen", "reflection.scoring=logprob"])
    assert (cfg.reflection.judge, cfg.reflection.scoring) == ("frozen", "logprob")
    assert load_config("emo-r3-vl").reflection.judge == "policy"  # EMO-R3 as released
    check_judge("policy", "sample")
    with pytest.raises(ValueError, match="reflection.scoring"):
        check_judge("policy", "vote")
    with pytest.raises(ValueError, match="reflection.judge='nowhere'"):
        check_judge("nowhere", "sample")
    (tmp_path / "config.json").write_text("{}")
    check_judge(str(tmp_path), "logprob")  # a checkpoint directory


# ----------------------------------------------------------------------------- still images
def _image(label="angry", **meta) -> Sample:
    return Sample("img", "a/b.png", label, "synthetic-images", "test", meta={"modality": "image", **meta})


def test_an_image_is_checked_as_an_image():
    img, clip = _image(), Sample("c", "x.mp4", "sad", "dfew", "test")
    assert [sample_view(img, v) for v in ("joint", "video", "audio")] == ["image", "image", None]
    assert [sample_view(clip, v) for v in ("joint", "video", "audio")] == ["joint", "video", "audio"]
    video_only = Sample("v", "x.mp4", "sad", "dfew", "test", meta={"modality": "video"})
    assert sample_view(video_only, "audio") is None
    # EMO-R3's image question, verbatim (including its missing space)
    assert (
        grounding_prompt("<step1>a fire</step1>", "image")
        == "Can the following text describe the image?Please answer with yes or no.<step1>a fire</step1>"
    )
    assert label_names(img) == ("amusement", "anger", "awe", "contentment", "disgust", "excitement", "fear", "sadness")


def test_image_builder_uses_the_released_set_prompt():
    from emorl.recipes.prompts import EMO_R3_FORMAT, EMO_R3_FORMAT_IMAGE, MATH_FORMAT
    from emorl.runs import make_builder

    def spec(*ov):
        return make_builder(load_config(None, list(ov)), adapter=None).spec

    assert spec("prompt.recipe=emo-r3", "data.modality=image").format == EMO_R3_FORMAT_IMAGE
    assert spec("prompt.recipe=emo-r3").format == EMO_R3_FORMAT
    assert spec("prompt.recipe=naive-grpo", "data.modality=image").format == MATH_FORMAT


def test_image_reflection_tasks():
    from emorl.data.synthetic.image_traces import image_reflection_tasks
    from emorl.data.synthetic.image_world import split_specs

    specs = split_specs(0, "coldstart", 40)
    samples = [Sample(s.id, f"{s.id}.png", s.label, "synthetic-images", "coldstart", meta=s.meta()) for s in specs]
    tasks = image_reflection_tasks(samples, np.random.default_rng(0))
    coh = [t for t in tasks if "#coh" in t.id]
    img = [t for t in tasks if "#gimage" in t.id]
    assert len(coh) == len(img) == 40
    words = set(label_names(samples[0]))
    for t in coh:
        assert t.meta["task_modality"] == "text" and t.meta["trace"] in words
        reasoning = t.meta["task_prompt"].split("\nWhich emotion best describes")[0]
        assert emotions_in(reasoning) == [], reasoning  # the judge must infer, not copy, the emotion
        assert "anger, awe" in t.meta["task_prompt"]  # the label set as EmoSet words it
    for t in img:
        assert t.meta["task_modality"] == "image" and t.meta["trace"] in ("yes", "no")
        assert t.meta["task_prompt"].startswith("Can the following text describe the image?")
        assert t.meta["clip_of"] == t.id.split("#")[0]
    yes = sum(t.meta["trace"] == "yes" for t in img)
    assert 10 < yes < 30  # about half own descriptions, half another image's
    # a "yes" describes the image itself: its scene as the world draws it
    from emorl.data.synthetic.image_traces import SCENE_PHRASES

    scene = {s.id: s.meta["cues"]["scene"] for s in samples}
    for t in img:
        if t.meta["trace"] == "yes":
            assert any(p in t.meta["task_prompt"] for p in SCENE_PHRASES[scene[t.meta["clip_of"]]]), t.meta


def test_perception_targets_for_images():
    from emorl.perception import attribute_targets

    cues = {
        "valence": 0.5,
        "arousal": 0.25,
        "brightness": 1.0,
        "colorfulness": 0.0,
        "scene": "storm",
        "face": "tears",
        "hue_jitter": 3.0,
    }
    values, cat, mask = attribute_targets([_image(cues=cues)], "image")
    from emorl.data.synthetic.scenes import EXPRESSIONS, SCENES

    faces = ["none", *EXPRESSIONS]
    assert values[0, :4].tolist() == [1.0, -1.0, 0.5, -0.5]  # brightness, colorfulness, valence, arousal in [-1, 1]
    assert values[0, 4:].tolist() == [1.0 if f == "tears" else -1.0 for f in faces]
    assert cat.tolist() == [SCENES.index("storm")] and mask.sum() == values.shape[1]
    with pytest.raises(ValueError, match="meta.cues"):
        attribute_targets([_image()], "image")


# ----------------------------------------------------------------------------- stage lists
class _Ctx:
    def __init__(self, out):
        self.out, self.results, self.calls = out, {}, []


def test_run_stages_runs_in_order_and_resumes(tmp_path):
    ctx = _Ctx(tmp_path)

    def step(name, value):
        def fn(c):
            c.calls.append(name)
            return {"value": value, "seen": sorted(c.results)}

        return Stage(name, f"s/{name}", fn)

    stages = [step("a", 1), step("b", 2)]
    res = run_stages(stages, ctx, Stages("t"))
    assert ctx.calls == ["a", "b"] and res["b"] == {"value": 2, "seen": ["a"]}  # b sees a's summary
    assert json.loads((tmp_path / "s" / "b" / "DONE.json").read_text())["value"] == 2
    again = _Ctx(tmp_path)
    assert run_stages(stages, again, Stages("t")) == res and again.calls == []  # done: skipped, same summaries
    with pytest.raises(ValueError, match="unique"):
        run_stages([step("a", 1), step("a", 2)], _Ctx(tmp_path / "x"), Stages("t"))


def test_image_comparison_is_a_stage_list(tmp_path):
    from emorl.compare.common import Ctx, model_dirs
    from emorl.compare.images import GRPO_ARMS, image_configs, image_stages

    base, cfgs = image_configs(
        packaged_config("compare-images-quick"), quick=True, arms=("sft", "naive-grpo", "emo-r3", "emo-r3-frozen")
    )
    assert cfgs["emo-r3"].prompt.recipe == "emo-r3" and cfgs["naive-grpo"].prompt.recipe == "naive-grpo"
    assert cfgs["emo-r3"].grading.strict_official and cfgs["emo-r3"].grpo.dual_clip_c == 3.0  # released settings kept
    assert (cfgs["emo-r3-frozen"].reflection.judge, cfgs["emo-r3-frozen"].reflection.scoring) == ("frozen", "logprob")
    assert cfgs["sft"].sft.target == "label" and cfgs["coldstart"].sft.target == "trace"
    assert all(c.data.modality == "image" and c.demo.family == "qwen2.5-vl" for c in cfgs.values())
    ctx = Ctx(tmp_path, base, cfgs)
    ctx.paths.update(model_dirs(tmp_path, base.demo.pretrain))
    names = [s.name for s in image_stages(ctx, ("sft", "naive-grpo", "emo-r3"))]
    assert names[:6] == ["synthesize", "tiny_model", "pretrain_towers", "coldstart", "sft", "grpo naive-grpo"]
    assert "grpo emo-r3" in names and "grpo emo-r3-frozen" not in names and set(GRPO_ARMS) >= {"emo-r3"}
    assert [n for n in names if n.startswith("judge check")] == [
        f"judge check {m}" for m in ("base", "coldstart", "sft", "naive-grpo", "emo-r3")
    ]
    assert names.index("eval emo-r3/ood") < names.index("judge reads coldstart") < names.index("judge check base")
    with pytest.raises(ValueError, match="unknown arm"):
        from emorl.compare.images import run_image_compare

        run_image_compare(tmp_path / "bad", quick=True, arms=("dpo",))


def test_clip_comparison_is_a_stage_list(tmp_path):
    from emorl.compare.clips import COLD_START_RECIPE, QUICK_BASE, arm_configs, clip_stages
    from emorl.compare.common import Ctx, model_dirs

    base, cfgs = arm_configs(packaged_config("demo-quick"), quick=True, base_extra=QUICK_BASE)
    cfgs.update({m: cfgs[r] for m, r in COLD_START_RECIPE.items()})
    ctx = Ctx(tmp_path, base, cfgs)
    ctx.paths.update(model_dirs(tmp_path, base.demo.pretrain))
    stages = clip_stages(ctx, ("plain", "r1-omni", "emo-r3"))
    names = [s.name for s in stages]
    # the order of the comparison before it became a list, then the judge as a classifier
    assert names[:8] == [
        "synthesize",
        "tiny_model",
        "pretrain_towers",
        "shared cold start (think/answer traces)",
        "structured cold start (SET traces + reflection tasks)",
        "GRPO plain",
        "GRPO r1-omni",
        "GRPO emo-r3",
    ]
    assert names[8:12] == ["judge check", "eval coldstart/test", "eval coldstart/ood", "judge coldstart"]
    assert names[-1] == "judge auc" and {s.dir for s in stages} >= {"coldstart_steps", "judge", "eval/emo-r3/ood"}
    without = [s.name for s in clip_stages(ctx, ("plain",))]
    assert "judge check" not in without and "judge auc" not in without
