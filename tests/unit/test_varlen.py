"""Packed varlen attention for the towers (emorl.models.varlen): one call per segment length
equals transformers' loop of one call per segment, in values and gradients, on hand-made packed
sequences and inside every family's towers that attend within segments."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from family_helpers import FAMILY_NAMES
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from emorl.models import varlen
from emorl.models.adapter import Modality
from emorl.models.registry import load_adapter


class _Module(torch.nn.Module):
    num_key_value_groups = 1
    is_causal = False


def test_segments_by_length_by_hand():
    groups = varlen.segments_by_length(torch.tensor([0, 2, 5, 5, 7, 10]))
    assert [g.tolist() for g in groups] == [[[0, 1], [5, 6]], [[2, 3, 4], [7, 8, 9]]]  # the empty one left out
    with pytest.raises(ValueError, match="rise from 0"):
        varlen.segments_by_length(torch.tensor([0, 4, 3]))
    with pytest.raises(ValueError, match="rise from 0"):
        varlen.segments_by_length(torch.tensor([1, 4]))


def _loop(base, module, q, k, v, cu):
    """transformers' non-flash branch: split at the boundaries, one call per segment, concatenate
    (empty segments skipped: transformers' loop cannot take them, the packed call can)."""
    lengths = (cu[1:] - cu[:-1]).tolist()
    outs = [
        base(module, qs, ks, vs, None, scaling=0.3, is_causal=False)[0]
        for qs, ks, vs in zip(*(torch.split(t, lengths, dim=2) for t in (q, k, v)))
        if qs.shape[2]
    ]
    return torch.cat(outs, dim=1)


@pytest.mark.parametrize("base", ["sdpa", "eager"])
def test_packed_equals_the_loop_values_and_gradients(base):
    gen = torch.Generator().manual_seed(0)
    cu = torch.tensor([0, 3, 7, 10, 14, 14, 16, 20])  # lengths 3 4 3 4 0 2 4: three distinct, one empty
    q, k, v = (torch.randn(1, 4, 20, 8, generator=gen, requires_grad=True) for _ in range(3))
    module = _Module()
    loop_base = sdpa_attention_forward if base == "sdpa" else varlen.eager_attention
    fn = ALL_ATTENTION_FUNCTIONS[varlen.VARLEN_PREFIX + base]
    packed, _ = fn(module, q, k, v, None, scaling=0.3, cu_seq_lens_q=cu, cu_seq_lens_k=cu, is_causal=False)
    looped = _loop(loop_base, module, q, k, v, cu)
    assert packed.shape == looped.shape == (1, 20, 4, 8)
    torch.testing.assert_close(packed, looped, atol=1e-6, rtol=1e-6)
    w = torch.randn(packed.shape, generator=gen)
    g_packed = torch.autograd.grad((packed * w).sum(), (q, k, v))
    g_looped = torch.autograd.grad((looped * w).sum(), (q, k, v))
    for a, b in zip(g_packed, g_looped):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    # no attention across a boundary: changing segment 2's keys leaves segment 1 alone
    k2 = k.detach().clone()
    k2[:, :, 3:7] += torch.randn(1, 4, 4, 8, generator=gen)
    moved, _ = fn(module, q, k2, v, None, scaling=0.3, cu_seq_lens_q=cu, cu_seq_lens_k=cu)
    assert torch.equal(moved[:, :3], packed[:, :3].detach()) and not torch.allclose(moved[:, 3:7], packed[:, 3:7])


def test_bad_calls_are_refused():
    fn = ALL_ATTENTION_FUNCTIONS[varlen.VARLEN_PREFIX + "sdpa"]
    q = torch.zeros(1, 2, 6, 4)
    cu = torch.tensor([0, 3, 6])
    with pytest.raises(ValueError, match="cu_seq_lens_q == cu_seq_lens_k"):
        fn(_Module(), q, q, q, None, cu_seq_lens_q=cu, cu_seq_lens_k=torch.tensor([0, 2, 6]))
    with pytest.raises(ValueError, match="end at 5"):
        fn(_Module(), q, q, q, None, cu_seq_lens_q=torch.tensor([0, 5]), cu_seq_lens_k=torch.tensor([0, 5]))


def _vision_input(tower, grids: list[tuple[int, int, int]], gen):
    """Random patches for the vision tower: (sum t*h*w, C * temporal_patch * patch^2) and the grid."""
    c = tower.config
    width = c.in_channels * c.temporal_patch_size * c.patch_size**2
    n = sum(t * h * w for t, h, w in grids)
    return torch.randn(n, width, generator=gen), torch.tensor(grids)


def _outputs(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    flat = []
    for v in out.values() if hasattr(out, "values") else out:
        if isinstance(v, torch.Tensor):
            flat.append(v)
        elif isinstance(v, (list, tuple)):
            flat += [x for x in v if isinstance(x, torch.Tensor)]
    return flat


@pytest.mark.parametrize("family", [f for f in FAMILY_NAMES if f != "parts"])
def test_every_qwen_tower_runs_packed_and_equals_the_loop(family, tiny_dir_of, monkeypatch):
    """Vision (several frames and two frame sizes: windows and frames of different lengths) and,
    for the omni families, audio (two lengths: a short last chunk) through the adapter."""
    adapter = load_adapter(tiny_dir_of(family))
    towers = adapter.towers()
    assert all(t.config._attn_implementation.startswith(varlen.VARLEN_PREFIX) for t in towers.values())
    calls = []
    real = varlen.segments_by_length
    monkeypatch.setattr(varlen, "segments_by_length", lambda cu: calls.append(len(cu) - 1) or real(cu))
    gen = torch.Generator().manual_seed(1)
    m = towers["vision"].config.spatial_merge_size
    pv, grid = _vision_input(towers["vision"], [(3, 2 * m, 3 * m), (2, 4 * m, 2 * m)], gen)

    def vision():
        with torch.no_grad():
            return _outputs(towers["vision"](pv, grid_thw=grid))

    def audio():
        rng = np.random.default_rng(0)
        frames = rng.integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
        prompts = [
            adapter.encode(frames, rng.standard_normal(int(16000 * s)).astype(np.float32), "x", Modality.AUDIO)
            for s in (1.3, 2.7)
        ]
        with torch.no_grad():
            return [e.audio for e in adapter.encode_kind("audio", prompts)]

    runs = [vision] + ([audio] if "audio" in towers else [])
    for run in runs:
        tower = towers["vision" if run is vision else "audio"]
        calls.clear()
        packed = run()
        assert calls and max(calls) > 1, f"{family}: the {run.__name__} tower did not call the packed attention"
        name = tower.config._attn_implementation
        tower.config._attn_implementation = name.removeprefix(varlen.VARLEN_PREFIX)
        try:
            looped = run()
        finally:
            tower.config._attn_implementation = name
        assert len(packed) == len(looped) > 0
        for a, b in zip(packed, looped):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_the_setting_is_not_saved(tiny_dir_of, tmp_path):
    """A checkpoint written by emorl loads anywhere: config.json names no emorl attention."""
    adapter = load_adapter(tiny_dir_of("qwen2.5-omni"))
    adapter.save(tmp_path / "out")
    assert varlen.VARLEN_PREFIX not in (tmp_path / "out" / "config.json").read_text()
