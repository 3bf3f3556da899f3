"""The model card of an exported model: README.md with YAML metadata in the Hugging Face hub's
format (``library_name``, ``base_model``, ``datasets``, ``tags``, ``model-index`` with the
evaluation results), then the evaluation with 95 % confidence intervals, the modality analysis,
the training recipe, how to use it with transformers alone, and intended use and limitations.

Evaluations come from the run's own files: an evaluation folder (``metrics.json`` +
``predictions.jsonl``, what ``emorl eval`` and training's ``data.eval`` write) gives WAR, UAR and
the format rate with intervals (emorl.eval.stats: the intervals saved with the metrics when
present, else a bootstrap over clips of the predictions, 2000 draws, seed 0); a modality-analysis
folder (``modality.json``, ``emorl analyze modality``) gives each condition's WAR / UAR and the
drop from removing each modality, with their intervals.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import yaml


def run_folder(src: Path) -> Path | None:
    """The run a model folder belongs to: ``RUN`` for ``RUN/model`` or ``RUN/adapter`` when RUN has
    the run's ``config.yaml``."""
    if src.name in ("model", "adapter") and (src.parent / "config.yaml").is_file():
        return src.parent
    return None


def _read_rows(p: Path) -> list[dict]:
    return [json.loads(x) for x in p.read_text(encoding="utf-8").splitlines() if x.strip()]


def summarize_eval(d: Path) -> dict:
    """WAR, UAR and format rate of one evaluation folder, each {value, lo, hi}, with its data."""
    from emorl.eval.stats import metric_cis, rate_ci

    m = json.loads((d / "metrics.json").read_text())
    pred_file = d / "predictions.jsonl"
    rows = _read_rows(pred_file) if pred_file.is_file() else []
    labels = m.get("labels") or sorted({r["label"] for r in rows})
    if "ci" in m:
        ci, method = m["ci"], f"cluster bootstrap saved with the metrics ({m['ci'].get('n_clusters')} clusters)"
    elif rows:
        ci = metric_cis([r["label"] for r in rows], [r.get("pred") for r in rows], labels)
        method = "bootstrap over clips (2000 draws)"
    else:
        ci, method = None, "no predictions.jsonl: no interval"
    out = {
        "name": d.name,
        "path": str(d),
        "n": m.get("n", len(rows)),
        "labels": list(labels),
        "ci_method": method,
        "datasets": sorted(Counter(r.get("dataset") for r in rows if r.get("dataset"))),
        "splits": sorted(Counter(r.get("split") for r in rows if r.get("split"))),
        "war": ci["war"] if ci else {"value": m["war"], "lo": None, "hi": None},
        "uar": ci["uar"] if ci else {"value": m["uar"], "lo": None, "hi": None},
        "modality": (m.get("settings") or {}).get("modality") or (rows[0].get("modality") if rows else None),
    }
    if rows and all("format_ok" in r for r in rows):
        f = rate_ci([bool(r["format_ok"]) for r in rows])
        out["format_rate"] = {"value": f["rate"], "lo": f["lo"], "hi": f["hi"]}
    elif "format_rate" in m:
        out["format_rate"] = {"value": m["format_rate"], "lo": None, "hi": None}
    return out


def find_evaluations(src: Path, run: Path | None, extra=()) -> dict:
    """{"evals": [summaries], "modality": [modality.json dicts with "name"]}: the folders named in
    ``extra`` (an evaluation, an analysis, or a folder of evaluations such as RUN/eval), else
    ``src/eval/*``, ``RUN/eval/*`` and ``RUN/*/modality.json``."""
    evals, mods, seen = [], [], set()

    def take(d: Path, explicit: bool) -> None:
        d = d.resolve()
        if d in seen:
            return
        seen.add(d)
        if (d / "modality.json").is_file():
            mods.append({"name": d.name, **json.loads((d / "modality.json").read_text())})
        elif (d / "metrics.json").is_file():
            evals.append(summarize_eval(d))
        elif explicit and d.is_dir() and any((c / "metrics.json").is_file() for c in d.iterdir() if c.is_dir()):
            for c in sorted(d.iterdir()):
                if (c / "metrics.json").is_file() or (c / "modality.json").is_file():
                    take(c, False)
        elif explicit:
            raise FileNotFoundError(
                f"--eval {d}: neither an evaluation folder (metrics.json) nor a modality analysis "
                "(modality.json) nor a folder of evaluations"
            )

    if extra:
        for e in extra:
            take(Path(e).expanduser(), True)
        return {"evals": evals, "modality": mods}
    for base in [src / "eval", *([run / "eval"] if run else [])]:
        if base.is_dir():
            for c in sorted(base.iterdir()):
                if c.is_dir() and ((c / "metrics.json").is_file() or (c / "modality.json").is_file()):
                    take(c, False)
    if run:
        for c in sorted(run.iterdir()):
            if c.is_dir() and (c / "modality.json").is_file():
                take(c, False)
    return {"evals": evals, "modality": mods}


