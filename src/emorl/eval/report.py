"""One page that compares checkpoints: a self-contained HTML report (inline CSS, images as
base64 data URIs, nothing fetched) and a Markdown twin (images written beside it).

Inputs are *run dirs*, either

- an **analysis run dir** (``emorl.eval.modality.run_analysis`` / ``emorl analyze modality``):
  ``run.json``, ``modality.json``, ``attribution.json``, ``faithfulness.json`` and
  ``{av,video,audio,text}/{predictions.jsonl,metrics.json}``; or
- an **eval dir** (``emorl eval``): ``predictions.jsonl`` + ``metrics.json``. It has only the
  full-input condition; attribution and consistency are computed from its predictions, the
  modality sections say "not analysed".

``build_demo_report`` reads the demo layout (``eval/NAME/SPLIT``, ``analysis/NAME``) and
``run_analysis_for_demo`` writes ``analysis/NAME`` for each demo model.

Sections: summary (generated from the numbers), metrics with 95 % intervals, paired
comparisons, confusion matrices, modality ablations (bars, drops, reliance heat map, informative
modality agreement), reasoning attribution, faithfulness and hallucination, example clips per
class (frame strip + reasoning with cue phrases marked), definitions.
"""

from __future__ import annotations

import base64
import html
import io
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from emorl.data.manifest import Sample, read_manifest
from emorl.eval.faithfulness import CONDITIONS, analyze_reasoning, load_condition_rows
from emorl.eval.stats import cluster_of, compare_paired, metric_cis
from emorl.utils import atomic_write_bytes, atomic_write_text

DEMO_MODELS = ("base", "coldstart_sft", "label_sft", "grpo")
COND_TITLE = {"av": "video+audio", "video": "video only", "audio": "audio only", "text": "neither"}
COND_COLOR = {"av": "#3b3b58", "video": "#4C78A8", "audio": "#F58518", "text": "#A0A0A0"}
CITE_COLOR = {"video": "#4C78A8", "audio": "#F58518", "both": "#54A24B", "none": "#D0D0D0"}


# ----------------------------------------------------------------------------- loading


@dataclass
class RunView:
    """Everything the report needs about one checkpoint."""

    name: str
    path: Path
    kind: str  # analysis | eval
    labels: list[str]
    metrics: dict[str, dict] = field(default_factory=dict)  # condition -> metrics.json (+ "ci")
    rows: dict[str, list[dict]] = field(default_factory=dict)  # condition -> prediction rows
    modality: dict | None = None
    attribution: dict | None = None
    faithfulness: dict | None = None
    extra: dict[str, dict] = field(default_factory=dict)  # other splits: name -> metrics.json (+ "ci")
    manifest: str | None = None
    seconds: dict = field(default_factory=dict)
    style: str = "tags"


def _read_json(p: Path) -> dict | None:
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None


def _read_rows(p: Path) -> list[dict]:
    return [json.loads(x) for x in p.read_text(encoding="utf-8").splitlines() if x.strip()]


def _with_ci(m: dict, rows: list[dict], meta: dict[str, dict]) -> dict:
    if "ci" not in m and rows:
        m = dict(m)
        m["ci"] = metric_cis([r["label"] for r in rows], [r["pred"] for r in rows], m["labels"],
                             [cluster_of(r["id"], meta.get(r["id"])) for r in rows])
    return m


def load_samples_of(manifest: str | Path | None) -> dict[str, Sample]:
    if not manifest or not Path(manifest).is_file():
        return {}
    return {s.id: s for s in read_manifest(manifest)}


def load_run(path: Path, *, name: str | None = None, manifest: str | Path | None = None,
             samples: dict[str, Sample] | None = None, style: str = "tags") -> RunView:
    """Read an analysis run dir or an eval dir (see the module docstring)."""
    path = Path(path)
    info = _read_json(path / "run.json") or {}
    manifest = manifest or info.get("manifest")
    samples = samples if samples is not None else load_samples_of(manifest)
    meta = {k: s.meta for k, s in samples.items()}
    if (path / "modality.json").is_file():
        mod = _read_json(path / "modality.json")
        rows = load_condition_rows(path)
        metrics = {c: _with_ci(_read_json(path / c / "metrics.json"), rows.get(c, []), meta)
                   for c in CONDITIONS if (path / c / "metrics.json").is_file()}
        style = info.get("style", style)
        rv = RunView(name or info.get("name") or path.name, path, "analysis", mod["labels"], metrics, rows, mod,
                     _read_json(path / "attribution.json"), _read_json(path / "faithfulness.json"),
                     manifest=manifest, seconds=info.get("seconds", {}), style=style)
    elif (path / "predictions.jsonl").is_file() and (path / "metrics.json").is_file():
        rows = {"av": _read_rows(path / "predictions.jsonl")}
        m = _read_json(path / "metrics.json")
        rv = RunView(name or path.name, path, "eval", m["labels"], {"av": _with_ci(m, rows["av"], meta)}, rows,
                     manifest=manifest, style=style)
    else:
        raise FileNotFoundError(f"{path}: not a run dir (expected modality.json from `emorl analyze modality`, "
                                "or predictions.jsonl + metrics.json from `emorl eval`)")
    if rv.attribution is None or rv.faithfulness is None:
        res = analyze_reasoning(rv.rows, [samples[i] for i in samples] if samples else
                                [Sample(r["id"], "", r["label"], r.get("dataset", "x"), r.get("split", "x"))
                                 for r in rv.rows["av"]], rv.labels, style=style)
        rv.attribution = rv.attribution or res["attribution"]
        rv.faithfulness = rv.faithfulness or res["faithfulness"]
    return rv


# ----------------------------------------------------------------------------- figures


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
                         "axes.titlesize": 10, "axes.titleweight": "bold", "font.family": "DejaVu Sans"})
    return plt


def _png(fig) -> bytes:
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def fig_confusion(m: dict, title: str) -> bytes:
    from emorl.eval.evaluate import confusion_figure

    _plt()  # the report's matplotlib style
    fig = confusion_figure(m, title, cell=0.45, fontsize=7)
    for s in fig.axes[0].spines.values():
        s.set_visible(False)
    return _png(fig)


