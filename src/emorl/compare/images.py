"""``emorl compare --images``: SFT, naive GRPO and EMO-R3 from one cold start on the synthetic
still-image world (Mikels-8 scenes) with the ``qwen2.5-vl`` tiny family, as a list of stages.

The experiment (``image_stages``), each stage skipped when its output is complete:

1. ``synthesize``: the image world (train, coldstart, test, ood in the sketch style, pretrain);
2. ``tiny_model`` and ``pretrain_towers``: a tiny Qwen2.5-VL (tokenizer trained on the traces and
   prompts) whose vision tower learns the drawings' cues, no labels (``emorl.perception``);
3. ``coldstart``: one SFT checkpoint every arm starts from, on the coldstart images: the SET trace
   under EMO-R3's released prompt, the ``<think>`` trace under the naive-GRPO prompt, and EMO-R3's
   two reflection questions (coherence; "Can the following text describe the image?"), which a
   real model answers zero-shot and a tiny one must be taught (``image_reflection_tasks``);
4. the arms, from the cold start, on the training images: ``sft`` (EMO-R3's SFT baseline:
   ``\\boxed{label}`` targets, EmoSet2k has no rationales), ``naive-grpo`` (configs/naive-grpo-vl.yaml),
   ``emo-r3`` (configs/emo-r3-vl.yaml: reflection judged by the current policy, sampled words) and,
   when asked for, ``emo-r3-frozen`` (the same with a frozen cold-start judge scored by log-probs);
   the GRPO arms are the released configs with ``TINY_ARM``'s sizes;
5. ``eval``: every model on test and ood (accuracy = WAR, UAR, format, 95 % intervals);
6. ``judge reads``: the cold start as a frozen judge reads each model's test predictions
   (coherence: the reasoning alone names the label; consistency: the image confirms step 1);
7. ``judge check``: each model (and the pretrained base) as its own judge (EMO-R3's setting), as a
   classifier of an image's own description against another image's and of reasoning written for
   the label against another class (``emorl.compare.common.judge_check``) on the test images:
   AUC with the log-prob, greedy and sampled answers.

``compare.json`` and ``compare.md`` hold the side-by-side table. Tiny-model settings are not the
paper's; the numbers compare recipes on a toy world, they do not reproduce EMO-R3's.
"""

from __future__ import annotations

import copy
import functools
import time
from pathlib import Path

import numpy as np

from emorl.compare.common import (
    JUDGE_PARAMS,
    SPLITS,
    CheckTexts,
    Ctx,
    check_texts,
    evaluate,
    fmt_ci,
    judge_check,
    judge_reads,
    model_dirs,
    pretrain_towers,
    release,
    task_builder,
    tiny_model,
    train_arm,
)
from emorl.config import RunConfig, load_config, packaged_config, save_run_config
from emorl.data.manifest import Sample
from emorl.models.adapter import SamplingParams
from emorl.stages import Stage, Stages, run_stages
from emorl.utils import atomic_write_json, atomic_write_text, seed_everything

ARMS = ("sft", "naive-grpo", "emo-r3")
OPTIONAL_ARMS = ("emo-r3-frozen",)
GRPO_ARMS: dict[str, tuple[str, list[str]]] = {  # arm -> (packaged config, its own overrides)
    "naive-grpo": ("naive-grpo-vl", []),
    "emo-r3": ("emo-r3-vl", []),
    "emo-r3-frozen": ("emo-r3-vl", ["reflection.judge=frozen", "reflection.scoring=logprob"]),
}
# the released configs at tiny size (the rest of each config stays as released)
TINY_ARM = [
    "sampling.max_new_tokens=128",
    "grpo.steps=60",
    "grpo.prompts_per_step=8",
    "grpo.micro_batch_rows=32",
    "grpo.lr=2e-4",
    "grpo.gradient_checkpointing=false",
    "grpo.sample_every=20",
    "reflection.max_new_tokens=4",
    "reflection.batch_size=64",
]
QUICK_ARM = [
    "sampling.max_new_tokens=96",
    "grpo.steps=2",
    "grpo.prompts_per_step=2",
    "grpo.completions_per_prompt=4",
    "grpo.micro_batch_rows=8",
    "grpo.sample_every=0",
]
# the judge check's three ways of answering: name -> (reflection.scoring, decoding; None: the emo-r3
# config's reflection decoding, temperature 0.6 / top-p 0.95, as during training)
CHECK_SCORINGS: dict[str, tuple[str, SamplingParams | None]] = {
    "logprob": ("logprob", None),
    "greedy": ("sample", JUDGE_PARAMS),
    "sampled": ("sample", None),
}