# ------------------------------------------------------------------------------ rendering
def _v(x, pct: bool = False) -> str:
    if x is None:
        return "–"
    return f"{100 * x:.1f} %" if pct else f"{x:.3f}"


def _ci(m: dict | None, pct: bool = False) -> str:
    if not m or m.get("value") is None:
        return "–"
    if m.get("lo") is None:
        return _v(m["value"], pct)
    return f"{_v(m['value'], pct)} [{_v(m['lo'], pct)}, {_v(m['hi'], pct)}]"


def _hub_id(path: str) -> str | None:
    """``path`` when it reads as a hub id (org/name), not a local folder."""
    if not path or path.startswith(("/", ".", "~")) or path.count("/") != 1 or Path(path).exists():
        return None
    return path


def _stage(run: Path | None) -> str:
    s = training_stage(run)
    return f" ({s})" if s != "unknown" else ""


def training_stage(run: Path | None) -> str:
    """ "GRPO", "SFT" or "unknown", from the run's metrics.jsonl."""
    f = run / "metrics.jsonl" if run else None
    if not f or not f.is_file():
        return "unknown"
    first = next((x for x in f.read_text().splitlines() if x.strip()), "")
    keys = json.loads(first) if first else {}
    return "GRPO" if any(k.startswith("reward/") for k in keys) else "SFT" if "loss" in keys else "unknown"


def metadata(cfg, *, name: str, evaluations: dict, base_model: str | None, license: str, raw: dict) -> dict:
    """The YAML front matter (hub model card metadata, with ``model-index`` results)."""
    datasets = sorted(
        {d for e in evaluations["evals"] for d in e["datasets"]}
        | ({cfg.prompt.labels[0]} if len(cfg.prompt.labels) == 1 else set())
    )
    base = base_model or _hub_id(str((raw.get("model") or {}).get("path", "")))
    results = []
    for e in evaluations["evals"]:
        split = "+".join(e["splits"]) or "test"
        ds = "+".join(e["datasets"]) or e["name"]
        ms = []
        for key, typ, label in (("war", "accuracy", "WAR"), ("uar", "recall", "UAR")):
            m = e[key]
            ci = f" (95% CI {m['lo']:.3f}-{m['hi']:.3f})" if m.get("lo") is not None else ""
            ms.append({"type": typ, "name": f"{label}{ci}", "value": round(float(m["value"]), 4), "verified": False})
        results.append(
            {
                "task": {"type": "video-classification", "name": "Emotion recognition"},
                "dataset": {"name": f"{e['name']} ({split})", "type": ds, "split": split},
                "metrics": ms,
            }
        )
    meta = {
        "library_name": "transformers",
        "license": license,
        "pipeline_tag": "video-text-to-text",
        **({"base_model": base} if base else {}),
        "tags": ["emorl", "emotion-recognition", "multimodal", "video", "audio", "reasoning", "rlvr"],
        **({"datasets": datasets} if datasets else {}),
        "metrics": ["accuracy", "recall"],
    }
    if results:
        meta["model-index"] = [{"name": name, "results": results}]
    return meta


