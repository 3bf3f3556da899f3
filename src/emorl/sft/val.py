"""Validation during SFT (``sft.val``): every ``sft.val_every`` steps and after the last one, the
validation rows are scored and the best model so far is kept.

- ``val/loss``: the token-mean cross-entropy of the validation targets (``sft.target``: the rows'
  traces or labels), teacher-forced, as the training loss.
- with ``sft.val_generate``: ``val/war``, ``val/uar``, ``val/format_rate`` of greedy answers
  (``eval.max_new_tokens``, graded by the recipe's grader, as ``emorl eval``).

``sft.val_metric`` (``loss``: lower is better; ``war``, ``uar``, ``format_rate``: higher) decides
the best: its model is saved to ``out/best_model`` (a normal model folder, LoRA merged) and its step
and value to ``out/best.json``. Several processes each score their share of the rows inside the
strategy's ``gathered`` context (no collective inside, whatever the number of rows each has), then
the sums and answers are combined.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from emorl.data.manifest import label_space
from emorl.recipes.rewards import recipe_for
from emorl.sft.batch import Item, sft_loss, sft_micro_batches, sft_targets, target_ids
from emorl.train_utils import global_sum
from emorl.utils import atomic_write_json

VAL_METRICS = {"loss": -1, "war": 1, "uar": 1, "format_rate": 1}  # +1: higher is better


class Validator:
    """Scores the validation rows for a ``Session`` and keeps the best model (module docstring)."""

    def __init__(self, cfg, adapter, builder, samples, session):
        c = cfg.sft
        if c.val_metric not in VAL_METRICS:
            raise ValueError(f"sft.val_metric must be one of {', '.join(VAL_METRICS)}, got {c.val_metric!r}")
        if c.val_metric != "loss" and not c.val_generate:
            raise ValueError(
                f"sft.val_metric={c.val_metric} is measured on generated answers: set sft.val_generate=true"
            )
        if c.val_every < 0:
            raise ValueError(f"sft.val_every must be >= 0, got {c.val_every}")
        self.cfg, self.adapter, self.builder, self.s = cfg, adapter, builder, session
        if not samples:
            raise ValueError(
                f"sft.val={c.val!r}: no validation rows were given (emorl.runs.validation_samples loads them)"
            )
        self.samples = samples
        self.recipe = recipe_for(cfg)
        try:  # fixed wording for synthetic traces, so that losses compare across validations
            self.targets = sft_targets(self.samples, c.target, np.random.default_rng(cfg.seed + 1), self.recipe.style)
        except ValueError as e:
            if c.val_metric == "loss":
                raise ValueError(
                    f"sft.val ({c.val or 'validation rows'}): {e}. Without targets there is no validation "
                    "loss: set sft.val_generate=true sft.val_metric=uar"
                ) from None
            self.targets = None
        self.best: dict | None = None

    def due(self, step: int) -> bool:
        every = self.cfg.sft.val_every
        return step == self.s.k.steps or bool(every and step % every == 0)

    def run(self, step: int, run_config: str) -> dict:
        """Score, log, and save ``best_model`` when the metric improved. Collective."""
        row = self.score()
        metric = self.cfg.sft.val_metric
        value = row[f"val/{metric}"]
        sign = VAL_METRICS[metric]
        if self.best is None or sign * (value - self.best["value"]) > 0:
            self.best = {"step": step, "metric": metric, "value": value}
            out = Path(self.s.out)
            self.s.save_model(out / "best_model", run_config)
            if self.s.main:
                atomic_write_json(out / "best.json", self.best)
        row["val/best_step"] = self.best["step"]
        return row

    def score(self) -> dict:
        """``val/*`` numbers over every process's share of the validation rows."""
        s, adapter, c = self.s, self.adapter, self.cfg.sft
        mine = list(range(len(self.samples)))[s.rank :: s.world]
        loss = tokens = 0.0
        rows: list[dict] = []
        adapter.model.eval()
        with torch.no_grad(), s.strategy.gathered():
            if self.targets is not None:
                items = [
                    Item(self.samples[i], self.builder.prompt(self.samples[i]), target_ids(adapter, self.targets[i]))
                    for i in mine
                ]
                size = min(c.micro_batch_samples, max(1, c.samples_per_step // s.world))
                micro = sft_micro_batches(
                    items, size, by_modality=adapter.one_modality_per_batch, by_length=c.group_by_length
                )
                st = sft_loss(adapter, micro, None, norm_tokens=1)
                loss, tokens = st["loss"], st["tokens"]
            if c.val_generate and mine:
                from emorl.eval.evaluate import predict

                rows = predict(
                    adapter,
                    self.builder,
                    [self.samples[i] for i in mine],
                    recipe=self.recipe,
                    batch_size=self.cfg.eval.batch_size,
                    max_new_tokens=self.cfg.eval.max_new_tokens,
                    modality=self.builder.modality,
                    progress=False,
                )
        adapter.model.train()
        out: dict = {}
        if self.targets is not None:
            out["val/loss"] = global_sum(float(loss)) / max(global_sum(float(tokens)), 1.0)
        if c.val_generate:
            out.update(self._answers(rows))
        return out

    def _answers(self, rows: list[dict]) -> dict:
        from emorl.eval.evaluate import metrics_of

        if self.s.world > 1:
            import torch.distributed as dist

            every: list = [None] * self.s.world
            dist.all_gather_object(every, rows)
            rows = [r for part in every for r in part]
        m = metrics_of(rows, label_space(self.samples))
        return {"val/war": m["war"], "val/uar": m["uar"], "val/format_rate": m["format_rate"]}
