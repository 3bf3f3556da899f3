"""The field's metrics as pure functions on label lists.

``pred`` entries may be None (no parsable single emotion): such a sample counts as wrong for its
true class and is not credited to any class. Classes are those of the dataset's label set that
have support in ``true`` (a class with no test samples has no recall; it is listed as such).

- WAR (weighted average recall) = accuracy = sum_c n_c/N * recall_c.
- UAR (unweighted average recall) = mean over supported classes of recall_c.
- weighted F1 (MER, MELD) = sum_c n_c/N * F1_c.
"""

from __future__ import annotations

from collections.abc import Sequence


def confusion(true: Sequence[str], pred: Sequence[str | None], labels: Sequence[str]) -> list[list[int]]:
    """Counts (K, K+1): rows = true class, columns = predicted class, last column = other/none
    (no answer, or an emotion outside ``labels``)."""
    idx = {c: i for i, c in enumerate(labels)}
    m = [[0] * (len(labels) + 1) for _ in labels]
    for t, p in zip(true, pred, strict=True):
        if t not in idx:
            raise ValueError(f"true label {t!r} is not in the label set {list(labels)}")
        m[idx[t]][idx.get(p, len(labels)) if p is not None else len(labels)] += 1
    return m


def per_class_recall(true: Sequence[str], pred: Sequence[str | None], labels: Sequence[str]) -> dict[str, float | None]:
    m = confusion(true, pred, labels)
    return {c: (m[i][i] / sum(m[i]) if sum(m[i]) else None) for i, c in enumerate(labels)}


def war(true: Sequence[str], pred: Sequence[str | None]) -> float:
    if not true:
        raise ValueError("no samples")
    return sum(t == p for t, p in zip(true, pred, strict=True)) / len(true)


def uar(true: Sequence[str], pred: Sequence[str | None], labels: Sequence[str]) -> float:
    rec = [r for r in per_class_recall(true, pred, labels).values() if r is not None]
    if not rec:
        raise ValueError("no class has support")
    return sum(rec) / len(rec)


def weighted_f1(true: Sequence[str], pred: Sequence[str | None], labels: Sequence[str]) -> float:
    m = confusion(true, pred, labels)
    n = sum(map(sum, m))
    total = 0.0
    for i, _ in enumerate(labels):
        support = sum(m[i])
        if not support:
            continue
        tp = m[i][i]
        predicted = sum(m[r][i] for r in range(len(labels)))
        prec = tp / predicted if predicted else 0.0
        rec = tp / support
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        total += support / n * f1
    return total


def summarize(
    true: Sequence[str],
    pred: Sequence[str | None],
    labels: Sequence[str],
    format_ok: Sequence[bool] | None = None,
    reasons: Sequence[str] | None = None,
) -> dict:
    """All metrics of one evaluation, as a JSON-ready dict."""
    out = {
        "n": len(true),
        "war": war(true, pred),
        "uar": uar(true, pred, labels),
        "weighted_f1": weighted_f1(true, pred, labels),
        "per_class_recall": per_class_recall(true, pred, labels),
        "labels": list(labels),
        "confusion": confusion(true, pred, labels),
    }
    if format_ok is not None:
        out["format_rate"] = sum(map(bool, format_ok)) / len(true)
    if reasons is not None:
        fails: dict[str, int] = {}
        for r in reasons:
            if r != "ok":
                fails[r] = fails.get(r, 0) + 1
        out["parse_failures"] = fails
        out["parse_failure_rate"] = sum(fails.values()) / len(true)
    return out


def fold_summary(per_fold: dict[str, dict]) -> dict:
    """Mean of per-fold WAR/UAR (and weighted F1), the way DFEW / MAFW results are published."""
    if not per_fold:
        raise ValueError("no folds")
    keys = ("war", "uar", "weighted_f1", "format_rate")
    mean = {
        k: sum(f[k] for f in per_fold.values()) / len(per_fold) for k in keys if all(k in f for f in per_fold.values())
    }
    return {
        "folds": {k: {m: v[m] for m in keys if m in v} | {"n": v["n"]} for k, v in per_fold.items()},
        "mean": mean,
        "n_folds": len(per_fold),
    }
