"""``emorl serve`` (an HTTP service and web page for a trained model) and ``emorl export`` (a
plain transformers checkpoint with a model card, optionally pushed to the hub)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def _token(args) -> str | None:
    if args.token_file:
        p = Path(args.token_file).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"--token-file {p}: no such file")
        token = p.read_text(encoding="utf-8").strip()
        if not token:
            raise ValueError(f"--token-file {p}: the file is empty")
        return token
    return os.environ.get("EMORL_SERVE_TOKEN") or None


def cmd_serve(args) -> int:
    from emorl.serve.server import serve
    from emorl.serve.settings import ServeSettings

    settings = ServeSettings(
        host=args.host,
        port=args.port,
        token=_token(args),
        media_root=args.media_root,
        max_upload_mb=args.max_upload_mb,
        max_seconds=args.max_seconds,
        max_pixels=args.max_pixels,
        max_decoded_mb=args.max_decoded_mb,
        decode_timeout=args.decode_timeout,
        decode_memory_mb=args.decode_memory_mb,
        decode_workers=args.decode_workers,
        max_batch_items=args.max_batch_items,
        max_batch=1 if args.no_batching else args.max_batch,
        batch_wait_ms=args.batch_wait_ms,
        queue_size=args.queue_size,
        timeout=args.timeout,
    )
    serve(
        args.model, settings, config=args.config, overrides=args.overrides, device=args.device, log_level=args.log_level
    )
    return 0


def cmd_export(args) -> int:
    from emorl.share.export import export_model

    res = export_model(
        args.model,
        args.out,
        evals=args.eval or [],
        config=args.config,
        overrides=args.overrides,
        base_model=args.base_model,
        license=args.license,
    )
    print(json.dumps(res, indent=2))
    if args.push_to_hub:
        from emorl.share.hub import push_to_hub

        url = push_to_hub(args.out, args.push_to_hub, private=args.private, token=os.environ.get("HF_TOKEN"))
        print(f"uploaded to {url}")
    return 0


def add_parsers(sub, with_config) -> None:
    from emorl.serve.settings import ServeSettings  # no heavy imports there

    d = ServeSettings()
    p = sub.add_parser(
        "serve",
        help="an HTTP service (JSON API + web page) for a trained model",
        description="Serve a trained model: POST /v1/predict, /v1/predict/batch, GET /health, /metrics, "
        "and a web page at /. Reads the model's saved run config like every other command. "
        "Bearer token: EMORL_SERVE_TOKEN or --token-file. See docs/serving.md.",
    )
    p.add_argument("--model", required=True, help="a trained model folder (runs/NAME/model) or a checkpoint")
    p.add_argument("--host", default=d.host, help="interface to bind (default: this machine only)")
    p.add_argument("--port", type=int, default=d.port)
    p.add_argument("--device", default="auto", help="auto (a GPU when torch sees one, else the CPU) | cpu | cuda[:N]")
    p.add_argument("--media-root", help="allow JSON requests naming files under this folder (default: uploads only)")
    p.add_argument("--token-file", help="file holding the bearer token clients must send (or set EMORL_SERVE_TOKEN)")
    p.add_argument("--max-upload-mb", type=float, default=d.max_upload_mb, help="largest file accepted")
    p.add_argument("--max-seconds", type=float, default=d.max_seconds, help="longest clip accepted")
    p.add_argument("--max-pixels", type=int, default=d.max_pixels, help="largest frame (width x height) accepted")
    p.add_argument(
        "--max-decoded-mb",
        type=float,
        default=d.max_decoded_mb,
        help="decoded frames one clip may take in memory (checked from the header before decoding)",
    )
    p.add_argument(
        "--decode-timeout",
        type=float,
        default=d.decode_timeout,
        help="seconds a decoding worker may run before it is killed",
    )
    p.add_argument(
        "--decode-memory-mb", type=float, default=d.decode_memory_mb, help="address space a decoding worker may add"
    )
    p.add_argument("--decode-workers", type=int, default=d.decode_workers, help="clips decoded at once")
    p.add_argument("--max-batch", type=int, default=d.max_batch, help="clips per model call (dynamic batching)")
    p.add_argument("--no-batching", action="store_true", help="one clip per model call (same as --max-batch 1)")
    p.add_argument(
        "--batch-wait-ms",
        type=float,
        default=d.batch_wait_ms,
        help="how long the model waits for more clips once one is queued",
    )
    p.add_argument(
        "--queue-size",
        type=int,
        default=d.queue_size,
        help="requests in progress at most; more are answered 503 with Retry-After",
    )
    p.add_argument(
        "--timeout", type=float, default=d.timeout, help="seconds per request, arrival to answer (504 past it)"
    )
    p.add_argument("--max-batch-items", type=int, default=d.max_batch_items, help="files per /v1/predict/batch request")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    with_config(p)
    p.set_defaults(fn=cmd_serve)

    p = sub.add_parser(
        "export",
        help="a plain transformers checkpoint with a model card (no emorl needed to load it)",
        description="Write a checkpoint that loads with transformers alone (LoRA merged, emorl-only files "
        "dropped) and a README.md model card from the run's evaluation. --push-to-hub uploads "
        "it with huggingface_hub (token: HF_TOKEN or `hf auth login`).",
    )
    p.add_argument(
        "--model", required=True, help="a trained model folder, or a LoRA adapter folder (merged into its base)"
    )
    p.add_argument("--out", required=True, help="new folder for the checkpoint and README.md")
    p.add_argument(
        "--eval",
        action="append",
        metavar="DIR",
        help="evaluation or modality-analysis folder for the card (repeatable; default: the run's eval/ "
        "folders and analysis folders found beside the model)",
    )
    p.add_argument(
        "--base-model",
        help="hub id of the model it was trained from, for the card (default: from the "
        "run config's model.path when it is a hub id)",
    )
    p.add_argument("--license", default="other", help="license in the card's metadata (default: other)")
    p.add_argument("--push-to-hub", metavar="REPO", help="upload the exported folder to this hub repository")
    p.add_argument("--private", action="store_true", help="create the hub repository as private")
    with_config(p)
    p.set_defaults(fn=cmd_export)
