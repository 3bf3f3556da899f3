"""`emorl demo --quick` end to end (the CI-sized demo): outputs exist and have the promised shape,
and a second run resumes instead of redoing the work."""

import json

import pytest

from emorl.cli import main

# a quick demo took 313-337 s on a loaded 2-core machine (about 60 s idle): past the default timeout
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


def test_quick_demo(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "| grpo |" in printed
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["models"]) == {"base", "coldstart_sft", "label_sft", "grpo"}
    for name, splits in m["models"].items():
        assert set(splits) == {"test", "ood"}
        for split, r in splits.items():
            assert set(r) == {"war", "uar", "format_rate", "n"}
            assert all(0.0 <= r[k] <= 1.0 for k in ("war", "uar", "format_rate")), (name, split, r)
            assert r["n"] > 0
    # cold-start SFT teaches the format: the random base model never produces it
    assert m["models"]["base"]["test"]["format_rate"] == 0.0
    assert m["models"]["coldstart_sft"]["test"]["format_rate"] > 0.0
    summary = (out / "summary.md").read_text()
    assert "| grpo |" in summary and "eval/grpo/test/confusion.png" in summary
    # the summary states its uncertainty: intervals over the clips, paired differences, one draw
    assert "test UAR [95% CI]" in summary and "| grpo − coldstart_sft |" in summary and "one draw" in summary
    iv = m["intervals"]["models"]["grpo"]["test"]["uar"]
    assert iv["lo"] <= m["models"]["grpo"]["test"]["uar"] <= iv["hi"]
    assert f"{m['models']['grpo']['test']['uar']:.3f} [{iv['lo']:.2f}, {iv['hi']:.2f}]" in summary
    html = (out / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") or "<html" in html[:200]
    assert (out / "report.md").is_file()
    for name in ("coldstart_sft", "label_sft", "grpo"):  # the trained models; the base model is not analysed
        assert (out / "analysis" / name / "modality.json").is_file()
    assert not (out / "analysis" / "base").exists()
    for name in m["models"]:
        assert (out / "eval" / name / "test" / "predictions.jsonl").is_file()
    assert (out / "grpo" / "metrics.jsonl").is_file() and (out / "config.yaml").is_file()
    assert "git_revision" in (out / "config.yaml").read_text()
    # resumable: every stage is marked done and a rerun skips them
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    again = capsys.readouterr().out
    assert again.count("already done") >= 10


def test_quick_demo_on_qwen3_omni(tmp_path, capsys):
    """The same pipeline on a tiny Qwen3-Omni thinker (demo.family), and the family / frame-size
    mismatch refused before any stage runs."""
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--no-progress", "demo.family=qwen3-omni"]) == 2
    assert "data.frame_size=56 does not suit demo.family=qwen3-omni" in capsys.readouterr().err
    assert not (out / "data").exists()
    assert (
        main(["demo", "--quick", "--out", str(out), "--no-progress", "demo.family=qwen3-omni", "data.frame_size=64"])
        == 0
    )
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["models"]) == {"base", "coldstart_sft", "label_sft", "grpo"}
    assert m["models"]["base"]["test"]["format_rate"] == 0.0 < m["models"]["coldstart_sft"]["test"]["format_rate"]
    cfg = json.loads((out / "models" / "base" / "config.json").read_text())
    assert cfg["model_type"] == "qwen3_omni_moe_thinker"


def test_quick_demo_on_qwen2_5_vl(tmp_path, capsys):
    """The pipeline on a tiny Qwen2.5-VL (no audio tower): the demo picks video prompts (said so),
    pretrains the vision tower only, and the modality analysis records the conditions the model
    cannot take instead of running them."""
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--no-progress", "demo.family=qwen2.5-vl"]) == 0
    assert "qwen2.5-vl takes video, image, text prompts: data.modality=video" in capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["models"]) == {"base", "coldstart_sft", "label_sft", "grpo"}
    assert m["models"]["base"]["test"]["format_rate"] == 0.0 < m["models"]["coldstart_sft"]["test"]["format_rate"]
    cfg = json.loads((out / "models" / "base" / "config.json").read_text())
    assert cfg["model_type"] == "qwen2_5_vl"
    pre = json.loads((out / "models" / "base" / "DONE.json").read_text())
    assert "last_epoch_loss/video" in pre and "last_epoch_loss/audio" not in pre
    rows = [json.loads(x) for x in (out / "eval" / "grpo" / "test" / "predictions.jsonl").read_text().splitlines()]
    assert {r["modality"] for r in rows} == {"video"}
    mod = json.loads((out / "analysis" / "grpo" / "modality.json").read_text())
    assert set(mod["conditions"]) == {"video", "text"} and set(mod["not_taken"]) == {"av", "audio"}


def test_quick_demo_on_parts(tmp_path):
    """The pipeline on a tiny parts-family model (Llama-shaped LLM + SigLIP + Whisper encoder + MLP
    projectors): perception pretraining trains both towers with their projectors, the trained
    models are parts checkpoints, and the cold start teaches the format."""
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--no-progress", "demo.family=parts"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["models"]) == {"base", "coldstart_sft", "label_sft", "grpo"}
    assert m["models"]["base"]["test"]["format_rate"] == 0.0 < m["models"]["coldstart_sft"]["test"]["format_rate"]
    for model in (out / "models" / "base", out / "grpo" / "model"):
        assert json.loads((model / "config.json").read_text())["model_type"] == "emorl_omni"
    assert (out / "grpo" / "model" / "emorl_processor.json").is_file()
    pre = json.loads((out / "models" / "base" / "DONE.json").read_text())
    assert pre["last_epoch_loss/video"] < pre["first_epoch_loss/video"]
    assert pre["last_epoch_loss/audio"] < pre["first_epoch_loss/audio"]
    rows = [json.loads(x) for x in (out / "eval" / "grpo" / "test" / "predictions.jsonl").read_text().splitlines()]
    assert {r["modality"] for r in rows} == {"video+audio"}
