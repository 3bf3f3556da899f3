"""Float32 master weights for half-precision training (MasterWeightAdamW): small updates are
kept, the float32 trajectory is exactly plain AdamW's, and the state round-trips exactly."""

import io

import pytest
import torch

from emorl.train_utils import MasterWeightAdamW, make_optimizer, master_weights


def _param(dtype=torch.bfloat16):
    torch.manual_seed(0)
    return torch.nn.Parameter((0.02 + 0.01 * torch.rand(64)).to(dtype))  # typical weight magnitudes


def _grads(n):
    g = torch.Generator().manual_seed(1)
    return [torch.randn(64, generator=g).abs() + 0.1 for _ in range(n)]  # one sign: the updates add up


def test_bf16_adamw_loses_small_updates_and_masters_keep_them():
    """lr 1e-6 (R1-Omni): AdamW on bf16 weights of magnitude 0.02-0.03 rounds every update away
    (half the bf16 spacing there is >= 3.8e-5 > 1e-6 per step); the master copy follows plain
    float32 AdamW on the same (bf16-rounded) gradients bit for bit, and the bf16 weight is the
    master rounded."""
    plain, kept = _param(), _param()
    start = plain.detach().clone()
    ref = torch.nn.Parameter(start.float())  # float32 AdamW on the same gradients
    opts = [torch.optim.AdamW([plain], lr=1e-6), MasterWeightAdamW([kept], lr=1e-6), torch.optim.AdamW([ref], lr=1e-6)]
    for g in _grads(200):
        for p in (plain, kept):
            p.grad = g.to(torch.bfloat16)
        ref.grad = g.to(torch.bfloat16).float()
        for o in opts:
            o.step()
            o.zero_grad()
    assert torch.equal(plain, start)  # every update lost
    master = opts[1].param_groups[0]["params"][0]
    assert torch.equal(master, ref.detach())  # exactly float32 AdamW
    assert float((start.float() - master).min()) > 1e-4  # 200 steps of up to 1e-6 each were kept
    assert torch.equal(kept.detach(), master.to(torch.bfloat16))
    assert not torch.equal(kept.detach(), start)  # and they reach the bf16 weights once large enough
    assert kept.grad is None and master.grad is None


def test_state_dict_round_trip_is_exact():
    """3 steps, save, load into a fresh optimizer over a copy, 3 more steps each: identical."""
    a = _param()
    opt_a = MasterWeightAdamW([a], lr=1e-3, weight_decay=0.01)
    grads = _grads(6)
    for g in grads[:3]:
        a.grad = g.to(torch.bfloat16)
        opt_a.step()
    buf = io.BytesIO()  # through bytes, as a checkpoint goes (loading would otherwise alias the tensors)
    torch.save(opt_a.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf)
    b = torch.nn.Parameter(torch.zeros_like(a))  # the loaded masters overwrite the weights too
    opt_b = MasterWeightAdamW([b], lr=1e-3, weight_decay=0.01)
    opt_b.load_state_dict(state)
    assert torch.equal(a, b)
    for g in grads[3:]:
        for p, o in ((a, opt_a), (b, opt_b)):
            p.grad = g.to(torch.bfloat16)
            o.step()
    assert torch.equal(a, b)
    assert torch.equal(opt_a.param_groups[0]["params"][0], opt_b.param_groups[0]["params"][0])


def test_loading_a_state_without_masters_is_a_clear_error():
    p = _param()
    plain_state = torch.optim.AdamW([torch.nn.Parameter(p.detach().float())], lr=1e-3).state_dict()
    with pytest.raises(ValueError, match="has no 'master_weights'"):
        MasterWeightAdamW([p], lr=1e-3).load_state_dict(plain_state)


def test_master_weights_setting():
    half = torch.nn.Linear(4, 4).to(torch.bfloat16)
    full = torch.nn.Linear(4, 4)
    assert master_weights("auto", half) and master_weights("float32", half)
    assert not master_weights("none", half)
    assert not master_weights("auto", full)  # nothing to keep: float32 weights already
    half.requires_grad_(False)
    assert not master_weights("auto", half)  # no trainable half-precision parameter
    with pytest.raises(ValueError, match="model.master_weights must be one of auto, float32, none, got 'fp32'"):
        master_weights("fp32", full)
    opt, sched = make_optimizer(torch.nn.Linear(4, 4).to(torch.bfloat16), 1e-3, 0.0, 10, 0, master=True)
    assert isinstance(opt, MasterWeightAdamW) and opt.param_groups[0]["params"][0].dtype == torch.float32
    opt.step()
    sched.step()  # the schedule drives the masters' learning rate
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.9)


def test_chunked_masters_step_like_one_chunk():
    """Masters stepped in chunks (one parameter group each) == one chunk, bit for bit."""
    torch.manual_seed(3)
    shapes = [(8, 16), (40,), (16, 4), (3,)]
    start = [torch.randn(s).to(torch.bfloat16) for s in shapes]
    runs = []
    for chunk in (1 << 28, 70):  # 70 elements: groups [128], [40], [64, 3]
        ps = [torch.nn.Parameter(t.clone()) for t in start]
        opt = MasterWeightAdamW(ps, lr=1e-2, weight_decay=0.1, chunk_numel=chunk)
        for k in range(3):
            for p in ps:
                p.grad = torch.full_like(p, 0.1 * (k + 1))
            opt.step()
            opt.zero_grad()
        runs.append((len(opt.param_groups), [p.detach().clone() for p in ps], opt._masters()))
    assert runs[0][0] == 1 and runs[1][0] == 3
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))
    assert all(torch.equal(a, b) for a, b in zip(runs[0][2], runs[1][2]))
    assert not torch.equal(runs[0][1][0], start[0])
