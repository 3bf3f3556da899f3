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
import torch.nn.functional as F

from emorl.models.adapter import Completions, MediaEmbeds, Modality, PromptInputs, SamplingParams
from emorl.models.base import FamilyAdapter
from emorl.models.group import check_modalities, grad_for, split_completions
from emorl.models.registry import check_model_path

# never sampled: a placeholder in a completion would shift the media scatter of every later pass
MM_SPECIALS = ("<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>", "<|vision_bos|>", "<|vision_eos|>", "<|IMAGE|>",
               "<|VIDEO|>", "<|im_start|>", "<|endoftext|>",  # Qwen2.5-Omni
               "<|vision_start|>", "<|vision_end|>", "<|video_pad|>", "<|image_pad|>", "<|vision_pad|>",
               "<|audio_pad|>", "<|audio_start|>", "<|audio_end|>")  # Qwen3-Omni, Qwen2.5-VL, Qwen3-VL


def checkpoint_config(path: str | Path) -> dict:
    """A local checkpoint's config.json ({} for a hub id or a folder without one)."""
    cfg_file = Path(path) / "config.json"
    return json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}


class QwenAdapter(FamilyAdapter):
    """Shared by the Qwen family adapters; not registered itself."""

    def __init__(self, model, processor, *, device: str | torch.device = "cpu", frame_pixels: int | None = None,
                 group_aware: bool = True, encoder_cache=None, decode_mode: str = "auto"):
        tok = processor.tokenizer
        eos = tok.convert_tokens_to_ids("<|im_end|>")
        vocab = tok.get_vocab()
        n_vocab = model.get_output_embeddings().weight.shape[0]
        suppress = [vocab[t] for t in MM_SPECIALS if t in vocab] + list(range(len(tok), n_vocab))
        super().__init__(model, tok, device=device, eos_id=eos, pad_id=tok.pad_token_id, suppress=suppress,
                         group_aware=group_aware, encoder_cache=encoder_cache, decode_mode=decode_mode)
        self.processor = processor
        self.frame_pixels = frame_pixels

    # ------------------------------------------------------------------ loading and saving
    @classmethod
    def model_class(cls, config: dict):
        """The transformers class for a checkpoint's config.json contents."""
        raise NotImplementedError

    @classmethod
    def from_pretrained(cls, path: str | Path, *, dtype: str = "float32", device: str = "cpu",
                        frame_pixels: int | None = None, attn_implementation: str = "sdpa"):
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
    def encode(self, frames: np.ndarray | None, audio: np.ndarray | None, text: str, modality: Modality, *,
               fps: float | None = None, key: str = "") -> PromptInputs:
        """Render ``text`` as a user turn with the media ``modality`` asks for and run the processor.

        frames: (T, H, W, 3) uint8; audio: (S,) float32 at 16 kHz; fps: frames per second of the
        *sampled* frames (T / clip duration), so the positions follow the clip's time. An
        ``IMAGE`` prompt takes the one frame of a still image (of several, the middle one) as an
        image: the family's image placeholder and image inputs."""
        if modality not in self.modalities:
            raise ValueError(f"{key or 'prompt'}: {self.family} takes {', '.join(m.value for m in self.modalities)} "
                             f"prompts, not {modality.value} (set data.modality to one of them)")
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
        rendered = self.processor.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                                      add_generation_prompt=True)
        kw: dict = {"text": [rendered], "return_tensors": "pt"}
        if modality.has_video:
            kw.update(videos=[frames], videos_kwargs=self._video_kwargs(frames, fps))
        if modality.has_image:
            kw.update(images=[frames[len(frames) // 2]], images_kwargs=self._image_kwargs())
        kw.update(self._audio_kwargs(audio, modality))
        out = self.processor(**kw)
        return PromptInputs(input_ids=out["input_ids"][0], mm=self._mm_of(out, modality), modality=modality, key=key)

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
        return ((("video",) if modality.has_video else ()) + (("image",) if modality.has_image else ())
                + (("audio",) if modality.has_audio else ()))

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
        return [MediaEmbeds({kind: f}, {"deepstack": tuple(d)} if d is not None else {})
                for f, d in zip(out.pooler_output, deep)]

    def decoder_extras(self, ids: torch.Tensor, masks: dict[str, torch.Tensor], media: list[MediaEmbeds]) -> dict:
        """Qwen3 (Omni and VL): the deepstack features go to the first text layers at the visual
        positions (``visual_pos_masks``, ``deepstack_visual_embeds``: rows in order); else none."""
        deep = [m.extra["deepstack"] for m in media if "deepstack" in m.extra]
        if not deep:
            return {}
        if any(m.video is not None and m.image is not None for m in media):
            raise NotImplementedError("deepstack features of a prompt holding both an image and a video")
        visual = masks["video"] | masks["image"]
        return {"visual_pos_masks": visual,
                "deepstack_visual_embeds": [torch.cat(layer).to(self.device) for layer in zip(*deep)]}

    # ------------------------------------------------------------------ rows paths
    def collate(self, prompts: list[PromptInputs]) -> dict:
        """Keyword arguments of the model's ``forward``/``generate`` for the media of ``prompts``
        (one row each), on the device."""
        raise NotImplementedError

    def positions_of_rows(self, prompts: list[PromptInputs], lengths: list[int], width: int) -> torch.Tensor:
        """(A, B, width) positions of right-padded rows [prompt | completion]: the prompt's own,
        then its maximum + 1 + k on every axis (pad slots: 1)."""
        per = [self.prompt_positions(p) for p in prompts]
        pos = torch.ones((per[0].shape[0], len(prompts), width), dtype=per[0].dtype)
        for i, (p, pp) in enumerate(zip(prompts, per)):
            pos[:, i, : p.length] = pp
            pos[:, i, p.length : lengths[i]] = pp.max() + 1 + torch.arange(lengths[i] - p.length)
        return pos

    @torch.no_grad()
    def sample_groups_rows(self, prompts: list[PromptInputs], group_size: int, params: SamplingParams) -> Completions:
        """The duplicated-rows path: each completion is its own row with its own copy of the media
        (never ``num_return_sequences``, which scrambles video patches), through ``generate``."""
        check_modalities(self, prompts)
        rows = [p for p in prompts for _ in range(group_size)]
        p_len = max(p.length for p in rows)
        ids = torch.full((len(rows), p_len), self.pad_id, dtype=torch.long)
        att = torch.zeros((len(rows), p_len), dtype=torch.long)
        for i, p in enumerate(rows):  # left padding for generation
            ids[i, p_len - p.length :] = p.input_ids
            att[i, p_len - p.length :] = 1
        mm = self.collate(rows)
        ids = ids.to(self.device)
        was_training = self.model.training
        self.model.eval()
        try:
            gen = self.model.generate(
                input_ids=ids, attention_mask=att.to(self.device), **mm, **self.generate_kwargs(ids),
                max_new_tokens=params.max_new_tokens, do_sample=not params.greedy,
                temperature=params.temperature if not params.greedy else None,
                top_p=params.top_p if not params.greedy else None,
                top_k=params.top_k if not params.greedy else None,
                suppress_tokens=self.suppress, eos_token_id=self.eos_id, pad_token_id=self.pad_id,
            )
        finally:
            self.model.train(was_training)
        return split_completions(self, gen[:, p_len:].cpu(), len(prompts), group_size)

    def completion_logprobs_rows(self, prompts: list[PromptInputs], completions: list[torch.Tensor], *,
                                 temperature: float = 1.0, with_entropy: bool = False):
        """The duplicated-rows path of ``completion_logprobs``: the model's own forward (towers and
        media scatter inside) over rows [prompt | completion | right padding], with explicit
        positions, so each prompt keeps the positions it had in generation. Only completion
        positions go through the LM head. Returns (logps (B, Lc), mask (B, Lc) float, entropy or None).
        """
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        check_modalities(self, prompts)
        b = len(prompts)
        lens = [p.length + len(c) for p, c in zip(prompts, completions)]
        l_max, lc_max = max(lens), max(len(c) for c in completions)
        ids = torch.full((b, l_max), self.pad_id, dtype=torch.long)
        att = torch.zeros((b, l_max), dtype=torch.long)
        tgt = torch.full((b, lc_max), self.pad_id, dtype=torch.long)
        src = torch.zeros((b, lc_max), dtype=torch.long)
        mask = torch.zeros((b, lc_max))
        for i, (p, c) in enumerate(zip(prompts, completions)):
            ids[i, : p.length] = p.input_ids
            ids[i, p.length : lens[i]] = c
            att[i, : lens[i]] = 1
            tgt[i, : len(c)] = c
            src[i, : len(c)] = torch.arange(p.length - 1, p.length - 1 + len(c))
            mask[i, : len(c)] = 1
        dev = self.device
        pos = self.positions_of_rows(prompts, lens, l_max).to(dev)
        mm = {k: v for k, v in self.collate(prompts).items() if k in self.forward_media_args}
        hidden = self.model.model(input_ids=ids.to(dev), attention_mask=att.to(dev), position_ids=pos, use_cache=False,
                                  **mm).last_hidden_state
        h = hidden.gather(1, src.to(dev).unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
        logits = self.model.lm_head(h).float() / temperature
        logp_all = F.log_softmax(logits, dim=-1)
        logps = logp_all.gather(-1, tgt.to(dev).unsqueeze(-1)).squeeze(-1)
        ent = None
        if with_entropy:
            ent = -(logp_all.exp() * logp_all).sum(-1).detach()
        return logps, mask.to(dev), ent

    forward_media_args: tuple[str, ...] = ()  # the collated arguments the inner model's forward takes

    def generate_kwargs(self, ids: torch.Tensor) -> dict:
        """Extra ``generate`` arguments for the left-padded prompt ids (B, P) of a rows batch."""
        return {}
