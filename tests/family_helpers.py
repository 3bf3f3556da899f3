"""The registered model families as test parameters (importable: tests/ is on sys.path)."""

from __future__ import annotations

from emorl.models.registry import FAMILIES

FAMILY_NAMES = list(FAMILIES)
# every family with every media condition it takes (text-only prompts aside)
FAMILY_MODALITIES = [(f, m) for f in FAMILIES for m in FAMILIES[f].modalities if m != "text"]
TINY_FRAME = {f: 2 * FAMILIES[f].frame_factor for f in FAMILIES}  # 56 (patch 14) or 64 (patch 16)
