"""Supervised fine-tuning (``emorl sft``): the loop (``loop``), its data and loss (``batch``) and
validation (``val``); see ``emorl.sft.loop`` for what it does."""

from emorl.sft.batch import label_target, sft_targets
from emorl.sft.loop import train_sft

__all__ = ["label_target", "sft_targets", "train_sft"]
