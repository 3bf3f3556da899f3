"""Sharing a trained model: ``export`` (a plain transformers checkpoint, LoRA merged, emorl-only
files dropped), ``card`` (its README.md model card in the hub's format) and ``hub`` (upload with
huggingface_hub). Nothing else in emorl imports this package."""