def image_configs(
    base_config: str | Path, *, quick: bool, overrides: list[str] | None = None, arms: tuple[str, ...] = ARMS
) -> tuple[RunConfig, dict[str, RunConfig]]:
    """The base config and each model's: the GRPO arms load their released config with
    ``TINY_ARM`` (and ``QUICK_ARM``) then ``overrides``; every model takes the base's data, model,
    eval and demo sections and seed. ``coldstart``, ``base`` and ``sft`` use EMO-R3's prompt (the
    ``emo-r3`` arm's config); ``sft`` trains ``\\boxed{label}`` targets with the base's
    ``demo.label_sft_*``."""
    ovs = list(overrides or [])
    base = load_config(base_config, ovs)
    cfgs: dict[str, RunConfig] = {}
    # emo-r3 and naive-grpo always: the cold start writes traces under both prompts
    for arm in dict.fromkeys(["emo-r3", "naive-grpo", *[a for a in arms if a in GRPO_ARMS]]):
        name, own = GRPO_ARMS[arm]
        cfg = load_config(packaged_config(name), [*TINY_ARM, *(QUICK_ARM if quick else []), *own, *ovs])
        cfg.seed, cfg.demo = base.seed, base.demo
        cfg.data, cfg.model, cfg.eval = copy.deepcopy(base.data), copy.deepcopy(base.model), copy.deepcopy(base.eval)
        cfg.eval.max_new_tokens = cfg.sampling.max_new_tokens
        cfgs[arm] = cfg
    for name in ("base", "coldstart", "sft"):
        cfgs[name] = copy.deepcopy(cfgs["emo-r3"])
        cfgs[name].reflection.enabled = False
    cfgs["coldstart"].sft = copy.deepcopy(base.sft)
    sft = cfgs["sft"].sft
    sft.target, sft.epochs, sft.lr = "label", base.demo.label_sft_epochs, base.demo.label_sft_lr
    return base, cfgs


def image_stages(ctx: Ctx, arms: tuple[str, ...]) -> list[Stage]:
    """The image comparison as a list (module docstring)."""
    d = ctx.base.demo
    models = ["coldstart", *arms]
    stages = [
        Stage("synthesize", "data", synthesize),
        Stage(
            "tiny_model",
            str(ctx.paths["init"].relative_to(ctx.out)),
            lambda c: tiny_model(c, functools.partial(tokenizer_corpus, c)),
        ),
    ]
    if d.pretrain:
        stages.append(Stage("pretrain_towers", "models/base", pretrain_towers))
    stages.append(Stage("coldstart", "coldstart", coldstart))
    if "sft" in arms:
        stages.append(Stage("sft", "sft", sft_arm))
    stages += [
        Stage(f"grpo {arm}", f"grpo-{arm}", functools.partial(grpo_arm, arm=arm)) for arm in arms if arm in GRPO_ARMS
    ]
    stages += [
        Stage(f"eval {m}/{split}", f"eval/{m}/{split}", functools.partial(evaluate, name=m, split=split))
        for m in models
        for split in SPLITS
    ]
    stages += [
        Stage(f"judge reads {m}", f"eval/{m}/judge", functools.partial(frozen_judge_reads, name=m)) for m in models
    ]
    stages += [
        Stage(f"judge check {m}", f"judge/{m}", functools.partial(own_judge_check, name=m)) for m in ["base", *models]
    ]
    return stages


