"""`emorl serve` with the tiny model in a subprocess on a free localhost port: real clips answered
with a probability for every class, every kind of bad upload refused with a 4xx JSON error while
the server keeps serving, batching across concurrent clients, the metrics, and the web page driven
in headless Chromium (upload a clip, wait, read the emotion and the bars from the DOM, screenshot).

REQUIRES CHROMIUM for the page test (it fails, not skips, without it; see tests/e2e/test_report.py).
Set EMORL_SERVE_SCREENSHOT=docs/serve-screenshot.png to keep the page's screenshot.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from media_helpers import make_clip

from emorl.serve.client import Client

pytestmark = pytest.mark.e2e

LABELS = ["happy", "sad", "angry", "neutral"]
OVERRIDES = {"data.sampling": "fixed", "data.frame_size": 56, "data.num_frames": 4, "eval.max_new_tokens": 8}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def trained_like(tiny_model_dir, dest: Path) -> Path:
    """A copy of the tiny model with a saved run config (label set, frames, lengths), as a trained
    model folder has."""
    from emorl.config import RUN_CONFIG_FILE, RunConfig, load_config, run_config_yaml

    shutil.copytree(tiny_model_dir, dest)
    cfg = load_config(None, [f"{k}={v}" for k, v in OVERRIDES.items()], base=RunConfig())
    cfg.prompt.labels = list(LABELS)
    (dest / RUN_CONFIG_FILE).write_text(run_config_yaml(cfg))
    return dest


def write_zero_frame_mkv(path: Path) -> Path:
    """A Matroska file with a video stream that holds no frame (and one second of audio)."""
    import av

    with av.open(str(path), "w", format="matroska") as out:
        vs = out.add_stream("libx264", rate=8)
        vs.width, vs.height, vs.pix_fmt = 32, 32, "yuv420p"
        a_s = out.add_stream("aac", rate=16000)
        a_s.layout = "mono"
        a = np.zeros((1, 16000), np.float32)
        for s in range(0, 16000, 1024):
            f = av.AudioFrame.from_ndarray(np.ascontiguousarray(a[:, s : s + 1024]), format="flt", layout="mono")
            f.sample_rate, f.pts, f.time_base = 16000, s, Fraction(1, 16000)
            for pkt in a_s.encode(f):
                out.mux(pkt)
        for stream in (a_s, vs):
            for pkt in stream.encode():
                out.mux(pkt)
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    from emorl.data.media import write_mp4, write_wav

    d = tmp_path_factory.mktemp("serve_media")
    root = d / "root"
    clips = [make_clip(root / f"clip{i}.mp4", seconds=1.5, size=48, seed=20 + i) for i in range(4)]
    bad = d / "bad"
    bad.mkdir()
    good = clips[0].read_bytes()
    (bad / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    (bad / "truncated.mp4").write_bytes(good[: len(good) // 2])
    make_clip(bad / "silent.mp4", seconds=1.0, size=32, seed=7, audio=False)
    write_zero_frame_mkv(bad / "zero.mkv")
    write_wav(bad / "tone.wav", 0.1 * np.sin(np.linspace(0, 800, 16000)).astype(np.float32))
    shutil.copy(bad / "tone.wav", bad / "wav_named.mp4")
    (bad / "big.mp4").write_bytes(np.random.default_rng(1).bytes(400_000))  # over --max-upload-mb 0.25
    write_mp4(bad / "long.mp4", np.zeros((96, 16, 16, 3), np.uint8), 8, np.zeros(12 * 16000, np.float32))  # 12 s
    (bad / "notes.txt").write_text("not a clip")
    make_clip(d / "secret.mp4", seconds=1.0, size=32, seed=9)  # beside the root, not in it
    os.symlink(d / "secret.mp4", root / "escape.mp4")
    return {"root": root, "clips": clips, "bad": bad}


@pytest.fixture(scope="module")
def server(tiny_model_dir, media, tmp_path_factory):
    d = tmp_path_factory.mktemp("served")
    model = trained_like(tiny_model_dir, d / "model")
    port = free_port()
    log = open(d / "server.log", "w")  # noqa: SIM115 - open for the server's lifetime
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emorl.cli",
            "serve",
            "--model",
            str(model),
            "--port",
            str(port),
            "--media-root",
            str(media["root"]),
            "--max-upload-mb",
            "0.25",
            "--max-seconds",
            "10",
            "--batch-wait-ms",
            "30",
            "--log-level",
            "warning",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    c = Client(f"http://127.0.0.1:{port}", timeout=120)
    deadline = time.monotonic() + 120
    while True:
        try:
            if c.health()[0] == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"emorl serve did not start:\n{(d / 'server.log').read_text()[-3000:]}")
        time.sleep(0.5)
    yield {"client": c, "url": c.url, "model": model, "log": d / "server.log", "proc": proc}
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def test_a_clip_gets_every_class_probability(server, media):
    c = server["client"]
    status, health, _ = c.health()
    assert health["labels"] == LABELS and health["device"] == "cpu" and health["paths"] is True
    status, body, _ = c.predict(media["clips"][0])
    assert status == 200, body
    assert list(body["probabilities"]) == LABELS
    assert abs(sum(body["probabilities"].values()) - 1) < 1e-5 and min(body["probabilities"].values()) >= 0
    assert body["emotion"] in (*LABELS, None) and (body["emotion"] is None) == (body["parse"] != "ok")
    assert isinstance(body["format_ok"], bool) and isinstance(body["reasoning"], str)
    assert body["modality"] == "video+audio" and body["ablation"] is None
    assert body["timings"]["total_ms"] >= body["timings"]["inference_ms"] > 0


def test_answers_equal_emorl_predict(server, media, tmp_path):
    """The service reads the model's saved run config like `emorl predict`: same probabilities."""
    from emorl.config import config_for_model
    from emorl.runs import run_predict

    cfg, _ = config_for_model(server["model"])
    out = tmp_path / "p.jsonl"
    run_predict(cfg, server["model"], str(media["clips"][1]), out, progress=False)
    row = json.loads(out.read_text().splitlines()[0])
    _, body, _ = server["client"].predict(media["clips"][1])
    assert body["completion"] == row["completion"] and body["emotion"] == row["emotion"]
    for k in LABELS:
        assert body["probabilities"][k] == pytest.approx(row["probabilities"][k], abs=1e-5)


