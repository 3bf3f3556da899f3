"""What the comparisons share: the context a stage list runs over, the tiny model's stages, a
prompt builder for task copies, evaluation with intervals, the judge's passes over a model's
predictions and the judge-as-classifier check (``judge_check``).

The judge check asks the reflection's two questions of a judge on texts whose right answer is
known, balanced by construction: per test sample, its own description (should be yes) and
another sample's, of another class (should be no); reasoning written for its label (should name
it) and for another class (should not). The judge's score (sampled: 1 / 0.5 / 0; log-prob: the
expected score) is read as a classifier of the two halves: its AUC (0.5 = chance) with a
bootstrap interval, and the share of yes / of the label named in each half.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from emorl.config import RunConfig, save_run_config
from emorl.data.manifest import Sample
from emorl.models.adapter import Modality, SamplingParams
from emorl.prompting import PromptBuilder
from emorl.utils import seed_everything

SPLITS = ("test", "ood")
JUDGE_PARAMS = SamplingParams(8, greedy=True)  # how the frozen judge answers when it reads predictions


@dataclass
class Ctx:
    """One comparison run: its folder, configs and what the stages produced so far.

    ``cfgs``: model or arm name -> the config it trains / is evaluated with; ``paths``: model name ->
    checkpoint; ``results``: stage name -> summary (``emorl.stages.run_stages``); ``cache``:
    objects kept between stages of one process (a loaded judge)."""

    out: Path
    base: RunConfig
    cfgs: dict[str, RunConfig]
    quick: bool = False
    progress: bool = True
    manifests: dict[str, Path] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)
    results: dict[str, dict] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict, repr=False)


class TaskPromptBuilder(PromptBuilder):
    """A PromptBuilder whose samples may carry their own prompt text and media (``meta.task_prompt``,
    ``meta.task_modality``); task copies share their sample's decode (``meta.clip_of``)."""

    def text(self, s: Sample) -> str:
        return s.meta.get("task_prompt") or super().text(s)

    def prompt(self, s: Sample, modality: Modality | None = None):
        task = s.meta.get("task_modality")
        return super().prompt(s, Modality.parse(task) if task else (modality or self.modality))

    def clip(self, s: Sample, modality: Modality = Modality.AV):
        base = s.meta.get("clip_of")
        return super().clip(replace(s, id=base) if base else s, modality)


def task_builder(cfg: RunConfig, adapter) -> TaskPromptBuilder:
    from emorl.runs import make_builder

    b = make_builder(cfg, adapter)
    return TaskPromptBuilder(
        adapter,
        b.spec,
        num_frames=b.num_frames,
        frame_size=b.frame_size,
        sampling=b.sampling,
        on_missing_audio=b.on_missing_audio,
        modality=b.modality,
        media_limits=b.media_limits,
    )


# ----------------------------------------------------------------------------- the tiny model
def tiny_model(ctx: Ctx, corpus: Callable[[], list[str]]) -> dict:
    """A tiny random-init model of ``demo.family`` (tokenizer trained on ``corpus()``) into
    ``ctx.paths['init']`` (``emorl.demo.build_base``'s first half)."""
    from emorl.models.tiny import TinyShape, init_tiny

    d = ctx.base.demo
    path = init_tiny(
        ctx.paths["init"],
        corpus=corpus(),
        seed=ctx.base.seed,
        frame_size=ctx.base.data.frame_size,
        shape=TinyShape(hidden=d.hidden, layers=d.layers, vocab_size=d.vocab_size),
        family=d.family,
    )
    return {"path": str(path)}


def pretrain_towers(ctx: Ctx) -> dict:
    """Perception pretraining of the towers on the ``pretrain`` split's cues, no labels, from
    ``paths['init']`` into ``paths['base']`` (``emorl.demo.build_base``'s second half)."""
    from emorl.perception import pretrain_towers as pretrain
    from emorl.runs import load_adapter, load_samples, make_builder

    cfg, d = ctx.base, ctx.base.demo
    seed_everything(cfg.seed)
    adapter = load_adapter(cfg, ctx.paths["init"])
    return pretrain(
        adapter,
        make_builder(cfg, adapter),
        load_samples(ctx.manifests["pretrain"]),
        ctx.out / "pretrain_towers",
        epochs=d.pretrain_epochs,
        lr=d.pretrain_lr,
        seed=cfg.seed,
        progress=ctx.progress,
        model_dir=ctx.paths["base"],
    )


def model_dirs(out: Path, pretrain: int) -> dict[str, Path]:
    """Where the tiny model goes before (``init``) and after (``base``) tower pretraining (the same
    folder when there is none)."""
    base = out / "models" / "base"
    return {"init": out / "models" / "init" if pretrain else base, "base": base}


