"""SFT on the shared training machinery: micro-batches and length grouping give the one-batch loss
and gradients, activation checkpointing changes nothing but memory, LoRA is merged on save, bf16
trains through float32 masters and resumes bit for bit after SIGTERM, a killed run (SIGKILL)
resumes to the straight run's weights, a non-finite loss skips the step, and validation keeps the
best model."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from emorl.config import RunConfig
from emorl.data.manifest import Sample, write_manifest
from emorl.models.adapter import Modality
from emorl.models.registry import load_adapter
from emorl.prompting import PromptBuilder
from emorl.recipes.prompts import PromptSpec
from emorl.sft import train_sft
from emorl.sft.batch import Item, sft_loss, sft_micro_batches, target_ids
from emorl.train.setup import setup_model

pytestmark = pytest.mark.e2e

LABELS = ["happy", "sad", "angry", "fear", "happy", "sad"]
CUES = [
    "the mouth curves up",
    "the eyes look down and the voice is soft",
    "the brows are pulled down",
    "the eyes are wide and the voice shakes",
    "a smile and a rising voice",
    "slow speech and a sigh",
]


def samples_of(clips, n=6):
    """``n`` samples over the clips, each with a reasoning trace of its own length."""
    return [
        Sample(
            f"s{i}",
            str(clips[i % len(clips)]),
            LABELS[i],
            "dfew",
            "train",
            meta={"trace": f"<think>{' '.join([CUES[i]] * (1 + i % 3))}.</think><answer>{LABELS[i]}</answer>"},
        )
        for i in range(n)
    ]


def cfg_of(tmp_path, **sft) -> RunConfig:
    cfg = RunConfig(out=str(tmp_path), seed=7)
    cfg.data.sampling, cfg.data.frame_size, cfg.data.num_frames = "fixed", 56, 4
    c = cfg.sft
    c.target, c.epochs, c.lr, c.samples_per_step, c.micro_batch_samples, c.warmup_ratio = "trace", 2, 1e-3, 3, 3, 0
    for k, v in sft.items():
        setattr(c, k, v)
    return cfg


def builder_of(adapter):
    return PromptBuilder(adapter, PromptSpec(), num_frames=4, frame_size=56, modality=Modality.AV)


def items_of(adapter, samples):
    b = builder_of(adapter)
    return [Item(s, b.prompt(s), target_ids(adapter, s.meta["trace"])) for s in samples]


def grads_of(adapter, micro, n_tok):
    params = [p for p in adapter.model.parameters() if p.requires_grad]
    for p in params:
        p.grad = None
    st = sft_loss(adapter, micro, torch.Tensor.backward, norm_tokens=n_tok)
    return st["loss"], [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in params]


def test_micro_batches_and_length_grouping_give_the_one_batch_loss(tiny_model_dir, clips):
    """The same samples as one batch, as 6 micro-batches of one sample (each scored unpadded) and as
    3 length-grouped micro-batches of 2: the same loss and gradients (fp32, max abs difference
    <= 1e-6), because every micro-batch is normalised by the step's token count."""
    torch.manual_seed(0)
    adapter = load_adapter(tiny_model_dir)
    items = items_of(adapter, samples_of(clips))
    assert len({it.length for it in items}) > 2  # ragged lengths: grouping has something to do
    n_tok = sum(len(it.target) for it in items)
    one = sft_micro_batches(items, 6, by_length=False)
    singles = sft_micro_batches(items, 1, by_length=False)
    grouped = sft_micro_batches(items, 2, by_length=True)
    assert [len(mb) for mb in (one, singles, grouped)] == [1, 6, 3]
    lengths = [it.length for mb in grouped for it in mb]
    assert lengths == sorted(lengths, reverse=True)  # similar lengths share a micro-batch
    loss1, g1 = grads_of(adapter, one, n_tok)
    for micro in (singles, grouped):
        loss, g = grads_of(adapter, micro, n_tok)
        assert loss == pytest.approx(loss1, abs=1e-6)
        assert max(float((a - b).abs().max()) for a, b in zip(g1, g)) <= 1e-6
    assert max(float(a.abs().max()) for a in g1) > 1e-4  # not trivially zero


