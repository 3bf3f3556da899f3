"""``emorl compare``: plain GRPO, the R1-Omni recipe and the EMO-R3 recipe on the synthetic omni
clips, all from the same cold-start checkpoint of the same tiny thinker, as a list of stages
(``clip_stages``; each skipped when its output is complete, so an interrupted run resumes):

  1. synthesize the world and build the tiny thinker (tokenizer trained on both trace formats and
     the reflection prompts; towers pretrained on the clips' cues, as in the demo);
  2. shared cold start: SFT on ``<think>…</think><answer>…</answer>`` traces of the cold-start
     split, as in the demo;
  3. structured cold start for the EMO-R3 arm, continuing from 2: SET traces
     (``<step1>…</step3>\\boxed{…}``) converted from the same true cues, plus the reflection tasks
     the policy has to answer during RL (coherence: reasoning -> emotion; grounding: clip +
     description -> yes/no). A real omni model answers those zero-shot; a tiny one must be taught;
  4. GRPO per arm: (a) ``plain``: EMO-R3's Naive-GRPO baseline on R1-Omni's format (0.9 accuracy +
     0.1 format, emo-r3-tiny's GRPO settings); (b) ``r1-omni``: configs/r1-omni-tiny.yaml;
     (c) ``emo-r3``: configs/emo-r3-tiny.yaml with the reflective reward (current policy, no gradients);
  5. one frozen judge (the structured cold start of 3, the only checkpoint taught the reflection
     tasks) is checked on the test split (``judge check``: yes-rates), then every cold start and
     arm is evaluated on ``test`` and ``ood`` and the judge reads its test predictions: coherence
     rate (the reasoning alone implies the label) and grounding rate (the clip confirms the
     description);
  6. ``judge auc``: the same judge as a classifier (``emorl.compare.common.judge_check``) with the
     log-prob, greedy and sampled answers: AUC of own-clip vs other-clip descriptions and of
     reasoning written for the label vs another class;
  7. write ``compare.json`` and ``compare.md``.

Tiny-model settings are not the papers' (see docs/papers.md); the numbers compare recipes on a
toy world, they do not reproduce paper results.
"""

from __future__ import annotations

import copy
import functools
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from emorl.compare.common import (
    JUDGE_PARAMS,
    SPLITS,
    Ctx,
    _rate,
    check_texts,
    evaluate,
    judge_reads,
    model_dirs,
    pretrain_towers,
    task_builder,
    tiny_model,
    train_arm,
)
from emorl.config import RunConfig, load_config, packaged_config, save_run_config
from emorl.data.synthetic.set_traces import structured_trace
from emorl.stages import Stage, Stages, run_stages
from emorl.utils import atomic_write_json, atomic_write_text, seed_everything

ARMS = ("plain", "r1-omni", "emo-r3")
# --quick: the arms' GRPO at CI size (the world, tiny model and cold start come from demo-quick.yaml)
QUICK_ARM = [
    "grpo.steps=8",
    "grpo.prompts_per_step=4",
    "grpo.completions_per_prompt=4",
    "grpo.micro_batch_rows=16",
    "grpo.sample_every=4",
    "sft.epochs=8",
]
QUICK_BASE = ["demo.coldstart=96", "demo.test=42", "demo.ood=42", "sft.epochs=16"]
# which config evaluates each cold start: the arms that start from it
COLD_START_RECIPE = {"coldstart": "r1-omni", "coldstart_steps": "emo-r3"}


def arm_configs(
    base_config: str | Path, *, quick: bool, overrides: list[str] | None = None, base_extra: list[str] | None = None
) -> tuple[RunConfig, dict[str, RunConfig]]:
    """The base config and each arm's.

    ``r1-omni`` and ``emo-r3`` are their recipe files (prompt, sampling, GRPO, SFT, reflection).
    ``plain`` is EMO-R3's Naive-GRPO baseline on R1-Omni's format: emo-r3-tiny's GRPO settings,
    r1-omni-tiny's prompt and lengths, recipe ``plain`` (0.9 accuracy + 0.1 format), no reflection.
    ``overrides`` apply to the base and every arm; every arm then takes the base's data, model,
    eval and demo sections, so all see the same clips, model and eval batch size.
    """
    extra, ovs = (QUICK_ARM if quick else []), list(overrides or [])
    base = load_config(base_config, [*(base_extra or []), *ovs])
    r1 = load_config(packaged_config("r1-omni-tiny"), [*extra, *ovs])
    r3 = load_config(packaged_config("emo-r3-tiny"), [*extra, *ovs])
    plain = copy.deepcopy(r3)
    plain.prompt, plain.sampling = copy.deepcopy(r1.prompt), copy.deepcopy(r1.sampling)
    plain.prompt.recipe, plain.reflection.enabled = "plain", False
    cfgs = {"plain": plain, "r1-omni": r1, "emo-r3": r3}
    for cfg in cfgs.values():
        cfg.seed, cfg.demo = base.seed, base.demo
        cfg.data, cfg.model, cfg.eval = copy.deepcopy(base.data), copy.deepcopy(base.model), copy.deepcopy(base.eval)
        cfg.eval.max_new_tokens = cfg.sampling.max_new_tokens
    return base, cfgs