def _eval_section(evaluations: dict) -> list[str]:
    out = ["## Evaluation", ""]
    if not evaluations["evals"]:
        return [
            *out,
            (
                "No evaluation of this model was found beside it (run `emorl eval --model DIR --manifest M`, "
                "then export again, or pass `--eval DIR`). Do not use it before you have measured it on your data."
            ),
            "",
        ]
    out += [
        "| evaluation | data | n | WAR [95 % CI] | UAR [95 % CI] | format rate [95 % CI] |",
        "| --- | --- | ---: | --- | --- | --- |",
    ]
    for e in evaluations["evals"]:
        data = f"{'+'.join(e['datasets']) or '?'} ({'+'.join(e['splits']) or '?'}, {e['modality'] or '?'})"
        out.append(
            f"| {e['name']} | {data} | {e['n']} | {_ci(e['war'], True)} | {_ci(e['uar'], True)} | "
            f"{_ci(e.get('format_rate'), True)} |"
        )
    methods = sorted({e["ci_method"] for e in evaluations["evals"]})
    out += [
        "",
        (
            "WAR: accuracy over clips; UAR: mean per-class recall; format rate: completions that follow the "
            f"recipe's format. Intervals: {'; '.join(methods)}."
        ),
        "",
    ]
    return out


def _modality_section(mods: list[dict]) -> list[str]:
    if not mods:
        return []
    out = [
        "## Modality analysis",
        "",
        (
            "The same clips with video and audio, video only, audio only and neither (`emorl analyze modality`). "
            "A drop is WAR with both minus WAR without the modality, with a paired bootstrap interval."
        ),
        "",
    ]
    titles = {"av": "video+audio", "video": "video only", "audio": "audio only", "text": "neither (prompt only)"}
    for m in mods:
        out += [
            f"**{m['name']}** (n = {m.get('n')})",
            "",
            "| condition | n | WAR [95 % CI] | UAR [95 % CI] |",
            "| --- | ---: | --- | --- |",
        ]
        for c, v in m.get("conditions", {}).items():
            if v.get("n"):
                out.append(f"| {titles.get(c, c)} | {v['n']} | {_ci(v.get('war'), True)} | {_ci(v.get('uar'), True)} |")
        for removed, d in m.get("drops", {}).items():
            w = d.get("war", {})
            if "diff" in w:
                what = "both modalities" if removed == "both" else removed
                out.append(
                    f"\nRemoving {what}: WAR drop {100 * w['diff']:+.1f} points [{100 * w['lo']:+.1f}, "
                    f"{100 * w['hi']:+.1f}]{' (significant)' if w.get('significant') else ' (not significant)'}."
                )
        out.append("")
    return out


_LIMITS = """## Intended use and limitations

- **Use**: research on emotion recognition and its reasoning in short video clips of people
  (face and voice), e.g. comparing recipes, ablating modalities, studying the reasoning. Its
  answers are estimates of an *expressed* emotion in a clip, over the label set above only.
- **Not for** decisions about people: hiring, admission, policing, health or insurance
  assessment, surveillance, or inferring someone's inner state or character. Emotion labels of
  acted or film clips do not transfer to such settings.
- **Limits**: accuracy is what the evaluation above measured, on that data; other cameras,
  languages, cultures and recording conditions can be much worse. The reasoning is generated text
  and may cite cues that are not in the clip (see the modality analysis, when present). The class
  probabilities are the model's probabilities of each answer given its own reasoning, not
  calibrated confidences. Clips are read as {frames} frames{size} and 16 kHz audio; longer clips are
  sampled sparsely.
"""


