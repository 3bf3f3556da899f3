"""``emorl data``: synthesize the embedded world, prepare a corpus, check a manifest."""

from __future__ import annotations


def cmd_synth(args) -> int:
    from emorl.data.synthetic import synthesize

    sizes = _sizes(args.sizes) if args.sizes else None
    paths = synthesize(args.out, seed=args.seed, sizes=sizes, workers=args.workers, frame_size=args.frame_size)
    for split, p in paths.items():
        print(f"{split}\t{p}")
    return 0


def cmd_synth_images(args) -> int:
    from emorl.data.synthetic.image_world import synthesize_images

    sizes = _sizes(args.sizes) if args.sizes else None
    paths = synthesize_images(args.out, seed=args.seed, sizes=sizes, size=args.size, fmt=args.format)
    for split, p in paths.items():
        print(f"{split}\t{p}")
    return 0


def _sizes(text: str) -> dict[str, int]:
    sizes = {}
    for part in text.split(","):
        k, _, v = part.partition("=")
        if not v.isdigit():
            raise ValueError(f"--sizes: expected split=count pairs like train=100,test=20, got {part!r}")
        sizes[k.strip()] = int(v)
    return sizes


def cmd_prepare(args) -> int:
    from emorl.data.prepare import prepare_manifest

    options = {
        k: v
        for k, v in (
            ("mer2023_root", args.mer2023_root),
            ("mer2024_root", args.mer2024_root),
            ("image_dir", args.image_dir),
        )
        if v
    }
    r = prepare_manifest(
        args.name, args.root, args.out, fold=args.fold, subset=args.subset, split=args.split, **options
    )
    print(f"wrote {r['rows']} samples to {r['out']}: " + ", ".join(f"{k} {v}" for k, v in r["classes"].items()))
    print(
        "  splits: "
        + ", ".join(f"{k} {v}" for k, v in r["splits"].items())
        + (f"; folds {r['folds']}" if r["folds"] else "")
    )
    if r["rejects"]:
        reasons = ", ".join(f"{k} {v}" for k, v in r["reject_reasons"].items())
        print(f"{r['rejects']} rows not usable ({reasons}): listed in {r['rejects_path']}")
    return 0


def cmd_check(args) -> int:
    from emorl.config import load_config
    from emorl.data.check import check_manifest
    from emorl.runs import media_limits

    cfg = load_config(args.config, args.overrides)
    r = check_manifest(
        args.manifest,
        args.out,
        workers=args.workers,
        num_frames=args.num_frames or cfg.data.num_frames or 8,
        limits=media_limits(cfg),
        against=args.against or [],
        max_image_pixels=args.max_image_pixels,
    )
    print(f"{r.total} samples: {r.usable} usable, {r.rejected} rejected {dict(r.outcomes) or ''}")
    for ds, hist in r.classes.items():
        print(f"  {ds}: " + ", ".join(f"{k} {v}" for k, v in sorted(hist.items(), key=lambda kv: -kv[1])))
    if r.duration_s:
        print("  duration s: " + ", ".join(f"{k} {v:.2f}" for k, v in r.duration_s.items()))
    if r.images:
        print(
            f"  images: formats {r.images['formats']}, modes {r.images['modes']}, shorter side "
            + ", ".join(f"{k} {v:g}" for k, v in r.images["min_side"].items())
        )
    if r.notes:
        print(f"  notes (usable, converted or substituted): {r.notes}")
    if r.flags:
        print(f"  flagged (kept, meta.flags; data.exclude_flagged=true drops them): {r.flags}")
    print(f"clean: {r.clean_path}\nrejects: {r.rejects_path}\nsummary: {r.summary_path}")
    leak = r.leakage
    for name, subs in leak.get("shared_subjects", {}).items():
        print(f"note: training rows share {len(subs)} subject(s) with {name}: {', '.join(subs[:6])}")
    if leak.get("shared_clips"):
        shown = "\n  ".join(
            f"{o['train_id']} ~ {o['eval_id']} in {o['eval_manifest']} (same {o['how']})"
            for o in leak["shared_clips"][:10]
        )
        print(
            f"emorl: error: {len(leak['shared_clips'])} training clip(s) are also evaluation clips "
            f"(all listed in {r.summary_path}):\n  {shown}"
        )
        return 2
    return 0