def clip_stages(ctx: Ctx, arms: tuple[str, ...]) -> list[Stage]:
    """The clip comparison as a list (module docstring)."""
    steps = "emo-r3" in arms
    models = ["coldstart", *(["coldstart_steps"] if steps else []), *arms]
    stages = [
        Stage("synthesize", "data", synthesize),
        Stage(
            "tiny_model",
            str(ctx.paths["init"].relative_to(ctx.out)),
            lambda c: tiny_model(c, functools.partial(tokenizer_corpus, c)),
        ),
    ]
    if ctx.base.demo.pretrain:
        stages.append(Stage("pretrain_towers", "models/base", pretrain_towers))
    stages.append(Stage("shared cold start (think/answer traces)", "coldstart", shared_coldstart))
    if steps:
        stages.append(
            Stage("structured cold start (SET traces + reflection tasks)", "coldstart_steps", structured_coldstart)
        )
    stages += [Stage(f"GRPO {arm}", f"grpo-{arm}", functools.partial(grpo_arm, arm=arm)) for arm in arms]
    if steps:
        stages.append(Stage("judge check", "judge", judge_yes_rates))
    for m in models:
        stages += [
            Stage(f"eval {m}/{split}", f"eval/{m}/{split}", functools.partial(evaluate, name=m, split=split))
            for split in SPLITS
        ]
        if steps:
            stages.append(Stage(f"judge {m}", f"eval/{m}/judge", functools.partial(frozen_judge_reads, name=m)))
    if steps:
        stages.append(Stage("judge auc", "judge_auc", judge_auc))
    return stages


def run_compare(
    out: str | Path,
    *,
    quick: bool = False,
    config: str | None = None,
    overrides: list[str] | None = None,
    arms: tuple[str, ...] = ARMS,
    progress: bool = True,
) -> dict:
    """Run the comparison into ``out``; returns the metrics written to ``out/compare.json``.

    ``config`` is the base (world sizes, tiny model, shared cold start, eval; default:
    configs/demo.yaml, or demo-quick.yaml with ``quick``); the arms' settings come from
    configs/r1-omni-tiny.yaml and configs/emo-r3-tiny.yaml (see ``arm_configs``). ``overrides``
    (dotted ``key=value``) apply to the base and every arm. ``arms`` picks a subset of ``ARMS``.
    """
    from emorl.demo import check_family

    unknown = set(arms) - set(ARMS)
    if unknown:
        raise ValueError(f"unknown arm(s) {', '.join(sorted(unknown))}; known: {', '.join(ARMS)}")
    base, cfgs = arm_configs(
        config or packaged_config("demo-quick" if quick else "demo"),
        quick=quick,
        overrides=overrides,
        base_extra=QUICK_BASE if quick and not config else [],
    )
    check_family(base)
    out = Path(out)
    base.out = str(out)
    out.mkdir(parents=True, exist_ok=True)
    save_run_config(base, out)
    cfgs.update({m: cfgs[r] for m, r in COLD_START_RECIPE.items()})
    ctx = Ctx(out, base, cfgs, quick=quick, progress=progress)
    ctx.paths.update(model_dirs(out, base.demo.pretrain))
    ctx.paths.update(
        {
            "coldstart": out / "coldstart" / "model",
            "coldstart_steps": out / "coldstart_steps" / "model",
            **{a: out / f"grpo-{a}" / "model" for a in arms},
        }
    )
    ctx.manifests = {s: out / "data" / f"{s}.jsonl" for s in ("train", "coldstart", "test", "ood", "pretrain")}
    t_start = time.perf_counter()
    runner = Stages("compare")
    res = run_stages(clip_stages(ctx, arms), ctx, runner)
    steps = "emo-r3" in arms
    rows: dict[str, dict] = {}
    for name in ["coldstart", *(["coldstart_steps"] if steps else []), *arms]:
        row: dict = {"recipe": cfgs[name].prompt.recipe, **{split: res[f"eval {name}/{split}"] for split in SPLITS}}
        if steps:
            row["reflection"] = res[f"judge {name}"]
        stage = {
            "coldstart": "shared cold start (think/answer traces)",
            "coldstart_steps": "structured cold start (SET traces + reflection tasks)",
        }.get(name, f"GRPO {name}")
        row["train_seconds"] = runner.seconds.get(stage, 0.0)
        if name in arms:
            row["rl"] = res[f"GRPO {name}"]
        rows[name] = row
    total = round(time.perf_counter() - t_start, 1)
    metrics = {
        "models": rows,
        "judge": res.get("judge check"),
        "judge_auc": res.get("judge auc"),
        "quick": quick,
        "total_seconds": total,
        "chance_uar": 1 / 7,
    }
    atomic_write_json(out / "compare.json", metrics)
    table = format_table(rows)
    atomic_write_text(out / "compare.md", render_markdown(metrics, table))
    print(table)
    print(f"[compare] {out / 'compare.json'}   {out / 'compare.md'}   total {total:.0f}s")
    return metrics


