"""The Qwen2.5-Omni and Qwen3-Omni thinker families: adapter (``QwenOmniAdapter``) and tiny builder
(``emorl.models.qwen_omni.tiny``)."""

from emorl.models.qwen_omni.adapter import QwenOmniAdapter, pad_audio_features

__all__ = ["QwenOmniAdapter", "pad_audio_features"]
