"""Packed attention for encoders that attend within segments of one long sequence.

Vision and audio towers of several families (Qwen2.5-Omni, Qwen3-Omni, Qwen2.5-VL, Qwen3-VL in
transformers) run over all frames of a batch as one packed sequence and attend within segments
given by ``cu_seqlens``: a vision window, a frame, an audio chunk. Under ``sdpa`` or ``eager``
transformers splits the sequence and calls the attention function once per segment, in a Python
loop: hundreds of calls per layer for a batch of clips (8 clips x 16 frames at 336 px: ~600
windows per windowed layer). Under a flash-attention implementation it passes the boundaries
instead (``cu_seq_lens_q`` / ``cu_seq_lens_k``), one call per layer.

``varlen_attention`` is such a variable-length function built from the plain ones: it groups the
segments by length and runs one batched call per distinct length (a tower has a handful: full
windows and the windows cut at a frame's edge), with no mask and no padding, so each segment's
attention is computed as in the loop. Registered with transformers' ``AttentionInterface`` as
``emorl_flash_varlen_sdpa`` / ``emorl_flash_varlen_eager``: transformers routes an implementation
to its varlen branch by the word ``flash`` in the name (``is_flash_attention_requested``), which
is how hub kernels plug in too. ``use_varlen_attention`` switches a tower's config to it; a family
whose towers take ``cu_seqlens`` calls it on them (the setting is not saved with the checkpoint:
transformers drops ``_attn_implementation`` from ``config.json``).
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

VARLEN_PREFIX = "emorl_flash_varlen_"


def eager_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers' eager attention for encoders (no mask here, softmax in float32 as the
    families' own ``eager_attention_forward``); query/key/value (B, H, L, D) -> ((B, L, H, D), weights)."""
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    key = repeat_kv(key, getattr(module, "num_key_value_groups", 1))
    value = repeat_kv(value, getattr(module, "num_key_value_groups", 1))
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = torch.nn.functional.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = torch.nn.functional.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


BASES = {"sdpa": sdpa_attention_forward, "eager": eager_attention}


def segments_by_length(cu_seqlens: torch.Tensor) -> list[torch.Tensor]:
    """cu_seqlens (S+1,) cumulative segment boundaries (0 first, the total last) -> for each
    distinct segment length L, in increasing L, an (n_L, L) int64 tensor of the token positions of
    its n_L segments, in sequence order. Empty segments are left out.

    >>> [t.tolist() for t in segments_by_length(torch.tensor([0, 2, 5, 7]))]
    [[[0, 1], [5, 6]], [[2, 3, 4]]]"""
    cu = cu_seqlens.to("cpu", torch.int64)
    if cu.ndim != 1 or len(cu) < 1 or cu[0] != 0 or bool((cu[1:] < cu[:-1]).any()):
        raise ValueError(f"cu_seqlens must rise from 0, got {cu.tolist()}")
    starts, lengths = cu[:-1], cu[1:] - cu[:-1]
    out = []
    for length in torch.unique(lengths).tolist():
        if length == 0:
            continue
        first = starts[lengths == length]
        out.append((first[:, None] + torch.arange(length)[None, :]).to(cu_seqlens.device))
    return out


def _varlen(base):
    def varlen_attention(
        module,
        query,
        key,
        value,
        attention_mask=None,
        scaling=None,
        dropout=0.0,
        cu_seq_lens_q=None,
        cu_seq_lens_k=None,
        max_length_q=None,
        max_length_k=None,
        is_causal=False,
        **kwargs,
    ):
        """query/key/value (1, H, T, D): T tokens of packed segments; cu_seq_lens_q == cu_seq_lens_k
        (S+1,) their boundaries. Attention within each segment, non-causal, no mask; returns
        ((1, T, H, D), None) as transformers' attention functions do."""
        if cu_seq_lens_q is None or cu_seq_lens_k is None or not torch.equal(cu_seq_lens_q, cu_seq_lens_k):
            raise ValueError("varlen attention takes self-attention within segments: cu_seq_lens_q == cu_seq_lens_k")
        if query.shape[0] != 1 or attention_mask is not None or is_causal:
            raise ValueError(
                f"varlen attention takes one packed sequence, no mask, non-causal: query {tuple(query.shape)}, "
                f"mask {attention_mask is not None}, causal {is_causal}"
            )
        total = query.shape[2]
        if int(cu_seq_lens_q[-1]) != total:
            raise ValueError(f"cu_seqlens end at {int(cu_seq_lens_q[-1])}, the sequence has {total} tokens")
        groups = segments_by_length(cu_seq_lens_q)
        if len(groups) == 1 and groups[0].shape[0] == 1:  # one segment: the call as it is
            return base(module, query, key, value, None, scaling=scaling, dropout=dropout, is_causal=False, **kwargs)
        outs = []
        for idx in groups:  # (n, L): n segments of length L -> one (n, H, L, D) call
            q, k, v = (t[0][:, idx].transpose(0, 1) for t in (query, key, value))
            out, _ = base(module, q, k, v, None, scaling=scaling, dropout=dropout, is_causal=False, **kwargs)
            outs.append(out.reshape(-1, *out.shape[2:]))  # (n*L, H, D), positions idx.flatten()
        order = torch.cat([idx.flatten() for idx in groups])
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(total, device=order.device)
        return torch.cat(outs)[inverse].unsqueeze(0), None

    varlen_attention.__qualname__ = f"varlen_attention[{base.__name__}]"
    return varlen_attention


for _name, _base in BASES.items():
    AttentionInterface.register(VARLEN_PREFIX + _name, _varlen(_base))


def use_varlen_attention(config) -> bool:
    """Switch an encoder ``config`` whose implementation is ``sdpa`` or ``eager`` to its packed
    varlen counterpart; flash implementations (already varlen) and others are left alone.
    Returns whether it switched."""
    name = config._attn_implementation
    if name not in BASES:
        return False
    config._attn_implementation = VARLEN_PREFIX + name
    return True
