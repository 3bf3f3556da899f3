"""GRPO maths against hand-computed values (tight tolerances)."""

import math

import pytest
import torch

from emorl.rl.grpo import group_advantages, kl_estimate, policy_loss

T = dict(rtol=0, atol=1e-6)


def test_group_advantages_hand_computed():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0]])
    # group 0: mean 0.5, unbiased std = sqrt(4*0.25/3) = 0.57735
    a = group_advantages(r, "group", eps=0.0)
    s = math.sqrt(1 / 3)
    torch.testing.assert_close(a[0], torch.tensor([0.5 / s, -0.5 / s, -0.5 / s, 0.5 / s]), **T)
    # tied group: zero advantage (std 0, eps keeps it finite)
    torch.testing.assert_close(group_advantages(r, "group")[1], torch.zeros(4), **T)


def test_group_advantages_batch_and_none():
    r = torch.tensor([[1.0, 3.0], [0.0, 0.0]])
    torch.testing.assert_close(group_advantages(r, "none"), torch.tensor([[-1.0, 1.0], [0.0, 0.0]]), **T)
    batch_std = torch.tensor([1.0, 3.0, 0.0, 0.0]).std()  # unbiased over the batch: 1.41421
    torch.testing.assert_close(
        group_advantages(r, "batch", eps=0.0), torch.tensor([[-1.0, 1.0], [0.0, 0.0]]) / batch_std, **T
    )
    # a batch split over two processes: each half scaled by the whole batch's std (the trainer's global_std)
    for half in (slice(0, 1), slice(1, 2)):
        torch.testing.assert_close(
            group_advantages(r[half], "batch", eps=0.0, batch_std=float(batch_std)),
            group_advantages(r, "batch", eps=0.0)[half],
            **T,
        )
    with pytest.raises(ValueError, match="unknown advantage scale"):
        group_advantages(r, "bogus")


def test_kl_estimators():
    logp = torch.tensor([[-1.0, -2.0]])
    ref = torch.tensor([[-1.5, -1.0]])
    # k1 = logp - ref
    torch.testing.assert_close(kl_estimate(logp, ref, "k1"), torch.tensor([[0.5, -1.0]]), **T)
    # k3 = exp(ref-logp) - (ref-logp) - 1
    d = ref - logp
    exp = torch.exp(d) - d - 1
    torch.testing.assert_close(kl_estimate(logp, ref, "k3"), exp, **T)
    assert float(exp[0, 0]) == pytest.approx(math.exp(-0.5) + 0.5 - 1, abs=1e-7)
    assert (kl_estimate(logp, logp, "k3") == 0).all()


def _toy():
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.7, 0.0]], requires_grad=True)
    old = torch.tensor([[-1.2, -1.8, -0.5], [-0.3, -1.0, 0.0]])
    adv = torch.tensor([1.0, -2.0])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    return logp, old, adv, mask


def test_grpo_loss_hand_computed():
    logp, old, adv, mask = _toy()
    out = policy_loss(logp, old, adv, mask, loss_type="grpo", eps_low=0.2, eps_high=0.2)
    # row 0 (A=+1): ratios e^0.2=1.2214 -> clipped 1.2; e^-0.2=0.8187; 1 -> min(r, clip r) = 1.2, 0.8187, 1
    r0 = [min(math.exp(0.2), 1.2), math.exp(-0.2), 1.0]
    # row 1 (A=-2): ratios 1, e^0.3=1.3499 -> -2*max-ish: min(r*A, clip(r)*A) = min(-2.6997, -2.4) = -2.6997
    r1 = [-2.0, min(math.exp(0.3) * -2, 1.2 * -2)]
    expected = -(sum(r0) / 3 + sum(r1) / 2) / 2
    assert float(out.loss) == pytest.approx(expected, abs=1e-6)
    # clipped tokens with a cut gradient: row0 token0 (ratio>1.2, A>0); row1 token1 is NOT cut (A<0, ratio>1)
    assert out.clip_frac == pytest.approx(1 / 5, abs=1e-7)