def run_image_compare(
    out: str | Path,
    *,
    quick: bool = False,
    config: str | None = None,
    overrides: list[str] | None = None,
    arms: tuple[str, ...] = ARMS,
    progress: bool = True,
) -> dict:
    """Run the image comparison into ``out``; returns the metrics written to ``out/compare.json``.
    ``config``: the base (default configs/compare-images.yaml, or compare-images-quick.yaml with
    ``quick``); ``overrides`` (dotted ``key=value``) apply to the base and every arm; ``arms``: a
    subset of ``ARMS + OPTIONAL_ARMS`` (an empty tuple: the cold start and its judge check only)."""
    from emorl.demo import check_family

    unknown = set(arms) - set(ARMS) - set(OPTIONAL_ARMS)
    if unknown:
        raise ValueError(f"unknown arm(s) {', '.join(sorted(unknown))}; known: {', '.join(ARMS + OPTIONAL_ARMS)}")
    base, cfgs = image_configs(
        config or packaged_config("compare-images-quick" if quick else "compare-images"),
        quick=quick,
        overrides=overrides,
        arms=arms,
    )
    check_family(base)
    if base.data.modality != "image":
        raise ValueError(f"emorl compare --images needs data.modality=image, got {base.data.modality!r}")
    out = Path(out)
    base.out = str(out)
    out.mkdir(parents=True, exist_ok=True)
    save_run_config(base, out)
    ctx = Ctx(out, base, cfgs, quick=quick, progress=progress)
    ctx.paths.update(model_dirs(out, base.demo.pretrain))
    ctx.paths.update(
        {
            "coldstart": out / "coldstart" / "model",
            "sft": out / "sft" / "model",
            **{a: out / f"grpo-{a}" / "model" for a in arms if a in GRPO_ARMS},
        }
    )
    ctx.manifests = {s: out / "data" / f"{s}.jsonl" for s in ("train", "coldstart", "test", "ood", "pretrain")}
    t0 = time.perf_counter()
    runner = Stages("compare-images")
    run_stages(image_stages(ctx, arms), ctx, runner)
    metrics = collect(ctx, arms, runner)
    metrics["total_seconds"] = round(time.perf_counter() - t0, 1)
    atomic_write_json(out / "compare.json", metrics)
    atomic_write_text(out / "compare.md", render_markdown(metrics))
    print(format_table(metrics["models"]))
    print(f"[compare-images] {out / 'compare.json'}   {out / 'compare.md'}   total {metrics['total_seconds']:.0f}s")
    return metrics


# ----------------------------------------------------------------------------- stages
def synthesize(ctx: Ctx) -> dict:
    from emorl.data.synthetic.image_world import synthesize_images

    d = ctx.base.demo
    sizes = {"train": d.train, "coldstart": d.coldstart, "test": d.test, "ood": d.ood, "pretrain": d.pretrain}
    paths = synthesize_images(
        ctx.out / "data",
        seed=ctx.base.seed,
        sizes={k: v for k, v in sizes.items() if v},
        size=ctx.base.data.frame_size or 112,
        progress=ctx.progress,
    )
    return {"paths": {k: str(v) for k, v in paths.items()}}


def _prompt_text(cfg: RunConfig, s: Sample) -> str:
    from emorl.recipes.prompts import PromptSpec, build_prompt, recipe_prompt

    q, f = recipe_prompt(cfg.prompt.recipe, cfg.prompt.question, cfg.prompt.format, image=True)
    return build_prompt(PromptSpec(q, f, cfg.prompt.with_options), s.labels, s.words)


def coldstart_examples(ctx: Ctx, samples: list[Sample], rng: np.random.Generator) -> list[Sample]:
    """The cold start's examples (module docstring, stage 3) as task copies of ``samples``."""
    from emorl.data.synthetic.image_traces import image_reflection_tasks, image_trace
    from emorl.data.synthetic.set_traces import task_sample

    set_cfg, think_cfg = ctx.cfgs["emo-r3"], ctx.cfgs["naive-grpo"]
    out = []
    for s in samples:
        word = s.words.get(s.label, s.label)
        out.append(
            task_sample(
                s, "set", _prompt_text(set_cfg, s), "image", image_trace(s.meta, s.label, rng, style="boxed", word=word)
            )
        )
        out.append(
            task_sample(
                s,
                "think",
                _prompt_text(think_cfg, s),
                "image",
                image_trace(s.meta, s.label, rng, style="think_boxed", word=word),
            )
        )
    return out + image_reflection_tasks(samples, rng)


