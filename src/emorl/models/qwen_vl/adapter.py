"""Qwen2.5-VL and Qwen3-VL (families ``qwen2.5-vl``, ``qwen3-vl``): video, still images and text in,
no audio.

The only module that knows these models' tensors: ``pixel_values_videos`` with ``video_grid_thw``
(``pixel_values`` with ``image_grid_thw`` for an image),
Qwen2.5-VL's ``second_per_grid_ts`` (temporal positions scaled by ``tokens_per_second``), the
``mm_token_type_ids`` their ``get_rope_index`` needs (text 0, image 1, video 2), and Qwen3-VL's
per-frame timestamps (written by its processor from the frames' ``VideoMetadata``) and deepstack
features (through the shared Qwen ``decoder_extras``).

Positions: the prompt's from the model's own ``get_rope_index``; generated tokens continue at the
prompt's maximum position + 1, as transformers' ``generate`` does with its rope deltas. (In
transformers 5.24 a single forward over [prompt | completion] would instead continue Qwen2.5-VL's
text from the last prompt position + 1; the two differ when a video's scaled temporal extent
exceeds its spatial one. emorl follows ``generate``, so sampling and scoring agree.)
"""

from __future__ import annotations

import numpy as np
import torch

from emorl.models.adapter import Modality, PromptInputs
from emorl.models.qwen.base import QwenAdapter


class QwenVLAdapter(QwenAdapter):
    """OmniAdapter for Qwen2.5-VL / Qwen3-VL ``ForConditionalGeneration`` checkpoints."""

    modalities = (Modality.VIDEO, Modality.IMAGE, Modality.TEXT)
    one_modality_per_batch = False  # per-row media and positions: video, image and text rows mix
    forward_media_args = ("pixel_values_videos", "video_grid_thw", "pixel_values", "image_grid_thw")

    @property
    def family(self) -> str:
        return "qwen3-vl" if self._qwen3 else "qwen2.5-vl"

    @property
    def _qwen3(self) -> bool:
        return self.model.config.model_type == "qwen3_vl"

    @classmethod
    def model_class(cls, config: dict):
        import transformers

        if config.get("model_type") == "qwen3_vl":
            return transformers.Qwen3VLForConditionalGeneration
        return transformers.Qwen2_5_VLForConditionalGeneration

    # ------------------------------------------------------------------ inputs
    def _video_kwargs(self, frames: np.ndarray, fps: float | None) -> dict:
        """The frames are emorl's own sample at ``fps``: the processor keeps them (no resampling)
        and reads their rate from the metadata (Qwen2.5-VL: seconds per temporal patch; Qwen3-VL:
        the per-frame timestamps)."""
        from transformers.video_utils import VideoMetadata

        n = len(frames)
        vkw: dict = {
            "video_metadata": [VideoMetadata(total_num_frames=n, fps=float(fps or 2.0), frames_indices=list(range(n)))],
            "do_sample_frames": False,
        }
        if self.frame_pixels:  # an exact pixel budget per frame, no per-frame cap on top of it
            pixels = self.frame_pixels
            if self._qwen3:  # Qwen3-VL's video budget counts every frame (padded to whole temporal patches)
                t = self.processor.video_processor.temporal_patch_size
                pixels *= max(t, round(n / t) * t)
            vkw["size"] = {"shortest_edge": pixels, "longest_edge": pixels}
            vkw["cap_pixels_per_frame"] = False
        return vkw

    def _mm_of(self, out, modality: Modality) -> dict[str, torch.Tensor]:
        mm: dict[str, torch.Tensor] = {}
        names = (
            ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts")
            if modality.has_video
            else ("pixel_values", "image_grid_thw")
            if modality.has_image
            else ()
        )
        for k in names:
            if k in out:
                v = out[k]
                mm[k] = v if torch.is_tensor(v) else torch.tensor(v)
        return mm

    # ------------------------------------------------------------------ anatomy
    def token_types(self, ids: torch.Tensor) -> torch.Tensor:
        """``mm_token_type_ids`` of ``ids``: 1 at image placeholders, 2 at video placeholders, else 0."""
        cfg = self.model.config
        return (ids == cfg.image_token_id).int() + 2 * (ids == cfg.video_token_id).int()

    def _rope_index(self, ids, att, image_grid, video_grid, seconds):
        kw = {"image_grid_thw": image_grid, "video_grid_thw": video_grid, "attention_mask": att}
        if not self._qwen3:
            kw["second_per_grid_ts"] = seconds
        return self.model.model.get_rope_index(ids, self.token_types(ids), **kw)

    def prompt_positions(self, prompt: PromptInputs) -> torch.Tensor:
        """M-RoPE positions (3, P) from ``get_rope_index`` with the image or video grid (and, for a
        Qwen2.5-VL video, the seconds per temporal patch)."""
        ids = prompt.input_ids.unsqueeze(0)
        mm = prompt.mm
        pos, _ = self._rope_index(
            ids, torch.ones_like(ids), mm.get("image_grid_thw"), mm.get("video_grid_thw"), mm.get("second_per_grid_ts")
        )
        return pos[:, 0]

    # ------------------------------------------------------------------ rows paths
    def collate(self, prompts: list[PromptInputs]) -> dict:
        dev = self.device
        mm: dict = {}
        for k in ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts", "pixel_values", "image_grid_thw"):
            parts = [p.mm[k] for p in prompts if k in p.mm]
            if parts:
                mm[k] = torch.cat(parts).to(dev)
        return mm

    def generate_kwargs(self, ids: torch.Tensor) -> dict:
        """``generate`` computes the prompt's M-RoPE positions from ``mm_token_type_ids``."""
        return {"mm_token_type_ids": self.token_types(ids)}