# ----------------------------------------------------------------------------- stages
def synthesize(ctx: Ctx) -> dict:
    from emorl.data.synthetic import synthesize as synth

    d = ctx.base.demo
    sizes = {"train": d.train, "coldstart": d.coldstart, "test": d.test, "ood": d.ood, "pretrain": d.pretrain}
    return {
        "paths": {
            k: str(v)
            for k, v in synth(
                ctx.out / "data", seed=ctx.base.seed, sizes=sizes, workers=d.workers, progress=ctx.progress
            ).items()
        }
    }


def tokenizer_corpus(ctx: Ctx) -> list[str]:
    """Both trace formats, every arm's prompt and the reflection prompts, so the tiny BPE
    tokenizer keeps them short."""
    from emorl.data.synthetic.traces import make_trace
    from emorl.recipes.emo_r3 import COHERENCE_PROMPT, GROUNDING_PROMPT
    from emorl.recipes.prompts import PromptSpec, build_prompt
    from emorl.runs import load_samples

    samples = load_samples(ctx.manifests["coldstart"])
    rng = np.random.default_rng(ctx.base.seed)
    texts = [make_trace(s.meta, s.label, rng) for s in samples for _ in range(2)]
    texts += [structured_trace(s.meta, s.label, rng) for s in samples for _ in range(2)]
    cfgs = [ctx.base, *(ctx.cfgs[a] for a in ARMS)]
    prompts = {
        build_prompt(PromptSpec(c.prompt.question, c.prompt.format, c.prompt.with_options), samples[0].labels)
        for c in cfgs
    }
    return texts + [*prompts, COHERENCE_PROMPT, GROUNDING_PROMPT] * 10


def shared_coldstart(ctx: Ctx) -> dict:
    from emorl.runs import load_adapter, load_samples, make_builder
    from emorl.sft import train_sft

    seed_everything(ctx.base.seed)
    cfg = copy.deepcopy(ctx.base)
    cfg.sft.target = "trace"
    adapter = load_adapter(cfg, ctx.paths["base"])
    return train_sft(
        cfg,
        adapter,
        make_builder(cfg, adapter),
        load_samples(ctx.manifests["coldstart"]),
        ctx.out / "coldstart",
        progress=ctx.progress,
    )


def structured_coldstart(ctx: Ctx) -> dict:
    from emorl.data.synthetic.set_traces import reflection_tasks
    from emorl.rl.reflection import grounding_views
    from emorl.runs import load_adapter, load_samples
    from emorl.sft import train_sft

    cfg = ctx.cfgs["emo-r3"]
    samples = load_samples(ctx.manifests["coldstart"])
    seed_everything(cfg.seed)
    rng = np.random.default_rng(cfg.seed + 1)
    traces = [replace(s, meta={**s.meta, "trace": structured_trace(s.meta, s.label, rng)}) for s in samples]
    tasks = reflection_tasks(samples, grounding_views(cfg.reflection.grounding), rng)
    adapter = load_adapter(cfg, ctx.paths["coldstart"])
    info = train_sft(
        cfg, adapter, task_builder(cfg, adapter), traces + tasks, ctx.out / "coldstart_steps", progress=ctx.progress
    )
    return {**info, "n_traces": len(traces), "n_reflection_tasks": len(tasks)}


def grpo_arm(ctx: Ctx, arm: str) -> dict:
    from emorl.runs import load_samples

    start = ctx.paths["coldstart_steps" if arm == "emo-r3" else "coldstart"]
    return train_arm(ctx.cfgs[arm], start, load_samples(ctx.manifests["train"]), ctx.out / f"grpo-{arm}", ctx.progress)


