"""GRPO-family maths as small pure functions on tensors.

Notation: N prompts, G completions each, B = N*G rows, L completion tokens (padded).
``mask`` (B, L) is 1 on real completion tokens.

Losses (chosen by name):
- ``grpo``: per-token clipped surrogate, mean over each sequence's tokens, then over sequences
  (DeepSeekMath; R1-Omni / TRL 0.14 with one update per rollout, where the ratio is 1).
- ``dr_grpo``: no length normalisation: token sum divided by a constant (max completion length),
  used with ``scale="none"`` advantages (Dr. GRPO, Liu et al. 2025).
- ``dapo``: token-level aggregation over the whole batch, asymmetric clip (DAPO, Yu et al. 2025).
- ``gspo``: sequence-level importance ratio, geometric mean of token ratios (GSPO, Zheng et al. 2025).

Any of them takes dual-clip PPO (``dual_clip``; Ye et al. 2020, verl's ``clip_ratio_c``): for a
negative advantage the clipped per-token loss is capped at ``-A * C``, so one stale token with a huge
ratio cannot dominate the update.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "gspo")
KL_KINDS = ("k1", "k3", "low_var_kl")
LOW_VAR_KL_MAX = 10.0  # verl / EasyR1 clamp of low_var_kl


def group_advantages(
    rewards: torch.Tensor, scale: str = "group", eps: float = 1e-4, batch_std: float | None = None
) -> torch.Tensor:
    """Group-relative advantages.

    rewards: (N, G). Returns (N, G): r - mean_group(r), divided by the unbiased group std
    (``scale="group"``, R1-Omni), the batch std (``"batch"``), or nothing (``"none"``, Dr. GRPO).
    A group whose rewards all tie gets advantage 0 everywhere, and so does a batch of one reward
    under ``"batch"`` (its std is undefined, not NaN). ``batch_std`` replaces the std of ``rewards``
    for ``"batch"`` when the batch spans processes (the std of all of them).
    """
    if rewards.ndim != 2:
        raise ValueError(f"rewards must be (N, G), got shape {tuple(rewards.shape)}")
    centered = rewards - rewards.mean(dim=1, keepdim=True)
    if scale == "group":
        std = rewards.std(dim=1, keepdim=True) if rewards.shape[1] > 1 else torch.zeros_like(centered[:, :1])
        return centered / (std + eps)
    if scale == "batch":
        if batch_std is None:
            batch_std = rewards.std() if rewards.numel() > 1 else 0.0
        return centered / (batch_std + eps)
    if scale == "none":
        return centered
    raise ValueError(f"unknown advantage scale {scale!r}; expected group, batch or none")


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "k3") -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from samples of the policy.

    logp, ref_logp: (B, L). k1 = logp - ref (unbiased, can be negative);
    k3 = exp(ref - logp) - (ref - logp) - 1 (unbiased, always >= 0; Schulman 2020);
    low_var_kl = k3 with ref - logp clamped to [-20, 20] and the result to at most 10 (verl /
    EasyR1's ``low_var_kl``, EMO-R3's KL loss): a token past the clamp gets no KL gradient.
    """
    d = ref_logp - logp
    if kind == "k1":
        return -d
    if kind == "k3":
        return torch.exp(d) - d - 1
    if kind == "low_var_kl":
        d = d.clamp(-20.0, 20.0)  # exp stays finite, so the clamped branch's zero gradient is not 0 * inf
        return (torch.exp(d) - d - 1).clamp(max=LOW_VAR_KL_MAX)
    raise ValueError(f"unknown KL estimator {kind!r}; expected one of {', '.join(KL_KINDS)}")


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


