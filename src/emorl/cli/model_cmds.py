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
    out = init_tiny(
        args.out, corpus=corpus, shape=shape, seed=args.seed, frame_size=args.frame_size, family=args.family
    )
    print(f"tiny {args.family} model written to {out}")
    return 0


def cmd_pretrain_towers(args) -> int:
    from emorl.config import load_config
    from emorl.perception import pretrain_towers
    from emorl.runs import load_adapter, load_samples, make_builder

    cfg = load_config(args.config, args.overrides)
    adapter = load_adapter(cfg, args.model)
    res = pretrain_towers(
        adapter,
        make_builder(cfg, adapter),
        load_samples(args.manifest, split="all"),
        Path(args.out),
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=cfg.seed,
    )
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
    p.add_argument(
        "--frame-size",
        type=int,
        help="frame side in pixels: a multiple of 28 (qwen2.5-*, parts: its SigLIP's input size; default 84) "
        "or 32 (qwen3-*, default 96)",
    )
    p.add_argument(
        "--family",
        choices=FAMILIES,
        default="qwen2.5-omni",
        help=f"one of: {', '.join(FAMILIES)}. qwen3-omni: routed experts, interleaved MRoPE, deepstack "
        "vision features; qwen2.5-vl, qwen3-vl: vision-language models (video, images, text; no audio); "
        "parts: a Llama-shaped LLM + SigLIP + Whisper encoder + MLP projectors (emorl model build's layout)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=cmd_init_tiny)
    from emorl.models.registry import FAMILY_COMMANDS, resolve

    for target in FAMILY_COMMANDS:  # subcommands a family brings (the parts family: build, convert-humanomni)
        resolve(target)(model)
    p = model.add_parser(
        "pretrain-towers",
        help="perception pretraining of the vision and audio towers on "
        "attribute targets (synthetic world: meta.cues; no emotion labels)",
    )
    p.add_argument("--model", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=float, default=8.0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=8)
    with_config(p)
    p.set_defaults(fn=cmd_pretrain_towers)
