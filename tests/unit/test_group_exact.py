"""Group-aware paths (emorl.models.group) equal each family's duplicated-rows paths on tiny models
of every registered family in fp32: token-equal greedy generations, equal completion log-probs,
entropies and gradients of every trainable parameter, under each media condition the family
takes (video+audio with audio interleaved, video only, audio only); plus the frozen-encoder
cache's keys and invalidation."""

import copy
import gc
import warnings
import weakref

import pytest
import torch
import transformers.generation.logits_process as lp
from family_helpers import FAMILY_MODALITIES
from media_helpers import encode_clips

from emorl.models import decoder, group
from emorl.models.adapter import MediaEmbeds, Modality, SamplingParams
from emorl.models.registry import load_adapter

_prompts = encode_clips


@pytest.fixture(scope="module")
def adapter_of(tiny_dir_of):
    """``adapter_of(family)``: one loaded tiny adapter per family for the module."""
    cache: dict = {}

    def get(family):
        if family not in cache:
            torch.manual_seed(0)
            cache[family] = load_adapter(tiny_dir_of(family))
        return cache[family]

    return get


@pytest.fixture(scope="module")
def adapter(model_dir):
    torch.manual_seed(0)
    return load_adapter(model_dir)


def _media_modality(ad) -> Modality:
    """The richest media condition the family takes."""
    return next(m for m in (Modality.AV, Modality.VIDEO, Modality.AUDIO) if m in ad.modalities)


def _frozen(ad):
    """Towers frozen (projectors outside them, where a family has some, stay trainable)."""
    for tower in ad.towers().values():
        tower.requires_grad_(False)
    return ad


def _frozen_encoders(ad):
    """Everything that makes media embeddings frozen: towers and projectors (the encoder cache's case)."""
    for m in ad.encoder_modules():
        m.requires_grad_(False)
    return ad


def _completions(adapter, n_rows, seed=0):
    """Random ordinary tokens of varied lengths, some ending with EOS."""
    g = torch.Generator().manual_seed(seed)
    ok = torch.tensor(sorted(set(range(len(adapter.tokenizer))) - set(adapter.suppress) - {adapter.eos_id}))
    out = []
    for i in range(n_rows):
        c = ok[torch.randint(len(ok), (1 + (5 * i + 3) % 11,), generator=g)]
        out.append(torch.cat([c, torch.tensor([adapter.eos_id])]) if i % 2 else c)
    return out


def _staggered_stop(comps) -> int:
    """A token of these greedy rows that, made the EOS, stops them at different lengths."""
    rows = [c.tolist() for cs in comps.ids for c in cs]
    for tok in dict.fromkeys(t for r in rows for t in r):
        if len({r.index(tok) if tok in r else len(r) for r in rows}) > 1:
            return tok
    raise AssertionError("all greedy rows are equal: no token stops them at different lengths")


def _same(a, b):
    return [x.tolist() for xs in a.ids for x in xs] == [x.tolist() for xs in b.ids for x in xs]


@pytest.mark.parametrize("family, modality", FAMILY_MODALITIES)
def test_greedy_generation_equals_duplicated_rows(adapter_of, clips, family, modality):
    adapter = adapter_of(family)
    prompts = _prompts(adapter, clips, Modality(modality))
    greedy = SamplingParams(max_new_tokens=10, greedy=True)
    dup = adapter.sample_groups_rows(prompts, 3, greedy)
    shared = group.sample_groups_shared(adapter, prompts, 3, greedy)
    static = group.sample_groups_shared(adapter, prompts, 3, greedy, decode="static")
    assert _same(dup, shared) and dup.texts == shared.texts and dup.truncated == shared.truncated
    assert _same(dup, static) and dup.truncated == static.truncated  # fixed-shape cache and 4-D mask
    # rows stopping at different steps: make a token that greedy emits mid-way the EOS
    stop = copy.copy(adapter)
    stop.eos_id = _staggered_stop(dup)
    dup, shared = stop.sample_groups_rows(prompts, 3, greedy), group.sample_groups_shared(stop, prompts, 3, greedy)
    static = group.sample_groups_shared(stop, prompts, 3, greedy, decode="static")
    assert len({len(c) for cs in dup.ids for c in cs}) > 1
    assert _same(dup, shared) and dup.truncated == shared.truncated
    assert _same(dup, static) and dup.truncated == static.truncated


