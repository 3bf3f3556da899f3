"""Memory and time of emorl's own training steps (GRPO and cold-start SFT) under the memory levers
of docs/scaling.md, on random weights of a released thinker shape.

Each configuration runs its loop's own step for ``--steps`` steps in its own process, so the
allocator starts clean: GRPO configurations ``emorl.rl.trainer._step`` (rollout, rewards,
advantages, reference pass, policy update, AdamW step), SFT configurations (``sft_*``)
``emorl.sft.loop._step`` (a step of R1-Omni's cold start: ``sft_samples`` samples in micro-batches
of ``sft_micro`` (R1-Omni: a global batch of 16, 2 per GPU), forward and backward of each, one
AdamW step). The model is set up by the loops' own ``emorl.train.Session`` (freezing, LoRA,
activation checkpointing, master weights, the strategy); only the data is synthetic: the prompts of
``grpo_step.py`` (video with audio interleaved, random pixels and log-mels), GRPO completions of
exactly ``answer_tokens`` tokens (EOS suppressed), SFT targets of ``sft_target_tokens`` random
tokens. GRPO rewards are the r1-omni components (0 on random tokens) plus a random component passed
as a model-based reward, so that the advantages are not all zero and the step really changes the
weights (checked, as for SFT).

``sft_zero3_offload`` is DeepSpeed ZeRO-3 with parameters and optimizer states offloaded to the
CPU, in one process (the benchmark starts a one-process group itself; ``emorl sft`` shards only
with several processes).

Reported per configuration (GB = 1e9 bytes): the memory held after set-up (weights, the reference
copy), the peak of each phase of each step, what stays allocated after each step (weights +
AdamW states; gradients are freed by ``zero_grad(set_to_none=True)``) and each step's seconds. On
CUDA these are ``memory_allocated`` / ``max_memory_allocated``; on CPU the process RSS (a smoke
test, not a figure to quote). A configuration that runs out of memory is reported with the phase
where it did.

The whole trainer step (issue 22; helpers in ``train_step.py``): every GRPO step also reports the
trainer's own ``step_s`` and phase seconds (its ``time/*``: encode, rollout, reward, advantage,
reference, update; EMO-R3's reflection taken out of ``reward`` as its own phase), the batch's
tokens as verl / EasyR1 count them (``prompt_tokens`` = every rollout row's prompt, so each prompt
once per completion; ``completion_tokens``; ``tokens_total``; ``tokens_per_s_per_gpu`` = total /
step_s / GPUs), and after the steps one checkpoint written through the Session's atomic
``save_checkpoint`` (seconds, bytes). The JSON's ``reference`` holds EasyR1's published figure
(1,800 tok/s/GPU, Qwen2.5-VL-3B GRPO on 8x H100) for the same accounting. ``emo_r3_full`` /
``emo_r3_lora`` run EMO-R3's reward with its reflection passes, the policy as the judge.
``--family qwen2.5-vl`` builds that family with its real processor (its ``3b`` shape is
Qwen2.5-VL-3B, the model of EasyR1's figure).

    python benchmarks/train_memory.py --shape tiny --device cpu --out mem.json
    python benchmarks/train_memory.py --shape tiny --device cpu --configs full,lora,emo_r3_full --out step.json
    python benchmarks/train_memory.py --shape 3b --device cuda --family qwen2.5-vl --steps 3 \
        --configs lora,emo_r3_lora,full,emo_r3_full --out train_step_3b_vl.json
    python benchmarks/train_memory.py --shape 7b --device cuda --configs full,full_beta0,lora --out mem_7b.json
    python benchmarks/train_memory.py --shape 7b --device cuda --configs sft_lora,sft_lora_nockpt,sft_full --out sft_7b.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import grpo_step as gs
import train_step as ts

from emorl.config import RunConfig, load_config
from emorl.data.manifest import Sample
from emorl.models import registry
from emorl.models.adapter import Modality, SamplingParams
from emorl.models.qwen_omni import QwenOmniAdapter
from emorl.recipes.rewards import RewardRecipe, recipe_for
from emorl.rl import trainer
from emorl.rl.reflection import make_reflection
from emorl.rl.trainer import BatchPlan
from emorl.sft import loop as sft_loop
from emorl.sft.loop import SFTPlan
from emorl.train.session import Knobs, Session
from emorl.train_utils import PhaseTimer

EMO_R3 = [
    "prompt.recipe=emo-r3",
    "reflection.enabled=true",
    "reflection.grounding=joint",
    "reflection.temperature=0.6",
    "reflection.top_p=0.95",
    "reflection.batch_size=64",
    "grpo.beta=0.01",
    "grpo.kl_estimator=low_var_kl",
    "grpo.loss_type=dapo",
    "grpo.epsilon_low=0.2",
    "grpo.epsilon_high=0.3",
    "grpo.dual_clip_c=3.0",
]
# the levers of docs/scaling.md as config overrides (encoders frozen as in R1-Omni in all of them)
CONFIGS = {
    # GRPO: full fine-tune of the LLM with float32 master weights (model.master_weights=auto), reference copy
    "full": ["grpo.beta=0.04"],
    "full_beta0": ["grpo.beta=0"],  # no reference model
    "full_refcpu": ["grpo.beta=0.04", "model.ref_device=cpu"],  # reference off-loaded (its pass runs on the CPU)
    # AdamW on the bf16 weights themselves (model.master_weights=none: small updates round away)
    "full_bf16": ["grpo.beta=0.04", "model.master_weights=none"],
    "full_beta0_bf16": ["grpo.beta=0", "model.master_weights=none"],
    "lora": ["grpo.beta=0.04", "model.lora_rank=64", "model.lora_alpha=128"],  # reference = adapters disabled
    # EMO-R3 (configs/emo-r3*.yaml): its reward (0.8 accuracy + 0.1 coherence + 0.1 grounding + 0.1 format)
    # with the reflection's passes, the policy as the judge; its loss (DAPO, clip 0.2/0.3, dual clip 3, KL 0.01)
    "emo_r3_full": EMO_R3,
    "emo_r3_lora": [*EMO_R3, "model.lora_rank=64", "model.lora_alpha=128"],
    # SFT (R1-Omni's cold start), with and without activation checkpointing
    "sft_full": ["sft.gradient_checkpointing=true"],  # float32 master weights
    "sft_full_nockpt": ["sft.gradient_checkpointing=false"],
    "sft_zero3_offload": ["sft.gradient_checkpointing=true"],  # ZeRO-3, parameters and optimizer on the CPU
    "sft_lora": ["sft.gradient_checkpointing=true", "model.lora_rank=64", "model.lora_alpha=128"],
    "sft_lora_nockpt": ["sft.gradient_checkpointing=false", "model.lora_rank=64", "model.lora_alpha=128"],
}
SFT_WORKLOAD = {  # samples per step, per micro-batch, target tokens (R1-Omni: global batch 16, 2 per GPU)
    "7b": (16, 2, 256),
    "3b": (16, 2, 256),
    "small": (4, 2, 32),
    "tiny": (4, 2, 8),
}
GB = 1e9


class Memory:
    """Current and peak memory: CUDA allocator statistics, else the process RSS (sampled)."""

    def __init__(self, device: torch.device):
        self.device = device

    def now(self) -> int:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            return torch.cuda.memory_allocated()
        return gs.PeakMemory(self.device)._rss()

    @contextmanager
    def peak(self, into: dict, key: str):
        """``into[key]`` = peak bytes while the block runs (a larger earlier value is kept)."""
        with gs.PeakMemory(self.device) as pm:
            yield
        into[key] = max(into.get(key, 0), pm.peak_bytes)


def _timer_with_memory(mem: Memory, record: dict):
    """A PhaseTimer whose phases also record their peak memory into ``record``."""

    class MemoryPhaseTimer(PhaseTimer):
        @contextmanager
        def __call__(self, name: str):
            record["_phase"] = name  # the phase an out-of-memory error is attributed to
            with super().__call__(name), mem.peak(record, name):
                yield

    return MemoryPhaseTimer


RECIPE = RewardRecipe("tags", {"accuracy": 1.0, "format": 1.0, "random": 1.0})


class _Builder:
    """What ``_step`` (and the reflection) need from a PromptBuilder: prompts and clips by sample
    (pre-built, synthetic)."""

    def __init__(self, prompts: dict, clips: dict | None = None):
        self.prompts, self.clips = prompts, clips or {}
        self.substitutions: dict = {}

    def prompt(self, s: Sample, modality=None):
        return self.prompts[s.id]

    def clip(self, s: Sample, modality=None):
        return self.clips[s.id]


def _model(args, device, dtype):
    """The model, its adapter and the frame side of ``args.family``: qwen2.5-omni as grpo_step.py's
    default (synthetic prompts, a stub tokenizer), another family with its real processor."""
    torch.manual_seed(args.seed)
    shape = gs.SHAPES[args.shape]
    if args.family != "qwen2.5-omni":
        model, adapter, frame_size = ts.family_model(args, shape, dtype, device)
    else:
        from transformers import Qwen2_5OmniThinkerForConditionalGeneration

        with torch.device(device):
            model = Qwen2_5OmniThinkerForConditionalGeneration._from_config(
                gs.build_config(shape), dtype=dtype, attn_implementation="sdpa"
            )
        adapter, frame_size = QwenOmniAdapter(model, gs._Processor(shape.vocab), device=device), None
    model.eval()
    adapter.suppress = sorted(set(adapter.suppress) | {adapter.eos_id})  # full-length completions
    return model, adapter, frame_size


def _prompts(model, adapter, d: dict, n: int, seed: int, family: str, frame_size) -> tuple[list, dict, dict]:
    """``n`` samples, their prompts (video + audio, or video for a family without audio) and clips."""
    av = family == "qwen2.5-omni" or "video+audio" in registry.family(family).modalities
    meta = {} if av else {"modality": "video"}
    samples = [Sample(f"clip{i:03d}", f"clip{i:03d}.mp4", "happy", "dfew", "train", meta=meta) for i in range(n)]
    if family != "qwen2.5-omni":
        modality = Modality.AV if av else Modality.VIDEO
        return (samples, *ts.family_prompts(adapter, family, d, frame_size, [s.id for s in samples], seed, modality))
    gen = torch.Generator().manual_seed(seed)
    prompts = {
        s.id: gs.synthetic_prompt(
            model.config,
            Modality.AV,
            frames=d["frames"],
            frame_size=d["frame_size"],
            audio_seconds=d["audio_seconds"],
            text_tokens=d["text_tokens"],
            gen=gen,
        )
        for s in samples
    }
    clips = {sid: SimpleNamespace(frames=None, audio=True, fps=None) for sid in prompts}  # read by SyntheticJudge only
    return samples, prompts, clips


class _Targets:
    """What SFT's ``_step`` needs from its targets: fixed random ids per sample (EOS-free)."""

    def __init__(self, n: int, length: int, vocab: int, seed: int):
        gen = torch.Generator().manual_seed(seed)
        self.texts = [""] * n
        self.fresh, self.state = False, None
        self._ids = [torch.randint(0, min(vocab - 16, 151643), (length,), generator=gen) for _ in range(n)]

    def ids(self, i: int) -> torch.Tensor:
        return self._ids[i]


