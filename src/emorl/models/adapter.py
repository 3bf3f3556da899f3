"""The omni-model interface every trainer, evaluator and analysis talks to.

A *prompt* is one clip under one modality condition rendered with one recipe's question. The
adapter turns it into model inputs once (``encode``), samples G completions per prompt
(``sample_groups``), and scores completions given the full multimodal prompt
(``completion_logprobs``). Callers hand over prompts and completions only; whether the adapter
duplicates rows or shares a prompt's encoding and prefill across its G completions is the
adapter's business, so that speed work never changes callers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

import torch


class Modality(str, Enum):
    """Which media a prompt carries."""

    AV = "video+audio"
    VIDEO = "video"
    AUDIO = "audio"
    TEXT = "text"

    @property
    def has_video(self) -> bool:
        return self in (Modality.AV, Modality.VIDEO)

    @property
    def has_audio(self) -> bool:
        return self in (Modality.AV, Modality.AUDIO)

    @classmethod
    def parse(cls, s: str) -> Modality:
        aliases = {"av": cls.AV, "both": cls.AV, "video+audio": cls.AV, "audio+video": cls.AV,
                   "video": cls.VIDEO, "v": cls.VIDEO, "audio": cls.AUDIO, "a": cls.AUDIO,
                   "text": cls.TEXT, "none": cls.TEXT, "t": cls.TEXT}
        try:
            return aliases[s.lower()]
        except KeyError:
            raise ValueError(f"unknown modality {s!r}; expected one of {', '.join(sorted(aliases))}") from None


@dataclass
class PromptInputs:
    """One encoded prompt.

    input_ids: (P,) long. mm: per-prompt multimodal tensors in the model family's names, e.g.
    pixel_values_videos (N_patch, D), video_grid_thw (1, 3), video_second_per_grid (1,),
    input_features (n_mels, F) trimmed to its valid frames. ``key`` identifies the prompt
    (clip id, modality, prompt text) for caches.
    """

    input_ids: torch.Tensor
    mm: dict[str, torch.Tensor]
    modality: Modality
    key: str = ""

    @property
    def length(self) -> int:
        return int(self.input_ids.numel())


@dataclass
class SamplingParams:
    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    greedy: bool = False


@dataclass
class Completions:
    """Sampled completions of a batch of prompts, grouped: ``ids[i][g]`` is prompt i's g-th
    completion as a (L,) long tensor ending with EOS unless truncated; ``texts`` likewise."""

    ids: list[list[torch.Tensor]]
    texts: list[list[str]]
    truncated: list[list[bool]] = field(default_factory=list)


class OmniAdapter(Protocol):
    """What emorl needs from an omni model family."""

    model: torch.nn.Module
    device: torch.device

    def encode(self, frames, audio, text: str, modality: Modality, *, fps: float | None = None, key: str = "") -> PromptInputs: ...

    def encode_text(self, text: str, *, key: str = "") -> PromptInputs: ...

    def sample_groups(self, prompts: list[PromptInputs], group_size: int, params: SamplingParams) -> Completions: ...

    def completion_logprobs(
        self, prompts: list[PromptInputs], completions: list[torch.Tensor], *, temperature: float = 1.0,
        with_entropy: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]: ...

    def decode(self, ids: torch.Tensor) -> str: ...

    def save(self, out, state_dict: dict | None = None) -> None: ...
