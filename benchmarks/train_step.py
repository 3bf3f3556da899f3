"""The whole trainer step's throughput, for ``train_memory.py``: verl / EasyR1 token accounting,
EMO-R3's reflection as its own phase, and the ``--family`` models with their real processors.

Token accounting as verl's ``perf/throughput`` (EasyR1 logs the same): the tokens of the rollout
batch, for every completion its prompt's tokens (media placeholders included: what the model
reads) plus its own tokens, so a prompt is counted once per completion; divided by the step's
seconds and the number of GPUs. Reflection passes, like EasyR1's own extra passes, add time but
no tokens.

The reflection (``emorl.rl.reflection.Reflection``, the policy as the judge as the recipe's
default) runs inside the trainer's ``reward`` phase; ``TimedReward`` times it apart. On random
weights the completions carry no SET structure, so the judge would have nothing to read (no
``<step1>…</step2>``: the passes are skipped); the judge therefore reads each completion's own
tokens laid out in EMO-R3's three stages (a third each, ``set_text``), so its prompts are as long
as a real one's reasoning. Its answers are ``reflection.max_new_tokens`` tokens exactly (EOS is
suppressed, as for the rollout; a real answer is one word and EOS).
"""

from __future__ import annotations

import dataclasses
import random
import re
import time
import zlib
from types import SimpleNamespace

import grpo_step as gs
import torch

from emorl.models.adapter import Modality, PromptInputs

# EasyR1's published throughput (docs of hiyouga/EasyR1, in ../shared/reference/rl-frameworks.md:
# "8xH100 Qwen2.5-VL geo3k: 3B 1800 tok/s/GPU, 120 s/step, MFU 8.1%; 7B 1600-2000 tok/s/GPU")
REFERENCE = {
    "source": "EasyR1 (hiyouga/EasyR1) README baseline, as summarised in shared/reference/rl-frameworks.md",
    "accounting": "verl perf/throughput: sum over rollout rows of (prompt + response tokens) / step seconds / GPUs",
    "runs": [
        {
            "model": "Qwen2.5-VL-3B-Instruct",
            "task": "geo3k GRPO",
            "gpus": "8x H100",
            "tokens_per_s_per_gpu": 1800,
            "step_s": 120,
            "mfu": 0.081,
        },
        {
            "model": "Qwen2.5-VL-7B-Instruct",
            "task": "geo3k GRPO",
            "gpus": "8x H100",
            "tokens_per_s_per_gpu": [1600, 2000],
            "step_s": [120, 145],
            "mfu": [0.16, 0.23],
        },
    ],
    "compare_with": {"3b": "Qwen2.5-VL-3B-Instruct", "7b": "Qwen2.5-VL-7B-Instruct"},
}


class TimedReward:
    """The step's ``extra_rewards``: a random component (so that advantages are not all zero and the
    update moves the weights), the reflection's components when given, the seconds the reflection
    took (``reflection_s`` and per pass), and the batch's tokens (``prompt_tokens``,
    ``completion_tokens``) from the groups it is handed: every group of the step (no dynamic
    sampling in the benchmark)."""

    def __init__(self, seed: int, reflection=None, decode=None, sync=None):
        self.gen = random.Random(seed)
        self.reflection, self.decode, self.sync = reflection, decode, sync or (lambda: None)
        self.last: dict = {}

    def __call__(self, groups) -> list[list[dict[str, float]]]:
        self.last = {
            "prompt_tokens": sum(g.prompt.length * g.size for g in groups),
            "completion_tokens": sum(len(c) for g in groups for c in g.completions),
            "rows": sum(g.size for g in groups),
        }
        comps = [[{} for _ in g.texts] for g in groups]
        if self.reflection is not None:
            views = [dataclasses.replace(g, texts=[set_text(c, self.decode) for c in g.completions]) for g in groups]
            self.sync()
            t = time.perf_counter()
            comps = self.reflection(views)
            self.sync()
            self.last["reflection_s"] = time.perf_counter() - t
            self.last["reflection_passes_s"] = dict(self.reflection.last_seconds)
            answers = [a for g in self.reflection.last_outputs for a in g]  # None: the pass was skipped
            self.last["reflection_answers"] = {k: sum(a.get(k) is not None for a in answers) for k in answers[0]}
        return [[{**c, "random": self.gen.random()} for c in g] for g in comps]