def _judge(ctx: Ctx, style: str, params=JUDGE_PARAMS, scoring: str = "sample"):
    """A reflection pass of the frozen judge (the structured cold start, loaded once)."""
    from emorl.rl.reflection import Reflection
    from emorl.runs import load_adapter, make_builder

    cfg = ctx.cfgs["emo-r3"]
    if "judge" not in ctx.cache:
        adapter = load_adapter(cfg, ctx.paths["coldstart_steps"])
        ctx.cache["judge"] = (adapter, make_builder(cfg, adapter))
    adapter, builder = ctx.cache["judge"]
    grounding = cfg.reflection.grounding if cfg.reflection.grounding != "none" else "joint"
    return Reflection(
        adapter,
        builder,
        style=style,
        grounding=grounding,
        params=params,
        batch_size=cfg.reflection.batch_size,
        scoring=scoring,
        judge="coldstart_steps",
    )


def judge_yes_rates(ctx: Ctx) -> dict:
    """The frozen judge on the test split: how often it names the emotion a reasoning was written
    for, and says yes to the clip's own description vs another clip's."""
    from emorl.runs import load_samples

    cfg = ctx.cfgs["emo-r3"]
    rng = np.random.default_rng(cfg.seed + 2)
    samples = load_samples(ctx.manifests["test"], default="test")
    written = [
        s.label if rng.random() < 0.5 else str(rng.choice([c for c in s.labels if c != s.label])) for s in samples
    ]
    others = [str(rng.choice([o.id for o in samples if o.label != s.label])) for s in samples]
    by_id = {s.id: s for s in samples}
    own = [structured_trace(s.meta, w, rng) for s, w in zip(samples, written)]
    foreign = [structured_trace(by_id[o].meta, by_id[o].label, rng) for o in others]
    relabelled = [replace(s, label=w) for s, w in zip(samples, written)]
    comps_own, _ = _judge(ctx, "boxed").score(relabelled, own)
    comps_foreign, _ = _judge(ctx, "boxed").score(samples, foreign)
    res = {"n": len(samples), "coherence_names_written_emotion": _rate(comps_own, "coherence", 1.0)}
    for k in ("grounding", "grounding_video", "grounding_audio"):
        if k in comps_own[0]:  # stage 1 of an own trace cites the clip's true cues, whatever it concludes
            res[f"{k}_yes_own_clip"] = _rate(comps_own, k, 1.0)
            res[f"{k}_yes_other_clip"] = _rate(comps_foreign, k, 1.0)
    return res


def frozen_judge_reads(ctx: Ctx, name: str) -> dict:
    adapter = _judge(ctx, "boxed").adapter
    return judge_reads(ctx, name, lambda style: _judge(ctx, style), adapter.tokenizer)


def judge_auc(ctx: Ctx) -> dict:
    """The frozen judge as a classifier (``judge_check``), answering by log-probs, greedily and
    sampled as during training (temperature 0.6, top-p 0.95)."""
    from emorl.compare.common import judge_check
    from emorl.models.adapter import SamplingParams
    from emorl.runs import load_samples

    r = ctx.cfgs["emo-r3"].reflection
    samples = load_samples(ctx.manifests["test"], default="test")
    texts = check_texts(samples, ctx.base.seed + 3, lambda s, label, rng: structured_trace(s.meta, label, rng))
    out = {}
    for key, scoring, params in (
        ("logprob", "logprob", JUDGE_PARAMS),
        ("greedy", "sample", JUDGE_PARAMS),
        ("sampled", "sample", SamplingParams(r.max_new_tokens, r.temperature, r.top_p)),
    ):
        seed_everything(ctx.base.seed)
        out[key] = judge_check(_judge(ctx, "boxed", params, scoring), texts, seed=ctx.base.seed)
    return out


# ----------------------------------------------------------------------------- report
def format_table(rows: dict[str, dict]) -> str:
    head = (
        "| model | recipe | test WAR | test UAR | OOD WAR | OOD UAR | format | coherence | grounding | "
        "mean tokens | train s |"
    )
    lines = [head, "|" + "---|" * 11]
    for name, r in rows.items():
        t, o, j = r["test"], r["ood"], r.get("reflection", {})
        lines.append(
            f"| {name} | {r['recipe']} | {t['war']:.3f} | {t['uar']:.3f} | {o['war']:.3f} | "
            f"{o['uar']:.3f} | {t['format_rate']:.3f} | {j.get('coherence_rate', float('nan')):.3f} | "
            f"{j.get('grounding_rate', float('nan')):.3f} | {j.get('mean_tokens', float('nan')):.1f} | "
            f"{r.get('train_seconds', 0):.0f} |"
        )
    return "\n".join(lines)


