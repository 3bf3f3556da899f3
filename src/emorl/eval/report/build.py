"""Assemble the page: run views -> sections -> one self-contained HTML file and its Markdown twin."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from emorl.data.manifest import Sample
from emorl.eval.report import sections
from emorl.eval.report.examples import examples_section
from emorl.eval.report.load import RunView, load_runs, paired_comparisons
from emorl.eval.report.page import Document, write_page
from emorl.eval.report.summary import summary_section


def report_document(
    runs: list[RunView],
    *,
    samples: dict[str, Sample] | None = None,
    title: str = "",
    subtitle: str = "",
    extra_notes: list[str] | None = None,
) -> Document:
    """The report as a :class:`~emorl.eval.report.page.Document` (sections in page order)."""
    samples = samples or {}
    meta = {k: s.meta for k, s in samples.items()}
    n = max((r.metrics.get("av", {}).get("n", 0) for r in runs), default=0)
    sub = subtitle or f"{len(runs)} model(s) · {n} clips · labels: {', '.join(runs[0].labels)}"
    pairs = paired_comparisons(runs, meta)
    return Document(
        title or "emorl analysis report",
        sub,
        [
            summary_section(runs, pairs, extra_notes),
            sections.metrics_section(runs, pairs),
            sections.confusion_section(runs),
            sections.modality_section(runs),
            sections.attribution_section(runs),
            sections.faithfulness_section(runs),
            examples_section(runs, samples),
            sections.definitions_section(runs),
        ],
        generated=time.strftime("%Y-%m-%d %H:%M"),
    )


def render(
    runs: list[RunView],
    out_html: Path,
    *,
    samples: dict[str, Sample] | None = None,
    title: str = "",
    subtitle: str = "",
    extra_notes: list[str] | None = None,
) -> Path:
    """Write ``out_html`` (self-contained), ``out_html.with_suffix('.md')`` and the Markdown's figures
    in ``<stem>_files/``; returns ``out_html``."""
    doc = report_document(runs, samples=samples, title=title, subtitle=subtitle, extra_notes=extra_notes)
    return write_page(doc, Path(out_html))


def build_report(
    run_dirs: Sequence[Path],
    out_html: Path,
    *,
    names: Sequence[str] | None = None,
    manifest: str | Path | None = None,
    title: str = "",
    style: str = "tags",
) -> Path:
    """Compare several run dirs (analysis run dirs or eval dirs) side by side; writes
    ``out_html`` and its Markdown twin ``out_html.with_suffix('.md')``. ``manifest``: where to
    find the clips (frame strips, synthetic cue truth, clusters) when a run dir does not record it.
    ``style``: answer style of eval dirs (analysis run dirs record their own)."""
    runs, samples = load_runs(run_dirs, names=names, manifest=manifest, style=style)
    return render(runs, out_html, samples=samples, title=title)
