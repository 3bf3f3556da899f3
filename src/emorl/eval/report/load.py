"""Reading run dirs for the report (no model runs here).

A run dir is either

- an **analysis run dir** (``emorl.eval.modality.run_analysis`` / ``emorl analyze modality``):
  ``run.json``, ``modality.json``, ``attribution.json``, ``faithfulness.json`` and
  ``{av,video,audio,text}/{predictions.jsonl,metrics.json}``; or
- an **eval dir** (``emorl eval``): ``predictions.jsonl`` + ``metrics.json``. It has only the
  full-input condition; attribution and consistency are computed here from its predictions (text
  analysis of the stored completions), the modality sections say "not analysed".

Intervals missing from a ``metrics.json`` and the paired comparisons between runs are computed
from the stored predictions (``emorl.eval.stats``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from emorl.data.manifest import Sample, read_manifest
from emorl.eval.faithfulness import CONDITIONS, analyze_reasoning, load_condition_rows
from emorl.eval.stats import cluster_of, compare_paired, metric_cis

Pairs = list[tuple[str, str, dict]]  # (name A, name B, compare_paired result)


@dataclass
class RunView:
    """Everything the report needs about one checkpoint."""

    name: str
    path: Path
    kind: str  # analysis | eval
    labels: list[str]
    metrics: dict[str, dict] = field(default_factory=dict)  # condition -> metrics.json (+ "ci")
    rows: dict[str, list[dict]] = field(default_factory=dict)  # condition -> prediction rows
    modality: dict | None = None
    attribution: dict | None = None
    faithfulness: dict | None = None
    extra: dict[str, dict] = field(default_factory=dict)  # other splits: name -> metrics.json (+ "ci")
    manifest: str | None = None
    seconds: dict = field(default_factory=dict)
    style: str = "tags"


def read_json(p: Path) -> dict | None:
    """The JSON object in ``p``, or None when the file does not exist."""
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None


def read_rows(p: Path) -> list[dict]:
    """The rows of a JSONL file (blank lines skipped)."""
    return [json.loads(x) for x in p.read_text(encoding="utf-8").splitlines() if x.strip()]


def with_ci(m: dict, rows: list[dict], meta: dict[str, dict]) -> dict:
    """``m`` with a ``ci`` entry (cluster-bootstrap intervals of its metrics from ``rows``) when it
    has none; ``meta``: sample id -> manifest meta (for the clusters)."""
    if "ci" not in m and rows:
        m = dict(m)
        m["ci"] = metric_cis(
            [r["label"] for r in rows],
            [r["pred"] for r in rows],
            m["labels"],
            [cluster_of(r["id"], meta.get(r["id"])) for r in rows],
        )
    return m


def load_samples_of(manifest: str | Path | None) -> dict[str, Sample]:
    """id -> Sample of a manifest; {} when none is given or the file is missing."""
    if not manifest or not Path(manifest).is_file():
        return {}
    return {s.id: s for s in read_manifest(manifest)}


def load_run(
    path: Path,
    *,
    name: str | None = None,
    manifest: str | Path | None = None,
    samples: dict[str, Sample] | None = None,
    style: str = "tags",
) -> RunView:
    """Read an analysis run dir or an eval dir (see the module docstring)."""
    path = Path(path)
    info = read_json(path / "run.json") or {}
    manifest = manifest or info.get("manifest")
    samples = samples if samples is not None else load_samples_of(manifest)
    meta = {k: s.meta for k, s in samples.items()}
    if (path / "modality.json").is_file():
        mod = read_json(path / "modality.json")
        rows = load_condition_rows(path)
        metrics = {
            c: with_ci(read_json(path / c / "metrics.json"), rows.get(c, []), meta)
            for c in CONDITIONS
            if (path / c / "metrics.json").is_file()
        }
        style = info.get("style", style)
        rv = RunView(
            name or info.get("name") or path.name,
            path,
            "analysis",
            mod["labels"],
            metrics,
            rows,
            mod,
            read_json(path / "attribution.json"),
            read_json(path / "faithfulness.json"),
            manifest=manifest,
            seconds=info.get("seconds", {}),
            style=style,
        )
    elif (path / "predictions.jsonl").is_file() and (path / "metrics.json").is_file():
        rows = {"av": read_rows(path / "predictions.jsonl")}
        m = read_json(path / "metrics.json")
        rv = RunView(
            name or path.name,
            path,
            "eval",
            m["labels"],
            {"av": with_ci(m, rows["av"], meta)},
            rows,
            manifest=manifest,
            style=style,
        )
    else:
        raise FileNotFoundError(
            f"{path}: not a run dir (expected modality.json from `emorl analyze modality`, "
            "or predictions.jsonl + metrics.json from `emorl eval`)"
        )
    if rv.attribution is None or rv.faithfulness is None:
        res = analyze_reasoning(
            rv.rows,
            [samples[i] for i in samples]
            if samples
            else [Sample(r["id"], "", r["label"], r.get("dataset", "x"), r.get("split", "x")) for r in rv.rows["av"]],
            rv.labels,
            style=style,
        )
        rv.attribution = rv.attribution or res["attribution"]
        rv.faithfulness = rv.faithfulness or res["faithfulness"]
    return rv


def load_runs(
    run_dirs, *, names=None, manifest: str | Path | None = None, style: str = "tags"
) -> tuple[list[RunView], dict[str, Sample]]:
    """Several run dirs and the samples of their manifest (``manifest``, else the first run's
    ``run.json``). ``names``: display names, one per run dir."""
    if not run_dirs:
        raise ValueError("no run dirs given")
    if names is not None and len(names) != len(run_dirs):
        raise ValueError(f"{len(names)} names for {len(run_dirs)} run dirs")
    first = read_json(Path(run_dirs[0]) / "run.json") or {}
    samples = load_samples_of(manifest or first.get("manifest"))
    runs = [
        load_run(Path(d), name=names[i] if names else None, manifest=manifest, samples=samples, style=style)
        for i, d in enumerate(run_dirs)
    ]
    return runs, samples


def paired_comparisons(runs: list[RunView], meta: dict[str, dict]) -> Pairs:
    """(name A, name B, ``compare_paired`` result) for every pair of runs (A before B) that share
    clips and labels, on their full-input predictions."""
    out = []
    for i, a in enumerate(runs):
        for b in runs[i + 1 :]:
            ra = {r["id"]: r for r in a.rows.get("av", [])}
            rb = {r["id"]: r for r in b.rows.get("av", [])}
            ids = [k for k in ra if k in rb]
            if not ids or list(a.labels) != list(b.labels):
                continue
            c = compare_paired(
                [ra[k]["label"] for k in ids],
                [ra[k]["pred"] for k in ids],
                [rb[k]["pred"] for k in ids],
                a.labels,
                [cluster_of(k, meta.get(k)) for k in ids],
            )
            out.append((a.name, b.name, c))
    return out


def primary(runs: list[RunView]) -> RunView:
    """The model the detailed sections follow: 'grpo' when present, else the ablated model with the
    best full-input UAR (else the best of all)."""
    for r in runs:
        if r.name == "grpo":
            return r
    pool = [r for r in runs if r.kind == "analysis"] or runs

    def uar(r: RunView) -> float:
        return ((r.metrics.get("av") or {}).get("ci") or {}).get("uar", {}).get("value", -1.0)

    return max(pool, key=uar)
