"""The parts family (``parts``, model_type ``emorl_omni``) on emorl's adapter surface: any causal LM
+ a vision encoder + an audio encoder + projectors (``EmorlOmniForConditionalGeneration``), HumanOmni
/ R1-Omni checkpoints converted into it included.

What the family is, seen from the adapter:

- inputs: ``EmorlOmniProcessor`` renders the LLM's chat template with one placeholder block per
  medium (content order video, audio, text, as HumanOmni), expands each placeholder to its
  medium's token count and gives ``pixel_values_videos`` (1, T, 3, S, S), ``pixel_values`` (1, 3,
  S, S) for a still image, ``input_features`` (1, mels, frames) (Whisper: its fixed window) and,
  for a gated model, ``fusion_input_ids`` (1, Lf): the instruction tokenized for BERT;
- positions: the LLM's plain 1-D positions (``arange(P)``); generated tokens continue at the
  prompt's length, which is its maximum + 1 as the group paths assume;
- the BERT gate (HumanOmni's instruction-conditioned mixing of the three vision branches): its
  per-prompt state is the prompt's own ``fusion_input_ids``, kept in ``PromptInputs.mm``. The gate
  runs inside ``encode_kind("video"|"image")``, so the mixed visual embeddings are complete media
  embeddings of that prompt: the group paths encode them once per prompt, the encoder cache keys
  them by the instruction too (it hashes every ``mm`` tensor), and the text model needs no extra
  argument (``decoder_extras`` is ``{}``). BERT and the gate count as projectors of the vision
  kind (``projectors``, ``kind_modules``): trainable or frozen with it;
- native preprocessing: the checkpoint's fixed frame count (``emorl_processor.json``
  ``num_frames``, 8 for R1-Omni) at segment middles (emorl's ``segment_middles``), frames handed
  over at their decoded size for the vision encoder's own processor (resize to its input side, after
  HumanOmni's pad-to-square when the checkpoint asks for it); audio 16 kHz mono, the audio encoder's
  window (Whisper: 30 s, padded or cut);
- rows paths: the model's own ``forward`` and ``generate``; clips of different lengths in one
  batch go as a list (the model encodes them in batches of equal length).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from emorl.models.adapter import FramePlan, MediaEmbeds, Modality, PromptInputs
from emorl.models.base import FamilyAdapter
from emorl.models.group import grad_for, trainable
from emorl.models.registry import check_model_path

KINDS = ("video", "image", "audio")


class PartsAdapter(FamilyAdapter):
    """OmniAdapter of a parts-family checkpoint: ``PartsAdapter.from_pretrained(path)``."""

    family = "parts"
    modalities = (Modality.AV, Modality.VIDEO, Modality.AUDIO, Modality.IMAGE, Modality.TEXT)
    one_modality_per_batch = False  # per-row media and 1-D positions: rows of any modality mix
    forward_media_args = (
        "pixel_values_videos",
        "pixel_values",
        "input_features",
        "fusion_input_ids",
        "fusion_attention_mask",
    )

    def __init__(
        self,
        model,
        processor,
        *,
        device: str | torch.device = "cpu",
        group_aware: bool = True,
        encoder_cache=None,
        decode_mode: str = "auto",
    ):
        tok = processor.tokenizer
        vocab = tok.get_vocab()
        # the chat template's turn end when the LLM has one (ChatML: SmolLM2-Instruct, Qwen2.5), else its EOS
        eos = vocab.get("<|im_end|>", tok.eos_token_id)
        if eos is None:
            raise ValueError("the parts checkpoint's tokenizer has no EOS token and no <|im_end|>")
        pad = tok.pad_token_id if tok.pad_token_id is not None else eos
        st = processor.settings
        markers = {*st.image_wrap, *st.video_wrap, *st.audio_wrap}
        # never sampled: a placeholder (or its marker) in a completion would shift every later media scatter
        specials = [processor.token(k) for k in KINDS] + sorted(m for m in markers if m in vocab)
        n_vocab = model.get_output_embeddings().weight.shape[0]
        suppress = [vocab[t] for t in specials] + list(range(len(tok), n_vocab))
        super().__init__(
            model,
            tok,
            device=device,
            eos_id=eos,
            pad_id=pad,
            suppress=suppress,
            group_aware=group_aware,
            encoder_cache=encoder_cache,
            decode_mode=decode_mode,
        )
        self.processor = processor

    # ------------------------------------------------------------------ loading and saving
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
        """Load a parts checkpoint (model + ``EmorlOmniProcessor``) from a local directory.
        ``frame_pixels`` is refused: frames are resized to the vision encoder's input size."""
        from emorl.models.parts import EmorlOmniForConditionalGeneration, EmorlOmniProcessor

        if frame_pixels:
            raise ValueError(
                f"model.frame_pixels={frame_pixels}: the parts family resizes frames to its vision "
                "encoder's input size; leave model.frame_pixels=0"
            )
        local = check_model_path(path)
        if not local.exists():
            raise FileNotFoundError(f"{path}: a parts checkpoint must be a local directory (emorl model build)")
        model = EmorlOmniForConditionalGeneration.from_pretrained(
            str(local), dtype=getattr(torch, dtype), attn_implementation=attn_implementation
        )
        model.to(device)
        return cls(model, EmorlOmniProcessor.from_pretrained(local), device=device)

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

    # ------------------------------------------------------------------ inputs
    @property
    def gated(self) -> bool:
        return self.model.config.fusion_type is not None

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
        """Render ``text`` as a user turn with the media ``modality`` asks for (video, audio, text
        in HumanOmni's order) and run the parts processor. frames: (T, H, W, 3) uint8 (an ``IMAGE``
        prompt takes the middle one); audio: (S,) float32 at 16 kHz; ``fps`` is not used (1-D
        positions carry no time)."""
        if modality not in self.modalities:
            raise ValueError(
                f"{key or 'prompt'}: parts takes {', '.join(m.value for m in self.modalities)} prompts, "
                f"not {modality.value}"
            )
        if modality.has_visual and frames is None:
            raise ValueError(f"{key or 'prompt'}: modality {modality.value} needs video frames, none given")
        if modality.has_audio and audio is None:
            raise ValueError(f"{key or 'prompt'}: modality {modality.value} needs audio, none given")
        content = [
            {"type": k}
            for k, on in (("video", modality.has_video), ("image", modality.has_image), ("audio", modality.has_audio))
            if on
        ]
        content.append({"type": "text", "text": text})
        proc = self.processor
        rendered = proc.apply_chat_template([{"role": "user", "content": content}])
        kw: dict = {}
        if modality.has_video:
            kw["videos"] = [frames]
        if modality.has_image:
            kw["images"] = [frames[len(frames) // 2]]
        if modality.has_audio:
            kw["audio"] = [audio]
        if self.gated and modality.has_visual:
            kw["fusion_text"] = [text]  # the instruction BERT reads (HumanOmni: the user text, no media tags)
        out = proc(rendered, **kw)
        mm = {
            k: out[k] for k in ("pixel_values_videos", "pixel_values", "input_features", "fusion_input_ids") if k in out
        }
        return PromptInputs(input_ids=out["input_ids"][0], mm=mm, modality=modality, key=key)

    def native_video(self, n_total: int, fps: float | None, height: int, width: int) -> FramePlan:
        """The checkpoint's fixed frame count at segment middles, at the decoded size (the vision
        encoder's processor resizes to its input side)."""
        from emorl.data.media import segment_middles

        n = self.processor.settings.num_frames
        idx = tuple(segment_middles(n_total, n))
        duration = n_total / fps if fps else 0.0
        return FramePlan(idx, None, n / duration if duration else 2.0)

    def native_preprocessing(self) -> dict:
        st, ip = self.processor.settings, self.processor.image_processor
        return {
            "family": self.family,
            "frames": st.num_frames,
            "placement": "segment_middles",
            "encoder_size": getattr(ip, "size", None),
            "pad_to_square": st.pad_to_square,
            "audio": f"{self.audio_sample_rate} Hz mono, the audio encoder's window",
        }

    # ------------------------------------------------------------------ anatomy
    def towers(self) -> dict[str, torch.nn.Module]:
        inner = self.model.model
        return {"vision": inner.vision_tower, "audio": inner.audio_tower}

    def projectors(self) -> dict[str, torch.nn.Module]:
        """The vision and audio projectors, and for a gated model BERT and the gate (they shape the
        visual embeddings like a projector)."""
        inner = self.model.model
        out = {"vision": inner.vision_projector, "audio": inner.audio_projector}
        if self.gated:
            out.update(fusion_text_encoder=inner.fusion_text_encoder, fusion_gate=inner.fusion_gate)
        return out

    def text_model(self) -> torch.nn.Module:
        return self.model.model.language_model

    def decoder_layers(self) -> list[torch.nn.Module]:
        return list(self.model.decoder_layers)

    def lm_head(self) -> torch.nn.Module:
        return self.model.lm_head

    def media_kinds(self, modality: Modality) -> tuple[str, ...]:
        return (
            (("video",) if modality.has_video else ())
            + (("image",) if modality.has_image else ())
            + (("audio",) if modality.has_audio else ())
        )

    def kind_modules(self, kind: str) -> list[torch.nn.Module]:
        p = self.projectors()
        if kind == "audio":
            return [self.towers()["audio"], p["audio"]]
        if kind in ("video", "image"):
            return [self.towers()["vision"], p["vision"]] + [
                p[k] for k in ("fusion_text_encoder", "fusion_gate") if k in p
            ]
        raise ValueError(f"parts has no {kind!r} media")

    def placeholder_ids(self) -> dict[str, int]:
        cfg = self.model.config
        return {"video": cfg.video_token_id, "image": cfg.image_token_id, "audio": cfg.audio_token_id}

    def _gate_weights(self, prompts: list[PromptInputs]) -> torch.Tensor | None:
        """(n, 3) branch weights of the prompts' instructions (BERT + gate), or None without a gate."""
        if not self.gated:
            return None
        ids, mask = pad_rows([p.mm["fusion_input_ids"][0] for p in prompts], self.fusion_pad_id)
        return self.model.model.get_fusion_weights(ids.to(self.device), mask.to(self.device))

    @property
    def fusion_pad_id(self) -> int:
        tok = self.processor.fusion_tokenizer
        return tok.pad_token_id if tok is not None and tok.pad_token_id is not None else 0

    def tower_modules(self, kind: str) -> list[torch.nn.Module]:
        """The modules before the projection of media ``kind`` (``encode_kind_towers``)."""
        if kind not in ("video", "image", "audio"):
            raise ValueError(f"parts has no {kind!r} media")
        return [self.towers()["audio" if kind == "audio" else "vision"]]

    def encode_kind(self, kind: str, prompts: list[PromptInputs]) -> list[MediaEmbeds]:
        """One encoder run over ``prompts`` for ``kind`` (clips of equal length batched together);
        per prompt its (n_placeholders, H) embeddings. The gate (when the model has one) mixes each
        prompt's vision branches with the weights of its own instruction."""
        return self.project_kind(kind, prompts, self.encode_kind_towers(kind, prompts))

    def encode_kind_towers(self, kind: str, prompts: list[PromptInputs]) -> list[MediaEmbeds]:
        """The tower half of ``encode_kind``: per prompt its tower features under ``kind`` — video
        (T, g*g, c) and image (1, g*g, c) from the vision tower's selected layer, audio (frames, d)
        from the audio tower. A frozen tower builds no graph; its features do not depend on the
        projectors, so the group paths may cache them while the projectors train."""
        inner, dev = self.model.model, self.device
        with grad_for(self.tower_modules(kind)[0]):
            if kind == "audio":
                feats = inner.get_audio_tower_features(torch.cat([p.mm["input_features"] for p in prompts]).to(dev))
                return [MediaEmbeds({"audio": f}) for f in feats]
            if kind == "image":
                feats = inner.get_video_tower_features(
                    torch.cat([p.mm["pixel_values"] for p in prompts]).to(dev)[:, None]
                )
                return [MediaEmbeds({"image": f}) for f in feats]
            if kind != "video":
                raise ValueError(f"parts has no {kind!r} media")
            out: list[MediaEmbeds | None] = [None] * len(prompts)
            for idx in _by_frames(prompts):
                pix = torch.cat([prompts[i].mm["pixel_values_videos"] for i in idx]).to(dev)
                for i, f in zip(idx, inner.get_video_tower_features(pix)):
                    out[i] = MediaEmbeds({"video": f})
            return out

    def project_kind(self, kind: str, prompts: list[PromptInputs], towers: list[MediaEmbeds]) -> list[MediaEmbeds]:
        """The projector half of ``encode_kind``: ``towers`` (``encode_kind_towers`` of the same
        prompts) -> per prompt its (n_placeholders, H) embeddings, batched as ``encode_kind``
        batches (clips of equal length together), so both give the same numbers."""
        inner = self.model.model
        with torch.set_grad_enabled(torch.is_grad_enabled() and any(trainable(m) for m in self.kind_modules(kind))):
            if kind == "audio":
                feats = inner.audio_projector(torch.stack([t.audio for t in towers]))
                return [MediaEmbeds({"audio": f}) for f in feats]
            weights = self._gate_weights(prompts)
            if kind == "image":
                feats = inner.project_video_features(torch.stack([t.image for t in towers]), weights)
                return [MediaEmbeds({"image": f}) for f in feats]
            if kind != "video":
                raise ValueError(f"parts has no {kind!r} media")
            out: list[MediaEmbeds | None] = [None] * len(prompts)
            for idx in _by_frames(prompts):
                got = inner.project_video_features(
                    torch.stack([towers[i].video for i in idx]), None if weights is None else weights[idx]
                )
                for i, f in zip(idx, got):
                    out[i] = MediaEmbeds({"video": f})
            return out

    def prompt_positions(self, prompt: PromptInputs) -> torch.Tensor:
        """(1, P) plain positions 0..P-1."""
        return torch.arange(prompt.length)[None]

    # ------------------------------------------------------------------ rows paths
    def collate(self, prompts: list[PromptInputs]) -> dict:
        """Media of the rows for ``forward``/``generate``: per kind the rows' items in row order
        (clips of different lengths as a list); the gate's instructions one row per sample,
        right-padded (a row without visual media repeats another row's: its weights go unused)."""
        dev = self.device
        mm: dict = {}
        clips = [p.mm["pixel_values_videos"] for p in prompts if "pixel_values_videos" in p.mm]
        if clips:
            same = len({tuple(c.shape) for c in clips}) == 1
            mm["pixel_values_videos"] = torch.cat(clips).to(dev) if same else [c[0].to(dev) for c in clips]
        for k in ("pixel_values", "input_features"):
            parts = [p.mm[k] for p in prompts if k in p.mm]
            if parts:
                mm[k] = torch.cat(parts).to(dev)
        if self.gated and (clips or "pixel_values" in mm):
            filler = next(p.mm["fusion_input_ids"][0] for p in prompts if "fusion_input_ids" in p.mm)
            ids, mask = pad_rows(
                [p.mm["fusion_input_ids"][0] if "fusion_input_ids" in p.mm else filler for p in prompts],
                self.fusion_pad_id,
            )
            mm["fusion_input_ids"], mm["fusion_attention_mask"] = ids.to(dev), mask.to(dev)
        return mm


def _by_frames(prompts: list[PromptInputs]) -> list[list[int]]:
    """Indices of the prompts whose clips have the same frame count, by increasing count."""
    counts = [p.mm["pixel_values_videos"].shape[1] for p in prompts]
    return [[i for i, c in enumerate(counts) if c == t] for t in sorted(set(counts))]


def pad_rows(rows: list[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad 1-D token rows to (n, L) with ``pad_id``; returns (ids, attention mask)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return ids, mask
