"""``FamilyAdapter``: the part of ``OmniAdapter`` that is the same for every family.

A family subclasses it and supplies its inputs (``encode``), its duplicated-rows reference paths
(``sample_groups_rows``, ``completion_logprobs_rows``: the model's own forward and ``generate``),
``save``, and its anatomy (``towers``, ``text_model``, ``media_kinds``, ``kind_modules``,
``encode_kind``, ``placeholder_ids``, ``prompt_positions``; optionally ``projectors``,
``decoder_extras``). Given those, this class routes ``sample_groups`` and ``completion_logprobs``
to the group-aware paths of ``emorl.models.group`` (one encode, one prefill and one prompt pass
per group) or to the rows paths, and provides the anatomy defaults below.
"""

from __future__ import annotations

import torch

from emorl.models import group
from emorl.models.adapter import Completions, MediaEmbeds, Modality, PromptInputs, SamplingParams


class FamilyAdapter:
    """Generic half of a family adapter. Subclasses set ``family``, ``modalities`` and
    ``one_modality_per_batch`` and call ``__init__`` with the model and tokenizer."""

    family: str = ""
    modalities: tuple[Modality, ...] = (Modality.TEXT,)
    one_modality_per_batch: bool = False

    def __init__(self, model, tokenizer, *, device: str | torch.device = "cpu", eos_id: int, pad_id: int,
                 suppress: list[int] = (), group_aware: bool = True, encoder_cache=None, decode_mode: str = "auto"):
        self.model = model
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.eos_id, self.pad_id = eos_id, pad_id
        self.suppress = sorted(set(suppress) - {eos_id})  # never sampled (placeholders, ids with no token)
        # group-aware paths (emorl.models.group): one encode + one prefill per prompt, shared-prefix
        # log-probs; exact against the duplicated-rows paths (tests/unit/test_group_exact.py)
        self.group_aware = group_aware
        self.encoder_cache = encoder_cache  # group.EncoderCache for frozen encoders, set by the trainer
        self.decode_mode = decode_mode  # group path's decoder (group.DECODE_MODES, or auto)

    # ------------------------------------------------------------------ generation and scoring
    def sample_groups(self, prompts: list[PromptInputs], group_size: int, params: SamplingParams) -> Completions:
        """``group_size`` completions for each prompt: each prompt is encoded and prefilled once and
        its KV cache shared by the G continuations (group-aware path), or rows are duplicated."""
        if self.group_aware and group.supports(self):
            return group.sample_groups_shared(self, prompts, group_size, params, cache=self.encoder_cache,
                                              decode=self.decode_mode)
        return self.sample_groups_rows(prompts, group_size, params)

    def completion_logprobs(self, prompts: list[PromptInputs], completions: list[torch.Tensor], *,
                            temperature: float = 1.0, with_entropy: bool = False, groups: list[int] | None = None):
        """Per-token log-probs of ``completions[i]`` given ``prompts[i]`` with its full media:
        (logps (B, Lc), mask (B, Lc) float, entropy (B, Lc) or None).

        ``groups`` (one int per row) is the caller's statement of which rows share a prompt: rows
        with the same number hold the same prompt (their token ids are checked). When some group
        has several rows, the prompt is encoded and run once for them (shared-prefix path);
        otherwise (and with ``groups=None``) every row is scored on its own."""
        shared = groups is not None and len(set(groups)) < len(groups)
        if self.group_aware and group.supports(self) and shared:
            return group.shared_prefix_logprobs(self, prompts, completions, temperature=temperature,
                                                with_entropy=with_entropy, cache=self.encoder_cache, groups=groups)
        return self.completion_logprobs_rows(prompts, completions, temperature=temperature, with_entropy=with_entropy)

    def sample_groups_rows(self, prompts, group_size, params) -> Completions:
        raise NotImplementedError

    def completion_logprobs_rows(self, prompts, completions, *, temperature=1.0, with_entropy=False):
        raise NotImplementedError

    def decode(self, ids: torch.Tensor) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def encode_text(self, text: str, *, key: str = "") -> PromptInputs:
        return self.encode(None, None, text, Modality.TEXT, key=key)

    usage_code = None  # a family's model-card usage-code writer (keyword arguments: see emorl.share.card)

    # ------------------------------------------------------------------ anatomy defaults
    def projectors(self) -> dict[str, torch.nn.Module]:
        """Trainable maps from a tower to the text width outside the towers (none by default)."""
        return {}

    def decoder_layers(self) -> list[torch.nn.Module]:
        return list(self.text_model().layers)

    def input_embeddings(self) -> torch.nn.Module:
        return self.text_model().get_input_embeddings()

    def lm_head(self) -> torch.nn.Module:
        return self.model.get_output_embeddings()

    def decoder_extras(self, ids: torch.Tensor, masks: dict[str, torch.Tensor], media: list[MediaEmbeds]) -> dict:
        return {}

    def encoder_modules(self) -> list[torch.nn.Module]:
        """Towers and projectors (the modules that are not the text model or the LM head)."""
        return [*self.towers().values(), *self.projectors().values()]

    def enable_activation_checkpointing(self) -> None:
        """Activation checkpointing of the model's layers (transformers' own), without the input
        hook that would make frozen encoders build graphs (not needed with non-reentrant checkpoints)."""
        self.model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        self.model.disable_input_require_grads()