def test_modality_contributions(server, media):
    status, body, _ = server["client"].predict(media["clips"][2], ablation=True)
    assert status == 200, body
    ab = body["ablation"]
    conds = ab["conditions"]
    assert set(conds) == {"video+audio", "video", "audio"}
    assert conds["video+audio"]["probabilities"] == body["probabilities"]
    top = max(body["probabilities"], key=body["probabilities"].get)
    assert ab["reference_class"] == top
    assert ab["contributions"]["video"] == pytest.approx(
        body["probabilities"][top] - conds["audio"]["probabilities"][top]
    )
    assert ab["contributions"]["audio"] == pytest.approx(
        body["probabilities"][top] - conds["video"]["probabilities"][top]
    )
    for p in conds.values():
        assert abs(sum(p["probabilities"].values()) - 1) < 1e-5


BAD = [  # (what, how to send it, status, code)
    ("corrupt", ("upload", "corrupt.mp4"), 422, "unreadable"),
    ("truncated", ("upload", "truncated.mp4"), 422, "unreadable"),
    ("no audio", ("upload", "silent.mp4"), 422, "no_audio"),
    ("zero frames", ("upload", "zero.mkv"), 422, "empty"),
    ("wrong container", ("upload", "wav_named.mp4"), 415, "wrong_container"),
    ("oversize", ("upload", "big.mp4"), 413, "too_large"),
    ("too long", ("upload", "long.mp4"), 422, "too_long"),
    ("not media", ("upload", "notes.txt"), 415, "unsupported_type"),
    ("path outside the root", ("path", "../secret.mp4"), 403, "forbidden_path"),
    ("absolute path", ("path", "/etc/passwd"), 403, "forbidden_path"),
    ("symlink out of the root", ("path", "escape.mp4"), 403, "forbidden_path"),
]


@pytest.mark.parametrize("what, how, status, code", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_a_4xx_json_error(server, media, what, how, status, code):
    c = server["client"]
    kind, arg = how
    got, body, _ = c.predict(media["bad"] / arg) if kind == "upload" else c.predict_path(arg)
    assert (got, body["error"]["code"]) == (status, code), body
    assert body["error"]["status"] == status and len(body["error"]["message"]) > 10
    assert "/tmp" not in body["error"]["message"]  # no server-side path in the message
    assert c.health()[0] == 200  # still serving
    assert server["proc"].poll() is None


def test_a_still_image_is_answered_as_emorl_predict_answers_it(server, tmp_path):
    """The tiny omni model's family takes images: a photo is one IMAGE prompt, with every class's
    probability, the same completion and probabilities as `emorl predict` on that file."""
    from PIL import Image

    from emorl.config import config_for_model
    from emorl.runs import run_predict

    rgb = np.random.default_rng(3).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "face.png")
    c = server["client"]
    assert c.health()[1]["images"] is True
    status, body, _ = c.predict(tmp_path / "face.png", ablation=True)
    assert status == 200, body
    assert body["modality"] == "image" and body["ablation"] is None  # one modality: nothing to ablate,
    assert "ablation:single_modality" in body["media_notes"]  # and the answer says so
    assert list(body["probabilities"]) == LABELS and abs(sum(body["probabilities"].values()) - 1) < 1e-5
    cfg, _ = config_for_model(server["model"])
    out = tmp_path / "p.jsonl"
    run_predict(cfg, server["model"], str(tmp_path / "face.png"), out, progress=False)
    row = json.loads(out.read_text().splitlines()[0])
    assert body["completion"] == row["completion"]
    for k in LABELS:
        assert body["probabilities"][k] == pytest.approx(row["probabilities"][k], abs=1e-5)


