"""A bounded load test of `emorl serve` on localhost, with dynamic batching on and off.

For each mode the script starts `emorl serve` on a free 127.0.0.1 port (batching on:
``--max-batch``; off: ``--no-batching``), waits for /health, sends ``--requests`` uploads from
``--concurrency`` client threads (each thread sends its next clip when the previous answer came
back), stops issuing new requests at ``--time-limit`` seconds, and reports: requests answered,
errors by status, throughput (answered / wall seconds), client-side latency percentiles, and the
server's batch sizes (/metrics). Nothing leaves the machine.

Without ``--model`` it builds a tiny Qwen2.5-Omni thinker offline (``emorl model init-tiny``'s
default shape) with a saved run config (7 classes, 8 frames of 84 px, ``--max-new-tokens``).

    python benchmarks/serve_load.py --requests 48 --concurrency 8 --out benchmarks/results/serve_load_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from emorl.serve.client import Client
from emorl.serve.metrics import percentile


def tiny_model(d: Path, max_new_tokens: int) -> Path:
    from emorl.config import RUN_CONFIG_FILE, RunConfig, run_config_yaml
    from emorl.models.tiny import init_tiny

    model = init_tiny(d / "model")
    cfg = RunConfig()
    cfg.prompt.labels = ["happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"]
    cfg.data.frame_size, cfg.data.num_frames = 84, 8
    cfg.eval.max_new_tokens = max_new_tokens
    (Path(model) / RUN_CONFIG_FILE).write_text(run_config_yaml(cfg))
    return Path(model)


def clips(d: Path, n: int, seconds: float, size: int) -> list[Path]:
    from emorl.data.media import write_mp4

    out = []
    for i in range(n):
        rng = np.random.default_rng(i)
        t = int(seconds * 8)
        frames = rng.integers(0, 255, (t, size, size, 3), dtype=np.uint8)
        k = int(seconds * 16000)
        audio = (0.3 * np.sin(2 * np.pi * (150 + 20 * i) * np.arange(k) / 16000)).astype(np.float32)
        write_mp4(d / f"clip{i}.mp4", frames, 8, audio)
        out.append(d / f"clip{i}.mp4")
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(model: Path, batching: bool, args, log: Path) -> tuple[subprocess.Popen, Client]:
    port = free_port()
    flags = (
        ["--max-batch", str(args.max_batch), "--batch-wait-ms", str(args.batch_wait_ms)]
        if batching
        else ["--no-batching"]
    )
    cmd = [
        sys.executable,
        "-m",
        "emorl.cli",
        "serve",
        "--model",
        str(model),
        "--port",
        str(port),
        "--device",
        args.device,
        "--queue-size",
        str(max(64, 2 * args.concurrency)),
        "--log-level",
        "warning",
        *flags,
    ]
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT)
    c = Client(f"http://127.0.0.1:{port}", timeout=args.time_limit + 60)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if c.health()[0] == 200:
                return proc, c
        except OSError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"the server did not start: {log.read_text()[-2000:]}")


def load(c: Client, files: list[Path], args) -> dict:
    lat, statuses, lock = [], {}, threading.Lock()
    issued = [0]
    t0 = time.monotonic()

    def worker():
        while True:
            with lock:
                if issued[0] >= args.requests or time.monotonic() - t0 > args.time_limit:
                    return
                i = issued[0]
                issued[0] += 1
            t = time.monotonic()
            try:
                status = c.predict(files[i % len(files)], ablation=args.ablation)[0]
            except OSError as e:
                status = f"client:{type(e).__name__}"
            dt = time.monotonic() - t
            with lock:
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                if status == 200:
                    lat.append(dt)

    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.monotonic() - t0
    m = c.metrics()[1]
    return {
        "issued": issued[0],
        "answered": len(lat),
        "statuses": statuses,
        "wall_s": round(wall, 2),
        "throughput_rps": round(len(lat) / wall, 3) if wall else None,
        "latency_ms": {f"p{q}": round(1000 * percentile(lat, q), 1) for q in (50, 90, 99)} if lat else None,
        "mean_latency_ms": round(1000 * sum(lat) / len(lat), 1) if lat else None,
        "server_batches": m["batches"],
        "server_latency_ms": m["latency_ms"],
    }


def machine(device: str) -> dict:
    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else ""
    )
    info = {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "device": device,
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="a trained model folder (default: a tiny model built offline)")
    ap.add_argument("--requests", type=int, default=48, help="requests per mode")
    ap.add_argument("--concurrency", type=int, default=8, help="client threads")
    ap.add_argument("--time-limit", type=float, default=300, help="seconds per mode after which no request is issued")
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--batch-wait-ms", type=float, default=20)
    ap.add_argument("--max-new-tokens", type=int, default=32, help="answer length of the tiny model")
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--ablation", action="store_true", help="ask for modality contributions (3 model runs a clip)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--modes", default="on,off", help="batching modes to run, in order")
    ap.add_argument("--out", help="JSON file for the results")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="emorl-load-"))
    try:
        model = Path(args.model) if args.model else tiny_model(work, args.max_new_tokens)
        files = clips(work, args.clips, args.seconds, args.size)
        res = {
            "command": "python benchmarks/serve_load.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": machine(args.device),
            "settings": {k: v for k, v in vars(args).items() if k != "out"},
            "modes": {},
        }
        for mode in args.modes.split(","):
            proc, c = start(model, mode == "on", args, work / f"server-{mode}.log")
            try:
                c.predict(files[0])  # warm-up (first-call allocations), not counted
                r = load(c, files, args)
            finally:
                proc.terminate()
                proc.wait(60)
            res["modes"][f"batching {mode}"] = r
            print(json.dumps({mode: r}), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    return res


if __name__ == "__main__":
    main()