def test_dapo_and_dr_grpo_aggregation():
    logp, old, adv, mask = _toy()
    ratio = torch.exp(logp.detach() - old)
    a = adv.unsqueeze(1)
    surr = torch.minimum(ratio * a, ratio.clamp(1 - 0.2, 1 + 0.28) * a)
    total = float((-surr * mask).sum())
    out = policy_loss(logp, old, adv, mask, loss_type="dapo", eps_low=0.2, eps_high=0.28)
    assert float(out.loss) == pytest.approx(total / 5, abs=1e-6)  # 5 real tokens
    surr2 = torch.minimum(ratio * a, ratio.clamp(0.8, 1.2) * a)
    out2 = policy_loss(logp, old, adv, mask, loss_type="dr_grpo", max_len=4)
    assert float(out2.loss) == pytest.approx(float((-surr2 * mask).sum()) / (2 * 4), abs=1e-6)
    with pytest.raises(ValueError, match="max_len"):
        policy_loss(logp, old, adv, mask, loss_type="dr_grpo")


def test_gspo_sequence_ratio():
    logp, old, adv, mask = _toy()
    out = policy_loss(logp, old, adv, mask, loss_type="gspo", eps_low=0.2, eps_high=0.2)
    s0 = math.exp((0.2 - 0.2 + 0.0) / 3)  # mean log-ratio row 0 = 0 -> 1
    s1 = math.exp((0.0 + 0.3) / 2)  # 1.1618
    expected = -(min(s0 * 1, s0 * 1) + min(s1 * -2, min(max(s1, 0.8), 1.2) * -2)) / 2
    assert float(out.loss) == pytest.approx(expected, abs=1e-6)


def test_on_policy_gradient_is_reinforce_with_kl():
    """With old = logp.detach() the ratio is 1 and d loss / d logp = -A/|o| (+ beta dKL)."""
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    ref = torch.tensor([[-1.0, -1.0]])
    out = policy_loss(
        logp, logp.detach(), torch.tensor([2.0]), torch.ones(1, 2), loss_type="grpo", ref_logp=ref, beta=0.5
    )
    out.loss.backward()
    # d k3 / d logp = 1 - exp(ref - logp)
    dkl = 1 - torch.exp(ref - logp.detach())
    torch.testing.assert_close(logp.grad, (-2.0 + 0.5 * dkl) / 2, **T)
    assert out.ratio_mean == pytest.approx(1.0)


def test_micro_batch_normalisation_sums_to_full_batch():
    logp, old, adv, mask = _toy()
    for lt in ("grpo", "dapo", "dr_grpo", "gspo"):
        full = policy_loss(logp, old, adv, mask, loss_type=lt, max_len=3).loss
        parts = sum(
            policy_loss(
                logp[i : i + 1],
                old[i : i + 1],
                adv[i : i + 1],
                mask[i : i + 1],
                loss_type=lt,
                max_len=3,
                norm_rows=2,
                norm_tokens=5,
            ).loss
            for i in range(2)
        )
        assert float(parts) == pytest.approx(float(full), abs=1e-6), lt


