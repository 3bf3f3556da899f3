"""report_to: every scalar of a metrics.jsonl row also goes to TensorBoard / Weights & Biases at the
row's step; the packages are imported only when asked for, and a missing one names its pip extra."""

import json
import sys

import pytest

from emorl.train_utils import JsonlLogger, open_trackers, scalar_metrics


def test_scalar_metrics_keeps_numbers_only():
    row = {
        "step": 3,
        "loss": 0.5,
        "max_len": 6,
        "skipped": "non-finite reward",
        "flag": True,
        "media_substitutions": {"silence": 1},
    }
    assert scalar_metrics(row) == {"loss": 0.5, "max_len": 6.0}


def test_unknown_tracker_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="report_to: unknown tracker.*'tensorbord'.*tensorboard, wandb"):
        open_trackers(["tensorbord"], tmp_path, None)


@pytest.mark.parametrize("name, module", [("wandb", "wandb"), ("tensorboard", "torch.utils.tensorboard")])
def test_missing_package_names_the_extra(tmp_path, monkeypatch, name, module):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    with pytest.raises(ImportError, match=rf"report_to={name} needs the .* package: pip install 'emorl\[{name}\]'"):
        open_trackers([name], tmp_path, None)


def _events(logdir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_logger_and_resume(tmp_path):
    log = JsonlLogger(tmp_path / "metrics.jsonl", open_trackers(["tensorboard"], tmp_path, None))
    for step in (1, 2, 3):
        log.log({"step": step, "loss": step / 10, "skipped": "x"})
    log.close()
    # resumed from step 1: what the first run wrote at steps 2 and 3 is purged
    log = JsonlLogger(tmp_path / "metrics.jsonl", open_trackers(["tensorboard"], tmp_path, None, resume_step=1))
    log.log({"step": 2, "loss": 2.0})
    log.close()
    ev = _events(tmp_path / "tensorboard")
    assert set(ev) == {"loss"}
    assert ev["loss"] == [(1, pytest.approx(0.1)), (2, 2.0)]


@pytest.mark.e2e
def test_grpo_and_sft_runs_write_tensorboard_scalars(tiny_model_dir, clips, tmp_path):
    """A tiny GRPO run with report_to=[tensorboard]: every number of every metrics.jsonl row is in
    the event files at the row's step; SFT too."""
    from emorl.config import RunConfig
    from emorl.data.manifest import Sample
    from emorl.models.qwen_omni import QwenOmniAdapter
    from emorl.prompting import PromptBuilder
    from emorl.recipes.prompts import PromptSpec
    from emorl.rl.trainer import train_grpo
    from emorl.sft import train_sft

    cfg = RunConfig(out=str(tmp_path), seed=7, report_to=["tensorboard"])
    cfg.sampling.max_new_tokens = 4
    cfg.grpo.steps, cfg.grpo.prompts_per_step, cfg.grpo.completions_per_prompt = 2, 2, 2
    cfg.grpo.micro_batch_rows, cfg.grpo.sample_every = 4, 0
    cfg.sft.target, cfg.sft.epochs, cfg.sft.samples_per_step = "label", 1, 1
    adapter = QwenOmniAdapter.from_pretrained(tiny_model_dir)
    builder = PromptBuilder(adapter, PromptSpec(), num_frames=4, frame_size=56)
    samples = [Sample(f"s{i}", str(p), lab, "dfew", "train") for i, (p, lab) in enumerate(zip(clips, ["happy", "sad"]))]
    for name, train in (("grpo", train_grpo), ("sft", train_sft)):
        out = tmp_path / name
        train(cfg, adapter, builder, samples, out, progress=False)
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        ev = _events(out / "tensorboard")
        expected = {}
        for r in rows:
            for k, v in scalar_metrics(r).items():
                expected.setdefault(k, []).append((r["step"], pytest.approx(v, rel=1e-6, abs=1e-6)))
        assert len(rows) == 2 and ev == expected, name
        assert "loss" in ev and (name == "sft" or "grad_norm" in ev and "reward/overall" in ev)


def test_wandb_gets_every_row_with_its_step(tmp_path, monkeypatch):
    """The calls emorl makes (a stand-in wandb module, so no package or account is needed)."""
    import types

    calls = []
    run = types.SimpleNamespace(log=lambda d, step: calls.append((step, d)), finish=lambda: calls.append("finish"))
    fake = types.SimpleNamespace(init=lambda **kw: calls.append(kw) or run)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.setenv("WANDB_PROJECT", "proj")
    log = JsonlLogger(tmp_path / "metrics.jsonl", open_trackers(["wandb"], tmp_path / "run1", {"seed": 1}))
    log.log({"step": 1, "loss": 0.25, "skipped": "x"})
    log.log({"step": 2, "loss": 0.5})
    log.close()
    assert calls == [
        {"project": "proj", "name": "run1", "dir": str(tmp_path / "run1"), "config": {"seed": 1}},
        (1, {"loss": 0.25}),
        (2, {"loss": 0.5}),
        "finish",
    ]


def test_wandb_offline(tmp_path, monkeypatch):
    """A real wandb run (a test dependency) with WANDB_MODE=offline: no account, no network."""
    from emorl.config import RunConfig, to_dict

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    log = JsonlLogger(tmp_path / "metrics.jsonl", open_trackers(["wandb"], tmp_path, to_dict(RunConfig())))
    log.log({"step": 1, "loss": 0.25})
    log.log({"step": 2, "loss": 0.5})
    log.close()
    runs = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1 and runs[0].stat().st_size > 0
