"""The model families emorl knows, as one plain table, and how a checkpoint finds its family.

``FAMILIES`` maps a family name to its ``Family`` record: the ``model_type`` values of the
checkpoints' config.json it reads, where its adapter class and tiny builder live (as
``module:attribute`` strings, imported only when used, so importing this module stays cheap),
the media it takes and the multiple frame sides must be for its vision tower. Adding a family is
one package (adapter + tiny builder) and one entry here; docs/families.md walks through it.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]  # config.json "model_type" values of its checkpoints
    adapter: str  # "module:Class" of its OmniAdapter
    tiny: str  # "module:function" building a tiny random-init checkpoint (emorl.models.tiny.init_tiny)
    package: str  # the family's own package: the only code that names its classes and attributes
    modalities: tuple[str, ...]  # prompt modalities it takes (emorl.models.adapter.Modality values)
    frame_factor: int  # frame sides must be multiples of this (patch size x spatial merge)
    default_frame_size: int  # the tiny builder's default frame side (3 merged patches)


FAMILIES: dict[str, Family] = {
    "qwen2.5-omni": Family(
        "qwen2.5-omni",
        ("qwen2_5_omni_thinker", "qwen2_5_omni"),
        "emorl.models.qwen_omni.adapter:QwenOmniAdapter",
        "emorl.models.qwen_omni.tiny:init_tiny",
        "emorl.models.qwen_omni",
        ("video+audio", "video", "audio", "image", "text"),
        28,
        84,
    ),
    "qwen3-omni": Family(
        "qwen3-omni",
        ("qwen3_omni_moe_thinker", "qwen3_omni_moe"),
        "emorl.models.qwen_omni.adapter:QwenOmniAdapter",
        "emorl.models.qwen_omni.tiny:init_tiny",
        "emorl.models.qwen_omni",
        ("video+audio", "video", "audio", "image", "text"),
        32,
        96,
    ),
    "qwen2.5-vl": Family(
        "qwen2.5-vl",
        ("qwen2_5_vl",),
        "emorl.models.qwen_vl.adapter:QwenVLAdapter",
        "emorl.models.qwen_vl.tiny:init_tiny",
        "emorl.models.qwen_vl",
        ("video", "image", "text"),
        28,
        84,
    ),
    "qwen3-vl": Family(
        "qwen3-vl",
        ("qwen3_vl",),
        "emorl.models.qwen_vl.adapter:QwenVLAdapter",
        "emorl.models.qwen_vl.tiny:init_tiny",
        "emorl.models.qwen_vl",
        ("video", "image", "text"),
        32,
        96,
    ),
    # any causal LM + vision encoder + audio encoder + projectors (HumanOmni / R1-Omni converted in);
    # frame sides: the tiny builder's SigLIP patch (14) x the projector's 2x2 pooling
    "parts": Family(
        "parts",
        ("emorl_omni",),
        "emorl.models.parts.adapter:PartsAdapter",
        "emorl.models.parts.tiny:init_tiny",
        "emorl.models.parts",
        ("video+audio", "video", "audio", "image", "text"),
        28,
        84,
    ),
}
# "module:function" adding a family's own subcommands to `emorl model` (called with its subparsers)
FAMILY_COMMANDS = ("emorl.models.parts.cli:add_parsers",)
# packages that are not a family but shared by some (they may name the families' classes too)
SHARED_PACKAGES = ("emorl.models.qwen",)


def family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; expected one of {', '.join(FAMILIES)}") from None


def family_of_model_type(model_type: str) -> Family:
    for fam in FAMILIES.values():
        if model_type in fam.model_types:
            return fam
    known = sorted(t for f in FAMILIES.values() for t in f.model_types)
    raise ValueError(f"no emorl model family reads model_type {model_type!r}; known model types: {', '.join(known)}")


def family_of_checkpoint(path: str | Path) -> Family:
    """The family of a local checkpoint directory, from its config.json ``model_type``."""
    cfg_file = Path(path).expanduser() / "config.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{path}: no config.json; expected a model directory saved with save_pretrained")
    try:
        model_type = json.loads(cfg_file.read_text()).get("model_type", "")
    except json.JSONDecodeError as e:
        raise ValueError(f"{cfg_file}: not valid JSON ({e})") from None
    if not model_type:
        raise ValueError(f"{cfg_file}: no model_type field; cannot tell which model family reads it")
    return family_of_model_type(model_type)


def resolve(target: str):
    """The object a ``module:attribute`` string names (imported now)."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def check_model_path(path: str | Path) -> Path:
    """Refuses a local folder without config.json and a path that is neither a folder nor a hub id."""
    path = str(path)
    local = Path(path).expanduser()
    if local.exists() and not (local / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no config.json; expected a model directory saved with save_pretrained")
    if not local.exists() and (path.startswith(("/", ".", "~")) or path.count("/") > 1):
        raise FileNotFoundError(f"{path}: model directory not found (and not a hub id of the form org/name)")
    return local


def adapter_class(path: str | Path):
    """The adapter class for a checkpoint: a local directory by its config.json, a hub id (no
    local config to read) by the hub's config.json through transformers."""
    local = check_model_path(path)
    if local.exists():
        return resolve(family_of_checkpoint(local).adapter)
    from transformers import AutoConfig

    try:
        model_type = AutoConfig.from_pretrained(str(path)).model_type
    except OSError as e:
        raise FileNotFoundError(f"{path}: not a local model directory, and no config.json from the hub: {e}") from None
    return resolve(family_of_model_type(model_type).adapter)


def load_adapter(path: str | Path, **kwargs):
    """The family adapter of the checkpoint at ``path`` (``from_pretrained(path, **kwargs)``)."""
    return adapter_class(path).from_pretrained(path, **kwargs)
