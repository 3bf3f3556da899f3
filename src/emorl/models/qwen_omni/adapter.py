"""Qwen2.5-Omni and Qwen3-Omni thinkers (families ``qwen2.5-omni``, ``qwen3-omni``).

The only module that knows these thinkers' tensors: ``pixel_values_videos``, ``video_grid_thw``,
``video_second_per_grid``, ``input_features`` with ``feature_attention_mask``, and TMRoPE's
``use_audio_in_video`` (audio interleaved with the video's time chunks in an AV prompt). Positions
come from the thinker's ``get_rope_index`` with the grids, seconds per grid and audio lengths.
"""

from __future__ import annotations

import torch

from emorl.models.adapter import MediaEmbeds, Modality, PromptInputs
from emorl.models.group import grad_for
from emorl.models.qwen.base import QwenAdapter


def pad_audio_features(prompts: list[PromptInputs]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad each prompt's log-mel (n_mels, F_i) to (B, n_mels, F_max) with its (B, F_max) mask."""
    feats = [p.mm["input_features"] for p in prompts]
    n_max = max(f.shape[-1] for f in feats)
    x = feats[0].new_zeros(len(feats), feats[0].shape[0], n_max)
    m = torch.zeros(len(feats), n_max, dtype=torch.long)
    for i, f in enumerate(feats):
        x[i, :, : f.shape[-1]] = f
        m[i, : f.shape[-1]] = 1
    return x, m


def audio_pad_length(n: int, feature_extractor) -> int:
    """Samples the log-mel input is zero-padded to: the clip's own length plus one STFT window,
    rounded up to a hop, instead of Whisper's 30 s. Every valid frame's window then sees the same
    zeros past the clip end as under 30 s padding (without the extra window, the last frame of a
    clip whose length is a multiple of the hop sees reflected samples and differs by ~0.1), so the
    valid frames, the only ones the model reads, are identical, and feature extraction is ~8x
    cheaper (tests/unit/test_audio_features.py)."""
    hop, n_fft = feature_extractor.hop_length, feature_extractor.n_fft
    return -(-(n + n_fft) // hop) * hop


class QwenOmniAdapter(QwenAdapter):
    """OmniAdapter for Qwen2.5-Omni / Qwen3-Omni thinkers.

    Load from a local directory or a hub id: ``QwenOmniAdapter.from_pretrained(path)``. A full
    omni checkpoint (thinker + talker) loads its thinker only.
    """

    modalities = (Modality.AV, Modality.VIDEO, Modality.AUDIO, Modality.IMAGE, Modality.TEXT)
    one_modality_per_batch = True  # forward/generate take use_audio_in_video for the whole batch
    forward_media_args = (
        "pixel_values_videos",
        "video_grid_thw",
        "video_second_per_grid",
        "input_features",
        "feature_attention_mask",
        "pixel_values",
        "image_grid_thw",
    )

    @property
    def family(self) -> str:
        return "qwen3-omni" if self.model.config.model_type.startswith("qwen3_omni") else "qwen2.5-omni"

    @classmethod
    def model_class(cls, config: dict):
        import transformers

        if config.get("model_type", "").startswith("qwen3_omni"):
            return transformers.Qwen3OmniMoeThinkerForConditionalGeneration
        return transformers.Qwen2_5OmniThinkerForConditionalGeneration

    # ------------------------------------------------------------------ inputs
    @staticmethod
    def usage_code(**kw) -> str:
        """The model card's transformers-only usage code (emorl.models.qwen_omni.usage)."""
        from emorl.models.qwen_omni.usage import usage_code

        return usage_code(**kw)

    def _audio_kwargs(self, audio, modality: Modality) -> dict:
        if not modality.has_audio:
            return {}
        kw = {
            "audio_kwargs": {"max_length": audio_pad_length(len(audio), self.processor.feature_extractor)},
            "audio": [audio],
        }
        if modality == Modality.AV:
            kw.update(load_audio_from_video=True, audio_from_video_indices=[0])
        return kw

    def _mm_of(self, out, modality: Modality) -> dict[str, torch.Tensor]:
        mm: dict[str, torch.Tensor] = {}
        names = (
            ("pixel_values_videos", "video_grid_thw", "video_second_per_grid")
            if modality.has_video
            else ("pixel_values", "image_grid_thw")
            if modality.has_image
            else ()
        )
        for k in names:
            if k in out:
                v = out[k]
                mm[k] = v if torch.is_tensor(v) else torch.tensor(v)
        if modality.has_audio:
            n = int(out["feature_attention_mask"][0].sum())
            mm["input_features"] = out["input_features"][0, :, :n].contiguous()
        return mm

    # ------------------------------------------------------------------ anatomy
    def encode_kind(self, kind: str, prompts: list[PromptInputs]) -> list[MediaEmbeds]:
        if kind != "audio":
            return super().encode_kind(kind, prompts)
        inner = self.model.model
        x, m = pad_audio_features(prompts)
        with grad_for(inner.audio_tower):
            out = inner.get_audio_features(x.to(self.device), m.to(self.device), return_dict=True).last_hidden_state
        # each prompt's share is its number of audio placeholders (the processor computed it with
        # the family's own length formula)
        n_tokens = [int((p.input_ids == self.model.config.audio_token_id).sum()) for p in prompts]
        if sum(n_tokens) != out.shape[0]:
            raise ValueError(f"audio tower gave {out.shape[0]} features for {sum(n_tokens)} audio placeholder tokens")
        return [MediaEmbeds({"audio": a}) for a in torch.split(out, n_tokens)]

    def prompt_positions(self, prompt: PromptInputs) -> torch.Tensor:
        """TMRoPE positions (3, P) from ``get_rope_index`` with the image or video grid, seconds
        per grid and audio length (``use_audio_in_video`` for AV prompts)."""
        ids = prompt.input_ids.unsqueeze(0)
        mm, mod = prompt.mm, prompt.modality
        alen = torch.tensor([mm["input_features"].shape[-1]]) if mod.has_audio else None
        pos, _ = self.model.get_rope_index(
            ids,
            mm.get("image_grid_thw"),
            mm.get("video_grid_thw"),
            torch.ones_like(ids),
            mod == Modality.AV,
            alen,
            mm.get("video_second_per_grid"),
        )
        return pos[:, 0]

    # ------------------------------------------------------------------ rows paths
    def collate(self, prompts: list[PromptInputs]) -> dict:
        mod = prompts[0].modality
        dev = self.device
        mm: dict = {}
        if mod.has_video:
            for k in ("pixel_values_videos", "video_grid_thw", "video_second_per_grid"):
                mm[k] = torch.cat([p.mm[k] for p in prompts]).to(dev)
        if mod.has_image:
            for k in ("pixel_values", "image_grid_thw"):
                mm[k] = torch.cat([p.mm[k] for p in prompts]).to(dev)
        if mod.has_audio:
            x, m = pad_audio_features(prompts)
            mm["input_features"], mm["feature_attention_mask"] = x.to(dev), m.to(dev)
        mm["use_audio_in_video"] = mod == Modality.AV
        return mm