def add_parsers(sub, with_config) -> None:
    from emorl.data.corpora import CORPORA
    from emorl.data.images import MAX_PIXELS

    data = sub.add_parser("data", help="datasets: synthesize, prepare, check").add_subparsers(
        dest="data_cmd", required=True
    )
    p = data.add_parser("synth", help="write the synthetic omni-emotion world")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sizes", help="e.g. train=1200,coldstart=240,test=280,ood=280,pretrain=1200")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--frame-size", type=int, default=112)
    p.set_defaults(fn=cmd_synth)

    p = data.add_parser("synth-images", help="write the synthetic still-image emotion world (Mikels-8 scenes)")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sizes", help="e.g. train=800,coldstart=160,test=240,ood=240 (splits not named are skipped)")
    p.add_argument("--size", type=int, default=112, help="image side in pixels")
    p.add_argument("--format", choices=("png", "jpeg"), default="png")
    p.set_defaults(fn=cmd_synth_images)

    p = data.add_parser(
        "prepare",
        help="turn an official corpus layout into a manifest",
        description="Corpora, their subsets and splits:\n" + corpora_help(),
        formatter_class=_raw(),
    )
    p.add_argument("name", choices=list(CORPORA), metavar="NAME", help=f"one of: {', '.join(CORPORA)}")
    p.add_argument("--root", required=True, help="the corpus folder as unpacked")
    p.add_argument(
        "--fold", type=int, help="only this official fold's rows (default: every fold, each row with its fold)"
    )
    p.add_argument(
        "--split",
        default="all",
        help="rows to write: train, test (or a corpus's own split) or all "
        "(default; training and evaluation commands then select by split)",
    )
    p.add_argument("--subset", help="a corpus variant (see above)")
    p.add_argument("--out", required=True, help="manifest to write; rejects go to <stem>.rejects.jsonl beside it")
    p.add_argument("--mer2023-root", help="EMER: where the MER2023 videos and labels are")
    p.add_argument("--mer2024-root", help="EMER: where the MER2024 videos and labels are")
    p.add_argument(
        "--image-dir",
        help="hub-format image corpora (parquet): where their images are extracted, "
        "content-addressed (default: images/ beside --out)",
    )
    p.set_defaults(fn=cmd_prepare)

    p = data.add_parser(
        "check",
        help="decode every sample; write clean and rejects manifests; flag degenerate media; check train/eval leakage",
    )
    p.add_argument("manifest")
    p.add_argument("--out", required=True)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument(
        "--num-frames", type=int, help="frames decoded per clip (default data.num_frames, or 8 when it is 0)"
    )
    p.add_argument(
        "--max-image-pixels",
        type=int,
        default=MAX_PIXELS,
        help=f"images with more pixels (width x height) are rejected as too_large "
        f"(decompression bombs; default {MAX_PIXELS}, PIL's; 0 = PIL's own hard limit only)",
    )
    p.add_argument(
        "--against",
        nargs="+",
        metavar="EVAL_MANIFEST",
        help="evaluation manifests that must share no clip with this manifest's training rows",
    )
    with_config(p)
    p.set_defaults(fn=cmd_check)


def corpora_help() -> str:
    """One line per corpus: its folds, subsets (default first) and splits."""
    from emorl.data.corpora import SPECS

    lines = []
    for name, spec in SPECS.items():
        parts = [
            f"{len(spec.folds)} folds" if spec.folds else "no folds",
            f"subsets {', '.join(spec.subsets)}" if spec.subsets else "",
            f"splits {', '.join(spec.splits)}",
        ]
        lines.append(f"  {name}: " + "; ".join(x for x in parts if x))
    return "\n".join(lines)


def _raw():
    import argparse

    return argparse.RawDescriptionHelpFormatter
