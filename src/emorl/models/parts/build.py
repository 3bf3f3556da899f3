"""``emorl model build``: compose a parts-family checkpoint from a causal LM, a vision encoder and an
audio encoder (local directories or hub ids; the LLM may be a GGUF file, dequantized by
transformers), with freshly initialised projectors and placeholder tokens added to the LLM's
tokenizer, then save model + processor with ``save_pretrained``.

The parts keep their weights exactly: the LLM body, the towers and (optional) BERT are copied
into the composed model tensor for tensor. When the added tokens do not fit the LLM's
vocabulary, the embedding (and an untied LM head) grows by the new rows, set to the mean of the
existing rows; the old rows are unchanged, so text-only logits over the LLM's vocabulary equal
the LLM's own.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

PLACEHOLDERS = {"image": "<|image_pad|>", "video": "<|video_pad|>", "audio": "<|audio_pad|>"}
MARKERS = {"vision": ("<|vision_start|>", "<|vision_end|>"), "audio": ("<|audio_start|>", "<|audio_end|>")}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class BuildOptions:
    """Projector and preprocessing settings of a built model (see ``EmorlOmniConfig``)."""

    vision_projector: str = "mlp2x_gelu"
    vision_spatial_pool: int = 2
    vision_feature_layer: int = -2
    vision_select: str | None = None  # None: "default" (drop the class token) for CLIP, "full" otherwise
    audio_projector: str = "mlp2x_gelu"
    audio_pool: int = 3
    num_frames: int = 8
    pad_to_square: bool = False
    fusion_gate_hidden_size: int = 3584
    dtype: str = "float32"
    seed: int = 0


def _dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ValueError(f"dtype: expected one of {', '.join(DTYPES)}, got {name!r}")
    return DTYPES[name]


def find_gguf(path: str | Path, gguf_file: str | None) -> str | None:
    """The GGUF file to load from ``path``: ``gguf_file`` if given, else the single ``*.gguf`` of a
    directory without a ``config.json``; None for an ordinary transformers checkpoint."""
    p = Path(path)
    if gguf_file:
        if p.is_dir() and not (p / gguf_file).is_file():
            raise FileNotFoundError(f"{p / gguf_file}: GGUF file not found")
        return gguf_file
    if p.is_dir() and not (p / "config.json").is_file():
        found = sorted(x.name for x in p.glob("*.gguf"))
        if len(found) > 1:
            raise ValueError(f"{p}: several GGUF files ({', '.join(found)}); choose one with --llm-gguf")
        if found:
            return found[0]
    return None


def load_llm(path: str | Path, gguf_file: str | None = None, dtype: torch.dtype = torch.float32):
    """(causal LM, tokenizer) from a checkpoint directory / hub id, or a GGUF file in ``path``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = find_gguf(path, gguf_file)
    kw = {"gguf_file": gguf} if gguf else {}
    tok = AutoTokenizer.from_pretrained(str(path), **kw)
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, **kw)
    return model, tok


def load_vision(path: str | Path, dtype: torch.dtype = torch.float32):
    """(vision encoder, image processor). A full CLIP / SigLIP checkpoint gives its vision model."""
    from transformers import AutoConfig, AutoImageProcessor
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    cfg = AutoConfig.from_pretrained(str(path))
    vcfg = getattr(cfg, "vision_config", None) or cfg
    cls = MODEL_MAPPING[type(vcfg)]
    model = cls.from_pretrained(str(path), dtype=dtype)
    return model, _need(AutoImageProcessor, path, "image processor")


def load_audio(path: str | Path, dtype: torch.dtype = torch.float32):
    """(audio encoder, feature extractor). Whisper (any head) gives its ``WhisperEncoder``."""
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

    cfg = AutoConfig.from_pretrained(str(path))
    model = AutoModel.from_pretrained(str(path), dtype=dtype)
    encoder = model.get_encoder() if cfg.model_type == "whisper" else model
    return encoder, _need(AutoFeatureExtractor, path, "feature extractor")


