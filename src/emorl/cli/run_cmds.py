"""Training, evaluation, prediction and experiment commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _cfg(args):
    from emorl.config import load_config

    return load_config(args.config, args.overrides)


def _model_cfg(args, model: str):
    """The config of a command that uses a trained model: its saved run config, then --config and
    overrides; notes (e.g. a setting that differs from the model's training) go to stderr."""
    from emorl.config import config_for_model

    cfg, notes = config_for_model(model, args.config, args.overrides)
    for n in notes:
        print(f"[emorl] note: {n}", file=sys.stderr)
    return cfg


def cmd_demo(args) -> int:
    from emorl.demo import run_demo

    run_demo(args.out, quick=args.quick, config=args.config, overrides=args.overrides, progress=not args.no_progress)
    return 0


def cmd_compare(args) -> int:
    from emorl.compare import run_compare, run_image_compare

    out = args.out or ("runs/compare-images" if args.images else "runs/compare")
    kw = {"quick": args.quick, "config": args.config, "overrides": args.overrides, "progress": not args.no_progress}
    if args.arms is not None:
        kw["arms"] = tuple(a for a in args.arms.split(",") if a)
    res = (run_image_compare if args.images else run_compare)(out, **kw)
    print((Path(out) / "compare.md").read_text() if (Path(out) / "compare.md").is_file() else res)
    return 0


def cmd_sft(args) -> int:
    from emorl.config import report_unused
    from emorl.runs import run_sft

    cfg = _cfg(args)
    report_unused(cfg, ["sft"], "sft")
    res = run_sft(cfg)
    print(json.dumps({k: v for k, v in res.items() if k != "history"}, indent=2))
    return 0


def cmd_train(args) -> int:
    from emorl.config import report_unused
    from emorl.runs import run_grpo

    cfg = _cfg(args)
    report_unused(cfg, ["grpo"], "train")
    res = run_grpo(cfg)
    print(json.dumps({k: v for k, v in res.items() if k != "history"}, indent=2))
    return 0


def cmd_eval(args) -> int:
    from emorl.runs import run_eval

    cfg = _model_cfg(args, args.model)
    if args.split:
        cfg.eval.split = args.split
    out = args.out or str(Path(args.model) / "eval" / Path(args.manifest).stem)
    m = run_eval(cfg, args.model, args.manifest, out, modality=args.modality or cfg.data.modality)
    print(
        f"n={m['n']}  WAR={m['war']:.4f}  UAR={m['uar']:.4f}  format={m['format_rate']:.3f}  "
        f"parse failures={m['parse_failures']}  -> {out}"
    )
    if "by_fold" in m:
        for k, f in m["by_fold"]["folds"].items():
            print(f"  fold {k}: n={f['n']} WAR={f['war']:.4f} UAR={f['uar']:.4f}")
        mean = m["by_fold"]["mean"]
        print(f"  mean over {m['by_fold']['n_folds']} folds: WAR={mean['war']:.4f} UAR={mean['uar']:.4f}")
    return 0


def cmd_predict(args) -> int:
    import tempfile

    from emorl.runs import run_predict

    cfg = _model_cfg(args, args.model)
    if args.out:
        r = run_predict(cfg, args.model, args.inputs, args.out, modality=args.modality or cfg.data.modality)
        print(
            f"{r['predicted']} predicted, {r['skipped_done']} already in {r['out']}, {r['media_errors']} media errors"
        )
        return 0
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "predictions.jsonl"
        run_predict(cfg, args.model, args.inputs, out, modality=args.modality or cfg.data.modality, progress=False)
        rows = [json.loads(x) for x in out.read_text().splitlines()]
    for r in rows:
        if args.json:
            print(json.dumps(r, ensure_ascii=False))
            continue
        if "error" in r:
            print(f"{r['id']}: {r['error']}")
            continue
        probs = ", ".join(f"{k} {v:.2f}" for k, v in sorted(r["probabilities"].items(), key=lambda kv: -kv[1]))
        print(
            f"{r['id']}\n  emotion:   {r['emotion'] or '(none: ' + r['parse'] + ')'}\n"
            f"  reasoning: {r['reasoning'] or '(none)'}\n  scores:    {probs}"
        )
    return 0


def cmd_cv(args) -> int:
    from emorl.config import report_unused
    from emorl.cv import run_folds

    cfg = _cfg(args)
    report_unused(cfg, ["cv", "eval"] if args.eval_only else ["cv", *cfg.cv.stages], "cv")
    run_folds(cfg, [args.manifest], [], args.out, eval_only=args.eval_only)
    return 0


def cmd_protocol(args) -> int:
    from emorl.config import ConfigError, report_unused
    from emorl.cv import run_folds

    cfg = _cfg(args)
    report_unused(cfg, ["protocol", "eval"] if args.eval_only else ["protocol", *cfg.cv.stages], "protocol")
    if not cfg.protocol.in_domain:
        raise ConfigError(
            "protocol.in_domain is empty: name the manifests of the corpora with official folds, e.g. "
            "protocol.in_domain=manifests/dfew.jsonl,manifests/mafw.jsonl (see configs/r1-omni.yaml)"
        )
    run_folds(
        cfg,
        cfg.protocol.in_domain,
        cfg.protocol.ood,
        args.out,
        eval_only=args.eval_only,
        reference=cfg.protocol.reference,
    )
    return 0


def cmd_traces_generate(args) -> int:
    from emorl.config import report_unused
    from emorl.traces import generate_traces

    cfg = _cfg(args)
    report_unused(cfg, ["traces"], "traces generate")
    r = generate_traces(cfg, args.teacher, args.manifest, args.out)
    print(
        f"{r['traces']} traces for {r['clips_with_trace']} of {r['clips']} clips -> {r['out']}; statistics: "
        f"{r['stats']}"
    )
    return 0


def cmd_reward(args) -> int:
    from emorl.recipes.rewards import recipe_for, score_file

    cfg = _cfg(args)
    if args.recipe:
        cfg.prompt.recipe = args.recipe
    for row in score_file(args.input, recipe_for(cfg)):
        print(json.dumps(row, ensure_ascii=False))
    return 0


def cmd_analyze_modality(args) -> int:
    from emorl.eval.modality import format_summary
    from emorl.runs import run_analyze

    res = run_analyze(_model_cfg(args, args.model), args.model, args.manifest, args.out, progress=True)
    print(format_summary(res["modality"]))
    print(f"written to {args.out}")
    return 0


def cmd_report(args) -> int:
    from emorl.eval.report import build_report

    out = build_report(
        [Path(p) for p in args.runs],
        Path(args.out),
        names=args.names.split(",") if args.names else None,
        manifest=args.manifest,
    )
    print(f"report: {out} (and {Path(out).with_suffix('.md')})")
    return 0


def add_parsers(sub, with_config) -> None:
    from emorl.recipes.rewards import RECIPES

    modality_help = (
        "media given to the model: video+audio, video, audio, image or text (default: the model's data.modality)"
    )
    recipes = ", ".join(RECIPES)

    p = sub.add_parser("demo", help="the whole pipeline on the embedded synthetic world and a tiny model")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--quick", action="store_true", help="small sizes for CI (about 3 minutes on 2 cores)")
    p.add_argument("--no-progress", action="store_true")
    with_config(p)
    p.set_defaults(fn=cmd_demo)

    p = sub.add_parser(
        "compare",
        help="R1-Omni vs EMO-R3 vs plain GRPO from one cold start (synthetic clips); "
        "--images: SFT vs naive GRPO vs EMO-R3 (synthetic images, tiny Qwen2.5-VL)",
    )
    p.add_argument("--out", default=None, help="default runs/compare (runs/compare-images with --images)")
    p.add_argument(
        "--images",
        action="store_true",
        help="the still-image comparison (configs/compare-images.yaml; --quick: compare-images-quick.yaml)",
    )
    p.add_argument("--quick", action="store_true")
    p.add_argument(
        "--arms",
        default=None,
        help="comma-separated arms (clips: plain,r1-omni,emo-r3; images: sft,naive-grpo,emo-r3 and the "
        "optional emo-r3-frozen); an empty value runs the cold starts and the judge check only",
    )
    p.add_argument("--no-progress", action="store_true")
    with_config(p)
    p.set_defaults(fn=cmd_compare)

    for name, fn, hlp in (
        ("sft", cmd_sft, "supervised fine-tuning (cold start or label-only)"),
        ("train", cmd_train, "GRPO"),
    ):
        p = sub.add_parser(
            name,
            help=hlp,
            description=f"{hlp}. Packaged recipes: {packaged()}; reward recipes (prompt.recipe): {recipes}",
        )
        with_config(p)
        p.set_defaults(fn=fn)

    p = sub.add_parser(
        "eval",
        help="predictions and metrics (WAR, UAR, ...) on a manifest",
        description="Uses the model's saved run config (recipe, labels, frames, lengths) unless "
        "--config / overrides say otherwise.",
    )
    p.add_argument("--model", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--out")
    p.add_argument(
        "--split", help="rows to evaluate: a split name or all (default: test rows; a one-split manifest whole)"
    )
    p.add_argument("--modality", help=modality_help)
    with_config(p)
    p.set_defaults(fn=cmd_eval)

    p = sub.add_parser("predict", help="emotion, reasoning and class probabilities for clips without labels")
    p.add_argument("inputs", help="a clip, a folder, a glob (quote it) or a label-free manifest (.jsonl)")
    p.add_argument("--model", required=True)
    p.add_argument("--out", help="predictions file (.jsonl or .csv), resumable; without it rows are printed")
    p.add_argument("--modality", help=modality_help)
    p.add_argument("--json", action="store_true", help="print JSON rows (without --out)")
    with_config(p)
    p.set_defaults(fn=cmd_predict)

    p = sub.add_parser("cv", help="train and evaluate every official fold of a corpus (mean and std of WAR / UAR)")
    p.add_argument("--manifest", required=True, help="every fold's train and test rows (data prepare --split all)")
    p.add_argument("--out", required=True)
    p.add_argument("--eval-only", metavar="MODEL", help="evaluate this checkpoint on every fold instead of training")
    with_config(p)
    p.set_defaults(fn=cmd_cv)

    p = sub.add_parser(
        "protocol", help="a paper's evaluation table in one command (R1-Omni's Table 1: --config r1-omni)"
    )
    p.add_argument("--out", required=True)
    p.add_argument("--eval-only", metavar="MODEL", help="evaluate this checkpoint (zero-shot) instead of training")
    with_config(p)
    p.set_defaults(fn=cmd_protocol)

    tr = sub.add_parser("traces", help="reasoning traces for cold-start SFT").add_subparsers(
        dest="traces_cmd", required=True
    )
    p = tr.add_parser(
        "generate",
        help="a teacher's reasoning traces for a corpus (rejection sampling by label)",
        description="k completions per clip (traces.per_clip); those whose answer is the clip's label "
        "and that cite a cue of a modality the clip has are kept; label-conditioned "
        "rationalizations (marked) for clips with none. Resumable. Writes OUT, "
        "OUT.stats.json and OUT.progress.jsonl.",
    )
    p.add_argument("--teacher", required=True, help="model directory or hub id (any supported family)")
    p.add_argument("--manifest", required=True, help="the clips (data.split rows, default train)")
    p.add_argument("--out", required=True, help="traces manifest (.jsonl), input of emorl sft")
    with_config(p)
    p.set_defaults(fn=cmd_traces_generate)

    p = sub.add_parser("reward", help="score completions offline (JSONL in, one JSON object per row out)")
    p.add_argument("input")
    p.add_argument("--recipe", help=f"one of: {recipes} (default prompt.recipe)")
    with_config(p)
    p.set_defaults(fn=cmd_reward)

    ana = sub.add_parser("analyze", help="explainability analyses").add_subparsers(dest="analyze_cmd", required=True)
    p = ana.add_parser("modality", help="evaluate with video+audio, video only, audio only and neither")
    p.add_argument("--model", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--out", required=True)
    with_config(p)
    p.set_defaults(fn=cmd_analyze_modality)

    p = sub.add_parser("report", help="one self-contained HTML page (+ Markdown) comparing runs")
    p.add_argument("runs", nargs="+", help="analysis or evaluation run folders")
    p.add_argument("--out", required=True)
    p.add_argument("--names", help="comma-separated display names")
    p.add_argument("--manifest", help="the evaluated manifest (for frame strips and clustered intervals)")
    p.set_defaults(fn=cmd_report)


def packaged() -> str:
    from emorl.config import CONFIG_DIR

    return ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
