"""Qwen2.5-Omni and Qwen3-Omni thinkers through transformers, behind ``OmniAdapter``.

This is the only module that knows the family's tensors: ``pixel_values_videos``,
``video_grid_thw``, ``video_second_per_grid``, ``input_features`` with ``feature_attention_mask``,
and TMRoPE's ``use_audio_in_video``. Every pass (generation, old policy, reference, training)
receives the same media tensors and explicit 3-D rope positions, so log-probs are those of the
full multimodal prompt.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from emorl.models.adapter import Completions, Modality, PromptInputs, SamplingParams

# never sampled: a placeholder in a completion would shift the media scatter of every later pass
_MM_SPECIALS = ("<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>", "<|vision_bos|>", "<|vision_eos|>", "<|IMAGE|>",
                "<|VIDEO|>", "<|im_start|>", "<|endoftext|>",  # Qwen2.5-Omni
                "<|vision_start|>", "<|vision_end|>", "<|video_pad|>", "<|image_pad|>", "<|vision_pad|>",
                "<|audio_pad|>", "<|audio_start|>", "<|audio_end|>")  # Qwen3-Omni


def pad_audio_features(prompts: list[PromptInputs]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad each prompt's log-mel (n_mels, F_i) to (B, n_mels, F_max) with its (B, F_max) mask."""
    feats = [p.mm["input_features"] for p in prompts]
    n_max = max(f.shape[-1] for f in feats)
    x = feats[0].new_zeros(len(feats), feats[0].shape[0], n_max)
    m = torch.zeros(len(feats), n_max, dtype=torch.long)
    for i, f in enumerate(feats):
        x[i, :, : f.shape[-1]] = f
        m[i, : f.shape[-1]] = 1
    return x, m


def _thinker_class(path: str | Path):
    """The thinker class for a checkpoint (a thinker-only or a full omni checkpoint)."""
    import transformers

    cfg_file = Path(path) / "config.json"
    model_type = json.loads(cfg_file.read_text()).get("model_type", "") if cfg_file.is_file() else ""
    if model_type.startswith("qwen3_omni"):
        return transformers.Qwen3OmniMoeThinkerForConditionalGeneration
    return transformers.Qwen2_5OmniThinkerForConditionalGeneration


