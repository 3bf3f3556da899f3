"""The GRPO loop, owned by emorl (no framework trainer).

``train_grpo`` reads top to bottom; each step's phases are named and timed:

    rollout    sample G completions per clip (the clip's video + audio in the prompt)
    reward     rule components (format, accuracy, ...) + model-based ones (``extra_rewards``)
    advantage  group-normalised advantages (dynamic sampling may drop tied groups and refill)
    reference  log-probs under the frozen reference (skipped when beta == 0)
    old        log-probs of the sampling policy (only when epochs_per_rollout > 1; otherwise the
               policy's own detached log-probs, ratio 1)
    update     clipped policy-gradient loss (+ beta * KL), accumulated over micro-batches, one
               optimizer step per epoch over the rollout batch

Every log-prob pass receives the clip's media through the adapter. Several processes (torchrun,
accelerate launch) split each step's prompts; the model is replicated with gradients all-reduced
here (``grpo.sharding=none``), sharded with FSDP2 (``grpo.sharding=fsdp2``, emorl.rl.sharding) or
with DeepSpeed ZeRO-2/3 (``grpo.sharding=zero2|zero3``, emorl.rl.zero).
Checkpoints (model or LoRA adapter, optimizer, scheduler, RNG states, data position, step) are
written atomically every ``save_every`` steps and on SIGINT/SIGTERM; ``resume`` continues exactly.
Non-finite rewards, losses or gradients skip the step with a logged reason; repeated ones stop the run.
"""

from __future__ import annotations

import copy
import json
import random
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from emorl.config import RunConfig, record_labels, run_config_yaml, to_dict
from emorl.data.loader import PromptBuilder
from emorl.data.manifest import Sample
from emorl.models.adapter import OmniAdapter, SamplingParams
from emorl.recipes.rewards import recipe_for
from emorl.rl import zero
from emorl.rl.grpo import group_advantages, policy_loss
from emorl.rl.rollout import ExtraRewards, Group, sample_groups, score_groups
from emorl.rl.sharding import SHARDING, FSDP2Strategy, Strategy
from emorl.train_utils import (
    JsonlLogger,
    PhaseTimer,
    barrier,
    check_launch,
    chunks,
    freeze_towers,
    global_std,
    global_sum,
    make_optimizer,
    master_weights,
    open_trackers,
    save_model_atomic,
    world_info,
)
from emorl.utils import atomic_write_json