def tokenizer_corpus(ctx: Ctx) -> list[str]:
    """The cold start's texts (prompts, traces, reflection questions and answers) of the coldstart
    images, twice with different wording, so the tiny BPE tokenizer keeps them short."""
    from emorl.runs import load_samples

    samples = load_samples(ctx.manifests["coldstart"])
    rng = np.random.default_rng(ctx.base.seed)
    texts = []
    for _ in range(2):
        for t in coldstart_examples(ctx, samples, rng):
            texts += [t.meta["task_prompt"], t.meta["trace"]]
    return texts


def coldstart(ctx: Ctx) -> dict:
    from emorl.runs import load_adapter, load_samples
    from emorl.sft import train_sft

    cfg = ctx.cfgs["coldstart"]
    seed_everything(cfg.seed)
    samples = load_samples(ctx.manifests["coldstart"])
    examples = coldstart_examples(ctx, samples, np.random.default_rng(cfg.seed + 1))
    adapter = load_adapter(cfg, ctx.paths["base"])
    info = train_sft(cfg, adapter, task_builder(cfg, adapter), examples, ctx.out / "coldstart", progress=ctx.progress)
    return {**info, "n_examples": len(examples)}


def sft_arm(ctx: Ctx) -> dict:
    from emorl.runs import load_adapter, load_samples, make_builder
    from emorl.sft import train_sft

    cfg = ctx.cfgs["sft"]
    seed_everything(cfg.seed)
    adapter = load_adapter(cfg, ctx.paths["coldstart"])
    return train_sft(
        cfg,
        adapter,
        make_builder(cfg, adapter),
        load_samples(ctx.manifests["train"]),
        ctx.out / "sft",
        progress=ctx.progress,
    )


def grpo_arm(ctx: Ctx, arm: str) -> dict:
    from emorl.runs import load_samples

    return train_arm(
        ctx.cfgs[arm],
        ctx.paths["coldstart"],
        load_samples(ctx.manifests["train"]),
        ctx.out / f"grpo-{arm}",
        ctx.progress,
    )


def _judge(ctx: Ctx):
    """The frozen judge (the cold start, taught the reflection questions), loaded once."""
    if "judge" not in ctx.cache:
        from emorl.runs import load_adapter

        ctx.cache["judge"] = load_adapter(ctx.cfgs["emo-r3"], ctx.paths["coldstart"])
    return ctx.cache["judge"]


def _reflection(ctx: Ctx, adapter, style: str, scoring: str, params: SamplingParams, grounding: str = "joint"):
    from emorl.rl.reflection import Reflection
    from emorl.runs import make_builder

    cfg = ctx.cfgs["emo-r3"]
    return Reflection(
        adapter,
        make_builder(cfg, adapter),
        style=style,
        grounding=grounding,
        params=params,
        batch_size=cfg.reflection.batch_size,
        scoring=scoring,
    )


def frozen_judge_reads(ctx: Ctx, name: str) -> dict:
    judge = _judge(ctx)
    seed_everything(ctx.base.seed)
    return judge_reads(ctx, name, lambda style: _reflection(ctx, judge, style, "sample", JUDGE_PARAMS), judge.tokenizer)


def own_judge_check(ctx: Ctx, name: str) -> dict:
    """Model ``name`` as its own judge (EMO-R3's setting), answering by log-probs, greedily and
    sampled (``CHECK_SCORINGS``)."""
    from emorl.data.synthetic.image_traces import image_trace
    from emorl.runs import load_adapter, load_samples

    release(ctx, name)
    adapter = load_adapter(ctx.cfgs[name], ctx.paths[name])
    samples = load_samples(ctx.manifests["test"], default="test")
    texts: CheckTexts = check_texts(
        samples,
        ctx.base.seed + 3,
        lambda s, label, rng: image_trace(s.meta, label, rng, style="boxed", word=s.words.get(label, label)),
    )
    return check_all_scorings(ctx, adapter, texts, name)


