"""emorl serve without a model: the app (auth, limits, paths, queue, timeouts, JSON errors) around a
fake engine, the batcher, the metrics, and the decoding worker (real clips, a killed worker)."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from media_helpers import make_clip

from emorl.data.media import MediaLimits
from emorl.serve.app import BodyLimit, create_app
from emorl.serve.batcher import Batcher, Job
from emorl.serve.media import Decoder, DecodeSpec
from emorl.serve.metrics import Metrics, percentile
from emorl.serve.settings import ServeError, ServeSettings

TOKEN = "a-test-token-of-32-characters-xx"


class FakeEngine:
    """Answers every clip 'happy' (p 0.75) after ``delay`` seconds; records batch sizes."""

    labels = ("happy", "sad")

    def __init__(self, delay: float = 0.0, images: bool = False):
        self.delay = delay
        self.images = images
        self.batches: list[int] = []
        self.jobs: list = []

    def describe(self) -> dict:
        return {"model": "fake", "family": "Fake", "labels": list(self.labels), "device": "cpu", "recipe": "r1-omni"}

    def decode_spec(self, s: ServeSettings) -> DecodeSpec:
        return DecodeSpec(
            num_frames=4,
            frame_size=None,
            want_video=True,
            want_audio=True,
            on_missing_audio="error",
            limits=MediaLimits(),
            max_seconds=s.max_seconds,
            max_pixels=s.max_pixels,
            max_decoded_bytes=int(s.max_decoded_mb * 2**20),
            images=self.images,
        )

    def run(self, jobs):
        self.batches.append(len(jobs))
        self.jobs.extend(jobs)
        time.sleep(self.delay)
        return [
            {
                "id": j.name,
                "emotion": "happy",
                "probabilities": {"happy": 0.75, "sad": 0.25},
                "reasoning": "",
                "format_ok": True,
                "parse": "ok",
                "completion": "<answer>happy</answer>",
                "modality": "video+audio",
                "cues": [],
                "media_notes": j.media_notes,
                "ablation": None,
            }
            for j in jobs
        ]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    make_clip(d / "a.mp4", seconds=1.0, size=32, seed=3)
    (d / "sub").mkdir()
    make_clip(d / "sub" / "b.mp4", seconds=1.0, size=32, seed=4)
    outside = tmp_path_factory.mktemp("outside")
    make_clip(outside / "secret.mp4", seconds=1.0, size=32, seed=5)
    os.symlink(outside / "secret.mp4", d / "link.mp4")
    return d


def client(engine=None, **kw) -> TestClient:
    return TestClient(create_app(engine or FakeEngine(), ServeSettings(**kw)))


def test_predict_and_errors_are_json(media):
    with client(media_root=media) as c:
        r = c.post("/v1/predict", files={"file": ("a.mp4", (media / "a.mp4").read_bytes())})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["emotion"] == "happy" and abs(sum(body["probabilities"].values()) - 1) < 1e-9
        assert set(body["timings"]) == {"decode_ms", "queue_ms", "inference_ms", "total_ms", "batch_size"}
        for method, path, status, code in (
            ("get", "/v1/predict", 405, "method_not_allowed"),
            ("get", "/nope", 404, "not_found"),
        ):
            r = getattr(c, method)(path)
            assert r.status_code == status and r.json()["error"]["code"] == code
        r = c.post("/v1/predict", content=b"x=1", headers={"content-type": "application/x-www-form-urlencoded"})
        assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_body"
        r = c.post("/v1/predict?ablation=maybe", files={"file": ("a.mp4", b"x")})
        assert r.status_code == 422 and "ablation" in r.json()["error"]["message"]
        r = c.post("/v1/predict", files={"other": ("a.mp4", b"x")})
        assert r.status_code == 422 and r.json()["error"]["code"] == "missing_file"
        r = c.post("/v1/predict", files={"file": ("a.mp4", b"")})
        assert r.status_code == 422 and r.json()["error"]["code"] == "empty_file"
        assert c.get("/health").json()["status"] == "ok"


def test_bearer_token(media):
    with client(token=TOKEN) as c:
        assert c.get("/health").status_code == 200 and c.get("/health").json()["auth"] is True
        assert c.get("/").status_code == 200  # the page asks for the token itself
        files = {"file": ("a.mp4", (media / "a.mp4").read_bytes())}
        r = c.post("/v1/predict", files=files)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.json()["error"]["code"] == "unauthorized"
        r = c.post("/v1/predict", files=files, headers={"Authorization": "Bearer wrong-token"})
        assert r.status_code == 401 and "wrong" in r.json()["error"]["message"]
        assert c.get("/metrics").status_code == 401
        ok = {"Authorization": f"Bearer {TOKEN}"}
        assert c.post("/v1/predict", files=files, headers=ok).status_code == 200
        assert c.get("/metrics", headers=ok).json()["errors"]["unauthorized"] == 3
    with pytest.raises(ValueError, match="at least 16"):
        ServeSettings(token="short")


def test_paths_only_under_the_media_root(media):
    with client(media_root=media) as c:

        def ask(rel):
            return c.post("/v1/predict", json={"path": rel})

        assert ask("sub/b.mp4").status_code == 200
        assert ask("sub/../a.mp4").json()["id"] == "sub/../a.mp4"
        for rel in ("../outside/secret.mp4", "/etc/passwd", "link.mp4", "sub/../../x.mp4"):
            r = ask(rel)
            assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden_path", rel
            assert str(media) not in r.text  # the server's own paths are not disclosed
        assert ask("missing.mp4").status_code == 404
        assert c.post("/v1/predict", json={"path": "a.mp4", "extra": 1}).json()["error"]["code"] == "unknown_field"
        r = c.post("/v1/predict", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"
        r = c.post("/v1/predict/batch", json={"paths": ["a.mp4", "../x.mp4"], "ablation": False})
        res = r.json()["results"]
        assert r.status_code == 200 and res[0]["emotion"] == "happy" and res[1]["error"]["status"] == 403
    with client() as c:  # no media root: uploads only
        r = c.post("/v1/predict", json={"path": "a.mp4"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "paths_disabled"


def test_full_queue_answers_503_with_retry_after(media):
    app = create_app(FakeEngine(), ServeSettings(queue_size=2))
    with TestClient(app) as c:
        srv = app.state.server
        assert srv.batcher.admit(2)  # two requests in progress
        files = {"file": ("a.mp4", (media / "a.mp4").read_bytes())}
        r = c.post("/v1/predict", files=files)
        assert r.status_code == 503 and r.json()["error"]["code"] == "queue_full"
        assert int(r.headers["retry-after"]) >= 1
        srv.batcher.release(2)
        assert c.post("/v1/predict", files=files).status_code == 200
        assert c.get("/metrics").json()["queue"] == {"depth": 0, "in_progress": 0, "capacity": 2, "running": 0}


def test_timeout_answers_504_and_the_server_keeps_serving(media):
    engine = FakeEngine(delay=1.5)
    with client(engine, timeout=0.5) as c:
        r = c.post("/v1/predict", files={"file": ("a.mp4", (media / "a.mp4").read_bytes())})
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
        assert c.get("/health").status_code == 200
        assert c.get("/metrics").json()["errors"] == {"timeout": 1}


def test_upload_limits(media, tmp_path):
    with client(max_upload_mb=0.01) as c:  # 10 KiB
        big = os.urandom(40_000)
        r = c.post("/v1/predict", files={"file": ("a.mp4", big)})
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
        for name, code, status in (("a.txt", "unsupported_type", 415), ("a.png", "image_input", 415)):
            r = c.post("/v1/predict", files={"file": (name, b"1234")})
            assert (r.status_code, r.json()["error"]["code"]) == (status, code)


def test_still_images_when_the_model_takes_them(tmp_path):
    """A model whose family takes images gets a photo as its one frame (kind 'image', no audio, its own
    size); an unreadable image and one past max_pixels are refused with 422, the server keeps serving."""
    from PIL import Image

    rgb = np.zeros((24, 40, 3), np.uint8)
    rgb[:, :20] = (200, 30, 30)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((300, 300), np.uint8), "L").save(tmp_path / "big.png")
    engine = FakeEngine(images=True)
    with client(engine, max_pixels=200 * 200) as c:
        r = c.post("/v1/predict", files={"file": ("photo.png", (tmp_path / "a.png").read_bytes())})
        assert r.status_code == 200, r.text
        job = engine.jobs[-1]
        assert job.kind == "image" and job.clip.audio is None and job.clip.frames.shape == (1, 24, 40, 3)
        assert job.clip.frames[0, 0, 0].tolist() == [200, 30, 30]
        for name, data, code in (
            ("bad.png", b"\x89PNG\r\n\x1a\n not really", "unreadable"),
            ("big.png", (tmp_path / "big.png").read_bytes(), "frame_too_large"),
        ):
            r = c.post("/v1/predict", files={"file": (name, data)})
            assert (r.status_code, r.json()["error"]["code"]) == (422, code), r.text
        # a JPEG named .png is read by content, as `emorl data check` accepts it
        Image.fromarray(rgb).save(tmp_path / "j.jpg", quality=95)
        r = c.post("/v1/predict", files={"file": ("named.png", (tmp_path / "j.jpg").read_bytes())})
        assert r.status_code == 200, r.text
        assert c.get("/health").json()["status"] == "ok"


def test_body_limit_while_streaming():
    """A body without Content-Length is counted as it arrives and refused past the limit."""
    metrics, sent = Metrics(), []

    async def inner(scope, receive, send):
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def app_raising(scope, receive, send):
        try:
            await inner(scope, receive, send)
        except ServeError as e:
            sent.append(e.code)
            raise

    chunks = iter([{"type": "http.request", "body": b"x" * 600, "more_body": True}] * 3)

    async def receive():
        return next(chunks)

    async def send(msg):
        pass

    mw = BodyLimit(app_raising, limit_for=lambda path: 1000, metrics=metrics)
    with pytest.raises(ServeError, match="at most"):
        asyncio.run(mw({"type": "http", "path": "/v1/predict", "headers": []}, receive, send))
    assert sent == ["too_large"]


# ------------------------------------------------------------------------------- batcher


def _jobs(n: int, deadline: float = 1e18) -> list[Job]:
    return [Job(name=f"c{i}", clip=None, kind="video", ablation=False, deadline=deadline) for i in range(n)]


@pytest.mark.parametrize("max_batch, sizes", [(4, [4, 4, 2]), (1, [1] * 10)])
def test_batcher_forms_batches_from_the_queue(max_batch, sizes):
    seen = []

    def run(jobs):
        seen.append(len(jobs))
        return [{"id": j.name} for j in jobs]

    b = Batcher(run, max_batch=max_batch, wait_s=0.0, capacity=100)
    jobs = _jobs(10)
    for j in jobs:  # queued before the model thread starts: batches are deterministic
        b.submit(j)
    b.start()
    results = [j.future.result(timeout=10) for j in jobs]
    b.stop()
    assert seen == sizes
    assert [r["id"] for r in results] == [j.name for j in jobs]
    assert {r["timings"]["batch_size"] for r in results} == set(sizes)


def test_batcher_waits_for_more_clips_and_drops_expired_ones():
    seen = []
    b = Batcher(
        lambda jobs: seen.append([j.name for j in jobs]) or [{} for _ in jobs], max_batch=8, wait_s=0.3, capacity=100
    )
    b.start()
    late = _jobs(1, deadline=time.monotonic() - 1)[0]  # its client gave up already
    late.name = "late"
    first, second = _jobs(2)
    b.submit(first)
    threading.Timer(0.05, b.submit, [second]).start()  # arrives within the batch window
    b.submit(late)
    assert first.future.result(timeout=10) == second.future.result(timeout=10)
    with pytest.raises(ServeError, match="timed out"):
        late.future.result(timeout=10)
    b.stop()
    assert seen == [["c0", "c1"]]


def test_batcher_admission_is_bounded():
    b = Batcher(lambda jobs: [], max_batch=2, wait_s=0, capacity=3)
    assert b.admit(2) and not b.admit(2) and b.admit(1) and not b.admit(1)
    b.release(3)
    assert b.admit(3)


def test_a_failing_batch_fails_its_clips_only():
    calls = []

    def run(jobs):
        calls.append(len(jobs))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return [{"ok": True} for _ in jobs]

    b = Batcher(run, max_batch=1, wait_s=0, capacity=10)
    a, c = _jobs(2)
    b.submit(a)
    b.submit(c)
    b.start()
    with pytest.raises(ServeError, match="boom") as e:
        a.future.result(timeout=10)
    assert e.value.status == 500
    assert c.future.result(timeout=10)["ok"]
    b.stop()


# ------------------------------------------------------------------------------- metrics


def test_percentile_by_hand():
    assert percentile([], 50) is None
    assert percentile([5.0], 99) == 5.0
    assert percentile([1, 2, 3, 4], 50) == 2.5  # halfway between ranks 1 and 2 (0-based)
    assert percentile([10, 20, 30], 90) == pytest.approx(28.0)  # rank 1.8: 20 + 0.8 * 10
    assert percentile([4, 1, 3, 2], 0) == 1 and percentile([4, 1, 3, 2], 100) == 4


def test_metrics_snapshot_counts_by_kind():
    m = Metrics()
    for s in (0.1, 0.2, 0.3, 0.4):
        m.request("/v1/predict", 200, s, clips=1)
    m.request("/v1/predict", 422, 0.01, "unreadable")
    m.request("/health", 200, 0.001)
    m.batch(3, 0.5)
    snap = m.snapshot(depth=2)
    assert snap["requests"]["by_endpoint"] == {"/v1/predict": 5, "/health": 1}
    assert snap["errors"] == {"unreadable": 1} and snap["clips"] == 4
    assert snap["latency_ms"]["n"] == 4 and snap["latency_ms"]["p50"] == 250.0  # health and errors not counted
    assert snap["batches"] == {"count": 1, "mean_size": 3.0, "sizes": {"3": 1}, "model_seconds": 0.5}
    assert snap["queue"] == {"depth": 2}


# ------------------------------------------------------------------------------- decoding worker


def _spec(**kw) -> DecodeSpec:
    base = {
        "num_frames": 4,
        "frame_size": None,
        "want_video": True,
        "want_audio": True,
        "on_missing_audio": "error",
        "limits": MediaLimits(),
        "max_seconds": 60,
        "max_pixels": 10**7,
        "max_decoded_bytes": 2**30,
    }
    return DecodeSpec(**{**base, **kw})


def test_decoder_answers_and_applies_limits(media):
    d = Decoder(_spec(), timeout=20, memory_mb=1024)
    got = d.decode(media / "a.mp4", "a.mp4")
    assert got.clip.frames.shape == (4, 32, 32, 3) and got.clip.audio is not None and got.kind == "video"
    short = Decoder(_spec(max_seconds=0.5), timeout=20, memory_mb=1024)
    with pytest.raises(ServeError, match="1.0 s long") as e:
        short.decode(media / "a.mp4", "a.mp4")
    assert (e.value.status, e.value.code) == (422, "too_long")
    small = Decoder(_spec(max_pixels=500), timeout=20, memory_mb=1024)
    with pytest.raises(ServeError) as e:
        small.decode(media / "a.mp4", "a.mp4")
    assert e.value.code == "frame_too_large"
    tight = Decoder(_spec(max_decoded_bytes=10_000), timeout=20, memory_mb=1024)
    with pytest.raises(ServeError) as e:
        tight.decode(media / "a.mp4", "a.mp4")
    assert e.value.code == "too_large_decoded" and "frames of 32x32" in e.value.message


def test_a_hung_decoder_is_killed(tmp_path, media):
    """A FIFO never delivers data: libav blocks reading it; the worker is killed after the timeout."""
    fifo = tmp_path / "hang.mp4"
    os.mkfifo(fifo)
    d = Decoder(_spec(), timeout=1.0, memory_mb=1024)
    t0 = time.monotonic()
    with pytest.raises(ServeError) as e:
        d.decode(fifo, "hang.mp4")
    assert e.value.code == "decode_timeout" and e.value.status == 422 and d.killed == 1
    assert time.monotonic() - t0 < 15
    assert d.decode(media / "a.mp4", "a.mp4").clip.frames is not None  # the next file is decoded as usual


@pytest.mark.e2e
def test_a_decoder_over_its_memory_limit_fails_cleanly(tmp_path, media):
    """A small file that decodes to far more frames than the worker's address-space limit allows
    (the header check switched off): the worker's allocation fails, the answer is a 422."""
    import numpy as np

    from emorl.data.media import write_mp4

    big = tmp_path / "big.mp4"
    write_mp4(big, np.full((600, 240, 320, 3), 90, np.uint8), 30, None)  # ~140 MB of frames, a few kB of file
    d = Decoder(_spec(max_decoded_bytes=2**40), timeout=60, memory_mb=100)
    with pytest.raises(ServeError) as e:
        d.decode(big, "big.mp4")
    assert (e.value.status, e.value.code) == (422, "too_large_decoded"), e.value.message
    assert d.decode(media / "a.mp4", "a.mp4").clip.frames is not None
    guarded = Decoder(_spec(max_decoded_bytes=100 * 2**20), timeout=60, memory_mb=1024)
    with pytest.raises(ServeError, match="about 13") as e:  # refused from the header, before decoding
        guarded.decode(big, "big.mp4")


