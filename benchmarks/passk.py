"""Greedy against sampled accuracy of one or more models on labelled clips: what GRPO's sampled
training signal can and cannot change in the greedy answer.

For each model and each clip: the greedy answer (the evaluation's decoding) and G completions
sampled at ``--temperature`` (the rollout's decoding). Per model it prints and writes (``--out``,
JSON):

- ``greedy_acc`` / ``greedy_uar``: the greedy answer's accuracy and UAR (what the demo reports),
- ``sampled_acc``: the mean accuracy of the sampled completions (GRPO's ``reward/accuracy``),
- ``pass_at_g``: share of clips with at least one correct sample (the groups GRPO can learn from),
- ``majority_acc`` / ``majority_uar``: the most frequent sampled emotion (ties: the earliest),
- ``sampled_acc_greedy_right`` / ``sampled_acc_greedy_wrong``: the sampled accuracy on the clips
  whose greedy answer is right / wrong (sharpening moves the first towards 1; only learning moves
  the second's clips across),
- ``mixed_groups_greedy_wrong``: share of clips with a wrong greedy answer and at least one right
  sample (where a GRPO update can push the greedy answer over).

Usage (from the repository root, the demo's config):

    python benchmarks/passk.py --config configs/demo.yaml --manifest VAL.jsonl --clips 280 \
        --model cold=RUN/coldstart_sft/model --model grpo=RUN/grpo/model --out passk.json
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def _uar(labels: list[str], preds: list[str | None]) -> float:
    classes = sorted(set(labels))
    rec = []
    for c in classes:
        idx = [i for i, t in enumerate(labels) if t == c]
        rec.append(sum(preds[i] == c for i in idx) / len(idx))
    return sum(rec) / len(rec)


def measure(cfg, path: str, samples, *, group: int, temperature: float, batch: int) -> dict:
    """The statistics above for the model at ``path`` on ``samples``."""
    import torch

    from emorl.models.adapter import SamplingParams, sample_by_modality
    from emorl.recipes.rewards import recipe_for
    from emorl.runs import load_adapter, make_builder

    recipe = recipe_for(cfg)
    base, _, state = path.partition("+")
    adapter = load_adapter(cfg, base)
    if state:  # a training checkpoint's weights (checkpoints/step-N/model_state.pt) on the model they came from
        adapter.model.load_state_dict(torch.load(state, map_location="cpu"))
    adapter.model.eval()
    builder = make_builder(cfg, adapter)
    greedy_p = SamplingParams(cfg.eval.max_new_tokens, greedy=True)
    sample_p = SamplingParams(cfg.sampling.max_new_tokens, temperature, cfg.sampling.top_p, cfg.sampling.top_k)
    labels, greedy, votes, right = [], [], [], []
    torch.manual_seed(cfg.seed)
    for i in range(0, len(samples), batch):
        chunk = samples[i : i + batch]
        prompts = [builder.prompt(s) for s in chunk]
        with torch.no_grad():
            g = sample_by_modality(adapter, prompts, 1, greedy_p)
            s = sample_by_modality(adapter, prompts, group, sample_p)
        for smp, gt, st in zip(chunk, g.texts, s.texts):
            labels.append(smp.label)
            greedy.append(recipe.parse(gt[0], smp.labels, smp.words).emotion)
            ems = [recipe.parse(t, smp.labels, smp.words).emotion for t in st]
            right.append([e == smp.label for e in ems])
            cnt = Counter(e for e in ems if e is not None)
            votes.append(max(cnt, key=lambda e: (cnt[e], -ems.index(e))) if cnt else None)
    n = len(labels)
    g_ok = [p == t for p, t in zip(greedy, labels)]
    acc_by = {k: [sum(r) / len(r) for r, ok in zip(right, g_ok) if ok == k] for k in (True, False)}
    return {
        "model": path,
        "clips": n,
        "group": group,
        "temperature": temperature,
        "greedy_acc": sum(g_ok) / n,
        "greedy_uar": _uar(labels, greedy),
        "sampled_acc": sum(sum(r) for r in right) / (n * group),
        "pass_at_g": sum(any(r) for r in right) / n,
        "majority_acc": sum(v == t for v, t in zip(votes, labels)) / n,
        "majority_uar": _uar(labels, votes),
        "sampled_acc_greedy_right": sum(acc_by[True]) / max(len(acc_by[True]), 1),
        "sampled_acc_greedy_wrong": sum(acc_by[False]) / max(len(acc_by[False]), 1),
        "mixed_groups_greedy_wrong": sum((not ok) and any(r) for r, ok in zip(right, g_ok)) / n,
        "greedy_classes": dict(Counter(str(p) for p in greedy)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="configs/demo.yaml")
    ap.add_argument("--manifest", required=True)
    ap.add_argument(
        "--model",
        action="append",
        required=True,
        help="NAME=DIR, or NAME=DIR+CHECKPOINT/model_state.pt (the weights of a training checkpoint "
        "on the model DIR it started from); repeatable",
    )
    ap.add_argument("--clips", type=int, default=0, help="first N clips (0: all)")
    ap.add_argument("--group", type=int, default=0, help="samples per clip (0: grpo.completions_per_prompt)")
    ap.add_argument("--temperature", type=float, default=None, help="default: sampling.temperature")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--out", default="")
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args(argv)
    from emorl.config import load_config
    from emorl.runs import load_samples

    cfg = load_config(a.config, a.overrides)
    samples = load_samples(a.manifest, default="test")
    samples = samples[: a.clips] if a.clips else samples
    group = a.group or cfg.grpo.completions_per_prompt
    temp = cfg.sampling.temperature if a.temperature is None else a.temperature
    results = {}
    for spec in a.model:
        name, _, path = spec.partition("=")
        results[name] = r = measure(cfg, path, samples, group=group, temperature=temp, batch=a.batch)
        print(
            f"{name}: greedy acc {r['greedy_acc']:.3f} UAR {r['greedy_uar']:.3f} | sampled acc "
            f"{r['sampled_acc']:.3f} pass@{group} {r['pass_at_g']:.3f} majority {r['majority_acc']:.3f} | sampled "
            f"acc where greedy right {r['sampled_acc_greedy_right']:.3f}, wrong {r['sampled_acc_greedy_wrong']:.3f}; "
            f"greedy wrong with a right sample {r['mixed_groups_greedy_wrong']:.3f}",
            flush=True,
        )
    if a.out:
        from emorl.utils import atomic_write_json

        atomic_write_json(Path(a.out), results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
