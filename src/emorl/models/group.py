"""Group-aware computation for any model family: a GRPO group's G completions share one prompt, so
its media are encoded once, its prompt is prefilled once, and its prompt tokens go through the
training and reference passes once.

Family-independent: everything model-specific is asked of the adapter (``OmniAdapter``'s
anatomy: ``encode_kind``, ``placeholder_ids``, ``decoder_extras``, ``prompt_positions``,
``text_model``, ``input_embeddings``, ``lm_head``). Three pieces, each exact against the family's
duplicated-rows paths (tests/unit/test_group_exact.py: equal log-probs and gradients in fp32,
token-equal greedy generations, for every registered family):

- ``encode_media``: each kind of media (video, audio, image) is encoded once per distinct prompt,
  by one batched call of the family's ``encode_kind``; ``embed_inputs`` scatters the outputs into
  the token embeddings at the family's placeholder tokens (row-major ``masked_scatter``) and asks
  the family for extra text-model arguments (Qwen3's deepstack features). Frozen encoders run
  under ``no_grad``; an optional ``EncoderCache`` keeps their outputs across passes and epochs.
- ``sample_groups_shared``: prefill the N distinct prompts once, then decode N*G rows with the
  same logits processors ``generate`` would use, either over the KV cache repeated G times along
  the batch (``dynamic``) or with ``GroupDecoder`` (emorl.models.decoder), which stores each
  prompt's KV once per group and reads it once per step for all G rows (``static``, ``graph``).
- ``shared_prefix_logprobs`` ("Prefix Grouper"): one packed sequence per group,
  [prompt | c1 | ... | cG], with a 4-D mask (each completion sees the prompt and itself, causally)
  and positions where every completion continues from the prompt's maximum position + 1.

Positions: the prompt's come from the family (``prompt_positions``, e.g. Qwen's M-RoPE index with
the media grids); generated tokens take max + 1 + t on every axis, as transformers' generation
does with its rope deltas.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F

from emorl.models.adapter import Completions, MediaEmbeds, Modality, PromptInputs, SamplingParams
from emorl.models.decoder import (  # noqa: F401  (re-exported: the group machinery's one import)
    DECODE_MODES,
    GROUP_ATTENTION,
    PROMPT_BUCKET,
    GroupDecoder,
    _routed_experts,
    _weights_key,
    cache_kwarg,
    decoder_for,
    group_decode_attention,
    release_decoder,
)
from emorl.models.encoder_cache import EncoderCache, encoder_fingerprint  # noqa: F401

ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa")  # the ones that take a 4-D additive mask as given


def supports(adapter) -> bool:
    """Whether these group-aware paths cover ``adapter`` (any family adapter whose text model runs
    eager or sdpa attention); callers fall back to the duplicated-rows paths otherwise."""
    text_model = getattr(adapter, "text_model", None)
    return text_model is not None and text_model().config._attn_implementation in ATTENTION_IMPLEMENTATIONS


def text_positions(pos: torch.Tensor) -> torch.Tensor:
    """Positions (A, B, S) as the text model takes them: (B, S) for plain 1-D positions (A = 1),
    as given for multi-axis ones (M-RoPE: A = 3)."""
    return pos[0] if pos.shape[0] == 1 else pos


def trainable(module) -> bool:
    return any(p.requires_grad for p in module.parameters())


@contextmanager
def grad_for(module):
    """Grad enabled inside only if it is enabled outside and ``module`` has a trainable
    parameter: a frozen encoder builds no graph even when gradient checkpointing hooked its input
    to require grad. Families run each encoder part under it in ``encode_kind``."""
    with torch.set_grad_enabled(torch.is_grad_enabled() and trainable(module)):
        yield


def kind_trainable(adapter, kind: str) -> bool:
    """Whether the embeddings of media ``kind`` depend on a trainable parameter."""
    return any(trainable(m) for m in adapter.kind_modules(kind))


def towers_frozen_split(adapter, kinds) -> bool:
    """Whether media of ``kinds`` encode as frozen towers then a separate projection: the family
    splits them (``tower_modules`` is not None) and no tower module is trainable."""
    mods = [adapter.tower_modules(k) for k in kinds]
    return all(m is not None for m in mods) and not any(trainable(x) for ms in mods for x in ms)


def _encode_split(adapter, batch: list[PromptInputs], kinds, cache: EncoderCache) -> list[MediaEmbeds]:
    """Frozen towers, trainable projectors: each prompt's tower features come from ``cache`` (keyed
    as the whole media, prefixed ``towers-``) or one ``encode_kind_towers`` call per kind for the
    missing ones; the projection (``project_kind``) runs every time, with autograd when enabled."""
    keys = ["towers-" + cache.key(p, adapter) for p in batch]
    feats = [cache.get(k, adapter.device) for k in keys]
    missing = [i for i, f in enumerate(feats) if f is None]
    if missing:
        got = [MediaEmbeds() for _ in missing]
        for kind in kinds:
            part = adapter.encode_kind_towers(kind, [batch[i] for i in missing])
            got = [a.merge(b) for a, b in zip(got, part, strict=True)]
        for i, m in zip(missing, got):
            feats[i] = m
            cache.put(keys[i], m)
    out = [MediaEmbeds() for _ in batch]
    for kind in kinds:
        out = [a.merge(b) for a, b in zip(out, adapter.project_kind(kind, batch, feats), strict=True)]
    return out


def _distinct(prompts: list[PromptInputs]) -> list[PromptInputs]:
    seen: dict[int, PromptInputs] = {}
    for p in prompts:
        seen.setdefault(id(p), p)
    return list(seen.values())


def check_modalities(adapter, prompts: list[PromptInputs]) -> None:
    """Refuses a prompt whose modality the family does not take, and a mixed batch where the
    family needs one modality per batch (``one_modality_per_batch``)."""
    mods = {p.modality for p in prompts}
    bad = sorted(m.value for m in mods if m not in adapter.modalities)
    if bad:
        raise ValueError(
            f"{adapter.family} takes {', '.join(m.value for m in adapter.modalities)} prompts, got {', '.join(bad)}"
        )
    if adapter.one_modality_per_batch and len(mods) > 1:
        raise ValueError(
            f"a batch must share one modality ({adapter.family} needs homogeneous batches), got "
            f"{sorted(m.value for m in mods)}"
        )


# ---------------------------------------------------------------------------------------- encoders
def encode_media(adapter, prompts: list[PromptInputs], *, cache: EncoderCache | None = None) -> list[MediaEmbeds]:
    """Encoder outputs for ``prompts`` (aligned with the list; a prompt object listed twice is
    encoded once). Prompts are batched per modality, and each media kind of that modality is
    encoded by one ``adapter.encode_kind`` call. ``cache`` is used for a modality when none of its
    kinds depends on a trainable parameter; trainable encoders run with autograd when grad is
    enabled and never use the cache, since their outputs change every step. A family whose
    projectors sit outside its towers (``tower_modules``) and train while the towers are frozen
    caches the tower features and projects them anew in every pass (``_encode_split``)."""
    media: dict[int, MediaEmbeds] = {}
    by_mod: dict[Modality, list[PromptInputs]] = {}
    for p in _distinct(prompts):
        if adapter.media_kinds(p.modality):
            by_mod.setdefault(p.modality, []).append(p)
    for mod, batch in by_mod.items():
        kinds = adapter.media_kinds(mod)
        store = cache if not any(kind_trainable(adapter, k) for k in kinds) else None
        if store is None and cache is not None and towers_frozen_split(adapter, kinds):
            for p, m in zip(batch, _encode_split(adapter, batch, kinds, cache), strict=True):
                media[id(p)] = m
            continue
        keys = [store.key(p, adapter) for p in batch] if store is not None else [None] * len(batch)
        missing = []
        for p, k in zip(batch, keys):
            hit = store.get(k, adapter.device) if store is not None else None
            if hit is None:
                missing.append((p, k))
            else:
                media[id(p)] = hit
        if not missing:
            continue
        out = [MediaEmbeds() for _ in missing]
        for kind in kinds:
            got = adapter.encode_kind(kind, [p for p, _ in missing])
            out = [a.merge(b) for a, b in zip(out, got, strict=True)]
        for (p, k), m in zip(missing, out):
            media[id(p)] = m
            if store is not None:
                store.put(k, m)
    return [media.get(id(p), MediaEmbeds()) for p in prompts]


def embed_inputs(
    adapter, ids: torch.Tensor, row_media: list[MediaEmbeds], media_region: torch.Tensor | None = None
) -> tuple[torch.Tensor, dict]:
    """Token embeddings of ``ids`` (B, S) with each row's media scattered into its placeholder
    tokens (per kind, ``masked_scatter`` in row-major order, as transformers' multimodal models do),
    and the text model's extra keyword arguments (``adapter.decoder_extras``).
    ``media_region`` (B, S) bool limits the placeholders to the prompt part of packed rows."""
    emb = adapter.input_embeddings()(ids)
    masks: dict[str, torch.Tensor] = {}
    for kind, token_id in adapter.placeholder_ids().items():
        parts = [m.get(kind) for m in row_media if m.get(kind) is not None]
        mask = masks[kind] = ids == token_id
        if media_region is not None:
            mask &= media_region
        n = int(mask.sum())
        if not parts:
            if n:
                raise ValueError(f"{n} {kind} placeholder tokens but no {kind} features")
            continue
        feats = torch.cat(parts).to(emb.device, emb.dtype)
        if feats.shape[0] != n:
            raise ValueError(f"{kind} features and placeholder tokens do not match: {feats.shape[0]} vs {n}")
        emb = emb.masked_scatter(mask.unsqueeze(-1), feats)
    return emb, adapter.decoder_extras(ids, masks, row_media)


def left_padded(adapter, prompts: list[PromptInputs]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The prompts left-padded as ``generate`` gets them: ids (N, P), attention mask (N, P) and
    positions (A, N, P) (the family's ``prompt_positions``; pad slots hold 1, masked anyway)."""
    p_len = max(p.length for p in prompts)
    ids = torch.full((len(prompts), p_len), adapter.pad_id, dtype=torch.long)
    att = torch.zeros((len(prompts), p_len), dtype=torch.long)
    per = [adapter.prompt_positions(p) for p in prompts]
    pos = torch.ones((per[0].shape[0], len(prompts), p_len), dtype=per[0].dtype)
    for i, (p, pp) in enumerate(zip(prompts, per)):
        ids[i, p_len - p.length :] = p.input_ids
        att[i, p_len - p.length :] = 1
        pos[:, i, p_len - p.length :] = pp
    return ids, att, pos


# ---------------------------------------------------------------------------------------- scoring
def group_rows(prompts: list[PromptInputs], groups: list[int] | None) -> list[tuple[PromptInputs, list[int]]]:
    """(prompt, row indices) per group, in order of first appearance. ``groups[i]`` is row i's
    group; rows of one group must hold the same prompt (checked: equal token ids and modality;
    the first row's media are used). ``groups=None``: every row is its own group."""
    if groups is None:
        return [(p, [i]) for i, p in enumerate(prompts)]
    if len(groups) != len(prompts):
        raise ValueError(f"{len(groups)} group ids for {len(prompts)} rows")
    out: dict[int, tuple[PromptInputs, list[int]]] = {}
    for i, (p, gid) in enumerate(zip(prompts, groups)):
        if gid not in out:
            out[gid] = (p, [i])
            continue
        first = out[gid][0]
        if p is not first and (p.modality != first.modality or not torch.equal(p.input_ids, first.input_ids)):
            raise ValueError(
                f"rows {out[gid][1][0]} and {i} are in group {gid} but hold different prompts "
                f"({first.key or 'unnamed'} vs {p.key or 'unnamed'})"
            )
        out[gid][1].append(i)
    return list(out.values())


def shared_prefix_logprobs(
    adapter,
    prompts: list[PromptInputs],
    completions: list[torch.Tensor],
    *,
    temperature: float = 1.0,
    with_entropy: bool = False,
    cache: EncoderCache | None = None,
    groups: list[int] | None = None,
):
    """Drop-in for an adapter's ``completion_logprobs`` that runs each group's prompt once.

    The rows of a group (``groups``, see ``group_rows``) are packed as one sequence
    [prompt | c1 | ... | cG] (right-padded across groups) with a 4-D additive mask: completion g
    attends to the whole prompt and causally to itself, never to other completions. The prompt's
    positions come from the family; completion tokens get the prompt's maximum + 1 + k on every
    axis, exactly as in the row [prompt | completion]. Returns (logps (B, Lc), mask (B, Lc),
    entropy or None), rows in input order.
    """
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    lm = adapter.text_model()
    if lm.config._attn_implementation not in ATTENTION_IMPLEMENTATIONS:
        raise NotImplementedError(
            f"shared-prefix packing needs a 4-D mask (eager or sdpa attention), not {lm.config._attn_implementation}"
        )
    check_modalities(adapter, prompts)
    dev = adapter.device
    runs = group_rows(prompts, groups)
    b, lc_max = len(prompts), max(len(c) for c in completions)
    seq_lens = [p.length + sum(len(completions[i]) for i in rows) for p, rows in runs]
    j_n, s_max = len(runs), max(seq_lens)
    ids = torch.full((j_n, s_max), adapter.pad_id, dtype=torch.long)
    seg = torch.full((j_n, s_max), -1, dtype=torch.long)  # -1 pad, 0 prompt, g+1 completion g
    prompt_pos = [adapter.prompt_positions(p) for p, _ in runs]
    # positions keep the family's dtype (Qwen3-Omni's are fractional floats)
    pos = torch.zeros((prompt_pos[0].shape[0], j_n, s_max), dtype=prompt_pos[0].dtype)
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
    hidden = lm(
        inputs_embeds=emb, attention_mask=mask4.unsqueeze(1), position_ids=text_positions(pos), use_cache=False, **extra
    ).last_hidden_state
    h = hidden.reshape(-1, hidden.shape[-1])[src.to(dev).reshape(-1)].reshape(b, lc_max, -1)
    logits = adapter.lm_head()(h).float() / temperature
    logp_all = F.log_softmax(logits, dim=-1)
    logps = logp_all.gather(-1, tgt.to(dev).unsqueeze(-1)).squeeze(-1)
    ent = -(logp_all.exp() * logp_all).sum(-1).detach() if with_entropy else None
    return logps, mask.to(dev), ent


# ---------------------------------------------------------------------------------------- sampling
def logits_processors(adapter, params: SamplingParams, prompt_len: int, att: torch.Tensor):
    """The processors ``generate`` builds for the adapter's sampling arguments (suppressed ids,
    temperature, top-k, top-p, plus anything in the model's generation_config), and that config."""
    kw = dict(
        max_new_tokens=params.max_new_tokens,
        do_sample=not params.greedy,
        suppress_tokens=adapter.suppress,
        eos_token_id=adapter.eos_id,
        pad_token_id=adapter.pad_id,
    )
    if not params.greedy:
        kw.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k)
    model = adapter.model
    cfg, _ = model._prepare_generation_config(None, **kw)
    return model._get_logits_processor(
        generation_config=cfg, input_ids_seq_length=prompt_len, device=att.device, model_kwargs={"attention_mask": att}
    ), cfg


