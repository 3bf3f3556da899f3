"""The report's figures, as PNG (charts) or JPEG (frame strips) bytes; matplotlib in the Agg back end.

Each chart takes :class:`~emorl.eval.report.load.RunView` objects and draws only what they hold.
"""

from __future__ import annotations

import io

from emorl.eval.faithfulness import CONDITIONS
from emorl.eval.report.load import RunView

COND_TITLE = {"av": "video+audio", "video": "video only", "audio": "audio only", "text": "neither"}
COND_COLOR = {"av": "#3b3b58", "video": "#4C78A8", "audio": "#F58518", "text": "#A0A0A0"}
CITE_COLOR = {"video": "#4C78A8", "audio": "#F58518", "both": "#54A24B", "none": "#D0D0D0"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titlesize": 10,
            "axes.titleweight": "bold",
            "font.family": "DejaVu Sans",
        }
    )
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
            ax.bar(
                x + (k - (len(conds) - 1) / 2) * width,
                vals,
                width * 0.92,
                yerr=[lo, hi],
                capsize=2,
                color=COND_COLOR[c],
                label=COND_TITLE[c],
                error_kw={"elinewidth": 0.8, "ecolor": "#333"},
            )
        chance = 1 / max(len(runs[0].labels), 1) if runs else 0
        ax.axhline(chance, color="#999", lw=0.8, ls="--")
        ax.text(len(runs) - 0.5, chance, " chance", va="bottom", ha="right", fontsize=7, color="#777")
        ax.set_xticks(x, [r.name for r in runs])
        ax.set_title(metric.upper() + " by input condition (95% CI)")
        ax.set_ylim(0, 1)
    fig.legend(
        *axes[0].get_legend_handles_labels(),
        ncols=len(conds),
        fontsize=8,
        frameon=False,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
    )
    fig.tight_layout()
    return _png(fig)


def fig_reliance(runs: list[RunView]) -> bytes:
    import numpy as np

    plt = _plt()
    runs = [r for r in runs if r.modality and r.modality.get("reliance")]
    labels = runs[0].labels
    fig, axes = plt.subplots(
        1, len(runs), figsize=(1.8 + 1.7 * len(runs), 0.9 + 0.36 * (len(labels) + 1)), squeeze=False
    )
    im = None
    for ax, r in zip(axes[0], runs):
        rel = r.modality["reliance"]
        cols = [m for m in ("video", "audio") if m in rel]
        rows = [*labels, "all"]
        mat = np.array(
            [
                [
                    (rel[m].get(c) or {}).get("reliance")
                    if (rel[m].get(c) or {}).get("reliance") is not None
                    else np.nan
                    for m in cols
                ]
                for c in rows
            ],
            dtype=float,
        )
        cmap = plt.get_cmap("OrRd").with_extremes(bad="#eeeeee")
        im = ax.imshow(np.ma.masked_invalid(mat), cmap=cmap, vmin=0, vmax=1, aspect="auto")
        for i in range(mat.shape[0]):
            for j in range(mat.shape[1]):
                n = (rel[cols[j]].get(rows[i]) or {}).get("n_correct_av", 0)
                txt = "–" if np.isnan(mat[i, j]) else f"{mat[i, j]:.2f}"
                ax.text(
                    j,
                    i,
                    txt if np.isnan(mat[i, j]) else f"{txt}\n(n={n})",
                    ha="center",
                    va="center",
                    fontsize=6.5,
                    color="white" if mat[i, j] > 0.6 else "#222",
                )
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
        ax.barh(
            y,
            vals,
            left=left,
            color=CITE_COLOR[c],
            label="cites none / no reasoning" if c == "none" else f"cites {c}",
            height=0.6,
        )
        for yi, (lv, v) in enumerate(zip(left, vals)):
            if v >= 0.07:
                ax.text(
                    lv + v / 2,
                    yi,
                    f"{v:.0%}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if c != "none" else "#333",
                )
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
    series = [
        ("sounds with audio removed", lambda f: (f.get("modality_hallucination") or {}).get("video")),
        ("faces with video removed", lambda f: (f.get("modality_hallucination") or {}).get("audio")),
        ("false face cues (synthetic)", lambda f: (f.get("cue_hallucination") or {}).get("video")),
        ("false voice cues (synthetic)", lambda f: (f.get("cue_hallucination") or {}).get("audio")),
    ]
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
        ax.bar(
            x + (k - (len(series) - 1) / 2) * w,
            vals,
            w * 0.92,
            yerr=[lo, hi],
            capsize=2,
            color=col,
            label=lab,
            error_kw={"elinewidth": 0.8, "ecolor": "#333"},
        )
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
