"""Load a trained model with its saved run config and serve it with uvicorn."""

from __future__ import annotations

import sys
from pathlib import Path

from emorl.serve.settings import ServeSettings


def resolve_device(device: str, overrides: list[str]) -> tuple[str, list[str]]:
    """``--device auto|cpu|cuda[:N]`` as ``model.device`` / ``model.dtype`` overrides: auto is the
    first GPU when torch sees one, else the CPU; on a GPU the default dtype is bfloat16. Setting
    model.device in the overrides as well is an error (one setting, one place)."""
    import torch

    if any(o.split("=", 1)[0].strip() == "model.device" for o in overrides):
        raise ValueError("give the device once: --device (not the model.device override) for emorl serve")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: torch sees no GPU here; use --device cpu or auto")
    extra = [f"model.device={device}"]
    if device.startswith("cuda") and not any(o.split("=", 1)[0].strip() == "model.dtype" for o in overrides):
        extra.append("model.dtype=bfloat16")
    return device, [*overrides, *extra]


def build_engine(model: str | Path, config: str | None, overrides: list[str], device: str = "auto"):
    """The Engine of ``model``: its saved run config (then ``config`` and ``overrides``), loaded
    on ``device``. Notes about settings that differ from the model's training go to stderr."""
    from emorl.config import config_for_model
    from emorl.runs import load_adapter
    from emorl.serve.engine import Engine

    _, overrides = resolve_device(device, list(overrides))
    cfg, notes = config_for_model(model, config, overrides)
    for n in notes:
        print(f"[emorl serve] note: {n}", file=sys.stderr)
    adapter = load_adapter(cfg, model)
    adapter.model.eval()
    return Engine(cfg, adapter, model=display_name(model))


def display_name(model: str | Path) -> str:
    """What /health calls the model: the folder's name (``RUN/model``: ``RUN/model``), never the
    server's full path."""
    p = Path(model).expanduser()
    if not p.exists():
        return str(model)  # a hub id
    p = p.resolve()
    return f"{p.parent.name}/{p.name}" if p.name in ("model", "adapter") else p.name


def serve(
    model: str | Path,
    settings: ServeSettings,
    *,
    config: str | None = None,
    overrides: list[str] = (),
    device: str = "auto",
    log_level: str = "info",
) -> None:
    """Run the server until interrupted."""
    import uvicorn

    from emorl.serve.app import create_app

    engine = build_engine(model, config, list(overrides), device)
    app = create_app(engine, settings)
    d = engine.describe()
    print(
        f"[emorl serve] {d['family']} on {d['device']} ({d['dtype']}), labels: {', '.join(d['labels'])}; "
        f"batching: {'up to ' + str(settings.max_batch) if settings.batching else 'off'}; "
        f"auth: {'bearer token' if settings.token else 'none'}; "
        f"media root: {settings.media_root or 'none (uploads only)'}",
        file=sys.stderr,
        flush=True,
    )
    if settings.host not in ("127.0.0.1", "localhost", "::1") and settings.token is None:
        print(
            f"[emorl serve] warning: listening on {settings.host} without a token: anyone who reaches this port "
            "can use the model (set EMORL_SERVE_TOKEN or --token-file)",
            file=sys.stderr,
            flush=True,
        )
    # uvicorn's own connection cap is a backstop above the app's queue (which answers 503 in JSON)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        timeout_keep_alive=5,
        limit_concurrency=settings.queue_size * 2 + 32,
        server_header=False,
    )
