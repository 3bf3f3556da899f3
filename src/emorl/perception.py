"""Perception pretraining of a model's towers: the tiny model's stand-in for encoder pretraining.

A released Qwen2.5-Omni (or Qwen2.5-VL) arrives with vision and audio encoders that already
measure faces and voices. emorl's tiny thinker starts from random weights, and when every stage has to learn
perception through the LLM it stalls near UAR 0.3 however long it trains (docs/results.md), while
the same vision tower with a linear head on its pooled output learns in seconds. So the demo
pretrains the towers first, on clips disjoint from every later split and *without emotion labels*:
each tower the family has (the adapter's ``kind_modules`` for video and audio: the tower and any
projector into the text width), through a temporary linear head on its mean-pooled output in the
text width, regresses the attribute
values drawn for the clip (the synthetic world's face and voice cues, scaled to [-1, 1]) and
classifies its categorical attribute (head move; pitch contour). Still images of the synthetic
image world train the vision tower alone (kind ``image``) on what the drawing shows: brightness,
colourfulness, palette (valence) and stroke restlessness (arousal), the face's expression, and the
scene as the category. The heads are discarded; the LLM is untouched. This is the analogue of the generic pretraining a real encoder had, not of
emotion training: no stage before the cold start sees a label.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from emorl.data.manifest import Sample
from emorl.models.adapter import Modality
from emorl.prompting import PromptBuilder, carried
from emorl.train_utils import JsonlLogger, save_model_atomic

MODALITIES = ("video", "audio")
_MOUTH = ("mouth_curve", "mouth_open", "mouth_width")


def _attributes():
    from emorl.data.synthetic.scenes import EXPRESSIONS, SCENES
    from emorl.data.synthetic.world import AUDIO_CUES, CONTOUR_P, HEAD_MOVE_P, VIDEO_CUES

    # still images (the synthetic image world, flat cues): what the drawing shows; the face's
    # expression ("none" or one of EXPRESSIONS) as one-hot values, the scene as the category
    image = {
        "brightness": (0.0, 1.0),
        "colorfulness": (0.0, 1.0),
        "valence": (-1.0, 1.0),
        "arousal": (0.0, 1.0),
        **{f"face={e}": (0.0, 1.0) for e in ("none", *EXPRESSIONS)},
    }
    return {
        "video": (VIDEO_CUES, "head_move", tuple(HEAD_MOVE_P["neutral"])),
        "audio": (AUDIO_CUES, "pitch_contour", tuple(CONTOUR_P["neutral"])),
        "image": (image, "scene", tuple(SCENES)),
    }


def _cues(s: Sample, modality: str) -> dict | None:
    """A sample's attribute values for one tower: ``meta.cues.<modality>`` for clips; the flat
    ``meta.cues`` of a synthetic still image for ``image`` (its face as ``face=<expression>`` = 1)."""
    cues = s.meta.get("cues", {})
    if modality != "image":
        return cues.get(modality)
    if "scene" not in cues:
        return None
    faces = [k.removeprefix("face=") for k in _attributes()["image"][0] if k.startswith("face=")]
    return {**cues, **{f"face={e}": float(cues.get("face") == e) for e in faces}}


def attribute_targets(samples: list[Sample], modality: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Targets of one tower for a batch: ``values`` (B, n_cues) in [-1, 1], ``category`` (B,) and
    ``mask`` (B, n_cues), 0 where the attribute cannot be seen (mouth cues under a mask).

    Reads ``meta.cues`` (the synthetic world's schema); other datasets have no attribute labels.
    """
    continuous, cat_name, categories = _attributes()[modality]
    values, cats, mask = [], [], []
    for s in samples:
        cues = _cues(s, modality)
        if cues is None:
            where = "meta.cues (a synthetic image's)" if modality == "image" else f"meta.cues.{modality}"
            raise ValueError(
                f"sample {s.id} (dataset {s.dataset!r}): perception pretraining needs {where} "
                "(attribute values, as the synthetic worlds write them)"
            )
        values.append([(float(cues[c]) - (lo + hi) / 2) / ((hi - lo) / 2) for c, (lo, hi) in continuous.items()])
        cats.append(categories.index(cues[cat_name]))
        hidden = modality == "video" and bool(cues.get("occluded"))
        mask.append([0.0 if hidden and c in _MOUTH else 1.0 for c in continuous])
    return torch.tensor(values), torch.tensor(cats), torch.tensor(mask)


