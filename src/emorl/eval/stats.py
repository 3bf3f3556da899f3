"""Uncertainty for evaluation numbers: bootstrap intervals (clustered), paired model comparisons,
and intervals for rates.

All intervals are 95 % two-sided unless ``alpha`` says otherwise.

- **Cluster bootstrap** (``metric_cis``): resample *clusters* (a source video, a speaker, an
  actor; one sample each when no cluster key is known) with replacement, recompute WAR / UAR on
  the union of the drawn clusters, take the percentile interval. Clips of one actor or one movie
  are not independent, so resampling them together keeps the interval honest.
- **Paired comparison** (``compare_paired``): two models scored on the same samples. The same
  cluster draw is applied to both, the difference (B − A) is recomputed per draw; a difference is
  *significant* when its interval excludes 0. WAR differences also get McNemar's exact test on
  the discordant pairs (``mcnemar``), which ignores clustering and is reported alongside.
- **Rates** (``rate_ci``): a share of successes. Wilson score interval when every item is its own
  cluster, cluster bootstrap otherwise.

The bootstrap is vectorised over per-cluster count tables, so 2,000 draws over a few thousand
samples take milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

CLUSTER_KEYS = ("video", "speaker", "actor")
DEFAULT_BOOT = 2000


def cluster_of(sample_id: str, meta: dict | None) -> str:
    """The resampling unit of one sample: the first of ``meta.video``, ``meta.speaker``,
    ``meta.actor`` that is set, else the sample itself."""
    for k in CLUSTER_KEYS:
        v = (meta or {}).get(k)
        if v not in (None, ""):
            return f"{k}:{v}"
    return f"id:{sample_id}"


def _normal_ppf(q: float) -> float:
    """Inverse standard normal CDF (Acklam's rational approximation, |error| < 1.2e-9)."""
    if not 0 < q < 1:
        raise ValueError("q must be in (0, 1)")
    a = (
        -3.969683028665376e01,
        2.209460984245205e02,
        -2.759285104469687e02,
        1.383577518672690e02,
        -3.066479806614716e01,
        2.506628277459239e00,
    )
    b = (
        -5.447609879822406e01,
        1.615858368580409e02,
        -1.556989798598866e02,
        6.680131188771972e01,
        -1.328068155288572e01,
    )
    c = (
        -7.784894002430293e-03,
        -3.223964580411365e-01,
        -2.400758277161838e00,
        -2.549732539343734e00,
        4.374664141464968e00,
        2.938163982698783e00,
    )
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
    lo = 0.02425
    if q < lo:
        t = math.sqrt(-2 * math.log(q))
        return (((((c[0] * t + c[1]) * t + c[2]) * t + c[3]) * t + c[4]) * t + c[5]) / (
            (((d[0] * t + d[1]) * t + d[2]) * t + d[3]) * t + 1
        )
    if q > 1 - lo:
        return -_normal_ppf(1 - q)
    t = q - 0.5
    r = t * t
    return (
        (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5])
        * t
        / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
    )


