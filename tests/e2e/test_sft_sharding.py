"""SFT sharded on 2 CPU processes (torchrun, gloo): sft.sharding=fsdp2, zero2 and zero3 take the
same first step and validation as one process on the same samples (the GRPO loop's strategies, through the shared
``emorl.train.Session``), with 3 accumulated micro-batches per process.

Run as a script (``python -m torch.distributed.run ... test_sft_sharding.py ARGS_JSON``), this file
is the worker that torchrun starts."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

LABELS = ["happy", "sad", "angry", "fear", "happy", "sad"]


def run(model_dir, clips, out, *, sharding="none"):
    """One SFT step over 6 samples (3 per process when there are 2), micro-batches of 1 sample, then
    validation on 3 clips (loss and greedy answers: each process scores its share)."""
    from emorl.config import RunConfig
    from emorl.data.manifest import Sample
    from emorl.models.registry import load_adapter
    from emorl.prompting import PromptBuilder
    from emorl.recipes.prompts import PromptSpec
    from emorl.sft import train_sft

    cfg = RunConfig(out=str(out), seed=7)
    c = cfg.sft
    c.target, c.epochs, c.lr, c.samples_per_step, c.micro_batch_samples = "trace", 1, 1e-3, 6, 1
    c.warmup_ratio, c.sharding, c.val, c.val_generate = 0, sharding, "val", True
    cfg.eval.max_new_tokens = 4
    torch.manual_seed(cfg.seed)
    adapter = load_adapter(model_dir)
    builder = PromptBuilder(adapter, PromptSpec(), num_frames=4, frame_size=56)
    samples = [
        Sample(
            f"s{i}",
            clips[i % len(clips)],
            lab,
            "dfew",
            "train",
            meta={"trace": f"<think>{'the voice rises ' * (1 + i % 3)}</think><answer>{lab}</answer>"},
        )
        for i, lab in enumerate(LABELS)
    ]
    val = [
        Sample(f"v{i}", clip, lab, "dfew", "val", meta={"trace": f"<think>a smile</think><answer>{lab}</answer>"})
        for i, (clip, lab) in enumerate(zip(clips, ["happy", "sad", "angry"]))
    ]
    return train_sft(cfg, adapter, builder, samples, Path(out), progress=False, val_samples=val)


def launch(args: dict, port: int, *, accelerate_config: Path | None = None):
    """This file as the worker: on 2 processes with torchrun, or as ``accelerate_config`` says."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(port),
        __file__,
        json.dumps(args),
    ]
    if accelerate_config is not None:
        cmd = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(accelerate_config),
            "--main_process_port",
            str(port),
            __file__,
            json.dumps(args),
        ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, check=False, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.parametrize("sharding", ["fsdp2", "zero2", "zero3"])
def test_sharded_sft_step_matches_one_process(tiny_model_dir, clips, tmp_path, sharding):
    """Step 1 on 2 processes == step 1 in one process: the logged loss (the global token mean) and
    tokens, the global gradient norm (1e-5 relative), and the saved weights (1e-5 absolute, all but
    0.01 % within 1e-6: Adam's first step divides by |g| + 1e-8, which magnifies summation-order
    noise where |g| is tiny, as in the GRPO sharding tests)."""
    from emorl.models.registry import load_adapter

    clips = [str(c) for c in clips]
    one, two = tmp_path / "one", tmp_path / sharding
    run(tiny_model_dir, clips, one)
    proc = launch(
        {"model": str(tiny_model_dir), "clips": clips, "out": str(two), "sharding": sharding},
        {"fsdp2": 29641, "zero2": 29642, "zero3": 29643}[sharding],
    )
    assert "over 2 process(es) = 3 each; micro-batch 1 samples -> 3 accumulation steps" in proc.stdout
    m1 = json.loads((one / "metrics.jsonl").read_text().splitlines()[0])
    m2 = json.loads((two / "metrics.jsonl").read_text().splitlines()[0])
    assert m2["tokens"] == m1["tokens"] and m2.get("skipped") is None
    assert m2["loss"] == pytest.approx(m1["loss"], rel=1e-5)
    assert m1["grad_norm"] > 1e-3 and m2["grad_norm"] == pytest.approx(m1["grad_norm"], rel=1e-5)
    assert m2["val/loss"] == pytest.approx(m1["val/loss"], rel=1e-5)  # scored on whole (gathered) weights
    assert m2["val/format_rate"] == m1["val/format_rate"] and (two / "best_model" / "config.json").is_file()
    start = load_adapter(tiny_model_dir).model.state_dict()
    a = load_adapter(one / "model").model.state_dict()
    b = load_adapter(two / "model").model.state_dict()  # gathered from the shards, save_pretrained
    assert a.keys() == b.keys() == start.keys()
    diff = torch.cat([(a[k] - b[k]).abs().flatten() for k in a])
    assert float(diff.max()) <= 1e-5 and int((diff > 1e-6).sum()) <= 1e-4 * diff.numel()
    assert sum(not torch.equal(start[k], b[k]) for k in b) > 10  # the step moved the weights


