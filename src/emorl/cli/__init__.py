"""emorl command line: a thin layer over library functions. Heavy libraries are imported inside
commands so ``emorl --help`` is instant.

    emorl demo --out runs/demo [--quick]
    emorl data synth | prepare NAME --root DIR [--fold K] [--split train|test|all] --out M | check M --out DIR
    emorl model init-tiny --out DIR [--family F] | pretrain-towers ...
    emorl sft | train --config C [key=value ...]
    emorl traces generate --teacher MODEL --manifest M --out T.jsonl
    emorl eval --model DIR --manifest M [--split test]
    emorl predict CLIP|FOLDER|GLOB|MANIFEST --model DIR [--out predictions.jsonl|.csv]
    emorl cv --config C --manifest M --out DIR [--eval-only MODEL]
    emorl protocol --config r1-omni --out DIR [--eval-only MODEL]
    emorl reward --recipe r1-omni IN.jsonl
    emorl analyze modality | report | compare
    emorl serve --model DIR [--port 8000] [--media-root DIR]
    emorl export --model DIR --out DIR [--push-to-hub REPO]
"""

from __future__ import annotations

import argparse
import sys

from emorl.cli import data_cmds, model_cmds, run_cmds, share_cmds


def with_config(p: argparse.ArgumentParser) -> None:
    from emorl.config import CONFIG_DIR

    names = ", ".join(sorted(x.stem for x in CONFIG_DIR.glob("*.yaml")))
    p.add_argument("--config", help=f"YAML recipe: a file or a packaged name ({names})")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. grpo.steps=10")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="emorl", description="RLVR for omni-modal emotion recognition and reasoning")
    ap.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = ap.add_subparsers(dest="cmd", required=True)
    run_cmds.add_parsers(sub, with_config)
    data_cmds.add_parsers(sub, with_config)
    model_cmds.add_parsers(sub, with_config)
    share_cmds.add_parsers(sub, with_config)
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
