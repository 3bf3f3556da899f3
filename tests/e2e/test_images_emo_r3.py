"""EMO-R3 on its own ground with a tiny Qwen2.5-VL: the reflection's image view (the image + step 1,
EMO-R3's question), the log-prob judge (group-aware scoring pass, checked against the rows path),
frozen and by-path judges, `emorl train --config emo-r3-vl` running GRPO steps on synthetic
images, and `emorl compare --images --quick`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from emorl.cli import main
from emorl.config import load_config
from emorl.data.synthetic.image_traces import image_trace
from emorl.models.adapter import Modality, SamplingParams

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from emorl.data.synthetic.image_world import synthesize_images

    out = tmp_path_factory.mktemp("images")
    return synthesize_images(out, seed=0, sizes={"train": 8, "test": 4}, size=56, progress=False)


@pytest.fixture(scope="module")
def vl(tiny_dir_of):
    return tiny_dir_of("qwen2.5-vl")


def _setup(vl, world, *ov):
    from emorl.runs import load_adapter, load_samples, make_builder

    cfg = load_config(
        "emo-r3-vl",
        [
            "model.device=cpu",
            "model.dtype=float32",
            "data.sampling=fixed",
            "data.frame_size=56",
            f"model.path={vl}",
            "reflection.max_new_tokens=4",
            *ov,
        ],
    )
    torch.manual_seed(0)
    adapter = load_adapter(cfg)
    samples = load_samples(world["test"], default="test")
    return cfg, adapter, make_builder(cfg, adapter), samples


def _completions(samples):
    rng = np.random.default_rng(0)
    return [image_trace(s.meta, s.label, rng, word=s.words.get(s.label, s.label)) for s in samples]


def test_grounding_shows_the_image_with_emo_r3s_question(vl, world):
    from emorl.rl.reflection import VIEWS, Reflection, encode_clip_prompt, grounding_prompt

    _, adapter, builder, samples = _setup(vl, world)
    p = encode_clip_prompt(adapter, builder, samples[0], grounding_prompt("<step1>x</step1>", "image"), VIEWS["image"])
    assert p.modality == Modality.IMAGE
    assert "describe the image?Please answer with yes or no.<step1>x</step1>" in adapter.decode(p.input_ids)
    refl = Reflection(adapter, builder, style="boxed", grounding="per_modality", params=SamplingParams(4, 0.6, 0.95))
    comps, raw = refl.score(samples, _completions(samples))
    for c, r in zip(comps, raw):
        assert set(c) == {"coherence", "grounding", "grounding_video", "grounding_audio"}
        assert all(v in (0.0, 0.5, 1.0) for v in c.values())
        assert isinstance(r["coherence"], str) and isinstance(r["grounding"], str)  # the judge was asked
        assert c["grounding_audio"] == 0.5 and r["grounding_audio"] is None  # a still image has no audio


def test_logprob_judge_is_one_group_aware_scoring_pass(vl, world):
    from emorl.rl import judge
    from emorl.rl.reflection import Reflection, label_names

    _, adapter, builder, samples = _setup(vl, world, "reflection.scoring=logprob")
    refl = Reflection(adapter, builder, style="boxed", grounding="joint", scoring="logprob")
    before = {k: v.clone() for k, v in adapter.model.state_dict().items()}
    comps, raw = refl.score(samples, _completions(samples))
    for c, r, s in zip(comps, raw, samples):
        assert 0.0 <= c["grounding"] <= 1.0 and 0.0 <= c["coherence"] <= 1.0
        assert c["grounding"] == pytest.approx(
            judge.expected_grounding(r["grounding"]["yes"], r["grounding"]["no"]), abs=1e-3
        )
        assert set(r["coherence"]) == set(label_names(s))
    # the group-aware pass (a question and its candidates as one group) equals scoring each row alone
    prompt = adapter.encode_text("Can the following text describe the image?Please answer with yes or no.x")
    cands = judge.candidate_ids(adapter, judge.YES_FORMS + judge.NO_FORMS)
    grouped = judge.answer_probs(adapter, [prompt, prompt], [cands, cands[:2]], batch_size=8)
    with torch.no_grad():
        lp, mask, _ = adapter.completion_logprobs_rows([prompt] * len(cands), cands)
    rows = (lp * mask).sum(-1).exp().numpy()
    np.testing.assert_allclose(grouped[0], rows, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(grouped[1], rows[:2], rtol=1e-4, atol=1e-7)
    after = adapter.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before) and all(
        p.grad is None for p in adapter.model.parameters()
    )


def test_frozen_and_path_judges(vl, world, tiny_dir_of):
    from emorl.rl.reflection import make_reflection

    cfg, adapter, builder, _ = _setup(vl, world, "reflection.judge=frozen")
    refl = make_reflection(adapter, builder, cfg)
    assert refl.adapter is not adapter and refl.judge == "frozen"
    assert not any(p.requires_grad for p in refl.adapter.model.parameters())
    with torch.no_grad():  # the policy moves, the frozen judge does not
        next(adapter.model.parameters()).add_(1.0)
    assert not torch.equal(next(adapter.model.parameters()), next(refl.adapter.model.parameters()))
    other = tiny_dir_of("qwen3-vl")
    cfg.reflection.judge = str(other)
    by_path = make_reflection(adapter, builder, cfg)
    assert by_path.adapter.family == "qwen3-vl"
    cfg.reflection.judge = "policy"
    assert make_reflection(adapter, builder, cfg).adapter is adapter


@pytest.mark.parametrize("judge_ov", [[], ["reflection.judge=frozen", "reflection.scoring=logprob"]])
def test_train_with_the_released_vl_config_on_images(vl, world, tmp_path, judge_ov):
    out = tmp_path / "run"
    rc = main(
        [
            "train",
            "--config",
            "emo-r3-vl",
            f"model.path={vl}",
            "model.device=cpu",
            "model.dtype=float32",
            f"data.train={world['train']}",
            f"data.eval=[{world['test']}]",
            "data.sampling=fixed",
            "data.frame_size=56",
            "grpo.steps=2",
            "grpo.prompts_per_step=2",
            "grpo.completions_per_prompt=2",
            "grpo.micro_batch_rows=4",
            "grpo.gradient_checkpointing=false",
            "sampling.max_new_tokens=8",
            "eval.max_new_tokens=8",
            "reflection.max_new_tokens=4",
            f"out={out}",
            *judge_ov,
        ]
    )
    assert rc == 0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for row in rows:
        for k in ("accuracy", "format", "coherence", "grounding", "overall"):
            assert 0.0 <= row[f"reward/{k}"] <= 1.1, (k, row)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["data"]["modality"] == "image" and saved["prompt"]["recipe"] == "emo-r3"
    assert saved["grpo"]["dual_clip_c"] == 3.0 and saved["reflection"]["enabled"]
    assert (out / "eval" / "test" / "metrics.json").is_file()


@pytest.mark.timeout(1200)
def test_compare_images_quick(tmp_path, capsys):
    from emorl.compare.images import CHECK_SCORINGS

    out = tmp_path / "cmp"
    assert main(["compare", "--images", "--quick", "--out", str(out), "--no-progress"]) == 0
    m = json.loads((out / "compare.json").read_text())
    assert list(m["models"]) == ["base", "coldstart", "sft", "naive-grpo", "emo-r3"]
    assert m["family"] == "qwen2.5-vl" and m["quick"]
    for name, row in m["models"].items():
        for scoring in CHECK_SCORINGS:
            g = row["judge_check"][scoring]["grounding"]
            assert 0.0 <= g["lo"] <= g["auc"] <= g["hi"] <= 1.0 and g["n_pos"] == g["n_neg"] == 16
        if name == "base":
            continue
        for split in ("test", "ood"):
            r = row[split]
            assert r["n"] == 16 and r["war_ci"][0] <= r["war"] <= r["war_ci"][1]
        assert 0.0 <= row["reflection"]["grounding_rate"] <= 1.0
    assert set(m["models"]["emo-r3"]["rl"]["final_quarter_rewards"]) >= {"reward/coherence", "reward/grounding"}
    assert "reward/coherence" not in m["models"]["naive-grpo"]["rl"]["final_quarter_rewards"]
    md = (out / "compare.md").read_text()
    assert "| emo-r3 | emo-r3 |" in md and "judge AUC (log-prob)" in md
    # every stage left its marker: a second run resumes from them and reports the same table
    capsys.readouterr()
    assert main(["compare", "--images", "--quick", "--out", str(out), "--no-progress"]) == 0
    assert "already done" in capsys.readouterr().out
    again = json.loads((out / "compare.json").read_text())
    assert again["models"] == m["models"]


def test_train_step_reflects_on_images(vl, world, tmp_path, monkeypatch):
    """Inside a GRPO step on images the reflection asks EMO-R3's image question: the random policy
    writes no SET stages, so the judge here reads SET completions written for each group's image
    (the policy's own texts are still what gets the gradient)."""
    import dataclasses

    from emorl import runs
    from emorl.data.synthetic.image_traces import image_trace as trace

    seen: list = []
    real = runs.reflection_for

    def spy(cfg, adapter, builder):
        refl = real(cfg, adapter, builder)
        rng = np.random.default_rng(0)

        def reflect(groups):
            hand = [
                dataclasses.replace(g, texts=[trace(g.sample.meta, g.sample.label, rng) for _ in g.texts])
                for g in groups
            ]
            out = refl(hand)
            seen.append((out, refl.last_outputs))
            return out

        return reflect

    monkeypatch.setattr(runs, "reflection_for", spy)
    rc = main(
        [
            "train",
            "--config",
            "emo-r3-vl",
            f"model.path={vl}",
            "model.device=cpu",
            "model.dtype=float32",
            f"data.train={world['train']}",
            "data.eval=[]",
            "data.sampling=fixed",
            "data.frame_size=56",
            "grpo.steps=1",
            "grpo.prompts_per_step=2",
            "grpo.completions_per_prompt=2",
            "grpo.micro_batch_rows=4",
            "grpo.gradient_checkpointing=false",
            "sampling.max_new_tokens=8",
            "reflection.max_new_tokens=4",
            f"out={tmp_path / 'run'}",
        ]
    )
    assert rc == 0 and len(seen) == 1
    comps, raw = seen[0]
    assert [len(g) for g in comps] == [2, 2]
    for g_comps, g_raw in zip(comps, raw):
        for c, r in zip(g_comps, g_raw):
            assert set(c) == {"coherence", "grounding"} and isinstance(r["grounding"], str)  # the judge answered
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert row["reward/grounding"] == pytest.approx(np.mean([c["grounding"] for g in comps for c in g]))