@dataclass
class BatchPlan:
    """Batch semantics with units, checked at start-up."""

    prompts_per_step: int
    completions_per_prompt: int
    micro_batch_rows: int

    @property
    def rows_per_step(self) -> int:
        return self.prompts_per_step * self.completions_per_prompt

    @property
    def accumulation_steps(self) -> int:
        return -(-self.rows_per_step // self.micro_batch_rows)

    def check(self) -> None:
        for name in ("prompts_per_step", "completions_per_prompt", "micro_batch_rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"grpo.{name} must be >= 1, got {getattr(self, name)}")
        if self.completions_per_prompt < 2:
            raise ValueError("grpo.completions_per_prompt must be >= 2: group advantages need at least two samples")
        if self.rows_per_step % self.micro_batch_rows:
            raise ValueError(
                f"rows per step ({self.prompts_per_step} prompts x {self.completions_per_prompt} completions = "
                f"{self.rows_per_step}) must be divisible by grpo.micro_batch_rows ({self.micro_batch_rows})")

    def describe(self) -> str:
        return (f"{self.prompts_per_step} prompts x {self.completions_per_prompt} completions = {self.rows_per_step} "
                f"rows/step; micro-batch {self.micro_batch_rows} rows -> {self.accumulation_steps} accumulation steps")


@dataclass
class Row:
    """One completion as a training row. logp tensors are (L,) for this row's tokens."""

    group: Group
    index: int
    old: torch.Tensor | None = None
    ref: torch.Tensor | None = None

    @property
    def prompt(self):
        return self.group.prompt

    @property
    def completion(self) -> torch.Tensor:
        return self.group.completions[self.index]

    @property
    def advantage(self) -> torch.Tensor:
        return self.group.advantages[self.index]


@dataclass
class TrainState:
    step: int = 0
    order: list[int] = field(default_factory=list)
    nonfinite_streak: int = 0


# ---------------------------------------------------------------------------- phases
def micro_batches(rows: list[Row], size: int, by_modality: bool = True):
    """Micro-batches of at most ``size`` rows; with ``by_modality`` (the adapter's
    ``one_modality_per_batch``) each holds one modality."""
    by_mod: dict = {}
    for r in rows:
        by_mod.setdefault(r.prompt.modality if by_modality else None, []).append(r)
    for mod_rows in by_mod.values():
        yield from chunks(mod_rows, size)


def _group_ids(mb: list[Row]) -> list[int]:
    """The explicit group identity of a micro-batch's rows: rows of one group share its prompt."""
    return [id(r.group) for r in mb]


@torch.no_grad()
def fill_logps(adapter: OmniAdapter, rows: list[Row], size: int, temperature: float, attr: str) -> None:
    """Store per-row log-probs (no grad) in ``row.<attr>`` ('old' or 'ref')."""
    for mb in micro_batches(rows, size, adapter.one_modality_per_batch):
        lp, _, _ = adapter.completion_logprobs([r.prompt for r in mb], [r.completion for r in mb],
                                               temperature=temperature, groups=_group_ids(mb))
        for i, r in enumerate(mb):
            setattr(r, attr, lp[i, : len(r.completion)].detach())


def _pad(seqs: list[torch.Tensor], length: int, device) -> torch.Tensor:
    out = torch.zeros(len(seqs), length, device=device)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out


def policy_update(adapter: OmniAdapter, rows: list[Row], cfg: RunConfig, backward, *, temperature: float,
                  norm_rows: int | None = None, norm_tokens: int | None = None) -> dict:
    """Accumulate the loss's gradients over micro-batches (no optimizer step). The micro-batch
    losses are normalised by the whole batch's rows/tokens (``norm_*``: across all processes),
    so they sum to the full-batch loss whatever ``micro_batch_rows`` is. Returns mean statistics
    (with ``nonfinite_loss`` when a micro-batch's loss was not finite: its gradients are then
    NaN, so the caller's gradient-norm check skips the step on every process)."""
    g = cfg.grpo
    n_rows = norm_rows or len(rows)
    n_tokens = norm_tokens or sum(len(r.completion) for r in rows)
    stats = {"loss": 0.0, "kl": 0.0, "clip_frac": 0.0, "entropy": 0.0, "ratio": 0.0}
    for mb in micro_batches(rows, g.micro_batch_rows, adapter.one_modality_per_batch):
        lp, mask, ent = adapter.completion_logprobs([r.prompt for r in mb], [r.completion for r in mb],
                                                    temperature=temperature, with_entropy=True,
                                                    groups=_group_ids(mb))
        old = lp.detach() if mb[0].old is None else _pad([r.old for r in mb], lp.shape[1], lp.device)
        ref = None if g.beta == 0 else _pad([r.ref for r in mb], lp.shape[1], lp.device)
        adv = torch.stack([r.advantage for r in mb]).to(lp.device)
        out = policy_loss(lp, old, adv, mask, loss_type=g.loss_type, eps_low=g.epsilon_low, eps_high=g.epsilon_high,
                          ref_logp=ref, beta=g.beta, kl_kind=g.kl_estimator, max_len=cfg.sampling.max_new_tokens,
                          norm_rows=n_rows, norm_tokens=n_tokens, dual_clip=g.dual_clip_c)
        loss = out.loss
        if not torch.isfinite(loss):
            # no early exit: the other processes are already in (or about to enter) this step's
            # gradient reduction. A NaN through every log-prob poisons every gradient, so the
            # global gradient norm is non-finite on every process and all of them skip the step.
            stats["nonfinite_loss"] = float(loss.detach())
            loss = (lp * float("nan")).sum()
        backward(loss)
        w = len(mb) / len(rows)
        stats["loss"] += float(out.loss.detach())
        stats["kl"] += out.kl * w
        stats["clip_frac"] += out.clip_frac * w
        stats["ratio"] += out.ratio_mean * w
        stats["entropy"] += float((ent * mask).sum() / mask.sum().clamp(min=1)) * w
    return stats


@torch.no_grad()
def _check_in_sync(model: torch.nn.Module) -> bool | None:
    """Multi-process runs with replicated parameters: do all processes hold the same ones? (None
    when single-process; the caller skips partitioned models, FSDP2 and ZeRO-3, which hold one
    copy of each parameter.) Raises if they differ: a silent divergence would make the run meaningless."""
    import torch.distributed as dist

    world, _ = world_info()
    if world == 1:
        return None
    local = torch.tensor([sum(float(p.double().sum()) for p in model.parameters()),
                          sum(float(p.double().abs().sum()) for p in model.parameters())], dtype=torch.float64)
    every = [torch.zeros_like(local) for _ in range(world)]
    dist.all_gather(every, local)
    if any(not torch.equal(every[0], x) for x in every[1:]):
        raise RuntimeError(f"processes hold different parameters after training: {[x.tolist() for x in every]}")
    return True


# ---------------------------------------------------------------------------- checkpoints
def _ckpt_root(out: Path) -> Path:
    return out / "checkpoints"


def save_checkpoint(out: Path, adapter, strategy: Strategy, sched, state: TrainState, rng: random.Random, keep: int,
                    peft_model=None) -> Path:
    """Write checkpoints/step-N atomically (temp folder + rename), then point latest.json at it.
    Process 0 writes the weights (gathered first when sharded) and the trainer state; a strategy
    that keeps its own partitions (DeepSpeed) has every process write them (``zero/``); every
    process writes its own RNG state."""
    world, rank = world_info()
    model_sd, optim_sd = strategy.checkpoint_state()
    root = _ckpt_root(out)
    name = f"step-{state.step:06d}"
    tmp, final = root / f".{name}.tmp", root / name
    if rank == 0:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        if model_sd is None:
            pass  # model and optimizer partitions: save_partitions below, on every process
        elif peft_model is not None:
            peft_model.save_pretrained(tmp / "adapter")
        else:  # the exact in-memory state dict (save_pretrained renames keys on the way to disk)
            torch.save(model_sd, tmp / "model_state.pt")
        torch.save({"step": state.step, "order": list(state.order), "nonfinite_streak": state.nonfinite_streak,
                    "python_rng": rng.getstate(), "optimizer": optim_sd,
                    "scheduler": sched.state_dict(), "world_size": world, "sharding": strategy.name},
                   tmp / "trainer_state.pt")
    barrier()
    strategy.save_partitions(tmp)
    torch.save({"torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
               tmp / f"rng_rank{rank}.pt")
    barrier()
    if rank == 0:
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        atomic_write_json(root / "latest.json", {"step": state.step, "path": name})
        done = sorted(p for p in root.glob("step-*") if p.is_dir())
        for old in done[:-keep] if keep > 0 else []:
            shutil.rmtree(old)
    barrier()
    return final


def load_checkpoint(out: Path, strategy: Strategy, sched, rng: random.Random, peft_model=None) -> TrainState:
    root = _ckpt_root(out)
    latest = root / "latest.json"
    if not latest.is_file():
        raise FileNotFoundError(f"{latest}: no checkpoint to resume from (was grpo.save_every set?)")
    path = root / json.loads(latest.read_text())["path"]
    st = torch.load(path / "trainer_state.pt", weights_only=False)
    world, rank = world_info()
    if st["world_size"] != world:
        raise ValueError(f"{path}: checkpoint was written by {st['world_size']} processes, resuming with {world}")
    if st.get("sharding", "none") != strategy.name:
        raise ValueError(f"{path}: checkpoint was written with grpo.sharding={st.get('sharding', 'none')}, "
                         f"resuming with grpo.sharding={strategy.name}; resume with the same setting")
    strategy.load_checkpoint(path, st, peft_model)
    sched.load_state_dict(st["scheduler"])
    rng.setstate(st["python_rng"])
    r = torch.load(path / f"rng_rank{rank}.pt", weights_only=False)
    torch.set_rng_state(r["torch_rng"])
    if r.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(r["cuda_rng"])
    return TrainState(step=st["step"], order=list(st["order"]), nonfinite_streak=st["nonfinite_streak"])


def _truncate_log(path: Path, step: int) -> None:
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= step]
    path.write_text("".join(line + "\n" for line in keep))


class _StopFlag:
    """SIGINT/SIGTERM set a flag; the loop saves a checkpoint after the current step and exits."""

    def __init__(self):
        self.signal: int | None = None
        self._old: dict = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not in the main thread
                pass
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:  # second signal: stop now
            raise KeyboardInterrupt
        self.signal = signum
        print(f"\n[grpo] received signal {signum}: finishing this step, saving a checkpoint and exiting")

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


# ---------------------------------------------------------------------------- setup
def make_strategy(sharding: str) -> Strategy:
    """The ``Strategy`` of a ``grpo.sharding`` mode (emorl.rl.sharding, emorl.rl.zero)."""
    if sharding == "none":
        return Strategy()
    if sharding == "fsdp2":
        return FSDP2Strategy()
    if sharding in zero.ZERO_STAGES:
        return zero.ZeroStrategy(zero.ZERO_STAGES[sharding])
    raise ValueError(f"grpo.sharding must be one of {', '.join(SHARDING)}, got {sharding!r}")


def _setup_model(cfg: RunConfig, adapter):
    """Freezing, LoRA and gradient checkpointing. Returns the peft wrapper (or None)."""
    model = adapter.model
    freeze_towers(adapter, vision=cfg.model.freeze_vision, audio=cfg.model.freeze_audio)
    if hasattr(adapter, "decode_mode"):
        from emorl.models.group import DECODE_MODES

        if cfg.sampling.decode not in ("auto", *DECODE_MODES):
            raise ValueError(f"sampling.decode must be one of auto, {', '.join(DECODE_MODES)}, "
                             f"got {cfg.sampling.decode!r}")
        adapter.decode_mode = cfg.sampling.decode
    peft_model = None
    if cfg.model.lora_rank > 0:
        from peft import LoraConfig, get_peft_model

        targets = [t.strip() for t in cfg.model.lora_targets.split(",") if t.strip()]
        lcfg = LoraConfig(r=cfg.model.lora_rank, lora_alpha=cfg.model.lora_alpha, lora_dropout=cfg.model.lora_dropout,
                          target_modules=lora_modules(adapter, targets))
        peft_model = get_peft_model(model, lcfg)  # injects LoRA layers into `model` in place
    if (cfg.model.freeze_vision or cfg.model.freeze_audio) and getattr(adapter, "group_aware", False):
        from emorl.models.group import EncoderCache

        # frozen towers: each clip's encoder outputs are computed once and reused by the
        # generation, reference and policy passes (and across steps while the clip is cached)
        adapter.encoder_cache = EncoderCache(max_items=4 * cfg.grpo.prompts_per_step)
    if cfg.grpo.gradient_checkpointing:
        # transformers' checkpointing without its input hook, so frozen encoders build no graphs
        adapter.enable_activation_checkpointing()
    return peft_model


def lora_modules(adapter, targets: list[str]) -> list[str]:
    """Full names of the text model's linear layers whose own name is in ``targets`` (never the
    towers', projectors' or the LM head's: the adapter's ``text_model()`` decides what the LLM is).

    Full names, not a regex: for MoE models peft 0.21 resolves a regex to bare leaf names, so
    ``q_proj`` would then also match a tower's projections. Experts fused into 3-D parameters are
    not linear layers and get no adapter (a MoE text model: attention only)."""
    inside = {id(m) for m in adapter.text_model().modules()}
    names = [n for n, m in adapter.model.named_modules()
             if isinstance(m, torch.nn.Linear) and id(m) in inside and n.rpartition(".")[2] in targets]
    if not names:
        raise ValueError(f"model.lora_targets={','.join(targets)!r}: no linear layer of the LLM has one of these names")
    return names


def _reference(cfg: RunConfig, adapter, peft_model):
    """The frozen reference: LoRA -> the same model with adapters disabled (no copy); else a copy."""
    if cfg.grpo.beta == 0.0:
        return None
    if peft_model is not None:
        return peft_model  # the policy with its LoRA adapters disabled
    ref = copy.copy(adapter)
    ref.model = copy.deepcopy(adapter.model).eval().requires_grad_(False)
    if cfg.model.ref_device:
        ref.model.to(cfg.model.ref_device)
        ref.device = torch.device(cfg.model.ref_device)
    return ref


def _check_sharded(cfg: RunConfig, world: int) -> None:
    s = cfg.grpo.sharding
    if world < 2:
        launch = "fsdp2.yaml" if s == "fsdp2" else f"deepspeed_{s}.yaml"
        raise ValueError(f"grpo.sharding={s} needs several processes: launch with torchrun --nproc_per_node N or "
                         f"accelerate launch --config_file configs/accelerate/{launch}")
    if cfg.model.lora_rank > 0:
        raise ValueError(f"grpo.sharding={s} does not support LoRA (model.lora_rank > 0); LoRA's trainable state is "
                         "small, use grpo.sharding=none")
    if cfg.grpo.dynamic_sampling:
        raise ValueError(f"grpo.sharding={s} does not support grpo.dynamic_sampling=true (the processes would end a "
                         "step with different batches); use grpo.sharding=none")
    if s in zero.ZERO_STAGES and cfg.model.dtype == "bfloat16" and cfg.model.master_weights == "none":
        raise ValueError(f"grpo.sharding={s} with model.dtype=bfloat16 always keeps float32 master weights "
                         "(DeepSpeed's bf16 mode); model.master_weights=none cannot be honoured, use auto")


def _check_same_micro_batches(rows: list[Row], size: int, by_modality: bool) -> None:
    """FSDP2 and ZeRO-3 all-gather in every forward and FSDP2 and ZeRO reduce gradients in every
    backward, so every process must run the same micro-batches (count and modality); otherwise they
    would wait on each other forever."""
    import torch.distributed as dist

    mine = [mb[0].prompt.modality.value for mb in micro_batches(rows, size, by_modality)]
    every: list = [None] * world_info()[0]
    dist.all_gather_object(every, mine)
    if any(x != every[0] for x in every):
        raise RuntimeError(f"sharded training needs the same micro-batches on every process, got {every} "
                           "(modality per micro-batch): the clips' modalities differ between processes (e.g. "
                           "data.on_missing_audio=skip fell back to video); use grpo.sharding=none")


def _next_batch(state: TrainState, rng: random.Random, n_samples: int, k: int) -> list[int]:
    while len(state.order) < k:
        perm = list(range(n_samples))
        rng.shuffle(perm)
        state.order += perm
    batch, state.order = state.order[:k], state.order[k:]
    return batch


# ---------------------------------------------------------------------------- the loop
def train_grpo(cfg: RunConfig, adapter: OmniAdapter, builder: PromptBuilder, samples: list[Sample], out: Path,
               *, progress: bool = True, extra_rewards: ExtraRewards | None = None,
               stop_after: int | None = None) -> dict:
    """Run GRPO until ``cfg.grpo.steps`` (or ``stop_after`` more steps); writes ``out/metrics.jsonl``,
    ``out/samples.jsonl``, checkpoints and the final model to ``out/model``. Returns a summary."""
    from accelerate import Accelerator

    g = cfg.grpo
    plan = BatchPlan(g.prompts_per_step, g.completions_per_prompt, g.micro_batch_rows)
    plan.check()
    if g.epochs_per_rollout < 1:
        raise ValueError(f"grpo.epochs_per_rollout must be >= 1, got {g.epochs_per_rollout}")
    recipe = recipe_for(cfg)
    strategy = make_strategy(g.sharding)
    check_launch("train", g.sharding)
    Accelerator(cpu=cfg.model.device == "cpu")  # starts the process group under torchrun / accelerate launch
    world, rank = world_info()
    if plan.prompts_per_step % world:
        raise ValueError(f"grpo.prompts_per_step ({plan.prompts_per_step}) must be divisible by the number of "
                         f"processes ({world})")
    if g.sharding != "none":
        _check_sharded(cfg, world)
    main = rank == 0
    progress = progress and main
    peft_model = _setup_model(cfg, adapter)
    ref = _reference(cfg, adapter, peft_model)
    master = master_weights(cfg.model.master_weights, adapter.model)
    # float32 masters: MasterWeightAdamW (none), FSDP2 mixed precision (float32 shards), DeepSpeed's bf16 mode
    _, sched = strategy.setup(adapter, ref, cfg, master=master, make_opt=lambda m: make_optimizer(
        adapter.model, g.lr, g.weight_decay, g.steps, g.warmup_steps, "linear", master=m))
    params = SamplingParams(cfg.sampling.max_new_tokens, cfg.sampling.temperature, cfg.sampling.top_p,
                            cfg.sampling.top_k)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(cfg.seed)
    state = TrainState()
    if g.resume:
        state = load_checkpoint(out, strategy, sched, rng, peft_model)
        print(f"[grpo] resumed from step {state.step}")
        if main:
            for name in ("metrics.jsonl", "samples.jsonl"):
                _truncate_log(out / name, state.step)
    barrier()
    trackers = open_trackers(cfg.report_to, out, to_dict(cfg), resume_step=state.step) if main else []
    log = JsonlLogger(out / "metrics.jsonl" if main else out / f".metrics_rank{rank}.jsonl", trackers)
    sample_log = JsonlLogger(out / "samples.jsonl" if main else out / f".samples_rank{rank}.jsonl")
    n_params = sum(p.numel() for p in adapter.model.parameters() if p.requires_grad)
    if main:
        print(f"[grpo] {plan.describe()}; {world} process(es), sharding {g.sharding}; {g.steps} steps; "
              f"loss {g.loss_type}, beta {g.beta}, lr {g.lr}; {n_params / 1e6:.2f}M trainable parameters"
              + (f" (LoRA r={cfg.model.lora_rank})" if peft_model else ""))
    history: list[dict] = []
    last_step = g.steps if stop_after is None else min(g.steps, state.step + stop_after)
    bar = tqdm(total=g.steps, initial=state.step, desc="grpo", disable=not progress, dynamic_ncols=True)
    with _StopFlag() as stop:
        while state.step < last_step and stop.signal is None:
            row = _step(cfg, plan, adapter, builder, samples, recipe, params, extra_rewards, ref, strategy, sched,
                        state, rng)
            state.step += 1
            row["step"] = state.step
            log.log(row)
            history.append(row)
            if g.sample_every and (state.step % g.sample_every == 1 or state.step == g.steps) and "_sample" in row:
                sample_log.log({"step": state.step, **row.pop("_sample")})
            row.pop("_sample", None)
            if g.save_every and state.step % g.save_every == 0 and state.step < g.steps:
                save_checkpoint(out, adapter, strategy, sched, state, rng, g.keep_checkpoints, peft_model)
            bar.update(1)
            bar.set_postfix(reward=f"{row.get('reward/overall', float('nan')):.2f}",
                            acc=f"{row.get('reward/accuracy', 0):.2f}", kl=f"{row.get('kl', 0):.3f}")
    bar.close()
    log.close()
    sample_log.close()
    interrupted = stop.signal is not None or state.step < g.steps
    adapter.model.eval()
    in_sync = None if strategy.partitioned else _check_in_sync(adapter.model)
    if world > 1 and main:
        skipped = {"skipped": f"{g.sharding}: every parameter has one sharded copy"} if strategy.partitioned else {}
        atomic_write_json(out / "sync_check.json", {"processes": world, "params_in_sync": in_sync,
                                                    "step": state.step, **skipped})
    saved_cfg = _model_config(cfg, samples)
    if interrupted:
        path = save_checkpoint(out, adapter, strategy, sched, state, rng, g.keep_checkpoints, peft_model)
        print(f"[grpo] stopped at step {state.step}; checkpoint {path}; continue with grpo.resume=true")
    elif (model_sd := strategy.final_state_dict()) is not None:  # gathered on process 0 (collective)
        if main:
            dtype = getattr(torch, cfg.model.dtype)  # float32 shards (mixed precision) saved in the model's dtype
            save_model_atomic(adapter, out / "model", state_dict={k: v.to(dtype) if v.is_floating_point() else v
                                                                   for k, v in model_sd.items()}, run_config=saved_cfg)
    elif main:
        if peft_model is not None:
            peft_model.save_pretrained(out / "adapter")
            merged = copy.copy(adapter)
            merged.model = copy.deepcopy(peft_model).merge_and_unload()
            save_model_atomic(merged, out / "model", run_config=saved_cfg)
        else:
            save_model_atomic(adapter, out / "model", run_config=saved_cfg)
    barrier()
    return {"steps": state.step, "interrupted": interrupted,
            "first_reward": history[0].get("reward/overall") if history else None,
            "last_reward": history[-1].get("reward/overall") if history else None, "history": history}


def _rollout(cfg, plan, adapter, builder, samples, recipe, params, extra_rewards, state, rng, timer):
    """This process's groups for one step. With dynamic sampling, tied groups are dropped and
    refilled. How many to refill is decided on the global count, so every process runs the same
    rounds and draws the same global batches; a process may end with fewer groups than another,
    or none (its share of a small refill is empty, or all its groups tied)."""
    g = cfg.grpo
    world, rank = world_info()
    groups: list[Group] = []
    dropped = 0
    for round_ in range(1 + (g.max_refill_rounds if g.dynamic_sampling else 0)):
        need = plan.prompts_per_step - (global_sum(len(groups)) if round_ else 0)
        if need <= 0:
            break
        # every process draws the same global batch and takes its share (prompts_per_step is global)
        batch = [samples[i] for i in _next_batch(state, rng, len(samples), need)[rank::world]]
        if not batch:
            continue
        with timer("encode"):
            prompts = [builder.prompt(s) for s in batch]
        adapter.model.eval()
        with timer("rollout"):
            new = sample_groups(adapter, batch, prompts, plan.completions_per_prompt, params)
        with timer("reward"):
            score_groups(new, recipe, extra_rewards)
        if g.dynamic_sampling:
            keep = [grp for grp in new if float(grp.rewards["overall"].std()) > 0]
            dropped += len(new) - len(keep)
            new = keep
        groups += new
    return groups, dropped


def _step(cfg, plan, adapter, builder, samples, recipe, params, extra_rewards, ref, strategy: Strategy, sched,
          state: TrainState, rng) -> dict:
    g = cfg.grpo
    timer = PhaseTimer()
    t0 = time.perf_counter()
    # FSDP2 / ZeRO-3: all-gathered once for the whole rollout, not per decoding step
    with strategy.gathered():
        groups, dropped = _rollout(cfg, plan, adapter, builder, samples, recipe, params, extra_rewards, state, rng,
                                   timer)
    row: dict = {"dynamic_sampling_dropped": dropped, "groups": len(groups)} if g.dynamic_sampling else {}
    if g.dynamic_sampling and global_sum(len(groups)) == 0:  # decided globally, as every skip
        state.nonfinite_streak = 0
        row.update({"skipped": "every group's rewards tied (dynamic sampling)", "step_s": time.perf_counter() - t0})
        return row
    with timer("advantage"):
        # (N, G); a process whose groups all tied has N = 0 and still joins every reduction below
        rewards = torch.stack([grp.rewards["overall"] for grp in groups]) if groups else \
            torch.zeros(0, plan.completions_per_prompt)
        batch_std = global_std(rewards) if g.advantage_scale == "batch" and world_info()[0] > 1 else None
        adv = group_advantages(rewards, g.advantage_scale, g.advantage_eps, batch_std)
        for grp, a in zip(groups, adv):
            grp.advantages = a
    rows = [Row(grp, j) for grp in groups for j in range(grp.size)]
    n_tokens = sum(len(r.completion) for r in rows)
    if groups:
        row.update(_reward_stats(groups, rewards))
    # decided globally: a process that skipped alone would leave the others waiting in the reduction
    reason = None if global_sum(int(not torch.isfinite(rewards).all())) == 0 else "non-finite reward"
    if reason is None:
        try:
            if g.sharding != "none":
                _check_same_micro_batches(rows, g.micro_batch_rows, adapter.one_modality_per_batch)
            if ref is not None:
                with timer("reference"):
                    if isinstance(ref, torch.nn.Module):  # peft model: base weights = initial policy
                        with ref.disable_adapter():
                            fill_logps(adapter, rows, g.micro_batch_rows, params.temperature, "ref")
                    else:
                        fill_logps(ref, rows, g.micro_batch_rows, params.temperature, "ref")
            if g.epochs_per_rollout > 1:
                with timer("old"):
                    fill_logps(adapter, rows, g.micro_batch_rows, params.temperature, "old")
            adapter.model.train()
            norm_rows, norm_tokens = global_sum(len(rows)), global_sum(n_tokens)
            for _epoch in range(g.epochs_per_rollout):
                with timer("update"):
                    n_micro = sum(1 for _ in micro_batches(rows, g.micro_batch_rows, adapter.one_modality_per_batch))
                    stats = policy_update(adapter, rows, cfg, strategy.backward_fn(n_micro),
                                          temperature=params.temperature, norm_rows=norm_rows, norm_tokens=norm_tokens)
                    try:  # reduce (unless sharded), clip, step
                        grad_norm = strategy.step(g.max_grad_norm)
                    except FloatingPointError as e:
                        raise FloatingPointError(_nonfinite_reason(stats, str(e))) from None
            sched.step()
            row.update({k: round(v, 6) for k, v in stats.items()})
            row["grad_norm"] = grad_norm
        except FloatingPointError as e:
            reason = str(e)
            strategy.discard()
        finally:
            adapter.model.eval()
    if reason is not None:
        state.nonfinite_streak += 1
        row["skipped"] = reason
        print(f"[grpo] step {state.step + 1}: {reason}; update skipped ({state.nonfinite_streak} in a row)")
        if state.nonfinite_streak >= g.max_nonfinite_steps:
            raise RuntimeError(f"GRPO stopped: {state.nonfinite_streak} consecutive steps with non-finite values "
                               f"(last: {reason}). Lower grpo.lr, check the reward functions, or raise "
                               f"grpo.max_nonfinite_steps.")
    else:
        state.nonfinite_streak = 0
    row.update({"lr": sched.get_last_lr()[0], "step_s": time.perf_counter() - t0,
                **{f"time/{k}": v for k, v in timer.seconds.items()}})
    if builder.substitutions:
        row["media_substitutions"] = dict(builder.substitutions)
    if not rows:
        return row
    row.update({"completion_len": n_tokens / len(rows), "max_len": max(len(r.completion) for r in rows),
                "truncated_frac": sum(sum(grp.truncated) for grp in groups) / len(rows),
                "tokens_per_s": n_tokens / max(timer.seconds.get("rollout", 1e-9), 1e-9)})
    grp = groups[0]
    row["_sample"] = {"id": grp.sample.id, "label": grp.sample.label,
                      "completions": [{"text": t, **{k: float(v[j]) for k, v in grp.rewards.items()},
                                       "advantage": float(grp.advantages[j])} for j, t in enumerate(grp.texts)]}
    return row


def _model_config(cfg: RunConfig, samples: list[Sample]) -> str:
    """The run config saved inside the model (its label set recorded from ``samples`` if unset)."""
    saved = copy.deepcopy(cfg)
    record_labels(saved, samples)
    return run_config_yaml(saved)


def _nonfinite_reason(stats: dict, norm_reason: str) -> str:
    if "nonfinite_loss" in stats:
        return f"non-finite loss ({stats['nonfinite_loss']}) on this process, so {norm_reason}"
    return norm_reason


def _reward_stats(groups: list[Group], rewards: torch.Tensor) -> dict:
    row = {"reward_std_in_group": float(rewards.std(dim=1).mean()) if rewards.shape[1] > 1 else 0.0,
           "zero_adv_groups": int((rewards.std(dim=1) == 0).sum())}
    for name in groups[0].rewards:
        vals = torch.cat([grp.rewards[name] for grp in groups])
        row[f"reward/{name}"] = float(vals.mean())
        row[f"reward/{name}_std"] = float(vals.std()) if len(vals) > 1 else 0.0
    return row
