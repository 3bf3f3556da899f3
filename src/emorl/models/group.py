"""Group-aware computation for Qwen2.5-Omni and Qwen3-Omni thinkers: a GRPO group's G completions
share one prompt, so its media are encoded once, its prompt is prefilled once, and its prompt
tokens go through the training and reference passes once.

Three pieces, each exact against the duplicated-rows path of ``QwenOmniAdapter`` (tests/unit/
test_group_exact.py: equal log-probs and gradients in fp32, token-equal greedy generations):

- ``encode_media``: the vision and audio towers run once per distinct prompt; their outputs are
  scattered into ``inputs_embeds`` at the placeholder tokens, as the thinkers' ``forward`` does
  (Qwen3-Omni's deepstack features go to the first text layers at the video positions, as
  there). Frozen towers run under ``no_grad``; an optional ``EncoderCache`` keeps their outputs across
  passes and epochs, keyed by clip content, preprocessing settings and encoder weights.
- ``sample_groups_shared``: prefill the N distinct prompts once, then decode N*G rows with the
  same logits processors ``generate`` would use, either over the KV cache repeated G times along
  the batch (``dynamic``) or with ``GroupDecoder``, which stores each prompt's KV once per group
  and reads it once per step for all G rows (``static``, and ``graph``: replayed as a CUDA graph).
- ``shared_prefix_logprobs`` ("Prefix Grouper"): one packed sequence per group,
  [prompt | c1 | ... | cG], with a 4-D mask (each completion sees the prompt and itself, causally)
  and TMRoPE positions where every completion continues from the prompt's max position + 1.

Positions always come from ``get_rope_index`` with the grids and audio lengths.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AttentionInterface

from emorl.models.adapter import Completions, Modality, PromptInputs, SamplingParams


@dataclass
class MediaEmbeds:
    """One prompt's encoder outputs in the LLM's width: video (n_video_tokens, H) and audio
    (n_audio_tokens, H), in placeholder order; None where the prompt has no such media.
    Qwen3-Omni only: ``deepstack``, the video's features from the vision blocks that feed the
    first text layers, one (n_video_tokens, H) per text layer."""

    video: torch.Tensor | None = None
    audio: torch.Tensor | None = None
    deepstack: tuple[torch.Tensor, ...] | None = None

    def map(self, fn) -> MediaEmbeds:
        """``fn`` applied to every tensor held."""
        return MediaEmbeds(*(None if t is None else fn(t) for t in (self.video, self.audio)),
                           None if self.deepstack is None else tuple(map(fn, self.deepstack)))

    def to(self, device) -> MediaEmbeds:
        return self.map(lambda t: t.to(device))


_FAMILIES = {"Qwen2_5Omni": "qwen2.5-omni", "Qwen3OmniMoe": "qwen3-omni"}


def family(m) -> str | None:
    """``qwen2.5-omni`` or ``qwen3-omni`` for a thinker of that family, else None (FSDP2 turns the
    class into a subclass FSDP<name>, hence the walk over the MRO)."""
    for c in type(m).__mro__:
        for prefix, name in _FAMILIES.items():
            if c.__name__.startswith(prefix):
                return name
    return None


def supports(adapter) -> bool:
    """Whether these group-aware paths cover ``adapter``'s model (Qwen2.5-Omni and Qwen3-Omni
    thinkers, eager or sdpa attention); callers fall back to the duplicated-rows paths otherwise."""
    m = adapter.model
    return family(m) is not None and m.model.language_model.config._attn_implementation in ("eager", "sdpa")


def _parts(adapter):
    """(thinker, thinker.model, text model); refuses families this module does not cover."""
    thinker = adapter.model
    if family(thinker) is None:
        raise NotImplementedError("group-aware paths support Qwen2.5-Omni and Qwen3-Omni thinkers, "
                                  f"got {type(thinker).__name__}")
    return thinker, thinker.model, thinker.model.language_model


def _distinct(prompts: list[PromptInputs]) -> list[PromptInputs]:
    seen: dict[int, PromptInputs] = {}
    for p in prompts:
        seen.setdefault(id(p), p)
    return list(seen.values())


def _modality(prompts: list[PromptInputs]) -> Modality:
    mods = {p.modality for p in prompts}
    if len(mods) != 1:
        raise ValueError("a batch must share one modality (Qwen-Omni needs homogeneous batches), "
                         f"got {sorted(m.value for m in mods)}")
    return mods.pop()


def _trainable(module) -> bool:
    return any(p.requires_grad for p in module.parameters())


# ---------------------------------------------------------------------------------------- encoders
def _video_features(inner, prompts: list[PromptInputs], device) -> tuple[list, list]:
    """Per prompt: the video's (n, H) features and (Qwen3-Omni) its per-layer deepstack features."""
    pv = torch.cat([p.mm["pixel_values_videos"] for p in prompts]).to(device)
    grid = torch.cat([p.mm["video_grid_thw"] for p in prompts]).to(device)
    out = inner.get_video_features(pv, grid, return_dict=True)
    deep = getattr(out, "deepstack_features", None)  # [layer][video] -> [video][layer]
    deep = list(zip(*deep, strict=True)) if deep else [None] * len(prompts)
    return list(out.pooler_output), deep


