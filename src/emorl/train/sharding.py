"""How the training loops (GRPO and SFT) hold the model across processes: one ``Strategy`` object
per sharding mode (``grpo.sharding`` / ``sft.sharding``) behind one interface (``Strategy`` itself
is ``none``: replicated parameters, gradients all-reduced; ``FSDP2Strategy`` here;
``emorl.train.zero.ZeroStrategy`` for DeepSpeed ZeRO-2/3). A loop asks the strategy to set the
model and optimizer up, to hold the parameters whole for a rollout or a validation pass, for the
backward function, for the optimizer step (reduce, clip, step) and to save and restore checkpoints
and the final weights; it has no branch of its own per mode.

FSDP2 (``torch.distributed.fsdp.fully_shard``): emorl calls a model's parts directly (towers, the
token embeddings, the text model, the LM head), not only its root forward, so each part is its
own FSDP unit, taken from the adapter's anatomy: each call all-gathers that unit's parameters and
frees them after the call. Parameters, gradients and AdamW states each live once across
processes. Gradients are reduce-scattered as a sum, since each process's loss is already
normalised by the global row and token counts (as in the replicated path's all-reduce).

Every all-gather is a collective, so every process must make the same calls: generation (which
stops when a process's completions end) runs inside ``gathered`` (all units all-gathered once,
no collective inside), and towers with no trainable parameter stay whole (their calls depend on
each process's encoder-cache hits; they have no gradients or optimizer states to shard).
"""

from __future__ import annotations

import math
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

SHARDING = ("none", "fsdp2", "zero2", "zero3")  # zero*: DeepSpeed, emorl.train.zero


def _trainable(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())


def fsdp2_units(adapter) -> list[list[nn.Module]]:
    """The modules that become one FSDP unit each, from the adapter's anatomy: trainable towers and
    projectors, every decoder layer, the input embeddings, the LM head (one unit with the
    embeddings when they are tied) and the text model itself (what its layers leave: the final
    norm)."""
    units = [[m] for m in adapter.encoder_modules() if _trainable(m)]
    units += [[layer] for layer in adapter.decoder_layers()]
    emb, head = adapter.input_embeddings(), adapter.lm_head()
    units += [[emb, head]] if head.weight is emb.weight else [[emb], [head]]
    units.append([adapter.text_model()])
    return units