# ----------------------------------------------------------------------------- GRPO arms
def train_arm(cfg: RunConfig, start: Path, train: list[Sample], out: Path, progress: bool) -> dict:
    """GRPO of one arm from checkpoint ``start`` (recorded as ``model.path``), with the reflective
    reward when ``cfg.reflection.enabled`` (judge per ``reflection.judge``); returns the first and
    last rewards, the mean reward components over the last quarter of steps and the reflection time."""
    import copy

    from emorl.rl.reflection import make_reflection
    from emorl.rl.trainer import train_grpo
    from emorl.runs import load_adapter, make_builder

    cfg = copy.deepcopy(cfg)
    cfg.model.path = str(start)
    seed_everything(cfg.seed)
    adapter = load_adapter(cfg, start)
    builder = make_builder(cfg, adapter)
    reflection = make_reflection(adapter, builder, cfg) if cfg.reflection.enabled else None
    save_run_config(cfg, out)
    res = train_grpo(cfg, adapter, builder, train, out, progress=progress, extra_rewards=reflection)
    tail = res["history"][-max(1, len(res["history"]) // 4) :]
    means = {
        k: round(float(np.mean([h[k] for h in tail])), 4)
        for k in tail[0]
        if k.startswith("reward/") and not k.endswith("_std")
    }
    return {
        "first_reward": res["first_reward"],
        "last_reward": res["last_reward"],
        "final_quarter_rewards": means,
        "reflection_seconds": round(reflection.total_seconds, 1) if reflection else 0.0,
    }


# ----------------------------------------------------------------------------- evaluation
def evaluate(ctx: Ctx, name: str, split: str) -> dict:
    """Greedy evaluation of model ``name`` on ``split`` with its config: WAR, UAR, format rate and
    their 95 % intervals (bootstrap over samples; Wilson for the format rate)."""
    from emorl.eval.stats import metric_cis, rate_ci
    from emorl.runs import load_adapter, load_samples, run_eval

    cfg = ctx.cfgs[name]
    key = f"adapter:{name}"
    ctx.cache[key] = ctx.cache.get(key) or load_adapter(cfg, ctx.paths[name])
    d = ctx.out / "eval" / name / split
    m = run_eval(
        cfg,
        ctx.paths[name],
        ctx.manifests[split],
        d,
        progress=ctx.progress,
        title=f"{name} / {split}",
        adapter=ctx.cache[key],
    )
    rows = read_predictions(d)
    labels = load_samples(ctx.manifests[split], default="test")[0].labels
    cis = metric_cis([r["label"] for r in rows], [r["pred"] for r in rows], labels, seed=ctx.base.seed)
    fmt = rate_ci([r["format_ok"] for r in rows])
    return {
        "war": m["war"],
        "uar": m["uar"],
        "format_rate": m["format_rate"],
        "n": m["n"],
        "war_ci": [cis["war"]["lo"], cis["war"]["hi"]],
        "uar_ci": [cis["uar"]["lo"], cis["uar"]["hi"]],
        "format_ci": [fmt["lo"], fmt["hi"]],
    }


def read_predictions(d: Path) -> list[dict]:
    return [json.loads(x) for x in (d / "predictions.jsonl").read_text().splitlines()]


def release(ctx: Ctx, name: str) -> None:
    """Drop a model kept in the cache (its stages are done)."""
    ctx.cache.pop(f"adapter:{name}", None)


def _rate(comps: list[dict], key: str, value: float) -> float:
    return round(sum(c[key] == value for c in comps) / max(1, len(comps)), 4)


def judge_reads(ctx: Ctx, name: str, make_reflection: Callable[[str], Any], tokenizer) -> dict:
    """The frozen judge's passes over model ``name``'s test predictions: the share whose reasoning
    alone names the label (coherence) and whose description the judge confirms against the media
    (grounding, per view), each with a Wilson interval; and the predictions' mean length in tokens."""
    from emorl.recipes.rewards import get_recipe
    from emorl.runs import load_samples

    preds = read_predictions(ctx.out / "eval" / name / "test")
    by_id = {s.id: s for s in load_samples(ctx.manifests["test"], default="test")}
    judge = make_reflection(get_recipe(ctx.cfgs[name].prompt.recipe).style)
    comps, _ = judge.score([by_id[p["id"]] for p in preds], [p["completion"] for p in preds])
    res = {
        "coherence_rate": _rate(comps, "coherence", 1.0),
        "mean_tokens": round(float(np.mean([len(tokenizer(p["completion"])["input_ids"]) for p in preds])), 1),
    }
    res["coherence_ci"] = _ci([c["coherence"] == 1.0 for c in comps])
    for k in ("grounding", "grounding_video", "grounding_audio"):
        if k in comps[0]:
            res[f"{k}_rate"] = _rate(comps, k, 1.0)
            res[f"{k}_ci"] = _ci([c[k] == 1.0 for c in comps])
    return res


def _ci(flags: list[bool]) -> list[float]:
    from emorl.eval.stats import rate_ci

    r = rate_ci(flags)
    return [round(r["lo"], 4), round(r["hi"], 4)]


# ----------------------------------------------------------------------------- the judge as a classifier
@dataclass
class CheckTexts:
    """The balanced texts of a judge check over ``samples`` (one entry each): completions whose
    stage 1 describes the sample itself (``own``) or another sample of another class (``other``),
    and whose reasoning was written for the sample's label (``right``) or another class
    (``wrong``, with that class in ``wrong_label``)."""

    samples: list[Sample]
    own: list[str]
    other: list[str]
    right: list[str]
    wrong: list[str]
    wrong_label: list[str]


def judge_check(reflection, texts: CheckTexts, *, seed: int = 0) -> dict:
    """The reflection's two questions as classifiers (module docstring), with ``reflection``'s
    judge and scoring (its style must read the check texts: ``boxed``): per component
    ``{auc, lo, hi, n_pos, n_neg}``, the mean score of each half (``mean_own`` / ``mean_other``,
    ``mean_right`` / ``mean_wrong``), the share of answers scoring 1 (``yes_own`` / ``yes_other``;
    ``names_label_right`` / ``names_label_wrong``: 0 for a log-prob judge, whose scores are
    continuous) and, for a log-prob judge, ``answer_mass``."""
    from emorl.eval.stats import auc_ci
    from emorl.recipes.emo_r3 import reflection_reasoning, stage1_description

    s, style = texts.samples, reflection.style
    right, raw_r = reflection.coherence(s, [reflection_reasoning(t, style) for t in texts.right])
    wrong, raw_w = reflection.coherence(s, [reflection_reasoning(t, style) for t in texts.wrong])
    out: dict = {"n": len(s), "scoring": reflection.scoring, "judge": reflection.judge}
    out["coherence"] = {
        **_round(auc_ci(right, wrong, seed=seed)),
        "names_label_right": _share(right, 1.0),
        "names_label_wrong": _share(wrong, 1.0),
        "mean_right": _mean(right),
        "mean_wrong": _mean(wrong),
        **_mass(raw_r + raw_w),
    }
    own_d = [stage1_description(t, style) for t in texts.own]
    other_d = [stage1_description(t, style) for t in texts.other]
    for view in reflection.views:
        k = "grounding" if view == "joint" else f"grounding_{view}"
        own, raw_o = reflection.grounding_pass(s, own_d, view)
        other, raw_x = reflection.grounding_pass(s, other_d, view)
        out[k] = {
            **_round(auc_ci(own, other, seed=seed)),
            "yes_own": _share(own, 1.0),
            "yes_other": _share(other, 1.0),
            "mean_own": _mean(own),
            "mean_other": _mean(other),
            **_mass(raw_o + raw_x),
        }
    return out


def _share(scores: list[float], value: float) -> float:
    return round(sum(v == value for v in scores) / max(1, len(scores)), 4)


def _mean(scores: list[float]) -> float:
    return round(float(np.mean(scores)), 4)


def _mass(raw: list) -> dict:
    """For a log-prob judge: the mean probability its answer starts with one of the candidates
    (yes / no, or a label word); a judge that rarely answers in those words has little to say."""
    probs = [sum(r.values()) for r in raw if isinstance(r, dict)]
    return {"answer_mass": round(float(np.mean(probs)), 4)} if probs else {}


def _round(d: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}


def check_texts(
    samples: list[Sample], seed: int, own_trace: Callable[[Sample, str, np.random.Generator], str]
) -> CheckTexts:
    """Balanced check texts over ``samples``: ``own_trace(sample, label, rng)`` writes a complete
    structured completion for a sample's media and an emotion (the synthetic world's SET traces)."""
    rng = np.random.default_rng(seed)
    own, other, right, wrong, wrong_label = [], [], [], [], []
    for s in samples:
        others = [o for o in samples if o.label != s.label]
        o = others[int(rng.integers(len(others)))] if others else s
        w = str(rng.choice([c for c in s.labels if c != s.label]))
        own.append(own_trace(s, s.label, rng))
        other.append(own_trace(o, o.label, rng))
        right.append(own_trace(s, s.label, rng))
        wrong.append(own_trace(s, w, rng))
        wrong_label.append(w)
    return CheckTexts(samples, own, other, right, wrong, wrong_label)


# ----------------------------------------------------------------------------- report helpers
def fmt_ci(value: float | None, ci: list | None, digits: int = 3) -> str:
    """``0.412 [0.35, 0.47]``; ``–`` for a missing value."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if not ci or ci[0] is None:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{ci[0]:.2f}, {ci[1]:.2f}]"
