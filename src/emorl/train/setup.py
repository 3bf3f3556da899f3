"""Setting a model up for training, the same for SFT and GRPO: tower freezing, LoRA on the LLM,
activation checkpointing, and the ``Strategy`` of a sharding mode with the checks it needs."""

from __future__ import annotations

import torch

from emorl.train import zero
from emorl.train.sharding import SHARDING, FSDP2Strategy, Strategy
from emorl.train_utils import freeze_towers


def setup_model(adapter, model_cfg, *, gradient_checkpointing: bool, encoder_cache_items: int = 0):
    """Freeze the towers ``model.freeze_vision`` / ``model.freeze_audio`` name, add LoRA adapters
    (``model.lora_rank`` > 0, peft, injected into ``adapter.model`` in place), and turn on
    activation checkpointing (transformers' own, non-reentrant, without the input hook, so frozen
    encoders build no graphs). ``encoder_cache_items`` > 0 with frozen towers on a group-aware
    adapter: each clip's encoder outputs are computed once and reused (GRPO's rollout, reference
    and policy passes). Returns the peft wrapper, or None without LoRA."""
    freeze_towers(adapter, vision=model_cfg.freeze_vision, audio=model_cfg.freeze_audio)
    peft_model = None
    if model_cfg.lora_rank > 0:
        from peft import LoraConfig, get_peft_model

        targets = [t.strip() for t in model_cfg.lora_targets.split(",") if t.strip()]
        lcfg = LoraConfig(
            r=model_cfg.lora_rank,
            lora_alpha=model_cfg.lora_alpha,
            lora_dropout=model_cfg.lora_dropout,
            target_modules=lora_modules(adapter, targets),
        )
        peft_model = get_peft_model(adapter.model, lcfg)  # injects LoRA layers into the model in place
    frozen = model_cfg.freeze_vision or model_cfg.freeze_audio
    if encoder_cache_items and frozen and getattr(adapter, "group_aware", False):
        from emorl.models.group import EncoderCache

        adapter.encoder_cache = EncoderCache(max_items=encoder_cache_items)
    if gradient_checkpointing:
        adapter.enable_activation_checkpointing()
    return peft_model


def lora_modules(adapter, targets: list[str]) -> list[str]:
    """Full names of the text model's linear layers whose own name is in ``targets`` (never the
    towers', projectors' or the LM head's: the adapter's ``text_model()`` decides what the LLM is).

    Full names, not a regex: for MoE models peft 0.21 resolves a regex to bare leaf names, so
    ``q_proj`` would then also match a tower's projections. Experts fused into 3-D parameters are
    not linear layers and get no adapter (a MoE text model: attention only)."""
    inside = {id(m) for m in adapter.text_model().modules()}
    names = [
        n
        for n, m in adapter.model.named_modules()
        if isinstance(m, torch.nn.Linear) and id(m) in inside and n.rpartition(".")[2] in targets
    ]
    if not names:
        raise ValueError(f"model.lora_targets={','.join(targets)!r}: no linear layer of the LLM has one of these names")
    return names


def make_strategy(sharding: str, key: str = "grpo.sharding") -> Strategy:
    """The ``Strategy`` of a sharding mode (emorl.train.sharding, emorl.train.zero); ``key`` names
    the setting in errors."""
    if sharding == "none":
        return Strategy()
    if sharding == "fsdp2":
        return FSDP2Strategy()
    if sharding in zero.ZERO_STAGES:
        return zero.ZeroStrategy(zero.ZERO_STAGES[sharding])
    raise ValueError(f"{key} must be one of {', '.join(SHARDING)}, got {sharding!r}")


def check_sharded(key: str, sharding: str, world: int, model_cfg) -> None:
    """What a sharded mode (``key`` = its setting, e.g. ``sft.sharding``) cannot run with: one
    process (except ZeRO-3 offloading to the CPU, launched with an accelerate DeepSpeed config that
    names an offload device), LoRA, and (DeepSpeed, bf16) ``model.master_weights=none``."""
    if sharding == "none":
        return
    offload = sharding == "zero3" and any(d != "none" for d in zero.offload_from_launch())
    if world < 2 and not offload:  # one process: ZeRO-3 only to offload to the CPU (a model too big for one GPU)
        launch = "fsdp2.yaml" if sharding == "fsdp2" else f"deepspeed_{sharding}.yaml"
        raise ValueError(
            f"{key}={sharding} needs several processes: launch with torchrun --nproc_per_node N or "
            f"accelerate launch --config_file configs/accelerate/{launch} (in one process, only "
            "zero3 with offload_param_device or offload_optimizer_device: cpu in that file)"
        )
    if model_cfg.lora_rank > 0:
        raise ValueError(
            f"{key}={sharding} does not support LoRA (model.lora_rank > 0); LoRA's trainable state is "
            f"small, use {key}=none"
        )
    if sharding in zero.ZERO_STAGES and model_cfg.dtype == "bfloat16" and model_cfg.master_weights == "none":
        raise ValueError(
            f"{key}={sharding} with model.dtype=bfloat16 always keeps float32 master weights "
            "(DeepSpeed's bf16 mode); model.master_weights=none cannot be honoured, use auto"
        )