def model_card(
    cfg,
    *,
    name: str,
    architecture: str,
    evaluations: dict,
    base_model: str | None = None,
    license: str = "other",
    merged_lora: bool = False,
    parameters: int = 0,
    raw: dict | None = None,
    run: Path | None = None,
    frame_pixels: int | None = None,
    usage=None,
) -> str:
    """The README.md text of an exported model (see the module docstring). ``frame_pixels``: the
    exact pixel budget per frame emorl gave the processor (the usage code passes it too: the
    processor's own defaults would resize frames differently). ``usage``: the model family's
    usage-code writer (``adapter.usage_code``; keyword arguments cls, repo, frames, prompt,
    max_new, frame_pixels, frame_size), or None for a plain loading note."""
    from emorl.eval.predict import model_labels
    from emorl.recipes.prompts import PromptSpec, build_prompt, recipe_prompt
    from emorl.recipes.rewards import recipe_for

    raw = raw or {}
    labels, label_set = model_labels(cfg.prompt.labels) if cfg.prompt.labels else ((), "")
    recipe = recipe_for(cfg)
    meta = metadata(cfg, name=name, evaluations=evaluations, base_model=base_model, license=license, raw=raw)
    question, fmt = recipe_prompt(cfg.prompt.recipe, cfg.prompt.question, cfg.prompt.format)
    prompt = build_prompt(PromptSpec(question, fmt, cfg.prompt.with_options), tuple(labels) or None)
    size = f" of {cfg.data.frame_size}x{cfg.data.frame_size} pixels" if cfg.data.frame_size else ""
    lines = [
        "---",
        yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(),
        "---",
        "",
        f"# {name}",
        "",
        f"An emotion recognition model for video clips with audio: given a clip, it writes its reasoning and "
        f"names one emotion of its label set, in the answer format of the `{cfg.prompt.recipe}` recipe "
        f"({recipe.style}). Trained with emorl{_stage(run)}; {architecture}"
        + (f", {parameters / 1e6:.1f} M parameters" if parameters else "")
        + (" (LoRA merged into the base weights)" if merged_lora else "")
        + ". It loads with transformers "
        "alone.",
        "",
        (
            f"**Labels** ({label_set if label_set not in ('', 'unlabeled') else 'its own list'}): "
            f"{', '.join(labels) or 'not recorded'}."
        ),
        "",
    ]
    lines += _eval_section(evaluations)
    lines += _modality_section(evaluations["modality"])
    lines += _recipe_section(cfg, raw, prompt)
    code = (
        usage(
            cls=architecture,
            repo=name,
            frames=cfg.data.num_frames,
            prompt=prompt,
            max_new=cfg.eval.max_new_tokens,
            frame_pixels=frame_pixels,
            frame_size=cfg.data.frame_size,
        )
        if usage
        else (
            f"Load it with `{architecture}.from_pretrained(...)` and build its inputs with "
            "`AutoProcessor.from_pretrained(...)` from the same folder."
        )
    )
    lines += [
        "## How to use (transformers only)",
        "",
        code,
        "",
        (
            f"The answer is the text inside the recipe's answer tags; emorl reads it with its grader "
            f"(`{recipe.name or cfg.prompt.recipe}`)."
        ),
        "",
    ]
    lines.append(_LIMITS.format(frames=cfg.data.num_frames, size=size))
    return "\n".join(lines)


def _recipe_section(cfg, raw: dict, prompt: str) -> list[str]:
    g, s, m = raw.get("grpo") or {}, raw.get("sft") or {}, raw.get("model") or {}
    rows = [
        (
            "reward recipe",
            f"`{cfg.prompt.recipe}` (grading: {'released grader' if cfg.grading.strict_official else 'emorl answer grammar'})",
        ),
        ("prompt", prompt.replace("\n", " / ")),
        (
            "frames",
            f"{cfg.data.num_frames} per clip"
            + (f", {cfg.data.frame_size}x{cfg.data.frame_size}" if cfg.data.frame_size else ""),
        ),
        ("media", cfg.data.modality),
        ("answer length", f"{cfg.eval.max_new_tokens} tokens (evaluation)"),
    ]
    if g:
        rows.append(
            (
                "GRPO settings",
                (
                    f"steps {g.get('steps')}, {g.get('prompts_per_step')} clips x G="
                    f"{g.get('completions_per_prompt')}, lr {g.get('lr')}, beta {g.get('beta')}, loss {g.get('loss_type')}"
                ),
            )
        )
    if s:
        rows.append(("SFT settings", f"target {s.get('target')}, epochs {s.get('epochs')}, lr {s.get('lr')}"))
    if m.get("lora_rank"):
        rows.append(("LoRA", f"rank {m.get('lora_rank')}, alpha {m.get('lora_alpha')} (merged)"))
    if raw.get("git_revision"):
        rows.append(("emorl revision", f"`{raw['git_revision']}`"))
    out = [
        "## Training recipe",
        "",
        ("As recorded in the run config saved with the model (a stage's settings apply only if that stage ran)."),
        "",
        "| | |",
        "| --- | --- |",
    ]
    out += [f"| {k} | {_cell(v)} |" for k, v in rows]
    return [*out, ""]


def _cell(text: str) -> str:
    """Markdown table cell text: pipes escaped and tags shown as text, not swallowed as HTML."""
    return str(text).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
