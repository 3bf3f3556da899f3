"""One page that compares checkpoints: a self-contained HTML report (inline CSS, images as base64
data URIs, nothing fetched) and a Markdown twin (images written beside it).

The report only renders what analyses wrote; nothing here runs a model.

- :mod:`~emorl.eval.report.load`: run dirs (analysis run dirs or eval dirs) -> :class:`RunView`
- :mod:`~emorl.eval.report.figures`: charts and frame strips (PNG / JPEG bytes)
- :mod:`~emorl.eval.report.page`: the page engine (one section model; HTML and Markdown back ends)
- :mod:`~emorl.eval.report.sections`, :mod:`~emorl.eval.report.examples`: one function per section
- :mod:`~emorl.eval.report.build`: :func:`build_report` (any run dirs), :func:`render`
- :mod:`~emorl.eval.report.demo`: :func:`build_demo_report` (the layout ``emorl demo`` writes)

Sections: summary (generated from the numbers), metrics with 95 % intervals, paired
comparisons, confusion matrices, modality ablations (bars, drops, reliance heat map, informative
modality agreement), reasoning attribution, faithfulness and hallucination, example clips per
class (frame strip + reasoning with cue phrases marked), definitions.
"""

from emorl.eval.report.build import build_report, render, report_document
from emorl.eval.report.demo import DEMO_MODELS, build_demo_report
from emorl.eval.report.load import RunView, load_run, load_samples_of

__all__ = [
    "DEMO_MODELS",
    "RunView",
    "build_demo_report",
    "build_report",
    "load_run",
    "load_samples_of",
    "render",
    "report_document",
]