def _one_process_group(device: torch.device) -> None:
    """A one-process group for DeepSpeed (ZeRO-3 offload on one GPU)."""
    import torch.distributed as dist

    for k, v in (
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", "29755"),
        ("RANK", "0"),
        ("WORLD_SIZE", "1"),
        ("LOCAL_RANK", "0"),
    ):
        os.environ.setdefault(k, v)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=0, world_size=1)


def _watch(s: Session, master: bool) -> dict:
    """The last two trainable tensors (their float32 masters when kept), a slice of each: what
    ``params_changed`` compares (None under ZeRO-3, whose parameters are partitioned)."""
    opt = s.strategy.opt
    names = [n for n, p in s.adapter.model.named_parameters() if p.requires_grad][-2:]
    if s.strategy.name.startswith("zero"):
        return {}
    tensors = opt._masters()[-2:] if master else [p for p in s.adapter.model.parameters() if p.requires_grad][-2:]
    return dict(zip(names, tensors))


def run_config(name: str, args) -> dict:
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype or ("bfloat16" if device.type == "cuda" else "float32"))
    d = gs.SHAPES[args.shape].defaults
    sft = name.startswith("sft_")
    n_sft, micro_sft, target_tokens = SFT_WORKLOAD[args.shape]
    common = [
        f"model.dtype={str(dtype).replace('torch.', '')}",
        f"model.device={device.type}",
        "model.freeze_vision=true",
        "model.freeze_audio=true",
    ]
    stage = (
        [
            f"sft.samples_per_step={n_sft}",
            f"sft.micro_batch_samples={micro_sft}",
            "sft.lr=2e-5",
            f"sft.epochs={args.steps}",
            "sft.warmup_ratio=0",
        ]
        if sft
        else [
            f"grpo.prompts_per_step={d['prompts']}",
            f"grpo.completions_per_prompt={d['group']}",
            f"grpo.micro_batch_rows={d['micro_batch_rows']}",
            f"grpo.gradient_checkpointing={str(not args.no_grad_checkpointing).lower()}",
            "grpo.lr=1e-6",
            f"grpo.steps={args.steps}",
            "grpo.sample_every=0",
            f"sampling.max_new_tokens={d['answer_tokens']}",
            "sampling.temperature=1.0",
            f"reflection.max_new_tokens={args.reflection_tokens}",  # read by the emo_r3_* configurations
        ]
    )
    cfg: RunConfig = load_config(None, [*common, *stage, *CONFIGS[name]])
    mem = Memory(device)
    out: dict = {"config": name, "overrides": CONFIGS[name], "stage": "sft" if sft else "grpo"}
    if sft:
        out["workload"] = {"samples_per_step": n_sft, "micro_batch_samples": micro_sft, "target_tokens": target_tokens}
    record: dict = {}
    try:
        record["_phase"] = "build"
        model, adapter, frame_size = _model(args, device, dtype)
        out["after_build_GB"] = mem.now() / GB
        record["_phase"] = "setup"
        with tempfile.TemporaryDirectory(dir=args.checkpoint_dir) as tmp:
            s, ref = _session(name, cfg, adapter, Path(tmp), device)
            out["after_reference_GB"] = mem.now() / GB
            s.setup_optimizer(ref)
            master = type(s.strategy.opt).__name__ == "MasterWeightAdamW" or (
                s.strategy.name.startswith("zero") and cfg.model.dtype == "bfloat16"
            )
            out["master_weights"] = master
            out["after_optimizer_GB"] = mem.now() / GB
            out["trainable_params"] = (
                sum(p.numel() for p in adapter.model.parameters() if p.requires_grad)
                if not s.strategy.name.startswith("zero")
                else sum(p.ds_numel for p in adapter.model.parameters() if p.requires_grad)
            )
            out["params"] = sum(getattr(p, "ds_numel", p.numel()) for p in adapter.model.parameters())
            watched = _watch(s, master)
            before = {n: t.detach().flatten()[:65536].float().clone() for n, t in watched.items()}
            step, reward = (
                (_sft_stepper(s, model, adapter, d, args, n_sft, micro_sft, target_tokens, frame_size), None)
                if sft
                else _grpo_stepper(s, ref, model, d, args, frame_size)
            )
            out["steps"] = _run_steps(step, mem, record, args.steps, sft, reward, s.world)
            out["params_changed"] = {
                n: not torch.equal(p, watched[n].detach().flatten()[:65536].float()) for n, p in before.items()
            } or None
            if not sft:
                record["_phase"] = "checkpoint"
                out["checkpoint"] = _checkpoint(s, args, master)
        out["fits"] = True
    except torch.OutOfMemoryError as e:
        out["fits"] = False
        out["oom_phase"] = record.get("_phase")
        out["oom_message"] = str(e).splitlines()[0][:300]
    finally:
        trainer.PhaseTimer = sft_loop.PhaseTimer = PhaseTimer
    if device.type == "cuda":
        out["max_allocated_GB"] = torch.cuda.max_memory_allocated() / GB
        out["max_reserved_GB"] = torch.cuda.max_memory_reserved() / GB
    return out


