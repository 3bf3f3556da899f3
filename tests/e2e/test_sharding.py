"""FSDP2 (grpo.sharding=fsdp2) and DeepSpeed ZeRO-2/3 (grpo.sharding=zero2|zero3) through the GRPO
loop on 2 CPU processes (torchrun or accelerate launch, gloo): the same update as one process on
the same data, sharded parameters, a normal save_pretrained model/, an exact resume; and the
launches emorl refuses (a config without the matching key, ZeRO-1, sharded SFT).

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

# torchrun subprocesses (each with its own 300 s limit): up to 107 s measured on a loaded 2-core machine
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

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


def tied(real):
    """Scores as ``real`` does, then ties every group's rewards (all components zero)."""

    def score(groups, recipe, extra):
        real(groups, recipe, extra)
        for grp in groups:
            grp.rewards = {k: torch.zeros_like(v) for k, v in grp.rewards.items()}

    return score


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


def run(
    model_dir,
    clips,
    out,
    *,
    sharding="none",
    steps=2,
    resume=False,
    dtype="float32",
    nan_rank=None,
    tie_rank=None,
    scale="group",
):
    """GRPO on 2 clips per step (G=4, micro-batches of 2 rows, beta > 0: a reference copy too).
    ``tie_rank``: dynamic sampling on, and that process's groups all get tied rewards."""
    from emorl.config import RunConfig
    from emorl.data.manifest import Sample
    from emorl.models.adapter import Modality
    from emorl.models.registry import load_adapter
    from emorl.prompting import PromptBuilder
    from emorl.recipes.prompts import PromptSpec
    from emorl.rl.trainer import train_grpo

    cfg = RunConfig(out=str(out), seed=7)
    cfg.prompt.recipe = RECIPE
    cfg.sampling.max_new_tokens = 6
    g = cfg.grpo
    g.steps, g.prompts_per_step, g.completions_per_prompt, g.micro_batch_rows = steps, 2, 4, 2
    g.lr, g.beta, g.sample_every, g.save_every, g.sharding, g.resume = 1e-3, 0.04, 0, 1, sharding, resume
    g.dynamic_sampling, g.advantage_scale = tie_rank is not None, scale
    cfg.model.dtype = dtype
    torch.manual_seed(cfg.seed)
    adapter = load_adapter(model_dir, dtype=dtype)
    modality = Modality.AV if Modality.AV in adapter.modalities else Modality.VIDEO
    builder = PromptBuilder(adapter, PromptSpec(), num_frames=4, frame_size=56, modality=modality)
    samples = [
        Sample(f"s{i}", str(p), lab, "dfew", "train")
        for i, (p, lab) in enumerate(zip(clips, ["happy", "sad", "angry"]))
    ]
    with patched():
        if nan_rank is not None and int(os.environ.get("RANK", "0")) == nan_rank:
            from test_trainer import nan_loss_on_first_call

            from emorl.rl import trainer

            trainer.policy_loss = nan_loss_on_first_call(trainer.policy_loss)
        if tie_rank is not None and int(os.environ.get("RANK", "0")) == tie_rank:
            from emorl.rl import trainer

            trainer.score_groups = tied(trainer.score_groups)
        res = train_grpo(cfg, adapter, builder, samples, Path(out), progress=False, extra_rewards=judge)
    if sharding == "fsdp2":
        from emorl.models.adapter import SamplingParams
        from emorl.train.sharding import gathered

        rank = torch.distributed.get_rank()
        with gathered(adapter.model):  # no collective inside: one process can generate alone
            if rank == 0:
                adapter.sample_groups([builder.prompt(samples[0])], 2, SamplingParams(max_new_tokens=3))
        torch.distributed.barrier()
        local = sum(p.to_local().numel() for p in adapter.model.parameters())  # half of every parameter
        full = sum(p.numel() for p in adapter.model.parameters())
        (Path(out) / f"shard_rank{rank}.json").write_text(json.dumps({"local": local, "full": full}))
    if sharding == "zero3":  # the parameters stay partitioned after training (DeepSpeed's ds_tensor: 1/N each)
        rank = torch.distributed.get_rank()
        local = sum(p.ds_tensor.numel() for p in adapter.model.parameters())
        full = sum(p.ds_numel for p in adapter.model.parameters())
        (Path(out) / f"shard_rank{rank}.json").write_text(json.dumps({"local": local, "full": full}))
    return res


