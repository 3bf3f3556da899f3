"""FSDP2 (grpo.sharding=fsdp2) through the GRPO loop on 2 CPU processes (torchrun, gloo): the same
update as one process on the same data, sharded parameters, a normal save_pretrained model/, an
exact resume; and the launches emorl refuses (DeepSpeed, FSDP without the key).

Run as a script (``python -m torch.distributed.run ... test_sharding.py ARGS_JSON``), this file is
the worker that torchrun starts."""

import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.e2e

RECIPE = "sharding-test"


def judge(groups):
    """A model-free reward that varies within groups (a function of the text)."""
    return [[{"judge": (sum(map(ord, t)) % 7) / 6} for t in g.texts] for g in groups]


def seeded_sampler(real):
    """Sample each clip's group on its own with the torch seed set from the clip's id, so the
    completions do not depend on which process draws the clip or what else it draws."""
    def sample(adapter, samples, prompts, group_size, params):
        out = []
        for s, p in zip(samples, prompts):
            torch.manual_seed(sum(map(ord, s.id)))
            out += real(adapter, [s], [p], group_size, params)
        return out
    return sample


@contextmanager
def patched():
    """The test recipe and the seeded sampler, for the duration of a run."""
    from emorl.recipes import rewards
    from emorl.rl import trainer

    real = trainer.sample_groups
    rewards.RECIPES[RECIPE] = rewards.RewardRecipe("tags", {"accuracy": 1.0, "format": 1.0, "judge": 1.0})
    trainer.sample_groups = seeded_sampler(real)
    try:
        yield
    finally:
        trainer.sample_groups = real
        rewards.RECIPES.pop(RECIPE)


def run(model_dir, clips, out, *, sharding="none", steps=2, resume=False, dtype="float32"):
    """GRPO on 2 clips per step (G=4, micro-batches of 2 rows, beta > 0: a reference copy too)."""
    from emorl.config import RunConfig
    from emorl.data.loader import PromptBuilder
    from emorl.data.manifest import Sample
    from emorl.models.qwen_omni import QwenOmniAdapter
    from emorl.recipes.prompts import PromptSpec
    from emorl.rl.trainer import train_grpo

    cfg = RunConfig(out=str(out), seed=7)
    cfg.prompt.recipe = RECIPE
    cfg.sampling.max_new_tokens = 6
    g = cfg.grpo
    g.steps, g.prompts_per_step, g.completions_per_prompt, g.micro_batch_rows = steps, 2, 4, 2
    g.lr, g.beta, g.sample_every, g.save_every, g.sharding, g.resume = 1e-3, 0.04, 0, 1, sharding, resume
    cfg.model.dtype = dtype
    torch.manual_seed(cfg.seed)
    adapter = QwenOmniAdapter.from_pretrained(model_dir, dtype=dtype)
    builder = PromptBuilder(adapter, PromptSpec(), num_frames=4, frame_size=56)
    samples = [Sample(f"s{i}", str(p), lab, "dfew", "train") for i, (p, lab) in
               enumerate(zip(clips, ["happy", "sad", "angry"]))]
    with patched():
        res = train_grpo(cfg, adapter, builder, samples, Path(out), progress=False, extra_rewards=judge)
    if sharding == "fsdp2":
        from emorl.models.adapter import SamplingParams
        from emorl.rl.sharding import gathered

        rank = torch.distributed.get_rank()
        with gathered(adapter.model):  # no collective inside: one process can generate alone
            if rank == 0:
                adapter.sample_groups([builder.prompt(samples[0])], 2, SamplingParams(max_new_tokens=3))
        torch.distributed.barrier()
        local = sum(p.to_local().numel() for p in adapter.model.parameters())  # half of every parameter
        full = sum(p.numel() for p in adapter.model.parameters())
        (Path(out) / f"shard_rank{rank}.json").write_text(json.dumps({"local": local, "full": full}))
    return res


ROOT = Path(__file__).resolve().parents[2]


