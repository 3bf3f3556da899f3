"""SFT's data and loss as small functions: targets (traces or labels) per sample, micro-batches
grouped by modality and length, and the token-normalised cross-entropy accumulated over them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from emorl.data.manifest import Sample
from emorl.models.adapter import OmniAdapter, PromptInputs
from emorl.utils import chunks


def label_target(label: str, style: str = "tags") -> str:
    """Label-only SFT target in the recipe's answer style: the answer with no reasoning."""
    return f"<answer>{label}</answer>" if style in ("tags", "steps") else f"\\boxed{{{label}}}"


def sft_targets(samples: list[Sample], target: str, rng: np.random.Generator, style: str = "tags") -> list[str]:
    """Targets per sample: ``trace`` uses ``meta.trace`` (corpus adapters, e.g. EMER, or
    ``emorl traces generate``) or, for the synthetic worlds, a trace generated from the clip's
    (image's) true cues, the image world's in answer ``style``; ``label`` uses the label only, as the
    sample's own label set words it (MELD ``joy``), in answer ``style``."""
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
                raise ValueError(
                    f"sample {s.id}: sft.target=trace needs meta.trace (dataset {s.dataset!r} has none; "
                    "make traces with `emorl traces generate`)"
                )
        else:
            raise ValueError(f"unknown sft.target {target!r}; expected trace or label")
    return out


def target_ids(adapter, text: str) -> torch.Tensor:
    """A target's token ids (L,), ending with EOS (the model learns to stop)."""
    tok = adapter.tokenizer(text, add_special_tokens=False)["input_ids"]
    return torch.cat([torch.tensor(tok, dtype=torch.long), torch.tensor([adapter.eos_id])])


@dataclass
class Item:
    """One training example: its sample, its encoded prompt and its target ids (L,), ending with EOS."""

    sample: Sample
    prompt: PromptInputs
    target: torch.Tensor

    @property
    def length(self) -> int:
        return self.prompt.length + len(self.target)


def sft_micro_batches(
    items: list[Item], size: int, *, by_modality: bool = True, by_length: bool = True
) -> list[list[Item]]:
    """Micro-batches of at most ``size`` items: one modality each (``by_modality``: the adapter's
    ``one_modality_per_batch``), modalities in a fixed order; with ``by_length`` the items of a
    modality are sorted by total length first (longest first, ties in input order), so each
    micro-batch holds similar lengths and pads little."""
    buckets: dict = {}
    for it in items:
        buckets.setdefault(it.prompt.modality.value if by_modality else "", []).append(it)
    out: list[list[Item]] = []
    for key in sorted(buckets):
        group = buckets[key]
        if by_length and len(group) > size:  # one micro-batch per bucket: nothing to group
            group = sorted(group, key=lambda it: -it.length)
        out += [list(c) for c in chunks(group, size)]
    return out


def sft_loss(adapter: OmniAdapter, micro: list[list[Item]], backward, *, norm_tokens: int) -> dict:
    """Accumulate the SFT loss's gradients over ``micro`` (no optimizer step): each micro-batch's
    loss is -sum(target log-probs) / ``norm_tokens`` (the step's target tokens over all processes),
    so the micro-batch losses sum to the step's token-mean loss. ``backward=None`` only scores.
    Returns {"loss": this process's share, "tokens": its target tokens} (and ``nonfinite_loss``
    when a micro-batch's loss was not finite: its gradients are then NaN, so the global
    gradient-norm check skips the step on every process)."""
    stats: dict = {"loss": 0.0, "tokens": 0}
    for mb in micro:
        lp, mask, _ = adapter.completion_logprobs([it.prompt for it in mb], [it.target for it in mb])
        loss = -(lp * mask).sum() / norm_tokens
        stats["loss"] += float(loss.detach())
        stats["tokens"] += int(mask.sum())
        if backward is None:
            continue
        if not torch.isfinite(loss):  # no early exit: the other processes wait in the reduction
            stats["nonfinite_loss"] = float(loss.detach())
            loss = (lp * float("nan")).sum()
        backward(loss)
    return stats
