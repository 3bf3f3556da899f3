"""Cross-validation and the papers' evaluation protocol, fold by fold and resumable.

``emorl cv --config C --manifest M --out DIR``: M holds every fold's train and test rows (``emorl
data prepare dfew --root ... --split all``). For each fold k, ``DIR/fold-k/`` gets the fold's
``train.jsonl`` and ``<dataset>-test.jsonl``, the config's training stages (``cv.stages``: ``sft``
and/or ``grpo``; GRPO starts from the SFT model when both run) and the evaluation of the final model
on the fold's test rows; then ``DIR/cv.json`` and ``DIR/cv.md`` hold the fold table and the mean
and std of WAR and UAR over folds, the way DFEW / MAFW results are published. ``--eval-only MODEL``
evaluates one checkpoint on every fold's test rows (zero-shot) instead.

``emorl protocol --config r1-omni --out DIR`` runs R1-Omni's Table 1 the same way over several
corpora at once: each fold trains on the fold's training rows of every ``protocol.in_domain``
manifest (DFEW and MAFW), is evaluated on each one's fold test rows and on every
``protocol.ood`` manifest (RAVDESS, evaluated whole); means over folds are printed beside the
paper's published numbers (``PUBLISHED``).

Every step is a stage (``emorl.stages``): a finished fold or evaluation is skipped on a re-run; an
interrupted GRPO stage continues from its last checkpoint.
"""

from __future__ import annotations

import copy
import os
import statistics
from pathlib import Path

from emorl.config import RunConfig, save_run_config
from emorl.data.leakage import guard
from emorl.data.manifest import ManifestError, Sample, read_manifest, select_split, write_manifest
from emorl.stages import Stages
from emorl.utils import atomic_write_json, atomic_write_text

STAGES = ("sft", "grpo")
# R1-Omni's Table 1 (WAR, UAR in %; arXiv 2503.05379). Its DFEW figures are multiples of 1/2,341, so
# they are most likely one fold, not a 5-fold mean (../shared/reference/r1-omni.md).
PUBLISHED: dict[str, dict[str, dict[str, tuple[float, float]]]] = {
    "r1-omni": {
        "HumanOmni-0.5B": {"dfew": (22.64, 19.44), "mafw": (20.18, 13.52), "ravdess": (7.33, 9.38)},
        "EMER-SFT": {"dfew": (38.66, 35.31), "mafw": (38.39, 28.02), "ravdess": (29.00, 27.19)},
        "MAFW-DFEW-SFT": {"dfew": (60.23, 44.39), "mafw": (50.44, 30.39), "ravdess": (29.33, 30.75)},
        "R1-Omni": {"dfew": (65.83, 56.27), "mafw": (57.68, 40.04), "ravdess": (43.00, 44.69)},
    },
}


def dataset_of(samples: list[Sample], path: str | Path) -> str:
    names = {s.dataset for s in samples}
    return names.pop() if len(names) == 1 else Path(path).stem


def fold_rows(samples: list[Sample], fold: int, source: str) -> tuple[list[Sample], list[Sample]]:
    """(train, test) rows of ``fold``; an error naming the fold counts when either is empty."""
    train = [s for s in samples if s.fold == fold and s.split == "train"]
    test = [s for s in samples if s.fold == fold and s.split == "test"]
    if not train or not test:
        raise ManifestError(
            f"{source}: fold {fold} has {len(train)} train and {len(test)} test rows; cv needs both "
            "(prepare the corpus with --split all and without --fold)"
        )
    return train, test


def folds_of(manifests: dict[str, list[Sample]], wanted: list[str]) -> list[int]:
    """The folds every in-domain manifest has (``wanted``: a subset, as strings)."""
    common = None
    for path, rows in manifests.items():
        folds = {s.fold for s in rows if s.fold is not None}
        if not folds:
            raise ManifestError(
                f"{path}: no fold column; cv needs a corpus with official folds (DFEW, MAFW, RAVDESS, "
                "CREMA-D) prepared with --split all"
            )
        common = folds if common is None else common & folds
    folds = sorted(common or ())
    if wanted:
        bad = [w for w in wanted if not w.isdigit() or int(w) not in folds]
        if bad:
            raise ManifestError(f"cv.folds: {', '.join(bad)} not among the manifests' folds {folds}")
        folds = [int(w) for w in wanted]
    if not folds:
        raise ManifestError("the in-domain manifests share no fold")
    return folds