def _session(name: str, cfg: RunConfig, adapter, out: Path, device):
    """The loop's Session with its model set up, and (GRPO) the reference."""
    if name.startswith("sft_"):
        s = Session(
            cfg,
            Knobs.of(
                "sft", cfg.sft, command="sft", steps=max(1, round(cfg.sft.epochs)), warmup_steps=0, schedule="cosine"
            ),
            adapter,
            out,
            progress=False,
        )
        if name == "sft_zero3_offload":
            from emorl.train.zero import ZeroStrategy

            _one_process_group(device)
            s.strategy = ZeroStrategy(3, offload=("cpu", "cpu"))
        s.setup_model()
        return s, None
    g = cfg.grpo
    s = Session(
        cfg,
        Knobs.of("grpo", g, command="train", steps=g.steps, warmup_steps=0, schedule="linear"),
        adapter,
        out,
        progress=False,
    )
    peft_model = s.setup_model(encoder_cache_items=4 * g.prompts_per_step)
    return s, trainer._reference(cfg, adapter, peft_model)


def _grpo_stepper(s: Session, ref, model, d: dict, args, frame_size):
    """The trainer's step on two steps' worth of distinct clips, and the reward that counts its
    tokens (and, for the emo_r3_* configurations, runs and times the reflection)."""
    n = d["prompts"] * 2
    samples, prompts, clips = _prompts(model, s.adapter, d, n, args.seed, args.family, frame_size)
    g = s.cfg.grpo
    plan = BatchPlan(g.prompts_per_step, g.completions_per_prompt, g.micro_batch_rows)
    plan.check()
    params = SamplingParams(s.cfg.sampling.max_new_tokens, s.cfg.sampling.temperature, 1.0, 0)
    builder = _Builder(prompts, clips)
    recipe, reflection = RECIPE, None
    if s.cfg.reflection.enabled:  # EMO-R3's reward, the policy as the judge (make_reflection, as emorl train)
        base = recipe_for(s.cfg)
        recipe = dataclasses.replace(base, weights={**base.weights, "random": 1.0})
        reflection = make_reflection(s.adapter, builder, s.cfg)
        if args.family == "qwen2.5-omni":  # stub tokenizer: the judge's prompts synthetic (train_step.py)
            reflection.adapter = ts.SyntheticJudge(s.adapter, prompts, model.config.text_config.vocab_size)
    sync = torch.cuda.synchronize if s.adapter.device.type == "cuda" else None
    reward = ts.TimedReward(args.seed, reflection, s.adapter.decode, sync)
    return lambda k: trainer._step(s, plan, builder, samples, recipe, params, reward, ref), reward