def _audio_features(inner, prompts: list[PromptInputs], device) -> list[torch.Tensor]:
    from emorl.models.qwen_omni import pad_audio_features

    x, m = pad_audio_features(prompts)
    out = inner.get_audio_features(x.to(device), m.to(device), return_dict=True).last_hidden_state
    # each prompt's share is its number of audio placeholders (the processor computed it with the
    # family's own length formula)
    n_tokens = [int((p.input_ids == inner.config.audio_token_id).sum()) for p in prompts]
    if sum(n_tokens) != out.shape[0]:
        raise ValueError(f"audio tower gave {out.shape[0]} features for {sum(n_tokens)} audio placeholder tokens")
    return list(torch.split(out, n_tokens))


def _run_encoders(inner, prompts: list[PromptInputs], device) -> list[MediaEmbeds]:
    """Each tower once over all ``prompts`` (batched), split back per prompt. A frozen tower runs
    under no_grad (no graph even if gradient checkpointing hooked its input to require grad); a
    trainable one builds its graph when grad is enabled."""
    mod = _modality(prompts)
    grad = torch.is_grad_enabled()
    video = audio = deep = [None] * len(prompts)
    if mod.has_video:
        with torch.set_grad_enabled(grad and _trainable(inner.visual)):
            video, deep = _video_features(inner, prompts, device)
    if mod.has_audio:
        with torch.set_grad_enabled(grad and _trainable(inner.audio_tower)):
            audio = _audio_features(inner, prompts, device)
    return [MediaEmbeds(v, a, d) for v, a, d in zip(video, audio, deep)]


def encode_media(adapter, prompts: list[PromptInputs], *, cache: EncoderCache | None = None) -> list[MediaEmbeds]:
    """Encoder outputs for ``prompts`` (aligned with the list; a prompt object listed twice is
    encoded once). Frozen towers run under ``no_grad``; ``cache`` is used for a modality when
    every tower it needs is frozen. Trainable towers run with autograd when grad is enabled and
    never use the cache, since their outputs change every step."""
    _, inner, _ = _parts(adapter)
    train_v, train_a = _trainable(inner.visual), _trainable(inner.audio_tower)
    media: dict[int, MediaEmbeds] = {}
    by_mod: dict[Modality, list[PromptInputs]] = {}
    for p in _distinct(prompts):
        if p.modality != Modality.TEXT:
            by_mod.setdefault(p.modality, []).append(p)
    for mod, batch in by_mod.items():
        frozen = not ((mod.has_video and train_v) or (mod.has_audio and train_a))
        store = cache if frozen else None
        keys = [store.key(p, adapter.model) for p in batch] if store is not None else [None] * len(batch)
        missing = []
        for p, k in zip(batch, keys):
            hit = store.get(k, adapter.device) if store is not None else None
            if hit is None:
                missing.append((p, k))
            else:
                media[id(p)] = hit
        if not missing:
            continue
        out = _run_encoders(inner, [p for p, _ in missing], adapter.device)
        for (p, k), m in zip(missing, out):
            media[id(p)] = m
            if store is not None:
                store.put(k, m)
    return [media.get(id(p), MediaEmbeds()) for p in prompts]


