"""The GRPO trainer: exact resume, micro-batch invariance, non-finite handling, signals, LoRA,
and a 2-process data-parallel run that stays in sync."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from emorl.config import RunConfig
from emorl.data.manifest import Sample, write_manifest
from emorl.models.adapter import Modality, SamplingParams
from emorl.models.registry import load_adapter
from emorl.prompting import PromptBuilder
from emorl.recipes.prompts import PromptSpec
from emorl.recipes.rewards import get_recipe
from emorl.rl.grpo import group_advantages
from emorl.rl.rollout import rollout
from emorl.rl.trainer import Row, policy_update, train_grpo

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def judge_recipe(monkeypatch):
    """A recipe with a model-free 'judge' component that varies within groups (a deterministic
    function of the text), so advantages are non-zero even for a random-init policy."""
    from emorl.recipes import rewards

    monkeypatch.setitem(
        rewards.RECIPES, "judge-test", rewards.RewardRecipe("tags", {"accuracy": 1.0, "format": 1.0, "judge": 1.0})
    )


def text_judge(groups):
    return [[{"judge": (sum(map(ord, t)) % 7) / 6} for t in g.texts] for g in groups]


def _cfg(tmp_path, **grpo) -> RunConfig:
    cfg = RunConfig(out=str(tmp_path), seed=7)
    cfg.prompt.recipe = "judge-test"
    cfg.data.sampling, cfg.data.num_frames, cfg.data.frame_size = "fixed", 8, 56
    cfg.sampling.max_new_tokens = 6
    g = cfg.grpo
    g.steps, g.prompts_per_step, g.completions_per_prompt, g.micro_batch_rows = 4, 2, 4, 8
    g.lr, g.beta, g.sample_every = 1e-3, 0.04, 0
    for k, v in grpo.items():
        setattr(g, k, v)
    return cfg


def _run(tiny_model_dir, clips, out, cfg, **kw):
    torch.manual_seed(cfg.seed)
    adapter = load_adapter(tiny_model_dir, dtype=cfg.model.dtype)
    modality = Modality.AV if Modality.AV in adapter.modalities else Modality.VIDEO
    builder = PromptBuilder(adapter, PromptSpec(), num_frames=4, frame_size=56, modality=modality)
    samples = [
        Sample(f"s{i}", str(p), lab, "dfew", "train")
        for i, (p, lab) in enumerate(zip(clips, ["happy", "sad", "angry"]))
    ]
    kw.setdefault("extra_rewards", text_judge)
    res = train_grpo(cfg, adapter, builder, samples, out, progress=False, **kw)
    return adapter, res


def test_resume_is_exact(model_dir, clips, tmp_path):
    """4 steps straight == 2 steps + resume + 2 steps (identical parameters), on every family."""
    a, _ = _run(model_dir, clips, tmp_path / "a", _cfg(tmp_path, save_every=2))
    _, first = _run(model_dir, clips, tmp_path / "b", _cfg(tmp_path, save_every=2), stop_after=2)
    assert first["interrupted"] and first["steps"] == 2
    assert json.loads((tmp_path / "b" / "checkpoints" / "latest.json").read_text())["step"] == 2
    b, second = _run(model_dir, clips, tmp_path / "b", _cfg(tmp_path, save_every=2, resume=True))
    assert second["steps"] == 4 and not second["interrupted"]
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    base = load_adapter(model_dir).model.state_dict()
    assert sum(not torch.equal(base[k], sa[k]) for k in sa) > 10  # training really moved the weights
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]  # the log is continued, not duplicated


def test_bf16_master_weights_keep_small_updates_and_resume_exactly(tiny_model_dir, clips, tmp_path):
    """bf16 weights at lr 1e-6 (R1-Omni's): updating them directly changes almost nothing; with
    float32 master weights (model.master_weights=auto, the default) the optimizer's masters move,
    and 2 steps + resume + 2 steps == 4 steps bit for bit (the masters are in the checkpoint)."""

    def cfg(**kw):
        c = _cfg(tmp_path, lr=1e-6, save_every=2, **kw)
        c.model.dtype = "bfloat16"
        return c

    ad = load_adapter(tiny_model_dir, dtype="bfloat16")
    base = ad.model.state_dict()
    trainable = sorted(_names(ad, [ad.text_model(), ad.lm_head()]))

    def changed(sd):  # fraction of trainable weight entries that differ from the start
        return sum(int((sd[k].float() != base[k].float()).sum()) for k in trainable) / sum(
            base[k].numel() for k in trainable
        )

    none = cfg()
    none.model.master_weights = "none"
    lost, _ = _run(tiny_model_dir, clips, tmp_path / "none", none, stop_after=2)
    assert changed(lost.model.state_dict()) < 0.1  # the bf16 weights barely move: updates round away

    a, _ = _run(tiny_model_dir, clips, tmp_path / "a", cfg())
    _run(tiny_model_dir, clips, tmp_path / "b", cfg(), stop_after=2)
    state = torch.load(tmp_path / "b" / "checkpoints" / "step-000002" / "trainer_state.pt", weights_only=False)
    masters = state["optimizer"]["master_weights"]
    names = [n for n, p in a.model.named_parameters() if p.requires_grad]
    assert len(masters) == len(names) and all(m.dtype == torch.float32 for m in masters)
    moved = sum(int((m != base[n].float()).sum()) for m, n in zip(masters, names) if n in base)
    assert moved / sum(base[n].numel() for n in names if n in base) > 0.5  # the updates were kept
    b, second = _run(tiny_model_dir, clips, tmp_path / "b", cfg(resume=True))
    assert second["steps"] == 4
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(sa[k].dtype == torch.bfloat16 and torch.equal(sa[k], sb[k]) for k in trainable)


def test_resume_without_checkpoint_is_a_clear_error(tiny_model_dir, clips, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume from"):
        _run(tiny_model_dir, clips, tmp_path / "none", _cfg(tmp_path, resume=True))


def test_micro_batch_invariance(tiny_model_dir, clips, tmp_path):
    """One micro-batch of 8 rows and 8 accumulated micro-batches of 1 row give the same gradients
    and the same SGD update (max abs difference <= 1e-6, fp32). (Adam's first step divides by
    |g|, so for near-zero gradient entries it amplifies float noise; gradient equality is the
    invariant that matters.)"""
    torch.manual_seed(0)
    adapter = load_adapter(tiny_model_dir)
    builder = PromptBuilder(adapter, PromptSpec(), num_frames=4, frame_size=56)
    samples = [Sample(f"s{i}", str(p), "sad", "dfew", "train") for i, p in enumerate(clips[:2])]
    groups = rollout(
        adapter,
        samples,
        [builder.prompt(s) for s in samples],
        4,
        SamplingParams(max_new_tokens=8),
        get_recipe("r1-omni"),
    )
    adv = group_advantages(torch.randn(2, 4), "group")  # random advantages: every row matters
    for grp, a in zip(groups, adv):
        grp.advantages = a
        grp.completions = [c[: 3 + j] for j, c in enumerate(grp.completions)]  # ragged lengths 3..6
    rows = [Row(grp, j) for grp in groups for j in range(4)]
    assert len({len(r.completion) for r in rows}) > 1  # ragged lengths exercise the normalisation
    params = [p for p in adapter.model.parameters() if p.requires_grad]
    start = [p.detach().clone() for p in params]
    results = []
    for mb in (8, 1):
        for lt in ("grpo", "dapo", "dr_grpo", "gspo"):
            cfg = _cfg(tmp_path, micro_batch_rows=mb, beta=0.0, loss_type=lt)
            for p, s0 in zip(params, start):
                p.data.copy_(s0)
                p.grad = None
            policy_update(adapter, rows, cfg, lambda loss: loss.backward(), temperature=1.0)
            grads = [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in params]
            opt = torch.optim.SGD(params, lr=1.0)
            opt.step()
            results.append((mb, lt, grads, [p.detach().clone() for p in params]))
    by = {(mb, lt): (g, w) for mb, lt, g, w in results}
    for lt in ("grpo", "dapo", "dr_grpo", "gspo"):
        g8, w8 = by[(8, lt)]
        g1, w1 = by[(1, lt)]
        assert max(float((a - b).abs().max()) for a, b in zip(g8, g1)) <= 1e-6, lt
        assert max(float((a - b).abs().max()) for a, b in zip(w8, w1)) <= 1e-6, lt
        assert max(float(a.abs().max()) for a in g8) > 1e-4  # gradients are not trivially zero


def test_non_finite_rewards_skip_then_stop(tiny_model_dir, clips, tmp_path, monkeypatch):
    """A model-based component that returns NaN: each step is skipped with a logged reason, and
    the run stops with a clear message after max_nonfinite_steps in a row."""
    from emorl.recipes import rewards

    monkeypatch.setitem(
        rewards.RECIPES, "nan-test", rewards.RewardRecipe("tags", {"accuracy": 1.0, "format": 1.0, "judge": 1.0})
    )

    def judge(groups):
        return [[{"judge": float("nan")} for _ in g.texts] for g in groups]

    cfg = _cfg(tmp_path, max_nonfinite_steps=3)
    cfg.prompt.recipe = "nan-test"
    with pytest.raises(RuntimeError, match="3 consecutive steps with non-finite values"):
        _run(tiny_model_dir, clips, tmp_path / "nan", cfg, extra_rewards=judge)
    rows = [json.loads(line) for line in (tmp_path / "nan" / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped"] for r in rows] == ["non-finite reward"] * 2


def nan_loss_on_first_call(real):
    """``policy_loss`` whose first call returns a NaN loss (the rest: the real one)."""
    calls = {"n": 0}

    def loss(*args, **kwargs):
        out = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 1:
            out.loss = out.loss * float("nan")
        return out

    return loss


def test_non_finite_loss_skips_the_step_and_leaves_the_weights(tiny_model_dir, clips, tmp_path, monkeypatch):
    """A NaN policy loss: the backward still runs (so that other processes are not left waiting),
    its gradients are poisoned, and the gradient-norm check skips the step with the loss named as
    the cause; the weights are untouched by that step and the next step trains normally."""
    from emorl.rl import trainer

    monkeypatch.setattr(trainer, "policy_loss", nan_loss_on_first_call(trainer.policy_loss))
    start = load_adapter(tiny_model_dir).model.state_dict()
    cfg = _cfg(tmp_path, steps=1, beta=0.0)
    adapter, _ = _run(tiny_model_dir, clips, tmp_path / "nan", cfg)
    rows = [json.loads(line) for line in (tmp_path / "nan" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["skipped"].startswith("non-finite loss (nan) on this process, so non-finite gradient norm")
    assert all(torch.equal(v, start[k]) for k, v in adapter.model.state_dict().items())
    adapter, _ = _run(tiny_model_dir, clips, tmp_path / "ok", _cfg(tmp_path, steps=1, beta=0.0))
    assert any(not torch.equal(v, start[k]) for k, v in adapter.model.state_dict().items())


def test_sigint_saves_a_checkpoint_and_resume_finishes(tiny_model_dir, clips, tmp_path):
    cfg = _cfg(tmp_path, steps=4)
    seen = {"n": 0}

    def interrupt_on_second_step(groups):
        seen["n"] += 1
        if seen["n"] == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return text_judge(groups)

    _, res = _run(tiny_model_dir, clips, tmp_path / "sig", cfg, extra_rewards=interrupt_on_second_step)
    assert res["interrupted"] and res["steps"] == 2
    assert (tmp_path / "sig" / "checkpoints" / "step-000002" / "trainer_state.pt").is_file()
    assert not (tmp_path / "sig" / "model").exists()
    _, res2 = _run(tiny_model_dir, clips, tmp_path / "sig", _cfg(tmp_path, steps=4, resume=True))
    assert len(res2["history"]) == 2
    assert res2["steps"] == 4 and (tmp_path / "sig" / "model" / "config.json").is_file()


def _names(adapter, modules) -> set[str]:
    """State-dict names of the parameters of ``modules`` (parts of the adapter's model)."""
    ids = {id(p) for m in modules for p in m.parameters()}
    return {n for n, p in adapter.model.named_parameters() if id(p) in ids}


def test_lora_trains_only_adapters_and_saves_merged(model_dir, clips, tmp_path):
    """LoRA on the text model's projections, on every family (Qwen3-Omni: attention only, its
    experts are fused tensors): the merged model differs from the start in the text model only."""
    cfg = _cfg(tmp_path, steps=2, lr=1e-2)
    cfg.model.lora_rank = 4
    start = load_adapter(model_dir)
    before = start.model.state_dict()
    _run(model_dir, clips, tmp_path / "lora", cfg)
    assert (tmp_path / "lora" / "adapter" / "adapter_config.json").is_file()
    merged = load_adapter(tmp_path / "lora" / "model").model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], merged[k])]
    assert changed and set(changed) <= _names(start, [start.text_model()])
    assert not set(changed) & _names(start, start.encoder_modules())