def _train_fold(cfg: RunConfig, fd: Path, train_path: Path, evals: list[str], stages: Stages, progress: bool) -> Path:
    """The fold's training stages; returns the final model folder."""
    from emorl.runs import run_grpo, run_sft

    model = cfg.model.path
    for i, name in enumerate(cfg.cv.stages):
        sub = copy.deepcopy(cfg)
        sub.out, sub.model.path = str(fd / name), model
        sub.data.train, sub.data.split = str(train_path), ""
        if name == "sft" and cfg.cv.sft_train:
            sub.data.train = str(fold_sft_train(cfg.cv.sft_train, cfg.data.split, fd, evals))
        sub.data.eval = evals if i == len(cfg.cv.stages) - 1 else []
        sub.eval.split = "test"
        if (fd / name / "checkpoints").is_dir():  # an interrupted stage continues
            getattr(sub, name).resume = True
        run = run_sft if name == "sft" else run_grpo
        stages(f"{fd.name} {name}", fd / name, lambda run=run, sub=sub: run(sub, progress=progress))
        model = str(fd / name / "model")
    return Path(model)


def fold_sft_train(sft_train: str, split: str, fd: Path, evals: list[str]) -> Path:
    """``cv.sft_train``'s rows (``data.split``, default train) for one fold, without the clips of the
    fold's evaluation rows: a traces manifest made from a whole corpus (``emorl traces generate
    --manifest dfew.jsonl``) holds every fold's test clips. Written to ``fd/sft-train.jsonl``; how
    many were left out is printed; the rest is checked against the evaluation rows as training
    rows are."""
    from emorl.data.leakage import find_leakage

    rows = select_split(read_manifest(sft_train), split, default="train", source=sft_train, key="data.split")
    by_id = {r.id: r for r in rows}
    found = find_leakage(rows, {e: read_manifest(e) for e in evals})  # same id, file or bytes
    held = {p for o in found.clips for p in _clip(by_id[o.train_id])}
    kept = [r for r in rows if not set(_clip(r)) & held]  # every trace of a held-out clip
    if len(kept) < len(rows):
        print(
            f"[cv] {fd.name}: {len(rows) - len(kept)} of {len(rows)} rows of cv.sft_train ({sft_train}) are clips of "
            "this fold's evaluation rows: left out of its SFT"
        )
    if not kept:
        raise ManifestError(f"{sft_train}: every row is a clip of {fd.name}'s evaluation rows; nothing to train on")
    path = fd / "sft-train.jsonl"
    write_manifest(path, kept, relative_to=fd)
    guard(kept, {e: read_manifest(e) for e in evals}, train_name=f"{fd.name} cv.sft_train rows")
    return path


def _clip(s: Sample) -> list[str]:
    return [os.path.realpath(p) for p in (s.media, s.audio) if p]


