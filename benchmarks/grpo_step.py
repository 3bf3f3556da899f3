"""One GRPO step's model work, duplicated rows against group-aware, on random weights.

The workload follows docs/benchmarks.md (and the GPU baseline it cites): N prompts, each a clip
with video (and audio interleaved, TMRoPE ``use_audio_in_video``) plus text; G completions of
exactly ``--answer-tokens`` tokens each (EOS suppressed); then a reference pass (no grad) and a
policy pass (forward + backward of sum(logp * advantage), encoders frozen, no optimizer step;
projectors outside the towers, as the parts family has, train unless ``--freeze-projectors``).

Paths, in the same process and on the same prompts:
- ``duplicated``: ``QwenOmniAdapter.sample_groups`` / ``completion_logprobs`` (each of the N*G rows
  carries its own copy of the media; encoders run in every pass);
- ``group``: ``emorl.models.group``: encoders once per prompt (an in-memory ``EncoderCache``
  shared by the three passes), one prefill per prompt, decoding with the prompt's KV cache
  repeated G times (``--decode dynamic``) or stored once per group (``static`` / ``graph``:
  ``GroupDecoder``), and shared-prefix log-prob passes ([prompt | c1 .. cG] packed per group).

Reported per path: encoder seconds during generation, time to first token, decode ms/step and
tokens/s, reference and policy pass seconds, whole-step seconds, peak memory (CUDA
max_memory_allocated, or peak process RSS on CPU) and the decode floor (LLM weight bytes + mean
KV-cache bytes per step over a measured copy bandwidth; also with each prompt's KV counted once).
JSON to ``--out`` and a table to stdout.

``--family`` other than qwen2.5-omni builds that family's model of the shape's sizes with its tiny
builder's config (``emorl model init-tiny --family F``; Qwen3-Omni: 4 routed experts, top 2, per
layer) and makes its prompts with the family's real processor (``adapter.encode`` on random frames
and audio), so its token layout is the family's own; ``--text-tokens`` does not apply there.
qwen3-omni and qwen3-vl run the CPU shapes; qwen2.5-vl also ``3b`` (Qwen2.5-VL-3B: the same text
and vision sizes as the Qwen2.5-Omni-3B thinker, no audio tower, tied embeddings), with video prompts.

``--family parts`` (an omni model built from parts, emorl.models.parts) runs tiny and small with the
tiny parts' architecture (``emorl model init-tiny --family parts``: Llama LLM, SigLIP patch 14, MLP
projectors, a 4 s Whisper window pooled by 4) and ``humanomni-0.5b``, HumanOmni-0.5B's shape (R1-Omni's
base; the builder's ``humanomni-0.5b`` architecture, emorl.models.parts.tiny.ARCHITECTURES): a
Qwen2-0.5B-shaped LLM (hidden 896, 24 layers, 14 heads, 2 KV heads, FFN 4864, vocabulary 151936,
tied embeddings), SigLIP-base-patch16-224 (768 wide, 12 layers, 12 heads, FFN 3072; features of the
penultimate layer, 14x14 patches), the all_in_one_small projector (three branches, 392 tokens for 8
frames) mixed by the BERT gate (BERT-base on the instruction, gate 768-3584-3), the whisper-large-v3
encoder (1280 wide, 32 layers, 20 heads, FFN 5120, 128 mels, 30 s window: 1500 frames avg-pooled by 3
to 500 tokens, then an mlp2x_gelu projector); prompts of 8 frames of 224 px and 30 s of audio.
Sources (``../shared/reference/humanomni-and-vl.md``): the LLM sizes are from a third-party copy of
R1-Omni-0.5B's config.json, the towers from R1-Omni's README and training script, and SigLIP-base's and
BERT-base's sizes are transformers' defaults for those configs; [unverified] there: which Qwen2/2.5-0.5B
instruct base, and whisper-large-v3's 128 mel bins (its published feature size, not read from the
checkpoint). Random weights, so the timings hold but not the tokens.

    python benchmarks/grpo_step.py --shape tiny --device cpu --out bench.json
    python benchmarks/grpo_step.py --shape 7b --device cuda --dtype bfloat16 --grad-checkpointing
    python benchmarks/grpo_step.py --shape small --device cpu --family qwen3-omni
    python benchmarks/grpo_step.py --shape 3b --device cuda --family qwen2.5-vl --grad-checkpointing
    python benchmarks/grpo_step.py --shape humanomni-0.5b --family parts --device cuda --dtype bfloat16 --grad-checkpointing
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import json
import math
import os
import platform
import statistics
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from emorl.models import decoder, group, registry, tiny
from emorl.models.adapter import Modality, PromptInputs, SamplingParams
from emorl.models.qwen_omni import QwenOmniAdapter

# Qwen2.5-Omni's special ids (151643 pad, 151644 im_start, 151645 eos/im_end, media 151646-151656)
QWEN_IDS = dict(
    pad=151643,
    im_start=151644,
    eos=151645,
    audio=151646,
    audio_bos=151647,
    audio_eos=151648,
    vision_bos=151652,
    vision_eos=151653,
    image=151655,
    video=151656,
)


@dataclass
class Shape:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    vision_hidden: int
    vision_depth: int
    vision_heads: int
    vision_intermediate: int
    audio_d_model: int
    audio_layers: int
    audio_heads: int
    audio_ffn: int
    defaults: dict
    # keyword options of a family's tiny builder (build_config / build_processor) for this shape
    builder_options: dict = field(default_factory=dict)


# the GPU baseline's workload (gpu-baseline.md): 8 clips x G=8, 16 frames at 336 px, 5 s of audio
GPU_WORKLOAD = dict(
    prompts=8,
    group=8,
    frames=16,
    frame_size=336,
    audio_seconds=5.0,
    answer_tokens=128,
    text_tokens=60,
    micro_batch_rows=8,
)

SHAPES = {
    # Qwen2.5-Omni-7B thinker: HF defaults with the released 1280-wide vision tower
    "7b": Shape(
        3584,
        18944,
        28,
        28,
        4,
        152064,
        1280,
        32,
        16,
        3420,
        1280,
        32,
        20,
        5120,
        GPU_WORKLOAD,
    ),
    # Qwen2.5-Omni-3B thinker (text as Qwen2.5-3B; lm_head assumed untied)
    "3b": Shape(
        2048,
        11008,
        36,
        16,
        2,
        151936,
        1280,
        32,
        16,
        3420,
        1280,
        32,
        20,
        5120,
        GPU_WORKLOAD,
    ),
    # HumanOmni-0.5B (R1-Omni's base), for --family parts: a Qwen2.5-0.5B-shaped LLM (tied embeddings),
    # SigLIP-base-patch16-224 (12 layers, 768 wide, 12 heads, FFN 3072), the whisper-large-v3 encoder
    # (32 layers, 1280 wide, 20 heads, FFN 5120); the rest (BERT gate, projectors, 128 mels, 30 s
    # window) is the parts builder's "humanomni-0.5b" architecture. 8 frames of 224 px (392 video
    # tokens) and 30 s of audio (500 tokens) per prompt, as R1-Omni's GRPO
    "humanomni-0.5b": Shape(
        896,
        4864,
        24,
        14,
        2,
        151936,
        768,
        12,
        12,
        3072,
        1280,
        32,
        20,
        5120,
        {**GPU_WORKLOAD, "frames": 8, "frame_size": 224, "audio_seconds": 30.0},
        builder_options={"parts": {"architecture": "humanomni-0.5b"}},
    ),
    # CPU shapes
    "small": Shape(
        256,
        768,
        4,
        4,
        2,
        8192,
        128,
        4,
        2,
        256,
        128,
        2,
        2,
        256,
        dict(
            prompts=4,
            group=8,
            frames=8,
            frame_size=112,
            audio_seconds=4.0,
            answer_tokens=32,
            text_tokens=60,
            micro_batch_rows=8,
        ),
    ),
    "tiny": Shape(
        64,
        128,
        2,
        4,
        2,
        1024,
        32,
        2,
        2,
        64,
        32,
        2,
        2,
        64,
        dict(
            prompts=2,
            group=4,
            frames=4,
            frame_size=56,
            audio_seconds=2.0,
            answer_tokens=8,
            text_tokens=20,
            micro_batch_rows=4,
        ),
    ),
}


# --family other than qwen2.5-omni: the shapes it runs and their frame sides (multiples of the
# family's patch x merge: 28 for the Qwen2.5 families, 32 for Qwen3; parts: its SigLIP input side)
FAMILY_FRAME_SIZE = {
    "qwen3-omni": {"tiny": 64, "small": 128},
    "qwen3-vl": {"tiny": 64, "small": 128},
    "qwen2.5-vl": {"tiny": 56, "small": 112, "3b": 336},
    "parts": {"tiny": 56, "small": 112, "humanomni-0.5b": 224},
}
# LM head tied to the embeddings: Qwen2.5-VL-3B and HumanOmni-0.5B (Qwen2.5-0.5B) as released
TIED_EMBEDDINGS = {("qwen2.5-vl", "3b"), ("parts", "humanomni-0.5b")}


def tiny_dims(shape: Shape, *, tie_embeddings: bool):
    """A shape's sizes as the families' tiny builders take them (``emorl.models.tiny.TinyShape``)."""
    return tiny.TinyShape(
        hidden=shape.hidden,
        layers=shape.layers,
        heads=shape.heads,
        kv_heads=shape.kv_heads,
        intermediate=shape.intermediate,
        vision_hidden=shape.vision_hidden,
        vision_depth=shape.vision_depth,
        vision_heads=shape.vision_heads,
        vision_intermediate=shape.vision_intermediate,
        audio_d_model=shape.audio_d_model,
        audio_layers=shape.audio_layers,
        tie_embeddings=tie_embeddings,
    )


def special_ids(vocab: int) -> dict:
    if vocab > max(QWEN_IDS.values()):
        return dict(QWEN_IDS)
    return {k: vocab - 16 + i for i, k in enumerate(QWEN_IDS)}  # small vocabularies: specials at the top


def build_config(shape: Shape):
    from transformers import Qwen2_5OmniThinkerConfig

    ids = special_ids(shape.vocab)
    half = shape.hidden // shape.heads // 2
    mrope = [half - 2 * (half * 3 // 8), half * 3 // 8, half * 3 // 8]
    cfg = Qwen2_5OmniThinkerConfig(
        text_config=dict(
            vocab_size=shape.vocab,
            hidden_size=shape.hidden,
            intermediate_size=shape.intermediate,
            num_hidden_layers=shape.layers,
            num_attention_heads=shape.heads,
            num_key_value_heads=shape.kv_heads,
            max_position_embeddings=32768,
            rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": mrope},
        ),
        vision_config=dict(
            depth=shape.vision_depth,
            hidden_size=shape.vision_hidden,
            intermediate_size=shape.vision_intermediate,
            num_heads=shape.vision_heads,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=112,
            out_hidden_size=shape.hidden,
            fullatt_block_indexes=[i for i in range(shape.vision_depth) if i % 8 == 7] or [shape.vision_depth - 1],
        ),
        audio_config=dict(
            num_mel_bins=128,
            encoder_layers=shape.audio_layers,
            encoder_attention_heads=shape.audio_heads,
            encoder_ffn_dim=shape.audio_ffn,
            d_model=shape.audio_d_model,
            max_source_positions=1500,
            n_window=100,
            output_dim=shape.hidden,
        ),
        audio_token_index=ids["audio"],
        image_token_index=ids["image"],
        video_token_index=ids["video"],
        audio_start_token_id=ids["audio_bos"],
        audio_end_token_id=ids["audio_eos"],
        position_id_per_seconds=25,
        seconds_per_chunk=2,
        tie_word_embeddings=False,
        pad_token_id=ids["pad"],
        eos_token_id=ids["eos"],
    )
    cfg.vision_start_token_id = ids["vision_bos"]  # read by get_rope_index, undeclared by the config
    cfg.vision_end_token_id = ids["vision_eos"]
    return cfg


class _Tokenizer:
    """What QwenOmniAdapter needs from a tokenizer, for random-weight models without one."""

    def __init__(self, vocab: int):
        self.vocab = vocab
        self.ids = special_ids(vocab)
        self.pad_token_id = self.ids["pad"]

    def convert_tokens_to_ids(self, token: str) -> int:
        return self.ids["eos"] if token == "<|im_end|>" else self.ids["pad"]

    def get_vocab(self) -> dict:
        names = {
            "audio": "<|AUDIO|>",
            "audio_bos": "<|audio_bos|>",
            "audio_eos": "<|audio_eos|>",
            "vision_bos": "<|vision_bos|>",
            "vision_eos": "<|vision_eos|>",
            "image": "<|IMAGE|>",
            "video": "<|VIDEO|>",
            "im_start": "<|im_start|>",
            "pad": "<|endoftext|>",
        }
        return {names[k]: v for k, v in self.ids.items() if k in names}

    def __len__(self) -> int:
        return self.vocab

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return " ".join(map(str, ids.tolist()))


class _Processor:
    def __init__(self, vocab: int):
        self.tokenizer = _Tokenizer(vocab)


def _chunks(indices: list[float], per_chunk: int) -> list[int]:
    """Chunk sizes as Qwen2_5OmniProcessor.get_chunked_index splits token time indices."""
    sizes, start, cur = [], 0, 1
    for i, v in enumerate(indices):
        if v >= cur * per_chunk:
            sizes.append(i - start)
            start, cur = i, cur + 1
    sizes.append(len(indices) - start)
    return sizes


def synthetic_prompt(
    cfg,
    modality: Modality,
    *,
    frames: int,
    frame_size: int,
    audio_seconds: float,
    text_tokens: int,
    gen: torch.Generator,
) -> PromptInputs:
    """A prompt shaped like the processor's output: ``text_tokens`` text ids (im_start, then random
    ids, a third before the media block), the media block with its specials (audio interleaved per
    2 s chunk for AV, as Qwen2_5OmniProcessor lays it out), random pixel patches (T/2 x S/14 x
    S/14 rows of 1176 values) and log-mel features (128, 100 frames/s)."""
    ids = special_ids(cfg.text_config.vocab_size)
    n_ordinary = min(cfg.text_config.vocab_size - 16, QWEN_IDS["pad"])
    grid_t, grid_hw = frames // 2, frame_size // 14
    spg = 2.0 / (frames / audio_seconds)  # temporal patch 2 over the clip's fps
    n_mel = round(audio_seconds * 100)
    n_audio = ((n_mel - 1) // 2 + 1 - 2) // 2 + 1
    per_t = (grid_hw // 2) ** 2
    mm: dict[str, torch.Tensor] = {}
    if modality.has_video:
        mm["pixel_values_videos"] = torch.randn(grid_t * grid_hw * grid_hw, 1176, generator=gen)
        mm["video_grid_thw"] = torch.tensor([[grid_t, grid_hw, grid_hw]])
        mm["video_second_per_grid"] = torch.tensor([spg])
    if modality.has_audio:
        mm["input_features"] = torch.randn(128, n_mel, generator=gen)
    if modality == Modality.AV:
        v_idx = [t * spg * 25 for t in range(grid_t) for _ in range(per_t)]
        v_sizes, a_sizes = _chunks(v_idx, 50), _chunks(list(range(n_audio)), 50)
        block = [ids["vision_bos"], ids["audio_bos"]]
        for j in range(max(len(v_sizes), len(a_sizes))):
            block += [ids["video"]] * (v_sizes[j] if j < len(v_sizes) else 0)
            block += [ids["audio"]] * (a_sizes[j] if j < len(a_sizes) else 0)
        block += [ids["audio_eos"], ids["vision_eos"]]
    elif modality == Modality.VIDEO:
        block = [ids["vision_bos"], *[ids["video"]] * (grid_t * per_t), ids["vision_eos"]]
    else:
        block = [ids["audio_bos"], *[ids["audio"]] * n_audio, ids["audio_eos"]]
    before = max(1, text_tokens // 3)  # text tokens before the media block, im_start included
    text = torch.randint(0, n_ordinary, (max(0, text_tokens - 1),), generator=gen).tolist()
    body = [ids["im_start"], *text[: before - 1], *block, *text[before - 1 :]]
    return PromptInputs(torch.tensor(body), mm, modality)


def _accepted(fn, **offered) -> dict:
    """The keyword arguments among ``offered`` that ``fn`` declares: a builder whose config depends
    on the frame side, or whose processor on the config (parts), takes them; the others do not."""
    params = inspect.signature(fn).parameters
    return {k: v for k, v in offered.items() if k in params}


def family_model_and_prompts(shape: Shape, args, dtype, device, modality: Modality, gen: torch.Generator):
    """A random-weight model of ``args.family`` with ``shape``'s sizes (its tiny builder's config;
    Qwen3-Omni: 4 routed experts, top 2, deepstack from the first vision block; parts: the builder's
    architecture named in the shape's ``builder_options``, else its tiny one), its adapter with the
    family's real processor, and ``args.prompts`` prompts encoded from random frames (and audio,
    for the omni families)."""
    import importlib

    import numpy as np

    family = args.family
    fam = registry.family(family)
    if args.frame_size % fam.frame_factor:
        raise SystemExit(f"--frame-size must be a multiple of {fam.frame_factor} for {family}, got {args.frame_size}")
    builder = importlib.import_module(fam.tiny.partition(":")[0])
    tok = builder.train_tokenizer((), 1024, family)
    dims = tiny_dims(shape, tie_embeddings=(family, args.shape) in TIED_EMBEDDINGS)
    options = shape.builder_options.get(family, {})
    cfg = builder.build_config(
        tok, dims, family, **_accepted(builder.build_config, frame_size=args.frame_size), **options
    )
    cfg.get_text_config().vocab_size = max(shape.vocab, len(tok))  # the real vocabulary (ids past the BPE: suppressed)
    with torch.device(device):
        model = builder.model_class(family)._from_config(cfg, dtype=dtype, attn_implementation=args.attn)
    pixels = args.frame_size**2
    processor = builder.build_processor(
        tok, pixels, family, **_accepted(builder.build_processor, config=cfg), **options
    )
    adapter_cls = registry.resolve(fam.adapter)
    adapter = adapter_cls(model, processor, device=device, **_accepted(adapter_cls.__init__, frame_pixels=pixels))
    rng = np.random.default_rng(int(torch.randint(2**31, (1,), generator=gen)))
    prompts = []
    for i in range(args.prompts):
        frames = rng.integers(0, 256, (args.frames, args.frame_size, args.frame_size, 3), dtype=np.uint8)
        audio = (0.1 * rng.standard_normal(int(args.audio_seconds * 16000))).astype(np.float32)
        prompts.append(
            adapter.encode(
                frames,
                audio if modality.has_audio else None,
                tiny.BASE_CORPUS.strip().splitlines()[0],
                modality,
                fps=args.frames / args.audio_seconds,
                key=str(i),
            )
        )
    return model, adapter, prompts


# ------------------------------------------------------------------------------------ measuring
class Clock:
    """Wall clock that synchronizes CUDA before reading."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def __call__(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()