def _sft_stepper(s: Session, model, adapter, d: dict, args, n: int, micro: int, target_tokens: int, frame_size):
    samples, prompts, _ = _prompts(model, adapter, d, n, args.seed, args.family, frame_size)
    plan = SFTPlan(n, micro, s.world)
    plan.check()
    builder = _Builder(prompts)
    targets = _Targets(n, target_tokens, model.config.get_text_config().vocab_size, args.seed)
    return lambda k: sft_loop._step(s, plan, builder, samples, targets)


def _checkpoint(s: Session, args, master: bool) -> dict:
    """One checkpoint through the Session's own atomic ``save_checkpoint`` (weights or LoRA adapter,
    optimizer, scheduler, RNG): seconds and bytes on disk. Skipped with ``--no-checkpoint`` or when
    the disk cannot hold it (a 7B full fine-tune's is ~0.1 TB with float32 masters and AdamW)."""
    if args.no_checkpoint:
        return {"skipped": "--no-checkpoint"}
    params = [p for p in s.adapter.model.parameters()]
    weights = sum(p.numel() * p.element_size() for p in params if p.requires_grad or s.peft_model is None)
    # + AdamW's two moments (float32 with masters, else in the weights' dtype) and the float32 masters
    need = weights + sum(p.numel() * (12 if master else 2 * p.element_size()) for p in params if p.requires_grad)
    free = shutil.disk_usage(s.out).free
    if need > 0.9 * free:
        return {
            "skipped": f"needs ~{need / GB:.1f} GB, {free / GB:.1f} GB free (--checkpoint-dir)",
            "estimate_bytes": need,
        }
    s.state.step = args.steps
    if s.adapter.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    path = s.save_checkpoint()
    seconds = time.perf_counter() - t0
    files = [f for f in path.rglob("*") if f.is_file()]
    return {
        "seconds": seconds,
        "bytes": sum(f.stat().st_size for f in files),
        "files": sorted(str(f.relative_to(path)) for f in files),
        "estimate_bytes": need,
    }