def attribute_loss(
    pred: torch.Tensor, values: torch.Tensor, category: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Masked mean squared error of the continuous attributes plus cross-entropy of the categorical one.

    pred: (B, n_cues + n_categories); values, mask: (B, n_cues); category: (B,).
    """
    n = values.shape[1]
    mse = (((pred[:, :n] - values) ** 2) * mask).sum() / mask.sum().clamp(min=1)
    return mse + nn.functional.cross_entropy(pred[:, n:], category)


def pretrain_towers(
    adapter,
    builder: PromptBuilder,
    samples: list[Sample],
    out: str | Path,
    *,
    epochs: float = 8,
    lr: float = 1e-3,
    batch_size: int = 8,
    seed: int = 0,
    progress: bool = True,
    model_dir: str | Path | None = None,
) -> dict:
    """Train the vision and audio towers (those the family has) on attribute targets; save the
    model to ``model_dir`` (default ``out/model``).

    Writes ``out/metrics.jsonl`` (per step: ``loss/video``, ``loss/audio``). Returns the mean loss of
    each tower over the first and the last epoch.
    """
    if not samples:
        raise ValueError("perception pretraining needs at least one sample")
    out = Path(out)
    images = [carried(s) == "image" for s in samples]
    if any(images) and not all(images):
        raise ValueError("perception pretraining takes either still images or clips, not a mix")
    kinds = ["image"] if all(images) else [m for m in MODALITIES if Modality(m) in adapter.modalities]
    modules = [mod for k in kinds for mod in adapter.kind_modules(k)]
    width = adapter.input_embeddings().weight.shape[1]
    attrs = _attributes()
    torch.manual_seed(seed)
    heads = nn.ModuleDict({m: nn.Linear(width, len(attrs[m][0]) + len(attrs[m][2])) for m in kinds})
    params = [p for mod in modules for p in mod.parameters()] + list(heads.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    steps_per_epoch = math.ceil(len(samples) / batch_size)
    total = max(1, round(epochs * steps_per_epoch))
    rng = random.Random(seed)
    log = JsonlLogger(out / "metrics.jsonl")
    history: list[dict] = []
    adapter.model.train()
    bar = tqdm(total=total, desc="pretrain towers", disable=not progress, dynamic_ncols=True)
    order: list[int] = []
    for step in range(1, total + 1):
        if not order:
            order = list(range(len(samples)))
            rng.shuffle(order)
        batch, order = [samples[i] for i in order[:batch_size]], order[batch_size:]
        prompts = [builder.prompt(s) for s in batch]
        row: dict = {"step": step}
        loss = 0.0
        for m in kinds:
            pooled = torch.stack([f.get(m).mean(0) for f in adapter.encode_kind(m, prompts)])
            values, cat, mask = (t.to(adapter.device) for t in attribute_targets(batch, m))
            part = attribute_loss(heads[m](pooled), values, cat, mask)
            loss = loss + part
            row[f"loss/{m}"] = float(part.detach())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        log.log(row)
        history.append(row)
        bar.update(1)
        bar.set_postfix({m: f"{row[f'loss/{m}']:.3f}" for m in kinds})
    bar.close()
    log.close()
    adapter.model.eval()
    save_model_atomic(adapter, Path(model_dir) if model_dir else out / "model")
    k = min(steps_per_epoch, len(history))
    summary = {"steps": total}
    for m in kinds:
        summary[f"first_epoch_loss/{m}"] = sum(r[f"loss/{m}"] for r in history[:k]) / k
        summary[f"last_epoch_loss/{m}"] = sum(r[f"loss/{m}"] for r in history[-k:]) / k
    return summary
