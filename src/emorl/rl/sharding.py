"""FSDP2 (``torch.distributed.fsdp.fully_shard``) for the GRPO loop: ``grpo.sharding=fsdp2``.

emorl calls a thinker's parts directly (the vision and audio towers, the token embeddings, the
decoder layers, the final norm, the LM head), not only its root forward, so each part is its own
FSDP unit: each call all-gathers that unit's parameters and frees them after the call.
Parameters, gradients and AdamW states each live once across processes. Gradients are
reduce-scattered as a sum, since each process's loss is already normalised by the global row and
token counts (as in the replicated path's all-reduce).

Every all-gather is a collective, so every process must make the same calls: generation (which
stops when a process's completions end) runs inside ``gathered`` (all units all-gathered once,
no collective inside), and towers with no trainable parameter stay whole (their calls depend on
each process's encoder-cache hits; they have no gradients or optimizer states to shard).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import nn

SHARDING = ("none", "fsdp2", "zero2", "zero3")  # zero*: DeepSpeed, emorl.rl.zero


def _trainable(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())


def fsdp2_units(model: nn.Module) -> list[list[nn.Module]]:
    """The modules that become one FSDP unit each: trainable towers, every decoder layer, the
    embeddings, the LM head (one unit with the embeddings when they are tied) and the final norm."""
    inner = getattr(model, "model", None)
    lm = getattr(inner, "language_model", None)
    if lm is None or not hasattr(lm, "layers"):
        raise NotImplementedError(f"grpo.sharding=fsdp2 supports Qwen-Omni thinkers (model.language_model.layers), "
                                  f"not {type(model).__name__}")
    towers = [getattr(inner, n, None) for n in ("visual", "audio_tower")]
    units = [[t] for t in towers if t is not None and _trainable(t)]
    units += [[layer] for layer in lm.layers]
    emb, head = lm.embed_tokens, model.get_output_embeddings()
    units += [[emb, head]] if head.weight is emb.weight else [[emb], [head]]
    units.append([lm.norm])
    return units


def shard_fsdp2(model: nn.Module, device_type: str, *, float32_shards: bool = False) -> nn.Module:
    """Apply FSDP2 in place to a thinker (every process calls this with the same model).

    ``float32_shards`` (float32 master weights of a bf16/fp16 model): the sharded units' parameters
    are kept in float32 (so are their gradients and AdamW states) and all-gathered in the model's
    half precision for compute (FSDP2 ``MixedPrecisionPolicy``; gradients reduced in float32)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
    from torch.distributed.tensor import DTensor

    mesh = init_device_mesh(device_type, (dist.get_world_size(),))
    units = fsdp2_units(model)
    mp = MixedPrecisionPolicy()
    if float32_shards:
        compute = next(p.dtype for unit in units for m in unit for p in m.parameters())
        mp = MixedPrecisionPolicy(param_dtype=compute, reduce_dtype=torch.float32)
        for unit in units:
            for m in unit:
                m.float()
    for unit in units:
        fully_shard(unit if len(unit) > 1 else unit[0], mesh=mesh, mp_policy=mp)
    whole = {p for p in model.parameters() if not isinstance(p, DTensor)}  # frozen towers
    fully_shard(model, mesh=mesh, ignored_params=whole, mp_policy=mp)  # the root: no parameters of its own
    for m in model.modules():
        if isinstance(m, FSDPModule):
            m.set_gradient_divide_factor(1.0)  # sum, not mean, over processes
            m.set_force_sum_reduction_for_comms(True)  # plain SUM (gloo has no AVG / PREMUL_SUM)
    # FSDP2 makes the first module to run forward the root; emorl's first call is a tower or the
    # embeddings, so initialise the thinker as the root now (private API, torch 2.14)
    model._get_fsdp_state()._lazy_init()
    return model


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


@contextmanager
def gathered(model: nn.Module):
    """Inside, every FSDP unit of ``model`` is all-gathered once and stays whole (generation: no
    collective per decoding step, so processes may stop decoding at different steps); resharded
    on exit. A no-op for an unsharded model. Costs the whole weights' memory while inside."""
    from torch.distributed.fsdp import FSDPModule

    if not is_sharded(model):
        yield
        return
    units = [m for m in model.modules() if isinstance(m, FSDPModule)]
    model.set_reshard_after_forward(False)
    for m in units:
        m.unshard()
    try:
        yield
    finally:
        for m in units:
            m.reshard()
        model.set_reshard_after_forward(True)


def full_state(model: nn.Module, opt=None) -> tuple[dict, dict | None]:
    """Gathered (unsharded) model and optimizer state dicts on CPU, keyed by parameter names, on
    process 0 (the others get empty dicts). Collective: every process must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    o = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_sd = get_model_state_dict(model, options=o)
    optim_sd = None if opt is None else get_optimizer_state_dict(model, getattr(opt, "optimizer", opt), options=o)
    return model_sd, optim_sd


def load_full_state(model: nn.Module, model_sd: dict, opt=None, optim_sd: dict | None = None) -> None:
    """Inverse of ``full_state``: every process passes the full dicts and keeps its shards."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

    set_model_state_dict(model, model_sd, options=StateDictOptions(full_state_dict=True))
    if opt is not None:  # not strict: AdamW has no state for a parameter that never had a gradient
        set_optimizer_state_dict(model, getattr(opt, "optimizer", opt), optim_sd,
                                 options=StateDictOptions(full_state_dict=True, strict=False))


def clip_grad_norm(params: list[torch.Tensor], max_norm: float) -> float:
    """``clip_grad_norm_`` whose returned norm is the global one when gradients are sharded."""
    from torch.distributed.tensor import DTensor

    grads = [p.grad for p in params if p.grad is not None]
    total = torch.nn.utils.get_total_norm(grads)
    if isinstance(total, DTensor):
        total = total.full_tensor()
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
    return float(total)