def shard_fsdp2(adapter, *, float32_shards: bool = False) -> nn.Module:
    """Apply FSDP2 in place to the adapter's model (every process calls this with the same model).

    ``float32_shards`` (float32 master weights of a bf16/fp16 model): the sharded units' parameters
    are kept in float32 (so are their gradients and AdamW states) and all-gathered in the model's
    half precision for compute (FSDP2 ``MixedPrecisionPolicy``; gradients reduced in float32)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
    from torch.distributed.tensor import DTensor

    model = adapter.model
    mesh = init_device_mesh(adapter.device.type, (dist.get_world_size(),))
    units = fsdp2_units(adapter)
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
            _keep_output_capture(m)
    # FSDP2 makes the first module to run forward the root; emorl's first call is a tower or the
    # embeddings, so initialise the whole model as the root now (private API, torch 2.14)
    model._get_fsdp_state()._lazy_init()
    return model


def _keep_output_capture(module: nn.Module) -> None:
    """FSDP2 swaps a unit's class for a subclass (``FSDP<Class>``); transformers finds what a model
    may record (``output_hidden_states``, ...) by its class name, so the subclass gets its parent's
    entry. Without it a sharded encoder asked for its hidden states (a vision tower whose
    penultimate layer feeds a projector) returns none."""
    can_record = getattr(module, "_can_record_outputs", None)
    if can_record:
        from transformers.utils.output_capturing import _CAN_RECORD_REGISTRY

        _CAN_RECORD_REGISTRY[module] = can_record


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
        set_optimizer_state_dict(
            model,
            getattr(opt, "optimizer", opt),
            optim_sd,
            options=StateDictOptions(full_state_dict=True, strict=False),
        )


def clip_grad_norm(params: list[torch.Tensor], max_norm: float) -> float:
    """``clip_grad_norm_`` whose returned norm is the global one when gradients are sharded."""
    from torch.distributed.tensor import DTensor

    grads = [p.grad for p in params if p.grad is not None]
    total = torch.nn.utils.get_total_norm(grads)
    if isinstance(total, DTensor):
        total = total.full_tensor()
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
    return float(total)


# ---------------------------------------------------------------------------- strategies
class Strategy:
    """Sharding ``none``: every process holds the whole model and the optimizer; gradients
    are summed over processes here (each process's loss is already normalised by the global
    counts), then clipped and stepped. The base of the other modes' strategies.

    A loop's calls, in order: ``setup`` (wrap the model and reference, build the optimizer),
    per step ``gathered`` (around a rollout or a validation pass), ``backward_fn`` (per micro-batch loss), ``step``
    (or ``discard`` when the step is skipped); ``checkpoint_state`` / ``save_partitions`` /
    ``load_checkpoint`` for checkpoints; ``final_state_dict`` for the saved model."""

    name = "none"
    partitioned = False  # True: each parameter has one (sharded) copy across processes

    def __init__(self):
        self.adapter = self.opt = None

    def setup(self, adapter, ref, *, master: bool, make_opt, max_grad_norm: float, dtype: str, shard_ref: bool = True):
        """Prepare ``adapter.model`` (and ``ref``, the reference adapter or None; ``shard_ref``:
        partition it too, unless it was moved to its own device) and build the optimizer and
        scheduler with ``make_opt(master_weights: bool)``. ``max_grad_norm`` and ``dtype`` (the
        model's, as configured) are for strategies whose engine clips and casts itself."""
        self.adapter = adapter
        self.opt, sched = make_opt(master)
        return self.opt, sched

    def gathered(self):
        """Context in which every parameter is whole and no collective runs (generation)."""
        return nullcontext()

    def backward_fn(self, n_micro: int):
        """``backward(loss)`` for each of a step's ``n_micro`` micro-batches."""
        return torch.Tensor.backward

    def _params(self) -> list[torch.Tensor]:
        return [p for p in self.adapter.model.parameters() if p.requires_grad]

    def _reduce(self) -> None:
        from emorl.train_utils import all_reduce_grads

        all_reduce_grads(self.adapter.model)

    def step(self, max_grad_norm: float) -> float:
        """Reduce, clip, step and zero the gradients; returns the global gradient norm before
        clipping. A non-finite norm raises FloatingPointError (no update; call ``discard``)."""
        self._reduce()
        norm = clip_grad_norm(self._params(), max_grad_norm)
        if not math.isfinite(norm):
            raise FloatingPointError(f"non-finite gradient norm ({norm})")
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return norm

    def discard(self) -> None:
        """Drop the gradients of a skipped step."""
        self.opt.zero_grad(set_to_none=True)

    def checkpoint_state(self) -> tuple[dict | None, dict | None]:
        """(model state, optimizer state) for process 0 to write; None where ``save_partitions``
        writes them instead. Collective."""
        return self.adapter.model.state_dict(), self.opt.state_dict()

    def save_partitions(self, folder: Path) -> None:
        """Every process writes its own partitions under ``folder`` (DeepSpeed). Collective."""

    def load_checkpoint(self, folder: Path, trainer_state: dict, peft_model=None) -> None:
        """Restore model and optimizer from a checkpoint folder written with this strategy."""
        model = self.adapter.model
        if peft_model is not None:
            from peft import set_peft_model_state_dict
            from safetensors.torch import load_file

            set_peft_model_state_dict(peft_model, load_file(str(folder / "adapter" / "adapter_model.safetensors")))
        else:
            model.load_state_dict(torch.load(folder / "model_state.pt", weights_only=True))
        self.opt.load_state_dict(trainer_state["optimizer"])

    def final_state_dict(self) -> dict | None:
        """The whole model's weights gathered on process 0 for the final save (collective), or
        None when process 0 saves its own model as it is."""
        return None


class FSDP2Strategy(Strategy):
    """Sharding ``fsdp2``: parameters, gradients and AdamW states sharded (``shard_fsdp2``);
    float32 master weights become FSDP2 mixed precision (float32 shards, half-precision compute)."""

    name = "fsdp2"
    partitioned = True

    def setup(self, adapter, ref, *, master: bool, make_opt, max_grad_norm: float, dtype: str, shard_ref: bool = True):
        self.adapter = adapter
        shard_fsdp2(adapter, float32_shards=master)
        if ref is not None and shard_ref:
            shard_fsdp2(ref)
        self.opt, sched = make_opt(False)
        return self.opt, sched

    def gathered(self):
        return gathered(self.adapter.model)

    def _reduce(self) -> None:  # FSDP2 reduce-scatters the gradients in backward
        pass

    def checkpoint_state(self) -> tuple[dict | None, dict | None]:
        return full_state(self.adapter.model, self.opt)

    def load_checkpoint(self, folder: Path, trainer_state: dict, peft_model=None) -> None:
        load_full_state(
            self.adapter.model,
            torch.load(folder / "model_state.pt", weights_only=True),
            self.opt,
            trainer_state["optimizer"],
        )

    def final_state_dict(self) -> dict | None:
        return full_state(self.adapter.model)[0]