def test_gradient_checkpointing_changes_nothing_but_memory(tiny_model_dir, clips):
    """With frozen towers, activation checkpointing gives the same loss and gradients (max abs
    difference <= 1e-6), and the frozen towers get no gradient."""
    cfg = cfg_of(None)
    cfg.model.freeze_vision = cfg.model.freeze_audio = True
    results = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        adapter = load_adapter(tiny_model_dir)
        setup_model(adapter, cfg.model, gradient_checkpointing=ckpt)
        adapter.model.train()
        items = items_of(adapter, samples_of(clips, 4))
        results.append(grads_of(adapter, sft_micro_batches(items, 2), sum(len(it.target) for it in items)))
        towers = [p for t in adapter.towers().values() for p in t.parameters()]
        assert towers and all(not p.requires_grad and p.grad is None for p in towers)
    (l0, g0), (l1, g1) = results
    assert l1 == pytest.approx(l0, abs=1e-6)
    assert max(float((a - b).abs().max()) for a, b in zip(g0, g1)) <= 1e-6


def _run(model_dir, clips, out, cfg, **kw):
    torch.manual_seed(cfg.seed)
    adapter = load_adapter(model_dir, dtype=cfg.model.dtype)
    return adapter, train_sft(cfg, adapter, builder_of(adapter), samples_of(clips), out, progress=False, **kw)


def _names(adapter, modules) -> set[str]:
    ids = {id(p) for m in modules for p in m.parameters()}
    return {n for n, p in adapter.model.named_parameters() if id(p) in ids}


def test_lora_sft_saves_the_merged_model_and_the_adapter(tiny_model_dir, clips, tmp_path):
    cfg = cfg_of(tmp_path, lr=1e-2)
    cfg.model.lora_rank = 4
    _, res = _run(tiny_model_dir, clips, tmp_path / "lora", cfg)
    assert res["steps"] == 4 and res["last_loss"] < res["first_loss"]
    assert (tmp_path / "lora" / "adapter" / "adapter_config.json").is_file()
    start = load_adapter(tiny_model_dir)
    before = start.model.state_dict()
    merged = load_adapter(tmp_path / "lora" / "model").model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], merged[k])]
    assert changed and set(changed) <= _names(start, [start.text_model()])  # only the LLM's projections