ROOT = Path(__file__).resolve().parents[2]


def launch(args: dict, port: int, *, accelerate: bool | str = False):
    """This file as the worker on 2 processes: torchrun, or accelerate launch with configs/accelerate/fsdp2.yaml
    (which runs torchrun with ACCELERATE_USE_FSDP=true, FSDP_VERSION=2; it works on CPU too) or the named
    config (``accelerate="deepspeed_zero3"``)."""
    if accelerate:
        name = accelerate if isinstance(accelerate, str) else "fsdp2"
        cmd = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(ROOT / "configs" / "accelerate" / f"{name}.yaml"),
            "--num_processes",
            "2",
            "--main_process_port",
            str(port),
        ]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port)]
    cmd += [__file__, json.dumps(args)]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, check=False, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
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
    from emorl.models.registry import load_adapter

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
    start = load_adapter(tiny_model_dir).model.state_dict()
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
    launch(
        {"model": str(tiny_model_dir), "clips": clips, "out": str(resumed), "sharding": "fsdp2", "resume": True},
        29542,
        accelerate=True,
    )
    straight = load_adapter(fsdp / "model").model.state_dict()
    again = load_adapter(resumed / "model").model.state_dict()
    assert all(torch.equal(straight[k], again[k]) for k in straight)
    assert any(not torch.equal(straight[k], b[k]) for k in b)  # step 2 moved them again


def test_fsdp2_bf16_keeps_float32_shards(tiny_model_dir, clips, tmp_path):
    """A bf16 model under FSDP2 with float32 master weights (the default): the shards, and so the
    checkpoint, are float32, compute is bf16, and one step equals one process's step with
    MasterWeightAdamW on the same data (its float32 masters) up to bf16 gradient rounding; the
    saved model/ is bf16."""

    clips = [str(c) for c in clips[:2]]
    one, fsdp = tmp_path / "one", tmp_path / "fsdp"
    run(tiny_model_dir, clips, one, dtype="bfloat16")  # 2 steps; the step-1 checkpoints are compared
    launch(
        {"model": str(tiny_model_dir), "clips": clips, "out": str(fsdp), "sharding": "fsdp2", "dtype": "bfloat16"},
        29543,
    )
    _assert_float32_masters(
        tiny_model_dir, one, _state(fsdp / "checkpoints" / "step-000001" / "model_state.pt"), fsdp / "model"
    )


