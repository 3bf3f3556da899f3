"""The "parts" omni family: any causal LM + any vision encoder + any audio encoder + projectors,
as one transformers checkpoint (model_type ``emorl_omni``), and HumanOmni / R1-Omni checkpoints
converted into it. Importing this package registers the config and model classes with
transformers' Auto classes (no disk access)."""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForImageTextToText

from emorl.models.parts.configuration import EmorlOmniConfig, MediaGeometry
from emorl.models.parts.modeling import EmorlOmniForConditionalGeneration, EmorlOmniModel
from emorl.models.parts.processing import EmorlOmniProcessor

AutoConfig.register(EmorlOmniConfig.model_type, EmorlOmniConfig, exist_ok=True)
AutoModel.register(EmorlOmniConfig, EmorlOmniModel, exist_ok=True)
AutoModelForCausalLM.register(EmorlOmniConfig, EmorlOmniForConditionalGeneration, exist_ok=True)
AutoModelForImageTextToText.register(EmorlOmniConfig, EmorlOmniForConditionalGeneration, exist_ok=True)

__all__ = [
    "EmorlOmniConfig",
    "EmorlOmniForConditionalGeneration",
    "EmorlOmniModel",
    "EmorlOmniProcessor",
    "MediaGeometry",
]