def resolve_decode(adapter, group_size: int, decode: str = "auto") -> str:
    """The decoder ``sample_groups_shared`` uses for ``decode`` (``auto`` resolved as documented there)."""
    if decode == "auto":
        from torch.distributed.fsdp import FSDPModule

        if isinstance(adapter.model, FSDPModule):
            return "dynamic"
        if adapter.device.type == "cuda":
            return "static" if _routed_experts(adapter.text_model()) else "graph"
        return "static" if group_size > 1 else "dynamic"
    if decode not in DECODE_MODES:
        raise ValueError(f"decode must be one of auto, {', '.join(DECODE_MODES)}, got {decode!r}")
    return decode


def split_completions(adapter, new: torch.Tensor, n_prompts: int, g: int) -> Completions:
    """(N*G, T) generated ids (prompt-major rows) cut at each row's first EOS, as ``Completions``."""
    out_ids, texts, trunc = [], [], []
    for row in new:
        hit = (row == adapter.eos_id).nonzero()
        end = int(hit[0]) + 1 if len(hit) else len(row)
        out_ids.append(row[:end].clone())
        trunc.append(not len(hit))
        texts.append(adapter.decode(row[:end]))
    return Completions(
        ids=[out_ids[i * g : (i + 1) * g] for i in range(n_prompts)],
        texts=[texts[i * g : (i + 1) * g] for i in range(n_prompts)],
        truncated=[trunc[i * g : (i + 1) * g] for i in range(n_prompts)],
    )