def _assert_float32_masters(model_dir, one: Path, fp32: dict, saved_model: Path) -> None:
    """``fp32`` (a sharded run's float32 weights after step 1) equals the masters of one process's
    MasterWeightAdamW (``one``'s step-1 checkpoint) up to bf16 gradient rounding; ``saved_model``
    is bf16."""
    from safetensors.torch import load_file

    from emorl.models.registry import load_adapter

    st = torch.load(one / "checkpoints" / "step-000001" / "trainer_state.pt", weights_only=False)
    bf16 = load_adapter(model_dir, dtype="bfloat16").model
    names = [n for n, p in bf16.named_parameters()]  # every tower trainable: all parameters, in order
    masters = dict(zip(names, st["optimizer"]["master_weights"], strict=True))
    assert set(masters) <= set(fp32) and all(fp32[k].dtype == torch.float32 for k in masters)
    start = bf16.state_dict()
    moved = torch.cat([(fp32[k] - start[k].float()).abs().flatten() for k in masters])
    diff = torch.cat([(fp32[k] - masters[k]).abs().flatten() for k in masters])
    assert float(moved.median()) > 5e-4  # lr 1e-3: a real step, kept in float32
    assert float(diff.max()) <= 2e-3 and float((diff > 1e-5).float().mean()) < 0.01
    saved = load_file(str(saved_model / "model.safetensors"))
    assert {v.dtype for v in saved.values()} == {torch.bfloat16}
    assert json.loads((saved_model / "config.json").read_text())["dtype"] == "bfloat16"


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_zero_matches_one_process_and_resumes_exactly(tiny_model_dir, clips, tmp_path, stage):
    """grpo.sharding=zero2 / zero3 on 2 CPU processes (DeepSpeed's CPU accelerator, gloo): step 1
    equals one process's step 1 on the same clips and completions (the same tolerances as FSDP2
    above), ZeRO-3 leaves each process half of every parameter, and 1 step + resume + 1 step ==
    2 steps straight, bit for bit (the resumed run launched by accelerate launch with
    configs/accelerate/deepspeed_zero<stage>.yaml). model/ is a normal save_pretrained folder."""
    from emorl.models.registry import load_adapter

    clips = [str(c) for c in clips[:2]]
    one, ds = tmp_path / "one", tmp_path / "ds"
    run(tiny_model_dir, clips, one, steps=1)
    port = 29560 + 2 * stage
    proc = launch({"model": str(tiny_model_dir), "clips": clips, "out": str(ds), "sharding": f"zero{stage}"}, port)
    assert f"2 process(es), sharding zero{stage}" in proc.stdout

    m1, r0, r1 = _metrics(one)[0], _metrics(ds)[0], _metrics(ds, ".metrics_rank1.jsonl")[0]
    assert r0["grad_norm"] > 1e-3 and r0.get("skipped") is None  # a real update
    assert r0["grad_norm"] == pytest.approx(m1["grad_norm"], rel=1e-5)  # DeepSpeed's global norm
    assert r0["loss"] + r1["loss"] == pytest.approx(m1["loss"], rel=1e-5, abs=1e-7)
    start = load_adapter(tiny_model_dir).model.state_dict()
    a = load_adapter(one / "model").model.state_dict()
    straight = tmp_path / "straight"  # step 1 alone under DeepSpeed, for the comparison with one process
    launch(
        {"model": str(tiny_model_dir), "clips": clips, "out": str(straight), "sharding": f"zero{stage}", "steps": 1},
        port + 1,
    )
    b = load_adapter(straight / "model").model.state_dict()
    assert a.keys() == b.keys() == start.keys()
    diff = torch.cat([(a[k] - b[k]).abs().flatten() for k in a])
    assert float(diff.max()) <= 1e-5 and int((diff > 1e-6).sum()) <= 1e-4 * diff.numel()
    assert sum(not torch.equal(start[k], b[k]) for k in b) > 10  # the step moved the weights
    sync = json.loads((ds / "sync_check.json").read_text())
    if stage == 3:
        shards = [json.loads((ds / f"shard_rank{r}.json").read_text()) for r in (0, 1)]
        assert shards[0]["full"] == shards[1]["full"] and all(s["local"] < 0.51 * s["full"] for s in shards)
        assert sync["params_in_sync"] is None and "zero3" in sync["skipped"]
    else:
        assert sync["params_in_sync"] is True  # ZeRO-2: replicated parameters, identical on both processes
    ckpt = ds / "checkpoints" / "step-000001"
    assert (ckpt / "zero").is_dir() and not (ckpt / "model_state.pt").exists()

    resumed = tmp_path / "resumed"  # the step-1 checkpoint, continued to step 2
    shutil.copytree(ds / "checkpoints", resumed / "checkpoints")
    (resumed / "checkpoints" / "latest.json").write_text(json.dumps({"step": 1, "path": "step-000001"}))
    shutil.rmtree(resumed / "checkpoints" / "step-000002", ignore_errors=True)
    launch(
        {"model": str(tiny_model_dir), "clips": clips, "out": str(resumed), "sharding": f"zero{stage}", "resume": True},
        port + 100,
        accelerate=f"deepspeed_zero{stage}",
    )
    full = load_adapter(ds / "model").model.state_dict()
    again = load_adapter(resumed / "model").model.state_dict()
    assert all(torch.equal(full[k], again[k]) for k in full)
    assert any(not torch.equal(full[k], b[k]) for k in b)  # step 2 moved them again