def test_bf16_masters_and_resume_after_sigterm_are_exact(tiny_model_dir, clips, tmp_path, monkeypatch):
    """bf16 at a small lr trains through float32 master weights (in the checkpoint); SIGTERM in step 2
    finishes the step, writes a checkpoint and stops; resuming gives the 4-step run's weights bit for
    bit, and the log continues without duplicates."""
    from emorl.sft import loop

    def cfg():
        c = cfg_of(tmp_path, lr=1e-5)
        c.model.dtype = "bfloat16"
        return c

    a, _ = _run(tiny_model_dir, clips, tmp_path / "a", cfg())
    real, calls = loop.sft_loss, {"n": 0}

    def term_in_step_2(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "sft_loss", term_in_step_2)
    _, first = _run(tiny_model_dir, clips, tmp_path / "b", cfg())
    monkeypatch.setattr(loop, "sft_loss", real)
    assert first["interrupted"] and first["steps"] == 2 and not (tmp_path / "b" / "model").exists()
    state = torch.load(tmp_path / "b" / "checkpoints" / "step-000002" / "trainer_state.pt", weights_only=False)
    assert all(m.dtype == torch.float32 for m in state["optimizer"]["master_weights"])
    resumed = cfg()
    resumed.sft.resume = True
    b, second = _run(tiny_model_dir, clips, tmp_path / "b", resumed)
    assert second["steps"] == 4 and not second["interrupted"]
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(sa[k].dtype == torch.bfloat16 or not sa[k].is_floating_point() for k in sa)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    start = load_adapter(tiny_model_dir, dtype="bfloat16").model.state_dict()
    assert sum(not torch.equal(start[k], sa[k]) for k in sa) > 10  # lr 1e-5 moved bf16 weights: masters kept it
    steps = [json.loads(x)["step"] for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


@pytest.mark.timeout(600)
def test_a_killed_run_resumes_to_the_straight_runs_weights(tiny_model_dir, clips, tmp_path):
    """`emorl sft` with sft.save_every=1, killed with SIGKILL once a checkpoint exists (wherever it
    is then: a checkpoint is written to a temporary folder and renamed), then run again with
    sft.resume=true: the final weights equal an uninterrupted run's bit for bit (CPU, fp32)."""
    from safetensors.torch import load_file

    from emorl.cli import main

    m = tmp_path / "train.jsonl"
    write_manifest(m, samples_of(clips))
    common = [
        f"model.path={tiny_model_dir}",
        f"data.train={m}",
        "data.sampling=fixed",
        "data.frame_size=56",
        "data.num_frames=4",
        "sft.target=trace",
        "sft.epochs=4",
        "sft.lr=1e-3",
        "sft.samples_per_step=3",
        "sft.micro_batch_samples=1",
        "sft.warmup_ratio=0",
        "sft.save_every=1",
        "seed=7",
    ]
    # one thread everywhere: the killed run is a subprocess with OMP_NUM_THREADS=1, and a float sum
    # split over another number of threads is another sum (bit equality needs the same order)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["sft", *common, f"out={tmp_path / 'straight'}"]) == 0
    finally:
        torch.set_num_threads(threads)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "emorl.cli", "sft", *common, f"out={killed}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    latest = killed / "checkpoints" / "latest.json"
    deadline = time.monotonic() + 400
    while not latest.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert latest.is_file(), proc.stderr.read().decode()[-2000:]
    step = json.loads(latest.read_text())["step"]
    assert 1 <= step < 8 and not (killed / "model").exists()
    torch.set_num_threads(1)
    try:
        assert main(["sft", *common, f"out={killed}", "sft.resume=true"]) == 0
    finally:
        torch.set_num_threads(threads)
    a = load_file(str(tmp_path / "straight" / "model" / "model.safetensors"))
    b = load_file(str(killed / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(x)["step"] for x in (killed / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))


def test_a_non_finite_loss_skips_the_step(tiny_model_dir, clips, tmp_path, monkeypatch):
    from emorl.sft import loop

    real, calls = loop.sft_loss, {"n": 0}

    def nan_first(adapter, micro, backward, *, norm_tokens):
        calls["n"] += 1
        return real(adapter, micro, backward, norm_tokens=norm_tokens * (float("nan") if calls["n"] == 1 else 1))

    monkeypatch.setattr(loop, "sft_loss", nan_first)
    start = load_adapter(tiny_model_dir).model.state_dict()
    adapter, _ = _run(tiny_model_dir, clips, tmp_path / "nan", cfg_of(tmp_path, epochs=0.5))  # 1 step
    rows = [json.loads(x) for x in (tmp_path / "nan" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["skipped"].startswith("non-finite loss (nan) on this process, so non-finite gradient norm")
    assert all(torch.equal(v, start[k]) for k, v in adapter.model.state_dict().items())


def test_validation_keeps_the_best_model(tiny_model_dir, clips, tmp_path):
    """sft.val scored every step: val/loss (teacher-forced) and, with sft.val_generate, WAR / UAR /
    format of greedy answers; best.json names the step of the lowest val/loss and best_model/ is
    a loadable model of that step."""
    cfg = cfg_of(tmp_path, val="val.jsonl", val_every=1, val_generate=True, lr=3e-3)
    cfg.eval.max_new_tokens, cfg.eval.batch_size = 6, 4
    val = [
        Sample(f"v{i}", str(c), lab, "dfew", "val", meta={"trace": f"<think>{cue}.</think><answer>{lab}</answer>"})
        for i, (c, lab, cue) in enumerate(zip(clips, ["happy", "sad", "angry"], CUES))
    ]
    _, res = _run(tiny_model_dir, clips, tmp_path / "v", cfg, val_samples=val)
    rows = [json.loads(x) for x in (tmp_path / "v" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all({"val/loss", "val/war", "val/uar", "val/format_rate"} <= r.keys() for r in rows)
    best = json.loads((tmp_path / "v" / "best.json").read_text())
    losses = [r["val/loss"] for r in rows]
    assert best == {"step": 1 + losses.index(min(losses)), "metric": "loss", "value": min(losses)} == res["best"]
    assert losses[-1] < losses[0]  # the traces are learnt
    assert (tmp_path / "v" / "best_model" / "config.json").is_file()
    with pytest.raises(ValueError, match="sft.val_metric=uar is measured on generated answers"):
        _run(tiny_model_dir, clips, tmp_path / "x", cfg_of(tmp_path, val="v.jsonl", val_metric="uar"), val_samples=val)
