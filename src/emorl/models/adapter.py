"""The model interface every trainer, evaluator and analysis talks to, family by family.

A *prompt* is one clip under one modality condition rendered with one recipe's question. The
adapter turns it into model inputs once (``encode``), samples G completions per prompt
(``sample_groups``), and scores completions given the full multimodal prompt
(``completion_logprobs``). Callers hand over prompts and completions only; whether the adapter
duplicates rows or shares a prompt's encoding and prefill across its G completions is the
adapter's business, so that speed work never changes callers.

Everything model-specific is asked of the adapter (``OmniAdapter``'s *anatomy* part): its towers
and projectors (freezing, perception pretraining), its text model, decoder layers, embeddings and
LM head (FSDP2 / ZeRO units, LoRA targets, the group decoder), how a prompt's media become
embeddings at placeholder tokens and what positions its tokens take, what extra per-batch
arguments its text model needs (Qwen3's deepstack features), and whether its batches must share
one modality. ``emorl.models.group`` builds the group-aware paths on these alone, and
``emorl.models.registry`` picks the adapter class from a checkpoint's ``config.json``.
docs/families.md walks through adding a family.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

import torch


class Modality(str, Enum):
    """Which media a prompt carries. ``IMAGE``: one still image (a photo, or one frame), given to
    the model as an image (its image placeholder and image inputs), not as a one-frame video."""

    AV = "video+audio"
    VIDEO = "video"
    AUDIO = "audio"
    IMAGE = "image"
    TEXT = "text"

    @property
    def has_video(self) -> bool:
        return self in (Modality.AV, Modality.VIDEO)

    @property
    def has_audio(self) -> bool:
        return self in (Modality.AV, Modality.AUDIO)

    @property
    def has_image(self) -> bool:
        return self == Modality.IMAGE

    @property
    def has_visual(self) -> bool:
        """Frames are needed: a video or a still image."""
        return self.has_video or self.has_image

    @classmethod
    def parse(cls, s: str) -> Modality:
        aliases = {
            "av": cls.AV,
            "both": cls.AV,
            "video+audio": cls.AV,
            "audio+video": cls.AV,
            "video": cls.VIDEO,
            "v": cls.VIDEO,
            "audio": cls.AUDIO,
            "a": cls.AUDIO,
            "image": cls.IMAGE,
            "img": cls.IMAGE,
            "i": cls.IMAGE,
            "text": cls.TEXT,
            "none": cls.TEXT,
            "t": cls.TEXT,
        }
        try:
            return aliases[s.lower()]
        except KeyError:
            raise ValueError(f"unknown modality {s!r}; expected one of {', '.join(sorted(aliases))}") from None


@dataclass
class PromptInputs:
    """One encoded prompt.

    input_ids: (P,) long, with the family's placeholder tokens where media embeddings go. mm:
    per-prompt multimodal tensors in the family's own names (e.g. video patches with their grid,
    log-mel audio features trimmed to the valid frames); only the family's adapter reads them. ``key`` names the prompt (clip id, modality) for logs
    and caches; it is not an identity (see ``OmniAdapter.completion_logprobs``'s ``groups``).
    """

    input_ids: torch.Tensor
    mm: dict[str, torch.Tensor]
    modality: Modality
    key: str = ""

    @property
    def length(self) -> int:
        return int(self.input_ids.numel())


@dataclass(frozen=True)
class FramePlan:
    """Which decoded frames of a video a family takes and at what size (``OmniAdapter.native_video``).

    indices: frame indices into the decoded frames, in order (repeats allowed: a clip shorter than
    the family's minimum repeats frames rather than invent them); size: (height, width) to resize
    every kept frame to, or None to hand them over at the decoded size (the processor resizes);
    fps: the rate of the kept frames (frames per second of the clip's time), what positions and
    timestamps follow."""

    indices: tuple[int, ...]
    size: tuple[int, int] | None
    fps: float


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


@dataclass
class MediaEmbeds:
    """One prompt's media in the text model's width, in placeholder order.

    ``embeds``: media kind (``"video"``, ``"audio"``, ``"image"``) -> (n_placeholders, H), one
    row per placeholder token of that kind in the prompt. ``extra``: what else the family's text
    model needs per prompt, as tensors or tuples of tensors (Qwen3: ``"deepstack"``, one
    (n_visual_tokens, H) per early text layer). Empty for a text-only prompt."""

    embeds: dict[str, torch.Tensor] = field(default_factory=dict)
    extra: dict[str, torch.Tensor | tuple[torch.Tensor, ...]] = field(default_factory=dict)

    def get(self, kind: str) -> torch.Tensor | None:
        return self.embeds.get(kind)

    @property
    def video(self) -> torch.Tensor | None:
        return self.embeds.get("video")

    @property
    def audio(self) -> torch.Tensor | None:
        return self.embeds.get("audio")

    @property
    def image(self) -> torch.Tensor | None:
        return self.embeds.get("image")

    def map(self, fn) -> MediaEmbeds:
        """``fn`` applied to every tensor held."""
        return MediaEmbeds(
            {k: fn(v) for k, v in self.embeds.items()},
            {k: tuple(map(fn, v)) if isinstance(v, tuple) else fn(v) for k, v in self.extra.items()},
        )

    def to(self, device) -> MediaEmbeds:
        return self.map(lambda t: t.to(device))

    def merge(self, other: MediaEmbeds) -> MediaEmbeds:
        """The union of two prompts' parts (e.g. video from one tower, audio from another)."""
        return MediaEmbeds({**self.embeds, **other.embeds}, {**self.extra, **other.extra})


class OmniAdapter(Protocol):
    """What emorl needs from a model family. ``emorl.models.base.FamilyAdapter`` implements the
    generic part (group-aware dispatch, decoding, anatomy defaults); a family implements the rest.

    Identity and inputs:

    - ``family``: the registry name (``qwen2.5-omni``, ``qwen2.5-vl``, ...); ``model``: the root
      module (a transformers ``GenerationMixin`` model; trained, saved, sharded); ``device``.
    - ``modalities``: the prompt modalities this family accepts (a VL model: video and text).
    - ``one_modality_per_batch``: whether the rows paths need every batch to share one modality
      (Qwen-Omni's forward takes its audio-in-video flag per batch); callers split by modality then.
    - ``encode(frames, audio, text, modality, fps=, key=)`` -> ``PromptInputs``; ``encode_text``.
    - ``native_video(n_total, fps, height, width)`` -> ``FramePlan``: the family's own frame
      sampling and resizing (``data.sampling=native``); ``native_preprocessing()`` -> its settings
      as a dict; ``audio_sample_rate``: the rate its audio encoder reads (16 kHz for every family now).

    Generation and scoring (what trainers call):

    - ``sample_groups(prompts, group_size, params)`` -> ``Completions``.
    - ``completion_logprobs(prompts, completions, temperature=, with_entropy=, groups=)`` ->
      (logps (B, Lc), mask (B, Lc), entropy or None). ``groups`` (B ints, optional) is the
      explicit group identity: rows with the same number share one prompt (the caller asserts it;
      the adapter checks their token ids), which the group-aware path encodes and runs once.
    - ``decode(ids)``, ``save(out, state_dict=None)``.

    Anatomy (what generic code asks):

    - ``towers()`` -> {"vision": module, "audio": module}: the encoders (freezing, perception
      pretraining, the encoder cache's fingerprint); ``projectors()`` -> {name: module}: trainable
      maps from a tower to the text width that live outside the towers ({} when built in).
    - ``text_model()``: the decoder stack, called as ``text_model()(inputs_embeds=, attention_mask=
      (B, S) or additive (B, 1, Q, K), position_ids=, use_cache=, **cache_kwarg(lm, kv), **extras)
      .last_hidden_state`` (``emorl.models.decoder.cache_kwarg``: ``cache=`` from transformers 5.24,
      ``past_key_values=`` before); ``decoder_layers()``, ``input_embeddings()``, ``lm_head()``.
    - ``media_kinds(modality)`` -> kinds of placeholders a prompt of that modality holds;
      ``kind_modules(kind)`` -> modules whose parameters produce that kind's embeddings (trainable
      or not decides caching and graphs); ``encode_kind(kind, prompts)`` -> one ``MediaEmbeds``
      per prompt with that kind filled (one batched tower run; a frozen module under no_grad);
      ``placeholder_ids()`` -> {kind: token id}.
    - ``decoder_extras(ids, masks, media)`` -> extra keyword arguments of the text model for a
      batch whose media were scattered at ``masks`` ({kind: (B, S) bool}); {} for most families.
    - ``prompt_positions(prompt)`` -> (A, P) positions of the prompt's tokens (A = 3 for M-RoPE,
      1 for plain 1-D positions); generated tokens continue at the prompt's maximum + 1 on every
      axis, one step per token.
    """

    family: str
    model: torch.nn.Module
    device: torch.device
    modalities: tuple[Modality, ...]
    one_modality_per_batch: bool
    audio_sample_rate: int

    def encode(
        self, frames, audio, text: str, modality: Modality, *, fps: float | None = None, key: str = ""
    ) -> PromptInputs: ...

    def encode_text(self, text: str, *, key: str = "") -> PromptInputs: ...

    def native_video(self, n_total: int, fps: float | None, height: int, width: int) -> FramePlan: ...

    def native_preprocessing(self) -> dict: ...

    def sample_groups(self, prompts: list[PromptInputs], group_size: int, params: SamplingParams) -> Completions: ...

    def completion_logprobs(
        self,
        prompts: list[PromptInputs],
        completions: list[torch.Tensor],
        *,
        temperature: float = 1.0,
        with_entropy: bool = False,
        groups: list[int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]: ...

    def decode(self, ids: torch.Tensor) -> str: ...

    def save(self, out, state_dict: dict | None = None) -> None: ...

    def towers(self) -> dict[str, torch.nn.Module]: ...

    def projectors(self) -> dict[str, torch.nn.Module]: ...

    def text_model(self) -> torch.nn.Module: ...

    def decoder_layers(self) -> list[torch.nn.Module]: ...

    def input_embeddings(self) -> torch.nn.Module: ...

    def lm_head(self) -> torch.nn.Module: ...

    def media_kinds(self, modality: Modality) -> tuple[str, ...]: ...

    def kind_modules(self, kind: str) -> list[torch.nn.Module]: ...

    def encode_kind(self, kind: str, prompts: list[PromptInputs]) -> list[MediaEmbeds]: ...

    def placeholder_ids(self) -> dict[str, int]: ...

    def decoder_extras(self, ids: torch.Tensor, masks: dict[str, torch.Tensor], media: list[MediaEmbeds]) -> dict: ...

    def prompt_positions(self, prompt: PromptInputs) -> torch.Tensor: ...


def sample_by_modality(
    adapter: OmniAdapter, prompts: list[PromptInputs], group_size: int, params: SamplingParams
) -> Completions:
    """``adapter.sample_groups`` over prompts of mixed modality: one call per modality bucket when
    the family needs one modality per batch (``one_modality_per_batch``), else one call; results
    back in the input order."""
    split = getattr(adapter, "one_modality_per_batch", True)
    buckets: dict = defaultdict(list)
    for i, p in enumerate(prompts):
        buckets[p.modality if split else None].append(i)
    ids: list = [None] * len(prompts)
    texts: list = [None] * len(prompts)
    trunc: list = [None] * len(prompts)
    for idx in buckets.values():
        out = adapter.sample_groups([prompts[i] for i in idx], group_size, params)
        for j, i in enumerate(idx):
            ids[i], texts[i], trunc[i] = out.ids[j], out.texts[j], out.truncated[j]
    return Completions(ids, texts, trunc)
