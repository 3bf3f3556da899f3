"""Supervised fine-tuning on (clip, target completion) pairs: cold-start reasoning traces
(R1-Omni's EMER-SFT) or label-only answers (R1-Omni's MAFW-DFEW-SFT baseline).

Loss: cross-entropy on the assistant tokens only (the target completion and its EOS), averaged
over target tokens, with the clip's full media in the prompt.
"""

from __future__ import annotations

import copy
import math
import random
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from emorl.config import RunConfig, record_labels, run_config_yaml, to_dict
from emorl.data.loader import PromptBuilder
from emorl.data.manifest import Sample
from emorl.models.adapter import OmniAdapter
from emorl.recipes.rewards import recipe_for
from emorl.train_utils import (
    JsonlLogger,
    all_reduce_grads,
    barrier,
    check_launch,
    freeze_towers,
    global_sum,
    make_optimizer,
    master_weights,
    open_trackers,
    save_model_atomic,
    world_info,
)


def label_target(label: str, style: str = "tags") -> str:
    """Label-only SFT target in the recipe's answer style: the answer with no reasoning."""
    return f"<answer>{label}</answer>" if style in ("tags", "steps") else f"\\boxed{{{label}}}"


def sft_targets(samples: list[Sample], target: str, rng: np.random.Generator, style: str = "tags") -> list[str]:
    """Targets per sample: ``trace`` uses ``meta.trace`` (corpus adapters, e.g. EMER) or, for the
    synthetic worlds, a trace generated from the clip's (image's) true cues, the image world's in
    answer ``style``; ``label`` uses the label only, as
    the sample's own label set words it (MELD ``joy``), in answer ``style``."""
    out = []
    for s in samples:
        if target == "label":
            out.append(label_target(s.words.get(s.label, s.label), style))
        elif target == "trace":
            if "trace" in s.meta:
                out.append(s.meta["trace"])
            elif s.dataset == "synthetic":
                from emorl.data.synthetic.traces import make_trace

                out.append(make_trace(s.meta, s.label, rng))
            elif s.dataset == "synthetic-images":  # SET (or <think>) traces from the image's true cues
                from emorl.data.synthetic.image_traces import image_trace

                out.append(image_trace(s.meta, s.label, rng, style=style, word=s.words.get(s.label, s.label)))
            else:
                raise ValueError(f"sample {s.id}: sft.target=trace needs meta.trace (dataset {s.dataset!r} has none)")
        else:
            raise ValueError(f"unknown sft.target {target!r}; expected trace or label")
    return out


def train_sft(cfg: RunConfig, adapter: OmniAdapter, builder: PromptBuilder, samples: list[Sample], out: Path,
              *, progress: bool = True, fresh_traces_each_epoch: bool = True) -> dict:
    """SFT for ``cfg.sft.epochs`` epochs; writes ``out/metrics.jsonl`` and ``out/model``."""
    from accelerate import Accelerator

    s_cfg = cfg.sft
    rng = random.Random(cfg.seed)
    trace_rng = np.random.default_rng(cfg.seed)
    tok = adapter.tokenizer
    eos = torch.tensor([adapter.eos_id])
    check_launch("sft")
    Accelerator(cpu=cfg.model.device == "cpu")  # starts the process group under torchrun / accelerate launch
    world, rank = world_info()
    progress = progress and rank == 0
    model = adapter.model
    freeze_towers(adapter, vision=cfg.model.freeze_vision, audio=cfg.model.freeze_audio)
    steps_per_epoch = math.ceil(len(samples) / s_cfg.batch_size)
    total = max(1, round(s_cfg.epochs * steps_per_epoch))
    opt, sched = make_optimizer(model, s_cfg.lr, s_cfg.weight_decay, total, int(s_cfg.warmup_ratio * total), "cosine",
                                master=master_weights(cfg.model.master_weights, model))
    out.mkdir(parents=True, exist_ok=True)
    log = JsonlLogger(out / "metrics.jsonl", open_trackers(cfg.report_to, out, to_dict(cfg))) if rank == 0 else None
    model.train()
    step, targets, order = 0, None, []
    first_loss = last_loss = float("nan")
    bar = tqdm(total=total, desc=f"sft[{s_cfg.target}]", disable=not progress, dynamic_ncols=True)
    while step < total:
        if not order:
            order = list(range(len(samples)))
            rng.shuffle(order)
            if targets is None or fresh_traces_each_epoch:  # varied wording across epochs
                targets = sft_targets(samples, s_cfg.target, trace_rng, recipe_for(cfg).style)
        idx, order = order[: s_cfg.batch_size], order[s_cfg.batch_size :]
        # several processes: each takes every world-th sample of the (same) batch; the loss is
        # normalised by the whole batch's target tokens and the gradients are summed
        mine = idx[rank::world]
        prompts = [builder.prompt(samples[i]) for i in mine]
        comps = [torch.cat([torch.tensor(tok(targets[i], add_special_tokens=False)["input_ids"]), eos]) for i in mine]
        n_tok = global_sum(sum(len(c) for c in comps))
        loss_sum = 0.0
        for mod in sorted({p.modality for p in prompts}, key=lambda m: m.value):
            sel = [j for j, p in enumerate(prompts) if p.modality == mod]
            lp, mask, _ = adapter.completion_logprobs([prompts[j] for j in sel], [comps[j] for j in sel])
            loss = -(lp * mask).sum() / n_tok
            loss.backward()
            loss_sum += float(loss.detach())
        all_reduce_grads(adapter.model)
        loss_sum = global_sum(loss_sum)
        torch.nn.utils.clip_grad_norm_(model.parameters(), s_cfg.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        first_loss = loss_sum if step == 1 else first_loss
        last_loss = loss_sum
        if log:
            log.log({"step": step, "loss": loss_sum, "lr": sched.get_last_lr()[0], "tokens": n_tok})
        bar.update(1)
        bar.set_postfix(loss=f"{loss_sum:.3f}")
    bar.close()
    model.eval()
    if log:
        log.close()
        saved = copy.deepcopy(cfg)
        record_labels(saved, samples)
        save_model_atomic(adapter, out / "model", run_config=run_config_yaml(saved))
    barrier()
    return {"steps": total, "first_loss": first_loss, "last_loss": last_loss}