def test_zero3_offload_in_one_process_matches_the_plain_step(tiny_model_dir, clips, tmp_path):
    """A full fine-tune on one GPU: accelerate launch with the shipped ZeRO-3 config set to offload
    parameters and optimizer to the CPU, in one process (sft.sharding=zero3 accepts one process only
    then), takes the plain step: same loss and gradient norm, weights within 1e-5."""
    import yaml

    from emorl.models.registry import load_adapter

    root = Path(__file__).resolve().parents[2]
    conf = yaml.safe_load((root / "configs" / "accelerate" / "deepspeed_zero3.yaml").read_text())
    conf["deepspeed_config"].update(offload_optimizer_device="cpu", offload_param_device="cpu")
    conf["num_processes"] = 1
    (tmp_path / "offload.yaml").write_text(yaml.safe_dump(conf))
    clips = [str(c) for c in clips]
    one, off = tmp_path / "one", tmp_path / "offload"
    run(tiny_model_dir, clips, one)
    proc = launch(
        {"model": str(tiny_model_dir), "clips": clips, "out": str(off), "sharding": "zero3"},
        29645,
        accelerate_config=tmp_path / "offload.yaml",
    )
    assert (
        "1 process(es) = 6 each; micro-batch 1 samples -> 6 accumulation steps; 6 samples, 1 steps; sharding zero3"
        in proc.stdout
    )
    m1 = json.loads((one / "metrics.jsonl").read_text().splitlines()[0])
    m2 = json.loads((off / "metrics.jsonl").read_text().splitlines()[0])
    assert m2["loss"] == pytest.approx(m1["loss"], rel=1e-5) and m2.get("skipped") is None
    assert m1["grad_norm"] > 1e-3 and m2["grad_norm"] == pytest.approx(m1["grad_norm"], rel=1e-5)
    a = load_adapter(one / "model").model.state_dict()
    b = load_adapter(off / "model").model.state_dict()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-5


def test_an_offloaded_optimizer_is_accepted_by_deepspeed():
    """DeepSpeed refuses a client optimizer (torch's AdamW) with ZeRO-Offload unless told: the
    config says so whenever the optimizer is offloaded (the benchmark's ZeRO-3 offload run uses it)."""
    from emorl.train.zero import ds_config

    off = ds_config(3, dtype="bfloat16", max_grad_norm=1.0, offload_optimizer="cpu", offload_param="cpu")
    assert off["zero_force_ds_cpu_optimizer"] is False and off["zero_optimization"]["offload_param"] == {
        "device": "cpu"
    }
    assert "zero_force_ds_cpu_optimizer" not in ds_config(3, dtype="bfloat16", max_grad_norm=1.0)


if __name__ == "__main__":  # the torchrun worker
    a = json.loads(sys.argv[1])
    run(a["model"], a["clips"], a["out"], sharding=a["sharding"])