def test_audio_only_files_and_batches(server, media):
    c = server["client"]
    status, body, _ = c.predict(media["bad"] / "tone.wav")
    assert status == 200 and body["modality"] == "audio" and abs(sum(body["probabilities"].values()) - 1) < 1e-5
    status, body, _ = c.predict_batch([media["clips"][0], media["bad"] / "corrupt.mp4", media["clips"][3]])
    assert status == 200
    res = body["results"]
    assert [r["id"] for r in res] == ["clip0.mp4", "corrupt.mp4", "clip3.mp4"]
    assert res[1]["error"]["code"] == "unreadable" and "probabilities" in res[0] and "probabilities" in res[2]


def test_concurrent_clients_share_batches_and_get_their_own_answers(server, media):
    c = server["client"]
    alone = {p.name: c.predict(p)[1]["probabilities"] for p in media["clips"]}
    out: dict = {}

    def ask(p):
        out[p.name] = c.predict(p)

    threads = [threading.Thread(target=ask, args=(p,)) for p in media["clips"] * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for name, (status, body, _) in out.items():
        assert status == 200, body
        for k in LABELS:  # batched with others or not, a clip's answer is its own
            assert body["probabilities"][k] == pytest.approx(alone[name][k], abs=1e-4)
    m = c.metrics()[1]
    assert sum(int(k) * v for k, v in m["batches"]["sizes"].items()) == m["clips"]  # every answered clip ran once


def test_metrics_count_requests_errors_and_latency(server):
    status, m, _ = server["client"].metrics()
    assert status == 200
    assert m["requests"]["by_endpoint"]["/v1/predict"] >= len(BAD)
    for _, _, _, code in BAD:
        assert m["errors"].get(code, 0) >= 1, code
    assert m["latency_ms"]["n"] >= 1 and m["latency_ms"]["p50"] <= m["latency_ms"]["p99"]
    assert m["queue"]["depth"] == 0 and m["queue"]["capacity"] == 64
    status, text, _ = server["client"].request("GET", "/metrics?format=prometheus")
    assert 'emorl_requests_total{endpoint="/v1/predict"}' in text and "emorl_latency_ms{quantile=" in text


def _chromium() -> str:
    exe = os.environ.get("EMORL_CHROMIUM") or next(
        (p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None
    )
    if not exe:
        pytest.fail(
            "chromium is required for this test (CI installs it): apt-get update && apt-get install -y "
            "--no-install-recommends chromium fonts-dejavu-core; or set EMORL_CHROMIUM"
        )
    return exe


def test_web_page_in_chromium(server, media, tmp_path):
    from cdp import Browser
    from PIL import Image

    html = server["client"].request("GET", "/")[1]
    assert "http://" not in html and "https://" not in html and "<script src" not in html  # nothing fetched
    clip = media["clips"][3]
    _, expected, _ = server["client"].predict(clip, ablation=True)
    with Browser(_chromium()) as b:
        page = b.open(server["url"] + "/", width=1280, height=900)
        page.wait("document.getElementById('model').textContent.includes('classes')")
        page.set_file("#file", clip)
        state = page.wait("['done', 'error'].includes(document.body.dataset.state) && document.body.dataset.state")
        assert state == "done", page.eval("document.getElementById('error').textContent")
        dom = page.eval("""(() => ({
            emotion: document.getElementById('emotion').dataset.emotion,
            shown: document.getElementById('emotion').textContent,
            bars: [...document.querySelectorAll('.prob-bar')].map(b => [b.dataset.label, +b.dataset.p, b.style.width]),
            contrib: [...document.querySelectorAll('.contrib-bar')].map(b => [b.dataset.modality, +b.dataset.value]),
            video: !!document.querySelector('#player-box video'),
            marks: document.querySelectorAll('#reasoning mark').length,
        }))()""")
        shot = tmp_path / "page.png"
        page.screenshot(shot)
    assert dom["emotion"] == (expected["emotion"] or "")
    assert dom["shown"] == (expected["emotion"] or f"no answer ({expected['parse']})")
    assert sorted(lab for lab, _, _ in dom["bars"]) == sorted(LABELS)
    assert sum(p for _, p, _ in dom["bars"]) == pytest.approx(1, abs=1e-5)
    for lab, p, width in dom["bars"]:
        assert p == pytest.approx(expected["probabilities"][lab], abs=1e-4)
        assert float(width.rstrip("%")) == pytest.approx(100 * p, abs=0.06)
    assert dict(dom["contrib"]) == pytest.approx(expected["ablation"]["contributions"], abs=1e-4)
    assert dom["video"] and dom["marks"] == len(expected["cues"])
    im = Image.open(shot)
    im.load()
    assert im.size == (1280, 900) and np.asarray(im.convert("RGB")).astype(float).std() > 10
    keep = os.environ.get("EMORL_SERVE_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)