def embed_inputs(adapter, ids: torch.Tensor, row_media: list[MediaEmbeds],
                 media_region: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """Token embeddings of ``ids`` (B, S) with each row's media scattered into its placeholder
    tokens, as the thinker's ``forward`` does (masked_scatter in row-major order), and the extra
    keyword arguments of the text model: for Qwen3-Omni with video, ``visual_pos_masks`` (B, S)
    and ``deepstack_visual_embeds`` (one (n_video_tokens, H) per layer, rows in order); else none.
    ``media_region`` (B, S) bool limits the placeholders to the prompt part of packed rows."""
    _, inner, _ = _parts(adapter)
    emb = inner.get_input_embeddings()(ids)
    cfg = inner.config
    masks: dict[str, torch.Tensor] = {}
    for name, token_id in (("audio", cfg.audio_token_id), ("video", cfg.video_token_id)):
        parts = [getattr(m, name) for m in row_media if getattr(m, name) is not None]
        mask = masks[name] = ids == token_id
        if media_region is not None:
            mask &= media_region
        n = int(mask.sum())
        if not parts:
            if n:
                raise ValueError(f"{n} {name} placeholder tokens but no {name} features")
            continue
        feats = torch.cat(parts).to(emb.device, emb.dtype)
        if feats.shape[0] != n:
            raise ValueError(f"{name} features and placeholder tokens do not match: {feats.shape[0]} vs {n}")
        emb = emb.masked_scatter(mask.unsqueeze(-1), feats)
    deep = [m.deepstack for m in row_media if m.deepstack is not None]
    if not deep:
        return emb, {}
    # Qwen3-Omni: added to the first layers' outputs at the video positions
    return emb, {"visual_pos_masks": masks["video"],
                 "deepstack_visual_embeds": [torch.cat(layer).to(emb.device, emb.dtype) for layer in zip(*deep)]}


def rope_positions(adapter, ids: torch.Tensor, att: torch.Tensor,
                   prompts: list[PromptInputs]) -> tuple[torch.Tensor, torch.Tensor]:
    """TMRoPE positions (3, B, S) and rope deltas (B, 1) of rows ``ids`` whose media are those of
    ``prompts`` (one per row), from ``get_rope_index`` with grids, seconds per grid and audio lengths."""
    mod = _modality(prompts)
    grid = spg = alen = None
    if mod.has_video:
        grid = torch.cat([p.mm["video_grid_thw"] for p in prompts]).to(ids.device)
        spg = torch.cat([p.mm["video_second_per_grid"] for p in prompts]).to(ids.device)
    if mod.has_audio:
        alen = torch.tensor([p.mm["input_features"].shape[-1] for p in prompts], device=ids.device)
    return adapter.model.get_rope_index(ids, None, grid, att, mod == Modality.AV, alen, spg)


def _prompt_positions(adapter, p: PromptInputs) -> torch.Tensor:
    ids = p.input_ids.unsqueeze(0)
    pos, _ = rope_positions(adapter, ids, torch.ones_like(ids), [p])
    return pos[:, 0]  # (3, P)


# ---------------------------------------------------------------------------------------- scoring
def _runs(prompts: list[PromptInputs]) -> list[tuple[PromptInputs, list[int]]]:
    """Maximal runs of consecutive rows that share one prompt object: (prompt, row indices)."""
    runs: list[tuple[PromptInputs, list[int]]] = []
    for i, p in enumerate(prompts):
        if runs and runs[-1][0] is p:
            runs[-1][1].append(i)
        else:
            runs.append((p, [i]))
    return runs


def shared_prefix_logprobs(adapter, prompts: list[PromptInputs], completions: list[torch.Tensor], *,
                           temperature: float = 1.0, with_entropy: bool = False, cache: EncoderCache | None = None):
    """Drop-in for ``QwenOmniAdapter.completion_logprobs`` that runs each prompt once per group.

    Consecutive rows holding the same prompt *object* form a group, packed as one sequence
    [prompt | c1 | ... | cG] (right-padded across groups) with a 4-D additive mask: completion g
    attends to the whole prompt and causally to itself, never to other completions. The prompt's
    positions come from ``get_rope_index``; completion tokens get prompt max + 1 + k on all three
    TMRoPE axes, exactly as in the row [prompt | completion]. Rows not sharing a prompt object
    still work (groups of one). Returns (logps (B, Lc), mask (B, Lc), entropy or None), rows in
    input order.
    """
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    thinker, _, lm = _parts(adapter)
    if lm.config._attn_implementation not in ("eager", "sdpa"):
        raise NotImplementedError("shared-prefix packing needs a 4-D mask (eager or sdpa attention), "
                                  f"not {lm.config._attn_implementation}")
    _modality(prompts)
    dev = adapter.device
    runs = _runs(prompts)
    b, lc_max = len(prompts), max(len(c) for c in completions)
    seq_lens = [p.length + sum(len(completions[i]) for i in rows) for p, rows in runs]
    j_n, s_max = len(runs), max(seq_lens)
    ids = torch.full((j_n, s_max), adapter.pad_id, dtype=torch.long)
    seg = torch.full((j_n, s_max), -1, dtype=torch.long)  # -1 pad, 0 prompt, g+1 completion g
    prompt_pos = [_prompt_positions(adapter, p) for p, _ in runs]
    # Qwen3-Omni's positions are fractional where seconds per grid x positions per second is
    # (float); Qwen2.5-Omni's are integers. Either way they are kept as get_rope_index gives them.
    pos = torch.zeros((3, j_n, s_max), dtype=prompt_pos[0].dtype)
    src = torch.zeros((b, lc_max), dtype=torch.long)  # flat index j*s_max+t of the hidden state predicting each token
    tgt = torch.full((b, lc_max), adapter.pad_id, dtype=torch.long)
    mask = torch.zeros((b, lc_max))
    for j, (p, rows) in enumerate(runs):
        n_p = p.length
        ids[j, :n_p] = p.input_ids
        seg[j, :n_p] = 0
        pp = prompt_pos[j]
        pos[:, j, :n_p] = pp
        nxt = pp.max() + 1
        off = n_p
        for g, i in enumerate(rows):
            c = completions[i].to("cpu")
            n_c = len(c)
            ids[j, off : off + n_c] = c
            seg[j, off : off + n_c] = g + 1
            pos[:, j, off : off + n_c] = nxt + torch.arange(n_c)
            if n_c:
                src[i, :n_c] = j * s_max + torch.cat([torch.tensor([n_p - 1]), torch.arange(off, off + n_c - 1)])
            tgt[i, :n_c] = c
            mask[i, :n_c] = 1
            off += n_c
    ids, seg, pos = ids.to(dev), seg.to(dev), pos.to(dev)
    media = encode_media(adapter, [p for p, _ in runs], cache=cache)
    emb, extra = embed_inputs(adapter, ids, media, media_region=seg == 0)
    q = torch.arange(s_max, device=dev)
    allowed = (q[None, None, :] <= q[None, :, None]) & (seg[:, None, :] >= 0)
    allowed &= (seg[:, None, :] == 0) | (seg[:, None, :] == seg[:, :, None])
    allowed |= torch.eye(s_max, dtype=torch.bool, device=dev)  # pad queries see themselves: no empty rows
    mask4 = torch.zeros(allowed.shape, dtype=emb.dtype, device=dev).masked_fill_(~allowed, torch.finfo(emb.dtype).min)
    hidden = lm(inputs_embeds=emb, attention_mask=mask4.unsqueeze(1), position_ids=pos,
                use_cache=False, **extra).last_hidden_state
    h = hidden.reshape(-1, hidden.shape[-1])[src.to(dev).reshape(-1)].reshape(b, lc_max, -1)
    logits = thinker.lm_head(h).float() / temperature
    logp_all = F.log_softmax(logits, dim=-1)
    logps = logp_all.gather(-1, tgt.to(dev).unsqueeze(-1)).squeeze(-1)
    ent = -(logp_all.exp() * logp_all).sum(-1).detach() if with_entropy else None
    return logps, mask.to(dev), ent


# ---------------------------------------------------------------------------------------- sampling
def _logits_processors(thinker, adapter, params: SamplingParams, prompt_len: int, att: torch.Tensor):
    """The processors ``generate`` builds for ``QwenOmniAdapter.sample_groups``'s arguments
    (suppress, temperature, top-k, top-p, plus anything in the model's generation_config)."""
    kw = dict(max_new_tokens=params.max_new_tokens, do_sample=not params.greedy,
              suppress_tokens=adapter.suppress, eos_token_id=adapter.eos_id, pad_token_id=adapter.pad_id)
    if not params.greedy:
        kw.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k)
    cfg, _ = thinker._prepare_generation_config(None, **kw)
    return thinker._get_logits_processor(generation_config=cfg, input_ids_seq_length=prompt_len, device=att.device,
                                         model_kwargs={"attention_mask": att}), cfg


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
        raise ValueError(f"group decode attention takes one token per row and whole groups: query "
                         f"{tuple(query.shape)}, key {tuple(key.shape)}")
    g, rep = rows // n, hq // hkv
    q = query.reshape(n, g, hkv, rep, d).transpose(1, 2).reshape(n, hkv, g * rep, d)
    out = F.scaled_dot_product_attention(q, key, value, attn_mask=attention_mask, scale=scaling)
    return out.reshape(n, hkv, g, rep, d).transpose(1, 2).reshape(rows, 1, hq, d), None


