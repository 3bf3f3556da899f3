"""What the Qwen families (Qwen2.5-Omni / Qwen3-Omni thinkers, Qwen2.5-VL / Qwen3-VL) share:
loading, the processor-based prompt encoding, their anatomy (``model.visual``, ``model.audio_tower``,
``model.language_model``, ``lm_head``) and the duplicated-rows reference paths through the model's
own ``forward`` and ``generate``.

Every pass (generation, old policy, reference, training) receives the same media tensors and
explicit positions, so log-probs are those of the full multimodal prompt. The family subclasses
(emorl.models.qwen_omni, emorl.models.qwen_vl) say which transformers class to load, how the
processor is called, how a batch's media are collated for ``forward``/``generate``, and how
positions are indexed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from emorl.models.adapter import FramePlan, MediaEmbeds, Modality, PromptInputs
from emorl.models.base import FamilyAdapter
from emorl.models.group import grad_for
from emorl.models.registry import check_model_path
from emorl.models.varlen import use_varlen_attention

# never sampled: a placeholder in a completion would shift the media scatter of every later pass
MM_SPECIALS = (
    "<|AUDIO|>",
    "<|audio_bos|>",
    "<|audio_eos|>",
    "<|vision_bos|>",
    "<|vision_eos|>",
    "<|IMAGE|>",
    "<|VIDEO|>",
    "<|im_start|>",
    "<|endoftext|>",  # Qwen2.5-Omni
    "<|vision_start|>",
    "<|vision_end|>",
    "<|video_pad|>",
    "<|image_pad|>",
    "<|vision_pad|>",
    "<|audio_pad|>",
    "<|audio_start|>",
    "<|audio_end|>",
)  # Qwen3-Omni, Qwen2.5-VL, Qwen3-VL


def checkpoint_config(path: str | Path) -> dict:
    """A local checkpoint's config.json ({} for a hub id or a folder without one)."""
    cfg_file = Path(path) / "config.json"
    return json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}


