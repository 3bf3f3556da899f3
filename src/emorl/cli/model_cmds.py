"""``emorl model``: build tiny models offline, pretrain towers."""

from __future__ import annotations

import json
from pathlib import Path


def cmd_init_tiny(args) -> int:
    from emorl.models.tiny import TinyShape, init_tiny

    corpus: list[str] = []
    if args.corpus:
        p = Path(args.corpus)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: corpus file not found")
        corpus = p.read_text(encoding="utf-8").splitlines()
    shape = TinyShape(hidden=args.hidden, layers=args.layers, vocab_size=args.vocab_size)
    out = init_tiny(args.out, corpus=corpus, shape=shape, seed=args.seed, frame_size=args.frame_size,
                    family=args.family)
    print(f"tiny {args.family} thinker written to {out}")
    return 0


def cmd_build(args) -> int:
    from emorl.models.parts.build import BuildOptions, build_from_parts

    opts = BuildOptions(vision_projector=args.vision_projector, vision_spatial_pool=args.spatial_pool,
                        vision_feature_layer=args.vision_feature_layer, audio_projector=args.audio_projector,
                        audio_pool=args.audio_pool, num_frames=args.num_frames, pad_to_square=args.pad_to_square,
                        dtype=args.dtype, seed=args.seed)
    out = build_from_parts(args.llm, args.vision, args.audio, args.out, llm_gguf=args.llm_gguf, fusion=args.bert,
                           options=opts)
    print(f"parts model written to {out}")
    return 0


def cmd_convert_humanomni(args) -> int:
    from emorl.models.parts.humanomni import convert_humanomni

    out = convert_humanomni(args.src, args.out, vision=args.vision, audio=args.audio, bert=args.bert,
                            towers=args.towers, frames=args.frames, compressor=args.compressor, dtype=args.dtype)
    print(f"HumanOmni checkpoint converted to the parts family in {out}")
    return 0


def cmd_pretrain_towers(args) -> int:
    from emorl.config import load_config
    from emorl.models.perception import pretrain_towers
    from emorl.runs import load_adapter, load_samples, make_builder

    cfg = load_config(args.config, args.overrides)
    adapter = load_adapter(cfg, args.model)
    res = pretrain_towers(adapter, make_builder(cfg, adapter), load_samples(args.manifest, split="all"),
                          Path(args.out), epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=cfg.seed)
    print(json.dumps(res, indent=2))
    print(f"thinker with pretrained towers written to {Path(args.out) / 'model'}")
    return 0


def add_parsers(sub, with_config) -> None:
    from emorl.models.tiny import FAMILIES  # no heavy imports at module level there

    model = sub.add_parser("model", help="models").add_subparsers(dest="model_cmd", required=True)
    p = model.add_parser("init-tiny", help="build a tiny random-init model of a supported family offline")
    p.add_argument("--out", required=True)
    p.add_argument("--corpus", help="text file (one line each) to train the tokenizer on")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--vocab-size", type=int, default=1024)
    p.add_argument("--frame-size", type=int,
                   help="frame side in pixels: a multiple of 28 (qwen2.5-omni, default 84) or 32 (qwen3-omni, "
                        "default 96)")
    p.add_argument("--family", choices=FAMILIES, default="qwen2.5-omni", help=f"one of: {', '.join(FAMILIES)}")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=cmd_init_tiny)
    p = model.add_parser("build", help="compose an omni model from a causal LM, a vision encoder and an audio "
                                       "encoder (folders or hub ids) with fresh projectors")
    for flag in ("--llm", "--vision", "--audio", "--out"):
        p.add_argument(flag, required=True)
    p.add_argument("--llm-gguf", help="GGUF file inside --llm (default: the folder's only .gguf)")
    p.add_argument("--bert", help="BERT folder: adds HumanOmni's instruction gate (all_in_one projectors)")
    p.add_argument("--vision-projector", default="mlp2x_gelu",
                   help="linear, mlpNx_gelu, all_in_one_small or all_in_one (the last two need --bert)")
    p.add_argument("--spatial-pool", type=int, default=2, help="MLP projectors: bilinear down-sampling per frame")
    p.add_argument("--vision-feature-layer", type=int, default=-2)
    p.add_argument("--audio-projector", default="mlp2x_gelu")
    p.add_argument("--audio-pool", type=int, default=3, help="average-pooling stride over audio encoder frames")
    p.add_argument("--num-frames", type=int, default=8)
    p.add_argument("--pad-to-square", action="store_true", help="pad frames to a square instead of squashing")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=cmd_build)
    p = model.add_parser("convert-humanomni", help="convert a HumanOmni / R1-Omni checkpoint to the parts family")
    p.add_argument("--src", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--vision", help="SigLIP folder (default: the config's mm_vision_tower when local)")
    p.add_argument("--audio", help="Whisper folder (default: the config's mm_audio_tower when local)")
    p.add_argument("--bert", help="bert-base-uncased folder (its tokenizer feeds the branch gate)")
    p.add_argument("--towers", default="auto", choices=["auto", "external", "checkpoint"])
    p.add_argument("--frames", default="config", choices=["config", "pad", "squash"])
    p.add_argument("--compressor", default="auto", choices=["auto", "none", "slow_fast"])
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.set_defaults(fn=cmd_convert_humanomni)
    p = model.add_parser("pretrain-towers", help="perception pretraining of the vision and audio towers on "
                                                 "attribute targets (synthetic world: meta.cues; no emotion labels)")
    p.add_argument("--model", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=float, default=8.0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=8)
    with_config(p)
    p.set_defaults(fn=cmd_pretrain_towers)