def test_openapi_schema_names_the_routes_and_fields():
    with client() as c:
        spec = c.get("/openapi.json").json()
    assert {"/health", "/metrics", "/v1/predict", "/v1/predict/batch"} <= set(spec["paths"])
    post = spec["paths"]["/v1/predict"]["post"]
    assert set(post["requestBody"]["content"]) == {"multipart/form-data", "application/json"}
    assert {"413", "415", "422", "503", "504"} <= set(post["responses"])
    pred = spec["components"]["schemas"]["Prediction"]["properties"]
    assert {"emotion", "probabilities", "reasoning", "format_ok", "timings", "ablation", "cues"} <= set(pred)


def test_device_choice():
    import torch

    from emorl.serve.server import display_name, resolve_device

    dev, ov = resolve_device("auto", ["eval.max_new_tokens=8"])
    assert dev == ("cuda" if torch.cuda.is_available() else "cpu") and ov[0] == "eval.max_new_tokens=8"
    assert f"model.device={dev}" in ov and ("model.dtype=bfloat16" in ov) == dev.startswith("cuda")
    assert resolve_device("cpu", ["model.dtype=float16"])[1] == ["model.dtype=float16", "model.device=cpu"]
    with pytest.raises(ValueError, match="device once"):
        resolve_device("auto", ["model.device=cpu"])
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no GPU"):
            resolve_device("cuda", [])
    assert display_name("Qwen/Qwen2.5-Omni-7B") == "Qwen/Qwen2.5-Omni-7B"
