"""The parts-family model: ``EmorlOmniForConditionalGeneration(model=EmorlOmniModel, lm_head)``.

``EmorlOmniModel`` holds ``vision_tower`` (any transformers vision encoder), ``audio_tower`` (an
audio encoder; Whisper's ``WhisperEncoder`` for ``whisper`` configs), ``vision_projector``,
``audio_projector``, ``language_model`` (any transformers decoder body) and, for HumanOmni's
instruction-conditioned fusion, ``fusion_text_encoder`` (BERT) and ``fusion_gate``. Media are
encoded once into (items, tokens, hidden) features and written over their placeholder tokens
with ``masked_scatter``; positions are the LLM's ordinary 1-D positions.

Input tensors:
    input_ids (B, L) with each clip's placeholders already expanded by the processor;
    pixel_values_videos (n_videos, T, 3, S, S), or a list of (T_i, 3, S, S) for clips of different
    lengths; pixel_values (n_images, 3, S, S) (an image is a one-frame clip); input_features
    (n_audios, mels, frames); fusion_input_ids /
    fusion_attention_mask (B, Lf): the instruction for the BERT gate, one row per sample.
Media items fill the placeholders in reading order (row by row).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModel, GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.utils.deprecation import deprecate_kwarg

from emorl.models.parts.configuration import BRANCHED_PROJECTORS, EmorlOmniConfig
from emorl.models.parts.projectors import (
    AllInOneProjector,
    AudioProjector,
    BertBranchGate,
    MlpVisionProjector,
    mix_branches,
    slow_fast,
)

MEDIA_KINDS = ("image", "video", "audio")


def build_audio_tower(config) -> nn.Module:
    """The encoder of an audio config: ``WhisperEncoder`` for Whisper (``AutoModel`` would build the
    encoder-decoder ``WhisperModel``), ``AutoModel.from_config`` otherwise (e.g. ``qwen2_audio_encoder``)."""
    if config.model_type == "whisper":
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        return WhisperEncoder(config)
    return AutoModel.from_config(config)


class EmorlOmniPreTrainedModel(PreTrainedModel):
    config: EmorlOmniConfig
    config_class = EmorlOmniConfig
    base_model_prefix = "model"
    input_modalities = ("image", "video", "audio", "text")
    supports_gradient_checkpointing = True
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True


class EmorlOmniModel(EmorlOmniPreTrainedModel):
    def __init__(self, config: EmorlOmniConfig):
        super().__init__(config)
        text_dim = config.text_config.hidden_size
        self.vision_tower = AutoModel.from_config(config.vision_config)
        # features come from a hidden layer: a pooling head (SigLIP's attention-pooling head) is kept
        # for the checkpoint's weights but not run (ZeRO-3 cannot gather nn.MultiheadAttention's
        # functional out_proj either)
        for body in (self.vision_tower, getattr(self.vision_tower, "vision_model", None)):
            if getattr(body, "use_head", False):
                body.use_head = False
        self.audio_tower = build_audio_tower(config.audio_config)
        vdim = config.vision_config.hidden_size
        if config.vision_projector_type in BRANCHED_PROJECTORS:
            self.vision_projector = AllInOneProjector(
                vdim, text_dim, small=config.vision_projector_type.endswith("small")
            )
        else:
            self.vision_projector = MlpVisionProjector(
                config.vision_projector_type, vdim, text_dim, config.vision_spatial_pool
            )
        adim = getattr(config.audio_config, "d_model", None) or config.audio_config.hidden_size
        self.audio_projector = AudioProjector(config.audio_projector_type, adim, text_dim, config.audio_pool_stride)
        if config.fusion_type == "bert_gate":
            self.fusion_text_encoder = AutoModel.from_config(config.fusion_text_config)
            self.fusion_gate = BertBranchGate(config.fusion_text_config.hidden_size, config.fusion_gate_hidden_size)
        self.language_model = AutoModel.from_config(config.text_config)
        self.post_init()

    # ---- anatomy -------------------------------------------------------------------------
    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.language_model.set_input_embeddings(value)

    @property
    def decoder_layers(self) -> nn.ModuleList:
        """The LLM's decoder layers (FSDP / activation-checkpointing units)."""
        return self.language_model.layers

    def media_modules(self) -> dict[str, nn.Module]:
        """Every module outside the LLM by attribute name: towers, projectors and (HumanOmni fusion)
        ``fusion_text_encoder`` / ``fusion_gate``."""
        names = (
            "vision_tower",
            "audio_tower",
            "vision_projector",
            "audio_projector",
            "fusion_text_encoder",
            "fusion_gate",
        )
        return {n: getattr(self, n) for n in names if hasattr(self, n)}

    # ---- media encoders ------------------------------------------------------------------
    def get_fusion_weights(self, fusion_input_ids: torch.Tensor, fusion_attention_mask: torch.Tensor | None = None):
        """Branch weights (rows, 3) from BERT's [CLS] state of each row's instruction."""
        if self.config.fusion_type is None:
            raise ValueError("this model has no fusion gate (fusion_type is None)")
        cls = self.fusion_text_encoder(input_ids=fusion_input_ids, attention_mask=fusion_attention_mask)
        return self.fusion_gate(cls.last_hidden_state[:, 0])

    def _frame_features(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) -> (N, g*g, c): the selected hidden layer of the vision tower."""
        out = self.vision_tower(pixel_values=frames.to(self.vision_tower.dtype), output_hidden_states=True)
        hidden = out.hidden_states[self.config.vision_feature_layer]
        return hidden[:, 1:] if self.config.vision_feature_select_strategy == "default" else hidden

    def get_video_features(self, pixel_values_videos: torch.Tensor, branch_weights: torch.Tensor | None = None):
        """(b, T, 3, S, S) -> (b, tokens, hidden). ``branch_weights`` (b, 3) is required by the
        three-branch projectors (``get_fusion_weights``)."""
        return self.project_video_features(self.get_video_tower_features(pixel_values_videos), branch_weights)

    def get_video_tower_features(self, pixel_values_videos: torch.Tensor) -> torch.Tensor:
        """(b, T, 3, S, S) -> (b, T, g*g, c): the vision tower's selected layer per frame, before the
        projector (what a frozen tower gives whatever the projector's weights)."""
        b, t = pixel_values_videos.shape[:2]
        feats = self._frame_features(pixel_values_videos.flatten(0, 1))
        return feats.reshape(b, t, feats.shape[1], feats.shape[2])

    def project_video_features(self, feats: torch.Tensor, branch_weights: torch.Tensor | None = None):
        """(b, T, g*g, c) tower features -> (b, tokens, hidden): the projector (the branches mixed by
        ``branch_weights`` for a three-branch one) and the video compressor."""
        t = feats.shape[1]
        if self.config.vision_projector_type in BRANCHED_PROJECTORS:
            if branch_weights is None:
                raise ValueError(
                    f"{self.config.vision_projector_type} needs branch weights: pass fusion_input_ids "
                    "(the instruction, tokenized by the processor's fusion tokenizer)"
                )
            out = mix_branches(*self.vision_projector(feats), branch_weights)
        else:
            out = self.vision_projector(feats)
        if self.config.video_compressor == "slow_fast":
            out = torch.stack([slow_fast(o, t) for o in out])
        return out

    def get_image_features(self, pixel_values: torch.Tensor, branch_weights: torch.Tensor | None = None):
        """(b, 3, S, S) -> (b, tokens, hidden): an image is a one-frame clip."""
        return self.get_video_features(pixel_values[:, None], branch_weights)

    def get_audio_features(self, input_features: torch.Tensor) -> torch.Tensor:
        """(b, mels, frames) -> (b, frames_out // audio_pool_stride, hidden)."""
        return self.audio_projector(self.get_audio_tower_features(input_features))

    def get_audio_tower_features(self, input_features: torch.Tensor) -> torch.Tensor:
        """(b, mels, frames) -> (b, frames_out, d): the audio tower's output, before the projector."""
        return self.audio_tower(input_features=input_features.to(self.audio_tower.dtype)).last_hidden_state

    def get_media_features(
        self,
        input_ids: torch.Tensor | None = None,
        *,
        pixel_values=None,
        pixel_values_videos=None,
        input_features=None,
        fusion_input_ids=None,
        fusion_attention_mask=None,
    ) -> dict[str, torch.Tensor]:
        """Encode every given medium once: {"image"|"video"|"audio": (items, tokens, hidden)}; for a
        list of clips of different lengths, "video" is (total tokens, hidden), clips in order. With a
        fusion gate, each visual item takes the gate weights of the sample (row of ``input_ids``)
        whose placeholders it fills."""
        gate = None
        if self.config.fusion_type is not None and (pixel_values is not None or pixel_values_videos is not None):
            if fusion_input_ids is None:
                raise ValueError(
                    "this model's video projector is gated by the instruction: pass fusion_input_ids "
                    "(processor(..., fusion_text=...))"
                )
            gate = self.get_fusion_weights(fusion_input_ids, fusion_attention_mask)
        feats: dict[str, torch.Tensor] = {}
        geometry = self.config.media_geometry()
        if pixel_values is not None:
            weights = (
                None
                if gate is None
                else gate[
                    self._item_rows(input_ids, "image", [geometry.video_tokens(1)] * len(pixel_values), gate.shape[0])
                ]
            )
            feats["image"] = self.get_image_features(pixel_values, weights)
        if pixel_values_videos is not None:
            clips = list(pixel_values_videos)
            weights = (
                None
                if gate is None
                else gate[
                    self._item_rows(
                        input_ids, "video", [geometry.video_tokens(c.shape[0]) for c in clips], gate.shape[0]
                    )
                ]
            )
            if torch.is_tensor(pixel_values_videos):
                feats["video"] = self.get_video_features(pixel_values_videos, weights)
            else:
                feats["video"] = self._ragged_video_features(clips, weights)
        if input_features is not None:
            feats["audio"] = self.get_audio_features(input_features)
        return feats

    def _ragged_video_features(self, clips: list[torch.Tensor], weights: torch.Tensor | None) -> torch.Tensor:
        """Clips (T_i, 3, S, S) of different lengths, encoded in batches of equal length: (total tokens, hidden)."""
        out: list[torch.Tensor | None] = [None] * len(clips)
        for t in sorted({c.shape[0] for c in clips}):
            idx = [i for i, c in enumerate(clips) if c.shape[0] == t]
            got = self.get_video_features(
                torch.stack([clips[i] for i in idx]), None if weights is None else weights[idx]
            )
            for i, f in zip(idx, got):
                out[i] = f
        return torch.cat(out)

    def _item_rows(self, input_ids, kind: str, counts: list[int], n_rows: int) -> torch.Tensor:
        """Index of the sample each media item belongs to (the row of its placeholders); ``counts``:
        each item's number of placeholder tokens, items in reading order."""
        n_items = len(counts)
        if input_ids is None:
            if n_rows != n_items:
                raise ValueError(f"without input_ids, fusion rows ({n_rows}) must match the {kind} items ({n_items})")
            return torch.arange(n_items, device=self.device)
        rows = torch.nonzero(input_ids == self.placeholder_id(kind))[:, 0]
        if n_items == 0 or rows.numel() != sum(counts):
            raise ValueError(f"{rows.numel()} {kind} placeholder tokens for {n_items} items of {sum(counts)} tokens")
        starts = torch.tensor([0, *counts[:-1]], device=rows.device).cumsum(0)
        return rows[starts]

    def placeholder_id(self, kind: str) -> int:
        return int(getattr(self.config, f"{kind}_token_id"))

    def embed_inputs(
        self, input_ids: torch.Tensor, *, media_features: dict[str, torch.Tensor] | None = None, **media
    ) -> torch.Tensor:
        """Token embeddings of ``input_ids`` with every media placeholder replaced by its features.
        ``media_features`` (from ``get_media_features``, possibly reused across calls) or the raw
        media keyword arguments of ``get_media_features``. Raises ValueError when placeholder
        and feature counts differ."""
        embeds = self.get_input_embeddings()(input_ids)
        if media_features is None:
            media_features = (
                self.get_media_features(input_ids, **media) if any(v is not None for v in media.values()) else {}
            )
        for kind in MEDIA_KINDS:
            mask = input_ids == self.placeholder_id(kind)
            n_tokens = int(mask.sum())
            feats = media_features.get(kind)
            if feats is None:
                if n_tokens:
                    raise ValueError(f"{n_tokens} {kind} placeholder tokens in input_ids but no {kind} inputs")
                continue
            if n_tokens * feats.shape[-1] != feats.numel():
                raise ValueError(
                    f"{kind}: {n_tokens} placeholder tokens but {feats.shape[0]} items x "
                    f"{feats.shape[1]} tokens of features"
                )
            embeds = embeds.masked_scatter(mask[..., None], feats.to(embeds.dtype))
        return embeds

    # ---- forward -------------------------------------------------------------------------
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids=None,
        pixel_values=None,
        pixel_values_videos=None,
        input_features=None,
        fusion_input_ids=None,
        fusion_attention_mask=None,
        attention_mask=None,
        position_ids=None,
        cache=None,
        inputs_embeds=None,
        use_cache=None,
        media_features=None,
        **kwargs,
    ):
        """Run the LLM on text + media; returns the LLM's ``BaseModelOutputWithPast``."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        media = {
            "pixel_values": pixel_values,
            "pixel_values_videos": pixel_values_videos,
            "input_features": input_features,
            "fusion_input_ids": fusion_input_ids,
            "fusion_attention_mask": fusion_attention_mask,
        }
        if inputs_embeds is None:
            inputs_embeds = self.embed_inputs(input_ids, media_features=media_features, **media)
        elif media_features is not None or any(v is not None for k, v in media.items() if not k.startswith("fusion")):
            raise ValueError("media inputs with inputs_embeds: build the embeddings with embed_inputs instead")
        return self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=use_cache,
            **kwargs,
        )


class EmorlOmniForConditionalGeneration(EmorlOmniPreTrainedModel, GenerationMixin):
    """The parts-family omni model with its LM head. Towers: ``model.vision_tower``,
    ``model.audio_tower``; projectors: ``model.vision_projector``, ``model.audio_projector``;
    HumanOmni fusion: ``model.fusion_text_encoder``, ``model.fusion_gate``; LLM body:
    ``model.language_model`` (decoder layers: ``decoder_layers``); head: ``lm_head`` (tied to the
    input embeddings when the LLM part ties them)."""

    _tied_weights_keys = {"lm_head.weight": "model.language_model.embed_tokens.weight"}  # noqa: RUF012

    def __init__(self, config: EmorlOmniConfig):
        super().__init__(config)
        self.model = EmorlOmniModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        # LLMs name their embedding table differently (embed_tokens, wte, ...): tie to the real one
        emb = self.model.language_model.get_input_embeddings()
        name = next(n for n, m in self.model.language_model.named_modules() if m is emb)
        self._tied_weights_keys = {"lm_head.weight": f"model.language_model.{name}.weight"}
        self.post_init()

    def get_input_embeddings(self):
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    @property
    def decoder_layers(self) -> nn.ModuleList:
        return self.model.decoder_layers

    def media_modules(self) -> dict[str, nn.Module]:
        return self.model.media_modules()

    def freeze_towers(self, frozen: bool = True) -> None:
        """Set ``requires_grad=not frozen`` on the vision and audio towers (HumanOmni trains neither)."""
        for tower in (self.model.vision_tower, self.model.audio_tower):
            tower.requires_grad_(not frozen)

    def get_media_features(self, input_ids=None, **media) -> dict[str, torch.Tensor]:
        return self.model.get_media_features(input_ids, **media)

    def embed_inputs(self, input_ids, *, media_features=None, **media) -> torch.Tensor:
        return self.model.embed_inputs(input_ids, media_features=media_features, **media)

    def prepare_inputs_for_generation(self, *args, is_first_iteration: bool | None = False, **kwargs):
        """transformers' preparation, and the gate's instruction (like the media, which transformers
        drops itself) passed in the prefill only: decode steps hold no placeholders."""
        inputs = super().prepare_inputs_for_generation(*args, is_first_iteration=is_first_iteration, **kwargs)
        if not is_first_iteration and kwargs.get("use_cache", True):
            for key in ("fusion_input_ids", "fusion_attention_mask", "media_features"):
                inputs.pop(key, None)
        return inputs

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids=None,
        pixel_values=None,
        pixel_values_videos=None,
        input_features=None,
        fusion_input_ids=None,
        fusion_attention_mask=None,
        attention_mask=None,
        position_ids=None,
        cache=None,
        inputs_embeds=None,
        labels=None,
        use_cache=None,
        logits_to_keep: int | torch.Tensor = 0,
        media_features=None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """Logits (B, L, vocab) of the LLM over text + media (loss when ``labels`` is given)."""
        out: BaseModelOutputWithPast = self.model(
            input_ids=input_ids,
            pixel_values=pixel_values,
            pixel_values_videos=pixel_values_videos,
            input_features=input_features,
            fusion_input_ids=fusion_input_ids,
            fusion_attention_mask=fusion_attention_mask,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            media_features=media_features,
            **kwargs,
        )
        hidden = out.last_hidden_state
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(hidden[:, keep, :])
        loss = None
        if labels is not None:
            loss = self.loss_function(
                logits=logits, labels=labels, vocab_size=self.config.text_config.vocab_size, **kwargs
            )
        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            cache=getattr(out, "cache", None),
            hidden_states=out.hidden_states,
            attentions=out.attentions,
        )
