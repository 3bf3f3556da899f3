"""emorl command line. Heavy libraries are imported inside commands so ``emorl --help`` is instant.

    emorl demo --out runs/demo [--quick]
    emorl data synth --out DIR --seed S
    emorl data prepare NAME --root DIR [--fold K] [--subset S] --out MANIFEST
    emorl data check MANIFEST --out DIR
    emorl model init-tiny --out DIR [--corpus FILE] [--family qwen2.5-omni|qwen3-omni|qwen2.5-vl|qwen3-vl]
    emorl sft   --config C [key=value ...]
    emorl train --config C [key=value ...]
    emorl eval  --model DIR --manifest M [--out DIR] [--modality video+audio]
    emorl predict CLIP.mp4 --model DIR [--json]
    emorl reward --recipe r1-omni IN.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _cfg(args):
    from emorl.config import load_config

    return load_config(args.config, args.overrides)


def cmd_demo(args) -> int:
    from emorl.demo import run_demo

    run_demo(args.out, quick=args.quick, config=args.config, overrides=args.overrides, progress=not args.no_progress)
    return 0


def cmd_compare(args) -> int:
    from emorl.compare import run_compare

    res = run_compare(args.out, quick=args.quick, config=args.config, overrides=args.overrides,
                      progress=not args.no_progress)
    print((Path(args.out) / "compare.md").read_text() if (Path(args.out) / "compare.md").is_file() else res)
    return 0


def cmd_analyze_modality(args) -> int:
    from emorl.eval.modality import analyze_model, format_summary

    res = analyze_model(_cfg(args), args.model, args.manifest, args.out, progress=True)
    print(format_summary(res["modality"]))
    print(f"written to {args.out}")
    return 0


def cmd_report(args) -> int:
    from emorl.eval.report import build_report

    out = build_report([Path(p) for p in args.runs], Path(args.out), names=args.names.split(",") if args.names else None,
                       manifest=args.manifest)
    print(f"report: {out} (and {Path(out).with_suffix('.md')})")
    return 0


def cmd_synth(args) -> int:
    from emorl.data.synthetic import synthesize

    sizes = None
    if args.sizes:
        sizes = {}
        for part in args.sizes.split(","):
            k, _, v = part.partition("=")
            if not v.isdigit():
                raise ValueError(f"--sizes: expected split=count pairs like train=100,test=20, got {part!r}")
            sizes[k] = int(v)
    paths = synthesize(args.out, seed=args.seed, sizes=sizes, workers=args.workers, frame_size=args.frame_size)
    for split, p in paths.items():
        print(f"{split}\t{p}")
    return 0


def cmd_prepare(args) -> int:
    from collections import Counter

    from emorl.data.corpora import prepare
    from emorl.data.manifest import write_manifest
    from emorl.utils import atomic_write_text

    options = {k: v for k, v in (("mer2023_root", args.mer2023_root), ("mer2024_root", args.mer2024_root)) if v}
    samples, rejects = prepare(args.name, args.root, fold=args.fold, subset=args.subset, **options)
    out = Path(args.out)
    n = write_manifest(out, samples)
    rej_path = out.with_name(out.stem + ".rejects.jsonl")
    atomic_write_text(rej_path, "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in rejects))
    hist = Counter(s.label for s in samples)
    print(f"wrote {n} samples to {out}: " + ", ".join(f"{k} {v}" for k, v in hist.most_common()))
    if rejects:
        reasons = Counter(r.reason for r in rejects)
        print(f"{len(rejects)} rows not usable ({', '.join(f'{k} {v}' for k, v in reasons.items())}): listed in {rej_path}")
    return 0


def cmd_check(args) -> int:
    from emorl.data.check import check_manifest

    r = check_manifest(args.manifest, args.out, workers=args.workers, num_frames=args.num_frames)
    print(f"{r.total} samples: {r.usable} usable, {r.rejected} rejected {dict(r.outcomes) or ''}")
    for ds, hist in r.classes.items():
        print(f"  {ds}: " + ", ".join(f"{k} {v}" for k, v in sorted(hist.items(), key=lambda kv: -kv[1])))
    if r.duration_s:
        print("  duration s: " + ", ".join(f"{k} {v:.2f}" for k, v in r.duration_s.items()))
    print(f"clean: {r.clean_path}\nrejects: {r.rejects_path}\nsummary: {r.summary_path}")
    return 0


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
    print(f"tiny {args.family} model written to {out}")
    return 0


def cmd_pretrain_towers(args) -> int:
    from emorl.models.perception import pretrain_towers
    from emorl.runs import load_adapter, load_samples, make_builder

    cfg = _cfg(args)
    adapter = load_adapter(cfg, args.model)
    res = pretrain_towers(adapter, make_builder(cfg, adapter), load_samples(args.manifest), Path(args.out),
                          epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=cfg.seed)
    print(json.dumps(res, indent=2))
    print(f"thinker with pretrained towers written to {Path(args.out) / 'model'}")
    return 0


def cmd_sft(args) -> int:
    from emorl.runs import run_sft

    cfg = _cfg(args)
    res = run_sft(cfg)
    print(json.dumps({k: v for k, v in res.items() if k != "history"}, indent=2))
    return 0


def cmd_train(args) -> int:
    from emorl.runs import run_grpo

    cfg = _cfg(args)
    res = run_grpo(cfg)
    print(json.dumps({k: v for k, v in res.items() if k != "history"}, indent=2))
    return 0


def cmd_eval(args) -> int:
    from emorl.runs import run_eval

    cfg = _cfg(args)
    out = args.out or str(Path(args.model) / "eval" / Path(args.manifest).stem)
    m = run_eval(cfg, args.model, args.manifest, out, modality=args.modality)
    print(f"n={m['n']}  WAR={m['war']:.4f}  UAR={m['uar']:.4f}  format={m['format_rate']:.3f}  "
          f"parse failures={m['parse_failures']}  -> {out}")
    if "by_fold" in m:
        for k, f in m["by_fold"]["folds"].items():
            print(f"  fold {k}: n={f['n']} WAR={f['war']:.4f} UAR={f['uar']:.4f}")
        mean = m["by_fold"]["mean"]
        print(f"  mean over {m['by_fold']['n_folds']} folds: WAR={mean['war']:.4f} UAR={mean['uar']:.4f}")
    return 0


def cmd_predict(args) -> int:
    from emorl.data.media import load_clip
    from emorl.models.adapter import Modality, SamplingParams
    from emorl.recipes.parse import parse_completion
    from emorl.recipes.prompts import PromptSpec, build_prompt
    from emorl.recipes.rewards import get_recipe
    from emorl.runs import load_adapter

    cfg = _cfg(args)
    adapter = load_adapter(cfg, args.model)
    mod = Modality.parse(args.modality or cfg.data.modality)
    clip = load_clip(args.clip, num_frames=cfg.data.num_frames, size=cfg.data.frame_size or None,
                     want_video=mod.has_visual, want_audio=mod.has_audio, on_missing_audio=cfg.data.on_missing_audio)
    text = build_prompt(PromptSpec(cfg.prompt.question, cfg.prompt.format, cfg.prompt.with_options),
                        None if not cfg.prompt.with_options else ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"))
    fps = cfg.data.num_frames / clip.duration if clip.duration else 2.0
    p = adapter.encode(clip.frames, clip.audio, text, mod, fps=fps, key=str(args.clip))
    out = adapter.sample_groups([p], 1, SamplingParams(max_new_tokens=cfg.eval.max_new_tokens, greedy=True))
    completion = out.texts[0][0]
    parsed = parse_completion(completion, get_recipe(cfg.prompt.recipe).style)
    if args.json:
        print(json.dumps({"clip": str(args.clip), "emotion": parsed.emotion, "reasoning": parsed.reasoning,
                          "answer": parsed.answer, "format_ok": parsed.format_ok, "parse": parsed.reason,
                          "completion": completion, "media_notes": clip.notes}, ensure_ascii=False))
    else:
        print(f"emotion:   {parsed.emotion or '(none: ' + parsed.reason + ')'}")
        print(f"reasoning: {parsed.reasoning or '(none)'}")
    return 0


def cmd_reward(args) -> int:
    from emorl.data.labels import to_canonical
    from emorl.data.manifest import iter_jsonl
    from emorl.recipes.rewards import get_recipe, score

    recipe = get_recipe(args.recipe)
    for lineno, row in iter_jsonl(args.input):
        where = f"{args.input}:{lineno}"
        for k in ("completion", "label"):
            if not isinstance(row.get(k), str):
                raise ValueError(f"{where}: field {k!r} must be a string")
        label = to_canonical(row["label"], where=f"{where}: field 'label'")
        ls = row.get("label_set")
        if ls is not None:
            if not isinstance(ls, list) or not ls:
                raise ValueError(f"{where}: field 'label_set' must be a non-empty list")
            labels = tuple(to_canonical(x, where=f"{where}: field 'label_set'") for x in ls)
        else:
            from emorl.data.labels import LABEL_SETS

            labels = LABEL_SETS.get(row.get("dataset", "dfew"), LABEL_SETS["dfew"])
            if label not in labels:
                from emorl.data.labels import CANONICAL

                labels = CANONICAL
        comps, parsed = score(recipe, row["completion"], label, labels)
        print(json.dumps({"line": lineno, **({"id": row["id"]} if "id" in row else {}), "label": label,
                          "answer": parsed.answer, "emotion": parsed.emotion, "parse": parsed.reason, **comps},
                         ensure_ascii=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from emorl.models.tiny import FAMILIES  # no heavy imports at module level there

    ap = argparse.ArgumentParser(prog="emorl", description="RLVR for omni-modal emotion recognition and reasoning")
    ap.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = ap.add_subparsers(dest="cmd", required=True)

    def with_config(p):
        p.add_argument("--config", help="YAML recipe (configs/*.yaml)")
        p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. grpo.steps=10")

    p = sub.add_parser("demo", help="the whole pipeline on the embedded synthetic world and a tiny model")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--quick", action="store_true", help="small sizes for CI (about 3 minutes on 2 cores)")
    p.add_argument("--no-progress", action="store_true")
    with_config(p)
    p.set_defaults(fn=cmd_demo)

    p = sub.add_parser("compare", help="R1-Omni vs EMO-R3 vs plain GRPO from one cold start (synthetic world)")
    p.add_argument("--out", default="runs/compare")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    with_config(p)
    p.set_defaults(fn=cmd_compare)

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

    data = sub.add_parser("data", help="datasets: synthesize, prepare, check").add_subparsers(dest="data_cmd", required=True)
    p = data.add_parser("synth", help="write the synthetic omni-emotion world")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sizes", help="e.g. train=1200,coldstart=240,test=280,ood=280,pretrain=1200")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--frame-size", type=int, default=112)
    p.set_defaults(fn=cmd_synth)
    p = data.add_parser("prepare", help="turn an official corpus layout into a manifest")
    p.add_argument("name")
    p.add_argument("--root", required=True)
    p.add_argument("--fold", type=int)
    p.add_argument("--subset")
    p.add_argument("--out", required=True, help="manifest to write; rejects go to <stem>.rejects.jsonl beside it")
    p.add_argument("--mer2023-root", help="EMER: where the MER2023 videos and labels are")
    p.add_argument("--mer2024-root", help="EMER: where the MER2024 videos and labels are")
    p.set_defaults(fn=cmd_prepare)
    p = data.add_parser("check", help="decode every sample; write clean and rejects manifests")
    p.add_argument("manifest")
    p.add_argument("--out", required=True)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--num-frames", type=int, default=8)
    p.set_defaults(fn=cmd_check)

    model = sub.add_parser("model", help="models").add_subparsers(dest="model_cmd", required=True)
    p = model.add_parser("init-tiny", help="build a tiny random-init model of a family offline")
    p.add_argument("--out", required=True)
    p.add_argument("--corpus", help="text file (one line each) to train the tokenizer on")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--vocab-size", type=int, default=1024)
    p.add_argument("--frame-size", type=int,
                   help="frame side in pixels: a multiple of 28 (qwen2.5-*, default 84) or 32 (qwen3-*, default 96)")
    p.add_argument("--family", choices=FAMILIES, default="qwen2.5-omni",
                   help="qwen3-omni: routed experts, interleaved MRoPE, deepstack vision features; qwen2.5-vl, "
                        "qwen3-vl: vision-language models (video and text prompts, no audio)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=cmd_init_tiny)
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

    for name, fn, hlp in (("sft", cmd_sft, "supervised fine-tuning (cold start or label-only)"),
                          ("train", cmd_train, "GRPO")):
        p = sub.add_parser(name, help=hlp)
        with_config(p)
        p.set_defaults(fn=fn)

    p = sub.add_parser("eval", help="predictions and metrics (WAR, UAR, ...) on a manifest")
    p.add_argument("--model", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--out")
    p.add_argument("--modality", help="media in the prompts (default: data.modality, video+audio unless set)")
    with_config(p)
    p.set_defaults(fn=cmd_eval)

    p = sub.add_parser("predict", help="emotion and reasoning for one clip")
    p.add_argument("clip")
    p.add_argument("--model", required=True)
    p.add_argument("--modality", help="media in the prompt (default: data.modality, video+audio unless set)")
    p.add_argument("--json", action="store_true")
    with_config(p)
    p.set_defaults(fn=cmd_predict)

    p = sub.add_parser("reward", help="score completions offline (JSONL in, one JSON object per row out)")
    p.add_argument("input")
    p.add_argument("--recipe", default="r1-omni")
    p.set_defaults(fn=cmd_reward)
    return ap


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # dotted overrides may come anywhere after the command (argparse stops collecting a trailing
    # positional list once an option intervenes)
    stray = [x for x in extra if x.startswith("-") or "=" not in x]
    if stray or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    if args.debug:
        return args.fn(args)
    from emorl.errors import USER_ERRORS

    try:
        return args.fn(args)
    except USER_ERRORS as e:
        print(f"emorl: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("emorl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