def run_folds(
    cfg: RunConfig,
    in_domain: list[str],
    ood: list[str],
    out: str | Path,
    *,
    eval_only: str | None = None,
    progress: bool = True,
    reference: str = "",
) -> dict:
    """Train (or take ``eval_only``) and evaluate every fold; write ``cv.json`` and ``cv.md``."""
    from emorl.runs import load_adapter, run_eval

    bad = [s for s in cfg.cv.stages if s not in STAGES]
    if bad or (not cfg.cv.stages and not eval_only):
        raise ManifestError(f"cv.stages: expected sft and/or grpo, got {cfg.cv.stages}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg.out = str(out)
    save_run_config(cfg, out)
    manifests = {p: read_manifest(p) for p in in_domain}
    ood_rows = {p: select_split(read_manifest(p), "", default="test", source=p, key="eval.split") for p in ood}
    names = {p: dataset_of(rows, p) for p, rows in {**manifests, **ood_rows}.items()}
    stages = Stages("cv")
    adapter = None

    def evaluate(model: Path, path: Path, d: Path, title: str) -> dict:
        def fn():
            nonlocal adapter
            adapter = adapter or load_adapter(cfg, model)
            m = run_eval(cfg, model, path, d, progress=progress, title=title, adapter=adapter)
            return {key: m[key] for key in ("war", "uar", "format_rate", "n")}

        return {key: v for key, v in stages(title, d, fn).items() if key != "seconds"}

    once: dict[str, dict] = {}  # eval-only: one model, so the OOD corpora are evaluated once
    if eval_only:
        for p, rows in ood_rows.items():
            path = out / "ood" / f"{names[p]}.jsonl"
            write_manifest(path, rows, relative_to=path.parent)
            once[names[p]] = evaluate(Path(eval_only), path, out / "ood" / "eval" / names[p], f"ood / {names[p]}")
    results: dict[str, dict] = {}
    for k in folds_of(manifests, cfg.cv.folds):
        fd = out / f"fold-{k}"
        train: list[Sample] = []
        evals: dict[str, Path] = {}
        for p, rows in manifests.items():
            tr, te = fold_rows(rows, k, p)
            train += tr
            evals[names[p]] = fd / f"{names[p]}-test.jsonl"
            write_manifest(evals[names[p]], te, relative_to=fd)
        if eval_only:
            model = Path(eval_only)  # the one adapter is loaded once and kept across folds
        else:
            for p, rows in ood_rows.items():
                evals[names[p]] = fd / f"{names[p]}-ood.jsonl"
                write_manifest(evals[names[p]], rows, relative_to=fd)
            write_manifest(fd / "train.jsonl", train, relative_to=fd)
            guard(train, {str(v): read_manifest(v) for v in evals.values()}, train_name=f"fold {k} training rows")
            model, adapter = (
                _train_fold(cfg, fd, fd / "train.jsonl", [str(v) for v in evals.values()], stages, progress),
                None,
            )
        results[str(k)] = {
            name: evaluate(model, path, fd / "eval" / name, f"fold {k} / {name}") for name, path in evals.items()
        } | once
    summary = summarize_folds(results)
    report = {
        "folds": results,
        **summary,
        "in_domain": [names[p] for p in in_domain],
        "ood": [names[p] for p in ood],
        "eval_only": eval_only,
        "reference": reference,
    }
    atomic_write_json(out / "cv.json", report)
    atomic_write_text(out / "cv.md", render(report))
    print(render(report))
    return report


def summarize_folds(results: dict[str, dict[str, dict]]) -> dict:
    """Per dataset: mean and (sample) std over folds of WAR and UAR."""
    datasets = list(next(iter(results.values())))
    mean, std = {}, {}
    for d in datasets:
        for m in ("war", "uar"):
            vals = [f[d][m] for f in results.values()]
            mean.setdefault(d, {})[m] = statistics.fmean(vals)
            std.setdefault(d, {})[m] = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return {"mean": mean, "std": std, "n_folds": len(results)}


def render(report: dict) -> str:
    """The fold table (WAR / UAR in %), mean ± std, and the published numbers when a reference is set."""
    ds = [*report["in_domain"], *report["ood"]]
    head = "| fold | " + " | ".join(f"{d} WAR | {d} UAR" for d in ds) + " |"
    lines = [head, "|---|" + "---|---|" * len(ds)]
    for k, f in report["folds"].items():
        lines.append(f"| {k} | " + " | ".join(f"{100 * f[d]['war']:.2f} | {100 * f[d]['uar']:.2f}" for d in ds) + " |")
    cells = [f"{100 * report['mean'][d][m]:.2f} ± {100 * report['std'][d][m]:.2f}" for d in ds for m in ("war", "uar")]
    lines.append(f"| mean ± std ({report['n_folds']} folds) | " + " | ".join(cells) + " |")
    pub = PUBLISHED.get(report.get("reference") or "", {})
    for method, row in pub.items():
        vals = [f"{row[d][i]:.2f}" if d in row else "–" for d in ds for i in (0, 1)]
        lines.append(f"| {method} (published) | " + " | ".join(vals) + " |")
    note = ""
    if pub:
        note = (
            "\nPublished rows: R1-Omni's Table 1; its DFEW WARs are multiples of 1/2,341, most likely one fold "
            "rather than a 5-fold mean, so compare with care.\n"
        )
    return "\n".join(lines) + "\n" + note