def test_lora_targets_name_the_llms_layers(tiny_qwen3_dir):
    from emorl.train.setup import lora_modules

    adapter = load_adapter(tiny_qwen3_dir)
    names = lora_modules(adapter, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj"])
    assert names and all(".language_model." in n for n in names)  # the audio tower's q/k/v_proj excluded
    assert {n.rpartition(".")[2] for n in names} == {"q_proj", "k_proj", "v_proj", "o_proj"}  # experts are fused
    with pytest.raises(ValueError, match="model.lora_targets='qproj': no linear layer of the LLM"):
        lora_modules(adapter, ["qproj"])


@pytest.mark.timeout(900)  # torchrun subprocess with its own 600 s limit
def test_two_processes_stay_in_sync(tiny_model_dir, clips, tmp_path):
    """torchrun (the launcher `accelerate launch` uses) on 2 CPU processes (gloo): each process
    trains on its share of the prompts, gradients are all-reduced, and both end with the same
    parameters (the trainer checks and records it; a divergence raises)."""
    from emorl.cli import main

    m = tmp_path / "train.jsonl"
    labels = ["happy", "sad"] * 3
    write_manifest(
        m, [Sample(f"s{i}", str(p), lab, "dfew", "train") for i, (p, lab) in enumerate(zip(clips * 2, labels))]
    )
    # a short label SFT first, so answers vary and GRPO has non-zero advantages to apply
    sft = tmp_path / "sft"
    assert (
        main(
            [
                "sft",
                f"model.path={tiny_model_dir}",
                f"data.train={m}",
                f"out={sft}",
                "data.sampling=fixed",
                "data.frame_size=56",
                "data.num_frames=4",
                "sft.target=label",
                "sft.epochs=40",
                "sft.lr=3e-3",
                "sft.samples_per_step=3",
            ]
        )
        == 0
    )
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29531",
        "-m",
        "emorl.cli",
        "train",
        f"model.path={sft / 'model'}",
        f"data.train={m}",
        f"out={out}",
        "data.sampling=fixed",
        "data.frame_size=56",
        "data.num_frames=4",
        "grpo.steps=3",
        "grpo.prompts_per_step=2",
        "grpo.completions_per_prompt=8",
        "grpo.micro_batch_rows=4",
        "grpo.lr=1e-3",
        "sampling.max_new_tokens=6",
        "grpo.save_every=2",
        "grpo.sample_every=0",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 process(es)" in proc.stdout
    sync = json.loads((out / "sync_check.json").read_text())
    assert sync == {"processes": 2, "params_in_sync": True, "step": 3}
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("grad_norm", 0) > 0 for r in rows)
    start = load_adapter(sft / "model").model.state_dict()
    trained = load_adapter(out / "model").model.state_dict()
    assert any(not torch.equal(start[k], trained[k]) for k in start)


