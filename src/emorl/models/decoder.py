"""The group decoder: decode steps for N prompts x g rows over each group's prompt KV stored once,
with fixed shapes, optionally replayed as one CUDA graph. Family-independent: it runs the
adapter's text model, input embeddings and LM head (``OmniAdapter`` anatomy) and works for any
text model whose attention layers call a registered attention function and whose cache argument
is duck-typed (transformers' decoder models). ``emorl.models.group.sample_groups_shared`` uses it.
"""

from __future__ import annotations

import functools
import inspect
import weakref

import torch
import torch.nn.functional as F
from transformers import AttentionInterface

DECODE_MODES = ("dynamic", "static", "graph")
GROUP_ATTENTION = "emorl_group_decode"
PROMPT_BUCKET = 64  # prompt slots are rounded up to this, so that a graph serves nearby prompt lengths
_ALIGN = 64  # the KV buffers' length is a multiple of this (attention kernels want aligned mask rows)


def group_decode_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """One decode token per row against its group's packed KV (registered with transformers'
    ``AttentionInterface`` as ``emorl_group_decode``; ``GroupDecoder`` selects it for its steps).

    query (N*g, Hq, 1, D), rows prompt-major; key, value (N, Hkv, L, D): each group's prompt once,
    then its g rows' new tokens; attention_mask (N, 1, g*Hq/Hkv, L), boolean (True: attend) or
    additive. The g rows' queries of a KV head are stacked along the query axis, so one
    ``scaled_dot_product_attention`` call reads each group's prompt once instead of g times.
    Returns (N*g, 1, Hq, D), as transformers' attention functions do."""
    rows, hq, q_len, d = query.shape
    n, hkv = key.shape[:2]
    if q_len != 1 or rows % n or hq % hkv:
        raise ValueError(
            f"group decode attention takes one token per row and whole groups: query "
            f"{tuple(query.shape)}, key {tuple(key.shape)}"
        )
    g, rep = rows // n, hq // hkv
    q = query.reshape(n, g, hkv, rep, d).transpose(1, 2).reshape(n, hkv, g * rep, d)
    out = F.scaled_dot_product_attention(q, key, value, attn_mask=attention_mask, scale=scaling)
    return out.reshape(n, hkv, g, rep, d).transpose(1, 2).reshape(rows, 1, hq, d), None


AttentionInterface.register(GROUP_ATTENTION, group_decode_attention)


def cache_kwarg(text_model, kv) -> dict:
    """``{name: kv}`` for the text model's KV-cache argument: ``cache`` where its forward takes it
    (transformers >= 5.24 renamed ``past_key_values``, which then warns on every call), else
    ``past_key_values``. Never a name the forward would swallow into ``**kwargs`` unread."""
    return {_kv_name(type(text_model)): kv}


@functools.cache
def _kv_name(cls: type) -> str:
    return "cache" if "cache" in inspect.signature(cls.forward).parameters else "past_key_values"


class _GroupKV:
    """The decoder's KV cache, per layer one buffer (N, Hkv, L, D) with L = P + g*T: a group's
    prompt (P slots) and then T slots for each of its g rows. ``update`` (called by every attention
    layer with the step's (N*g, Hkv, 1, D) keys and values) writes row j of each group at slot
    ``at[j]`` and returns the whole buffers."""

    def __init__(self, n_layers: int, shape: tuple[int, ...], dtype, device):
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.at: torch.Tensor | None = None  # (g,) slot of each row's next token, set by the decoder

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        n, hkv, _, d = self.keys[layer_idx].shape
        for buf, new in ((self.keys[layer_idx], key_states), (self.values[layer_idx], value_states)):
            buf.index_copy_(2, self.at, new.reshape(n, -1, hkv, d).transpose(1, 2))
        return self.keys[layer_idx], self.values[layer_idx]


def _weights_key(model) -> tuple:
    """Where the model's weights live: a captured graph reads them at these addresses, so any
    change (a re-gather, a dtype or device move) must recapture. In-place updates keep them."""
    return tuple(t.data_ptr() for t in (*model.parameters(), *model.buffers()))


def _routed_experts(lm) -> bool:
    """Whether the text model routes tokens to experts (a MoE config's ``num_experts``)."""
    return getattr(lm.config, "num_experts", 0) > 0