@pytest.mark.parametrize("family", ["qwen3-omni", "qwen2.5-vl", "qwen3-vl", "parts"])
@pytest.mark.parametrize("sharding", ["fsdp2", "zero3"])
def test_sharded_families_match_one_process(tiny_dir_of, clips, tmp_path, family, sharding):
    """FSDP2 and ZeRO-3 on the other families (Qwen2.5-Omni: the tests above): Qwen3-Omni's routed
    experts, whose fused tensors are sharded too, and deepstack; the VL models' video-only
    prompts; the parts family's projectors (their own FSDP units) and tied LM head. Step 1 on 2 processes == step 1 in one process (gradient norm to 1e-5 relative,
    weights to 1e-5), and each process holds about half of every parameter."""
    from emorl.models.registry import FAMILIES, load_adapter

    model_dir = tiny_dir_of(family)
    port = 29700 + 10 * list(FAMILIES).index(family) + (sharding == "zero3")
    clips = [str(c) for c in clips[:2]]
    one, sharded = tmp_path / "one", tmp_path / sharding
    run(model_dir, clips, one, steps=1)
    launch({"model": str(model_dir), "clips": clips, "out": str(sharded), "sharding": sharding, "steps": 1}, port)
    m1, r0, r1 = _metrics(one)[0], _metrics(sharded)[0], _metrics(sharded, ".metrics_rank1.jsonl")[0]
    assert r0["grad_norm"] > 1e-3 and r0.get("skipped") is None
    assert r0["grad_norm"] == pytest.approx(m1["grad_norm"], rel=1e-5)
    assert r0["loss"] + r1["loss"] == pytest.approx(m1["loss"], rel=1e-5, abs=1e-7)
    start, a, b = (
        load_adapter(d).model.state_dict() for d in (model_dir, one / "model", sharded / "model")
    )  # sharded: gathered, saved
    assert a.keys() == b.keys() == start.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-5
    assert sum(not torch.equal(start[k], b[k]) for k in b) > 10  # the step moved the weights
    shards = [json.loads((sharded / f"shard_rank{r}.json").read_text()) for r in (0, 1)]
    assert shards[0]["full"] == shards[1]["full"] and all(x["local"] < 0.51 * x["full"] for x in shards)


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_bf16_keeps_float32_masters(tiny_model_dir, clips, tmp_path, stage):
    """A bf16 model under ZeRO-2/3 runs DeepSpeed's bf16 mode: the float32 master partitions of
    the step-1 checkpoint (consolidated with DeepSpeed's own zero_to_fp32) equal one process's
    MasterWeightAdamW masters up to bf16 gradient rounding (as for FSDP2 above), and the saved
    model/ is bf16."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    clips = [str(c) for c in clips[:2]]
    one, ds = tmp_path / "one", tmp_path / "ds"
    run(tiny_model_dir, clips, one, dtype="bfloat16")  # 2 steps; the step-1 checkpoints are compared
    launch(
        {"model": str(tiny_model_dir), "clips": clips, "out": str(ds), "sharding": f"zero{stage}", "dtype": "bfloat16"},
        29580 + stage,
    )
    fp32 = {
        k: v.detach()
        for k, v in get_fp32_state_dict_from_zero_checkpoint(
            str(ds / "checkpoints" / "step-000001"), tag="zero"
        ).items()
    }
    _assert_float32_masters(tiny_model_dir, one, fp32, ds / "model")


@pytest.mark.parametrize("sharding", ["none", "fsdp2", "zero2"])
def test_a_non_finite_loss_on_one_process_skips_the_step_on_all(tiny_model_dir, clips, tmp_path, sharding):
    """Process 1 alone gets a NaN loss in step 1: no process hangs, both skip step 1 (process 1
    names the loss, process 0 the global gradient norm), both train in step 2, and (replicated)
    they still hold the same parameters."""
    out = tmp_path / sharding
    launch(
        {
            "model": str(tiny_model_dir),
            "clips": [str(c) for c in clips[:2]],
            "out": str(out),
            "sharding": sharding,
            "nan_rank": 1,
        },
        {"none": 29590, "fsdp2": 29591, "zero2": 29592}[sharding],
    )
    r0, r1 = _metrics(out), _metrics(out, ".metrics_rank1.jsonl")
    assert r1[0]["skipped"].startswith("non-finite loss (nan) on this process")
    assert "non-finite gradient norm" in r0[0]["skipped"] and "loss" not in r0[0]["skipped"]
    assert r0[1].get("skipped") is None and r1[1].get("skipped") is None and r0[1]["grad_norm"] > 1e-3
    in_sync = json.loads((out / "sync_check.json").read_text())["params_in_sync"]
    assert in_sync is (None if sharding == "fsdp2" else True)  # FSDP2: one sharded copy, nothing to compare


def test_dynamic_sampling_with_one_process_all_tied(tiny_model_dir, clips, tmp_path):
    """Dynamic sampling on 2 processes (replicated parameters) where process 1's groups always tie:
    the refill is decided on the global count, so both processes run the same rounds; process 0
    ends each step with both groups of the global batch, process 1 with none, and it still joins
    every reduction. No hang, both train, and they hold the same parameters."""
    out = tmp_path / "dyn"
    launch(
        {
            "model": str(tiny_model_dir),
            "clips": [str(c) for c in clips],
            "out": str(out),
            "sharding": "none",
            "tie_rank": 1,
        },
        29595,
    )
    r0, r1 = _metrics(out), _metrics(out, ".metrics_rank1.jsonl")
    assert [r["step"] for r in r0] == [r["step"] for r in r1] == [1, 2]
    for a, b in zip(r0, r1):
        assert a["groups"] == 2 and b["groups"] == 0 and b["dynamic_sampling_dropped"] >= 1
        assert a.get("skipped") is None and b.get("skipped") is None and a["grad_norm"] == b["grad_norm"] > 1e-3
    assert json.loads((out / "sync_check.json").read_text())["params_in_sync"] is True


def test_batch_scaled_advantages_use_the_global_batch(tiny_model_dir, clips, tmp_path):
    """grpo.advantage_scale=batch on 2 processes (one clip each) divides by the std of the whole
    batch's rewards, as one process on both clips does: the same first step."""
    clips = [str(c) for c in clips[:2]]
    one, two = tmp_path / "one", tmp_path / "two"
    run(tiny_model_dir, clips, one, steps=1, scale="batch")
    launch(
        {
            "model": str(tiny_model_dir),
            "clips": clips,
            "out": str(two),
            "sharding": "none",
            "steps": 1,
            "scale": "batch",
        },
        29596,
    )
    m1, r0, r1 = _metrics(one)[0], _metrics(two)[0], _metrics(two, ".metrics_rank1.jsonl")[0]
    assert m1["grad_norm"] > 1e-3 and r0["grad_norm"] == r1["grad_norm"] == pytest.approx(m1["grad_norm"], rel=1e-5)
    assert r0["loss"] + r1["loss"] == pytest.approx(m1["loss"], rel=1e-5, abs=1e-7)