@pytest.mark.timeout(900)  # torchrun subprocess with its own 600 s limit
def test_sft_two_processes_match_one(tiny_model_dir, clips, tmp_path):
    """`emorl sft` on 2 CPU processes (torchrun, gloo) splits each batch between them and sums the
    gradients, so two steps give the parameters one process gets (float summation order aside)."""
    from emorl.cli import main

    m = tmp_path / "train.jsonl"
    write_manifest(
        m,
        [
            Sample(f"s{i}", str(p), lab, "dfew", "train")
            for i, (p, lab) in enumerate(zip(clips * 2, ["happy", "sad", "angry", "fear"]))
        ],
    )
    common = [
        f"model.path={tiny_model_dir}",
        f"data.train={m}",
        "data.sampling=fixed",
        "data.frame_size=56",
        "data.num_frames=4",
        "sft.target=label",
        "sft.epochs=2",
        "sft.lr=1e-3",
        "sft.samples_per_step=4",
        "sft.warmup_ratio=0",
    ]
    assert main(["sft", *common, f"out={tmp_path / 'one'}"]) == 0
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29533",
        "-m",
        "emorl.cli",
        "sft",
        *common,
        f"out={tmp_path / 'two'}",
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, check=False, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    one = [json.loads(x) for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    two = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [r["tokens"] for r in one] == [r["tokens"] for r in two] and len(one) == 2
    assert [r["loss"] for r in two] == pytest.approx([r["loss"] for r in one], rel=1e-5)
    start = load_adapter(tiny_model_dir).model.state_dict()
    a = load_adapter(tmp_path / "one" / "model").model.state_dict()
    b = load_adapter(tmp_path / "two" / "model").model.state_dict()
    assert any(not torch.equal(start[k], a[k]) for k in a)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5


def test_sampling_decode_key(tiny_model_dir, clips, tmp_path):
    """sampling.decode reaches the rollout (the group decoder, auto's choice on CPU for groups,
    trains like the growing-cache one: same tokens, so the same parameters after a step) and a bad
    value is a clear start-up error."""
    runs = []
    for mode in ("dynamic", "static"):
        cfg = _cfg(tmp_path, steps=1)
        cfg.sampling.decode = mode
        adapter, _ = _run(tiny_model_dir, clips, tmp_path / mode, cfg)
        assert adapter.decode_mode == mode
        runs.append(adapter.model.state_dict())
    assert all(torch.allclose(runs[0][k], runs[1][k], atol=1e-6) for k in runs[0])
    bad = _cfg(tmp_path, steps=1)
    bad.sampling.decode = "fast"
    with pytest.raises(ValueError, match="sampling.decode must be one of auto, dynamic, static, graph, got 'fast'"):
        _run(tiny_model_dir, clips, tmp_path / "bad", bad)
