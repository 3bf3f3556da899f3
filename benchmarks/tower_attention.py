"""The towers' attention: transformers' loop of one call per segment against emorl's packed varlen
attention (``emorl.models.varlen``: one call per segment length), in the same run.

Qwen2.5-Omni's vision tower attends within 112-px windows (and, in 4 of 32 layers, within frames)
of the packed frames of a batch; its audio tower within 100-frame chunks. Under ``sdpa`` transformers
calls the attention once per window / chunk. This benchmark builds the two towers of a
``grpo_step.py`` shape with random weights and runs the batch's clips through each tower both ways:
seconds per forward (median of ``--repeats`` after one warm-up), the number of segments and distinct
segment lengths per layer kind, and the largest absolute difference between the two outputs.

    python benchmarks/tower_attention.py --shape small --device cpu --out tower_small.json
    python benchmarks/tower_attention.py --shape 7b --device cuda --dtype bfloat16 --out tower_7b.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import grpo_step as gs
from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import (
    Qwen2_5OmniAudioEncoder,
    Qwen2_5OmniVisionEncoder,
)

from emorl.models import varlen


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, device: torch.device, repeats: int) -> tuple[float, torch.Tensor]:
    with torch.no_grad():
        out = fn()  # warm-up
        _sync(device)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = fn()
            _sync(device)
            times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _segments(cu: torch.Tensor) -> dict:
    lengths = (cu[1:] - cu[:-1]).tolist()
    return {"segments": len(lengths), "distinct_lengths": len(set(lengths))}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(gs.SHAPES), default="small")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None, help="default bfloat16 on cuda, float32 on cpu")
    ap.add_argument("--clips", type=int, default=None, help="default: the shape's prompts per step")
    ap.add_argument("--frames", type=int, default=None, help="per clip (default: the shape's)")
    ap.add_argument("--frame-size", type=int, default=None, help="pixels, a multiple of 28 (default: the shape's)")
    ap.add_argument("--audio-seconds", type=float, default=None, help="per clip (default: the shape's)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype or ("bfloat16" if device.type == "cuda" else "float32"))
    shape = gs.SHAPES[args.shape]
    d = shape.defaults
    clips = args.clips or d["prompts"]
    frames = args.frames or d["frames"]
    size = args.frame_size or d["frame_size"]
    seconds = args.audio_seconds or d["audio_seconds"]
    if size % 28 or frames % 2:
        ap.error(f"--frame-size must be a multiple of 28 and --frames even, got {size} and {frames}")
    cfg = gs.build_config(shape)
    gen = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)

    vision = Qwen2_5OmniVisionEncoder._from_config(cfg.vision_config, dtype=dtype, attn_implementation="sdpa")
    audio = Qwen2_5OmniAudioEncoder._from_config(cfg.audio_config, dtype=dtype, attn_implementation="sdpa")
    vision.to(device).eval()
    audio.to(device).eval()
    vc = cfg.vision_config
    side = size // vc.patch_size
    grid = torch.tensor([[frames // vc.temporal_patch_size, side, side]] * clips, device=device)
    width = vc.in_channels * vc.temporal_patch_size * vc.patch_size**2
    pixels = torch.randn(int(grid.prod(-1).sum()), width, generator=gen).to(device, dtype)
    mel_frames = int(seconds * 100)  # 10 ms hop
    features = torch.randn(cfg.audio_config.num_mel_bins, mel_frames * clips, generator=gen).to(device, dtype)
    lens = torch.full((clips,), mel_frames, device=device)
    after_cnn, _ = audio._get_feat_extract_output_lengths(lens)

    runs = {
        "vision": (vision, lambda: vision(pixels, grid_thw=grid).last_hidden_state),
        "audio": (audio, lambda: audio(features, feature_lens=lens, aftercnn_lens=after_cnn).last_hidden_state),
    }
    report: dict = {
        "shape": args.shape,
        "workload": {"clips": clips, "frames": frames, "frame_size": size, "audio_seconds": seconds},
        "env": {
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "dtype": str(dtype).removeprefix("torch."),
        },
        "towers": {},
    }
    for name, (tower, fn) in runs.items():
        tower.config._attn_implementation = "sdpa"
        loop_s, loop_out = _time(fn, device, args.repeats)
        assert varlen.use_varlen_attention(tower.config)
        seen: list[dict] = []
        real = varlen.segments_by_length
        varlen.segments_by_length = lambda cu, seen=seen, real=real: seen.append(_segments(cu)) or real(cu)
        try:
            packed_s, packed_out = _time(fn, device, args.repeats)
        finally:
            varlen.segments_by_length = real
        kinds = {json.dumps(s, sort_keys=True): s for s in seen}  # per layer kind (windowed / full)
        report["towers"][name] = {
            "params": sum(p.numel() for p in tower.parameters()),
            "tokens": int(loop_out.shape[0]),
            "loop_s": loop_s,
            "packed_s": packed_s,
            "speedup": loop_s / packed_s,
            "max_abs_diff": float((loop_out.float() - packed_out.float()).abs().max()),
            "segment_kinds": list(kinds.values()),
        }
    print(f"{args.shape} towers, {clips} clips x {frames} frames at {size}px, {seconds}s audio, {report['env']}")
    print(f"{'tower':<8}{'loop s':>10}{'packed s':>10}{'speed-up':>10}{'max |diff|':>12}  segments (distinct lengths)")
    for name, r in report["towers"].items():
        segs = ", ".join(f"{s['segments']} ({s['distinct_lengths']})" for s in r["segment_kinds"])
        print(
            f"{name:<8}{r['loop_s']:>10.3f}{r['packed_s']:>10.3f}{r['speedup']:>9.2f}x{r['max_abs_diff']:>12.2e}  {segs}"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