def fig_modality_bars(runs: list[RunView]) -> bytes:
    import numpy as np

    plt = _plt()
    runs = [r for r in runs if r.kind == "analysis"]
    conds = [c for c in CONDITIONS if any(c in r.metrics for r in runs)]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), sharey=True)
    width = 0.8 / max(len(conds), 1)
    x = np.arange(len(runs))
    for ax, metric in zip(axes, ("war", "uar")):
        for k, c in enumerate(conds):
            vals, lo, hi = [], [], []
            for r in runs:
                ci = r.metrics.get(c, {}).get("ci", {}).get(metric)
                v = ci["value"] if ci else np.nan
                vals.append(v)
                lo.append(max(0.0, v - ci["lo"]) if ci else 0)
                hi.append(max(0.0, ci["hi"] - v) if ci else 0)
            ax.bar(x + (k - (len(conds) - 1) / 2) * width, vals, width * 0.92, yerr=[lo, hi], capsize=2,
                   color=COND_COLOR[c], label=COND_TITLE[c], error_kw={"elinewidth": 0.8, "ecolor": "#333"})
        chance = 1 / max(len(runs[0].labels), 1) if runs else 0
        ax.axhline(chance, color="#999", lw=0.8, ls="--")
        ax.text(len(runs) - 0.5, chance, " chance", va="bottom", ha="right", fontsize=7, color="#777")
        ax.set_xticks(x, [r.name for r in runs])
        ax.set_title(metric.upper() + " by input condition (95% CI)")
        ax.set_ylim(0, 1)
    fig.legend(*axes[0].get_legend_handles_labels(), ncols=len(conds), fontsize=8, frameon=False, loc="lower center",
               bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout()
    return _png(fig)


def fig_reliance(runs: list[RunView]) -> bytes:
    import numpy as np

    plt = _plt()
    runs = [r for r in runs if r.modality and r.modality.get("reliance")]
    labels = runs[0].labels
    fig, axes = plt.subplots(1, len(runs), figsize=(1.8 + 1.7 * len(runs), 0.9 + 0.36 * (len(labels) + 1)),
                             squeeze=False)
    im = None
    for ax, r in zip(axes[0], runs):
        rel = r.modality["reliance"]
        cols = [m for m in ("video", "audio") if m in rel]
        rows = [*labels, "all"]
        mat = np.array([[(rel[m].get(c) or {}).get("reliance") if (rel[m].get(c) or {}).get("reliance") is not None
                         else np.nan for m in cols] for c in rows], dtype=float)
        cmap = plt.get_cmap("OrRd").with_extremes(bad="#eeeeee")
        im = ax.imshow(np.ma.masked_invalid(mat), cmap=cmap, vmin=0, vmax=1, aspect="auto")
        for i in range(mat.shape[0]):
            for j in range(mat.shape[1]):
                n = (rel[cols[j]].get(rows[i]) or {}).get("n_correct_av", 0)
                txt = "–" if np.isnan(mat[i, j]) else f"{mat[i, j]:.2f}"
                ax.text(j, i, txt if np.isnan(mat[i, j]) else f"{txt}\n(n={n})", ha="center", va="center",
                        fontsize=6.5, color="white" if mat[i, j] > 0.6 else "#222")
        ax.set_xticks(range(len(cols)), [f"−{m}" for m in cols])
        ax.set_yticks(range(len(rows)), rows if ax is axes[0][0] else [""] * len(rows))
        ax.tick_params(left=ax is axes[0][0], bottom=False)
        ax.axhline(len(labels) - 0.5, color="white", lw=2)
        ax.set_title(r.name)
        for s in ax.spines.values():
            s.set_visible(False)
    if im is not None:
        cb = fig.colorbar(im, ax=list(axes[0]), shrink=0.8, pad=0.02)
        cb.set_label("reliance (share of AV-correct clips lost)", fontsize=7)
    return _png(fig)


def fig_attribution(runs: list[RunView]) -> bytes:
    import numpy as np

    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 0.8 + 0.42 * len(runs)))
    y = np.arange(len(runs))
    left = np.zeros(len(runs))
    for c in ("video", "audio", "both", "none"):
        vals = np.array([(r.attribution or {}).get("overall", {}).get(c) or 0.0 for r in runs])
        ax.barh(y, vals, left=left, color=CITE_COLOR[c], label="cites none / no reasoning" if c == "none" else f"cites {c}",
                height=0.6)
        for yi, (lv, v) in enumerate(zip(left, vals)):
            if v >= 0.07:
                ax.text(lv + v / 2, yi, f"{v:.0%}", ha="center", va="center", fontsize=7,
                        color="white" if c != "none" else "#333")
        left += vals
    ax.set_yticks(y, [r.name for r in runs])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of reasonings (video+audio input)")
    ax.legend(ncols=4, fontsize=7, frameon=False, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout()
    return _png(fig)


def fig_hallucination(runs: list[RunView]) -> bytes:
    import numpy as np

    plt = _plt()
    series = [("sounds with audio removed", lambda f: (f.get("modality_hallucination") or {}).get("video")),
              ("faces with video removed", lambda f: (f.get("modality_hallucination") or {}).get("audio")),
              ("false face cues (synthetic)", lambda f: ((f.get("cue_hallucination") or {}).get("video"))),
              ("false voice cues (synthetic)", lambda f: ((f.get("cue_hallucination") or {}).get("audio")))]
    colors = ("#F58518", "#4C78A8", "#9ecae1", "#fdae6b")
    fig, ax = plt.subplots(figsize=(10, 3.0))
    x = np.arange(len(runs))
    w = 0.8 / len(series)
    for k, ((lab, get), col) in enumerate(zip(series, colors)):
        vals, lo, hi = [], [], []
        for r in runs:
            d = get(r.faithfulness or {}) or {}
            v = d.get("rate")
            vals.append(np.nan if v is None else v)
            lo.append(0 if v is None else max(0.0, v - d["lo"]))
            hi.append(0 if v is None else max(0.0, d["hi"] - v))
        ax.bar(x + (k - (len(series) - 1) / 2) * w, vals, w * 0.92, yerr=[lo, hi], capsize=2, color=col, label=lab,
               error_kw={"elinewidth": 0.8, "ecolor": "#333"})
    ax.set_xticks(x, [r.name for r in runs])
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("rate (95% CI)")
    ax.set_title("Hallucination", pad=22)
    ax.legend(ncols=4, fontsize=7, frameon=False, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout()
    return _png(fig)


def frame_strip(media: str, *, n: int = 6, height: int = 88) -> bytes | None:
    """JPEG of ``n`` frames side by side (segment middles), or None if the media cannot be read."""
    import numpy as np
    from PIL import Image

    from emorl.data.media import MediaError, load_clip

    try:
        clip = load_clip(media, num_frames=n, want_audio=False)
    except (MediaError, ValueError, OSError):
        return None
    if clip.frames is None:
        return None
    ims = []
    for f in clip.frames:
        im = Image.fromarray(np.asarray(f))
        ims.append(im.resize((max(1, round(im.width * height / im.height)), height), Image.BILINEAR))
    gap = 3
    strip = Image.new("RGB", (sum(i.width for i in ims) + gap * (len(ims) - 1), height), (255, 255, 255))
    x = 0
    for im in ims:
        strip.paste(im, (x, 0))
        x += im.width + gap
    buf = io.BytesIO()
    strip.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


# ----------------------------------------------------------------------------- formatting


def _f(v, d: int = 3) -> str:
    return "–" if v is None else f"{v:.{d}f}"


def _pct(v, d: int = 0) -> str:
    return "–" if v is None else f"{100 * v:.{d}f}%"


def _ci(c: dict | None, pct: bool = False) -> tuple[str, str]:
    """(value, '[lo, hi]') of a {value|rate, lo, hi} dict."""
    if not c:
        return "–", ""
    v = c.get("value", c.get("rate"))
    if v is None:
        return "–", ""
    if pct:
        return _pct(v), f"[{_pct(c['lo'])}, {_pct(c['hi'])}]"
    return _f(v), f"[{_f(c['lo'], 2)}, {_f(c['hi'], 2)}]"


def _diff(c: dict) -> tuple[str, str]:
    return f"{c['diff']:+.3f}", f"[{c['lo']:+.2f}, {c['hi']:+.2f}]"


class Page:
    """Collects blocks for the HTML page and its Markdown twin at once."""

    def __init__(self, asset_dir: Path, asset_prefix: str):
        self.html: list[str] = []
        self.md: list[str] = []
        self.asset_dir = asset_dir
        self.asset_prefix = asset_prefix
        self.n_img = 0

    def h(self, level: int, text: str, anchor: str = "") -> None:
        a = f' id="{anchor}"' if anchor else ""
        self.html.append(f"<h{level}{a}>{html.escape(text)}</h{level}>")
        self.md += ["#" * level + " " + text, ""]

    def p(self, text_html: str, text_md: str | None = None, cls: str = "") -> None:
        c = f' class="{cls}"' if cls else ""
        self.html.append(f"<p{c}>{text_html}</p>")
        self.md += [text_md if text_md is not None else _strip_tags(text_html), ""]

    def raw(self, h: str, md: str | None = None) -> None:
        self.html.append(h)
        if md:
            self.md += [md, ""]

    def img(self, data: bytes, alt: str, kind: str, *, mime: str = "image/png", cls: str = "") -> None:
        ext = "png" if mime == "image/png" else "jpg"
        self.n_img += 1
        name = f"{self.n_img:02d}-{kind}.{ext}"
        atomic_write_bytes(self.asset_dir / name, data)
        b64 = base64.b64encode(data).decode("ascii")
        c = f' class="{cls}"' if cls else ""
        self.html.append(f'<img{c} data-kind="{kind}" alt="{html.escape(alt)}" src="data:{mime};base64,{b64}">')
        self.md += [f"![{alt}]({self.asset_prefix}/{name})", ""]

    def table(self, head: list[str], rows: list[list[tuple[str, str] | str]], *, cls: str = "", kind: str = "",
              first_col_class: str = "name") -> None:
        """Cells are 'text' or (value, small) pairs (the small part is shown muted: intervals)."""
        c = f' class="{cls}"' if cls else ""
        k = f' data-kind="{kind}"' if kind else ""
        out = [f"<div class=tw><table{c}{k}><thead><tr>" + "".join(f"<th>{html.escape(x)}</th>" for x in head) + "</tr></thead><tbody>"]
        md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in rows:
            cells, mcells = [], []
            for j, cell in enumerate(r):
                if isinstance(cell, tuple):
                    v, small = cell
                    cells.append(f"<td>{v} <span class=ci>{html.escape(small)}</span></td>" if small else f"<td>{v}</td>")
                    mcells.append(f"{_strip_tags(v)} {small}".strip())
                else:
                    cc = f' class="{first_col_class}"' if j == 0 else ""
                    cells.append(f"<td{cc}>{cell}</td>")
                    mcells.append(_strip_tags(cell))
            out.append("<tr>" + "".join(cells) + "</tr>")
            md.append("| " + " | ".join(x.replace("|", "\\|") for x in mcells) + " |")
        out.append("</tbody></table></div>")
        self.html.append("".join(out))
        self.md += [*md, ""]


def _strip_tags(s: str) -> str:
    import re

    s = re.sub(r"<b>(.*?)</b>", r"**\1**", s)
    s = re.sub(r"<[^>]+>", "", s)
    return html.unescape(s)


CSS = """
:root{--fg:#1d1d1f;--muted:#6e6e73;--line:#e5e5ea;--bg:#fbfbfd;--card:#fff;--accent:#3b5bdb;--v:#4C78A8;--a:#F58518;--bad:#d62728;--good:#2f9e44}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.55 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,"DejaVu Sans","Helvetica Neue",Arial,sans-serif}
main{max-width:1120px;margin:0 auto;padding:32px 28px 64px}
header h1{font-size:30px;margin:0 0 4px;letter-spacing:-.02em}
header .sub{color:var(--muted);margin:0 0 20px}
h2{font-size:21px;margin:44px 0 10px;padding-top:8px;border-top:1px solid var(--line);letter-spacing:-.01em}
h3{font-size:16px;margin:24px 0 8px}
p{margin:8px 0 12px;max-width:78ch}
.summary{background:var(--card);border:1px solid var(--line);border-radius:14px;padding:18px 22px;box-shadow:0 1px 2px rgba(0,0,0,.04)}
.summary ul{margin:6px 0 0;padding-left:20px}.summary li{margin:6px 0}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(200px,1fr));gap:12px;margin:18px 0}
.card{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:12px 16px}
.card .k{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.06em}
.card .v{font-size:26px;font-weight:650;letter-spacing:-.02em}.card .s{color:var(--muted);font-size:12px}
table{border-collapse:collapse;margin:10px 0 18px;background:var(--card);border:1px solid var(--line);border-radius:10px;overflow:hidden;font-size:13.5px}
th{background:#f2f2f7;text-align:left;font-weight:600;padding:7px 12px;border-bottom:1px solid var(--line)}
td{padding:6px 12px;border-bottom:1px solid var(--line);white-space:nowrap}
tr:last-child td{border-bottom:0}td.name{font-weight:600}
.ci{color:var(--muted);font-size:11.5px}
table.stack .ci{display:block;line-height:1.2}
.sig{color:var(--good);font-weight:600}.ns{color:var(--muted)}
img{max-width:100%;height:auto}
.tw{overflow-x:auto;max-width:100%}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:14px;align-items:start}
.grid figure{margin:0;background:var(--card);border:1px solid var(--line);border-radius:10px;padding:8px}
figcaption{font-size:12px;color:var(--muted);text-align:center}
.example{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:14px 16px;margin:12px 0}
.example .head{display:flex;gap:10px;align-items:baseline;flex-wrap:wrap;margin-bottom:8px}
.tag{display:inline-block;border-radius:999px;padding:1px 9px;font-size:12px;background:#f2f2f7}
.tag.ok{background:#e6f4ea;color:#1e6b34}.tag.no{background:#fde8e8;color:#a61b1b}
.example img.strip{border-radius:6px;display:block;margin:4px 0 8px}
.reason{font-size:14px;background:#fafafa;border-left:3px solid var(--line);padding:6px 10px;margin:6px 0;white-space:normal}
mark{background:none;padding:0 1px;border-radius:3px}
mark.v{background:rgba(76,120,168,.16);color:#1f4e79}mark.a{background:rgba(245,133,24,.18);color:#8a4500}
mark.x{background:rgba(214,39,40,.14);color:var(--bad);text-decoration:line-through}
mark.g{background:none;border-bottom:1px dotted #999}
.legend{font-size:12px;color:var(--muted)}
.note{color:var(--muted);font-size:13px}
dl.defs dt{font-weight:600;margin-top:8px}dl.defs dd{margin:2px 0 0 0;color:#333;max-width:90ch}
footer{margin-top:40px;color:var(--muted);font-size:12px}
"""


# ----------------------------------------------------------------------------- sections


def _primary(runs: list[RunView]) -> RunView:
    """The model the detailed sections follow: 'grpo' when present, else the ablated model with the
    best full-input UAR (else the best of all)."""
    for r in runs:
        if r.name == "grpo":
            return r
    pool = [r for r in runs if r.kind == "analysis"] or runs

    def uar(r: RunView) -> float:
        return ((r.metrics.get("av") or {}).get("ci") or {}).get("uar", {}).get("value", -1.0)

    return max(pool, key=uar)


def _summary(page: Page, runs: list[RunView], pairs: list[tuple[str, str, dict]]) -> None:
    items: list[str] = []
    av = [(r, r.metrics.get("av", {}).get("ci")) for r in runs]
    best = max((x for x in av if x[1]), key=lambda x: x[1]["uar"]["value"], default=None)
    if best:
        r, ci = best
        v, i = _ci(ci["uar"])
        items.append(f"Best UAR on video+audio: <b>{html.escape(r.name)}</b> at {v} {i} "
                     f"(WAR {_ci(ci['war'])[0]}; chance UAR {1 / len(r.labels):.3f}).")
    sig = [(a, b, c) for a, b, c in pairs if c["uar"]["significant"] or c["war"]["significant"]]
    if pairs:
        if sig:
            txt = "; ".join(f"{html.escape(b)} vs {html.escape(a)}: ΔWAR {c['war']['diff']:+.3f}, ΔUAR {c['uar']['diff']:+.3f}"
                            for a, b, c in sig[:4])
            items.append(f"Significant paired differences (95% bootstrap interval excludes 0): {txt}.")
        else:
            items.append("No paired difference between models is significant at 95%.")
    p = _primary(runs)
    mod = p.modality or {}
    drops = mod.get("drops", {})
    if drops:
        parts = []
        for m in ("video", "audio"):
            if m in drops:
                d = drops[m]["uar"]
                parts.append(f"removing {m} changes UAR by {-d['diff']:+.3f} [{-d['hi']:+.2f}, {-d['lo']:+.2f}]"
                             f" ({'significant' if d['significant'] else 'not significant'})")
        items.append(f"For <b>{html.escape(p.name)}</b>: " + "; ".join(parts) + ".")
        ov = (p.attribution or {}).get("overall") or {}
        if ov.get("n") and (ov.get("no_reasoning") or 0) < 0.5 and "video" in drops and "audio" in drops:
            items.append(f"{html.escape(p.name)}'s reasonings cite face cues in {_pct(ov.get('video_any'))} and voice "
                         f"cues in {_pct(ov.get('audio_any'))} of answers; compare with the drops above — a channel "
                         "that is cited but whose removal costs nothing is cited, not used.")
    inf = mod.get("informative")
    if inf:
        c = inf["combined"]["single"]
        ch = inf["combined"]["chance"]
        if c["n"]:
            clear = c["lo"] > 0.5
            verdict = (f"a clear majority (interval above 50%, by {100 * (c['rate'] - 0.5):.0f} points at the point estimate)"
                       if clear else
                       ("a majority, but not a clear one (the interval reaches 50%)" if c["rate"] > 0.5 else
                        f"<b>not</b> a majority ({100 * (0.5 - c['rate']):.0f} points short of 50%)"))
            ref = (inf.get("reference") or {}).get("combined", {}).get("single")
            ref_txt = (f" The world's ideal observer, scored by the same rule, reaches {_pct(ref['rate'])} "
                       f"{_ci(ref, True)[1]}, so the rule can recover the informative modality when a model uses "
                       "both channels; the gap is the model's." if ref and ref.get("rate") is not None else "")
            items.append(f"Informative modality recovered by ablation for <b>{html.escape(p.name)}</b>: "
                         f"{_pct(c['rate'])} {_ci(c, True)[1]} of the {c['n']} clips informative by one modality alone "
                         f"(video-informative {_pct(inf['combined']['video']['rate'])}, audio-informative "
                         f"{_pct(inf['combined']['audio']['rate'])}; chance {_pct(ch['chance'])}, permutation "
                         f"p = {ch['p_value']:.3g}) — {verdict}.{ref_txt}")
            others = [(r.name, r.modality["informative"]["combined"]["single"]) for r in runs
                      if r is not p and r.modality and r.modality.get("informative")]
            if others:
                items.append("Same measure for the other models: " + ", ".join(
                    f"{html.escape(n)} {_pct(x['rate'])} {_ci(x, True)[1]}" for n, x in others) + ".")
    f = p.faithfulness or {}
    mh = f.get("modality_hallucination") or {}
    if mh.get("video", {}).get("rate") is not None:
        items.append(f"With audio removed, {_pct(mh['video']['rate'])} {_ci(mh['video'], True)[1]} of "
                     f"{html.escape(p.name)}'s reasonings still describe sounds; with video removed, "
                     f"{_pct((mh.get('audio') or {}).get('rate'))} describe a face.")
    ch_ = f.get("cue_hallucination") or {}
    if (ch_.get("all") or {}).get("rate") is not None:
        items.append(f"{_pct(ch_['all']['rate'])} {_ci(ch_['all'], True)[1]} of the cue phrases "
                     f"{html.escape(p.name)} states are false for the clip (synthetic ground truth).")
    cons = (f.get("consistency") or {}).get("named") or {}
    if cons.get("rate") is not None:
        items.append(f"Reasoning–answer consistency (emotion named in the reasoning = answer): {_pct(cons['rate'])} "
                     f"{_ci(cons, True)[1]}, on the {cons['n']} answered reasonings that name an emotion.")
    page.raw('<section class="summary"><h3 style="margin-top:0">Summary</h3><ul>'
             + "".join(f"<li>{x}</li>" for x in items) + "</ul></section>",
             "**Summary**\n\n" + "\n".join(f"- {_strip_tags(x)}" for x in items))
    cards = []
    if best:
        cards.append(("best UAR", _f(best[1]["uar"]["value"]), best[0].name))
    if inf and inf["combined"]["single"]["n"]:
        cards.append(("informative modality recovered", _pct(inf["combined"]["single"]["rate"]),
                      f"{p.name}, {inf['combined']['single']['n']} single-modality clips"))
    if (ch_.get("all") or {}).get("rate") is not None:
        cards.append(("false cue phrases", _pct(ch_["all"]["rate"]), f"{p.name}, synthetic ground truth"))
    if mh.get("video", {}).get("rate") is not None:
        cards.append(("sounds described w/o audio", _pct(mh["video"]["rate"]), p.name))
    if cards:
        page.raw('<div class="cards">' + "".join(
            f'<div class="card"><div class="k">{html.escape(k)}</div><div class="v">{html.escape(v)}</div>'
            f'<div class="s">{html.escape(s)}</div></div>' for k, v, s in cards) + "</div>")


def _pairs(runs: list[RunView], meta: dict[str, dict]) -> list[tuple[str, str, dict]]:
    out = []
    for i, a in enumerate(runs):
        for b in runs[i + 1:]:
            ra = {r["id"]: r for r in a.rows.get("av", [])}
            rb = {r["id"]: r for r in b.rows.get("av", [])}
            ids = [k for k in ra if k in rb]
            if not ids or list(a.labels) != list(b.labels):
                continue
            c = compare_paired([ra[k]["label"] for k in ids], [ra[k]["pred"] for k in ids],
                               [rb[k]["pred"] for k in ids], a.labels, [cluster_of(k, meta.get(k)) for k in ids])
            out.append((a.name, b.name, c))
    return out


def _highlight(text: str, meta: dict | None) -> str:
    """Reasoning as HTML with cue phrases marked: video / audio, struck through when false for
    the clip (synthetic ground truth)."""
    from emorl.eval.attribution import find_cues, lexicon

    true: dict[str, set[str]] = {}
    syn_phrases: set[str] = set()
    if meta and "cues" in meta:
        from emorl.data.synthetic.traces import describe_cues

        true = {m: {p.lower() for p in ps} for m, ps in describe_cues(meta).items()}
        syn_phrases = set(lexicon("synthetic").phrases())
    out, i = [], 0
    for m in find_cues(text, lexicon()):
        out.append(html.escape(text[i:m.start]))
        cls = ("v" if m.modality == "video" else "a") if m.claim else "g"
        title = f"{m.modality} {m.kind}"
        if true and m.claim and m.phrase in syn_phrases and m.phrase not in true[m.modality]:
            cls, title = "x", f"{m.modality}: not true for this clip"
        out.append(f'<mark class="{cls}" title="{title}">{html.escape(text[m.start:m.end])}</mark>')
        i = m.end
    out.append(html.escape(text[i:]))
    return "".join(out)


def _examples(page: Page, runs: list[RunView], samples: dict[str, Sample], per_class: int = 1) -> None:
    from emorl.recipes.parse import parse_completion

    p = _primary(runs)
    rows = p.rows.get("av", [])
    if not rows:
        return
    by_model = {r.name: {x["id"]: x for x in r.rows.get("av", [])} for r in runs}
    page.p('<span class="legend">Cue phrases: <mark class="v">about the face</mark> <mark class="a">about the voice'
           '</mark> <mark class="x">stated but false for this clip</mark>; <mark class="g">channel named</mark>. One clip per class, preferring one the '
           f'primary model ({html.escape(p.name)}) answers correctly with a parsable reasoning.</span>',
           "Cue phrases are marked in the HTML version.")
    for c in p.labels:
        cand = [r for r in rows if r["label"] == c]
        if not cand:
            continue
        cand.sort(key=lambda r: (not r["correct"], not r.get("format_ok"), r["id"]))
        for r in cand[:per_class]:
            s = samples.get(r["id"])
            meta = s.meta if s else {}
            reasoning = parse_completion(r.get("completion", ""), p.style).reasoning or r.get("completion", "")
            tags = [f'<span class="tag">true: <b>{html.escape(c)}</b></span>']
            if meta.get("informative"):
                tags.append(f'<span class="tag">informative: {html.escape(meta["informative"])}</span>')
            for name, byid in by_model.items():
                x = byid.get(r["id"])
                if x is not None:
                    ok = "ok" if x["correct"] else "no"
                    tags.append(f'<span class="tag {ok}">{html.escape(name)}: {html.escape(x["pred"] or "no answer")}</span>')
            page.raw(f'<div class="example"><div class="head"><b>{html.escape(r["id"])}</b>{"".join(tags)}</div>')
            page.md += [f"**{r['id']}** — true {c}" + (f", informative {meta['informative']}" if meta.get("informative") else "")
                        + "; " + ", ".join(f"{n}: {b[r['id']]['pred'] or 'no answer'}" for n, b in by_model.items()
                                           if r["id"] in b), ""]
            strip = frame_strip(s.media) if s else None
            if strip:
                page.img(strip, f"frames of {r['id']}", "frames", mime="image/jpeg", cls="strip")
            page.raw(f'<div class="reason">{_highlight(reasoning, meta) if reasoning else "<i>(no reasoning)</i>"}</div>'
                     f'<div class="note">answer: {html.escape(r.get("answer") or "–")}</div></div>',
                     f"> {reasoning or '(no reasoning)'}\n>\n> answer: {r.get('answer') or '–'}")


DEFS = [
    ("WAR / UAR", ("Weighted average recall (accuracy) and unweighted average recall (mean of per-class recall). "
                   "A sample without a parsable single emotion counts as wrong. Intervals: 95% percentile bootstrap, "
                   "resampling clusters (meta.video / speaker / actor, else each sample).")),
    ("Paired comparison", ("Model B minus model A on the same samples, the same cluster draws for both; significant "
                           "when the 95% interval of the difference excludes 0. McNemar's exact test on discordant "
                           "pairs is given for WAR.")),
    ("Drop", "Metric with video+audio minus metric with one modality removed (paired bootstrap interval)."),
    ("Reliance", ("Per class and modality: of the clips answered correctly with video+audio, the share answered "
                  "wrongly once that modality is removed.")),
    ("Inferred informative modality", ("Per clip, from the ablations. Evidence: correct with video only and wrong "
                                       "with audio only gives video (and mirrored). Decision: the single modality "
                                       "whose answer equals the video+audio answer. Combined (headline): evidence "
                                       "when it singles one out, else decision. Agreement is measured on clips where "
                                       "the generator made exactly one modality informative; chance = agreement "
                                       "with the truth shuffled among those clips.")),
    ("Attribution", ("A reasoning cites a modality when it states one of that modality's cue phrases (lexicon: "
                     "English cue wording plus the synthetic world's cue lexicon).")),
    ("Consistency", ("Named: the last emotion word in the reasoning equals the answer. Cues: the emotion the cited "
                     "cue phrases favour (lexicon cue-to-emotion evidence) equals the answer; the generator's own "
                     "traces give the ceiling.")),
    ("Modality hallucination", ("Share of non-empty reasonings that make a claim (cue or flat phrase) about a "
                                "modality that was removed from the input.")),
    ("Cue hallucination", ("Synthetic world only: share of stated cue phrases that are not true for the clip "
                           "(describe_cues), clustered by clip.")),
]


def render(runs: list[RunView], out_html: Path, *, samples: dict[str, Sample] | None = None, title: str = "",
           subtitle: str = "", extra_notes: list[str] | None = None) -> Path:
    """Write ``out_html`` (self-contained) and ``out_html.with_suffix('.md')`` (+ its assets dir)."""
    out_html = Path(out_html)
    samples = samples or {}
    meta = {k: s.meta for k, s in samples.items()}
    assets = out_html.with_name(out_html.stem + "_files")
    if assets.is_dir():  # images of an earlier rendering
        for old in [*assets.glob("[0-9][0-9]-*.png"), *assets.glob("[0-9][0-9]-*.jpg")]:
            old.unlink()
    page = Page(assets, assets.name)
    title = title or "emorl analysis report"
    n = max((r.metrics.get("av", {}).get("n", 0) for r in runs), default=0)
    sub = subtitle or (f"{len(runs)} model(s) · {n} clips · labels: {', '.join(runs[0].labels)}")
    page.raw(f"<header><h1>{html.escape(title)}</h1><p class=sub>{html.escape(sub)} · generated "
             f"{time.strftime('%Y-%m-%d %H:%M')}</p></header>", f"# {title}\n\n{sub}")
    pairs = _pairs(runs, meta)
    _summary(page, runs, pairs)
    for note in extra_notes or []:
        page.p(note, cls="note")

    # metrics
    page.h(2, "Metrics", "metrics")
    has_extra = sorted({k for r in runs for k in r.extra})
    head = ["model", "n", "WAR", "UAR", "weighted F1", "format"]
    for k in has_extra:
        head += [f"{k} WAR", f"{k} UAR"]
    best_uar = max((r.metrics["av"]["ci"]["uar"]["value"] for r in runs if "av" in r.metrics), default=None)
    trs = []
    for r in runs:
        m = r.metrics.get("av")
        if not m:
            continue
        w, u = _ci(m["ci"]["war"]), _ci(m["ci"]["uar"])
        if u[0] != "–" and best_uar is not None and abs(m["ci"]["uar"]["value"] - best_uar) < 1e-12:
            u = (f"<b>{u[0]}</b>", u[1])
        row = [html.escape(r.name), str(m["n"]), w, u, _f(m.get("weighted_f1")), _pct(m.get("format_rate"))]
        for k in has_extra:
            e = r.extra.get(k)
            row += [_ci(e["ci"]["war"]) if e else "–", _ci(e["ci"]["uar"]) if e else "–"]
        trs.append(row)
    page.table(head, trs, kind="metrics")
    page.p("Video+audio input; 95% cluster-bootstrap intervals in brackets; the best UAR in bold.", cls="note")
    if pairs:
        page.h(3, "Paired comparisons (B − A, same clips)")
        trs = []
        for a, b, c in pairs:
            def s(x):
                return '<span class="sig">yes</span>' if x else '<span class="ns">no</span>'
            trs.append([f"{html.escape(b)} − {html.escape(a)}", _diff(c["war"]), s(c["war"]["significant"]),
                        _diff(c["uar"]), s(c["uar"]["significant"]), f"{c['mcnemar']['p_value']:.3g}"])
        page.table(["B − A", "ΔWAR", "sig.", "ΔUAR", "sig.", "McNemar p"], trs, kind="pairs")

    # confusion
    page.h(2, "Confusion matrices", "confusion")
    page.raw('<div class="grid">')
    for r in runs:
        if "av" in r.metrics:
            page.raw("<figure>")
            page.img(fig_confusion(r.metrics["av"], r.name), f"confusion {r.name}", "confusion")
            page.raw(f"<figcaption>{html.escape(r.name)} · video+audio</figcaption></figure>")
    page.raw("</div>")

    # modality
    page.h(2, "Modality ablations", "modality")
    analysed = [r for r in runs if r.kind == "analysis" and r.modality]
    if not analysed:
        page.p("Not analysed: none of these run dirs holds ablation results (run <code>emorl analyze modality</code>).",
               "Not analysed: none of these run dirs holds ablation results (run `emorl analyze modality`).")
    else:
        page.img(fig_modality_bars(analysed), "WAR and UAR by input condition", "modality")
        trs = []
        for r in analysed:
            row = [html.escape(r.name)]
            for c in CONDITIONS:
                row.append(_ci((r.modality["conditions"].get(c) or {}).get("uar")))
            for m in ("video", "audio", "both"):
                d = r.modality.get("drops", {}).get(m)
                if d:
                    v, i = _diff(d["uar"])
                    row.append((f"{v}{'*' if d['uar']['significant'] else ''}", i))
                else:
                    row.append("–")
            trs.append(row)
        page.table(["model", "UAR av", "UAR video", "UAR audio", "UAR none", "drop −video", "drop −audio",
                    "drop −both"], trs, kind="modality", cls="stack")
        page.p("Drop = UAR(video+audio) − UAR(without the modality); * = significant (paired bootstrap).", cls="note")
        rel_runs = [r for r in analysed if r.modality.get("reliance")]
        if rel_runs:
            page.h(3, "Reliance per class")
            page.img(fig_reliance(rel_runs), "reliance heat map", "reliance")
        inf_runs = [r for r in analysed if r.modality.get("informative")]
        if inf_runs:
            page.h(3, "Does the ablation recover the informative modality? (synthetic world)")
            trs = []
            for r in inf_runs:
                inf = r.modality["informative"]
                row = [html.escape(r.name)]
                for d in ("combined", "evidence", "decision"):
                    row.append(_ci(inf[d]["single"], True))
                row += [_ci(inf["combined"]["video"], True), _ci(inf["combined"]["audio"], True),
                        _pct(inf["combined"]["chance"]["chance"]), f"{inf['combined']['chance']['p_value']:.3g}"]
                trs.append(row)
            p = _primary(inf_runs)
            ref = p.modality["informative"].get("reference")
            if ref:
                trs.append(["<i>ideal observer</i>", *[_ci(ref[d]["single"], True) for d in ("combined", "evidence",
                                                                                          "decision")],
                            _ci(ref["combined"]["video"], True), _ci(ref["combined"]["audio"], True),
                            _pct(ref["combined"]["chance"]["chance"]), f"{ref['combined']['chance']['p_value']:.3g}"])
            page.table(["model", "combined", "evidence", "decision", "video-informative", "audio-informative",
                        "chance", "perm. p"], trs, kind="informative", cls="stack")
            page.p("Share of clips informative by one modality alone whose modality the ablations recover (definitions "
                   "below). <i>Ideal observer</i>: the Bayes decision of the world's generative model from the true cue "
                   "values, scored by the same rules — what a model using both channels well could reach.", cls="note")
            acc = p.modality["informative"]["accuracy_by_truth"]
            racc = (ref or {}).get("accuracy_by_truth")
            conds = ("av", "video", "audio")
            trs = [[t] + [_ci(acc[t][c], True) for c in conds] + ([_pct(racc[t][c]["rate"]) for c in conds] if racc else [])
                   for t in ("both", "video", "audio")]
            page.p(f"Accuracy of <b>{html.escape(p.name)}</b> by the generator's informative modality and input condition"
                   + (" (right: the ideal observer)" if racc else "") + ":")
            page.table(["informative", "video+audio", "video only", "audio only"]
                       + (["ideal: av", "ideal: video", "ideal: audio"] if racc else []), trs, kind="accuracy_by_truth")

    # attribution
    page.h(2, "Which modality does the reasoning cite?", "attribution")
    page.img(fig_attribution(runs), "reasoning attribution", "attribution")
    p = _primary(runs)
    pc = (p.attribution or {}).get("per_class", {})
    if pc:
        trs = [[html.escape(c), str(b["n"]), _pct(b.get("video")), _pct(b.get("audio")), _pct(b.get("both")),
                _pct(b.get("none")), _f(b.get("video_cues_per_reasoning"), 2), _f(b.get("audio_cues_per_reasoning"), 2)]
               for c, b in pc.items() if b["n"]]
        page.p(f"Per class, <b>{html.escape(p.name)}</b> (video+audio input):")
        page.table(["class", "n", "video", "audio", "both", "none", "face cues / reasoning", "voice cues / reasoning"],
                   trs, kind="attribution_per_class")
    civ = [(r, (r.attribution or {}).get("cites_vs_informative")) for r in runs]
    civ = [(r, x) for r, x in civ if x]
    if civ:
        trs = [[html.escape(r.name), _ci(x["single"], True), _ci(x["video"], True), _ci(x["audio"], True),
                _ci(x["both"], True)] for r, x in civ]
        page.p("Does the reasoning cite exactly the informative modality? (synthetic world)")
        page.table(["model", "single-modality clips", "video-informative", "audio-informative", "both → cites both"],
                   trs, kind="cites_informative")

    # faithfulness
    page.h(2, "Faithfulness and hallucination", "faithfulness")
    trs = []
    for r in runs:
        f = r.faithfulness or {}
        cons = f.get("consistency") or {}
        mh = f.get("modality_hallucination") or {}
        ch = f.get("cue_hallucination") or {}
        trs.append([html.escape(r.name), _ci(cons.get("named"), True), _ci(cons.get("cues"), True),
                    _ci(f.get("reference_cues"), True), _ci(mh.get("video"), True), _ci(mh.get("audio"), True),
                    _ci(mh.get("text"), True), _ci(ch.get("video"), True), _ci(ch.get("audio"), True)])
    page.table(["model", "consistency (named)", "consistency (cues)", "cue ceiling", "sounds w/o audio",
                "face w/o video", "any w/o both", "false face cues", "false voice cues"], trs, kind="faithfulness",
               cls="stack")
    page.p("Consistency: share of answered reasonings whose implied emotion equals the answer (named emotion word; or "
           "the emotion favoured by the cited cues — the generator's own traces reach the 'cue ceiling'). "
           "Hallucination rates: see Definitions. '–' = nothing to measure (e.g. no reasoning stated).", cls="note")
    page.img(fig_hallucination(runs), "hallucination rates", "hallucination")
    tops = (p.faithfulness or {}).get("cue_hallucination") or {}
    top_list = [(m, ph, k) for m in ("video", "audio") for ph, k in (tops.get(m) or {}).get("top_phrases", [])]
    if top_list:
        page.p(f"Most frequent false cue phrases of <b>{html.escape(p.name)}</b>: "
               + ", ".join(f"“{html.escape(ph)}” ({m}, {k}×)" for m, ph, k in top_list[:8]) + ".")

    # examples
    page.h(2, "Example clips", "examples")
    _examples(page, runs, samples)

    page.h(2, "Definitions", "definitions")
    page.raw('<dl class="defs">' + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in DEFS)
             + "</dl>", "\n".join(f"- **{k}**: {v}" for k, v in DEFS))
    srcs = ", ".join(str(r.path) for r in runs)
    page.raw(f"<footer>Run dirs: {html.escape(srcs)}. Made by emorl.eval.report; see docs/analysis.md.</footer>",
             f"_Run dirs: {srcs}. Made by emorl.eval.report; see docs/analysis.md._")
    doc = ("<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width,"
           f"initial-scale=1\"><title>{html.escape(title)}</title><style>{CSS}</style></head><body><main>"
           + "\n".join(page.html) + "</main></body></html>\n")
    out_html.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_html, doc)
    atomic_write_text(out_html.with_suffix(".md"), "\n".join(page.md) + "\n")
    return out_html