@dataclass
class LossOut:
    loss: torch.Tensor  # scalar
    clip_frac: float  # fraction of tokens whose ratio was clipped (with a non-zero gradient cut)
    kl: float  # mean per-token KL estimate (0 when beta == 0)
    ratio_mean: float
    dual_clip_frac: float = 0.0  # fraction of tokens capped by the dual clip (A < 0, ratio above C)


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    loss_type: str = "grpo",
    eps_low: float = 0.2,
    eps_high: float | None = None,
    ref_logp: torch.Tensor | None = None,
    beta: float = 0.0,
    kl_kind: str = "k3",
    max_len: int | None = None,
    norm_rows: float | None = None,
    norm_tokens: float | None = None,
    dual_clip: float = 0.0,
) -> LossOut:
    """Clipped policy-gradient loss with optional KL penalty and dual clip.

    logp, old_logp, ref_logp, mask: (B, L); advantages: (B,).
    Per token: ``pg = -min(rho*A, clip(rho, 1-eps_low, 1+eps_high)*A)``; with ``dual_clip = C > 1``
    and ``A < 0``, ``pg = min(pg, -A*C)`` (verl: ``min(max(-A*rho, -A*clip(rho)), -A*C)``); then
    ``+ beta*KL``, aggregated per ``loss_type`` (see module docstring). ``max_len`` is Dr. GRPO's
    constant. For gradient accumulation over micro-batches pass the whole batch's ``norm_rows``
    (rows) and ``norm_tokens`` (completion tokens): then the micro-batch losses sum to the
    full-batch loss. ``dual_clip = 0`` is off.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"unknown loss_type {loss_type!r}; expected one of {', '.join(LOSS_TYPES)}")
    if dual_clip and not dual_clip > 1.0:
        raise ValueError(f"dual_clip (grpo.dual_clip_c) must be 0 (off) or > 1, got {dual_clip}")
    eps_high = eps_low if eps_high is None else eps_high
    adv = advantages.unsqueeze(1)  # (B, 1)
    if loss_type == "gspo":
        log_s = masked_mean(logp - old_logp, mask, dim=1).unsqueeze(1)  # (B, 1) sequence log-ratio
        # value of exp(log_s) per token, gradient of the token's own log-prob scaled by it
        log_ratio = log_s.detach() + logp - logp.detach()
    else:
        log_ratio = logp - old_logp
    ratio = torch.exp(log_ratio)
    clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high)
    surrogate = torch.minimum(ratio * adv, clipped * adv)
    per_token = -surrogate
    dual_capped = torch.zeros_like(per_token, dtype=torch.bool)
    if dual_clip:
        cap = -adv * dual_clip  # (B, 1), positive where A < 0
        dual_capped = (adv < 0) & (per_token > cap)
        per_token = torch.where(adv < 0, torch.minimum(per_token, cap), per_token)
    kl_val = 0.0
    if beta != 0.0:
        if ref_logp is None:
            raise ValueError("beta != 0 needs ref_logp")
        kl = kl_estimate(logp, ref_logp, kl_kind)
        per_token = per_token + beta * kl
        kl_val = float(masked_mean(kl.detach(), mask))
    rows = norm_rows if norm_rows is not None else per_token.shape[0]
    if loss_type in ("grpo", "gspo"):
        loss = masked_mean(per_token, mask, dim=1).sum() / rows
    elif loss_type == "dr_grpo":
        if max_len is None:
            raise ValueError("dr_grpo needs max_len (the max completion length)")
        loss = (per_token * mask).sum() / (rows * max_len)
    else:  # dapo
        loss = (per_token * mask).sum() / (norm_tokens if norm_tokens is not None else mask.sum().clamp(min=1))
    with torch.no_grad():
        was_clipped = ((ratio < 1 - eps_low) & (adv < 0)) | ((ratio > 1 + eps_high) & (adv > 0))
        clip_frac = float(masked_mean(was_clipped.float(), mask))
        ratio_mean = float(masked_mean(ratio, mask))
        dual_frac = float(masked_mean(dual_capped.float(), mask))
    return LossOut(loss, clip_frac, kl_val, ratio_mean, dual_frac)
