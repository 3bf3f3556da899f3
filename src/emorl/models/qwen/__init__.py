"""Code shared by the Qwen model families (emorl.models.qwen_omni, emorl.models.qwen_vl)."""