def build_report(run_dirs: Sequence[Path], out_html: Path, *, names: Sequence[str] | None = None,
                 manifest: str | Path | None = None, title: str = "", style: str = "tags") -> Path:
    """Compare several run dirs (analysis run dirs or eval dirs) side by side; writes
    ``out_html`` and its Markdown twin ``out_html.with_suffix('.md')``. ``manifest``: where to
    find the clips (frame strips, synthetic cue truth, clusters) when a run dir does not record it.
    ``style``: answer style of eval dirs (analysis run dirs record their own)."""
    if not run_dirs:
        raise ValueError("no run dirs given")
    if names is not None and len(names) != len(run_dirs):
        raise ValueError(f"{len(names)} names for {len(run_dirs)} run dirs")
    first = _read_json(Path(run_dirs[0]) / "run.json") or {}
    samples = load_samples_of(manifest or first.get("manifest"))
    runs = [load_run(Path(d), name=names[i] if names else None, manifest=manifest, samples=samples, style=style)
            for i, d in enumerate(run_dirs)]
    return render(runs, out_html, samples=samples, title=title)


# ----------------------------------------------------------------------------- demo


def _demo_paths(demo_dir: Path) -> dict[str, Path]:
    return {"base": demo_dir / "models" / "base", "coldstart_sft": demo_dir / "coldstart_sft" / "model",
            "label_sft": demo_dir / "label_sft" / "model", "grpo": demo_dir / "grpo" / "model"}


