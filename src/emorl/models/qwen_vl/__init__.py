"""The Qwen2.5-VL and Qwen3-VL families: adapter (``QwenVLAdapter``) and tiny builder
(``emorl.models.qwen_vl.tiny``)."""

from emorl.models.qwen_vl.adapter import QwenVLAdapter

__all__ = ["QwenVLAdapter"]