def check_all_scorings(ctx: Ctx, adapter, texts: CheckTexts, name: str, grounding: str = "joint") -> dict:
    """``judge_check`` of one judge with every entry of ``CHECK_SCORINGS``."""
    r = ctx.cfgs["emo-r3"].reflection
    out = {}
    for key, (scoring, params) in CHECK_SCORINGS.items():
        seed_everything(ctx.base.seed)
        refl = _reflection(
            ctx,
            adapter,
            "boxed",
            scoring,
            params or SamplingParams(r.max_new_tokens, r.temperature, r.top_p),
            grounding,
        )
        refl.judge = name
        out[key] = judge_check(refl, texts, seed=ctx.base.seed)
    return out


# ----------------------------------------------------------------------------- report
def collect(ctx: Ctx, arms: tuple[str, ...], runner: Stages) -> dict:
    res = ctx.results
    rows: dict[str, dict] = {}
    for m in ["base", "coldstart", *arms]:
        row: dict = {"recipe": ctx.cfgs[m].prompt.recipe, "judge_check": res.get(f"judge check {m}", {})}
        if m != "base":
            row.update({split: res[f"eval {m}/{split}"] for split in SPLITS})
            row["reflection"] = res[f"judge reads {m}"]
            stage = {"coldstart": "coldstart", "sft": "sft"}.get(m, f"grpo {m}")
            row["train_seconds"] = runner.seconds.get(stage, 0.0)
            if m in GRPO_ARMS:
                row["rl"] = res[f"grpo {m}"]
        rows[m] = row
    return {
        "models": rows,
        "quick": ctx.quick,
        "chance_accuracy": 1 / 8,
        "family": ctx.base.demo.family,
        "shape": {"hidden": ctx.base.demo.hidden, "layers": ctx.base.demo.layers},
        "tiny_arm_overrides": TINY_ARM + (QUICK_ARM if ctx.quick else []),
        "stage_seconds": dict(runner.seconds),
    }


def _auc(row: dict, scoring: str, key: str = "grounding") -> str:
    c = row.get("judge_check", {}).get(scoring, {}).get(key)
    return fmt_ci(c["auc"], [c["lo"], c["hi"]], 2) if c else "–"


def format_table(rows: dict[str, dict]) -> str:
    head = (
        "| model | recipe | test accuracy | test UAR | OOD accuracy | format | coherence | consistency | "
        "judge AUC (log-prob) | judge AUC (greedy) | train s |"
    )
    lines = [head, "|" + "---|" * 11]
    for name, r in rows.items():
        if "test" not in r:
            lines.append(f"| {name} | – | – | – | – | – | – | – | {_auc(r, 'logprob')} | {_auc(r, 'greedy')} | – |")
            continue
        t, o, j = r["test"], r["ood"], r.get("reflection", {})
        lines.append(
            f"| {name} | {r['recipe']} | {fmt_ci(t['war'], t.get('war_ci'))} | {t['uar']:.3f} | "
            f"{fmt_ci(o['war'], o.get('war_ci'))} | {fmt_ci(t['format_rate'], t.get('format_ci'))} | "
            f"{fmt_ci(j.get('coherence_rate'), j.get('coherence_ci'))} | "
            f"{fmt_ci(j.get('grounding_rate'), j.get('grounding_ci'))} | {_auc(r, 'logprob')} | {_auc(r, 'greedy')} | "
            f"{r.get('train_seconds', 0):.0f} |"
        )
    return "\n".join(lines)


