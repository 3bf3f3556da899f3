"""HumanOmni / R1-Omni checkpoints -> the parts family (``emorl model convert-humanomni``).

A HumanOmni checkpoint (``model_type="HumanOmni_qwen2"``, HumanMLLM's ``HumanOmniQwen2ForCausalLM``)
is a flat Qwen2 config with ``mm_*`` fields and a LLaVA-style state dict: the Qwen2 body under
``model.``, the towers wrapped twice (``model.vision_tower.vision_tower.*``,
``model.audio_tower.audio_tower.*``), ``model.mm_projector.*`` (AllInOne / AllInOneSmall),
``model.audio_projector.*``, ``model.bert_model.*`` and ``model.bert_gate.*``.

``translate_config`` maps the config, ``KEY_MAP`` / ``DROPPED`` the keys, and
``convert_humanomni`` writes an ordinary parts checkpoint whose processor reproduces HumanOmni's
prompt (``<vi_start>``/``<au_start>`` text wrappers around the placeholders), frames (8,
padded to square with the image mean, or squashed as in HumanOmni's ``mm_infer``) and 30 s
Whisper features. Tower weights come, like HumanOmni's own loader, from the tower checkpoints
(``mm_vision_tower`` / ``mm_audio_tower`` or the paths given), or from the copies stored in the
checkpoint (``towers="checkpoint"``). Every tensor is accounted for: a key that is neither
mapped nor in ``DROPPED`` is an error, and so is a model weight nothing fills.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import torch

from emorl.models.parts.build import DTYPES, add_placeholder_tokens, grow_rows, save_checkpoint

MODEL_TYPE = "HumanOmni_qwen2"
# HumanOmni key prefix -> EmorlOmniForConditionalGeneration key prefix, first match wins
KEY_MAP: tuple[tuple[str, str], ...] = (
    (r"^model\.vision_tower\.vision_tower\.", "model.vision_tower."),
    (r"^model\.audio_tower\.audio_tower\.encoder\.", "model.audio_tower."),
    (r"^model\.mm_projector\.", "model.vision_projector."),
    (r"^model\.audio_projector\.", "model.audio_projector."),
    (r"^model\.bert_model\.", "model.fusion_text_encoder."),
    (r"^model\.bert_gate\.", "model.fusion_gate."),
    (r"^model\.(embed_tokens|layers|norm)\.", r"model.language_model.\1."),
    (r"^lm_head\.", "lm_head."),
)
# keys with no counterpart: Whisper's classification heads (HumanOmni uses only the encoder) and
# the slow-fast compressor's query / key projections (built by HumanOmni's code, never called)
DROPPED: tuple[str, ...] = (
    r"^model\.audio_tower\.audio_tower\.(projector|classifier|layer_weights)",
    r"^model\.feature_compressor\.vlm_(query|key)_projector\.",
)
WRAPS = {"image": ("<im_start>", "<im_end>"), "video": ("<vi_start>", "<vi_end>"), "audio": ("<au_start>", "<au_end>")}
# HumanOmni's own config fields (read here or deliberately ignored), not Qwen2's
_MM_FIELDS = {
    "mm_vision_tower",
    "mm_audio_tower",
    "mm_hidden_size",
    "mm_projector_type",
    "mm_audio_projector_type",
    "audio_hidden_size",
    "mm_vision_select_layer",
    "mm_vision_select_feature",
    "mm_use_x_start_end",
    "num_frames",
    "image_aspect_ratio",
    "use_mm_proj",
    "tune_mm_mlp_adapter",
    "mm_tunable_parts",
    "tokenizer_model_max_length",
    "tokenizer_padding_side",
    "hyper_layers",
    "text_model_path",
    "use_local_models",
    "freeze_mm_mlp_adapter",
    "mm_use_im_start_end",
    "mm_use_im_patch_token",
    "image_grid_pinpoints",
    "tune_audio_projector",
    "unfreeze_mm_vision_tower",
    "unfreeze_mm_audio_tower",
    "mm_projector_lr",
    "mm_vision_tower_lr",
    "architectures",
    "model_type",
    "transformers_version",
    "_name_or_path",
}


def humanomni_frame_indices(n_total: int, num_frames: int = 8) -> list[int]:
    """HumanOmni's uniform ``frame_sample``: the rounded middle of each of ``num_frames`` equal
    segments of ``n_total - 1`` (emorl's ``segment_middles`` splits ``n_total`` instead).

    >>> humanomni_frame_indices(16, 4)
    [2, 6, 9, 13]
    >>> humanomni_frame_indices(3, 4)
    [0, 1, 1, 2]
    """
    if n_total <= 0:
        raise ValueError("no frames to sample from")
    seg = (n_total - 1) / num_frames
    return [int(np.round((i + 0.5) * seg + 1e-6)) for i in range(num_frames)]


def known_tower_config(name: str):
    """Configs of the towers HumanOmni / R1-Omni name, for checkpoints that store the tower weights
    but whose tower folders are not at hand: SigLIP-base-224/16 and BERT-base are transformers'
    documented defaults; whisper-large-v3 and SigLIP-so400m-384/14 are their published sizes.
    The converter checks them against the stored tensors' shapes."""
    from transformers import BertConfig, SiglipVisionConfig, WhisperConfig

    base = Path(str(name)).name.lower()
    table = {
        "siglip-base-patch16-224": lambda: SiglipVisionConfig(),
        "siglip-so400m-patch14-384": lambda: SiglipVisionConfig(
            hidden_size=1152,
            intermediate_size=4304,
            num_hidden_layers=27,
            num_attention_heads=16,
            image_size=384,
            patch_size=14,
        ),
        "whisper-large-v3": lambda: WhisperConfig(
            d_model=1280,
            encoder_layers=32,
            encoder_attention_heads=20,
            encoder_ffn_dim=5120,
            decoder_layers=32,
            decoder_attention_heads=20,
            decoder_ffn_dim=5120,
            num_mel_bins=128,
            max_source_positions=1500,
            vocab_size=51866,
        ),
        "bert-base-uncased": lambda: BertConfig(),
    }
    return table[base]() if base in table else None


def read_state(src: Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint folder (safetensors, sharded safetensors or pytorch_model.bin)."""
    from safetensors.torch import load_file

    if (src / "model.safetensors").is_file():
        return load_file(str(src / "model.safetensors"))
    index = src / "model.safetensors.index.json"
    if index.is_file():
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
            state.update(load_file(str(src / shard)))
        return state
    if (src / "pytorch_model.bin").is_file():
        return torch.load(src / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{src}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin")


def map_key(key: str) -> str | None:
    """The parts-family name of a HumanOmni key; None for a dropped key; KeyError for an unknown one."""
    if any(re.search(p, key) for p in DROPPED):
        return None
    for pattern, repl in KEY_MAP:
        if re.search(pattern, key):
            return re.sub(pattern, repl, key)
    raise KeyError(f"HumanOmni key {key!r} has no counterpart in the parts family")


def _local_dir(path) -> Path | None:
    return Path(path) if path and Path(str(path)).is_dir() else None


def _tower_config(kind: str, given, named, state: dict, prefix: str):
    """The tower config: from ``given`` (a folder), the config's own path if it is a local folder,
    else the known config of the named tower. Returns (config, folder or None)."""
    from transformers import AutoConfig

    folder = _local_dir(given) or _local_dir(named)
    if folder is not None:
        cfg = AutoConfig.from_pretrained(str(folder))
        return getattr(cfg, "vision_config", None) or cfg, folder
    if given:
        raise FileNotFoundError(f"{given}: {kind} tower folder not found")
    cfg = known_tower_config(named or "")
    if cfg is None:
        raise FileNotFoundError(
            f"the {kind} tower {named!r} is not a local folder and not a known tower: pass its folder with --{kind}"
        )
    if not any(k.startswith(prefix) for k in state):
        raise FileNotFoundError(
            f"the checkpoint holds no {kind} tower weights and {named!r} is not a local folder: "
            f"pass the tower folder with --{kind}"
        )
    return cfg, None


def translate_config(
    ho: dict,
    vision_config,
    audio_config,
    fusion_text_config,
    *,
    gate_hidden: int,
    compressor: str | None,
    vocab_size: int,
    token_ids: dict[str, int],
):
    """An ``EmorlOmniConfig`` equivalent to HumanOmni config dict ``ho``."""
    from transformers import Qwen2Config

    from emorl.models.parts import EmorlOmniConfig

    # the weights' dtype is the composite's (save_pretrained records it), not the LLM config's
    qwen_fields = ({f.name for f in dataclasses.fields(Qwen2Config)} | {"rope_theta", "rope_scaling"}) - {"dtype"}
    text = {k: v for k, v in ho.items() if k in qwen_fields and k not in _MM_FIELDS}
    text["vocab_size"] = vocab_size
    projector = ho.get("mm_projector_type", "linear")
    if projector not in ("all_in_one_small", "all_in_one"):
        raise ValueError(
            f"mm_projector_type={projector!r}: HumanOmni's encoder calls its projector with three "
            "branches, which only all_in_one / all_in_one_small accept"
        )
    if int(ho.get("mm_hidden_size", vision_config.hidden_size)) != vision_config.hidden_size:
        raise ValueError(
            f"mm_hidden_size={ho['mm_hidden_size']} but the vision tower's width is {vision_config.hidden_size}"
        )
    if int(ho.get("audio_hidden_size", audio_config.d_model)) != audio_config.d_model:
        raise ValueError(
            f"audio_hidden_size={ho['audio_hidden_size']} but the audio tower's width is {audio_config.d_model}"
        )
    select = ho.get("mm_vision_select_feature", "patch")
    if select not in ("patch", "cls_patch"):
        raise ValueError(f"mm_vision_select_feature={select!r}: expected patch or cls_patch")
    drop_cls = select == "patch" and vision_config.model_type.startswith("clip")
    return EmorlOmniConfig(
        text_config=Qwen2Config(**text),
        vision_config=vision_config,
        audio_config=audio_config,
        fusion_text_config=fusion_text_config,
        fusion_type="bert_gate",
        fusion_gate_hidden_size=gate_hidden,
        vision_feature_layer=int(ho.get("mm_vision_select_layer", -2)),
        vision_feature_select_strategy="default" if drop_cls else "full",
        vision_projector_type=projector,
        video_compressor=compressor,
        audio_projector_type=ho.get("mm_audio_projector_type", "mlp2x_gelu"),
        audio_pool_stride=3,
        **{f"{k}_token_id": v for k, v in token_ids.items()},
    )


def _resolve(key: str, model_keys: set[str]) -> str | None:
    """``key`` as the model names it: transformers 5 stores SigLIP / CLIP vision weights without the
    ``vision_model.`` level that transformers 4 checkpoints (HumanOmni's) have."""
    if key in model_keys:
        return key
    alt = key.replace("model.vision_tower.vision_model.", "model.vision_tower.", 1)
    return alt if alt in model_keys else None


def load_humanomni_state(model, state: dict[str, torch.Tensor], *, skip_towers: bool) -> dict:
    """Copy HumanOmni tensors into ``model``; returns {"loaded", "dropped", "skipped"} key lists.
    Raises KeyError for an unmapped key or a model weight left unfilled (the towers excepted when
    ``skip_towers``; the LM head when tied)."""
    model_state = model.state_dict()
    model_keys = set(model_state)
    tower = ("model.vision_tower.", "model.audio_tower.")
    loaded, dropped, skipped, unknown = [], [], [], []
    for key, value in state.items():
        target = map_key(key)
        if target is None:
            dropped.append(key)
            continue
        if skip_towers and target.startswith(tower):
            skipped.append(key)
            continue
        name = _resolve(target, model_keys)
        if name is None:
            if key.endswith(".position_ids"):  # buffers transformers 4 sometimes saved
                dropped.append(key)
                continue
            unknown.append(key)
            continue
        if tuple(model_state[name].shape) != tuple(value.shape):
            raise ValueError(
                f"{key}: shape {tuple(value.shape)} but the model's {name} is {tuple(model_state[name].shape)}"
            )
        with torch.no_grad():
            model_state[name].copy_(value)
        loaded.append(name)
    if unknown:
        raise KeyError(f"{len(unknown)} HumanOmni keys match no model weight, e.g. {unknown[:5]}")
    missing = sorted(model_keys - set(loaded) - _tied_keys(model) - _buffers(model))
    if skip_towers:
        missing = [k for k in missing if not k.startswith(tower)]
    if missing:
        raise KeyError(f"{len(missing)} model weights not in the checkpoint, e.g. {missing[:5]}")
    return {"loaded": loaded, "dropped": dropped, "skipped": skipped}


def _tied_keys(model) -> set[str]:
    return set(model.all_tied_weights_keys) if model.config.tie_word_embeddings else set()


def _buffers(model) -> set[str]:
    return {n for n, _ in model.named_buffers()}


def _grow_embeddings(state: dict, vocab: int) -> None:
    """Pad HumanOmni's embedding (and untied head) to ``vocab`` rows before loading."""
    for k in ("model.embed_tokens.weight", "lm_head.weight"):
        if k in state and state[k].shape[0] < vocab:
            state[k] = grow_rows(state[k], vocab)


def _processors(vision_dir, audio_dir, vision_config, audio_config):
    """HumanOmni's image processor (PIL backend, as transformers 4's SiglipImageProcessor) and
    Whisper feature extractor: from the tower folders, else the towers' defaults."""
    from transformers import AutoImageProcessor, WhisperFeatureExtractor
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    if vision_dir is not None and (vision_dir / "preprocessor_config.json").is_file():
        improc = AutoImageProcessor.from_pretrained(str(vision_dir), backend="pil")
    else:
        side = int(vision_config.image_size)
        improc = SiglipImageProcessorPil(size={"height": side, "width": side})
    if audio_dir is not None and (audio_dir / "preprocessor_config.json").is_file():
        fext = WhisperFeatureExtractor.from_pretrained(str(audio_dir))
    else:
        fext = WhisperFeatureExtractor(feature_size=audio_config.num_mel_bins)
    return improc, fext


def _fusion(bert, ho: dict, state: dict):
    """(BERT config, BERT tokenizer) for the gate: the tokenizer needs the BERT folder."""
    from transformers import AutoConfig, AutoTokenizer

    folder = _local_dir(bert) or _local_dir(ho.get("text_model_path"))
    if folder is None:
        raise FileNotFoundError(
            "HumanOmni's branch gate reads the instruction with bert-base-uncased: pass its "
            "folder (config.json + vocab.txt) with --bert"
        )
    if not any(k.startswith("model.bert_model.") for k in state):
        raise KeyError(
            "the checkpoint holds no model.bert_model.* weights (R1-Omni trains BERT, so they must "
            "come from the checkpoint)"
        )
    return AutoConfig.from_pretrained(str(folder)), AutoTokenizer.from_pretrained(str(folder))


def convert_humanomni(
    src: str | Path,
    out: str | Path,
    *,
    vision: str | Path | None = None,
    audio: str | Path | None = None,
    bert: str | Path | None = None,
    towers: str = "auto",
    frames: str = "config",
    compressor: str = "auto",
    dtype: str = "float32",
) -> Path:
    """Write the parts-family checkpoint of HumanOmni / R1-Omni checkpoint ``src`` into ``out``.

    vision / audio / bert: tower and BERT folders (default: the config's ``mm_vision_tower``,
    ``mm_audio_tower``, ``text_model_path`` when they are local folders). towers: ``external``
    (tower folders, as HumanOmni's loader), ``checkpoint`` (the copies in ``src``) or ``auto``
    (external when the folders are there). frames: ``pad`` (pad to square, HumanOmni's training
    and GRPO), ``squash`` (HumanOmni's ``mm_infer``) or ``config`` (``image_aspect_ratio``).
    compressor: ``auto`` (slow-fast when the checkpoint has ``model.feature_compressor.*``),
    ``none`` or ``slow_fast``.
    """
    from transformers import AutoTokenizer

    from emorl.models.parts import EmorlOmniForConditionalGeneration, EmorlOmniProcessor
    from emorl.models.parts.build import load_audio, load_vision
    from emorl.models.parts.processing import ProcessorSettings

    src = Path(src)
    cfg_path = src / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path}: not found")
    ho = json.loads(cfg_path.read_text())
    if ho.get("model_type") != MODEL_TYPE:
        raise ValueError(f"{cfg_path}: model_type {ho.get('model_type')!r}, expected {MODEL_TYPE!r} (HumanOmni)")
    for opt, val, allowed in (
        ("towers", towers, ("auto", "external", "checkpoint")),
        ("frames", frames, ("config", "pad", "squash")),
        ("compressor", compressor, ("auto", "none", "slow_fast")),
        ("dtype", dtype, tuple(DTYPES)),
    ):
        if val not in allowed:
            raise ValueError(f"{opt}: expected one of {', '.join(allowed)}, got {val!r}")
    state = read_state(src)
    vcfg, vdir = _tower_config("vision", vision, ho.get("mm_vision_tower"), state, "model.vision_tower.")
    acfg, adir = _tower_config("audio", audio, ho.get("mm_audio_tower"), state, "model.audio_tower.")
    if towers == "auto":
        towers = "external" if vdir is not None and adir is not None else "checkpoint"
    if towers == "external" and (vdir is None or adir is None):
        raise FileNotFoundError("towers=external needs both tower folders (--vision, --audio)")
    bert_cfg, bert_tok = _fusion(bert, ho, state)
    tok = AutoTokenizer.from_pretrained(str(src))
    add_placeholder_tokens(tok, with_markers=False)
    vocab = max(int(ho["vocab_size"]), len(tok))
    _grow_embeddings(state, vocab)
    if compressor == "auto":
        compressor = "slow_fast" if any(k.startswith("model.feature_compressor.") for k in state) else "none"
    config = translate_config(
        ho,
        vcfg,
        acfg,
        bert_cfg,
        gate_hidden=int(state["model.bert_gate.0.weight"].shape[0]),
        compressor=None if compressor == "none" else compressor,
        vocab_size=vocab,
        token_ids={k: tok.convert_tokens_to_ids(f"<|{k}_pad|>") for k in WRAPS},
    )
    model = EmorlOmniForConditionalGeneration(config).to(DTYPES[dtype])
    report = load_humanomni_state(model, state, skip_towers=towers == "external")
    if towers == "external":
        model.model.vision_tower.load_state_dict(load_vision(vdir, DTYPES[dtype])[0].state_dict(), strict=True)
        model.model.audio_tower.load_state_dict(load_audio(adir, DTYPES[dtype])[0].state_dict(), strict=True)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    improc, fext = _processors(vdir, adir, vcfg, acfg)
    pad = ho.get("image_aspect_ratio") == "pad" if frames == "config" else frames == "pad"
    wrap = ho.get("mm_use_x_start_end", False)
    settings = ProcessorSettings(
        geometry=config.media_geometry(),
        num_frames=int(ho.get("num_frames", 8)),
        pad_to_square=pad,
        **{f"{k}_wrap": (WRAPS[k] if wrap else ("", "")) for k in WRAPS},
        separator="\n",
        extra={"source": "humanomni"},
    )
    processor = EmorlOmniProcessor(tok, improc, fext, settings, fusion_tokenizer=bert_tok)
    record = {
        "source": str(src),
        "towers": towers,
        "vision": str(vdir or ho.get("mm_vision_tower")),
        "audio": str(adir or ho.get("mm_audio_tower")),
        "compressor": compressor,
        "frames_pad_to_square": pad,
        "dropped_keys": report["dropped"],
        "tower_keys_not_used": len(report["skipped"]),
        "unused_config_fields": sorted(set(ho) - _MM_FIELDS - set(config.text_config.to_dict())),
    }
    return save_checkpoint(model, processor, out, record)
