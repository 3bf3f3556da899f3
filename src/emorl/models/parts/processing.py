"""Processor of the parts family: the LLM's tokenizer + the vision encoder's image processor + the
audio encoder's feature extractor (+ BERT's tokenizer for HumanOmni's gate), saved with the
checkpoint and loaded back by ``EmorlOmniProcessor.from_pretrained``.

A small documented class rather than a transformers ``ProcessorMixin``: the sub-processors are
whatever the parts bring (any image processor, any feature extractor, an optional second
tokenizer), so each is saved in its own sub-folder (``image_processor/``,
``feature_extractor/``, ``fusion_tokenizer/``) with transformers' own ``save_pretrained``; the
tokenizer sits at the checkpoint root and the settings in ``emorl_processor.json``.

Encoding a clip: the prompt holds one placeholder token per medium (``<|video_pad|>``,
``<|audio_pad|>``, ``<|image_pad|>``, each inside its start/end markers), which ``__call__``
expands to the medium's token count (``video_tokens(T)``, ``audio_tokens()``). Frames are
resized to the vision encoder's input size (after padding to a square when ``pad_to_square``);
audio is 16 kHz mono turned into the feature extractor's log-mel input (Whisper: padded or cut
to its 30 s window, which the Whisper encoder requires).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from emorl.models.parts.configuration import MediaGeometry

SETTINGS_FILE = "emorl_processor.json"
MEDIA_TYPES = ("image", "video", "audio")


@dataclass
class ProcessorSettings:
    """num_frames: frames per clip the callers sample (segment middles); pad_to_square: pad each
    frame to a square with the image mean before resizing (HumanOmni's ``expand2square``) instead
    of squashing it; *_token: placeholder tokens; *_wrap: text around each placeholder (real
    vocabulary markers for built models, plain text for HumanOmni: ``<vi_start>`` ... ``<vi_end>``);
    separator: joins a message's content items when rendering the chat template; image_backend:
    ``pil`` when the image processor is transformers' PIL implementation (kept on reload, since
    the saved config names only the model's processor class), None for the default."""

    geometry: MediaGeometry
    num_frames: int = 8
    pad_to_square: bool = False
    image_token: str = "<|image_pad|>"
    video_token: str = "<|video_pad|>"
    audio_token: str = "<|audio_pad|>"
    image_wrap: tuple[str, str] = ("<|vision_start|>", "<|vision_end|>")
    video_wrap: tuple[str, str] = ("<|vision_start|>", "<|vision_end|>")
    audio_wrap: tuple[str, str] = ("<|audio_start|>", "<|audio_end|>")
    separator: str = "\n"
    image_backend: str | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["geometry"] = self.geometry.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict, source: str = "settings") -> ProcessorSettings:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"{source}: unknown processor settings {sorted(unknown)}")
        d = dict(d)
        d["geometry"] = MediaGeometry(**d["geometry"])
        for k in ("image_wrap", "video_wrap", "audio_wrap"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


def expand2square(image, background: tuple[int, ...]):
    """Pad a PIL image to a square, centred, with ``background`` (HumanOmni's ``expand2square``)."""
    from PIL import Image

    w, h = image.size
    if w == h:
        return image
    side = max(w, h)
    out = Image.new(image.mode, (side, side), background)
    out.paste(image, (0, (w - h) // 2) if w > h else ((h - w) // 2, 0))
    return out


class EmorlOmniProcessor:
    """tokenizer + image_processor + feature_extractor (+ fusion_tokenizer) with ``settings``.

    ``processor(text, videos=[clip], audio=[wave], fusion_text=[instruction])`` returns
    input_ids / attention_mask (left-padded), pixel_values_videos (n, T, 3, S, S), pixel_values
    (images), input_features (n, mels, frames) and fusion_input_ids / fusion_attention_mask.
    """

    def __init__(
        self, tokenizer, image_processor, feature_extractor, settings: ProcessorSettings, fusion_tokenizer=None
    ):
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.feature_extractor = feature_extractor
        self.fusion_tokenizer = fusion_tokenizer
        self.settings = settings
        for kind in MEDIA_TYPES:
            tok = self.token(kind)
            if tokenizer.convert_tokens_to_ids(tok) in (None, tokenizer.unk_token_id):
                raise ValueError(f"placeholder {tok!r} is not a token of the tokenizer (add it as a special token)")

    # ---- token counts --------------------------------------------------------------------
    def token(self, kind: str) -> str:
        return getattr(self.settings, f"{kind}_token")

    def token_id(self, kind: str) -> int:
        return int(self.tokenizer.convert_tokens_to_ids(self.token(kind)))

    def video_tokens(self, num_frames: int | None = None) -> int:
        """LLM tokens of a clip of ``num_frames`` frames (default: settings.num_frames)."""
        return self.settings.geometry.video_tokens(num_frames or self.settings.num_frames)

    def image_tokens(self) -> int:
        return self.settings.geometry.video_tokens(1)

    def audio_tokens(self) -> int:
        return self.settings.geometry.audio_tokens()

    # ---- text ----------------------------------------------------------------------------
    def media_block(self, kind: str) -> str:
        start, end = getattr(self.settings, f"{kind}_wrap")
        return f"{start}{self.token(kind)}{end}"

    def apply_chat_template(
        self, messages: list[dict], add_generation_prompt: bool = True, tokenize: bool = False
    ) -> str:
        """Render ``messages`` with the LLM tokenizer's chat template. Content may be a string or a
        list of ``{"type": "video"|"audio"|"image"}`` / ``{"type": "text", "text": ...}`` items; media
        items become one (unexpanded) placeholder block each, items joined by ``settings.separator``.
        Returns the text (``tokenize=True`` is refused: ``__call__`` expands the placeholders)."""
        if tokenize:
            raise ValueError(
                "apply_chat_template returns text here; tokenize with processor(text, videos=..., ...) "
                "so that placeholders are expanded to their media's token counts"
            )
        flat = []
        for i, m in enumerate(messages):
            content = m.get("content")
            if isinstance(content, list):
                parts = []
                for item in content:
                    kind = item.get("type")
                    if kind in MEDIA_TYPES:
                        parts.append(self.media_block(kind))
                    elif kind == "text":
                        parts.append(item["text"])
                    else:
                        raise ValueError(
                            f"messages[{i}]: unknown content type {kind!r}; expected video, audio, image or text"
                        )
                content = self.settings.separator.join(parts)
            flat.append({"role": m["role"], "content": content})
        return self.tokenizer.apply_chat_template(flat, tokenize=False, add_generation_prompt=add_generation_prompt)

    @staticmethod
    def instruction_text(messages: list[dict]) -> str:
        """The text items of the last user message joined by newlines: what HumanOmni's BERT gate
        reads (its instruction, without media tags)."""
        for m in reversed(messages):
            if m.get("role") == "user":
                c = m.get("content")
                return c if isinstance(c, str) else "\n".join(x["text"] for x in c if x.get("type") == "text")
        raise ValueError("messages hold no user message")

    def _expand(self, texts: list[str], counts: dict[str, list[int]]) -> list[str]:
        """Repeat each placeholder by its item's token count, items consumed in reading order."""
        toks = {self.token(k): k for k in MEDIA_TYPES}
        pattern = re.compile("|".join(re.escape(t) for t in toks))
        used = dict.fromkeys(MEDIA_TYPES, 0)

        def repl(m):
            kind = toks[m.group(0)]
            if used[kind] >= len(counts[kind]):
                raise ValueError(
                    f"the text holds more {kind} placeholders than the {len(counts[kind])} {kind} inputs given"
                )
            n = counts[kind][used[kind]]
            used[kind] += 1
            return m.group(0) * n

        out = [pattern.sub(repl, t) for t in texts]
        for kind in MEDIA_TYPES:
            if used[kind] != len(counts[kind]):
                raise ValueError(f"{len(counts[kind])} {kind} inputs but {used[kind]} {kind} placeholders in the text")
        return out

    # ---- media ---------------------------------------------------------------------------
    def process_frames(self, frames) -> torch.Tensor:
        """One clip's frames ((T, H, W, 3) uint8 array, or a list of arrays / PIL images) ->
        (T, 3, S, S) float pixel values."""
        from PIL import Image

        if isinstance(frames, np.ndarray):
            if frames.ndim != 4 or frames.shape[-1] != 3:
                raise ValueError(f"frames: expected a (T, H, W, 3) array, got shape {frames.shape}")
            frames = list(frames)
        images = [f if isinstance(f, Image.Image) else Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
        if not images:
            raise ValueError("a clip needs at least one frame")
        if self.settings.pad_to_square:
            bg = tuple(int(x * 255) for x in self.image_processor.image_mean)
            images = [expand2square(im.convert("RGB"), bg) for im in images]
        return self.image_processor(images=images, return_tensors="pt")["pixel_values"]

    def process_audio(self, waves) -> torch.Tensor:
        """16 kHz mono waveforms -> (n, mels, frames) features (NaN -> -1.5, as HumanOmni)."""
        sr = self.feature_extractor.sampling_rate
        feats = [
            self.feature_extractor(np.asarray(w, dtype=np.float32), sampling_rate=sr, return_tensors="pt")[
                "input_features"
            ]
            for w in waves
        ]
        return torch.nan_to_num(torch.cat(feats), nan=-1.5)

    def __call__(
        self,
        text: str | list[str],
        *,
        videos=None,
        images=None,
        audio=None,
        fusion_text: str | list[str] | None = None,
        padding_side: str = "left",
    ):
        """Model inputs for ``text`` (one string per sample, rendered by ``apply_chat_template``)
        with its media: ``videos`` (list of clips), ``images`` (list of frames), ``audio`` (list
        of 16 kHz waveforms), in placeholder reading order; ``fusion_text``: one instruction per
        sample (required when the model gates its video projector with BERT)."""
        from transformers import BatchFeature

        texts = [text] if isinstance(text, str) else list(text)
        out: dict[str, torch.Tensor] = {}
        counts: dict[str, list[int]] = {k: [] for k in MEDIA_TYPES}
        if videos:
            clips = [self.process_frames(v) for v in videos]
            out["pixel_values_videos"] = _stack("videos", clips)
            counts["video"] = [self.video_tokens(c.shape[0]) for c in clips]
        if images:
            out["pixel_values"] = _stack("images", [self.process_frames([im])[0] for im in images])
            counts["image"] = [self.image_tokens()] * len(images)
        if audio:
            out["input_features"] = self.process_audio(audio)
            counts["audio"] = [self.audio_tokens()] * len(audio)
        enc = self.tokenizer(
            self._expand(texts, counts),
            add_special_tokens=False,
            padding=True,
            padding_side=padding_side,
            return_tensors="pt",
        )
        out["input_ids"], out["attention_mask"] = enc["input_ids"], enc["attention_mask"]
        if self.fusion_tokenizer is not None and (videos or images):
            if fusion_text is None:
                raise ValueError(
                    "fusion_text is required: this model's video projector is gated by BERT on the "
                    "instruction (see instruction_text(messages))"
                )
            ft = [fusion_text] if isinstance(fusion_text, str) else list(fusion_text)
            if len(ft) != len(texts):
                raise ValueError(f"fusion_text: one instruction per sample expected ({len(texts)}), got {len(ft)}")
            f = self.fusion_tokenizer(ft, return_tensors="pt", padding=True, truncation=True, add_special_tokens=True)
            out["fusion_input_ids"], out["fusion_attention_mask"] = f["input_ids"], f["attention_mask"]
        return BatchFeature(out)

    def batch_decode(self, ids, **kwargs) -> list[str]:
        return self.tokenizer.batch_decode(ids, **kwargs)

    def decode(self, ids, **kwargs) -> str:
        return self.tokenizer.decode(ids, **kwargs)

    # ---- persistence ---------------------------------------------------------------------
    def save_pretrained(self, out: str | Path) -> None:
        from emorl.utils import atomic_write_json

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(out)
        self.image_processor.save_pretrained(out / "image_processor")
        self.feature_extractor.save_pretrained(out / "feature_extractor")
        if self.fusion_tokenizer is not None:
            self.fusion_tokenizer.save_pretrained(out / "fusion_tokenizer")
        settings = self.settings.to_dict()
        settings["image_backend"] = "pil" if type(self.image_processor).__name__.endswith("Pil") else None
        atomic_write_json(out / SETTINGS_FILE, settings)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> EmorlOmniProcessor:
        from transformers import AutoFeatureExtractor, AutoImageProcessor, AutoTokenizer

        path = Path(path)
        settings_path = path / SETTINGS_FILE
        if not settings_path.is_file():
            raise FileNotFoundError(f"{settings_path}: not an emorl parts checkpoint (no {SETTINGS_FILE})")
        settings = ProcessorSettings.from_dict(json.loads(settings_path.read_text()), source=str(settings_path))
        fusion = path / "fusion_tokenizer"
        backend = {"backend": settings.image_backend} if settings.image_backend else {}
        return cls(
            AutoTokenizer.from_pretrained(path),
            AutoImageProcessor.from_pretrained(path / "image_processor", **backend),
            AutoFeatureExtractor.from_pretrained(path / "feature_extractor"),
            settings,
            fusion_tokenizer=AutoTokenizer.from_pretrained(fusion) if fusion.is_dir() else None,
        )


def _stack(what: str, tensors: list[torch.Tensor]) -> torch.Tensor:
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) != 1:
        raise ValueError(f"{what} of one batch must have equal shapes (frames per clip, size), got {sorted(shapes)}")
    return torch.stack(tensors)
