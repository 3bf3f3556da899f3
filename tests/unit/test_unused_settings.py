"""A setting a command does not use is reported, not silently ignored (emorl.config.unused_settings);
a renamed key is an error naming the new one."""

import pytest

from emorl.cli import main
from emorl.config import ConfigError, load_config, report_unused, unused_settings


def test_each_stage_reports_the_other_stages_settings():
    cfg = load_config(
        None,
        ["grpo.lr=1e-3", "sft.lr=1e-3", "sft.samples_per_step=4", "traces.per_clip=2", "protocol.reference=r1-omni"],
    )
    assert unused_settings(cfg, ["sft"]) == ["grpo.lr=0.001", "traces.per_clip=2", "protocol.reference=r1-omni"]
    assert unused_settings(cfg, ["grpo"]) == [
        "sft.lr=0.001",
        "sft.samples_per_step=4",
        "traces.per_clip=2",
        "protocol.reference=r1-omni",
    ]
    assert unused_settings(cfg, ["protocol", "sft", "grpo"]) == ["traces.per_clip=2"]
    assert unused_settings(load_config(), ["sft"]) == []  # defaults are never reported


def test_settings_that_another_one_switches_off_are_reported():
    cfg = load_config(
        None,
        [
            "model.lora_alpha=64",
            "model.ref_device=cpu",
            "grpo.beta=0",
            "sft.val_every=5",
            "reflection.top_p=0.5",
            "grpo.max_refill_rounds=2",
        ],
    )
    assert unused_settings(cfg, ["grpo"]) == [
        "model.lora_alpha=64",
        "model.ref_device=cpu",
        "grpo.max_refill_rounds=2",
        "sft.val_every=5",
        "reflection.top_p=0.5",
    ]
    on = load_config(None, ["model.lora_rank=8", "model.lora_alpha=64", "sft.val=v.jsonl", "sft.val_every=5"])
    assert unused_settings(on, ["sft"]) == []
    assert unused_settings(on, ["traces"]) == [
        "model.lora_rank=8",
        "model.lora_alpha=64",
        "sft.val=v.jsonl",
        "sft.val_every=5",
    ]


def test_the_shipped_recipes_for_their_commands(capsys):
    """configs/r1-omni.yaml holds both stages' and the protocol's settings: emorl sft names the GRPO
    and protocol ones it ignores (a note on stderr), emorl protocol with both stages ignores none."""
    cfg = load_config("r1-omni")
    unused = report_unused(cfg, ["sft"], "sft")
    assert "grpo.beta=0.04" not in unused  # the default value: not reported
    assert any(u.startswith("grpo.steps=") for u in unused) and any(u.startswith("protocol.") for u in unused)
    assert not any(u.startswith(("sft.", "data.", "model.")) for u in unused)
    assert "emorl sft does not use these settings" in capsys.readouterr().err
    assert unused_settings(load_config("r1-omni", ["cv.stages=sft,grpo"]), ["protocol", "sft", "grpo"]) == []


def test_renamed_key_is_an_error_naming_the_new_one(tmp_path):
    with pytest.raises(ConfigError, match="'sft.batch_size' was renamed 'sft.samples_per_step'"):
        load_config(None, ["sft.batch_size=8"])
    y = tmp_path / "c.yaml"
    y.write_text("sft:\n  batch_size: 8\n")
    with pytest.raises(ConfigError, match=f"{y}: 'sft.batch_size' was renamed"):
        load_config(y)


def test_the_cli_prints_the_note(capsys, tmp_path):
    assert main(["sft", "grpo.lr=1e-3", f"data.train={tmp_path / 'none.jsonl'}"]) == 2  # fails later: no manifest
    assert (
        "emorl sft does not use these settings (changed from their defaults; ignored): grpo.lr=0.001"
        in capsys.readouterr().err
    )