AttentionInterface.register(GROUP_ATTENTION, group_decode_attention)


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


def _weights_key(thinker) -> tuple:
    """Where the thinker's weights live: a captured graph reads them at these addresses, so any
    change (a re-gather, a dtype or device move) must recapture. In-place updates keep them."""
    return tuple(t.data_ptr() for t in (*thinker.parameters(), *thinker.buffers()))


def _routed_experts(lm) -> bool:
    """Whether the text model routes tokens to experts (Qwen3-Omni's MoE layers)."""
    return getattr(lm.config, "num_experts", 0) > 0


def _decoder_key(thinker, n: int, g: int, p_slots: int, steps: int, graph: bool, pos_dtype: torch.dtype) -> tuple:
    """What a cached ``GroupDecoder`` must match to be reused (weight addresses only for a graph)."""
    return n, g, p_slots, steps, graph, pos_dtype, _weights_key(thinker) if graph else None


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

    A decoder is built for (N, g, prompt slots, steps, position dtype, weights) and reused by later
    rollouts with the same key (``decoder_for``): the graph is captured once per run, not once per
    rollout.
    ``start`` loads a rollout's prefill; ``step(next_ids)`` feeds (N*g,) tokens and returns
    (N*g, V) float32 logits. Eager and graph steps run the same code."""

    def __init__(self, adapter, n: int, g: int, p_slots: int, steps: int, *, graph: bool = False,
                 pos_dtype: torch.dtype = torch.long):
        thinker, _, lm = _parts(adapter)
        self._thinker = weakref.ref(thinker)  # the decoder is cached per thinker and must not keep it alive
        cfg = lm.config
        if any(t != "full_attention" for t in getattr(cfg, "layer_types", None) or ()) or \
                getattr(cfg, "use_sliding_window", False):
            raise NotImplementedError("the group decoder supports full attention only (sliding-window layers found "
                                      f"in {type(lm).__name__}'s config)")
        dev, dtype = adapter.device, lm.get_input_embeddings().weight.dtype
        if graph and _routed_experts(lm):
            raise NotImplementedError("CUDA graph decoding is not supported for thinkers with routed experts "
                                      f"({type(lm).__name__}): which tokens reach which expert changes every step, "
                                      "and no capture of it has been verified; use sampling.decode=static")
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
        self.pos = torch.zeros(3, n * g, 1, dtype=pos_dtype, device=dev)  # float for Qwen3-Omni (fractional)
        self.key = _decoder_key(thinker, n, g, p_slots, steps, graph, pos_dtype)
        self.graph = self.logits = None
        self.t = 0

    def start(self, prefill, att: torch.Tensor, step_pos: torch.Tensor) -> None:
        """Load a rollout: ``prefill`` the (N, Hkv, P, D)-per-layer cache of the N prompts (not
        repeated), ``att`` their (N, P) attention mask, ``step_pos`` (3, N*g, 1) the TMRoPE
        position of each row's last prompt token."""
        p = att.shape[1]
        if p > self.p_slots:
            raise ValueError(f"prompt of {p} tokens does not fit this decoder's {self.p_slots} slots")
        if step_pos.dtype != self.pos.dtype:
            raise ValueError(f"positions of dtype {step_pos.dtype}, this decoder holds {self.pos.dtype}")
        for buf, src in zip((*self.kv.keys, *self.kv.values),
                            (*(lay.keys for lay in prefill.layers), *(lay.values for lay in prefill.layers)),
                            strict=True):
            buf[:, :, :p].copy_(src)
        self.mask.fill_(self.blocked)
        self.mask[..., :p] = torch.where(att.bool(), 0.0, self.blocked)[:, None, None, None, :]
        self.pos.copy_(step_pos)
        self.t = 0

    def _forward(self, thinker) -> torch.Tensor:
        n, _, g, rep, width = self.mask.shape
        lm = thinker.model.language_model
        emb = lm.get_input_embeddings()(self.ids)
        # a 4-D mask is used as given by both families' text models (no causal mask built)
        hidden = lm(inputs_embeds=emb, attention_mask=self.mask.view(n, 1, g * rep, width),
                    position_ids=self.pos, past_key_values=self.kv, use_cache=True).last_hidden_state[:, -1]
        return thinker.lm_head(hidden).float()

    def step(self, next_ids: torch.Tensor) -> torch.Tensor:
        """Feed (N*g,) token ids at each row's next slot; returns (N*g, V) float32 logits."""
        if self.t >= self.steps:
            raise ValueError(f"this decoder holds {self.steps} steps")
        self.ids.copy_(next_ids[:, None])
        self.kv.at.copy_(self.row_slots + self.t)
        self.mask[:, 0, self.rows, :, self.row_slots + self.t] = 0.0
        self.pos.add_(1)
        self.t += 1
        thinker = self._thinker()
        with _attention(thinker.model.language_model.config, GROUP_ATTENTION):
            if not self.use_graph:
                return self._forward(thinker)
            if self.graph is None:  # warm up on a side stream (the KV it writes is rewritten by the replay)
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    for _ in range(2):
                        self._forward(thinker)
                torch.cuda.current_stream().wait_stream(side)
                self.graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(self.graph):
                    self.logits = self._forward(thinker)
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


_DECODERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # thinker -> its last GroupDecoder


def decoder_for(adapter, n: int, g: int, prompt_len: int, steps: int, *, graph: bool,
                pos_dtype: torch.dtype = torch.long) -> GroupDecoder:
    """The thinker's ``GroupDecoder`` for this shape, reused while the key (N, g, prompt slots,
    steps, graph, position dtype, weight addresses) holds; otherwise the old one is dropped (its
    buffers and graph freed) and a new one built. Prompt slots are ``prompt_len`` rounded up to ``PROMPT_BUCKET``."""
    thinker = adapter.model
    p_slots = -(-prompt_len // PROMPT_BUCKET) * PROMPT_BUCKET
    old = _DECODERS.get(thinker)
    if old is not None and old.key == _decoder_key(thinker, n, g, p_slots, steps, graph, pos_dtype):
        return old
    _DECODERS.pop(thinker, None)
    del old
    _DECODERS[thinker] = GroupDecoder(adapter, n, g, p_slots, steps, graph=graph, pos_dtype=pos_dtype)
    return _DECODERS[thinker]


def release_decoder(adapter) -> None:
    """Frees the thinker's cached ``GroupDecoder`` (its KV buffers and CUDA graph)."""
    _DECODERS.pop(adapter.model, None)


def resolve_decode(adapter, group_size: int, decode: str = "auto") -> str:
    """The decoder ``sample_groups_shared`` uses for ``decode`` (``auto`` resolved as documented there)."""
    if decode == "auto":
        from torch.distributed.fsdp import FSDPModule

        if isinstance(adapter.model, FSDPModule):
            return "dynamic"
        if adapter.device.type == "cuda":
            return "static" if _routed_experts(_parts(adapter)[2]) else "graph"
        return "static" if group_size > 1 else "dynamic"
    if decode not in DECODE_MODES:
        raise ValueError(f"decode must be one of auto, {', '.join(DECODE_MODES)}, got {decode!r}")
    return decode


@torch.no_grad()
def sample_groups_shared(adapter, prompts: list[PromptInputs], group_size: int, params: SamplingParams, *,
                         cache: EncoderCache | None = None, decode: str = "dynamic") -> Completions:
    """``adapter.sample_groups`` with one encode and one prefill per prompt.

    The N prompts are left-padded and prefilled once (the LM head only at the last position);
    the logits, attention mask and positions (and, for ``dynamic``, the KV cache) are then repeated
    G times along the batch (row order prompt-major, as in the duplicated path) and N*G rows are decoded with the same
    logits processors, EOS/pad handling and TMRoPE decode positions (last prompt position + 1 + t
    on all axes) as ``generate``. Greedy decoding gives the duplicated path's tokens; sampling
    draws from the same distribution (and, with the same global seed, the same multinomial
    calls on (N*G, V) scores).

    ``decode``: ``dynamic`` (a growing cache repeated G times, as ``generate``), ``static``
    (``GroupDecoder``: each prompt's KV once, fixed shapes; reused by the next rollout of the same
    shape), ``graph`` (the group decoder replayed as a CUDA graph; CUDA only, dense thinkers) or
    ``auto``: ``dynamic`` for an FSDP2-sharded model (whose hooks a graph cannot capture), else
    ``graph`` on CUDA (``static`` for a thinker with routed experts, Qwen3-Omni), else ``static``
    for groups (G > 1: the prompt's KV is read once for the group; 16-20 % faster rollouts on CPU,
    docs/benchmarks.md) and ``dynamic`` for single rows.
    """
    decode = resolve_decode(adapter, group_size, decode)
    from transformers import DynamicCache

    thinker, _, lm = _parts(adapter)
    _modality(prompts)
    g = group_size
    dev = adapter.device
    p_len = max(p.length for p in prompts)
    ids = torch.full((len(prompts), p_len), adapter.pad_id, dtype=torch.long)
    att = torch.zeros((len(prompts), p_len), dtype=torch.long)
    for i, p in enumerate(prompts):  # left padding, as generate gets it
        ids[i, p_len - p.length :] = p.input_ids
        att[i, p_len - p.length :] = 1
    ids, att = ids.to(dev), att.to(dev)
    was_training = thinker.training
    thinker.eval()
    try:
        pos, _ = rope_positions(adapter, ids, att, prompts)
        emb, extra = embed_inputs(adapter, ids, encode_media(adapter, prompts, cache=cache))
        kv = DynamicCache(config=lm.config)
        hidden = lm(inputs_embeds=emb, attention_mask=att, position_ids=pos, past_key_values=kv,
                    use_cache=True, **extra).last_hidden_state[:, -1]
        logits = thinker.lm_head(hidden).float().repeat_interleave(g, 0)
        seq = ids.repeat_interleave(g, 0)
        step_pos = pos[:, :, -1:].repeat_interleave(g, 1)
        decoder = None
        if decode != "dynamic" and params.max_new_tokens > 1:
            decoder = decoder_for(adapter, len(prompts), g, p_len, params.max_new_tokens - 1, graph=decode == "graph",
                                  pos_dtype=step_pos.dtype)
            decoder.start(kv, att, step_pos)
            del kv  # copied into the decoder's buffers, once per prompt
        else:
            kv.batch_repeat_interleave(g)
        att = att.repeat_interleave(g, 0)
        procs, gen_cfg = _logits_processors(thinker, adapter, params, p_len, att)
        unfinished = torch.ones(seq.shape[0], dtype=torch.bool, device=dev)
        embed = lm.get_input_embeddings()
        for t in range(params.max_new_tokens):
            scores = procs(seq, logits)
            if gen_cfg.do_sample:
                nxt = torch.multinomial(F.softmax(scores, dim=-1), num_samples=1).squeeze(1)
            else:
                nxt = torch.argmax(scores, dim=-1)
            nxt = torch.where(unfinished, nxt, torch.full_like(nxt, adapter.pad_id))
            seq = torch.cat([seq, nxt[:, None]], dim=-1)
            unfinished &= nxt != adapter.eos_id
            if t == params.max_new_tokens - 1 or not bool(unfinished.any()):
                break
            if decoder is not None:
                logits = decoder.step(nxt)
                continue
            att = torch.cat([att, att.new_ones(att.shape[0], 1)], dim=-1)
            step_pos = step_pos + 1
            hidden = lm(inputs_embeds=embed(nxt[:, None]), attention_mask=att, position_ids=step_pos,
                        past_key_values=kv, use_cache=True).last_hidden_state[:, -1]
            logits = thinker.lm_head(hidden).float()
    finally:
        thinker.train(was_training)
    new = seq[:, p_len:].cpu()
    out_ids, texts, trunc = [], [], []
    for row in new:
        hit = (row == adapter.eos_id).nonzero()
        end = int(hit[0]) + 1 if len(hit) else len(row)
        out_ids.append(row[:end].clone())
        trunc.append(not len(hit))
        texts.append(adapter.decode(row[:end]))
    return Completions(ids=[out_ids[i * g : (i + 1) * g] for i in range(len(prompts))],
                       texts=[texts[i * g : (i + 1) * g] for i in range(len(prompts))],
                       truncated=[trunc[i * g : (i + 1) * g] for i in range(len(prompts))])


# ---------------------------------------------------------------------------------------- cache
def encoder_fingerprint(model) -> str:
    """Identifies the frozen towers' weights: config, dtypes, shapes and per-tensor sums."""
    inner = model.model
    h = hashlib.blake2b(digest_size=16)
    for name in ("visual", "audio_tower"):
        tower = getattr(inner, name)
        h.update(json.dumps(tower.config.to_dict(), sort_keys=True, default=str).encode())
        with torch.no_grad():
            for pname, p in tower.state_dict().items():
                p = p.full_tensor() if hasattr(p, "full_tensor") else p  # FSDP2 shard -> whole tensor
                h.update(f"{name}.{pname}:{p.dtype}:{tuple(p.shape)}".encode())
                stats = torch.stack([p.double().sum(), p.double().abs().sum(), p.double().square().sum()])
                h.update(stats.cpu().numpy().tobytes())
    return h.hexdigest()


class EncoderCache:
    """Frozen-encoder outputs, reusable across the passes of a step and across epochs.

    Key: clip content (bytes, dtype and shape of every media tensor of the prompt, including grids
    and seconds per grid), ``settings`` (preprocessing: frame size, fps, sample count, processor
    revision... anything the caller passes) and the towers' weights (``encoder_fingerprint``). A
    change in any of them is a different key, so stale outputs are never returned. Entries live in
    an LRU dict of ``max_items`` (on ``memory_device``, default: where they were computed) and,
    with ``directory``, as ``<key>.pt`` files (CPU tensors) that a later process finds again.
    Only valid for frozen towers: ``encode_media`` bypasses the cache when they are trainable.
    The towers' fingerprint is computed once per model object; call ``refresh()`` after loading
    other weights into the same frozen towers in place.
    """

    def __init__(self, directory: str | Path | None = None, *, settings=None, max_items: int = 256,
                 memory_device: str | torch.device | None = None):
        self.directory = Path(directory) if directory is not None else None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        self.settings = json.dumps(settings if settings is not None else {}, sort_keys=True, default=str)
        self.max_items = max_items
        self.memory_device = memory_device
        self._mem: OrderedDict[str, MediaEmbeds] = OrderedDict()
        self._memo: dict[int, tuple[weakref.ref, str, str]] = {}  # id(prompt) -> (ref, fingerprint, key)
        self._fingerprints: dict[int, tuple[weakref.ref, str]] = {}
        self.hits = self.misses = 0

    def refresh(self) -> None:
        """Forget fingerprints and per-prompt keys (the entries stay; their keys still hold)."""
        self._fingerprints.clear()
        self._memo.clear()

    def fingerprint(self, model) -> str:
        got = self._fingerprints.get(id(model))
        if got is None or got[0]() is not model:
            got = (weakref.ref(model), encoder_fingerprint(model))
            self._fingerprints[id(model)] = got
        return got[1]

    def key(self, prompt: PromptInputs, model) -> str:
        """Content key of ``prompt``'s media for ``model``'s towers (hashed once per prompt object)."""
        fp = self.fingerprint(model)
        got = self._memo.get(id(prompt))
        if got is not None and got[0]() is prompt and got[1] == fp:
            return got[2]
        h = hashlib.blake2b(digest_size=20)
        h.update(self.settings.encode())
        h.update(fp.encode())
        h.update(prompt.modality.value.encode())
        for name in sorted(prompt.mm):
            t = prompt.mm[name].detach().contiguous().cpu()
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        key = h.hexdigest()
        if len(self._memo) > 4 * self.max_items:
            self._memo = {k: v for k, v in self._memo.items() if v[0]() is not None}
        self._memo[id(prompt)] = (weakref.ref(prompt), fp, key)
        return key

    def get(self, key: str, device=None) -> MediaEmbeds | None:
        m = self._mem.get(key)
        if m is not None:
            self._mem.move_to_end(key)
        elif self.directory is not None and (self.directory / f"{key}.pt").is_file():
            d = torch.load(self.directory / f"{key}.pt", map_location="cpu", weights_only=True)
            m = MediaEmbeds(d.get("video"), d.get("audio"), tuple(d["deepstack"]) if "deepstack" in d else None)
            self._remember(key, m)
        if m is None:
            self.misses += 1
            return None
        self.hits += 1
        return m if device is None else m.to(device)

    def put(self, key: str, media: MediaEmbeds) -> None:
        media = media.map(torch.Tensor.detach)
        self._remember(key, media)
        if self.directory is not None:
            path = self.directory / f"{key}.pt"
            tmp = path.with_suffix(".tmp")
            d = media.to("cpu")
            torch.save({k: v for k, v in (("video", d.video), ("audio", d.audio),
                                          ("deepstack", None if d.deepstack is None else list(d.deepstack)))
                        if v is not None}, tmp)
            tmp.replace(path)

    def _remember(self, key: str, media: MediaEmbeds) -> None:
        self._mem[key] = media if self.memory_device is None else media.to(self.memory_device)
        self._mem.move_to_end(key)
        while len(self._mem) > self.max_items:
            self._mem.popitem(last=False)

    def __len__(self) -> int:
        return len(self._mem)