def _decoder_key(
    model, n: int, g: int, p_slots: int, steps: int, graph: bool, pos_dtype: torch.dtype, pos_axes: int
) -> tuple:
    """What a cached ``GroupDecoder`` must match to be reused (weight addresses only for a graph)."""
    return n, g, p_slots, steps, graph, pos_dtype, pos_axes, _weights_key(model) if graph else None


class GroupDecoder:
    """Decode steps for N prompts × g rows over each group's prompt KV stored once, with fixed
    shapes, optionally replayed as one CUDA graph (``graph=True``).

    Why: the growing-cache decoder repeats each prompt's KV g times and is launch-bound (7B
    shape on an H100: 26 ms a step against a 6.6 ms bandwidth floor; docs/benchmarks.md). Here
    each layer's cache is one buffer per group, [prompt | row 1's tokens | ... | row g's tokens]
    (``_GroupKV``), and ``group_decode_attention`` reads a group's prompt once for all its rows.
    An additive mask (N, 1, g*rep, L) (0 where a row attends, the dtype's minimum elsewhere)
    marks what each row sees: its prompt's non-pad positions and its own tokens so far. Every
    step has the same shapes, so the step (embedding, decoder, LM head) is captured once and
    replayed; sampling and the logits processors stay eager.

    A decoder is built for (N, g, prompt slots, steps, position dtype and axes, weights) and reused by later
    rollouts with the same key (``decoder_for``): the graph is captured once per run, not once per
    rollout.
    ``start`` loads a rollout's prefill; ``step(next_ids)`` feeds (N*g,) tokens and returns
    (N*g, V) float32 logits. Eager and graph steps run the same code."""

    def __init__(
        self,
        adapter,
        n: int,
        g: int,
        p_slots: int,
        steps: int,
        *,
        graph: bool = False,
        pos_dtype: torch.dtype = torch.long,
        pos_axes: int = 3,
    ):
        lm = adapter.text_model()
        # the decoder is cached per model and must not keep it alive: weak references to its parts
        self._parts = tuple(weakref.ref(m) for m in (lm, adapter.input_embeddings(), adapter.lm_head()))
        cfg = lm.config
        if any(t != "full_attention" for t in getattr(cfg, "layer_types", None) or ()) or getattr(
            cfg, "use_sliding_window", False
        ):
            raise NotImplementedError(
                "the group decoder supports full attention only (sliding-window layers found "
                f"in {type(lm).__name__}'s config)"
            )
        dev, dtype = adapter.device, adapter.input_embeddings().weight.dtype
        if graph and _routed_experts(lm):
            raise NotImplementedError(
                "CUDA graph decoding is not supported for text models with routed experts "
                f"({type(lm).__name__}): which tokens reach which expert changes every step, "
                "and no capture of it has been verified; use sampling.decode=static"
            )
        if graph and dev.type != "cuda":
            raise ValueError("CUDA graph decoding needs a CUDA device")
        hkv = cfg.num_key_value_heads
        rep = cfg.num_attention_heads // hkv
        d = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.p_slots, self.steps, self.use_graph = p_slots, steps, graph
        width = -(-(p_slots + g * steps) // _ALIGN) * _ALIGN
        self.kv = _GroupKV(cfg.num_hidden_layers, (n, hkv, width, d), dtype, dev)
        self.blocked = torch.finfo(dtype).min
        self.mask = torch.full((n, 1, g, rep, width), self.blocked, dtype=dtype, device=dev)
        self.rows = torch.arange(g, device=dev)
        self.row_slots = p_slots + steps * self.rows  # (g,) first slot of each row
        self.kv.at = self.row_slots.clone()
        self.ids = torch.zeros(n * g, 1, dtype=torch.long, device=dev)
        # (axes, N*g, 1): 3 for M-RoPE, 1 for plain positions; float where a family's are fractional
        self.pos = torch.zeros(pos_axes, n * g, 1, dtype=pos_dtype, device=dev)
        self.key = _decoder_key(adapter.model, n, g, p_slots, steps, graph, pos_dtype, pos_axes)
        self.graph = self.logits = None
        self.t = 0

    def start(self, prefill, att: torch.Tensor, step_pos: torch.Tensor) -> None:
        """Load a rollout: ``prefill`` the (N, Hkv, P, D)-per-layer cache of the N prompts (not
        repeated), ``att`` their (N, P) attention mask, ``step_pos`` (A, N*g, 1) the position just
        before each row's first generated token (the prompt's maximum position)."""
        p = att.shape[1]
        if p > self.p_slots:
            raise ValueError(f"prompt of {p} tokens does not fit this decoder's {self.p_slots} slots")
        if step_pos.dtype != self.pos.dtype or step_pos.shape != self.pos.shape:
            raise ValueError(
                f"positions {tuple(step_pos.shape)} of dtype {step_pos.dtype}, this decoder holds "
                f"{tuple(self.pos.shape)} of {self.pos.dtype}"
            )
        for buf, src in zip(
            (*self.kv.keys, *self.kv.values),
            (*(lay.keys for lay in prefill.layers), *(lay.values for lay in prefill.layers)),
            strict=True,
        ):
            buf[:, :, :p].copy_(src)
        self.mask.fill_(self.blocked)
        self.mask[..., :p] = torch.where(att.bool(), 0.0, self.blocked)[:, None, None, None, :]
        self.pos.copy_(step_pos)
        self.t = 0

    def _forward(self, lm, embed, head) -> torch.Tensor:
        n, _, g, rep, width = self.mask.shape
        # a 4-D mask is used as given by transformers' text models (no causal mask built)
        hidden = lm(
            inputs_embeds=embed(self.ids),
            attention_mask=self.mask.view(n, 1, g * rep, width),
            position_ids=self.pos[0] if self.pos.shape[0] == 1 else self.pos,
            use_cache=True,
            **cache_kwarg(lm, self.kv),
        ).last_hidden_state[:, -1]
        return head(hidden).float()

    def step(self, next_ids: torch.Tensor) -> torch.Tensor:
        """Feed (N*g,) token ids at each row's next slot; returns (N*g, V) float32 logits."""
        if self.t >= self.steps:
            raise ValueError(f"this decoder holds {self.steps} steps")
        self.ids.copy_(next_ids[:, None])
        self.kv.at.copy_(self.row_slots + self.t)
        self.mask[:, 0, self.rows, :, self.row_slots + self.t] = 0.0
        self.pos.add_(1)
        self.t += 1
        parts = tuple(ref() for ref in self._parts)
        with _attention(parts[0].config, GROUP_ATTENTION):
            if not self.use_graph:
                return self._forward(*parts)
            if self.graph is None:  # warm up on a side stream (the KV it writes is rewritten by the replay)
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    for _ in range(2):
                        self._forward(*parts)
                torch.cuda.current_stream().wait_stream(side)
                self.graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(self.graph):
                    self.logits = self._forward(*parts)
        self.graph.replay()
        return self.logits


class _attention:
    """Selects a registered attention function on ``config`` for the block, then restores it."""

    def __init__(self, config, name: str):
        self.config, self.name = config, name

    def __enter__(self):
        self.saved = self.config._attn_implementation
        self.config._attn_implementation = self.name

    def __exit__(self, *exc):
        self.config._attn_implementation = self.saved


_DECODERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its last GroupDecoder


def decoder_for(
    adapter,
    n: int,
    g: int,
    prompt_len: int,
    steps: int,
    *,
    graph: bool,
    pos_dtype: torch.dtype = torch.long,
    pos_axes: int = 3,
) -> GroupDecoder:
    """The model's ``GroupDecoder`` for this shape, reused while the key (N, g, prompt slots,
    steps, graph, position dtype and axes, weight addresses) holds; otherwise the old one is
    dropped (its buffers and graph freed) and a new one built. Prompt slots are ``prompt_len``
    rounded up to ``PROMPT_BUCKET``."""
    model = adapter.model
    p_slots = -(-prompt_len // PROMPT_BUCKET) * PROMPT_BUCKET
    old = _DECODERS.get(model)
    if old is not None and old.key == _decoder_key(model, n, g, p_slots, steps, graph, pos_dtype, pos_axes):
        return old
    _DECODERS.pop(model, None)
    del old
    _DECODERS[model] = GroupDecoder(adapter, n, g, p_slots, steps, graph=graph, pos_dtype=pos_dtype, pos_axes=pos_axes)
    return _DECODERS[model]


def release_decoder(adapter) -> None:
    """Frees the model's cached ``GroupDecoder`` (its KV buffers and CUDA graph)."""
    _DECODERS.pop(adapter.model, None)
