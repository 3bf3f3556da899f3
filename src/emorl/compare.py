"""Side by side on the synthetic world: plain GRPO, the R1-Omni recipe and the EMO-R3 recipe, all
from the same cold-start checkpoint of the same tiny thinker.

Stages (each skipped when its output is complete, so an interrupted run resumes):
  1. synthesize the world and build the tiny thinker (tokenizer trained on both trace formats and
     the reflection prompts);
  2. shared cold start: SFT on ``<think>…</think><answer>…</answer>`` traces of the cold-start
     split, as in the demo;
  3. structured cold start for the EMO-R3 arm, continuing from 2: SET traces
     (``<step1>…</step3>\\boxed{…}``) converted from the same true cues, plus the reflection tasks
     the policy has to answer during RL (coherence: reasoning -> emotion; grounding: clip +
     description -> yes/no). A real omni model answers those zero-shot; a tiny one must be taught;
  4. GRPO per arm: (a) ``plain``: EMO-R3's Naive-GRPO baseline on R1-Omni's format (0.9 accuracy +
     0.1 format, emo-r3-tiny's GRPO settings); (b) ``r1-omni``: configs/r1-omni-tiny.yaml;
     (c) ``emo-r3``: configs/emo-r3-tiny.yaml with the reflective reward (current policy, no gradients);
  5. evaluate both cold starts and every arm on ``test`` and ``ood``; one frozen judge (the
     structured cold start of 3, the only checkpoint taught the reflection tasks) runs the
     reflection passes on every model's test predictions: coherence rate (the reasoning alone
     implies the label) and grounding rate (the clip confirms the description);
  6. write ``compare.json`` and ``compare.md``.

Tiny-model settings are not the papers' (see docs/papers.md); the numbers compare recipes on a
toy world, they do not reproduce paper results.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from emorl.config import RunConfig, load_config, packaged_config, save_run_config
from emorl.data.labels import VALENCE_AROUSAL
from emorl.data.loader import PromptBuilder
from emorl.data.manifest import Sample
from emorl.models.adapter import Modality, SamplingParams
from emorl.utils import atomic_write_json, atomic_write_text, seed_everything

ARMS = ("plain", "r1-omni", "emo-r3")
SPLITS = ("test", "ood")
# --quick: the arms' GRPO at CI size (the world, tiny model and cold start come from demo-quick.yaml)
QUICK_ARM = ["grpo.steps=8", "grpo.prompts_per_step=4", "grpo.completions_per_prompt=4", "grpo.micro_batch_rows=16",
             "grpo.sample_every=4", "sft.epochs=8"]
QUICK_BASE = ["demo.coldstart=96", "demo.test=42", "demo.ood=42", "sft.epochs=16"]

# ----------------------------------------------------------------------------- structured traces
# Step 2 ("how a human would feel") per label, with no emotion word (see emorl.data.labels.emotions_in),
# so the coherence judge has to map a felt response to an emotion rather than copy a word.
HUMAN_RESPONSE: dict[str, tuple[str, ...]] = {
    "happy": ("A person would feel warm and light, ready to laugh along.",
              "Anyone watching would feel cheered up."),
    "sad": ("A person would feel heavy and low, close to tears.",
            "Anyone listening would feel drained and down."),
    "neutral": ("A person would feel nothing much either way.",
                "Anyone watching would stay unmoved and even."),
    "angry": ("A person would feel heated and ready to fight back.",
              "Anyone listening would feel their temper rise."),
    "surprise": ("A person would be caught off guard, jolted by the unexpected.",
                 "Anyone watching would feel startled."),
    "disgust": ("A person would want to pull away from something foul.",
                "Anyone watching would feel their stomach turn."),
    "fear": ("A person would feel threatened and want to escape.",
             "Anyone listening would sense danger and want to hide."),
}


def cue_description(meta: dict, label: str, rng: np.random.Generator) -> str:
    """Stage 1 from a clip's true cues: the cold-start trace's cue sentences (face, voice),
    without its closing sentence (the one that names the emotion)."""
    from emorl.data.synthetic.traces import make_trace

    think = make_trace(meta, label, rng).split("<think>", 1)[1].split("</think>", 1)[0]
    sentences = [s for s in think.replace(". ", ".\n").split("\n") if s.strip()]
    return " ".join(sentences[:-1])


def valence_arousal_sentence(label: str) -> str:
    valence, arousal = VALENCE_AROUSAL[label]
    return f"The emotion is {valence}, with {arousal} arousal."


def structured_trace(meta: dict, label: str, rng: np.random.Generator, *, style: str = "boxed") -> str:
    """A SET cold-start trace from a synthetic clip's true cues: step 1 cites the face and voice
    cues, step 2 a human response, step 3 valence and arousal (``VALENCE_AROUSAL``), then the
    label in ``\\boxed{}`` (style ``boxed``) or ``<answer>`` tags (style ``steps``)."""
    s1, s2 = cue_description(meta, label, rng), str(rng.choice(HUMAN_RESPONSE[label]))
    answer = f"\\boxed{{{label}}}" if style == "boxed" else f"<answer>{label}</answer>"
    return f"<step1>{s1}</step1><step2>{s2}</step2><step3>{valence_arousal_sentence(label)}</step3>{answer}"


def reflection_tasks(samples: list[Sample], views: tuple[str, ...], rng: np.random.Generator) -> list[Sample]:
    """Supervised examples of the reflection questions, as sample copies whose ``meta`` carries
    the prompt (``task_prompt``), the media to show (``task_modality``) and the target (``trace``).

    Per clip: one coherence question (reasoning written for the label or, half the time, for
    another emotion -> that emotion) and, per grounding view, one yes/no question (the clip's own
    description -> yes; another clip's, of another label -> no). Reasoning comes in both formats
    (SET stages, ``<think>`` text) so one judge can read every arm.
    """
    from emorl.data.synthetic.traces import make_trace
    from emorl.rl.reflection import coherence_prompt, grounding_prompt, split_by_modality

    out: list[Sample] = []
    for i, s in enumerate(samples):
        others = [o for o in samples if o.label != s.label]
        target = s.label if rng.random() < 0.5 else str(rng.choice([c for c in s.labels if c != s.label]))
        if rng.random() < 0.5:
            reasoning = f"<step1>{cue_description(s.meta, target, rng)}</step1><step2>" \
                        f"{rng.choice(HUMAN_RESPONSE[target])}</step2>"
        else:
            reasoning = make_trace(s.meta, target, rng).split("<think>", 1)[1].split("</think>", 1)[0]
        out.append(_task(s, f"coh{i}", coherence_prompt(reasoning, s.labels), "text", target))
        for view in views:
            match = rng.random() < 0.5
            src = s if match else others[int(rng.integers(len(others)))]
            desc = cue_description(src.meta, src.label, rng)
            if view == "joint":
                desc = f"<step1>{desc}</step1>" if rng.random() < 0.5 else desc
            else:
                desc = split_by_modality(desc)[view]
                if not desc:
                    continue
            modality = {"joint": "video+audio", "video": "video", "audio": "audio"}[view]
            out.append(_task(s, f"g{view}{i}", grounding_prompt(desc, view), modality, "yes" if match else "no"))
    return out


def _task(s: Sample, tag: str, prompt: str, modality: str, target: str) -> Sample:
    return replace(s, id=f"{s.id}#{tag}", meta={**s.meta, "clip_of": s.id, "task_prompt": prompt,
                                                 "task_modality": modality, "trace": target})


class TaskPromptBuilder(PromptBuilder):
    """A PromptBuilder whose samples may carry their own prompt text and media (``meta.task_prompt``,
    ``meta.task_modality``); task copies share their clip's decode (``meta.clip_of``)."""

    def text(self, s: Sample) -> str:
        return s.meta.get("task_prompt") or super().text(s)

    def prompt(self, s: Sample, modality: Modality = Modality.AV):
        task = s.meta.get("task_modality")
        return super().prompt(s, Modality.parse(task) if task else modality)

    def clip(self, s: Sample, modality: Modality = Modality.AV):
        base = s.meta.get("clip_of")
        return super().clip(replace(s, id=base) if base else s, modality)


# ----------------------------------------------------------------------------- stages
def _done(d: Path) -> dict | None:
    f = d / "DONE.json"
    return json.loads(f.read_text()) if f.is_file() else None


def _stage(name: str, d: Path, fn) -> dict:
    prev = _done(d)
    if prev is not None:
        print(f"[compare] {name}: already done ({d}), skipping")
        return prev
    print(f"[compare] {name} ...")
    t = time.perf_counter()
    info = {k: v for k, v in (fn() or {}).items() if k != "history"}
    info["seconds"] = round(time.perf_counter() - t, 1)
    atomic_write_json(d / "DONE.json", info)
    print(f"[compare] {name}: done in {info['seconds']:.0f}s")
    return info


def _tokenizer_corpus(samples: list[Sample], cfgs: list[RunConfig], rng: np.random.Generator) -> list[str]:
    """Both trace formats, every arm's prompt and the reflection prompts, so the tiny BPE
    tokenizer keeps them short."""
    from emorl.data.synthetic.traces import make_trace
    from emorl.recipes.prompts import PromptSpec, build_prompt
    from emorl.rl.reflection import COHERENCE_PROMPT, GROUNDING_PROMPT

    texts = [make_trace(s.meta, s.label, rng) for s in samples for _ in range(2)]
    texts += [structured_trace(s.meta, s.label, rng) for s in samples for _ in range(2)]
    prompts = {build_prompt(PromptSpec(c.prompt.question, c.prompt.format, c.prompt.with_options), samples[0].labels)
               for c in cfgs}
    return texts + [*prompts, COHERENCE_PROMPT, GROUNDING_PROMPT] * 10


def arm_configs(base_config: str | Path, *, quick: bool, overrides: list[str] | None = None,
                base_extra: list[str] | None = None) -> tuple[RunConfig, dict[str, RunConfig]]:
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


def run_compare(out: str | Path, *, quick: bool = False, config: str | None = None, overrides: list[str] | None = None,
                arms: tuple[str, ...] = ARMS, progress: bool = True) -> dict:
    """Run the comparison into ``out``; returns the metrics written to ``out/compare.json``.

    ``config`` is the base (world sizes, tiny model, shared cold start, eval; default:
    configs/demo.yaml, or demo-quick.yaml with ``quick``); the arms' settings come from
    configs/r1-omni-tiny.yaml and configs/emo-r3-tiny.yaml (see ``arm_configs``). ``overrides``
    (dotted ``key=value``) apply to the base and every arm. ``arms`` picks a subset of ``ARMS``.
    """
    from emorl.runs import load_samples

    unknown = set(arms) - set(ARMS)
    if unknown:
        raise ValueError(f"unknown arm(s) {', '.join(sorted(unknown))}; known: {', '.join(ARMS)}")
    base, cfgs = arm_configs(config or packaged_config("demo-quick" if quick else "demo"), quick=quick,
                             overrides=overrides, base_extra=QUICK_BASE if quick and not config else [])
    out = Path(out)
    base.out = str(out)
    out.mkdir(parents=True, exist_ok=True)
    save_run_config(base, out)
    t_start = time.perf_counter()
    manifests, model0 = _world_and_model(base, cfgs, out, progress)
    paths, seconds = _cold_starts(base, cfgs, model0, manifests["coldstart"], out, "emo-r3" in arms, progress)
    train = load_samples(manifests["train"])
    rl: dict[str, dict] = {}
    for arm in arms:
        start = paths["coldstart_steps" if arm == "emo-r3" else "coldstart"]
        d = out / f"grpo-{arm}"
        rl[arm] = _stage(f"GRPO {arm}", d, lambda arm=arm, start=start, d=d: _train_arm(cfgs[arm], start, train, d,
                                                                                          progress))
        paths[arm] = out / f"grpo-{arm}" / "model"

    judge = _judge(cfgs["emo-r3"], paths.get("coldstart_steps"), manifests["test"], out)
    rows: dict[str, dict] = {}
    for name, path in paths.items():
        # each cold start is evaluated like the arms that start from it
        cfg = cfgs[{"coldstart": "r1-omni", "coldstart_steps": "emo-r3"}.get(name, name)]
        rows[name] = _evaluate(name, cfg, path, manifests, out, judge, progress)
        rows[name]["train_seconds"] = rl.get(name, {}).get("seconds", seconds.get(name, 0.0))
        if name in rl:
            rows[name]["rl"] = {k: v for k, v in rl[name].items() if k != "seconds"}
    total = round(time.perf_counter() - t_start, 1)
    metrics = {"models": rows, "judge": judge["check"] if judge else None, "quick": quick, "total_seconds": total,
               "chance_uar": 1 / 7}
    atomic_write_json(out / "compare.json", metrics)
    table = format_table(rows)
    atomic_write_text(out / "compare.md", render_markdown(metrics, table))
    print(table)
    print(f"[compare] {out / 'compare.json'}   {out / 'compare.md'}   total {total:.0f}s")
    return metrics


def _world_and_model(base: RunConfig, cfgs: dict[str, RunConfig], out: Path, progress: bool) -> tuple[dict, Path]:
    """Synthesize the world and build the tiny thinker (perception-pretrained towers, as in the demo);
    returns ({split: manifest}, model dir)."""
    from emorl.data.synthetic import synthesize
    from emorl.demo import build_base, check_family
    from emorl.runs import load_samples

    check_family(base)
    d, data = base.demo, out / "data"
    sizes = {"train": d.train, "coldstart": d.coldstart, "test": d.test, "ood": d.ood, "pretrain": d.pretrain}
    _stage("synthesize", data, lambda: {"paths": {k: str(v) for k, v in synthesize(
        data, seed=base.seed, sizes=sizes, workers=d.workers, progress=progress).items()}})
    manifests = {s: data / f"{s}.jsonl" for s in sizes}
    def corpus() -> list[str]:
        return _tokenizer_corpus(load_samples(manifests["coldstart"]), [base, *cfgs.values()],
                                 np.random.default_rng(base.seed))

    model0 = build_base(base, out, manifests, corpus, _stage, progress)
    return manifests, model0


def _cold_starts(base: RunConfig, cfgs: dict[str, RunConfig], model0: Path, manifest: Path, out: Path, steps: bool,
                 progress: bool) -> tuple[dict[str, Path], dict[str, float]]:
    """The shared think/answer cold start and (``steps``) the EMO-R3 arm's structured one on top."""
    from emorl.rl.reflection import grounding_views
    from emorl.runs import load_adapter, load_samples, make_builder
    from emorl.sft import train_sft

    samples = load_samples(manifest)

    def shared():
        seed_everything(base.seed)
        cfg = copy.deepcopy(base)
        cfg.sft.target = "trace"
        adapter = load_adapter(cfg, model0)
        return train_sft(cfg, adapter, make_builder(cfg, adapter), samples, out / "coldstart", progress=progress)

    def structured():
        cfg = cfgs["emo-r3"]
        seed_everything(cfg.seed)
        rng = np.random.default_rng(cfg.seed + 1)
        traces = [replace(s, meta={**s.meta, "trace": structured_trace(s.meta, s.label, rng)}) for s in samples]
        tasks = reflection_tasks(samples, grounding_views(cfg.reflection.grounding), rng)
        adapter = load_adapter(cfg, out / "coldstart" / "model")
        builder = TaskPromptBuilder(adapter, make_builder(cfg, adapter).spec, num_frames=cfg.data.num_frames,
                                    frame_size=cfg.data.frame_size, on_missing_audio=cfg.data.on_missing_audio,
                                    sampling=cfg.data.sampling)
        info = train_sft(cfg, adapter, builder, traces + tasks, out / "coldstart_steps", progress=progress)
        return {**info, "n_traces": len(traces), "n_reflection_tasks": len(tasks)}

    seconds = {"coldstart": _stage("shared cold start (think/answer traces)", out / "coldstart", shared)["seconds"]}
    paths = {"coldstart": out / "coldstart" / "model"}
    if steps:
        seconds["coldstart_steps"] = _stage("structured cold start (SET traces + reflection tasks)",
                                            out / "coldstart_steps", structured)["seconds"]
        paths["coldstart_steps"] = out / "coldstart_steps" / "model"
    return paths, seconds


def _train_arm(cfg: RunConfig, start: Path, train: list[Sample], out: Path, progress: bool) -> dict:
    """GRPO of one arm from ``start``, with the reflective reward when ``cfg.reflection.enabled``."""
    from emorl.rl.reflection import make_reflection
    from emorl.rl.trainer import train_grpo
    from emorl.runs import load_adapter, make_builder

    seed_everything(cfg.seed)
    adapter = load_adapter(cfg, start)
    builder = make_builder(cfg, adapter)
    reflection = make_reflection(adapter, builder, cfg) if cfg.reflection.enabled else None
    save_run_config(cfg, out)
    res = train_grpo(cfg, adapter, builder, train, out, progress=progress, extra_rewards=reflection)
    tail = res["history"][-max(1, len(res["history"]) // 4):]
    means = {k: round(float(np.mean([h[k] for h in tail])), 4) for k in tail[0]
             if k.startswith("reward/") and not k.endswith("_std")}
    return {"first_reward": res["first_reward"], "last_reward": res["last_reward"], "final_quarter_rewards": means,
            "reflection_seconds": round(reflection.total_seconds, 1) if reflection else 0.0}


def _judge(cfg: RunConfig, path: Path | None, test_manifest: Path, out: Path) -> dict | None:
    """The frozen judge (structured cold start) and its check on the test split: how often it
    names the emotion a reasoning was written for, and says yes to the clip's own description
    vs another clip's."""
    if path is None:
        return None
    from emorl.rl.reflection import Reflection
    from emorl.runs import load_adapter, load_samples, make_builder

    adapter = load_adapter(cfg, path)
    builder = make_builder(cfg, adapter)
    params = SamplingParams(8, greedy=True)
    grounding = cfg.reflection.grounding if cfg.reflection.grounding != "none" else "joint"

    def make(style: str) -> Reflection:
        return Reflection(adapter, builder, style=style, grounding=grounding, params=params,
                          batch_size=cfg.reflection.batch_size)

    def check():
        rng = np.random.default_rng(cfg.seed + 2)
        samples = load_samples(test_manifest, default="test")
        written = [s.label if rng.random() < 0.5 else str(rng.choice([c for c in s.labels if c != s.label]))
                   for s in samples]
        others = [str(rng.choice([o.id for o in samples if o.label != s.label])) for s in samples]
        by_id = {s.id: s for s in samples}
        own = [structured_trace(s.meta, w, rng) for s, w in zip(samples, written)]
        foreign = [structured_trace(by_id[o].meta, by_id[o].label, rng) for o in others]
        relabelled = [replace(s, label=w) for s, w in zip(samples, written)]
        comps_own, _ = make("boxed").score(relabelled, own)
        comps_foreign, _ = make("boxed").score(samples, foreign)
        res = {"n": len(samples), "coherence_names_written_emotion": _rate(comps_own, "coherence", 1.0)}
        for k in ("grounding", "grounding_video", "grounding_audio"):
            if k in comps_own[0]:  # stage 1 of an own trace cites the clip's true cues, whatever it concludes
                res[f"{k}_yes_own_clip"] = _rate(comps_own, k, 1.0)
                res[f"{k}_yes_other_clip"] = _rate(comps_foreign, k, 1.0)
        return res

    info = _stage("judge check", out / "judge", check)
    return {"make": make, "check": {k: v for k, v in info.items() if k != "seconds"}, "tokenizer": adapter.tokenizer}


def _rate(comps: list[dict], key: str, value: float) -> float:
    return round(sum(c[key] == value for c in comps) / max(1, len(comps)), 4)


def _evaluate(name: str, cfg: RunConfig, path: Path, manifests: dict, out: Path, judge: dict | None,
              progress: bool) -> dict:
    """WAR / UAR / format on test and ood, then the judge's reflection passes on the test predictions."""
    from emorl.recipes.rewards import get_recipe
    from emorl.runs import load_adapter, load_samples, run_eval

    row: dict = {"recipe": cfg.prompt.recipe}
    adapter = None
    for split in SPLITS:
        d = out / "eval" / name / split

        def fn(split=split, d=d):
            nonlocal adapter
            adapter = adapter or load_adapter(cfg, path)
            m = run_eval(cfg, path, manifests[split], d, progress=progress, title=f"{name} / {split}",
                         adapter=adapter)
            return {"war": m["war"], "uar": m["uar"], "format_rate": m["format_rate"], "n": m["n"]}

        row[split] = {k: v for k, v in _stage(f"eval {name}/{split}", d, fn).items() if k != "seconds"}
    if judge is not None:
        def reflect():
            lines = (out / "eval" / name / "test" / "predictions.jsonl").read_text().splitlines()
            preds = [json.loads(x) for x in lines]
            by_id = {s.id: s for s in load_samples(manifests["test"], default="test")}
            judge_pass = judge["make"](get_recipe(cfg.prompt.recipe).style)
            comps, _ = judge_pass.score([by_id[p["id"]] for p in preds], [p["completion"] for p in preds])
            tok = judge["tokenizer"]
            res = {"coherence_rate": _rate(comps, "coherence", 1.0),
                   "mean_tokens": round(float(np.mean([len(tok(p["completion"])["input_ids"]) for p in preds])), 1)}
            for k in ("grounding", "grounding_video", "grounding_audio"):
                if k in comps[0]:
                    res[f"{k}_rate"] = _rate(comps, k, 1.0)
            return res

        row["reflection"] = {k: v for k, v in _stage(f"judge {name}", out / "eval" / name / "judge", reflect).items()
                             if k != "seconds"}
    return row


# ----------------------------------------------------------------------------- report
def format_table(rows: dict[str, dict]) -> str:
    head = ("| model | recipe | test WAR | test UAR | OOD WAR | OOD UAR | format | coherence | grounding | "
            "mean tokens | train s |")
    lines = [head, "|" + "---|" * 11]
    for name, r in rows.items():
        t, o, j = r["test"], r["ood"], r.get("reflection", {})
        lines.append(f"| {name} | {r['recipe']} | {t['war']:.3f} | {t['uar']:.3f} | {o['war']:.3f} | "
                     f"{o['uar']:.3f} | {t['format_rate']:.3f} | {j.get('coherence_rate', float('nan')):.3f} | "
                     f"{j.get('grounding_rate', float('nan')):.3f} | {j.get('mean_tokens', float('nan')):.1f} | "
                     f"{r.get('train_seconds', 0):.0f} |")
    return "\n".join(lines)


def rewards_table(rows: dict[str, dict]) -> str:
    """Mean training reward components over each arm's last quarter of GRPO steps."""
    arms = {n: r["rl"]["final_quarter_rewards"] for n, r in rows.items() if "rl" in r}
    names = sorted({k for v in arms.values() for k in v}, key=lambda k: (k != "reward/overall", k))
    lines = ["| arm | " + " | ".join(k.removeprefix("reward/") for k in names) + " |", "|" + "---|" * (len(names) + 1)]
    lines += [f"| {a} | " + " | ".join(f"{v[k]:.3f}" if k in v else "" for k in names) + " |" for a, v in arms.items()]
    return "\n".join(lines)


def render_markdown(metrics: dict, table: str) -> str:
    judge = metrics.get("judge") or {}
    parts = [
        "# emorl compare: plain GRPO vs R1-Omni vs EMO-R3", "",
        f"Synthetic omni-emotion world (7 classes, chance UAR {1 / 7:.3f}), tiny thinker (random-init LLM, "
        "attribute-pretrained towers), "
        f"{'quick (CI) sizes: a smoke test, not a result' if metrics['quick'] else 'default sizes'}. "
        f"Total wall time {metrics['total_seconds']:.0f} s.", "", table, "",
        "- **coldstart**: shared SFT on `<think>/<answer>` traces; **plain** and **r1-omni** start from it. "
        "**coldstart_steps**: coldstart + SFT on SET traces and the reflection tasks; **emo-r3** starts from it.",
        "- format / coherence / grounding / mean tokens: on the test predictions. coherence: the frozen judge "
        "(coldstart_steps), reading the reasoning alone (stages 1-2, or the think text), names the label; "
        "grounding: it says the clip fits the description (stage 1, or the think text).",
        "- train s: GRPO wall time (the cold starts: their SFT time).", "",
        "## Training rewards (mean over the last quarter of GRPO steps)", "", rewards_table(metrics["models"]), "",
        "## Judge check (test split)", "",
        *(f"- {k}: {v}" for k, v in judge.items()), "",
        "SET traces written for the label or another emotion, and for the clip or another clip. A judge that "
        "names the written emotion near chance (1/7), or says yes to another clip's description as often as to "
        "the clip's own, cannot tell coherent or grounded reasoning from the rest at this model size: read the "
        "coherence and grounding columns with that in mind.",
    ]
    return "\n".join(parts) + "\n"