def test_fsdp2_needs_several_processes(tiny_model_dir, clips, tmp_path):
    with pytest.raises(ValueError, match="grpo.sharding=fsdp2 needs several processes"):
        run(tiny_model_dir, [str(c) for c in clips[:2]], tmp_path / "x", sharding="fsdp2")


def test_unknown_sharding_is_a_clear_error(tiny_model_dir, clips, tmp_path):
    with pytest.raises(ValueError, match="grpo.sharding must be one of none, fsdp2, zero2, zero3, got 'zero1'"):
        run(tiny_model_dir, [str(c) for c in clips[:2]], tmp_path / "x", sharding="zero1")


@pytest.mark.parametrize(
    "env, command, sharding, match",
    [
        (
            {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"},
            "train",
            "none",
            "add grpo.sharding=zero3",
        ),
        (
            {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"},
            "train",
            "zero3",
            "ZeRO-2 config but grpo.sharding=zero3",
        ),
        (
            {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "1"},
            "train",
            "zero2",
            "emorl supports ZeRO stages 2 and 3",
        ),
        (
            {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"},
            "sft",
            "none",
            "emorl sft does not shard",
        ),
        ({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"}, "train", "none", "add grpo.sharding=fsdp2"),
        ({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "1"}, "train", "fsdp2", "FSDP1 configs are not supported"),
        ({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"}, "sft", "none", "emorl sft does not shard"),
    ],
)
def test_refused_launches(monkeypatch, env, command, sharding, match):
    """accelerate launch sets these variables from configs/accelerate/*.yaml; a launch the loop
    would ignore (run unsharded) is an error, not a silent fallback."""
    from emorl.train_utils import check_launch

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises((RuntimeError, ValueError), match=match):
        check_launch(command, sharding)


def test_launches_with_the_key_are_accepted(monkeypatch):
    from emorl.train_utils import check_launch

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_VERSION", "2")
    check_launch("train", "fsdp2")
    monkeypatch.delenv("ACCELERATE_USE_FSDP")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    for stage in (2, 3):
        monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", str(stage))
        check_launch("train", f"zero{stage}")


@pytest.mark.parametrize("sharding", ["zero2", "zero3"])
def test_deepspeed_needs_several_processes(tiny_model_dir, clips, tmp_path, sharding):
    with pytest.raises(ValueError, match=f"grpo.sharding={sharding} needs several processes.*deepspeed_{sharding}"):
        run(tiny_model_dir, [str(c) for c in clips[:2]], tmp_path / "x", sharding=sharding)


def test_deepspeed_config_refuses_what_it_cannot_honour():
    from emorl.train.zero import ds_config

    with pytest.raises(ValueError, match="not float16"):
        ds_config(2, dtype="float16", max_grad_norm=1.0)
    with pytest.raises(ValueError, match="parameter offload needs ZeRO-3"):
        ds_config(2, dtype="float32", max_grad_norm=1.0, offload_param="cpu")
    c = ds_config(3, dtype="bfloat16", max_grad_norm=0.5, offload_optimizer="cpu")
    assert c["bf16"]["enabled"] and c["gradient_clipping"] == 0.5 and c["gradient_accumulation_steps"] == 1
    assert c["zero_optimization"]["offload_optimizer"] == {"device": "cpu"}


def test_shipped_accelerate_configs():
    """fsdp2.yaml launches FSDP2 (version 2); the DeepSpeed configs launch ZeRO-2 and ZeRO-3."""
    import yaml

    root = ROOT / "configs" / "accelerate"
    cfgs = {p.stem: yaml.safe_load(p.read_text()) for p in root.glob("*.yaml")}
    assert set(cfgs) == {"ddp", "fsdp2", "deepspeed_zero2", "deepspeed_zero3"}
    assert cfgs["fsdp2"]["distributed_type"] == "FSDP" and cfgs["fsdp2"]["fsdp_config"]["fsdp_version"] == 2
    assert [cfgs[f"deepspeed_zero{z}"]["deepspeed_config"]["zero_stage"] for z in (2, 3)] == [2, 3]


if __name__ == "__main__":  # the torchrun worker
    a = json.loads(sys.argv[1])
    run(
        a["model"],
        a["clips"],
        a["out"],
        sharding=a["sharding"],
        resume=a.get("resume", False),
        steps=a.get("steps", 2),
        dtype=a.get("dtype", "float32"),
        nan_rank=a.get("nan_rank"),
        tie_rank=a.get("tie_rank"),
        scale=a.get("scale", "group"),
    )