def _run_steps(step, mem: Memory, record: dict, n_steps: int, sft: bool, reward=None, gpus: int = 1) -> list[dict]:
    trainer.PhaseTimer = sft_loop.PhaseTimer = _timer_with_memory(mem, record)
    steps = []
    for k in range(n_steps):
        record.clear()
        t0 = time.perf_counter()
        with mem.peak(record, "step"):
            row = step(k)
        if mem.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        # each phase resets the CUDA peak counter when it starts, so the step's peak is the
        # largest of the phases' peaks and of what the outer counter saw after the last reset
        record["step"] = max(v for p, v in record.items() if not p.startswith("_"))
        if sft:
            extra = {"loss": row.get("loss"), "tokens": row.get("tokens"), "micro_batches": row.get("micro_batches")}
        else:  # the trainer's own step seconds and phases; verl's token accounting
            extra = {
                "completion_len": row.get("completion_len"),
                "step_s": row["step_s"],
                "phases_s": ts.phases(row, reward.last),
                "time": {k: v for k, v in row.items() if k.startswith("time/")},
                **ts.throughput(reward.last, row["step_s"], gpus),
                **{k: reward.last[k] for k in ("reflection_passes_s", "reflection_answers") if k in reward.last},
            }
        steps.append(
            {
                "step": k + 1,
                "seconds": seconds,
                "skipped": row.get("skipped"),
                **extra,
                "peak_GB": {p: v / GB for p, v in record.items() if not p.startswith("_")},
                "allocated_after_GB": mem.now() / GB,
            }
        )
    return steps


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(gs.SHAPES), default="tiny")
    ap.add_argument(
        "--family",
        choices=["qwen2.5-omni", *gs.FAMILY_FRAME_SIZE],
        default="qwen2.5-omni",
        help="qwen2.5-omni: synthetic prompts (grpo_step.py's default); another: its model builder and real "
        "processor (qwen2.5-vl's 3b shape is Qwen2.5-VL-3B, the model of EasyR1's published throughput)",
    )
    ap.add_argument(
        "--reflection-tokens",
        type=int,
        default=4,
        help="emo_r3_*: tokens per reflection answer (EOS suppressed; a real answer is one word and EOS)",
    )
    ap.add_argument("--no-checkpoint", action="store_true", help="GRPO configurations: no timed checkpoint write")
    ap.add_argument("--checkpoint-dir", default=None, help="where the timed checkpoint is written (default: temp)")
    ap.add_argument("--configs", default="full,full_beta0,lora", help=f"comma-separated, of {', '.join(CONFIGS)}")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, help="default: bfloat16 on CUDA, float32 on CPU")
    ap.add_argument("--steps", type=int, default=2, help="steps per configuration (AdamW states appear in the first)")
    ap.add_argument(
        "--no-grad-checkpointing",
        action="store_true",
        help="GRPO configurations without activation checkpointing (SFT ones name it: *_nockpt)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--in-process", action="store_true", help="run the configurations in this process (tests)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help="JSON output path")
    args = ap.parse_args(argv)
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in names if c not in CONFIGS]
    if unknown:
        ap.error(f"unknown --configs {unknown}; expected some of {', '.join(CONFIGS)}")
    if args.child:
        res = run_config(names[0], args)
        Path(args.child).write_text(json.dumps(res, default=str))
        return res
    results = []
    for name in names:
        if args.in_process:
            results.append(run_config(name, args))
            continue
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "res.json")
            child = [a for a in (argv if argv is not None else sys.argv[1:])]
            for flag in ("--configs", "--out"):
                if flag in child:
                    i = child.index(flag)
                    del child[i : i + 2]
            proc = subprocess.run(
                [sys.executable, os.path.abspath(__file__), *child, "--configs", name, "--child", path], check=False
            )
            if proc.returncode != 0 or not os.path.exists(path):
                results.append({"config": name, "error": f"child process exited {proc.returncode}"})
            else:
                results.append(json.loads(Path(path).read_text()))
    device = torch.device(args.device)
    from transformers import __version__ as tf_version

    report = {
        "shape": args.shape,
        "family": args.family,
        "device": args.device,
        "steps": args.steps,
        "sft_workload": SFT_WORKLOAD[args.shape],
        "grad_checkpointing": not args.no_grad_checkpointing,
        "workload": gs.SHAPES[args.shape].defaults,
        "env": {
            "torch": torch.__version__,
            "transformers": tf_version,
            "python": platform.python_version(),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine(),
        },
        "reference": ts.REFERENCE,
        "results": results,
    }
    print_table(report)
    ts.print_throughput(report)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report


