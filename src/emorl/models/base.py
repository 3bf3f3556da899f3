"""``FamilyAdapter``: the part of ``OmniAdapter`` that is the same for every family.

A family subclasses it and supplies its inputs (``encode``, ``native_video``), how a batch's media
are passed to its model's ``forward`` / ``generate`` (``collate``, ``forward_media_args``,
optionally ``generate_kwargs``), ``save``, and its anatomy (``towers``, ``text_model``,
``media_kinds``, ``kind_modules``, ``encode_kind``, ``placeholder_ids``, ``prompt_positions``;
optionally ``projectors``, ``decoder_extras``, ``tower_modules``). Given those, this class routes ``sample_groups``
and ``completion_logprobs`` to the group-aware paths of ``emorl.models.group`` (one encode, one
prefill and one prompt pass per group) or to the duplicated-rows reference paths
(``sample_groups_rows``, ``completion_logprobs_rows``: the model's own ``generate`` and forward,
towers and media scatter inside), and provides the anatomy defaults below.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from emorl.models import group
from emorl.models.adapter import Completions, FramePlan, MediaEmbeds, Modality, PromptInputs, SamplingParams


class FamilyAdapter:
    """Generic half of a family adapter. Subclasses set ``family``, ``modalities`` and
    ``one_modality_per_batch`` and call ``__init__`` with the model and tokenizer."""

    family: str = ""
    modalities: tuple[Modality, ...] = (Modality.TEXT,)
    one_modality_per_batch: bool = False
    audio_sample_rate: int = 16_000  # mono waveforms at this rate (every family's audio encoder reads 16 kHz)

    def __init__(
        self,
        model,
        tokenizer,
        *,
        device: str | torch.device = "cpu",
        eos_id: int,
        pad_id: int,
        suppress: list[int] = (),
        group_aware: bool = True,
        encoder_cache=None,
        decode_mode: str = "auto",
    ):
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
            return group.sample_groups_shared(
                self, prompts, group_size, params, cache=self.encoder_cache, decode=self.decode_mode
            )
        return self.sample_groups_rows(prompts, group_size, params)

    def completion_logprobs(
        self,
        prompts: list[PromptInputs],
        completions: list[torch.Tensor],
        *,
        temperature: float = 1.0,
        with_entropy: bool = False,
        groups: list[int] | None = None,
    ):
        """Per-token log-probs of ``completions[i]`` given ``prompts[i]`` with its full media:
        (logps (B, Lc), mask (B, Lc) float, entropy (B, Lc) or None).

        ``groups`` (one int per row) is the caller's statement of which rows share a prompt: rows
        with the same number hold the same prompt (their token ids are checked). When some group
        has several rows, the prompt is encoded and run once for them (shared-prefix path);
        otherwise (and with ``groups=None``) every row is scored on its own."""
        shared = groups is not None and len(set(groups)) < len(groups)
        if self.group_aware and group.supports(self) and shared:
            return group.shared_prefix_logprobs(
                self,
                prompts,
                completions,
                temperature=temperature,
                with_entropy=with_entropy,
                cache=self.encoder_cache,
                groups=groups,
            )
        return self.completion_logprobs_rows(prompts, completions, temperature=temperature, with_entropy=with_entropy)

    # ------------------------------------------------------------------ rows paths
    def collate(self, prompts: list[PromptInputs]) -> dict:
        """Keyword arguments of the model's ``forward``/``generate`` for the media of ``prompts``
        (one row each), on the device."""
        raise NotImplementedError

    def positions_of_rows(self, prompts: list[PromptInputs], lengths: list[int], width: int) -> torch.Tensor:
        """(A, B, width) positions of right-padded rows [prompt | completion]: the prompt's own,
        then its maximum + 1 + k on every axis (pad slots: 1)."""
        per = [self.prompt_positions(p) for p in prompts]
        pos = torch.ones((per[0].shape[0], len(prompts), width), dtype=per[0].dtype)
        for i, (p, pp) in enumerate(zip(prompts, per)):
            pos[:, i, : p.length] = pp
            pos[:, i, p.length : lengths[i]] = pp.max() + 1 + torch.arange(lengths[i] - p.length)
        return pos

    @torch.no_grad()
    def sample_groups_rows(self, prompts: list[PromptInputs], group_size: int, params: SamplingParams) -> Completions:
        """The duplicated-rows path: each completion is its own row with its own copy of the media
        (never ``num_return_sequences``, which scrambles video patches), through ``generate``."""
        group.check_modalities(self, prompts)
        rows = [p for p in prompts for _ in range(group_size)]
        p_len = max(p.length for p in rows)
        ids = torch.full((len(rows), p_len), self.pad_id, dtype=torch.long)
        att = torch.zeros((len(rows), p_len), dtype=torch.long)
        for i, p in enumerate(rows):  # left padding for generation
            ids[i, p_len - p.length :] = p.input_ids
            att[i, p_len - p.length :] = 1
        mm = self.collate(rows)
        ids = ids.to(self.device)
        was_training = self.model.training
        self.model.eval()
        try:
            gen = self.model.generate(
                input_ids=ids,
                attention_mask=att.to(self.device),
                **mm,
                **self.generate_kwargs(ids),
                max_new_tokens=params.max_new_tokens,
                do_sample=not params.greedy,
                temperature=params.temperature if not params.greedy else None,
                top_p=params.top_p if not params.greedy else None,
                top_k=params.top_k if not params.greedy else None,
                suppress_tokens=self.suppress,
                eos_token_id=self.eos_id,
                pad_token_id=self.pad_id,
            )
        finally:
            self.model.train(was_training)
        return group.split_completions(self, gen[:, p_len:].cpu(), len(prompts), group_size)

    def completion_logprobs_rows(
        self,
        prompts: list[PromptInputs],
        completions: list[torch.Tensor],
        *,
        temperature: float = 1.0,
        with_entropy: bool = False,
    ):
        """The duplicated-rows path of ``completion_logprobs``: the model's own forward (towers and
        media scatter inside) over rows [prompt | completion | right padding], with explicit
        positions, so each prompt keeps the positions it had in generation. Only completion
        positions go through the LM head. Returns (logps (B, Lc), mask (B, Lc) float, entropy or None).
        """
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        group.check_modalities(self, prompts)
        b = len(prompts)
        lens = [p.length + len(c) for p, c in zip(prompts, completions)]
        l_max, lc_max = max(lens), max(len(c) for c in completions)
        ids = torch.full((b, l_max), self.pad_id, dtype=torch.long)
        att = torch.zeros((b, l_max), dtype=torch.long)
        tgt = torch.full((b, lc_max), self.pad_id, dtype=torch.long)
        src = torch.zeros((b, lc_max), dtype=torch.long)
        mask = torch.zeros((b, lc_max))
        for i, (p, c) in enumerate(zip(prompts, completions)):
            ids[i, : p.length] = p.input_ids
            ids[i, p.length : lens[i]] = c
            att[i, : lens[i]] = 1
            tgt[i, : len(c)] = c
            src[i, : len(c)] = torch.arange(p.length - 1, p.length - 1 + len(c))
            mask[i, : len(c)] = 1
        dev = self.device
        pos = group.text_positions(self.positions_of_rows(prompts, lens, l_max)).to(dev)
        mm = {k: v for k, v in self.collate(prompts).items() if k in self.forward_media_args}
        # the model body (towers, media scatter, text model) without its LM head, which only the
        # completion positions go through
        hidden = self.model.base_model(
            input_ids=ids.to(dev), attention_mask=att.to(dev), position_ids=pos, use_cache=False, **mm
        ).last_hidden_state
        h = hidden.gather(1, src.to(dev).unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
        logits = self.lm_head()(h).float() / temperature
        logp_all = F.log_softmax(logits, dim=-1)
        logps = logp_all.gather(-1, tgt.to(dev).unsqueeze(-1)).squeeze(-1)
        ent = None
        if with_entropy:
            ent = -(logp_all.exp() * logp_all).sum(-1).detach()
        return logps, mask.to(dev), ent

    forward_media_args: tuple[str, ...] = ()  # the collated arguments the inner model's forward takes

    def generate_kwargs(self, ids: torch.Tensor) -> dict:
        """Extra ``generate`` arguments for the left-padded prompt ids (B, P) of a rows batch."""
        return {}

    # ------------------------------------------------------------------ inputs
    def native_video(self, n_total: int, fps: float | None, height: int, width: int) -> FramePlan:
        """The family's own frame sampling and resizing for a video of ``n_total`` decoded frames at
        ``fps`` frames per second (None: a frame folder, rate unknown) and ``height`` x ``width``
        pixels (``data.sampling=native``): which frames to keep and the size to resize them to."""
        raise NotImplementedError

    def native_preprocessing(self) -> dict:
        """The settings ``native_video`` follows (for cache keys and the run record)."""
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

    def tower_modules(self, kind: str) -> list[torch.nn.Module] | None:
        """The modules before a separate projection of media ``kind``, for a family whose projectors
        sit outside its towers and which then also gives ``encode_kind_towers(kind, prompts)`` and
        ``project_kind(kind, prompts, towers)`` (their composition is ``encode_kind``). None (the
        default): the family's encoders are not split (Qwen's mergers are inside the towers)."""
        return None

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