class QwenAdapter(FamilyAdapter):
    """Shared by the Qwen family adapters; not registered itself."""

    def __init__(
        self,
        model,
        processor,
        *,
        device: str | torch.device = "cpu",
        frame_pixels: int | None = None,
        group_aware: bool = True,
        encoder_cache=None,
        decode_mode: str = "auto",
    ):
        tok = processor.tokenizer
        eos = tok.convert_tokens_to_ids("<|im_end|>")
        vocab = tok.get_vocab()
        n_vocab = model.get_output_embeddings().weight.shape[0]
        suppress = [vocab[t] for t in MM_SPECIALS if t in vocab] + list(range(len(tok), n_vocab))
        super().__init__(
            model,
            tok,
            device=device,
            eos_id=eos,
            pad_id=tok.pad_token_id,
            suppress=suppress,
            group_aware=group_aware,
            encoder_cache=encoder_cache,
            decode_mode=decode_mode,
        )
        self.processor = processor
        self.frame_pixels = frame_pixels
        for tower in self.towers().values():  # packed segments: one attention call per length, not per window
            use_varlen_attention(tower.config)

    # ------------------------------------------------------------------ loading and saving
    @classmethod
    def model_class(cls, config: dict):
        """The transformers class for a checkpoint's config.json contents."""
        raise NotImplementedError

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        dtype: str = "float32",
        device: str = "cpu",
        frame_pixels: int | None = None,
        attn_implementation: str = "sdpa",
    ):
        """Load from a local directory or a hub id (a full omni checkpoint loads its thinker only)."""
        from transformers import AutoProcessor

        path = str(path)
        local = check_model_path(path)
        hints_file = local / "emorl_model.json"
        if frame_pixels is None and hints_file.is_file():  # written by `emorl model init-tiny`
            frame_pixels = json.loads(hints_file.read_text()).get("frame_pixels")
        klass = cls.model_class(checkpoint_config(path))
        try:
            model = klass.from_pretrained(path, dtype=getattr(torch, dtype), attn_implementation=attn_implementation)
            processor = AutoProcessor.from_pretrained(path)
        except OSError as e:  # hub id not reachable or not a model
            raise FileNotFoundError(f"{path}: could not load a model from this hub id or directory: {e}") from None
        model.to(device)
        return cls(model, processor, device=device, frame_pixels=frame_pixels)

    def save(self, out: str | Path, state_dict: dict | None = None) -> None:
        """``save_pretrained`` of model and processor (``state_dict``: weights to write instead of
        the model's own, e.g. gathered from FSDP2 shards)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(out, state_dict=state_dict)
        dtypes = {v.dtype for v in (state_dict or {}).values() if v.is_floating_point()}
        if len(dtypes) == 1:  # config.json records the model object's dtype (float32 shards under mixed precision)
            cfg = json.loads((out / "config.json").read_text())
            cfg["dtype"] = str(dtypes.pop()).removeprefix("torch.")
            (out / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        self.processor.save_pretrained(out)
        if self.frame_pixels:
            (out / "emorl_model.json").write_text(json.dumps({"frame_pixels": self.frame_pixels}) + "\n")

    # ------------------------------------------------------------------ inputs
    def encode(
        self,
        frames: np.ndarray | None,
        audio: np.ndarray | None,
        text: str,
        modality: Modality,
        *,
        fps: float | None = None,
        key: str = "",
    ) -> PromptInputs:
        """Render ``text`` as a user turn with the media ``modality`` asks for and run the processor.

        frames: (T, H, W, 3) uint8; audio: (S,) float32 at 16 kHz; fps: frames per second of the
        *sampled* frames (T / clip duration), so the positions follow the clip's time. An
        ``IMAGE`` prompt takes the one frame of a still image (of several, the middle one) as an
        image: the family's image placeholder and image inputs."""
        if modality not in self.modalities:
            raise ValueError(
                f"{key or 'prompt'}: {self.family} takes {', '.join(m.value for m in self.modalities)} "
                f"prompts, not {modality.value} (set data.modality to one of them)"
            )
        if modality.has_visual and frames is None:
            raise ValueError(f"{key or 'prompt'}: modality {modality.value} needs video frames, none given")
        if modality.has_audio and audio is None:
            raise ValueError(f"{key or 'prompt'}: modality {modality.value} needs audio, none given")
        content: list[dict] = []
        if modality.has_video:
            content.append({"type": "video"})
        elif modality.has_image:
            content.append({"type": "image"})
        elif modality.has_audio:
            content.append({"type": "audio"})
        content.append({"type": "text", "text": text})
        rendered = self.processor.apply_chat_template(
            [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
        )
        kw: dict = {"text": [rendered], "return_tensors": "pt"}
        if modality.has_video:
            kw.update(videos=[frames], videos_kwargs=self._video_kwargs(frames, fps))
        if modality.has_image:
            kw.update(images=[frames[len(frames) // 2]], images_kwargs=self._image_kwargs())
        kw.update(self._audio_kwargs(audio, modality))
        out = self.processor(**kw)
        return PromptInputs(input_ids=out["input_ids"][0], mm=self._mm_of(out, modality), modality=modality, key=key)

    @property
    def frame_factor(self) -> int:
        """Frame sides are multiples of this: the vision tower's patch x spatial merge (28 or 32)."""
        vp = self.processor.video_processor
        return int(vp.patch_size) * int(vp.merge_size)

    def native_video(self, n_total: int, fps: float | None, height: int, width: int) -> FramePlan:
        """qwen-vl-utils / qwen-omni-utils rules (emorl.models.qwen.preprocess): 2 frames per second
        at ``linspace`` positions, resized to multiples of ``frame_factor`` within the per-frame
        pixel budget, aspect ratio kept. A checkpoint with its own exact budget (``frame_pixels``:
        the tiny models) keeps the frame count and leaves the resize to its processor."""
        from emorl.models.qwen import preprocess

        idx, size, rate = preprocess.native_video(n_total, fps, height, width, self.frame_factor)
        return FramePlan(tuple(idx), None if self.frame_pixels else size, rate)

    def native_preprocessing(self) -> dict:
        from emorl.models.qwen import preprocess as q

        f = self.frame_factor
        return {
            "family": self.family,
            "rules": "qwen-vl-utils 0.0.14 / qwen-omni-utils 0.0.9",
            "fps": q.FPS,
            "frames": [q.FPS_MIN_FRAMES, q.FPS_MAX_FRAMES, q.FRAME_FACTOR],
            "factor": f,
            "pixels": [q.VIDEO_MIN_TOKENS * f * f, q.VIDEO_MAX_TOKENS * f * f, q.MODEL_SEQ_LEN * f * f * 0.9],
            "frame_pixels": self.frame_pixels,
            "audio": f"{self.audio_sample_rate} Hz mono, the whole clip" if "audio" in self.towers() else None,
        }

    def _video_kwargs(self, frames: np.ndarray, fps: float | None) -> dict:
        vkw: dict = {"fps": float(fps or 2.0)}
        if self.frame_pixels:  # an exact pixel budget per frame: no per-frame cap on top of it
            vkw["size"] = {"shortest_edge": self.frame_pixels, "longest_edge": self.frame_pixels}
            vkw["cap_pixels_per_frame"] = False
        return vkw

    def _image_kwargs(self) -> dict:
        if not self.frame_pixels:
            return {}
        return {"size": {"shortest_edge": self.frame_pixels, "longest_edge": self.frame_pixels}}

    def _audio_kwargs(self, audio, modality: Modality) -> dict:
        return {}

    def _mm_of(self, out, modality: Modality) -> dict[str, torch.Tensor]:
        """The per-prompt tensors this family keeps from the processor's output."""
        raise NotImplementedError

    # ------------------------------------------------------------------ anatomy
    def towers(self) -> dict[str, torch.nn.Module]:
        inner = self.model.model
        out = {"vision": inner.visual}
        if getattr(inner, "audio_tower", None) is not None:
            out["audio"] = inner.audio_tower
        return out

    def text_model(self) -> torch.nn.Module:
        return self.model.model.language_model

    def lm_head(self) -> torch.nn.Module:
        return self.model.lm_head

    def media_kinds(self, modality: Modality) -> tuple[str, ...]:
        return (
            (("video",) if modality.has_video else ())
            + (("image",) if modality.has_image else ())
            + (("audio",) if modality.has_audio else ())
        )

    def kind_modules(self, kind: str) -> list[torch.nn.Module]:
        return [self.towers()["audio" if kind == "audio" else "vision"]]

    def placeholder_ids(self) -> dict[str, int]:
        cfg = self.model.config
        ids = {"video": cfg.video_token_id, "image": cfg.image_token_id}
        if "audio" in self.towers():
            ids["audio"] = cfg.audio_token_id
        return ids

    def encode_kind(self, kind: str, prompts: list[PromptInputs]) -> list[MediaEmbeds]:
        """One batched tower run over ``prompts`` for ``kind``; per prompt its (n, H) embeddings and,
        for Qwen3's vision towers, its deepstack features (``extra["deepstack"]``, one per layer)."""
        if kind not in ("video", "image"):
            raise ValueError(f"{self.family} has no {kind!r} media")
        inner, dev = self.model.model, self.device
        names = ("pixel_values_videos", "video_grid_thw") if kind == "video" else ("pixel_values", "image_grid_thw")
        pv = torch.cat([p.mm[names[0]] for p in prompts]).to(dev)
        grid = torch.cat([p.mm[names[1]] for p in prompts]).to(dev)
        with grad_for(inner.visual):
            get = inner.get_video_features if kind == "video" else inner.get_image_features
            out = get(pv, grid, return_dict=True)
        deep = getattr(out, "deepstack_features", None)  # [layer][item] -> [item][layer]
        deep = list(zip(*deep, strict=True)) if deep else [None] * len(prompts)
        return [
            MediaEmbeds({kind: f}, {"deepstack": tuple(d)} if d is not None else {})
            for f, d in zip(out.pooler_output, deep)
        ]

    def decoder_extras(self, ids: torch.Tensor, masks: dict[str, torch.Tensor], media: list[MediaEmbeds]) -> dict:
        """Qwen3 (Omni and VL): the deepstack features go to the first text layers at the visual
        positions (``visual_pos_masks``, ``deepstack_visual_embeds``: rows in order); else none."""
        deep = [m.extra["deepstack"] for m in media if "deepstack" in m.extra]
        if not deep:
            return {}
        if any(m.video is not None and m.image is not None for m in media):
            raise NotImplementedError("deepstack features of a prompt holding both an image and a video")
        visual = masks["video"] | masks["image"]
        return {
            "visual_pos_masks": visual,
            "deepstack_visual_embeds": [torch.cat(layer).to(self.device) for layer in zip(*deep)],
        }