def load_fusion(path: str | Path, dtype: torch.dtype = torch.float32):
    """(BERT encoder, its tokenizer) for HumanOmni's branch gate."""
    from transformers import AutoModel, AutoTokenizer

    return AutoModel.from_pretrained(str(path), dtype=dtype), AutoTokenizer.from_pretrained(str(path))


def _need(auto_cls, path, what: str):
    try:
        return auto_cls.from_pretrained(str(path))
    except (OSError, ValueError) as e:
        raise FileNotFoundError(f"{path}: no {what} config there (preprocessor_config.json): {e}") from e


def add_placeholder_tokens(tokenizer, with_markers: bool = True) -> list[str]:
    """Add the media placeholders (and, for built models, the start/end markers) as special tokens
    that the tokenizer lacks; returns the tokens added. Sets a missing pad token to eos."""
    from transformers import AddedToken

    wanted = list(PLACEHOLDERS.values()) + ([t for pair in MARKERS.values() for t in pair] if with_markers else [])
    vocab = tokenizer.get_vocab()
    new = [t for t in wanted if t not in vocab]
    if new:
        tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in new], special_tokens=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return new


def text_config_of(llm_config, vocab_size: int):
    """A plain copy of the LLM config (GGUF quantization settings dropped) with ``vocab_size``."""
    d = llm_config.to_dict()
    for k in ("quantization_config", "_name_or_path", "transformers_version", "architectures", "dtype", "torch_dtype"):
        d.pop(k, None)
    d["vocab_size"] = vocab_size
    return type(llm_config).from_dict(d)


def grow_rows(weight: torch.Tensor, rows: int) -> torch.Tensor:
    """``weight`` (V, d) with ``rows - V`` new rows equal to the mean of the existing ones."""
    extra = rows - weight.shape[0]
    if extra <= 0:
        return weight
    return torch.cat([weight, weight.mean(0, keepdim=True).expand(extra, -1)])


def copy_llm(model, llm) -> None:
    """Copy the causal LM's body and head into ``model`` (growing the vocabulary rows if needed)."""
    base = llm.base_model
    lm = model.model.language_model
    state = dict(base.state_dict())
    emb = base.get_input_embeddings()
    emb_key = next(n for n, m in base.named_modules() if m is emb) + ".weight"
    state[emb_key] = grow_rows(state[emb_key], lm.get_input_embeddings().weight.shape[0])
    lm.load_state_dict(state, strict=True)
    if not model.config.tie_word_embeddings:
        head = grow_rows(llm.get_output_embeddings().weight.detach(), model.lm_head.weight.shape[0])
        model.lm_head.weight.data.copy_(head)


def audio_seq_length(encoder, feature_extractor) -> int | None:
    """Encoder output frames of one (padded) clip: None for Whisper (its config's
    max_source_positions), otherwise measured on one second of silence."""
    if encoder.config.model_type == "whisper":
        frames = feature_extractor.nb_max_frames
        want = 2 * encoder.config.max_source_positions
        if frames != want:
            raise ValueError(
                f"the feature extractor gives {frames} mel frames but this Whisper encoder needs "
                f"{want} (chunk_length {feature_extractor.chunk_length} s)"
            )
        return None
    import numpy as np

    sr = feature_extractor.sampling_rate
    feats = feature_extractor(np.zeros(sr, np.float32), sampling_rate=sr, return_tensors="pt")["input_features"]
    with torch.no_grad():
        return int(encoder(input_features=feats.to(encoder.dtype)).last_hidden_state.shape[1])


