"""End to end: modality analysis with the tiny model on real synthetic clips, then the HTML
report rendered in headless Chromium and checked by screenshot (pixels) and DOM (counts).

REQUIRES CHROMIUM. The rendering test FAILS (it does not skip) when no chromium binary is
found, because CI installs it:  apt-get update && apt-get install -y --no-install-recommends
chromium fonts-dejavu-core   (or set EMORL_CHROMIUM=/path/to/chrome).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.e2e

N_CLIPS = 14  # two per class
WINDOW = (1280, 2000)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from emorl.data.synthetic import synthesize

    out = tmp_path_factory.mktemp("world")
    paths = synthesize(out, seed=3, sizes={"test": N_CLIPS}, frame_size=56, workers=1, progress=False)
    return Path(paths["test"])


@pytest.fixture(scope="module")
def runs(world, tiny_model_dir, tmp_path_factory):
    """An analysis run dir (4 conditions) and an eval dir of the same tiny model."""
    from emorl.config import RunConfig
    from emorl.eval.evaluate import evaluate
    from emorl.runs import load_adapter, load_samples, make_builder, run_analyze

    cfg = RunConfig()
    cfg.data.sampling, cfg.data.num_frames, cfg.data.frame_size = "fixed", 8, 56
    cfg.eval.max_new_tokens = 8
    cfg.eval.batch_size = 16
    d = tmp_path_factory.mktemp("runs")
    adapter = load_adapter(cfg, tiny_model_dir)
    res = run_analyze(cfg, tiny_model_dir, world, d / "analysis", progress=False, name="tiny", adapter=adapter)
    evaluate(
        adapter,
        make_builder(cfg, adapter),
        load_samples(world, default="test"),
        d / "eval",
        max_new_tokens=8,
        batch_size=16,
        progress=False,
    )
    return d / "analysis", d / "eval", res


def test_analysis_run_dir_layout(runs):
    a, _, res = runs
    for c in ("av", "video", "audio", "text"):
        rows = [json.loads(x) for x in (a / c / "predictions.jsonl").read_text().splitlines()]
        assert len(rows) == N_CLIPS and {r["modality"] for r in rows} == {"video+audio" if c == "av" else c}
        m = json.loads((a / c / "metrics.json").read_text())
        assert m["ci"]["war"]["lo"] <= m["war"] <= m["ci"]["war"]["hi"] and (a / c / "confusion.png").is_file()
    mod = json.loads((a / "modality.json").read_text())
    assert set(mod["conditions"]) == {"av", "video", "audio", "text"}
    assert set(mod["drops"]) == {"video", "audio", "both"} and set(mod["reliance"]) == {"video", "audio", "both"}
    assert mod["informative"]["n_clips"] == N_CLIPS and mod["informative"]["combined"]["single"]["n"] > 0
    assert mod["informative"]["reference"]["combined"]["single"]["n"] == mod["informative"]["n_single"]
    assert len(json.loads((a / "informative_per_clip.json").read_text())) == N_CLIPS
    run = json.loads((a / "run.json").read_text())
    assert run["name"] == "tiny" and Path(run["manifest"]).is_file() and run["seconds"]["av"] >= 0
    f = json.loads((a / "faithfulness.json").read_text())
    assert {"consistency", "modality_hallucination", "cue_hallucination", "reference_cues"} <= set(f)
    assert res["attribution"]["overall"]["n"] == N_CLIPS


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


def _chrome(exe: str, *args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as prof:
        return subprocess.run(
            [
                exe,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                f"--user-data-dir={prof}",
                *args,
            ],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )


class _Dom(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs: list[dict] = []
        self.tables: dict[str, int] = {}
        self.external: list[str] = []
        self._table: str | None = None
        self._in_body = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a)
        elif tag == "table":
            self._table = a.get("data-kind", "")
            self.tables.setdefault(self._table, 0)
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._table is not None and self._in_body:
            self.tables[self._table] += 1
        if tag in ("link", "script", "iframe") and (a.get("href") or a.get("src")):
            self.external.append(a.get("href") or a.get("src"))

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag == "tbody":
            self._in_body = False


def test_report_renders_in_chromium(runs, world, tmp_path):
    from PIL import Image

    from emorl.eval.report import build_report

    exe = _chromium()
    a, e, _ = runs
    out = build_report([a, e], tmp_path / "report.html", names=["tiny-ablated", "tiny-eval"], manifest=world)
    html_text = out.read_text()
    assert "http://" not in html_text and "https://" not in html_text  # nothing fetched
    md = out.with_suffix(".md").read_text()
    for link in [x.split("](", 1)[1].split(")", 1)[0] for x in md.split("![")[1:]]:
        assert (out.parent / link).is_file(), link

    shot = tmp_path / "shot.png"
    r = _chrome(exe, f"--screenshot={shot}", f"--window-size={WINDOW[0]},{WINDOW[1]}", out.as_uri())
    assert shot.is_file(), r.stderr[-2000:]
    if os.environ.get("EMORL_TEST_ARTIFACTS"):  # keep the page and its screenshot for a human to look at
        keep = Path(os.environ["EMORL_TEST_ARTIFACTS"])
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, keep / "report-screenshot.png")
        shutil.copy(out, keep / "report.html")
    im = Image.open(shot)
    im.load()
    assert im.size == WINDOW
    px = np.asarray(im.convert("RGB")).astype(float)
    assert px.std() > 20  # not blank
    non_white = (px.min(-1) < 235).mean()  # text, tables, figures (the page background is #fbfbfd)
    assert non_white > 0.02, non_white
    sat = px.max(-1) - px.min(-1)  # strongly coloured pixels: only the figures have them in the first screen
    assert (sat > 60).sum() > 2000, (sat > 60).sum()

    r = _chrome(exe, "--dump-dom", out.as_uri())
    assert r.returncode == 0 and "<main>" in r.stdout, r.stderr[-2000:]
    dom = _Dom()
    dom.feed(r.stdout)
    assert not dom.external
    kinds: dict[str, int] = {}
    for img in dom.imgs:
        assert img["src"].startswith(("data:image/png;base64,", "data:image/jpeg;base64,")), img["src"][:40]
        kinds[img["data-kind"]] = kinds.get(img["data-kind"], 0) + 1
    assert kinds.pop("confusion") == 2  # one per model
    assert kinds.pop("frames") == 7  # one example clip per class, each with a frame strip
    assert kinds == {"modality": 1, "reliance": 1, "attribution": 1, "hallucination": 1}
    assert dom.tables["metrics"] == 2 and dom.tables["pairs"] == 1  # rows = models; one pair
    assert dom.tables["modality"] == 1  # only the ablated run
    assert dom.tables["informative"] == 2  # the ablated run + the ideal-observer reference
    assert dom.tables["faithfulness"] == 2 and dom.tables["attribution_per_class"] == 7

    # the frame strips decode to real images of the expected shape (6 frames side by side)
    import base64
    import io

    strip = next(i for i in dom.imgs if i["data-kind"] == "frames")
    s = Image.open(io.BytesIO(base64.b64decode(strip["src"].split(",", 1)[1])))
    assert s.height == 88 and s.width > 5 * 88


def test_demo_report_from_demo_layout(runs, world, tmp_path):
    """build_demo_report on a hand-made demo layout: eval/NAME/{test,ood} + analysis/grpo."""
    from emorl.eval.report import build_demo_report

    a, e, _ = runs
    demo = tmp_path / "demo"
    (demo / "data").mkdir(parents=True)
    shutil.copy(world, demo / "data" / "test.jsonl")
    for name in ("coldstart_sft", "grpo"):
        for split in ("test", "ood"):
            shutil.copytree(e, demo / "eval" / name / split)
    shutil.copytree(a, demo / "analysis" / "grpo")
    (demo / "metrics.json").write_text(json.dumps({"timings_s": {"total": 12.0}, "quick": True}))
    # media paths in the copied manifest are relative to the world folder: point them back
    rows = [json.loads(x) for x in world.read_text().splitlines()]
    for r in rows:
        r["media"] = str((world.parent / r["media"]).resolve())
    (demo / "data" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = build_demo_report(demo, demo / "report.html")
    text = out.read_text()
    assert text.count('data-kind="confusion"') == 2 and "OOD WAR" in text and "Informative modality" in text
    assert 'data-kind="frames"' in text and (demo / "report.md").is_file()
    md = (demo / "report.md").read_text()
    assert "| coldstart_sft |" in md and "| grpo |" in md and "## Modality ablations" in md
    with pytest.raises(FileNotFoundError, match="no eval/NAME/test results"):
        build_demo_report(tmp_path / "empty", tmp_path / "r2.html")