def test_low_var_kl_is_clamped_k3():
    logp = torch.tensor([[-1.0, -2.0, -30.0, -1.0]], requires_grad=True)
    ref = torch.tensor([[-1.5, -1.0, -1.0, -200.0]])
    got = kl_estimate(logp, ref, "low_var_kl")
    # d = ref - logp = [-0.5, 1, 29 -> clamped 20, -199 -> clamped -20]; k3 = e^d - d - 1, then min(., 10)
    want = [math.exp(-0.5) + 0.5 - 1, math.exp(1) - 2, 10.0, 10.0]
    torch.testing.assert_close(got, torch.tensor([want]), **T)
    got.sum().backward()
    # d/dlogp (e^d - d - 1) = -(e^d - 1) where not clamped; 0 past either clamp, never NaN (no 0 * inf)
    torch.testing.assert_close(logp.grad, torch.tensor([[-(math.exp(-0.5) - 1), -(math.exp(1) - 1), 0.0, 0.0]]), **T)
    # below the clamps it is exactly k3
    small = torch.tensor([[-0.3, -0.1]])
    torch.testing.assert_close(
        kl_estimate(small, small - 0.7, "low_var_kl"), kl_estimate(small, small - 0.7, "k3"), **T
    )
    with pytest.raises(ValueError, match="expected one of k1, k3, low_var_kl"):
        kl_estimate(logp, ref, "kl")


def test_dual_clip_hand_computed():
    # one sequence per advantage, three tokens: ratios 0.5, 1.2, 5.0 (log-ratio = log r)
    ratios = torch.tensor([0.5, 1.2, 5.0])
    logp = torch.log(ratios).repeat(2, 1).requires_grad_(True)
    old = torch.zeros(2, 3)
    adv = torch.tensor([-1.0, 2.0])
    mask = torch.ones(2, 3)
    kw = {"loss_type": "dapo", "eps_low": 0.2, "eps_high": 0.3}
    # A = -1: -min(rA, clip(r)A) = max(r, clip(r)) = [0.8, 1.2, 5.0]; dual clip C = 3 caps at -A*C = 3 -> [0.8, 1.2, 3]
    # A = +2: -min(2r, 2 clip(r)) = [-1.0, -2.4, -2.6] (untouched by the dual clip)
    plain = policy_loss(logp, old, adv, mask, **kw)
    dual = policy_loss(logp, old, adv, mask, dual_clip=3.0, **kw)
    assert plain.loss.item() == pytest.approx((0.8 + 1.2 + 5.0 - 1.0 - 2.4 - 2.6) / 6, abs=1e-6)
    assert dual.loss.item() == pytest.approx((0.8 + 1.2 + 3.0 - 1.0 - 2.4 - 2.6) / 6, abs=1e-6)
    assert dual.dual_clip_frac == pytest.approx(1 / 6) and plain.dual_clip_frac == 0.0
    dual.loss.backward()
    # gradient w.r.t. log r of each token's loss / 6: A=-1: r=0.5 clipped (0), r=1.2 -> -A*r = 1.2, r=5 capped (0);
    # A=+2: r=0.5 -> -A*r = -1.0, r=1.2 -> -2.4, r=5 clipped (0)
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0, 1.2, 0.0], [-1.0, -2.4, 0.0]]) / 6, **T)
    # C above every ratio changes nothing; verl's definition min(max(-A r, -A clip(r)), -A C) holds elementwise
    assert policy_loss(logp, old, adv, mask, dual_clip=10.0, **kw).loss.item() == pytest.approx(plain.loss.item())
    with pytest.raises(ValueError, match="must be 0 \\(off\\) or > 1"):
        policy_loss(logp, old, adv, mask, dual_clip=0.5, **kw)


def test_dual_clip_with_grpo_aggregation_and_kl():
    logp = torch.log(torch.tensor([[4.0, 1.0]]))
    ref = logp.clone()
    out = policy_loss(
        logp,
        torch.zeros(1, 2),
        torch.tensor([-0.5]),
        torch.ones(1, 2),
        loss_type="grpo",
        eps_low=0.2,
        eps_high=0.2,
        dual_clip=3.0,
        ref_logp=ref,
        beta=0.1,
        kl_kind="low_var_kl",
    )
    # tokens: r=4 -> max(4*0.5, 1.2*0.5) = 2.0, capped at 0.5*3 = 1.5; r=1 -> 0.5; KL 0: mean = 1.0
    assert out.loss.item() == pytest.approx(1.0, abs=1e-6) and out.kl == 0.0