def test_cache_argument_is_the_forwards_own_name():
    """``cache_kwarg`` passes the KV cache as ``cache`` only to a forward that names it, never
    into a ``**kwargs`` that would drop it."""

    class Renamed(torch.nn.Module):
        def forward(self, inputs_embeds=None, cache=None, **kwargs): ...

    class Old(torch.nn.Module):
        def forward(self, inputs_embeds=None, past_key_values=None, **kwargs): ...

    kv = object()
    assert decoder.cache_kwarg(Renamed(), kv) == {"cache": kv}
    assert decoder.cache_kwarg(Old(), kv) == {"past_key_values": kv}


@pytest.mark.parametrize("family, modality", FAMILY_MODALITIES)
def test_decoding_raises_no_deprecation_of_the_cache_argument(adapter_of, clips, family, modality):
    """transformers 5.24 renamed the text models' ``past_key_values`` to ``cache`` and warns on every
    call with the old name: the decoders (growing cache and static) must use the model's own name."""
    adapter = adapter_of(family)
    prompts = _prompts(adapter, clips, Modality(modality))
    greedy = SamplingParams(max_new_tokens=3, greedy=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for mode in ("dynamic", "static"):
            group.sample_groups_shared(adapter, prompts, 2, greedy, decode=mode)
    assert not [w for w in caught if "past_key_values" in str(w.message)]


def test_static_decoder_logits_equal_dynamic(adapter, clips):
    """The static decoder's logits at every step equal the growing-cache decoder's (fp32, 1e-5),
    with prompts of different lengths (left padding masked in the 4-D mask)."""
    prompts = _prompts(adapter, clips, _media_modality(adapter))
    assert len({p.length for p in prompts}) > 1
    _assert_step_logits_equal(adapter, prompts, 2)


def _step_logits(adapter, prompts, g, mode, steps=6):
    """The (N*g, V) logits of every decode step, as the logits processors receive them."""
    calls = []
    orig = lp.LogitsProcessorList.__call__

    def record(self, input_ids, scores, **kw):
        calls.append(scores.detach().clone())
        return orig(self, input_ids, scores, **kw)

    lp.LogitsProcessorList.__call__ = record
    try:
        group.sample_groups_shared(adapter, prompts, g, SamplingParams(max_new_tokens=steps, greedy=True), decode=mode)
    finally:
        lp.LogitsProcessorList.__call__ = orig
    return calls


def _assert_step_logits_equal(adapter, prompts, g):
    dynamic, static = _step_logits(adapter, prompts, g, "dynamic"), _step_logits(adapter, prompts, g, "static")
    assert len(dynamic) == len(static) == 6
    for a, b in zip(dynamic, static):
        assert float((a - b).abs().max()) <= 1e-5


def test_group_decode_attention_equals_attention_over_each_rows_own_cache():
    """``group_decode_attention`` over [prompt once | row 1's tokens | ... | row g's tokens] per
    group equals softmax attention of each row over its own (unpadded prompt + own tokens) KV,
    computed here in float64 from the definition: GQA with 3 query heads per KV head, one prompt
    left-padded by two positions, rows that have generated 1..4 tokens."""
    gen = torch.Generator().manual_seed(0)
    n, g, hkv, rep, d, p, t = 2, 3, 2, 3, 8, 5, 4
    q = torch.randn(n * g, hkv * rep, 1, d, generator=gen)
    pk, pv = torch.randn(2, n, hkv, p, d, generator=gen)
    tk, tv = torch.randn(2, n * g, hkv, t, d, generator=gen)
    prompt_ok = torch.ones(n, p, dtype=torch.bool)
    prompt_ok[1, :2] = False
    seen = [1 + r % t for r in range(n * g)]
    width = p + g * t
    keys, values = torch.zeros(2, n, hkv, width, d)
    mask = torch.zeros(n, 1, g, rep, width, dtype=torch.bool)
    keys[:, :, :p], values[:, :, :p] = pk, pv
    mask[..., :p] = prompt_ok[:, None, None, None]
    for r in range(n * g):
        i, j = divmod(r, g)
        keys[i, :, p + j * t : p + (j + 1) * t], values[i, :, p + j * t : p + (j + 1) * t] = tk[r], tv[r]
        mask[i, 0, j, :, p + j * t : p + j * t + seen[r]] = True
    out, _ = group.group_decode_attention(None, q, keys, values, mask.view(n, 1, g * rep, width), scaling=d**-0.5)
    assert out.shape == (n * g, 1, hkv * rep, d)
    for r in range(n * g):
        i = r // g
        for h in range(hkv * rep):
            k = torch.cat([pk[i, h // rep][prompt_ok[i]], tk[r, h // rep, : seen[r]]]).double()
            v = torch.cat([pv[i, h // rep][prompt_ok[i]], tv[r, h // rep, : seen[r]]]).double()
            w = torch.softmax(k @ q[r, h, 0].double() * d**-0.5, dim=0)
            torch.testing.assert_close(out[r, 0, h].double(), w @ v, atol=1e-6, rtol=1e-6)


def test_group_decoder_stores_each_prompt_once_and_is_reused(adapter, clips, monkeypatch):
    """The static decoder keeps one prompt KV per group (not per row) and is reused by the next
    rollout of the same shape (the CUDA graph is captured once per run). The reused buffers hold
    the longer prompts of the first rollout; the second, shorter one must not see them."""
    monkeypatch.setattr(decoder, "PROMPT_BUCKET", 4096)  # both rollouts in one bucket
    greedy = SamplingParams(max_new_tokens=6, greedy=True)
    long_ = _prompts(adapter, clips, _media_modality(adapter))
    by_len = sorted(long_, key=lambda p: p.length)
    short = [by_len[0], by_len[1], by_len[0]]
    assert max(p.length for p in short) < max(p.length for p in long_)
    group.release_decoder(adapter)
    first = group.sample_groups_shared(adapter, long_, 3, greedy, decode="static")
    dec = decoder._DECODERS[adapter.model]
    slots = dec.kv.keys[0].shape[2]  # 4096 prompt slots + 3 rows x 5 steps, rounded up to 64
    assert dec.kv.keys[0].shape[0] == len(long_) and slots == 4160
    assert _same(first, group.sample_groups_shared(adapter, long_, 3, greedy, decode="dynamic"))
    _assert_step_logits_equal(adapter, short, 3)
    assert decoder._DECODERS[adapter.model] is dec
    group.sample_groups_shared(adapter, short, 2, greedy, decode="static")  # another shape: a new decoder
    assert decoder._DECODERS[adapter.model] is not dec
    group.release_decoder(adapter)
    assert adapter.model not in decoder._DECODERS


def test_cached_decoder_does_not_keep_its_model_alive(model_dir, clips):
    ad = load_adapter(model_dir)
    prompts = _prompts(ad, clips, Modality.VIDEO)
    group.sample_groups_shared(ad, prompts, 2, SamplingParams(max_new_tokens=3, greedy=True), decode="static")
    assert ad.model in decoder._DECODERS
    model = weakref.ref(ad.model)
    del ad
    gc.collect()
    assert model() is None


def test_graph_key_follows_weight_storage(adapter):
    """A captured graph reads the weights at fixed addresses: an in-place update (what the
    optimizer does) keeps the key, a re-allocated weight (a gather, a move) changes it."""
    key = group._weights_key(adapter.model)
    w = adapter.lm_head().weight
    with torch.no_grad():
        w.add_(0.0)
    assert group._weights_key(adapter.model) == key
    saved = w.data
    try:
        w.data = saved.clone()
        assert group._weights_key(adapter.model) != key
    finally:
        w.data = saved


def test_group_decoder_refuses_sliding_window(adapter, clips, monkeypatch):
    monkeypatch.setattr(adapter.text_model().config, "use_sliding_window", True, raising=False)
    group.release_decoder(adapter)
    with pytest.raises(NotImplementedError, match="the group decoder supports full attention only"):
        group.sample_groups_shared(
            adapter,
            _prompts(adapter, clips, Modality.VIDEO),
            2,
            SamplingParams(max_new_tokens=3, greedy=True),
            decode="static",
        )


def test_auto_decode_on_cpu(adapter, clips, monkeypatch):
    """auto on CPU: the group decoder for groups, the growing cache for single rows."""
    used = []
    real = group.decoder_for
    monkeypatch.setattr(group, "decoder_for", lambda *a, **k: used.append(a[2]) or real(*a, **k))
    prompts = _prompts(adapter, clips, Modality.VIDEO)
    for g in (3, 1):
        group.sample_groups_shared(adapter, prompts, g, SamplingParams(max_new_tokens=3, greedy=True), decode="auto")
    assert used == [3]


def test_auto_decode_on_cuda_by_family(adapter):
    """auto on CUDA: the CUDA graph for a dense text model, the eager group decoder for one with
    routed experts (Qwen3-Omni), the growing cache under FSDP2 (not exercised here)."""
    on_cuda = copy.copy(adapter)
    on_cuda.device = torch.device("cuda")  # resolve_decode only reads the device type
    moe = adapter.family == "qwen3-omni"
    assert group.resolve_decode(on_cuda, 8) == ("static" if moe else "graph")
    assert group.resolve_decode(adapter, 8) == "static" and group.resolve_decode(adapter, 1) == "dynamic"
    assert group.resolve_decode(adapter, 8, "dynamic") == "dynamic"


def test_graph_decoding_needs_cuda(adapter, clips):
    prompts = _prompts(adapter, clips, Modality.VIDEO)
    params = SamplingParams(max_new_tokens=4, greedy=True)
    if adapter.family == "qwen3-omni":  # refused on any device: routed experts
        err, msg = NotImplementedError, "not supported for text models with routed experts"
    else:
        err, msg = ValueError, "CUDA graph decoding needs a CUDA device"
    with pytest.raises(err, match=msg):
        group.sample_groups_shared(adapter, prompts, 2, params, decode="graph")
    with pytest.raises(ValueError, match="decode must be one of auto, dynamic, static, graph, got 'fast'"):
        group.sample_groups_shared(adapter, prompts, 2, params, decode="fast")


def test_sampled_generation_same_seed_same_tokens(adapter, clips):
    """Same global seed -> same multinomial draws on (N*G, V) scores that agree to fp rounding:
    equal here; in general only the distribution is guaranteed to be the same."""
    prompts = _prompts(adapter, clips, _media_modality(adapter))
    params = SamplingParams(max_new_tokens=10, temperature=0.9, top_p=0.95, top_k=50)
    torch.manual_seed(5)
    dup = adapter.sample_groups_rows(prompts, 4, params)
    torch.manual_seed(5)
    shared = group.sample_groups_shared(adapter, prompts, 4, params)
    assert _same(dup, shared)
    assert len({tuple(c.tolist()) for c in dup.ids[0]}) > 1  # really sampled


def _loss_and_grads(model, fn, rows, adv):
    model.zero_grad(set_to_none=True)
    lp, mask, ent = fn([r[0] for r in rows], [r[1] for r in rows], with_entropy=True)
    (lp * mask * adv[:, None]).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return lp.detach(), mask, ent, grads


@pytest.mark.parametrize("frozen", [False, True], ids=["trainable-encoders", "frozen-encoders"])
@pytest.mark.parametrize("family, modality", FAMILY_MODALITIES)
def test_shared_prefix_logprobs_and_grads_equal(tiny_dir_of, clips, family, modality, frozen):
    _check_grads(tiny_dir_of(family), clips, Modality(modality), frozen)


def test_grads_equal_with_gradient_checkpointing(model_dir, clips):
    _check_grads(model_dir, clips, None, True, checkpointing=True)


def _tower_params(ad, kind) -> set[str]:
    names = {id(p): n for n, p in ad.model.named_parameters()}
    return {names[id(p)] for m in ad.kind_modules(kind) for p in m.parameters()}


def _check_grads(model_dir, clips, modality, frozen, checkpointing=False):
    torch.manual_seed(0)
    ad = load_adapter(model_dir)
    modality = modality or _media_modality(ad)
    ad.model.train()  # dropout is 0 in these configs; train mode as in the update phase
    if frozen:
        _frozen(ad)
    if checkpointing:  # as the trainer sets it up
        ad.enable_activation_checkpointing()
    prompts = _prompts(ad, clips, modality)
    sizes = (3, 2, 4)  # uneven groups
    rows_p = [p for p, n in zip(prompts, sizes) for _ in range(n)]
    groups = [i for i, n in enumerate(sizes) for _ in range(n)]
    rows = list(zip(rows_p, _completions(ad, len(rows_p), seed=1)))
    adv = torch.linspace(-1.5, 2.0, len(rows))
    lp_d, m_d, e_d, g_d = _loss_and_grads(ad.model, ad.completion_logprobs_rows, rows, adv)
    lp_s, m_s, e_s, g_s = _loss_and_grads(
        ad.model, lambda p, c, **kw: group.shared_prefix_logprobs(ad, p, c, groups=groups, **kw), rows, adv
    )
    assert torch.equal(m_d, m_s)
    torch.testing.assert_close(lp_s * m_s, lp_d * m_d, rtol=0, atol=1e-5)
    torch.testing.assert_close(e_s * m_s, e_d * m_d, rtol=0, atol=1e-5)
    assert g_d.keys() == g_s.keys()
    trainable = {n for n, p in ad.model.named_parameters() if p.requires_grad}
    assert set(g_d) <= trainable
    names = {id(p): n for n, p in ad.model.named_parameters()}
    towers = {names[id(p)] for t in ad.towers().values() for p in t.parameters()}  # projectors stay trainable
    used = set().union(*(_tower_params(ad, k) for k in ad.media_kinds(modality)))
    if frozen:
        assert not (set(g_d) & towers)
    else:
        assert set(g_d) & used
    for n in g_d:  # fp32 sums in another order: 1e-5 absolute plus 1e-5 relative (a projector bias sums
        # the gradients of every media token of every row: the parts family's reach |g| ~ 3)
        torch.testing.assert_close(g_s[n], g_d[n], rtol=1e-5, atol=1e-5, msg=lambda m, n=n: f"{n}: {m}")


def test_rows_without_shared_groups_and_split_groups(adapter, clips):
    """Groups of one, a group whose rows are not consecutive and a group split across two calls
    all give the duplicated path's log-probs."""
    prompts = _prompts(adapter, clips, _media_modality(adapter))
    order = [0, 0, 1, 2, 2, 2, 0]
    rows_p = [prompts[i] for i in order]
    comps = _completions(adapter, len(order), seed=3)
    with torch.no_grad():
        lp_d, m, _ = adapter.completion_logprobs_rows(rows_p, comps)
        lp_s, _, _ = group.shared_prefix_logprobs(adapter, rows_p, comps, groups=order)
        torch.testing.assert_close(lp_s * m, lp_d * m, rtol=0, atol=1e-5)
        lp_1, _, _ = group.shared_prefix_logprobs(adapter, rows_p, comps)  # no groups: every row alone
        torch.testing.assert_close(lp_1 * m, lp_d * m, rtol=0, atol=1e-5)
        lp_a, m_a, _ = group.shared_prefix_logprobs(adapter, rows_p[:3], comps[:3], groups=order[:3])
        torch.testing.assert_close(lp_a * m_a, lp_d[:3, : lp_a.shape[1]] * m_a, rtol=0, atol=1e-5)


def test_group_ids_are_checked(adapter, clips):
    """Rows declared to share a prompt must hold one (equal token ids); the adapter's dispatch
    takes the shared-prefix path only when some group has several rows."""
    a, b = _prompts(adapter, clips[:2], _media_modality(adapter))
    comps = _completions(adapter, 2, seed=4)
    with pytest.raises(ValueError, match="rows 0 and 1 are in group 7 but hold different prompts"):
        group.shared_prefix_logprobs(adapter, [a, b], comps, groups=[7, 7])
    with pytest.raises(ValueError, match="2 group ids for 3 rows"):
        group.shared_prefix_logprobs(adapter, [a, a, b], [*comps, comps[0]], groups=[0, 0])
    calls = []
    real = group.shared_prefix_logprobs
    group.shared_prefix_logprobs = lambda *x, **k: calls.append(k["groups"]) or real(*x, **k)
    try:
        with torch.no_grad():
            adapter.completion_logprobs([a, copy.deepcopy(a)], comps, groups=[3, 3])  # equal content: one group
            adapter.completion_logprobs([a, b], comps, groups=[0, 1])  # groups of one: the rows path
            adapter.completion_logprobs([a, a], comps)  # no statement: the rows path
    finally:
        group.shared_prefix_logprobs = real
    assert calls == [[3, 3]]


def test_frozen_encoders_build_no_graph(model_dir, clips):
    ad = load_adapter(model_dir)
    assert group.supports(ad)
    mod = _media_modality(ad)
    kinds = ad.media_kinds(mod)
    prompts = _prompts(ad, clips[:2], mod)
    first = kinds[0]
    with torch.enable_grad():
        live = group.encode_media(ad, prompts)
        assert all(live[0].get(k).requires_grad for k in kinds)
        ad.model.enable_input_require_grads()  # what gradient checkpointing turns on
        for m in ad.kind_modules(first):  # the first kind's encoder frozen, any other trained
            m.requires_grad_(False)
        half = group.encode_media(ad, prompts, cache=group.EncoderCache())
        assert half[0].get(first).grad_fn is None and all(half[0].get(k).requires_grad for k in kinds[1:])
        _frozen_encoders(ad)
        frozen = group.encode_media(ad, prompts)
    for m in frozen:
        for k in kinds:
            assert m.get(k).grad_fn is None and not m.get(k).requires_grad
        for t in m.extra.get("deepstack", ()):
            assert t.grad_fn is None
    torch.testing.assert_close(frozen[1].get(first), live[1].get(first).detach(), rtol=0, atol=0)
    # one prompt listed G times is encoded once: the same tensors come back
    rep = group.encode_media(ad, [prompts[0]] * 3)
    assert rep[0].get(first) is rep[2].get(first)


def test_encoder_cache_keys_and_invalidation(model_dir, clips, tmp_path):
    adapter = _frozen_encoders(load_adapter(model_dir))
    mod = _media_modality(adapter)
    a, b = _prompts(adapter, clips[:2], mod)
    cache = group.EncoderCache(tmp_path / "enc", settings={"frame_size": 56, "fps": 2.0})
    first = group.encode_media(adapter, [a, b], cache=cache)
    assert (cache.hits, cache.misses, len(cache)) == (0, 2, 2)
    again = group.encode_media(adapter, [a, b], cache=cache)
    assert (cache.hits, cache.misses) == (2, 2)
    kind = adapter.media_kinds(mod)[0]
    assert torch.equal(again[0].get(kind), first[0].get(kind))
    # same content in a new prompt object (next epoch): hit
    a2 = copy.deepcopy(a)
    assert cache.key(a2, adapter) == cache.key(a, adapter)
    # changed media tensors (pixels, audio features): different keys
    variants = []
    for name in sorted(a.mm):
        if a.mm[name].is_floating_point():
            v = copy.deepcopy(a)
            v.mm[name].view(-1)[0] += 1e-3
            variants.append(v)
    assert variants and len({cache.key(p, adapter) for p in (a, *variants)}) == 1 + len(variants)
    # changed preprocessing settings: different key, and a miss
    other = group.EncoderCache(tmp_path / "enc", settings={"frame_size": 84, "fps": 2.0})
    assert other.key(a, adapter) != cache.key(a, adapter)
    group.encode_media(adapter, [a], cache=other)
    assert (other.hits, other.misses) == (0, 1)
    # a fresh process with the same settings finds the entries on disk
    reload = group.EncoderCache(tmp_path / "enc", settings={"frame_size": 56, "fps": 2.0})
    got = group.encode_media(adapter, [a, b], cache=reload)
    assert (reload.hits, reload.misses) == (2, 0)
    for k in adapter.media_kinds(mod):
        torch.testing.assert_close(got[1].get(k), first[1].get(k), rtol=0, atol=0)
    if "deepstack" in first[1].extra:  # Qwen3's per-layer visual features travel with the entry
        assert len(got[1].extra["deepstack"]) == len(first[1].extra["deepstack"]) > 0
        for x, y in zip(got[1].extra["deepstack"], first[1].extra["deepstack"]):
            torch.testing.assert_close(x, y, rtol=0, atol=0)
    # changed encoder weights: different key
    changed = copy.copy(adapter)
    changed.model = copy.deepcopy(adapter.model)
    with torch.no_grad():
        next(changed.towers()["vision"].parameters()).add_(1e-3)
    assert cache.key(a, changed) != cache.key(a, adapter)


def test_cached_media_give_the_same_logprobs(model_dir, clips):
    adapter = _frozen_encoders(load_adapter(model_dir))
    prompts = _prompts(adapter, clips, _media_modality(adapter))
    rows_p = [p for p in prompts for _ in range(2)]
    groups = [i for i in range(len(prompts)) for _ in range(2)]
    comps = _completions(adapter, len(rows_p), seed=4)
    cache = group.EncoderCache(memory_device="cpu")
    with torch.no_grad():
        lp_d, m, _ = adapter.completion_logprobs_rows(rows_p, comps)
        group.sample_groups_shared(adapter, prompts, 2, SamplingParams(max_new_tokens=2, greedy=True), cache=cache)
        lp_c, _, _ = group.shared_prefix_logprobs(adapter, rows_p, comps, cache=cache, groups=groups)
    assert cache.hits == len(prompts) and cache.misses == len(prompts)
    # trainable towers never use the cache (their outputs change every step)
    trainable = copy.copy(adapter)
    trainable.model = copy.deepcopy(adapter.model).requires_grad_(True)
    with torch.no_grad():
        group.encode_media(trainable, prompts, cache=cache)
    assert cache.hits == len(prompts) and cache.misses == len(prompts)
    torch.testing.assert_close(lp_c * m, lp_d * m, rtol=0, atol=1e-5)


@pytest.mark.parametrize("family", ["qwen3-omni", "qwen3-vl"])
def test_qwen3_deepstack_features_reach_the_text_model(adapter_of, clips, family, monkeypatch):
    """Qwen3 (Omni and VL): each video's deepstack features (one per listed vision block) are
    carried with its media and added in the text model; without them the log-probs move, so the
    equality tests above cover them."""
    ad = adapter_of(family)
    assert group.supports(ad)
    prompts = _prompts(ad, clips, _media_modality(ad))
    with torch.no_grad():
        media = group.encode_media(ad, prompts)
        n_deep = len(ad.model.config.vision_config.deepstack_visual_indexes)
        for p, m in zip(prompts, media):
            n_video = int((p.input_ids == ad.placeholder_ids()["video"]).sum())
            assert len(m.extra["deepstack"]) == n_deep
            assert all(t.shape == m.video.shape == (n_video, 64) for t in m.extra["deepstack"])
        rows_p = [p for p in prompts for _ in range(2)]
        groups = [i for i in range(len(prompts)) for _ in range(2)]
        comps = _completions(ad, len(rows_p), seed=5)
        lp_d, m, _ = ad.completion_logprobs_rows(rows_p, comps)
        lp_s, _, _ = group.shared_prefix_logprobs(ad, rows_p, comps, groups=groups)
        real = ad.encode_kind

        def without_deepstack(kind, ps):
            return [
                MediaEmbeds(x.embeds, {k: tuple(torch.zeros_like(t) for t in v) for k, v in x.extra.items()})
                for x in real(kind, ps)
            ]

        monkeypatch.setattr(ad, "encode_kind", without_deepstack)
        lp_z, _, _ = group.shared_prefix_logprobs(ad, rows_p, comps, groups=groups)
    torch.testing.assert_close(lp_s * m, lp_d * m, rtol=0, atol=1e-5)
    assert float(((lp_z - lp_d) * m).abs().max()) > 1e-3


@pytest.mark.parametrize("family", ["qwen3-omni", "qwen2.5-vl", "qwen3-vl"])
def test_media_tokens_are_never_sampled(adapter_of, family):
    """The placeholder and turn tokens of Qwen3-Omni and the VL families are suppressed in
    sampling (a sampled placeholder would shift the media scatter of every later pass over the
    completion); EOS is not."""
    ad = adapter_of(family)
    vocab = ad.tokenizer.get_vocab()
    names = ["<|video_pad|>", "<|image_pad|>", "<|vision_start|>", "<|vision_end|>", "<|im_start|>", "<|endoftext|>"]
    if family == "qwen3-omni":
        names += ["<|audio_pad|>", "<|audio_start|>", "<|audio_end|>"]
    else:
        names += ["<|vision_pad|>"]
    assert {vocab[n] for n in names} <= set(ad.suppress) and ad.eos_id not in ad.suppress


@pytest.mark.parametrize("modality", [Modality.AV, Modality.IMAGE])
def test_frozen_towers_cached_under_trainable_projectors(tiny_dir_of, clips, modality):
    """The parts family (projectors outside the towers): with the towers frozen and the projectors
    training, the group paths cache the tower features and project them anew in every pass. The
    second pass runs no tower, and its log-probs, entropies and gradients (projectors and LLM)
    equal the duplicated rows'."""
    torch.manual_seed(0)
    ad = _frozen(load_adapter(tiny_dir_of("parts")))
    ad.model.train()
    kinds = ad.media_kinds(modality)
    assert group.towers_frozen_split(ad, kinds) and any(group.kind_trainable(ad, k) for k in kinds)
    runs = {name: 0 for name in ad.towers()}
    for name, tower in ad.towers().items():
        tower.register_forward_hook(lambda *_, name=name: runs.__setitem__(name, runs[name] + 1))
    prompts = _prompts(ad, clips, modality)
    sizes = (3, 2, 4)
    rows_p = [p for p, n in zip(prompts, sizes) for _ in range(n)]
    groups = [i for i, n in enumerate(sizes) for _ in range(n)]
    rows = list(zip(rows_p, _completions(ad, len(rows_p), seed=2)))
    adv = torch.linspace(-1.0, 1.5, len(rows))
    cache = group.EncoderCache()
    shared = lambda p, c, **kw: group.shared_prefix_logprobs(ad, p, c, groups=groups, cache=cache, **kw)
    _loss_and_grads(ad.model, shared, rows, adv)  # fills the cache
    assert (cache.hits, cache.misses, len(cache)) == (0, len(prompts), len(prompts))
    before = dict(runs)
    lp_s, m_s, e_s, g_s = _loss_and_grads(ad.model, shared, rows, adv)
    assert runs == before, "a cached pass ran a tower"
    assert (cache.hits, cache.misses) == (len(prompts), len(prompts))
    lp_d, m_d, e_d, g_d = _loss_and_grads(ad.model, ad.completion_logprobs_rows, rows, adv)
    assert torch.equal(m_d, m_s)
    torch.testing.assert_close(lp_s * m_s, lp_d * m_d, rtol=0, atol=1e-5)
    torch.testing.assert_close(e_s * m_s, e_d * m_d, rtol=0, atol=1e-5)
    names = {id(p): n for n, p in ad.model.named_parameters()}
    projector = {names[id(p)] for k in kinds for m in ad.kind_modules(k)[1:] for p in m.parameters()}
    assert g_s.keys() == g_d.keys() and projector and projector <= set(g_s)
    for n in g_d:
        torch.testing.assert_close(g_s[n], g_d[n], rtol=1e-5, atol=1e-5, msg=lambda m, n=n: f"{n}: {m}")
    # the split halves compose to encode_kind exactly (the same batching)
    with torch.no_grad():
        for k in kinds:
            whole = ad.encode_kind(k, prompts)
            split = ad.project_kind(k, prompts, ad.encode_kind_towers(k, prompts))
            assert all(torch.equal(a.get(k), b.get(k)) for a, b in zip(whole, split))