def compose(
    llm,
    tokenizer,
    vision,
    image_processor,
    audio,
    feature_extractor,
    options: BuildOptions,
    fusion=None,
    fusion_tokenizer=None,
):
    """The composed (model, processor) from loaded parts, with fresh projectors."""
    from emorl.models.parts import EmorlOmniConfig, EmorlOmniForConditionalGeneration, EmorlOmniProcessor
    from emorl.models.parts.processing import ProcessorSettings

    add_placeholder_tokens(tokenizer)
    vocab = max(llm.config.vocab_size, len(tokenizer))
    vcfg = vision.config
    select = options.vision_select or ("default" if vcfg.model_type.startswith("clip") else "full")
    config = EmorlOmniConfig(
        text_config=text_config_of(llm.config, vocab),
        vision_config=vcfg,
        audio_config=audio.config,
        fusion_text_config=fusion.config if fusion is not None else None,
        fusion_type="bert_gate" if fusion is not None else None,
        fusion_gate_hidden_size=options.fusion_gate_hidden_size,
        vision_feature_layer=options.vision_feature_layer,
        vision_feature_select_strategy=select,
        vision_projector_type=options.vision_projector,
        vision_spatial_pool=options.vision_spatial_pool,
        audio_projector_type=options.audio_projector,
        audio_pool_stride=options.audio_pool,
        audio_seq_length=audio_seq_length(audio, feature_extractor),
        **{f"{k}_token_id": tokenizer.convert_tokens_to_ids(t) for k, t in PLACEHOLDERS.items()},
    )
    torch.manual_seed(options.seed)
    model = EmorlOmniForConditionalGeneration(config).to(_dtype(options.dtype))
    copy_llm(model, llm)
    model.model.vision_tower.load_state_dict(vision.state_dict(), strict=True)
    model.model.audio_tower.load_state_dict(audio.state_dict(), strict=True)
    if fusion is not None:
        model.model.fusion_text_encoder.load_state_dict(fusion.state_dict(), strict=True)
    model.generation_config = llm.generation_config
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    if model.generation_config.eos_token_id is None:
        model.generation_config.eos_token_id = tokenizer.eos_token_id
    settings = ProcessorSettings(
        geometry=config.media_geometry(),
        num_frames=options.num_frames,
        pad_to_square=options.pad_to_square,
        image_wrap=MARKERS["vision"],
        video_wrap=MARKERS["vision"],
        audio_wrap=MARKERS["audio"],
    )
    processor = EmorlOmniProcessor(tokenizer, image_processor, feature_extractor, settings, fusion_tokenizer)
    return model, processor


def save_checkpoint(model, processor, out: str | Path, record: dict) -> Path:
    """Write model + processor (+ ``emorl_build.json``) into ``out`` through a temporary sibling
    folder, so an interrupted build never leaves a half-written checkpoint. ``out`` must not
    exist or be empty."""
    from emorl.utils import atomic_write_json

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out}: output folder exists and is not empty (choose another --out)")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    atomic_write_json(tmp / "emorl_build.json", record)
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    return out


def build_from_parts(
    llm: str | Path,
    vision: str | Path,
    audio: str | Path,
    out: str | Path,
    *,
    llm_gguf: str | None = None,
    fusion: str | Path | None = None,
    options: BuildOptions | None = None,
) -> Path:
    """Load the parts, compose them and save the checkpoint in ``out``; returns ``out``."""
    options = options or BuildOptions()
    dtype = _dtype(options.dtype)
    lm, tok = load_llm(llm, llm_gguf, dtype)
    venc, improc = load_vision(vision, dtype)
    aenc, fext = load_audio(audio, dtype)
    bert, btok = load_fusion(fusion, dtype) if fusion is not None else (None, None)
    model, processor = compose(lm, tok, venc, improc, aenc, fext, options, bert, btok)
    record = {
        "llm": str(llm),
        "llm_gguf": find_gguf(llm, llm_gguf),
        "vision": str(vision),
        "audio": str(audio),
        "fusion": str(fusion) if fusion is not None else None,
        "options": options.__dict__,
    }
    return save_checkpoint(model, processor, out, json.loads(json.dumps(record)))


def load_parts_model(path: str | Path, dtype: torch.dtype | None = None):
    """(model, processor) of a saved parts checkpoint."""
    from emorl.models.parts import EmorlOmniForConditionalGeneration, EmorlOmniProcessor

    kw = {"dtype": dtype} if dtype is not None else {}
    return EmorlOmniForConditionalGeneration.from_pretrained(str(path), **kw), EmorlOmniProcessor.from_pretrained(path)