@torch.no_grad()
def sample_groups_shared(
    adapter,
    prompts: list[PromptInputs],
    group_size: int,
    params: SamplingParams,
    *,
    cache: EncoderCache | None = None,
    decode: str = "dynamic",
) -> Completions:
    """``adapter.sample_groups`` with one encode and one prefill per prompt.

    The N prompts are left-padded and prefilled once (the LM head only at the last position);
    the logits, attention mask and positions (and, for ``dynamic``, the KV cache) are then repeated
    G times along the batch (row order prompt-major, as in the duplicated path) and N*G rows are
    decoded with the same logits processors, EOS/pad handling and decode positions (the prompt's
    maximum position + 1 + t on every axis) as ``generate``. Greedy decoding gives the duplicated
    path's tokens; sampling draws from the same distribution (and, with the same global seed, the
    same multinomial calls on (N*G, V) scores).

    ``decode``: ``dynamic`` (a growing cache repeated G times, as ``generate``), ``static``
    (``GroupDecoder``: each prompt's KV once, fixed shapes; reused by the next rollout of the same
    shape), ``graph`` (the group decoder replayed as a CUDA graph; CUDA only, dense text models) or
    ``auto``: ``dynamic`` for an FSDP2-sharded model (whose hooks a graph cannot capture), else
    ``graph`` on CUDA (``static`` for a text model with routed experts, e.g. Qwen3-Omni), else
    ``static`` for groups (G > 1: the prompt's KV is read once for the group; 16-20 % faster
    rollouts on CPU, docs/benchmarks.md) and ``dynamic`` for single rows.
    """
    decode = resolve_decode(adapter, group_size, decode)
    from transformers import DynamicCache

    model, lm, head = adapter.model, adapter.text_model(), adapter.lm_head()
    check_modalities(adapter, prompts)
    g = group_size
    dev = adapter.device
    ids, att, pos = left_padded(adapter, prompts)
    p_len = ids.shape[1]
    ids, att, pos = ids.to(dev), att.to(dev), pos.to(dev)
    was_training = model.training
    model.eval()
    try:
        emb, extra = embed_inputs(adapter, ids, encode_media(adapter, prompts, cache=cache))
        kv = DynamicCache(config=lm.config)
        hidden = lm(
            inputs_embeds=emb,
            attention_mask=att,
            position_ids=text_positions(pos),
            use_cache=True,
            **cache_kwarg(lm, kv),
            **extra,
        ).last_hidden_state[:, -1]
        logits = head(hidden).float().repeat_interleave(g, 0)
        seq = ids.repeat_interleave(g, 0)
        # each row's decode positions continue from its prompt's maximum position, on every axis
        low = torch.finfo(pos.dtype).min if pos.is_floating_point() else torch.iinfo(pos.dtype).min
        top = pos.masked_fill(~att.bool()[None], low).amax(dim=(0, 2))  # (N,)
        step_pos = top[None, :, None].expand(pos.shape[0], -1, 1).repeat_interleave(g, 1).contiguous()
        decoder = None
        if decode != "dynamic" and params.max_new_tokens > 1:
            decoder = decoder_for(
                adapter,
                len(prompts),
                g,
                p_len,
                params.max_new_tokens - 1,
                graph=decode == "graph",
                pos_dtype=step_pos.dtype,
                pos_axes=step_pos.shape[0],
            )
            decoder.start(kv, att, step_pos)
            del kv  # copied into the decoder's buffers, once per prompt
        else:
            kv.batch_repeat_interleave(g)
        att = att.repeat_interleave(g, 0)
        procs, gen_cfg = logits_processors(adapter, params, p_len, att)
        unfinished = torch.ones(seq.shape[0], dtype=torch.bool, device=dev)
        embed = adapter.input_embeddings()
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
            hidden = lm(
                inputs_embeds=embed(nxt[:, None]),
                attention_mask=att,
                position_ids=text_positions(step_pos),
                use_cache=True,
                **cache_kwarg(lm, kv),
            ).last_hidden_state[:, -1]
            logits = head(hidden).float()
    finally:
        model.train(was_training)
    return split_completions(adapter, seq[:, p_len:].cpu(), len(prompts), g)