def set_text(ids: torch.Tensor, decode) -> str:
    """A completion's tokens as EMO-R3's structured answer: a third in each of the three stages,
    then a boxed answer (what the reflection's coherence and grounding questions quote)."""
    k = max(1, len(ids) // 3)
    parts = [decode(ids[:k]), decode(ids[k : 2 * k]), decode(ids[2 * k :])]
    return "".join(f"<step{i + 1}>{p}</step{i + 1}>" for i, p in enumerate(parts)) + "\\boxed{happy}"


class SyntheticJudge:
    """The policy as the judge for the synthetic qwen2.5-omni prompts, whose stub processor cannot
    encode text: ``encode_text`` gives one id per word (a decoded id is itself), and ``encode``
    the clip's own rollout prompt (media tensors and placeholder block) followed by the question's
    ids. Everything else is the policy adapter's."""

    def __init__(self, adapter, prompts: dict[str, PromptInputs], vocab: int):
        self._adapter, self._prompts = adapter, prompts
        self._ids = gs.special_ids(vocab)
        self._n = min(vocab - 16, gs.QWEN_IDS["pad"])

    def __getattr__(self, name):
        return getattr(self._adapter, name)

    def _text_ids(self, text: str) -> list[int]:
        return [
            int(w) if w.isdigit() and int(w) < self._n else zlib.crc32(w.encode()) % self._n
            for w in re.findall(r"\S+", text)
        ]

    def encode_text(self, text: str, *, key: str = "") -> PromptInputs:
        return PromptInputs(torch.tensor([self._ids["im_start"], *self._text_ids(text)]), {}, Modality.TEXT, key)

    def encode(self, frames, audio, text: str, modality: Modality, *, fps=None, key: str = "") -> PromptInputs:
        p = self._prompts[key.split("|")[0]]
        if modality != p.modality:
            raise NotImplementedError(
                f"synthetic judge: {modality} of a {p.modality} prompt (reflection.grounding=joint)"
            )
        ids = p.input_ids.tolist()
        end = max(i for i, t in enumerate(ids) if t in (self._ids["vision_eos"], self._ids["audio_eos"])) + 1
        return PromptInputs(torch.tensor(ids[:end] + self._text_ids(text)), p.mm, p.modality, key)


def family_model(args, shape, dtype, device):
    """A random-weight model of ``args.family`` at ``shape``'s sizes with its real processor
    (``grpo_step.family_model_and_prompts``, no prompts)."""
    sizes = gs.FAMILY_FRAME_SIZE[args.family]
    if args.shape not in sizes:
        raise SystemExit(f"--family {args.family} runs the shapes {', '.join(sizes)}, not {args.shape}")
    ns = SimpleNamespace(
        family=args.family, shape=args.shape, frame_size=sizes[args.shape], attn="sdpa", prompts=0, frames=0
    )
    model, adapter, _ = gs.family_model_and_prompts(shape, ns, dtype, device, Modality.VIDEO, torch.Generator())
    return model, adapter, sizes[args.shape]


def family_prompts(adapter, family: str, d: dict, frame_size: int, ids: list[str], seed: int, modality: Modality):
    """Prompts encoded by the family's processor from random frames (and audio), as
    ``grpo_step.family_model_and_prompts``; returns the prompts and the clips (for the reflection's
    grounding pass, which encodes the clip again with its question)."""
    import numpy as np

    from emorl.models import tiny

    rng = np.random.default_rng(seed)
    fps = d["frames"] / d["audio_seconds"]
    prompts, clips = {}, {}
    for sid in ids:
        frames = rng.integers(0, 256, (d["frames"], frame_size, frame_size, 3), dtype=np.uint8)
        audio = (0.1 * rng.standard_normal(int(d["audio_seconds"] * 16000))).astype(np.float32)
        audio = audio if modality.has_audio else None
        clips[sid] = SimpleNamespace(frames=frames, audio=audio, fps=fps)
        text = tiny.BASE_CORPUS.strip().splitlines()[0]
        prompts[sid] = adapter.encode(frames, audio, text, modality, fps=fps, key=sid)
    return prompts, clips


def throughput(last: dict, step_s: float, gpus: int) -> dict:
    """verl's accounting for one step (``last``: what ``TimedReward`` counted)."""
    total = last["prompt_tokens"] + last["completion_tokens"]
    return {
        "prompt_tokens": last["prompt_tokens"],
        "completion_tokens": last["completion_tokens"],
        "tokens_total": total,
        "gpus": gpus,
        "tokens_per_s_per_gpu": total / step_s / gpus,
    }


def phases(row: dict, last: dict) -> dict:
    """The step's phases in seconds: the trainer's ``time/*``, with the reflection taken out of
    ``reward`` as its own phase (they then add up to the step less its bookkeeping)."""
    out = {k.removeprefix("time/"): v for k, v in row.items() if k.startswith("time/")}
    if "reflection_s" in last:
        out["reward"] = out.get("reward", 0.0) - last["reflection_s"]
        out["reflection"] = last["reflection_s"]
    return out


def print_throughput(report: dict) -> None:
    """One line per GRPO step: phases, step seconds, tokens and tokens/s/GPU; then EasyR1's figure."""
    rows = [(r, s) for r in report["results"] if r.get("fits") and r.get("stage") == "grpo" for s in r["steps"]]
    if not rows:
        return
    print(f"\nWhole step, verl token accounting ({report['family']}, shape {report['shape']}, {report['device']})")
    print(
        f"{'config':14s} step {'step_s':>8s} {'prompt':>7s} {'compl':>6s} {'total':>7s} {'tok/s/GPU':>10s}  phases (s)"
    )
    for r, s in rows:
        ph = ", ".join(f"{k} {v:.3f}" for k, v in s["phases_s"].items())
        print(
            f"{r['config']:14s} {s['step']:4d} {s['step_s']:8.3f} {s['prompt_tokens']:7d} {s['completion_tokens']:6d} "
            f"{s['tokens_total']:7d} {s['tokens_per_s_per_gpu']:10.1f}  {ph}"
        )
    for r in report["results"]:
        c = r.get("checkpoint")
        if c:
            print(
                f"{r['config']:14s} checkpoint: "
                + (
                    f"skipped ({c['skipped']})"
                    if "skipped" in c
                    else f"{c['seconds']:.3f} s, {c['bytes'] / 1e9:.3f} GB"
                )
            )
    ref = report["reference"]["runs"][0]
    print(
        f"reference: EasyR1 {ref['model']} {ref['task']} on {ref['gpus']}: {ref['tokens_per_s_per_gpu']} tok/s/GPU "
        f"({ref['step_s']} s/step), same accounting"
    )
