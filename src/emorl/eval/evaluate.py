"""Evaluation: greedy predictions per sample (JSONL), metrics (WAR, UAR, per-class recall,
confusion, format rate, parse failures), per-fold results and a confusion-matrix PNG.

Answers are graded by the reward recipe's own grader (``RewardRecipe.parse``: the answer grammar of
``emorl.recipes.parse``, or the paper's released grader with ``grading.strict_official``), the one
the rewards use."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from tqdm.auto import tqdm

from emorl.data.manifest import Sample, label_space
from emorl.data.media import MediaError
from emorl.eval.metrics import fold_summary, summarize
from emorl.models.adapter import Modality, OmniAdapter, SamplingParams, sample_by_modality
from emorl.prompting import PromptBuilder
from emorl.recipes.rewards import RewardRecipe
from emorl.utils import atomic_write_json, atomic_write_text, chunks


def predict(
    adapter: OmniAdapter,
    builder: PromptBuilder,
    samples: list[Sample],
    *,
    style: str = "tags",
    recipe: RewardRecipe | None = None,
    batch_size: int = 32,
    max_new_tokens: int = 64,
    modality: Modality = Modality.AV,
    progress: bool = True,
    desc: str = "eval",
) -> list[dict]:
    """One greedy completion per sample, graded by ``recipe`` (default: the plain grader of answer
    ``style``). A sample whose media cannot be decoded gets a row with ``error`` set (and no
    prediction) rather than stopping the evaluation."""
    recipe = recipe or RewardRecipe(style=style)
    params = SamplingParams(max_new_tokens=max_new_tokens, greedy=True)
    rows: list[dict] = []
    bar = tqdm(total=len(samples), desc=desc, disable=not progress, dynamic_ncols=True)
    for batch in chunks(samples, batch_size):
        ok, prompts = [], []
        for s in batch:
            try:
                prompts.append(builder.prompt(s, modality))
                ok.append(s)
            except MediaError as e:
                rows.append(_row(s, modality, "", None, error=f"{e.outcome}: {e}"))
        if prompts:
            comp = sample_by_modality(adapter, prompts, 1, params)
            for s, p, texts in zip(ok, prompts, comp.texts):
                rows.append(
                    _row(
                        s,
                        p.modality,
                        texts[0],
                        recipe.parse(texts[0], s.labels, s.words),
                        notes=builder.notes.get(s.id),
                    )
                )
        bar.update(len(batch))
    bar.close()
    return rows


def _row(s: Sample, modality: Modality, completion: str, parsed, *, error: str | None = None, notes=None) -> dict:
    row = {
        "id": s.id,
        "dataset": s.dataset,
        "split": s.split,
        "fold": s.fold,
        "label": s.label,
        "modality": modality.value,
        "completion": completion,
        "answer": parsed.answer if parsed else "",
        "pred": parsed.emotion if parsed else None,
        "format_ok": bool(parsed.format_ok) if parsed else False,
        "parse": parsed.reason if parsed else "media_error",
        "correct": bool(parsed and parsed.emotion == s.label),
    }
    if error:
        row["error"] = error
    if notes:
        row["media_notes"] = notes
    return row


def metrics_of(rows: list[dict], labels: tuple[str, ...]) -> dict:
    m = summarize(
        [r["label"] for r in rows],
        [r["pred"] for r in rows],
        labels,
        [r["format_ok"] for r in rows],
        [r["parse"] for r in rows],
    )
    m["media_errors"] = sum(1 for r in rows if "error" in r)
    folds = {r["fold"] for r in rows}
    if len(folds) > 1 and None not in folds:
        by: dict = defaultdict(list)
        for r in rows:
            by[r["fold"]].append(r)
        per = {
            str(k): summarize([r["label"] for r in v], [r["pred"] for r in v], labels, [r["format_ok"] for r in v])
            for k, v in sorted(by.items())
        }
        m["by_fold"] = fold_summary(per)
    return m


def confusion_figure(metrics: dict, title: str = "", *, cell: float = 0.55, fontsize: int = 8):
    """A row-normalised confusion matrix (counts written in the cells; last column = no/other answer)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = metrics["labels"]
    m = np.array(metrics["confusion"], dtype=float)
    norm = m / np.maximum(m.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 1.1 * cell * len(labels), 0.9 + cell * len(labels)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels) + 1), [*labels, "none"], rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            if m[i, j]:
                ax.text(
                    j,
                    i,
                    int(m[i, j]),
                    ha="center",
                    va="center",
                    fontsize=fontsize,
                    color="white" if norm[i, j] > 0.5 else "#222",
                )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"WAR {metrics['war']:.3f}  UAR {metrics['uar']:.3f}", fontsize=9)
    fig.tight_layout()
    return fig


def plot_confusion(metrics: dict, path: Path, title: str = "") -> None:
    import matplotlib.pyplot as plt

    fig = confusion_figure(metrics, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def evaluate(
    adapter: OmniAdapter,
    builder: PromptBuilder,
    samples: list[Sample],
    out_dir: Path,
    *,
    style: str = "tags",
    recipe: RewardRecipe | None = None,
    batch_size: int = 32,
    max_new_tokens: int = 64,
    modality: Modality = Modality.AV,
    progress: bool = True,
    title: str = "",
) -> dict:
    """Predict, score and write ``predictions.jsonl``, ``metrics.json``, ``confusion.png`` into ``out_dir``."""
    import json

    rows = predict(
        adapter,
        builder,
        samples,
        style=style,
        recipe=recipe,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        modality=modality,
        progress=progress,
        desc=title or "eval",
    )
    m = metrics_of(rows, label_space(samples))
    r = recipe or RewardRecipe(style=style)
    m["grading"] = {
        "recipe": r.name,
        "style": r.style,
        "strict_official": r.official,
        "answer_synonyms": dict(r.synonyms),
    }
    m["settings"] = {
        "sampling": builder.sampling,
        "num_frames": builder.num_frames,
        "frame_size": builder.frame_size,
        "max_new_tokens": max_new_tokens,
        "modality": modality.value,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "predictions.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    atomic_write_json(out_dir / "metrics.json", m)
    plot_confusion(m, out_dir / "confusion.png", title)
    return m
