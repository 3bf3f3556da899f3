"""One GRPO rollout with each group decoder, on a real model directory and a real manifest.

The prompts are built as training builds them (``emorl.runs.make_builder`` with the recipe's
prompt and media settings), then ``sample_groups_shared`` samples G completions per prompt with
``--decode`` dynamic (KV repeated G times, as ``generate``) and static (``GroupDecoder``: each
prompt's KV once per group). Each mode runs ``--repeats`` times after one warm-up, alternating;
every run starts from the same seed, so the two modes draw from the same random stream, and the
report says how many sampled rows came out token for token equal.

    python benchmarks/rollout_decode.py --model /tmp/demo9/coldstart_sft/model \
        --manifest /tmp/demo9/data/train.jsonl --config configs/demo.yaml
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from emorl.config import load_config
from emorl.models import group
from emorl.models.adapter import SamplingParams
from emorl.runs import load_adapter, load_samples, make_builder

MODES = ("dynamic", "static")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="a model directory (save_pretrained) or hub id")
    ap.add_argument("--manifest", required=True, help="JSONL manifest; its first --prompts rows are used")
    ap.add_argument("--config", default="configs/demo.yaml", help="recipe for the prompt, media and sampling")
    ap.add_argument("--prompts", type=int, default=None, help="default: grpo.prompts_per_step")
    ap.add_argument("--group", type=int, default=None, help="default: grpo.completions_per_prompt")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="JSON output path")
    args = ap.parse_args(argv)

    cfg = load_config(args.config)
    n = args.prompts or cfg.grpo.prompts_per_step
    g = args.group or cfg.grpo.completions_per_prompt
    adapter = load_adapter(cfg, args.model)
    if not group.supports(adapter):
        raise SystemExit(f"{args.model}: the group decoder covers Qwen2.5-Omni thinkers only")
    builder = make_builder(cfg, adapter)
    prompts = [builder.prompt(s) for s in load_samples(args.manifest)[:n]]
    params = SamplingParams(
        max_new_tokens=cfg.sampling.max_new_tokens,
        temperature=cfg.sampling.temperature,
        top_p=cfg.sampling.top_p,
        top_k=cfg.sampling.top_k,
    )

    def rollout(mode):
        torch.manual_seed(args.seed)
        t = time.perf_counter()
        out = group.sample_groups_shared(adapter, prompts, g, params, decode=mode)
        return time.perf_counter() - t, out

    for mode in MODES:  # warm-up
        rollout(mode)
    times: dict[str, list[float]] = {m: [] for m in MODES}
    outs = {}
    for _ in range(args.repeats):
        for mode in MODES:
            s, outs[mode] = rollout(mode)
            times[mode].append(s)
    rows = [(a.tolist(), b.tolist()) for xs, ys in zip(outs["dynamic"].ids, outs["static"].ids) for a, b in zip(xs, ys)]
    report = {
        "model": args.model,
        "manifest": args.manifest,
        "prompts": n,
        "group": g,
        "prompt_tokens": [p.length for p in prompts],
        "max_new_tokens": params.max_new_tokens,
        "completion_tokens": sum(len(a) for a, _ in rows),
        "torch_threads": torch.get_num_threads(),
        "seconds": times,
        "median_s": {m: statistics.median(v) for m, v in times.items()},
        "sampled_rows_equal": sum(a == b for a, b in rows),
        "rows": len(rows),
    }
    for mode in MODES:
        print(
            f"{mode:8s} rollout s: "
            + " ".join(f"{x:.3f}" for x in times[mode])
            + f"  (median {report['median_s'][mode]:.3f})"
        )
    print(
        f"{n} prompts x G={g}, prompt tokens {report['prompt_tokens']}, {report['completion_tokens']} tokens "
        f"sampled; rows token-equal between the modes: {report['sampled_rows_equal']} of {len(rows)}"
    )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