def wilson_ci(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval for k successes out of n (n > 0)."""
    if n <= 0:
        raise ValueError("n must be positive")
    if not 0 <= k <= n:
        raise ValueError("need 0 <= k <= n")
    z = _normal_ppf(1 - alpha / 2)
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi


def _draw_weights(n_clusters: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n_clusters) counts: how often each cluster is drawn in each resample."""
    idx = rng.integers(0, n_clusters, size=(n_boot, n_clusters))
    w = np.zeros((n_boot, n_clusters), dtype=np.float64)
    np.add.at(w, (np.repeat(np.arange(n_boot), n_clusters), idx.ravel()), 1.0)
    return w


def _cluster_index(clusters: Sequence[str] | None, n: int) -> tuple[np.ndarray, int]:
    if clusters is None:
        return np.arange(n), n
    if len(clusters) != n:
        raise ValueError(f"{len(clusters)} cluster ids for {n} items")
    uniq: dict[str, int] = {}
    idx = np.array([uniq.setdefault(c, len(uniq)) for c in clusters], dtype=np.int64)
    return idx, len(uniq)


def _percentile(x: np.ndarray, alpha: float) -> tuple[float, float]:
    x = x[np.isfinite(x)]
    if not x.size:
        return float("nan"), float("nan")
    lo, hi = np.quantile(x, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def rate_ci(
    flags: Sequence[bool],
    clusters: Sequence[str] | None = None,
    *,
    alpha: float = 0.05,
    n_boot: int = DEFAULT_BOOT,
    seed: int = 0,
) -> dict:
    """A rate (share of True) with its interval: {k, n, rate, lo, hi, method}.

    Wilson when no clusters are given or every cluster holds one item; otherwise a cluster
    bootstrap of the ratio (sum of successes / sum of items over the drawn clusters). An empty
    input gives rate None."""
    f = np.asarray(list(flags), dtype=np.float64)
    n = int(f.size)
    if n == 0:
        return {"k": 0, "n": 0, "rate": None, "lo": None, "hi": None, "method": "none"}
    k = int(f.sum())
    idx, nc = _cluster_index(clusters, n)
    if nc == n:
        lo, hi = wilson_ci(k, n, alpha)
        return {"k": k, "n": n, "rate": k / n, "lo": lo, "hi": hi, "method": "wilson"}
    succ = np.bincount(idx, weights=f, minlength=nc)
    tot = np.bincount(idx, minlength=nc).astype(np.float64)
    w = _draw_weights(nc, n_boot, np.random.default_rng(seed))
    boot = (w @ succ) / np.maximum(w @ tot, 1e-12)
    lo, hi = _percentile(boot, alpha)
    return {"k": k, "n": n, "rate": k / n, "lo": lo, "hi": hi, "method": f"cluster-bootstrap({nc} clusters)"}


def _class_tables(
    true: Sequence[str], pred: Sequence[str | None], labels: Sequence[str], idx: np.ndarray, nc: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster support and hits per class: two (n_clusters, K) arrays."""
    pos = {c: i for i, c in enumerate(labels)}
    k = len(labels)
    support = np.zeros((nc, k))
    hits = np.zeros((nc, k))
    for ci, t, p in zip(idx, true, pred, strict=True):
        if t not in pos:
            raise ValueError(f"true label {t!r} is not in the label set {list(labels)}")
        support[ci, pos[t]] += 1
        hits[ci, pos[t]] += float(p == t)
    return support, hits


def _war_uar(support: np.ndarray, hits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """WAR and UAR from (..., K) support / hit totals; classes without support are left out of UAR."""
    n = support.sum(-1)
    war = hits.sum(-1) / np.maximum(n, 1e-12)
    has = support > 0
    rec = np.where(has, hits / np.where(has, support, 1.0), 0.0)
    uar = rec.sum(-1) / np.maximum(has.sum(-1), 1)
    return war, uar


def metric_cis(
    true: Sequence[str],
    pred: Sequence[str | None],
    labels: Sequence[str],
    clusters: Sequence[str] | None = None,
    *,
    alpha: float = 0.05,
    n_boot: int = DEFAULT_BOOT,
    seed: int = 0,
) -> dict:
    """Point values and percentile cluster-bootstrap intervals of WAR and UAR:
    ``{"war": {"value", "lo", "hi"}, "uar": {...}, "n", "n_clusters", "n_boot", "alpha"}``."""
    idx, nc = _cluster_index(clusters, len(true))
    if not len(true):
        raise ValueError("no samples")
    support, hits = _class_tables(true, pred, labels, idx, nc)
    war0, uar0 = _war_uar(support.sum(0), hits.sum(0))
    w = _draw_weights(nc, n_boot, np.random.default_rng(seed))
    war_b, uar_b = _war_uar(w @ support, w @ hits)
    out = {"n": len(true), "n_clusters": nc, "n_boot": n_boot, "alpha": alpha}
    for name, v0, vb in (("war", war0, war_b), ("uar", uar0, uar_b)):
        lo, hi = _percentile(vb, alpha)
        out[name] = {"value": float(v0), "lo": lo, "hi": hi}
    return out


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> dict:
    """McNemar's exact test of equal accuracy for paired predictions.

    b = A right and B wrong, c = A wrong and B right; p = two-sided exact binomial test of
    b ~ Bin(b + c, 1/2) (the 'exact' McNemar; p = 1 when there are no discordant pairs)."""
    a = np.asarray(list(correct_a), dtype=bool)
    bb = np.asarray(list(correct_b), dtype=bool)
    if a.shape != bb.shape:
        raise ValueError("paired inputs differ in length")
    b = int((a & ~bb).sum())
    c = int((~a & bb).sum())
    n = b + c
    if n == 0:
        p = 1.0
    else:
        k = min(b, c)
        tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
        p = min(1.0, 2 * tail)
    return {"a_only": b, "b_only": c, "discordant": n, "p_value": p}


def compare_paired(
    true: Sequence[str],
    pred_a: Sequence[str | None],
    pred_b: Sequence[str | None],
    labels: Sequence[str],
    clusters: Sequence[str] | None = None,
    *,
    alpha: float = 0.05,
    n_boot: int = DEFAULT_BOOT,
    seed: int = 0,
) -> dict:
    """B minus A on the same samples (same order): for WAR and UAR the difference, its paired
    cluster-bootstrap interval, a bootstrap two-sided p (twice the smaller tail share of draws
    on either side of 0) and ``significant`` (interval excludes 0); plus McNemar for WAR."""
    if not (len(true) == len(pred_a) == len(pred_b)):
        raise ValueError("paired inputs differ in length")
    idx, nc = _cluster_index(clusters, len(true))
    sup, hit_a = _class_tables(true, pred_a, labels, idx, nc)
    _, hit_b = _class_tables(true, pred_b, labels, idx, nc)
    wa0, ua0 = _war_uar(sup.sum(0), hit_a.sum(0))
    wb0, ub0 = _war_uar(sup.sum(0), hit_b.sum(0))
    w = _draw_weights(nc, n_boot, np.random.default_rng(seed))
    s = w @ sup
    wa, ua = _war_uar(s, w @ hit_a)
    wb, ub = _war_uar(s, w @ hit_b)
    out: dict = {"n": len(true), "n_clusters": nc, "n_boot": n_boot, "alpha": alpha}
    for name, d0, db in (("war", wb0 - wa0, wb - wa), ("uar", ub0 - ua0, ub - ua)):
        lo, hi = _percentile(db, alpha)
        p = float(min(1.0, 2 * min((db <= 0).mean(), (db >= 0).mean())))
        out[name] = {"diff": float(d0), "lo": lo, "hi": hi, "p_value": p, "significant": bool(lo > 0 or hi < 0)}
    out["mcnemar"] = mcnemar([p == t for p, t in zip(pred_a, true)], [p == t for p, t in zip(pred_b, true)])
    out["mcnemar"]["significant"] = out["mcnemar"]["p_value"] < alpha
    return out


def permutation_agreement(truth: Sequence[str], inferred: Sequence[str], *, n_perm: int = 5000, seed: int = 0) -> dict:
    """Agreement of ``inferred`` with ``truth`` and what chance would give: the agreement
    expected when truth is shuffled among the same items (mean over permutations) and the
    one-sided permutation p of seeing the observed agreement or more."""
    t = np.asarray(list(truth), dtype=object)
    f = np.asarray(list(inferred), dtype=object)
    if t.shape != f.shape:
        raise ValueError("inputs differ in length")
    if not t.size:
        return {"n": 0, "agreement": None, "chance": None, "p_value": None}
    obs = float((t == f).mean())
    rng = np.random.default_rng(seed)
    perm = np.array([(rng.permutation(t) == f).mean() for _ in range(n_perm)])
    return {
        "n": int(t.size),
        "agreement": obs,
        "chance": float(perm.mean()),
        "p_value": float((1 + (perm >= obs - 1e-12).sum()) / (n_perm + 1)),
    }


def auc(pos: Sequence[float], neg: Sequence[float]) -> float:
    """Area under the ROC curve of a score that should be higher for ``pos`` than ``neg`` items:
    P(score_pos > score_neg) + P(tie) / 2 over all (pos, neg) pairs (Mann-Whitney U / (n_pos n_neg)).
    0.5 is chance, 1 perfect separation. A score with three values (a sampled yes / no / neither)
    gets the ties' half credit.

    >>> auc([1.0, 0.5], [0.0, 0.5]), auc([1, 1], [1, 1]), auc([0], [1])
    (0.875, 0.5, 0.0)
    """
    p = np.asarray(list(pos), dtype=np.float64)
    n = np.asarray(list(neg), dtype=np.float64)
    if not p.size or not n.size:
        raise ValueError("auc needs at least one positive and one negative score")
    return float(_auc_matrix(p[None], n[None])[0])


def _auc_matrix(p: np.ndarray, n: np.ndarray) -> np.ndarray:
    """AUC per row of (B, n_pos) and (B, n_neg) score arrays, by sorting (ties count half)."""
    n_sorted = np.sort(n, axis=1)
    below = np.stack([np.searchsorted(row, pr, side="left") for row, pr in zip(n_sorted, p)])
    upto = np.stack([np.searchsorted(row, pr, side="right") for row, pr in zip(n_sorted, p)])
    return (below + 0.5 * (upto - below)).sum(1) / (p.shape[1] * n.shape[1])


def auc_ci(
    pos: Sequence[float], neg: Sequence[float], *, alpha: float = 0.05, n_boot: int = DEFAULT_BOOT, seed: int = 0
) -> dict:
    """AUC with a percentile bootstrap interval, positives and negatives resampled separately
    (stratified): {auc, lo, hi, n_pos, n_neg}."""
    p = np.asarray(list(pos), dtype=np.float64)
    n = np.asarray(list(neg), dtype=np.float64)
    value = auc(p, n)
    rng = np.random.default_rng(seed)
    pb = p[rng.integers(0, p.size, (n_boot, p.size))]
    nb = n[rng.integers(0, n.size, (n_boot, n.size))]
    lo, hi = _percentile(_auc_matrix(pb, nb), alpha)
    return {"auc": value, "lo": lo, "hi": hi, "n_pos": int(p.size), "n_neg": int(n.size)}