class QwenOmniAdapter:
    """OmniAdapter for Qwen2.5-Omni / Qwen3-Omni thinkers.

    Load from a local directory or a hub id: ``QwenOmniAdapter.from_pretrained(path)``. A full
    omni checkpoint (thinker + talker) loads its thinker only.
    """

    def __init__(self, model, processor, *, device: str | torch.device = "cpu", frame_pixels: int | None = None,
                 group_aware: bool = True, encoder_cache=None, decode_mode: str = "auto"):
        self.model = model
        self.decode_mode = decode_mode  # group path's decoder (emorl.models.group.DECODE_MODES, or auto)
        # group-aware paths (emorl.models.group): one encode + one prefill per prompt, shared-prefix
        # log-probs; exact against the duplicated-rows paths (tests/unit/test_group_exact.py)
        self.group_aware = group_aware
        self.encoder_cache = encoder_cache
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.device = torch.device(device)
        self.frame_pixels = frame_pixels
        self.pad_id = self.tokenizer.pad_token_id
        self.eos_id = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        vocab = self.tokenizer.get_vocab()
        self.suppress = sorted({vocab[t] for t in _MM_SPECIALS if t in vocab} - {self.eos_id})
        n_vocab = self.model.get_output_embeddings().weight.shape[0]
        self.suppress += list(range(len(self.tokenizer), n_vocab))  # ids with no token behind them

    @classmethod
    def from_pretrained(cls, path: str | Path, *, dtype: str = "float32", device: str = "cpu",
                        frame_pixels: int | None = None, attn_implementation: str = "sdpa") -> QwenOmniAdapter:
        from transformers import AutoProcessor

        path = str(path)
        local = Path(path).expanduser()
        if local.exists() and not (local / "config.json").is_file():
            raise FileNotFoundError(f"{path}: no config.json; expected a model directory saved with save_pretrained")
        if not local.exists() and (path.startswith(("/", ".", "~")) or path.count("/") > 1):
            raise FileNotFoundError(f"{path}: model directory not found (and not a hub id of the form org/name)")
        hints_file = local / "emorl_model.json"
        if frame_pixels is None and hints_file.is_file():  # written by `emorl model init-tiny`
            frame_pixels = json.loads(hints_file.read_text()).get("frame_pixels")
        klass = _thinker_class(path)
        try:
            model = klass.from_pretrained(path, dtype=getattr(torch, dtype), attn_implementation=attn_implementation)
            processor = AutoProcessor.from_pretrained(path)
        except OSError as e:  # hub id not reachable or not a model
            raise FileNotFoundError(f"{path}: could not load a model from this hub id or directory: {e}") from None
        model.to(device)
        return cls(model, processor, device=device, frame_pixels=frame_pixels)

    # ------------------------------------------------------------------ inputs
    def encode(self, frames: np.ndarray | None, audio: np.ndarray | None, text: str, modality: Modality, *,
               fps: float | None = None, key: str = "") -> PromptInputs:
        """Render ``text`` as a user turn with the media ``modality`` asks for and run the processor.

        frames: (T, H, W, 3) uint8; audio: (S,) float32 at 16 kHz; fps: frames per second of the
        *sampled* frames (T / clip duration) so TMRoPE aligns video with audio time.
        """
        if modality.has_video and frames is None:
            raise ValueError(f"{key or 'prompt'}: modality {modality.value} needs video frames, none given")
        if modality.has_audio and audio is None:
            raise ValueError(f"{key or 'prompt'}: modality {modality.value} needs audio, none given")
        content: list[dict] = []
        if modality.has_video:
            content.append({"type": "video"})
        elif modality.has_audio:
            content.append({"type": "audio"})
        content.append({"type": "text", "text": text})
        rendered = self.processor.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                                      add_generation_prompt=True)
        kw: dict = {"text": [rendered], "return_tensors": "pt"}
        vkw: dict = {"fps": float(fps or 2.0)}
        if self.frame_pixels:  # an exact pixel budget per frame: no per-frame cap on top of it
            vkw["size"] = {"shortest_edge": self.frame_pixels, "longest_edge": self.frame_pixels}
            vkw["cap_pixels_per_frame"] = False
        if modality.has_video:
            kw.update(videos=[frames], videos_kwargs=vkw)
        if modality.has_audio:
            # pad the log-mel input to the clip's own length, not Whisper's 30 s: the valid frames
            # are identical (the model only reads them) and feature extraction is ~8x cheaper
            hop = self.processor.feature_extractor.hop_length
            kw["audio_kwargs"] = {"max_length": max(hop, -(-len(audio) // hop) * hop)}
            kw["audio"] = [audio]
        if modality == Modality.AV:
            kw.update(load_audio_from_video=True, audio_from_video_indices=[0])
        out = self.processor(**kw)
        mm: dict[str, torch.Tensor] = {}
        for k in ("pixel_values_videos", "video_grid_thw", "video_second_per_grid"):
            if k in out and modality.has_video:
                v = out[k]
                mm[k] = v if torch.is_tensor(v) else torch.tensor(v)
        if modality.has_audio:
            n = int(out["feature_attention_mask"][0].sum())
            mm["input_features"] = out["input_features"][0, :, :n].contiguous()
        return PromptInputs(input_ids=out["input_ids"][0], mm=mm, modality=modality, key=key)

    def encode_text(self, text: str, *, key: str = "") -> PromptInputs:
        return self.encode(None, None, text, Modality.TEXT, key=key)

    def _collate_mm(self, prompts: list[PromptInputs]) -> dict:
        mods = {p.modality for p in prompts}
        if len(mods) != 1:
            raise ValueError(f"a batch must share one modality (Qwen-Omni needs homogeneous batches), got {sorted(m.value for m in mods)}")
        mod = mods.pop()
        dev = self.device
        mm: dict = {}
        if mod.has_video:
            mm["pixel_values_videos"] = torch.cat([p.mm["pixel_values_videos"] for p in prompts]).to(dev)
            mm["video_grid_thw"] = torch.cat([p.mm["video_grid_thw"] for p in prompts]).to(dev)
            mm["video_second_per_grid"] = torch.cat([p.mm["video_second_per_grid"] for p in prompts]).to(dev)
        if mod.has_audio:
            x, m = pad_audio_features(prompts)
            mm["input_features"], mm["feature_attention_mask"] = x.to(dev), m.to(dev)
        mm["use_audio_in_video"] = mod == Modality.AV
        return mm

    def _positions(self, input_ids, attention_mask, mm) -> torch.Tensor:
        fam = mm.get("feature_attention_mask")
        pos, _ = self.model.get_rope_index(
            input_ids, None, mm.get("video_grid_thw"), attention_mask, mm["use_audio_in_video"],
            fam.sum(-1) if fam is not None else None, mm.get("video_second_per_grid"),
        )
        return pos

    # ------------------------------------------------------------------ sampling
    def sample_groups(self, prompts: list[PromptInputs], group_size: int, params: SamplingParams) -> Completions:
        """``group_size`` completions for each prompt: each prompt is encoded and prefilled once and
        its KV cache shared by the G continuations (group-aware path), or rows are duplicated."""
        from emorl.models import group

        if self.group_aware and group.supports(self):
            return group.sample_groups_shared(self, prompts, group_size, params, cache=self.encoder_cache,
                                              decode=self.decode_mode)
        return self.sample_groups_rows(prompts, group_size, params)

    @torch.no_grad()
    def sample_groups_rows(self, prompts: list[PromptInputs], group_size: int, params: SamplingParams) -> Completions:
        """The duplicated-rows path: each completion is its own row with its own copy of the media
        (never ``num_return_sequences``, which scrambles video patches)."""
        rows = [p for p in prompts for _ in range(group_size)]
        p_len = max(p.length for p in rows)
        ids = torch.full((len(rows), p_len), self.pad_id, dtype=torch.long)
        att = torch.zeros((len(rows), p_len), dtype=torch.long)
        for i, p in enumerate(rows):  # left padding for generation
            ids[i, p_len - p.length :] = p.input_ids
            att[i, p_len - p.length :] = 1
        mm = self._collate_mm(rows)
        was_training = self.model.training
        self.model.eval()
        try:
            gen = self.model.generate(
                input_ids=ids.to(self.device), attention_mask=att.to(self.device), **mm,
                max_new_tokens=params.max_new_tokens, do_sample=not params.greedy,
                temperature=params.temperature if not params.greedy else None,
                top_p=params.top_p if not params.greedy else None,
                top_k=params.top_k if not params.greedy else None,
                suppress_tokens=self.suppress, eos_token_id=self.eos_id, pad_token_id=self.pad_id,
            )
        finally:
            self.model.train(was_training)
        new = gen[:, p_len:].cpu()
        out_ids, texts, trunc = [], [], []
        for i in range(len(rows)):
            row = new[i]
            hit = (row == self.eos_id).nonzero()
            end = int(hit[0]) + 1 if len(hit) else len(row)
            out_ids.append(row[:end].clone())
            trunc.append(not len(hit))
            texts.append(self.decode(row[:end]))
        g = group_size
        return Completions(
            ids=[out_ids[i * g : (i + 1) * g] for i in range(len(prompts))],
            texts=[texts[i * g : (i + 1) * g] for i in range(len(prompts))],
            truncated=[trunc[i * g : (i + 1) * g] for i in range(len(prompts))],
        )

    def decode(self, ids: torch.Tensor) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    # ------------------------------------------------------------------ scoring
    def completion_logprobs(self, prompts: list[PromptInputs], completions: list[torch.Tensor], *,
                            temperature: float = 1.0, with_entropy: bool = False):
        """Per-token log-probs of ``completions[i]`` given ``prompts[i]`` with its full media.
        Consecutive rows holding the same prompt object are scored with the prompt run once and
        its completions attending to it (shared prefix); otherwise one row per completion."""
        from emorl.models import group

        if self.group_aware and group.supports(self) and any(a is b for a, b in zip(prompts, prompts[1:])):
            return group.shared_prefix_logprobs(self, prompts, completions, temperature=temperature,
                                                with_entropy=with_entropy, cache=self.encoder_cache)
        return self.completion_logprobs_rows(prompts, completions, temperature=temperature, with_entropy=with_entropy)

    def completion_logprobs_rows(self, prompts: list[PromptInputs], completions: list[torch.Tensor], *,
                                 temperature: float = 1.0, with_entropy: bool = False):
        """The duplicated-rows path of ``completion_logprobs``.

        Rows are [prompt | completion | right padding], so each prompt keeps the positions it had
        in generation. Only completion positions go through the LM head.
        Returns (logps (B, Lc), mask (B, Lc) float, entropy (B, Lc) or None).
        """
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
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
        ids, att = ids.to(dev), att.to(dev)
        mm = self._collate_mm(prompts)
        pos = self._positions(ids, att, mm)
        mm.pop("use_audio_in_video")
        hidden = self.model.model(input_ids=ids, attention_mask=att, position_ids=pos, use_cache=False,
                                  **mm).last_hidden_state
        h = hidden.gather(1, src.to(dev).unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
        logits = self.model.lm_head(h).float() / temperature
        logp_all = F.log_softmax(logits, dim=-1)
        logps = logp_all.gather(-1, tgt.to(dev).unsqueeze(-1)).squeeze(-1)
        ent = None
        if with_entropy:
            ent = -(logp_all.exp() * logp_all).sum(-1).detach()
        return logps, mask.to(dev), ent

    # ------------------------------------------------------------------ io
    def save(self, out: str | Path, state_dict: dict | None = None) -> None:
        """``save_pretrained`` of model and processor (``state_dict``: weights to write instead of
        the model's own, e.g. gathered from FSDP2 shards)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(out, state_dict=state_dict)
        dtypes = {v.dtype for v in (state_dict or {}).values() if v.is_floating_point()}
        if len(dtypes) == 1:  # config.json records the model object's dtype (float32 shards under mixed precision)
            cfg = json.loads((out / "config.json").read_text())
            cfg["dtype"] = str(dtypes.pop()).removeprefix("torch.")
            (out / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        self.processor.save_pretrained(out)
        if self.frame_pixels:
            (out / "emorl_model.json").write_text(json.dumps({"frame_pixels": self.frame_pixels}) + "\n")
