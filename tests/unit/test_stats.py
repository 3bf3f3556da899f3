"""emorl.eval.stats against hand-computed values and reference implementations (scikit-learn,
scipy when installed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from emorl.eval.metrics import uar, war
from emorl.eval.stats import (
    _normal_ppf,
    cluster_of,
    compare_paired,
    mcnemar,
    metric_cis,
    permutation_agreement,
    rate_ci,
    wilson_ci,
)

LABELS = ("happy", "sad", "angry")


def _fake(n: int, acc: float, seed: int) -> tuple[list[str], list[str | None]]:
    rng = np.random.default_rng(seed)
    true = [LABELS[i] for i in rng.integers(0, 3, n)]
    pred = [
        t if rng.random() < acc else (None if rng.random() < 0.3 else LABELS[(LABELS.index(t) + 1) % 3]) for t in true
    ]
    return true, pred


def test_wilson_hand_values():
    # 5/10: p=.5, z=1.959964: centre .5, half = z*sqrt(.025+z^2/400)/(1+z^2/10)
    lo, hi = wilson_ci(5, 10)
    assert lo == pytest.approx(0.236593, abs=1e-5) and hi == pytest.approx(0.763407, abs=1e-5)
    lo, hi = wilson_ci(0, 20)
    assert lo == 0.0 and hi == pytest.approx(0.161125, abs=1e-5)
    assert wilson_ci(20, 20)[1] == 1.0
    with pytest.raises(ValueError):
        wilson_ci(3, 0)


def test_normal_ppf_matches_reference():
    assert _normal_ppf(0.975) == pytest.approx(1.959963985, abs=1e-8)
    assert _normal_ppf(0.5) == pytest.approx(0.0, abs=1e-12)
    assert _normal_ppf(0.001) == pytest.approx(-3.090232306, abs=1e-7)
    sp = pytest.importorskip("scipy.stats")
    for q in (1e-6, 0.01, 0.2, 0.7, 0.99, 0.999999):
        assert _normal_ppf(q) == pytest.approx(sp.norm.ppf(q), abs=1e-7)


def test_wilson_matches_scipy():
    sp = pytest.importorskip("scipy.stats")
    for k, n in ((0, 7), (3, 7), (17, 40), (99, 100), (280, 280)):
        ref = sp.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        lo, hi = wilson_ci(k, n)
        assert lo == pytest.approx(ref.low, abs=1e-7) and hi == pytest.approx(ref.high, abs=1e-7)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_point_values_match_sklearn_and_metrics():
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    true, pred = _fake(300, 0.6, 0)
    ci = metric_cis(true, pred, LABELS, n_boot=200)
    none = ["<none>" if p is None else p for p in pred]
    assert ci["war"]["value"] == pytest.approx(accuracy_score(true, none)) == pytest.approx(war(true, pred))
    assert (
        ci["uar"]["value"]
        == pytest.approx(balanced_accuracy_score(true, none))
        == pytest.approx(uar(true, pred, LABELS))
    )
    assert ci["war"]["lo"] < ci["war"]["value"] < ci["war"]["hi"]
    assert ci["uar"]["lo"] < ci["uar"]["value"] < ci["uar"]["hi"]
    assert ci["n"] == 300 and ci["n_clusters"] == 300


def test_bootstrap_matches_scipy_percentile_for_accuracy():
    sp = pytest.importorskip("scipy.stats")
    true, pred = _fake(400, 0.55, 1)
    hits = np.array([t == p for t, p in zip(true, pred)], float)
    ref = sp.bootstrap(
        (hits,),
        np.mean,
        n_resamples=4000,
        method="percentile",
        confidence_level=0.95,
        random_state=np.random.default_rng(3),
    ).confidence_interval
    ci = metric_cis(true, pred, LABELS, n_boot=4000, seed=5)["war"]
    # two independent Monte-Carlo estimates of the same interval (se of each end ~ 0.004)
    assert ci["lo"] == pytest.approx(ref.low, abs=0.012) and ci["hi"] == pytest.approx(ref.high, abs=0.012)
    # and both near the normal approximation p +- 1.96 sqrt(p(1-p)/n)
    p = hits.mean()
    half = 1.96 * math.sqrt(p * (1 - p) / len(hits))
    assert ci["lo"] == pytest.approx(p - half, abs=0.012) and ci["hi"] == pytest.approx(p + half, abs=0.012)


def test_cluster_bootstrap_of_duplicated_clusters_equals_plain_bootstrap_of_one_copy():
    true, pred = _fake(60, 0.5, 2)
    k = 4  # every clip appears k times (say, k crops of one video): same information as one copy
    true_d = [t for t in true for _ in range(k)]
    pred_d = [p for p in pred for _ in range(k)]
    clusters = [f"v{i}" for i in range(len(true)) for _ in range(k)]
    plain = metric_cis(true, pred, LABELS, n_boot=500, seed=9)
    clustered = metric_cis(true_d, pred_d, LABELS, clusters, n_boot=500, seed=9)
    naive = metric_cis(true_d, pred_d, LABELS, n_boot=500, seed=9)
    for m in ("war", "uar"):
        assert clustered[m]["value"] == pytest.approx(plain[m]["value"])
        assert clustered[m]["lo"] == pytest.approx(plain[m]["lo"]) and clustered[m]["hi"] == pytest.approx(
            plain[m]["hi"]
        )
        # ignoring the clustering gives a falsely narrow interval (about 1/sqrt(k) as wide)
        assert (naive[m]["hi"] - naive[m]["lo"]) < 0.7 * (clustered[m]["hi"] - clustered[m]["lo"])
    assert clustered["n_clusters"] == 60


def test_degenerate_intervals():
    true = ["happy", "sad", "angry"] * 10
    ci = metric_cis(true, true, LABELS, n_boot=200)
    assert ci["war"] == {"value": 1.0, "lo": 1.0, "hi": 1.0} and ci["uar"]["lo"] == 1.0
    ci = metric_cis(true, [None] * 30, LABELS, n_boot=200)
    assert ci["war"]["hi"] == 0.0 and ci["uar"]["hi"] == 0.0
    with pytest.raises(ValueError):
        metric_cis(["bored"], ["happy"], LABELS)


def test_mcnemar_hand_and_reference():
    a = [True] * 10 + [False] * 6 + [True] * 4
    b = [True] * 10 + [True] * 6 + [False] * 4
    r = mcnemar(a, b)
    assert (r["a_only"], r["b_only"], r["discordant"]) == (4, 6, 10)
    # exact two-sided: 2 * P(X <= 4), X ~ Bin(10, .5) = 2 * 386/1024
    assert r["p_value"] == pytest.approx(2 * 386 / 1024)
    assert mcnemar([True] * 6, [False] * 6)["p_value"] == pytest.approx(2 / 64)
    assert mcnemar([True, False], [True, False])["p_value"] == 1.0
    sp = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(5):
        x, y = rng.random(80) < 0.6, rng.random(80) < 0.45
        r = mcnemar(x, y)
        assert r["p_value"] == pytest.approx(sp.binomtest(r["a_only"], r["discordant"], 0.5).pvalue, rel=1e-9)


def test_paired_comparison():
    true, pred_a = _fake(300, 0.4, 3)
    same = compare_paired(true, pred_a, pred_a, LABELS, n_boot=300)
    assert same["war"]["diff"] == 0 and same["war"]["lo"] == 0 and same["war"]["hi"] == 0
    assert not same["war"]["significant"] and not same["mcnemar"]["significant"]
    # B fixes 60 of A's errors: clearly better
    fixed = 0
    pred_b = list(pred_a)
    for i, (t, p) in enumerate(zip(true, pred_a)):
        if p != t and fixed < 60:
            pred_b[i], fixed = t, fixed + 1
    c = compare_paired(true, pred_a, pred_b, LABELS, n_boot=1000)
    assert c["war"]["diff"] == pytest.approx(60 / 300)
    assert c["uar"]["diff"] == pytest.approx(uar(true, pred_b, LABELS) - uar(true, pred_a, LABELS))
    assert c["war"]["significant"] and c["war"]["lo"] > 0.1 and c["war"]["p_value"] < 0.01
    assert c["mcnemar"]["b_only"] == 60 and c["mcnemar"]["a_only"] == 0 and c["mcnemar"]["significant"]
    # the paired interval is narrower than what two independent intervals would suggest
    ia, ib = metric_cis(true, pred_a, LABELS, n_boot=1000), metric_cis(true, pred_b, LABELS, n_boot=1000)
    assert c["war"]["hi"] - c["war"]["lo"] < (ia["war"]["hi"] - ia["war"]["lo"] + ib["war"]["hi"] - ib["war"]["lo"]) / 2
    # reversed order flips the sign
    r = compare_paired(true, pred_b, pred_a, LABELS, n_boot=1000)
    assert r["war"]["diff"] == pytest.approx(-60 / 300) and r["war"]["hi"] < 0


def test_rate_ci_wilson_and_clustered():
    r = rate_ci([True] * 3 + [False] * 7)
    assert r["rate"] == 0.3 and r["method"] == "wilson" and (r["lo"], r["hi"]) == pytest.approx(wilson_ci(3, 10))
    assert rate_ci([])["rate"] is None
    flags = [True, True, False, False] * 25
    clusters = [f"c{i // 4}" for i in range(100)]  # every cluster: 2 of 4
    r = rate_ci(flags, clusters)
    assert r["method"].startswith("cluster-bootstrap") and r["rate"] == 0.5
    assert r["lo"] == r["hi"] == 0.5  # every cluster has the same rate: no between-cluster variance
    flags = [True] * 8 + [False] * 8
    clusters = ["a"] * 8 + ["b"] * 8  # two clusters, all-or-nothing: huge uncertainty
    r = rate_ci(flags, clusters, n_boot=500)
    assert r["lo"] == 0.0 and r["hi"] == 1.0


def test_permutation_agreement_and_cluster_of():
    truth = ["video"] * 20 + ["audio"] * 20
    r = permutation_agreement(truth, truth, n_perm=2000)
    assert r["agreement"] == 1.0 and r["chance"] == pytest.approx(0.5, abs=0.02) and r["p_value"] < 0.001
    inferred = ["video"] * 40  # always says video: agreement 0.5 = chance, p = 1
    r = permutation_agreement(truth, inferred, n_perm=500)
    assert r["agreement"] == 0.5 and r["chance"] == pytest.approx(0.5) and r["p_value"] == 1.0
    assert cluster_of("x", {"speaker": "s1", "actor": "a"}) == "speaker:s1"
    assert cluster_of("x", {"video": 7}) == "video:7"
    assert cluster_of("x", {}) == "id:x" and cluster_of("x", None) == "id:x"
