"""The command line as a user runs it: reward scoring, eval, predict, and clear errors on bad input."""

import json

import pytest

from emorl.cli import main
from emorl.data.manifest import Sample, write_manifest


def test_reward_offline(tmp_path, capsys):
    rows = [
        {"completion": "<think>bright voice, smile</think><answer>Happiness</answer>", "label": "happy"},
        {"completion": "<think>x</think><answer>happy or sad</answer>", "label": "sad"},
        {"completion": "sad", "label": "sad", "label_set": ["happy", "sad"]},
        {"completion": "<think>x</think><answer>calm</answer>", "label": "calm", "dataset": "ravdess"},
    ]
    p = tmp_path / "in.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["reward", "--recipe", "r1-omni", str(p)]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["accuracy"] for o in out] == [1.0, 0.0, 0.0, 1.0]
    assert [o["format"] for o in out] == [1.0, 1.0, 0.0, 1.0]
    assert out[0]["emotion"] == "happy" and out[0]["overall"] == 2.0
    assert out[1]["parse"] == "hedged" and out[2]["parse"] == "no_answer"


def test_reward_bad_input_names_line_and_field(tmp_path, capsys):
    p = tmp_path / "in.jsonl"
    p.write_text(
        json.dumps({"completion": "x", "label": "happy"})
        + "\n"
        + json.dumps({"completion": "x", "label": "bored"})
        + "\n"
    )
    assert main(["reward", str(p)]) == 2
    err = capsys.readouterr().err
    assert "in.jsonl:2" in err and "'bored'" in err
    p.write_text(json.dumps({"label": "happy"}) + "\n")
    assert main(["reward", str(p)]) == 2
    assert "field 'completion' must be a string" in capsys.readouterr().err
    assert main(["reward", "--recipe", "nope", str(p)]) == 2
    assert "unknown reward recipe" in capsys.readouterr().err