def launch(args: dict, port: int, *, accelerate: bool = False):
    """This file as the worker on 2 processes: torchrun, or accelerate launch with configs/accelerate/fsdp2.yaml
    (which runs torchrun with ACCELERATE_USE_FSDP=true, FSDP_VERSION=2; it works on CPU too)."""
    if accelerate:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(ROOT / "configs" / "accelerate" / "fsdp2.yaml"), "--num_processes", "2", "--main_process_port",
               str(port)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port)]
    cmd += [__file__, json.dumps(args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _state(path):
    return torch.load(path, weights_only=True)


def _metrics(out, name="metrics.jsonl"):
    return [json.loads(line) for line in (Path(out) / name).read_text().splitlines()]


def test_fsdp2_matches_one_process_and_resumes_exactly(tiny_model_dir, clips, tmp_path):
    """Step 1 under FSDP2 on 2 processes == step 1 in one process on the same clips and completions.
    The global gradient norm agrees to 1e-5 relative (measured: 4.7e-7). Parameters agree to 1e-5
    absolute (1 % of the learning rate) and all but 0.01 % of them to 1e-6 (measured: max 8.1e-7,
    none above 1e-6). The slack is for Adam's first step, lr * g / (|g| + 1e-8): where |g| is near
    its eps, the different float summation order of a sharded sum shows. Then 1 step +
    resume + 1 step under FSDP2
    == 2 steps straight, bit for bit (the resumed run launched by accelerate launch with
    configs/accelerate/fsdp2.yaml); model/ is a normal save_pretrained folder."""
    from emorl.models.qwen_omni import QwenOmniAdapter

    clips = [str(c) for c in clips[:2]]
    one, fsdp = tmp_path / "one", tmp_path / "fsdp"
    run(tiny_model_dir, clips, one)
    proc = launch({"model": str(tiny_model_dir), "clips": clips, "out": str(fsdp), "sharding": "fsdp2"}, 29541)
    assert "2 process(es), sharding fsdp2" in proc.stdout

    # each process logs its own share: loss = sum of the shares, kl and rewards = their mean
    m1, r0, r1 = _metrics(one)[0], _metrics(fsdp)[0], _metrics(fsdp, ".metrics_rank1.jsonl")[0]
    assert r0["grad_norm"] > 1e-3 and r0.get("skipped") is None  # a real update
    assert r0["grad_norm"] == r1["grad_norm"] == pytest.approx(m1["grad_norm"], rel=1e-5)  # global norm
    assert r0["loss"] + r1["loss"] == pytest.approx(m1["loss"], rel=1e-5, abs=1e-7)
    for k in ("kl", "reward/overall"):
        assert (r0[k] + r1[k]) / 2 == pytest.approx(m1[k], rel=1e-5, abs=1e-7), k
    a = _state(one / "checkpoints" / "step-000001" / "model_state.pt")
    b = _state(fsdp / "checkpoints" / "step-000001" / "model_state.pt")
    start = QwenOmniAdapter.from_pretrained(tiny_model_dir).model.state_dict()
    assert a.keys() == b.keys() == start.keys()
    diff = torch.cat([(a[k] - b[k]).abs().flatten() for k in a])
    assert float(diff.max()) <= 1e-5 and int((diff > 1e-6).sum()) <= 1e-4 * diff.numel()
    assert sum(not torch.equal(start[k], b[k]) for k in b) > 10  # the step moved the weights

    shards = [json.loads((fsdp / f"shard_rank{r}.json").read_text()) for r in (0, 1)]
    assert shards[0]["full"] == shards[1]["full"] and all(s["local"] < 0.51 * s["full"] for s in shards)
    assert json.loads((fsdp / "sync_check.json").read_text())["params_in_sync"] is None  # skipped, with a reason

    resumed = tmp_path / "resumed"  # the step-1 checkpoint, continued to step 2
    shutil.copytree(fsdp / "checkpoints", resumed / "checkpoints")
    (resumed / "checkpoints" / "latest.json").write_text(json.dumps({"step": 1, "path": "step-000001"}))
    shutil.rmtree(resumed / "checkpoints" / "step-000002", ignore_errors=True)
    launch({"model": str(tiny_model_dir), "clips": clips, "out": str(resumed), "sharding": "fsdp2", "resume": True},
           29542, accelerate=True)
    straight = QwenOmniAdapter.from_pretrained(fsdp / "model").model.state_dict()
    again = QwenOmniAdapter.from_pretrained(resumed / "model").model.state_dict()
    assert all(torch.equal(straight[k], again[k]) for k in straight)
    assert any(not torch.equal(straight[k], b[k]) for k in b)  # step 2 moved them again


def test_fsdp2_bf16_keeps_float32_shards(tiny_model_dir, clips, tmp_path):
    """A bf16 model under FSDP2 with float32 master weights (the default): the shards, and so the
    checkpoint, are float32, compute is bf16, and one step equals one process's step with
    MasterWeightAdamW on the same data (its float32 masters) up to bf16 gradient rounding; the
    saved model/ is bf16."""
    from emorl.models.qwen_omni import QwenOmniAdapter

    clips = [str(c) for c in clips[:2]]
    one, fsdp = tmp_path / "one", tmp_path / "fsdp"
    run(tiny_model_dir, clips, one, dtype="bfloat16")  # 2 steps; the step-1 checkpoints are compared
    launch({"model": str(tiny_model_dir), "clips": clips, "out": str(fsdp), "sharding": "fsdp2", "dtype": "bfloat16"},
           29543)
    st = torch.load(one / "checkpoints" / "step-000001" / "trainer_state.pt", weights_only=False)
    bf16 = QwenOmniAdapter.from_pretrained(tiny_model_dir, dtype="bfloat16").model
    names = [n for n, p in bf16.named_parameters()]  # every tower trainable: all parameters, in order
    masters = dict(zip(names, st["optimizer"]["master_weights"], strict=True))
    shards = _state(fsdp / "checkpoints" / "step-000001" / "model_state.pt")
    assert all(v.dtype == torch.float32 for v in shards.values())
    start = bf16.state_dict()
    moved = torch.cat([(shards[k] - start[k].float()).abs().flatten() for k in masters])
    diff = torch.cat([(shards[k] - masters[k]).abs().flatten() for k in masters])
    assert float(moved.median()) > 5e-4  # lr 1e-3: a real step, kept in float32
    assert float(diff.max()) <= 2e-3 and float((diff > 1e-5).float().mean()) < 0.01
    from safetensors.torch import load_file

    saved = load_file(str(fsdp / "model" / "model.safetensors"))
    assert {v.dtype for v in saved.values()} == {torch.bfloat16}
    assert json.loads((fsdp / "model" / "config.json").read_text())["dtype"] == "bfloat16"


def test_fsdp2_needs_several_processes(tiny_model_dir, clips, tmp_path):
    with pytest.raises(ValueError, match="grpo.sharding=fsdp2 needs several processes"):
        run(tiny_model_dir, [str(c) for c in clips[:2]], tmp_path / "x", sharding="fsdp2")


def test_unknown_sharding_is_a_clear_error(tiny_model_dir, clips, tmp_path):
    with pytest.raises(ValueError, match="grpo.sharding must be one of none, fsdp2, got 'zero3'"):
        run(tiny_model_dir, [str(c) for c in clips[:2]], tmp_path / "x", sharding="zero3")


@pytest.mark.parametrize("env, command, sharding, match", [
    ({"ACCELERATE_USE_DEEPSPEED": "true"}, "train", "none", "DeepSpeed launches .* are not supported"),
    ({"ACCELERATE_USE_DEEPSPEED": "true"}, "sft", "none", "DeepSpeed launches .* are not supported"),
    ({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"}, "train", "none", "add grpo.sharding=fsdp2"),
    ({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "1"}, "train", "fsdp2", "FSDP1 configs are not supported"),
    ({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"}, "sft", "none", "emorl sft does not shard"),
])
def test_refused_launches(monkeypatch, env, command, sharding, match):
    """accelerate launch sets these variables from configs/accelerate/*.yaml; a launch the loop
    would ignore (run unsharded) is an error, not a silent fallback."""
    from emorl.train_utils import check_launch

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises((RuntimeError, ValueError), match=match):
        check_launch(command, sharding)


def test_fsdp2_launch_with_the_key_is_accepted(monkeypatch):
    from emorl.train_utils import check_launch

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_VERSION", "2")
    check_launch("train", "fsdp2")


def test_shipped_accelerate_configs():
    """fsdp2.yaml launches FSDP2 (version 2); the DeepSpeed configs launch DeepSpeed (refused above)."""
    import yaml

    root = ROOT / "configs" / "accelerate"
    cfgs = {p.stem: yaml.safe_load(p.read_text()) for p in root.glob("*.yaml")}
    assert set(cfgs) == {"ddp", "fsdp2", "deepspeed_zero2", "deepspeed_zero3"}
    assert cfgs["fsdp2"]["distributed_type"] == "FSDP" and cfgs["fsdp2"]["fsdp_config"]["fsdp_version"] == 2
    assert [cfgs[f"deepspeed_zero{z}"]["deepspeed_config"]["zero_stage"] for z in (2, 3)] == [2, 3]


if __name__ == "__main__":  # the torchrun worker
    a = json.loads(sys.argv[1])
    run(a["model"], a["clips"], a["out"], sharding=a["sharding"], resume=a.get("resume", False),
        steps=a.get("steps", 2), dtype=a.get("dtype", "float32"))
