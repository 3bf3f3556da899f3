"""Perception pretraining of the towers (emorl.perception): targets by hand, and a tiny run
that trains the towers only, lowers both losses and saves a loadable thinker."""

from __future__ import annotations

import json

import pytest
import torch

from emorl.data.manifest import Sample, read_manifest
from emorl.perception import attribute_loss, attribute_targets, pretrain_towers

VIDEO = {
    "brow_raise": 0.5,
    "brow_tilt": -1.0,
    "eye_open": 0.9,
    "mouth_curve": 0.0,
    "mouth_open": 0.25,
    "mouth_width": 1.0,
    "nose_wrinkle": 0.0,
    "head_amp": 0.5,
    "head_move": "shake",
    "occluded": False,
}
AUDIO = {
    "pitch": 1.0,
    "pitch_range": 12.0,
    "energy": -15.0,
    "rate": 4.9,
    "breathiness": 0.5,
    "jitter": 0.0,
    "harshness": 1.0,
    "pitch_contour": "rise-fall",
}


def _sample(i, occluded=False):
    return Sample(
        f"s{i}",
        "x.mp4",
        "angry",
        "synthetic",
        "pretrain",
        meta={"cues": {"video": {**VIDEO, "occluded": occluded}, "audio": AUDIO}},
    )


def test_attribute_targets_by_hand():
    v, cat, mask = attribute_targets([_sample(0), _sample(1, occluded=True)], "video")
    # ranges: brow (-1, 1), eye_open (0, 1) ... -> [-1, 1]
    assert v[0].tolist() == pytest.approx([0.5, -1.0, 0.8, 0.0, -0.5, 1.0, -1.0, 0.0])
    assert cat.tolist() == [2, 2]  # still, nod, shake, tremble
    assert mask[0].tolist() == [1.0] * 8
    assert mask[1].tolist() == [1, 1, 1, 0, 0, 0, 1, 1]  # mouth cues hidden under the mask
    a, acat, amask = attribute_targets([_sample(0)], "audio")
    # pitch (-9, 11): 1 -> 0; range (0.5, 12): 12 -> 1; energy (-15, 13): -15 -> -1; rate (1.8, 8): 4.9 -> 0
    assert a[0].tolist() == pytest.approx([0.0, 1.0, -1.0, 0.0, 0.0, -1.0, 1.0])
    assert acat.tolist() == [3] and amask.sum() == 7
    with pytest.raises(ValueError, match="s9.*meta.cues.video"):
        attribute_targets([Sample("s9", "x.mp4", "happy", "dfew", "train")], "video")


def test_attribute_loss_by_hand():
    pred = torch.tensor([[1.0, 0.0, 0.0, 0.0]])  # 2 values + 2 categories
    values, mask = torch.tensor([[0.0, 2.0]]), torch.tensor([[1.0, 0.0]])
    # masked MSE = (1 - 0)^2 / 1 = 1; CE of logits (0, 0) for class 1 = ln 2
    assert float(attribute_loss(pred, values, torch.tensor([1]), mask)) == pytest.approx(1 + 0.693147, abs=1e-5)


@pytest.mark.e2e  # tiny-model training
def test_pretrain_towers_trains_towers_only(model_dir, tmp_path):
    from emorl.config import RunConfig
    from emorl.data.synthetic import synthesize
    from emorl.models.adapter import Modality
    from emorl.models.registry import load_adapter
    from emorl.runs import make_builder

    m = synthesize(tmp_path / "world", seed=3, sizes={"pretrain": 8}, workers=1, progress=False)["pretrain"]
    samples = read_manifest(m)
    cfg = RunConfig()
    cfg.data.sampling, cfg.data.frame_size, cfg.data.num_frames = "fixed", 56, 4
    adapter = load_adapter(model_dir)
    if Modality.AV not in adapter.modalities:  # a vision-language model: video prompts, the vision tower
        cfg.data.modality = "video"
    before = {k: v.clone() for k, v in adapter.model.state_dict().items()}
    info = pretrain_towers(
        adapter, make_builder(cfg, adapter), samples, tmp_path / "pt", epochs=6, lr=3e-3, batch_size=4, progress=False
    )
    rows = [json.loads(x) for x in (tmp_path / "pt" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == info["steps"] == 12
    kinds = [k for k in ("video", "audio") if Modality(k) in adapter.modalities]
    assert {k.split("/")[1] for k in info if k.startswith("last_epoch_loss/")} == set(kinds)
    for mod in kinds:
        assert info[f"last_epoch_loss/{mod}"] < info[f"first_epoch_loss/{mod}"], info
    after = load_adapter(tmp_path / "pt" / "model").model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    names = {id(p): n for n, p in adapter.model.named_parameters()}
    for kind in kinds:  # each tower the family has trained...
        assert changed & {names[id(p)] for m in adapter.kind_modules(kind) for p in m.parameters()}
    encoders = {names[id(p)] for m in adapter.encoder_modules() for p in m.parameters()}
    assert changed <= encoders  # ...and the LLM untouched


@pytest.mark.e2e  # tiny-model training through the CLI
def test_cli_pretrain_towers_and_a_manifest_without_attributes(tiny_model_dir, clips, tmp_path, capsys):
    from emorl.cli import main
    from emorl.data.manifest import write_manifest
    from emorl.data.synthetic import synthesize

    m = synthesize(tmp_path / "world", seed=4, sizes={"pretrain": 4}, workers=1, progress=False)["pretrain"]
    args = [
        "model",
        "pretrain-towers",
        "--model",
        str(tiny_model_dir),
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "data.sampling=fixed",
        "data.frame_size=56",
        "data.num_frames=4",
    ]
    assert main([*args, "--manifest", str(m), "--out", str(tmp_path / "pt")]) == 0
    assert (tmp_path / "pt" / "model" / "config.json").is_file()
    assert len((tmp_path / "pt" / "metrics.jsonl").read_text().splitlines()) == 2
    bad = tmp_path / "dfew.jsonl"
    write_manifest(bad, [Sample("d0", str(clips[0]), "happy", "dfew", "train")])
    assert main([*args, "--manifest", str(bad), "--out", str(tmp_path / "bad")]) == 2
    assert "d0" in capsys.readouterr().err and not (tmp_path / "bad" / "model").exists()
