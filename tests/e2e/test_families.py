"""A vision-language family through the commands a user runs: build a tiny Qwen3-VL, label SFT and
GRPO with video prompts (frozen vision tower: the encoder cache carries its deepstack features),
evaluate the saved model; the family is read from the checkpoint's config.json at every step."""

import json

import pytest
import torch

from emorl.cli import main
from emorl.data.manifest import Sample, write_manifest

pytestmark = pytest.mark.e2e


def test_qwen3_vl_flow(clips, tmp_path, capsys):
    from emorl.models.registry import load_adapter

    init = tmp_path / "qwen3vl"
    assert (
        main(
            [
                "model",
                "init-tiny",
                "--out",
                str(init),
                "--family",
                "qwen3-vl",
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
    assert "tiny qwen3-vl model written" in capsys.readouterr().out
    m = tmp_path / "m.jsonl"
    write_manifest(
        m,
        [
            Sample(f"s{i}", str(c), lab, "dfew", "train")
            for i, (c, lab) in enumerate(zip(clips, ["happy", "sad", "angry"]))
        ],
    )
    common = ["data.sampling=fixed", "data.frame_size=64", "data.num_frames=4", "data.modality=video"]
    sft = tmp_path / "sft"
    assert (
        main(
            [
                "sft",
                f"model.path={init}",
                f"data.train={m}",
                f"out={sft}",
                *common,
                "sft.target=label",
                "sft.epochs=60",
                "sft.lr=3e-3",
                "sft.samples_per_step=3",
            ]
        )
        == 0
    )
    out = tmp_path / "grpo"
    assert (
        main(
            [
                "train",
                f"model.path={sft / 'model'}",
                f"data.train={m}",
                f"out={out}",
                *common,
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
    start, trained = load_adapter(sft / "model"), load_adapter(out / "model")
    assert trained.family == "qwen3-vl"
    a, b = start.model.state_dict(), trained.model.state_dict()
    vision = {
        n for n, p in start.model.named_parameters() if id(p) in {id(q) for q in start.towers()["vision"].parameters()}
    }
    assert vision and all(torch.equal(a[k], b[k]) for k in vision)  # frozen
    assert any(not torch.equal(a[k], b[k]) for k in a if k not in vision)
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
                *common,
                "eval.max_new_tokens=6",
            ]
        )
        == 0
    )
    assert json.loads((ev / "metrics.json").read_text())["n"] == 3
    # video+audio asked of a model without audio: a clear error naming the setting
    assert (
        main(
            [
                "eval",
                "--model",
                str(out / "model"),
                "--manifest",
                str(m),
                "--out",
                str(tmp_path / "ev2"),
                "data.sampling=fixed",
                "data.frame_size=64",
                "data.num_frames=4",
                "--modality",
                "video+audio",
            ]
        )
        == 2
    )
    assert "qwen3-vl takes video, image, text prompts, not video+audio (set data.modality" in capsys.readouterr().err