def run_analysis_for_demo(demo_dir: Path, cfg, progress: bool = True, *, models: Sequence[str] = DEMO_MODELS,
                          split: str = "test", force: bool = False) -> dict:
    """Modality ablations + attribution + faithfulness for each demo model on ``split``; writes
    ``demo_dir/analysis/NAME/`` (an analysis run dir). The full-input condition reuses the
    demo's own ``eval/NAME/SPLIT/predictions.jsonl`` (same greedy settings) when present. A model
    whose analysis is complete is skipped unless ``force``. Returns {name: seconds}."""
    from emorl.eval.modality import run_analysis
    from emorl.recipes.rewards import get_recipe
    from emorl.runs import load_adapter, load_samples, make_builder

    demo_dir = Path(demo_dir)
    manifest = demo_dir / "data" / f"{split}.jsonl"
    samples = load_samples(manifest, default="test")
    paths = _demo_paths(demo_dir)
    took: dict[str, float] = {}
    for name in models:
        out = demo_dir / "analysis" / name
        if not force and all((out / f).is_file() for f in ("run.json", "modality.json", "faithfulness.json")):
            if progress:
                print(f"[analysis] {name}: already done ({out}), skipping")
            took[name] = (_read_json(out / "run.json") or {}).get("seconds", {}).get("modality", 0.0)
            continue
        if not paths[name].exists():
            continue
        t = time.perf_counter()
        if progress:
            print(f"[analysis] {name} ...")
        adapter = load_adapter(cfg, paths[name])
        ev = demo_dir / "eval" / name / split / "predictions.jsonl"
        reuse = {"av": _read_rows(ev)} if ev.is_file() else None
        run_analysis(adapter, make_builder(cfg, adapter), samples, out, style=get_recipe(cfg.prompt.recipe).style,
                     batch_size=cfg.eval.batch_size, max_new_tokens=cfg.eval.max_new_tokens, progress=progress,
                     reuse=reuse, name=name, model=str(paths[name]), manifest=str(manifest))
        took[name] = round(time.perf_counter() - t, 1)
        if progress:
            print(f"[analysis] {name}: done in {took[name]:.0f}s")
    return took


