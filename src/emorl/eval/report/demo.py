"""The demo's report: reads the layout ``emorl demo`` writes, runs nothing.

``DEMO/eval/NAME/{test,ood}`` (eval dirs, ``emorl.demo`` stage 4) and, where present,
``DEMO/analysis/NAME`` (analysis run dirs, written by ``emorl.demo.run_analysis_for_demo``,
stage 5); ``DEMO/data/{test,ood}.jsonl``, ``DEMO/metrics.json`` and ``DEMO/config.yaml``.
"""

from __future__ import annotations

from pathlib import Path

from emorl.eval.report.build import render
from emorl.eval.report.load import load_run, load_samples_of, read_json, read_rows, with_ci

DEMO_MODELS = ("base", "coldstart_sft", "label_sft", "grpo")
DEMO_SPLITS = ("test", "ood")
# the paired differences the demo's summary states: (A, B) for B minus A
DEMO_DIFFS = (("coldstart_sft", "grpo"), ("label_sft", "grpo"))


def demo_intervals(
    demo_dir: Path, models=DEMO_MODELS, splits=DEMO_SPLITS, diffs=DEMO_DIFFS, *, n_boot: int = 2000
) -> dict:
    """95 % cluster-bootstrap intervals over the evaluation clips, from the stored predictions
    (``demo_dir/eval/NAME/SPLIT/predictions.jsonl``; clusters from ``data/SPLIT.jsonl``; nothing
    re-run): ``{"models": {name: {split: {"war"|"uar": {value, lo, hi}}}}, "diffs": {"B - A":
    {split: {"war"|"uar": {diff, lo, hi, p_value, significant}}}}}``. A model or split without
    predictions is left out. These intervals cover the choice of clips only, not the training
    run's own draw (seed, CPU kernels, thread count)."""
    from emorl.eval.stats import cluster_of, compare_paired, metric_cis

    demo_dir = Path(demo_dir)
    out: dict = {"models": {}, "diffs": {}}
    rows: dict = {}
    for split in splits:
        meta = {k: s.meta for k, s in load_samples_of(demo_dir / "data" / f"{split}.jsonl").items()}
        for name in models:
            e = demo_dir / "eval" / name / split
            m = read_json(e / "metrics.json")
            if m is None or not (e / "predictions.jsonl").is_file():
                continue
            rs = read_rows(e / "predictions.jsonl")
            rows[name, split] = {r["id"]: r for r in rs}, m["labels"]
            c = metric_cis(
                [r["label"] for r in rs],
                [r["pred"] for r in rs],
                m["labels"],
                [cluster_of(r["id"], meta.get(r["id"])) for r in rs],
                n_boot=n_boot,
            )
            out["models"].setdefault(name, {})[split] = {k: c[k] for k in ("war", "uar")}
        for a, b in diffs:
            if (a, split) not in rows or (b, split) not in rows:
                continue
            (ra, labels), (rb, _) = rows[a, split], rows[b, split]
            ids = [k for k in ra if k in rb]
            c = compare_paired(
                [ra[k]["label"] for k in ids],
                [ra[k]["pred"] for k in ids],
                [rb[k]["pred"] for k in ids],
                labels,
                [cluster_of(k, meta.get(k)) for k in ids],
                n_boot=n_boot,
            )
            out["diffs"].setdefault(f"{b} - {a}", {})[split] = {k: c[k] for k in ("war", "uar")}
    return out


def demo_style(demo_dir: Path) -> str:
    """Answer style of the demo's recipe, from its saved ``config.yaml`` ('tags' without one)."""
    import yaml

    from emorl.recipes.rewards import get_recipe

    p = Path(demo_dir) / "config.yaml"
    saved = yaml.safe_load(p.read_text()) if p.is_file() else None
    recipe = ((saved or {}).get("prompt") or {}).get("recipe")
    return get_recipe(recipe).style if recipe else "tags"


def _notes(demo_dir: Path, runs) -> list[str]:
    dm = read_json(demo_dir / "metrics.json") or {}
    notes = []
    if dm.get("timings_s", {}).get("total"):
        notes.append(
            f"Demo wall time {dm['timings_s']['total']:.0f} s{' (quick sizes)' if dm.get('quick') else ''}. "
            "Synthetic omni-emotion world, tiny thinker: base = random-init LLM with attribute-pretrained "
            "towers, coldstart_sft = SFT on reasoning traces, label_sft = label-only SFT, grpo = GRPO from "
            "coldstart_sft."
        )
    if not any(r.kind == "analysis" for r in runs):
        notes.append("Modality ablations were not run for this demo (see emorl.demo.run_analysis_for_demo).")
    return notes


def build_demo_report(demo_dir: Path, out_html: Path, *, style: str | None = None) -> Path:
    """The demo's report: every model of ``demo_dir/eval/NAME/test`` (with its ``ood`` numbers),
    using ``demo_dir/analysis/NAME`` where it exists. ``style``: the answer style of the demo's
    recipe (default: read from the demo's ``config.yaml``)."""
    demo_dir = Path(demo_dir)
    style = style or demo_style(demo_dir)
    manifest = demo_dir / "data" / "test.jsonl"
    samples = load_samples_of(manifest)
    ood_meta = {k: s.meta for k, s in load_samples_of(demo_dir / "data" / "ood.jsonl").items()}
    runs = []
    for name in DEMO_MODELS:
        a, e = demo_dir / "analysis" / name, demo_dir / "eval" / name / "test"
        if (a / "modality.json").is_file():
            rv = load_run(a, name=name, manifest=manifest, samples=samples, style=style)
        elif (e / "predictions.jsonl").is_file():
            rv = load_run(e, name=name, manifest=manifest, samples=samples, style=style)
        else:
            continue
        o = demo_dir / "eval" / name / "ood"
        if (o / "metrics.json").is_file() and (o / "predictions.jsonl").is_file():
            rv.extra["OOD"] = with_ci(read_json(o / "metrics.json"), read_rows(o / "predictions.jsonl"), ood_meta)
        runs.append(rv)
    if not runs:
        raise FileNotFoundError(f"{demo_dir}: no eval/NAME/test results (has the demo finished its eval stage?)")
    return render(
        runs,
        out_html,
        samples=samples,
        title="emorl demo report",
        subtitle=f"{len(runs)} models · test split ({len(samples)} clips) · synthetic world",
        extra_notes=_notes(demo_dir, runs),
    )