def test_eval_and_predict(tiny_model_dir, clips, tmp_path, capsys):
    m = tmp_path / "m.jsonl"
    write_manifest(
        m,
        [
            Sample(f"s{i}", str(c), lab, "dfew", "test", fold=1 + i % 2)
            for i, (c, lab) in enumerate(zip(clips, ["happy", "sad", "angry"]))
        ],
    )
    out = tmp_path / "ev"
    assert (
        main(
            [
                "eval",
                "--model",
                str(tiny_model_dir),
                "--manifest",
                str(m),
                "--out",
                str(out),
                "data.sampling=fixed",
                "data.num_frames=8",
                "data.frame_size=56",
                "eval.max_new_tokens=6",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "WAR=" in text and "fold 1" in text and "mean over 2 folds" in text
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 3 and 0 <= metrics["uar"] <= 1 and (out / "confusion.png").stat().st_size > 1000
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert {"id", "completion", "answer", "pred", "label", "format_ok"} <= set(preds[0])
    assert (
        main(
            [
                "predict",
                str(clips[0]),
                "--model",
                str(tiny_model_dir),
                "--json",
                "data.sampling=fixed",
                "data.num_frames=8",
                "data.frame_size=56",
                "eval.max_new_tokens=6",
                "prompt.labels=happy,sad,angry",
            ]
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    assert {"emotion", "reasoning", "completion", "format_ok", "probabilities"} <= set(res)
    assert list(res["probabilities"]) == ["happy", "sad", "angry"]


def test_eval_errors(tiny_model_dir, tmp_path, capsys):
    assert main(["eval", "--model", str(tiny_model_dir), "--manifest", str(tmp_path / "none.jsonl")]) == 2
    assert "manifest not found" in capsys.readouterr().err
    assert main(["eval", "--model", str(tmp_path), "--manifest", "x.jsonl"]) == 2
    assert "no config.json" in capsys.readouterr().err
    assert main(["eval", "--model", str(tmp_path / "missing"), "--manifest", "x.jsonl"]) == 2
    assert "model directory not found" in capsys.readouterr().err
    assert main(["train", "grpo.stepz=1"]) == 2
    assert "unknown config key 'grpo.stepz'" in capsys.readouterr().err


def test_eval_records_unreadable_media_instead_of_crashing(tiny_model_dir, clips, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 50)
    m = tmp_path / "m.jsonl"
    write_manifest(
        m, [Sample("ok", str(clips[0]), "happy", "dfew", "test"), Sample("bad", str(bad), "sad", "dfew", "test")]
    )
    out = tmp_path / "ev"
    assert (
        main(
            [
                "eval",
                "--model",
                str(tiny_model_dir),
                "--manifest",
                str(m),
                "--out",
                str(out),
                "data.sampling=fixed",
                "data.num_frames=8",
                "data.frame_size=56",
                "eval.max_new_tokens=4",
            ]
        )
        == 0
    )
    preds = {p["id"]: p for p in map(json.loads, (out / "predictions.jsonl").read_text().splitlines())}
    assert preds["bad"]["error"].startswith("unreadable") and preds["bad"]["pred"] is None
    assert json.loads((out / "metrics.json").read_text())["media_errors"] == 1


@pytest.mark.parametrize("cmd", [["--help"], ["data", "--help"], ["train", "--help"]])
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main(cmd)
    assert e.value.code == 0


@pytest.mark.e2e  # builds, SFT-trains and GRPO-trains a tiny thinker
def test_qwen3_omni_flow(clips, tmp_path, capsys):
    """A Qwen3-Omni (MoE) thinker through the commands a user runs: build it, label SFT, GRPO with
    frozen towers (the encoder cache then carries its deepstack features), evaluate the saved model."""
    import torch

    from emorl.models.qwen_omni import QwenOmniAdapter

    init = tmp_path / "qwen3"
    assert (
        main(
            [
                "model",
                "init-tiny",
                "--out",
                str(init),
                "--family",
                "qwen3-omni",
                "--frame-size",
                "64",
                "--hidden",
                "64",
                "--layers",
                "2",
                "--vocab-size",
                "512",
            ]
        )
        == 0
    )
    assert "tiny qwen3-omni model written" in capsys.readouterr().out
    m = tmp_path / "m.jsonl"
    write_manifest(
        m,
        [
            Sample(f"s{i}", str(c), lab, "dfew", "train")
            for i, (c, lab) in enumerate(zip(clips, ["happy", "sad", "angry"]))
        ],
    )
    # a short label SFT first, so that answers vary and GRPO has non-zero advantages
    sft = tmp_path / "sft"
    assert (
        main(
            [
                "sft",
                f"model.path={init}",
                f"data.train={m}",
                f"out={sft}",
                "data.sampling=fixed",
                "data.frame_size=64",
                "data.num_frames=4",
                "sft.target=label",
                "sft.epochs=100",
                "sft.lr=3e-3",
                "sft.samples_per_step=3",
            ]
        )
        == 0
    )
    init = sft / "model"
    out = tmp_path / "grpo"
    assert (
        main(
            [
                "train",
                f"model.path={init}",
                f"data.train={m}",
                f"out={out}",
                "data.sampling=fixed",
                "data.frame_size=64",
                "data.num_frames=4",
                "model.freeze_vision=true",
                "model.freeze_audio=true",
                "grpo.steps=2",
                "grpo.prompts_per_step=2",
                "grpo.completions_per_prompt=4",
                "grpo.micro_batch_rows=8",
                "grpo.lr=1e-3",
                "grpo.sample_every=0",
                "sampling.max_new_tokens=6",
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all("reward/accuracy" in r for r in rows)
    start = QwenOmniAdapter.from_pretrained(init).model
    trained = QwenOmniAdapter.from_pretrained(out / "model").model
    assert type(trained).__name__ == "Qwen3OmniMoeThinkerForConditionalGeneration"
    a, b = start.state_dict(), trained.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a if ".layers." in k)
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith(("model.visual.", "model.audio_tower.")))
    ev = tmp_path / "ev"
    assert (
        main(
            [
                "eval",
                "--model",
                str(out / "model"),
                "--manifest",
                str(m),
                "--out",
                str(ev),
                "data.sampling=fixed",
                "data.frame_size=64",
                "data.num_frames=4",
                "eval.max_new_tokens=6",
            ]
        )
        == 0
    )
    assert json.loads((ev / "metrics.json").read_text())["n"] == 3
