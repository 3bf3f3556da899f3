"""The parts family's own commands: ``emorl model build`` and ``emorl model convert-humanomni``
(registered through ``emorl.models.registry.FAMILY_COMMANDS``)."""

from __future__ import annotations


def cmd_build(args) -> int:
    from emorl.models.parts.build import BuildOptions, build_from_parts

    opts = BuildOptions(
        vision_projector=args.vision_projector,
        vision_spatial_pool=args.spatial_pool,
        vision_feature_layer=args.vision_feature_layer,
        audio_projector=args.audio_projector,
        audio_pool=args.audio_pool,
        num_frames=args.num_frames,
        pad_to_square=args.pad_to_square,
        dtype=args.dtype,
        seed=args.seed,
    )
    out = build_from_parts(
        args.llm, args.vision, args.audio, args.out, llm_gguf=args.llm_gguf, fusion=args.bert, options=opts
    )
    print(f"parts model written to {out}")
    return 0


def cmd_convert_humanomni(args) -> int:
    from emorl.models.parts.humanomni import convert_humanomni

    out = convert_humanomni(
        args.src,
        args.out,
        vision=args.vision,
        audio=args.audio,
        bert=args.bert,
        towers=args.towers,
        frames=args.frames,
        compressor=args.compressor,
        dtype=args.dtype,
    )
    print(f"HumanOmni checkpoint converted to the parts family in {out}")
    return 0


def add_parsers(model) -> None:
    """Add the family's subcommands to ``emorl model``."""
    p = model.add_parser(
        "build",
        help="compose an omni model from a causal LM, a vision encoder and an audio "
        "encoder (folders or hub ids) with fresh projectors",
    )
    for flag in ("--llm", "--vision", "--audio", "--out"):
        p.add_argument(flag, required=True)
    p.add_argument("--llm-gguf", help="GGUF file inside --llm (default: the folder's only .gguf)")
    p.add_argument("--bert", help="BERT folder: adds HumanOmni's instruction gate (all_in_one projectors)")
    p.add_argument(
        "--vision-projector",
        default="mlp2x_gelu",
        help="linear, mlpNx_gelu, all_in_one_small or all_in_one (the last two need --bert)",
    )
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