def print_table(report: dict) -> None:
    print(
        f"Training step memory, shape {report['shape']} on {report['device']} ({report['env']['device_name']}), "
        f"{report['steps']} steps, GB = 1e9 bytes"
    )
    for r in report["results"]:
        if "error" in r:
            print(f"{r['config']:17s} ERROR {r['error']}")
            continue
        nan = float("nan")
        head = (
            f"{r['config']:17s} trainable {r.get('trainable_params', 0) / 1e6:.1f}M; after build "
            f"{r.get('after_build_GB', nan):.2f}, with reference {r.get('after_reference_GB', nan):.2f}, "
            f"with optimizer {r.get('after_optimizer_GB', nan):.2f} (masters: {r.get('master_weights')})"
        )
        if not r["fits"]:
            print(f"{head}; OUT OF MEMORY in phase {r['oom_phase']} (max allocated {r.get('max_allocated_GB', 0):.1f})")
            continue
        changed = "not checked (partitioned)" if r["params_changed"] is None else all(r["params_changed"].values())
        print(head + f"; parameters changed: {changed}")
        for s in r["steps"]:
            phases = ", ".join(f"{k} {v:.2f}" for k, v in s["peak_GB"].items())
            print(
                f"    step {s['step']} ({s['seconds']:.1f} s): peak {phases}; "
                f"allocated after {s['allocated_after_GB']:.2f}"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