def _demo_style(demo_dir: Path, cfg) -> str:
    """Answer style of the demo's recipe (from ``cfg`` or the demo's saved config.yaml; 'tags' if neither)."""
    import yaml

    from emorl.recipes.rewards import get_recipe

    if cfg is not None:
        return get_recipe(cfg.prompt.recipe).style
    p = demo_dir / "config.yaml"
    saved = yaml.safe_load(p.read_text()) if p.is_file() else None
    recipe = ((saved or {}).get("prompt") or {}).get("recipe")
    return get_recipe(recipe).style if recipe else "tags"


def build_demo_report(demo_dir: Path, out_html: Path, *, cfg=None, analyze: bool = False,
                      progress: bool = False) -> Path:
    """The demo's report: every model of ``demo_dir/eval/NAME/test`` (with its ``ood`` numbers),
    using ``demo_dir/analysis/NAME`` where it exists. With ``analyze=True`` and a ``cfg`` (the
    demo's RunConfig), first runs the analysis for the ``grpo`` model if it is missing."""
    demo_dir = Path(demo_dir)
    style = _demo_style(demo_dir, cfg)
    if analyze:
        if cfg is None:
            raise ValueError("analyze=True needs the demo's config (cfg)")
        run_analysis_for_demo(demo_dir, cfg, progress, models=("grpo",))
    manifest = demo_dir / "data" / "test.jsonl"
    samples = load_samples_of(manifest)
    ood_samples = load_samples_of(demo_dir / "data" / "ood.jsonl")
    ood_meta = {k: s.meta for k, s in ood_samples.items()}
    runs = []
    for name in DEMO_MODELS:
        a, e = demo_dir / "analysis" / name, demo_dir / "eval" / name / "test"
        if (a / "modality.json").is_file():
            rv = load_run(a, name=name, manifest=manifest, samples=samples, style=style)
        elif (e / "predictions.jsonl").is_file():
            rv = load_run(e, name=name, manifest=manifest, samples=samples, style=style)
        else:
            continue
        o = demo_dir / "eval" / name / "ood"
        if (o / "metrics.json").is_file() and (o / "predictions.jsonl").is_file():
            rv.extra["OOD"] = _with_ci(_read_json(o / "metrics.json"), _read_rows(o / "predictions.jsonl"), ood_meta)
        runs.append(rv)
    if not runs:
        raise FileNotFoundError(f"{demo_dir}: no eval/NAME/test results (has the demo finished its eval stage?)")
    dm = _read_json(demo_dir / "metrics.json") or {}
    notes = []
    if dm.get("timings_s", {}).get("total"):
        notes.append(f"Demo wall time {dm['timings_s']['total']:.0f} s{' (quick sizes)' if dm.get('quick') else ''}. "
                     "Synthetic omni-emotion world, tiny thinker: base = random-init LLM with attribute-pretrained towers, coldstart_sft = SFT "
                     "on reasoning traces, label_sft = label-only SFT, grpo = GRPO from coldstart_sft.")
    if not any(r.kind == "analysis" for r in runs):
        notes.append("Modality ablations were not run for this demo (see run_analysis_for_demo).")
    return render(runs, out_html, samples=samples, title="emorl demo report",
                  subtitle=f"{len(runs)} models · test split ({len(samples)} clips) · synthetic world",
                  extra_notes=notes)