class PeakMemory:
    """Peak memory over a ``with`` block: CUDA max_memory_allocated, else process RSS sampled."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_bytes = self.start_bytes = 0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start_bytes = torch.cuda.memory_allocated()
            return self
        self.start_bytes = self.peak_bytes = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _rss(self) -> int:
        try:
            import psutil

            return psutil.Process().memory_info().rss
        except ImportError:  # Linux fallback
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self):
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._rss())
            self._stop.wait(0.005)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak_bytes = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
            self.peak_bytes = max(self.peak_bytes, self._rss())


class Probes:
    """Forward hooks: encoder seconds and clips encoded, and a stamp per LM-head call (one per
    generated position) while ``generating`` is set."""

    def __init__(self, adapter, clock: Clock):
        self.clock = clock
        self.generating = False
        self.reset()
        for name, mod in adapter.towers().items():
            mod.register_forward_pre_hook(lambda m, a, k, n=name: self._start(n), with_kwargs=True)
            mod.register_forward_hook(lambda m, a, o, n=name: self._stop(n, a))
        adapter.lm_head().register_forward_hook(lambda m, a, o: None if self.in_static else self._stamp())
        # a static / CUDA-graph decode step runs the LM head inside GroupDecoder.step (a graph
        # replay calls no hooks): one stamp per step, after it
        self.in_static = False
        real = decoder.GroupDecoder.step

        def step(dec, next_ids):
            self.in_static = True
            try:
                return real(dec, next_ids)
            finally:
                self.in_static = False
                self._stamp()

        decoder.GroupDecoder.step = step

    def reset(self):
        self.encoder_s = {"vision": 0.0, "audio": 0.0}
        self.encoder_calls = {"vision": 0, "audio": 0}
        self.stamps: list[float] = []
        self._t0: dict[str, float] = {}

    def _start(self, name):
        self._t0[name] = self.clock()

    def _stop(self, name, args):
        self.encoder_s[name] += self.clock() - self._t0.pop(name)
        self.encoder_calls[name] += 1

    def _stamp(self):
        if self.generating:
            self.stamps.append(self.clock())


@contextmanager
def _eval(model):
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


def measure_bandwidth(device: torch.device, dtype: torch.dtype, clock: Clock, nbytes: int) -> float:
    """Copy bandwidth in bytes/s (read + write) of a large tensor copy, median of 5."""
    n = nbytes // torch.finfo(dtype).bits * 8
    src = torch.empty(n, dtype=dtype, device=device).normal_()
    dst = torch.empty_like(src)
    dst.copy_(src)
    times = []
    for _ in range(5):
        t0 = clock()
        dst.copy_(src)
        times.append(clock() - t0)
    del src, dst
    return 2 * n * torch.finfo(dtype).bits / 8 / statistics.median(times)


def _rows_chunks(rows, size):
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


def run_path(name: str, adapter, prompts, args, probes: Probes, clock: Clock) -> dict:
    """One GRPO step's model work on ``prompts`` through path ``name``."""
    model = adapter.model
    params = SamplingParams(max_new_tokens=args.answer_tokens, temperature=1.0, top_p=1.0, top_k=0)
    g = args.group
    cache = group.EncoderCache(max_items=max(64, 2 * len(prompts))) if name == "group" else None
    out: dict = {}
    with PeakMemory(adapter.device) as mem:
        t_step = clock()
        # ---- generation
        probes.reset()
        probes.generating = True
        t0 = clock()
        with _eval(model):
            if name == "group":
                comp = group.sample_groups_shared(adapter, prompts, g, params, cache=cache, decode=args.decode)
            else:
                comp = adapter.sample_groups_rows(prompts, g, params)
        t_gen = clock() - t0
        probes.generating = False
        stamps = probes.stamps
        decode_steps = len(stamps) - 1
        decode_s = stamps[-1] - stamps[0] if decode_steps > 0 else 0.0
        rows = [
            (p, c, i) for i, (p, cs) in enumerate(zip(prompts, comp.ids)) for c in cs
        ]  # (prompt, completion, group)
        out.update(
            generate_s=t_gen,
            encoder_s=sum(probes.encoder_s.values()),
            vision_s=probes.encoder_s["vision"],
            audio_s=probes.encoder_s["audio"],
            ttft_s=stamps[0] - t0,
            decode_s=decode_s,
            decode_steps=decode_steps,
            decode_ms_per_step=1e3 * decode_s / max(decode_steps, 1),
            decode_ms_per_step_median=1e3 * statistics.median(b - a for a, b in itertools.pairwise(stamps))
            if decode_steps > 0
            else 0.0,
            decode_tokens_per_s=len(rows) * decode_steps / decode_s if decode_s > 0 else float("nan"),
            completion_tokens=sum(len(r[1]) for r in rows),
        )
        enc_calls = dict(probes.encoder_calls)
        # ---- reference and policy passes, micro-batches of rows (whole groups on the group path)
        mb = args.micro_batch_rows if name == "duplicated" else max(g, args.micro_batch_rows // g * g)
        adv = torch.linspace(-1.0, 1.0, len(rows))

        def logprobs(part):
            ps, cs = [r[0] for r in part], [r[1] for r in part]
            if name == "group":
                return group.shared_prefix_logprobs(adapter, ps, cs, cache=cache, groups=[r[2] for r in part])
            return adapter.completion_logprobs_rows(ps, cs)

        probes.reset()
        t0 = clock()
        with _eval(model), torch.no_grad():
            for part in _rows_chunks(rows, mb):
                logprobs(part)
        out["reference_s"] = clock() - t0
        model.train()
        t0 = clock()
        k = 0
        for part in _rows_chunks(rows, mb):
            lp, mask, _ = logprobs(part)
            a = adv[k : k + len(part)].to(lp.device)
            (-(lp * mask * a[:, None]).sum() / len(rows)).backward()
            k += len(part)
        out["policy_s"] = clock() - t0
        model.zero_grad(set_to_none=True)
        model.eval()
        out["step_s"] = clock() - t_step
        out["encoder_calls"] = {"generate": enc_calls, "log_prob_passes": dict(probes.encoder_calls)}
    out["peak_memory_bytes"] = mem.peak_bytes
    out["peak_memory_GiB"] = mem.peak_bytes / 2**30
    out["peak_memory_growth_GiB"] = (mem.peak_bytes - mem.start_bytes) / 2**30  # over weights / libraries
    if cache is not None:
        out["encoder_cache"] = {"hits": cache.hits, "misses": cache.misses}
    return out


def exactness_check(adapter, prompts, args) -> dict:
    """Group-aware vs duplicated on this device and dtype: greedy tokens of 2 prompts x G and
    reference log-probs of the same completions (max abs difference)."""
    ps = prompts[:2]
    greedy = SamplingParams(max_new_tokens=min(args.answer_tokens, 16), greedy=True)
    with _eval(adapter.model), torch.no_grad():
        dup = adapter.sample_groups_rows(ps, args.group, greedy)
        shared = group.sample_groups_shared(adapter, ps, args.group, greedy, decode=args.decode)
        same = sum(int(torch.equal(a, b)) for xs, ys in zip(dup.ids, shared.ids) for a, b in zip(xs, ys))
        rows = [(p, c) for p, cs in zip(ps, dup.ids) for c in cs]
        groups = [i for i, cs in enumerate(dup.ids) for _ in cs]
        lp_d, mask, _ = adapter.completion_logprobs_rows([r[0] for r in rows], [r[1] for r in rows])
        lp_s, _, _ = group.shared_prefix_logprobs(adapter, [r[0] for r in rows], [r[1] for r in rows], groups=groups)
    return {
        "greedy_rows_equal": same,
        "greedy_rows": len(rows),
        "logprob_max_abs_diff": float(((lp_d - lp_s).abs() * mask).max()),
    }


def decode_floor(
    adapter, n_prompts: int, n_rows: int, prompt_len: int, answer_tokens: int, dtype: torch.dtype, bandwidth: float
) -> dict:
    """Bytes a decode step must read over the copy bandwidth: the LLM's weights plus the mean KV
    of n_rows sequences (each row's own copy of its prompt: the issue's floor), and the same with
    each prompt's KV counted once (``*_shared``: the least the group decoder could read)."""
    lm, head, emb = adapter.text_model(), adapter.lm_head().weight, adapter.input_embeddings().weight
    tc = lm.config
    weight_bytes = sum(p.numel() * p.element_size() for p in lm.parameters())
    weight_bytes += head.numel() * head.element_size()
    weight_bytes -= emb.numel() * emb.element_size()  # a gather, not a read (a tied head is read once, above)
    head_dim = getattr(tc, "head_dim", None) or tc.hidden_size // tc.num_attention_heads
    per_token = 2 * tc.num_hidden_layers * tc.num_key_value_heads * head_dim * torch.finfo(dtype).bits // 8
    kv_mean = n_rows * (prompt_len + answer_tokens / 2) * per_token
    kv_shared = (n_prompts * prompt_len + n_rows * answer_tokens / 2) * per_token
    return {
        "llm_weight_bytes": weight_bytes,
        "kv_bytes_mean": kv_mean,
        "kv_bytes_mean_shared": kv_shared,
        "floor_ms_per_step_weights": 1e3 * weight_bytes / bandwidth,
        "floor_ms_per_step": 1e3 * (weight_bytes + kv_mean) / bandwidth,
        "floor_ms_per_step_shared": 1e3 * (weight_bytes + kv_shared) / bandwidth,
        "floor_decode_s": answer_tokens * (weight_bytes + kv_mean) / bandwidth,
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    ap.add_argument(
        "--family",
        choices=tiny.FAMILIES,
        default="qwen2.5-omni",
        help="other than qwen2.5-omni: the family's model and real processor (FAMILY_FRAME_SIZE: shapes)",
    )
    ap.add_argument("--prompts", type=int, help="distinct prompts (clips) per step")
    ap.add_argument("--group", type=int, help="completions per prompt (G)")
    ap.add_argument("--frames", type=int, help="video frames per clip (even)")
    ap.add_argument("--frame-size", type=int, help="frame side in pixels (multiple of 28; of 32 for qwen3-*)")
    ap.add_argument("--audio-seconds", type=float, help="clip duration; audio and video cover it")
    ap.add_argument("--answer-tokens", type=int, help="tokens per completion (EOS suppressed)")
    ap.add_argument("--text-tokens", type=int, help="random text tokens per prompt around the media")
    ap.add_argument("--micro-batch-rows", type=int, help="rows per log-prob micro-batch (group path: whole groups)")
    ap.add_argument(
        "--modality",
        default="av",
        choices=["av", "video", "audio"],
        help="default av (video for a family without audio)",
    )
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16 (default: bf16 on CUDA, fp32 on CPU)")
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    ap.add_argument(
        "--decode",
        default="dynamic",
        choices=list(group.DECODE_MODES),
        help="group path's decoder: growing cache, static cache, or static cache as a CUDA graph",
    )
    ap.add_argument("--paths", default="duplicated,group")
    ap.add_argument(
        "--warmup", type=int, default=None, help="untimed steps per path first (default 1 on CUDA, 0 on CPU)"
    )
    ap.add_argument("--repeats", type=int, default=1, help="timed steps per path; medians reported")
    ap.add_argument("--grad-checkpointing", action="store_true")
    ap.add_argument(
        "--freeze-projectors",
        action="store_true",
        help="also freeze the projectors outside the towers (parts: vision and audio projectors, BERT and its "
        "gate; no-op for the Qwen families, whose mergers are in the towers): the media embeddings then depend "
        "on no trainable weight and the group path reuses whole media embeddings. By default they train, as "
        "in R1-Omni's GRPO and emorl's model.freeze_vision / freeze_audio: the group path then caches the "
        "frozen towers' features (one tower run per clip per step) and runs the projectors in every pass",
    )
    ap.add_argument("--bandwidth-mib", type=int, default=None, help="tensor size for the copy-bandwidth probe")
    ap.add_argument(
        "--isolate",
        action="store_true",
        help="run each path in its own process (clean peak RSS on CPU; CUDA peaks are reset per path)",
    )
    ap.add_argument("--check", action="store_true", help="also compare the two paths' greedy tokens and log-probs")
    ap.add_argument(
        "--no-cudnn-tf32",
        action="store_true",
        help="float32 convolutions without TF32 (cuDNN allows it by default; the encoders' convolutions "
        "then make --check in float32 differ between the paths by ~1e-3)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="JSON output path")
    args = ap.parse_args(argv)
    shape = SHAPES[args.shape]
    if shape.builder_options and args.family not in shape.builder_options:
        raise SystemExit(f"--shape {args.shape} is a shape of --family {', '.join(shape.builder_options)}")
    if args.family != "qwen2.5-omni":
        sizes = FAMILY_FRAME_SIZE[args.family]
        if args.shape not in sizes:
            raise SystemExit(f"--family {args.family} runs the shapes {', '.join(sizes)}, not {args.shape}")
        args.frame_size = args.frame_size or sizes[args.shape]
        if "video+audio" not in registry.family(args.family).modalities:
            if args.modality == "audio":
                raise SystemExit(f"--family {args.family} has no audio tower: --modality video")
            args.modality = "video"
    for k, v in shape.defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    device = torch.device(args.device)
    if args.no_cudnn_tf32:
        torch.backends.cudnn.allow_tf32 = False
    dtype = getattr(torch, args.dtype or ("bfloat16" if device.type == "cuda" else "float32"))
    warmup = args.warmup if args.warmup is not None else int(device.type == "cuda")
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    if args.isolate and len(paths) > 1:
        return _isolated(argv if argv is not None else sys.argv[1:], paths, args.out)
    clock = Clock(device)

    from transformers import Qwen2_5OmniThinkerForConditionalGeneration
    from transformers import __version__ as tf_version

    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    modality = Modality.parse(args.modality)
    t0 = time.perf_counter()
    if args.family != "qwen2.5-omni":
        model, adapter, prompts = family_model_and_prompts(shape, args, dtype, device, modality, gen)
    else:
        cfg = build_config(shape)
        with torch.device(device):
            model = Qwen2_5OmniThinkerForConditionalGeneration._from_config(
                cfg, dtype=dtype, attn_implementation=args.attn
            )
        adapter = QwenOmniAdapter(model, _Processor(shape.vocab), device=device)
        prompts = [
            synthetic_prompt(
                cfg,
                modality,
                frames=args.frames,
                frame_size=args.frame_size,
                audio_seconds=args.audio_seconds,
                text_tokens=args.text_tokens,
                gen=gen,
            )
            for _ in range(args.prompts)
        ]
    model.eval()
    build_s = time.perf_counter() - t0
    for tower in adapter.towers().values():  # frozen encoders, trainable LLM (embeddings, layers, lm_head)
        tower.requires_grad_(False)
    if args.freeze_projectors:
        for proj in adapter.projectors().values():
            proj.requires_grad_(False)
    if args.grad_checkpointing:  # without the input hook: else frozen towers build graphs (gpu-baseline.md pitfall 1)
        adapter.enable_activation_checkpointing()
    adapter.suppress = sorted(set(adapter.suppress) | {adapter.eos_id})  # exactly --answer-tokens per completion
    prompt_len = max(p.length for p in prompts)
    head = adapter.lm_head().weight
    tied = head is adapter.input_embeddings().weight
    n_params = {
        "total": sum(p.numel() for p in model.parameters()),
        "llm": sum(p.numel() for p in adapter.text_model().parameters()) + (0 if tied else head.numel()),
        **{name: sum(p.numel() for p in t.parameters()) for name, t in adapter.towers().items()},
    }
    bw_bytes = (args.bandwidth_mib or (1024 if device.type == "cuda" else 256)) * 2**20
    bandwidth = measure_bandwidth(device, dtype, clock, bw_bytes)
    floor = decode_floor(
        adapter, args.prompts, args.prompts * args.group, prompt_len, args.answer_tokens, dtype, bandwidth
    )
    probes = Probes(adapter, clock)

    results: dict = {}
    for name in paths:
        for _ in range(warmup):
            run_path(name, adapter, prompts, args, probes, clock)
        runs = [run_path(name, adapter, prompts, args, probes, clock) for _ in range(args.repeats)]
        res = {
            k: statistics.median(r[k] for r in runs) if isinstance(v, (int, float)) else v for k, v in runs[-1].items()
        }
        _floor_fractions(res, floor)
        results[name] = res
        print(
            f"[{name}] whole step {res['step_s']:.3f} s (generate {res['generate_s']:.3f}, reference "
            f"{res['reference_s']:.3f}, policy {res['policy_s']:.3f}); peak {res['peak_memory_GiB']:.2f} GiB",
            file=sys.stderr,
            flush=True,
        )
    speedup = _speedup(results)
    check = exactness_check(adapter, prompts, args) if args.check else None
    report = {
        "config": {
            **{k: v for k, v in vars(args).items()},
            "dtype": str(dtype).replace("torch.", ""),
            "warmup": warmup,
            "prompt_tokens": prompt_len,
            "rows": args.prompts * args.group,
            "params": n_params,
            "model_build_s": build_s,
        },
        "env": {
            "torch": torch.__version__,
            "transformers": tf_version,
            "python": platform.python_version(),
            "device_name": torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
        "bandwidth_GBps": bandwidth / 1e9,
        "decode_floor": floor,
        "paths": results,
        "speedup": speedup,
    }
    if check is not None:
        report["exactness_check"] = check
    print_table(report)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2, default=str)
            f.write("\n")
    return report


def _isolated(argv: list[str], paths: list[str], out: str | None) -> dict:
    """Each path in a child process of this script; results merged into one report."""
    import subprocess
    import tempfile

    reports = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in paths:
            child = [a for a in argv if a != "--isolate"]
            for flag in ("--paths", "--out"):
                if flag in child:
                    i = child.index(flag)
                    del child[i : i + 2]
            path = os.path.join(tmp, f"{name}.json")
            subprocess.run(
                [sys.executable, os.path.abspath(__file__), *child, "--paths", name, "--out", path],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            with open(path) as f:
                reports.append(json.load(f))
    report = reports[0]
    report["config"]["isolate"] = True
    report["config"]["paths"] = ",".join(paths)
    report["bandwidth_GBps_per_process"] = [r["bandwidth_GBps"] for r in reports]
    for r in reports[1:]:
        report["paths"].update(r["paths"])
    for res in report["paths"].values():  # one floor (the first process's bandwidth) for all paths
        _floor_fractions(res, report["decode_floor"])
    report["speedup"] = _speedup(report["paths"])
    print_table(report)
    if out:
        with open(out, "w") as f:
            json.dump(report, f, indent=2, default=str)
            f.write("\n")
    return report


def _floor_fractions(res: dict, floor: dict) -> None:
    """Floor ÷ measured decode step, against the repeated-KV floor and the shared-KV floor."""
    for key, name in (
        ("decode_floor_fraction", "floor_ms_per_step"),
        ("decode_floor_fraction_shared", "floor_ms_per_step_shared"),
    ):
        res[key] = floor[name] / res["decode_ms_per_step"] if res["decode_steps"] else None


def _speedup(results: dict) -> dict:
    if not {"duplicated", "group"} <= results.keys():
        return {}
    d, s = results["duplicated"], results["group"]
    sp = {
        k: d[k] / s[k] if s[k] > 0 else None
        for k in ("step_s", "generate_s", "ttft_s", "encoder_s", "decode_ms_per_step", "reference_s", "policy_s")
    }
    sp["peak_memory_ratio_group_over_duplicated"] = s["peak_memory_bytes"] / d["peak_memory_bytes"]
    return sp


def print_table(report: dict) -> None:
    c = report["config"]
    print(
        f"shape {c['shape']} ({c.get('family', 'qwen2.5-omni')}) on {c['device']} "
        f"({report['env']['device_name']}), {c['dtype']}; "
        f"{c['prompts']} prompts x "
        f"G={c['group']} = {c['rows']} rows; prompt {c['prompt_tokens']} tokens, answer {c['answer_tokens']}; "
        f"params {c['params']['total'] / 1e6:.2f}M; copy bandwidth {report['bandwidth_GBps']:.1f} GB/s"
    )
    paths = report["paths"]
    names = list(paths)
    rows = [
        ("encoder s (generate)", "encoder_s", "{:.3f}"),
        ("time to first token s", "ttft_s", "{:.3f}"),
        ("decode ms/step", "decode_ms_per_step", "{:.2f}"),
        ("  median step ms", "decode_ms_per_step_median", "{:.2f}"),
        ("decode tokens/s", "decode_tokens_per_s", "{:.0f}"),
        ("decode floor fraction", "decode_floor_fraction", "{:.3f}"),
        ("  against shared-KV floor", "decode_floor_fraction_shared", "{:.3f}"),
        ("generate s", "generate_s", "{:.3f}"),
        ("reference pass s", "reference_s", "{:.3f}"),
        ("policy pass s", "policy_s", "{:.3f}"),
        ("whole step s", "step_s", "{:.3f}"),
        ("peak memory GiB", "peak_memory_GiB", "{:.3f}"),
        ("  growth during step GiB", "peak_memory_growth_GiB", "{:.3f}"),
    ]
    head = f"{'':24s}" + "".join(f"{n:>14s}" for n in names) + ("     dup/group" if len(names) == 2 else "")
    print(head)
    for label, key, fmt in rows:
        vals = [paths[n].get(key) for n in names]
        cells = [fmt.format(v) if isinstance(v, (int, float)) and not math.isnan(v) else "-" for v in vals]
        line = f"{label:24s}" + "".join(f"{cell:>14s}" for cell in cells)
        if len(names) == 2 and all(isinstance(v, (int, float)) and v for v in vals):
            line += f"{vals[0] / vals[1]:>14.2f}"
        print(line)
    fl = report["decode_floor"]
    if "exactness_check" in report:
        print(f"exactness check: {report['exactness_check']}")
    print(
        f"decode floor: {fl['floor_ms_per_step']:.3f} ms/step ({fl['llm_weight_bytes'] / 1e9:.3f} GB weights + "
        f"{fl['kv_bytes_mean'] / 1e9:.3f} GB mean KV); x{c['answer_tokens']} steps = {fl['floor_decode_s']:.3f} s"
    )
    print(
        f"shared-KV floor: {fl['floor_ms_per_step_shared']:.3f} ms/step (each prompt's KV once: "
        f"{fl['kv_bytes_mean_shared'] / 1e9:.3f} GB mean KV)"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