def rewards_table(rows: dict[str, dict]) -> str:
    """Mean training reward components over each arm's last quarter of GRPO steps."""
    arms = {n: r["rl"]["final_quarter_rewards"] for n, r in rows.items() if "rl" in r}
    names = sorted({k for v in arms.values() for k in v}, key=lambda k: (k != "reward/overall", k))
    lines = ["| arm | " + " | ".join(k.removeprefix("reward/") for k in names) + " |", "|" + "---|" * (len(names) + 1)]
    lines += [f"| {a} | " + " | ".join(f"{v[k]:.3f}" if k in v else "" for k in names) + " |" for a, v in arms.items()]
    return "\n".join(lines)


def auc_lines(check: dict | None) -> list[str]:
    """The judge-as-classifier results, one line per (answering, question): AUC, the mean score of
    the positive / negative half, the share of answers scoring 1 in each, and a log-prob judge's
    probability mass on the candidate answers."""
    if not check:
        return ["(no judge: the emo-r3 arm was not run)"]
    lines = [
        "| answering | question | AUC [95% CI] | mean score pos / neg | share scoring 1 pos / neg | mass |",
        "|---|---|---|---|---|---|",
    ]
    for key, c in check.items():
        for q, v in c.items():
            if not isinstance(v, dict):
                continue
            pos, neg = ("own", "other") if "yes_own" in v else ("right", "wrong")
            ones = (
                (v["yes_own"], v["yes_other"]) if "yes_own" in v else (v["names_label_right"], v["names_label_wrong"])
            )
            mass = f"{v['answer_mass']:.3f}" if "answer_mass" in v else "–"
            lines.append(
                f"| {key} | {q} | {v['auc']:.3f} [{v['lo']:.2f}, {v['hi']:.2f}] | "
                f"{v[f'mean_{pos}']:.3f} / {v[f'mean_{neg}']:.3f} | {ones[0]:.3f} / {ones[1]:.3f} | {mass} |"
            )
    return lines


def render_markdown(metrics: dict, table: str) -> str:
    judge = metrics.get("judge") or {}
    parts = [
        "# emorl compare: plain GRPO vs R1-Omni vs EMO-R3",
        "",
        (
            f"Synthetic omni-emotion world (7 classes, chance UAR {1 / 7:.3f}), tiny thinker (random-init LLM, "
            "attribute-pretrained towers), "
            f"{'quick (CI) sizes: a smoke test, not a result' if metrics['quick'] else 'default sizes'}. "
            f"Total wall time {metrics['total_seconds']:.0f} s."
        ),
        "",
        table,
        "",
        (
            "- **coldstart**: shared SFT on `<think>/<answer>` traces; **plain** and **r1-omni** start from it. "
            "**coldstart_steps**: coldstart + SFT on SET traces and the reflection tasks; **emo-r3** starts from it."
        ),
        (
            "- format / coherence / grounding / mean tokens: on the test predictions. coherence: the frozen judge "
            "(coldstart_steps), reading the reasoning alone (stages 1-2, or the think text), names the label; "
            "grounding: it says the clip fits the description (stage 1, or the think text)."
        ),
        "- train s: GRPO wall time (the cold starts: their SFT time).",
        "",
        "## Training rewards (mean over the last quarter of GRPO steps)",
        "",
        rewards_table(metrics["models"]),
        "",
        "## Judge check (test split)",
        "",
        *(f"- {k}: {v}" for k, v in judge.items()),
        "",
        (
            "SET traces written for the label or another emotion, and for the clip or another clip. A judge that "
            "names the written emotion near chance (1/7), or says yes to another clip's description as often as to "
            "the clip's own, cannot tell coherent or grounded reasoning from the rest at this model size: read the "
            "coherence and grounding columns with that in mind."
        ),
        "",
        "## The judge as a classifier (test split, balanced)",
        "",
        *auc_lines(metrics.get("judge_auc")),
        "",
        (
            "Per test clip: its own description (positive) and another clip's of another class (negative); reasoning "
            "written for its label (positive) and for another class (negative). AUC 0.5 is chance. log-prob: the "
            "expected score from one scoring pass (0.5 + (P(yes) - P(no)) / 2; for coherence P(label) + half the "
            "mass on no emotion word); greedy / sampled: one answer read as 1 / 0.5 / 0."
        ),
    ]
    return "\n".join(parts) + "\n"