def judge_table(rows: dict[str, dict]) -> str:
    """Each model as its own judge: both questions, every way of answering. Mean scores are the
    component's mean over each half; "yes" / "names" are the share of answers scoring 1 (sampled
    judges; a log-prob judge's scores are continuous); mass: how much probability a log-prob judge
    puts on the candidate answers at all."""
    lines = [
        (
            "| judge | answering | consistency AUC | mean score own / other | yes own / other | mass | "
            "coherence AUC | mean score right / wrong | names label right / wrong | mass |"
        ),
        "|" + "---|" * 10,
    ]
    for name, r in rows.items():
        for scoring, c in r.get("judge_check", {}).items():
            g, h = c["grounding"], c["coherence"]
            lines.append(
                f"| {name} | {scoring} | {fmt_ci(g['auc'], [g['lo'], g['hi']], 3)} | "
                f"{g.get('mean_own', float('nan')):.3f} / {g.get('mean_other', float('nan')):.3f} | "
                f"{g['yes_own']:.3f} / {g['yes_other']:.3f} | {_opt(g.get('answer_mass'))} | "
                f"{fmt_ci(h['auc'], [h['lo'], h['hi']], 3)} | "
                f"{h.get('mean_right', float('nan')):.3f} / {h.get('mean_wrong', float('nan')):.3f} | "
                f"{h['names_label_right']:.3f} / {h['names_label_wrong']:.3f} | {_opt(h.get('answer_mass'))} |"
            )
    return "\n".join(lines)


def _opt(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def rewards_table(rows: dict[str, dict]) -> str:
    """Mean training reward components over each GRPO arm's last quarter of steps."""
    arms = {n: r["rl"]["final_quarter_rewards"] for n, r in rows.items() if "rl" in r}
    if not arms:
        return "(no GRPO arm)"
    names = sorted({k for v in arms.values() for k in v}, key=lambda k: (k != "reward/overall", k))
    lines = ["| arm | " + " | ".join(k.removeprefix("reward/") for k in names) + " |", "|" + "---|" * (len(names) + 1)]
    lines += [f"| {a} | " + " | ".join(f"{v[k]:.3f}" if k in v else "" for k in names) + " |" for a, v in arms.items()]
    return "\n".join(lines)


def render_markdown(metrics: dict) -> str:
    rows, shape = metrics["models"], metrics["shape"]
    size = "quick (CI) sizes: a smoke test, not a result" if metrics["quick"] else "default sizes"
    return (
        "\n".join(
            [
                "# emorl compare --images: SFT vs naive GRPO vs EMO-R3",
                "",
                (
                    f"Synthetic still-image world (Mikels-8, chance accuracy {1 / 8:.3f}), tiny {metrics['family']} "
                    f"(hidden {shape['hidden']}, {shape['layers']} layers; random-init LLM, vision tower pretrained on the "
                    f"drawings' cues), {size}. Total wall time {metrics['total_seconds']:.0f} s."
                ),
                "",
                format_table(rows),
                "",
                "- Every model starts from **coldstart** (SFT on SET traces, `<think>` traces and the two reflection "
                "questions). **sft**: `\\boxed{label}` SFT on the training images; **naive-grpo**, **emo-r3**: the released "
                "configs at tiny size (`" + " ".join(metrics["tiny_arm_overrides"]) + "`).",
                (
                    "- accuracy = WAR (share correct), graded as the released code does (`strict_official`); format: the "
                    "recipe's released format check; 95 % intervals (bootstrap over images; Wilson for rates)."
                ),
                (
                    "- coherence / consistency: the cold start as a frozen judge (greedy) reads each model's test predictions: "
                    "the reasoning alone (steps 1-2, or the think text) names the label; the image confirms step 1 (or the "
                    "think text)."
                ),
                (
                    "- judge AUC: the model as its own judge (EMO-R3's setting) telling its own image's description from "
                    "another image's (of another class), balanced; log-prob: 0.5 + (P(yes) - P(no)) / 2 from one scoring pass; "
                    "greedy: the greedy answer read as yes 1 / no 0 / else 0.5 (the judge check below also has one answer "
                    "sampled at temperature 0.6, top-p 0.95, as during training). 0.5 is chance."
                ),
                "",
                "## Judge check (each model as its own judge; test images)",
                "",
                judge_table(rows),
                "",
                "## Training rewards (mean over the last quarter of GRPO steps)",
                "",
                rewards_table(rows),
                "",
            ]
        )
        + "\n"
    )
