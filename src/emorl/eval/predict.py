"""Prediction on inputs without labels: a clip, a folder, a glob or a label-free manifest, in
batches, to a resumable JSONL or CSV file with one row per input: the emotion, the reasoning,
whether the format was followed, and a probability for every class of the model's label set.

A class's probability is the model's probability of that option *as the answer*, given the prompt
and the model's own reasoning: the greedy completion is cut where its answer begins (after
``<answer>``, or ``\\boxed{``; appended when the completion has none), each class's word and the
closing tag are scored as continuations, and the K sequence log-probabilities are normalised with a
softmax (``option_probabilities``). They sum to 1 over the label set, so users can threshold and plot.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
from collections.abc import Iterable
from pathlib import Path

import torch

from emorl.data.labels import LABEL_SETS, to_canonical
from emorl.data.manifest import ManifestError, Sample, read_manifest
from emorl.data.media import AUDIO_EXTS, IMAGE_EXTS, VIDEO_EXTS, MediaError
from emorl.models.adapter import Modality, SamplingParams
from emorl.recipes.rewards import RewardRecipe
from emorl.utils import atomic_write_text

MEDIA_EXTS = VIDEO_EXTS | AUDIO_EXTS | IMAGE_EXTS
_OPEN_CLOSE = {
    "tags": ("<answer>", "</answer>"),
    "steps": ("<answer>", "</answer>"),
    "boxed": ("\\boxed{", "}"),
    "think_boxed": ("\\boxed{", "}"),
}


def model_labels(spec: list[str]) -> tuple[tuple[str, ...], str]:
    """(labels, dataset) of ``prompt.labels``: one corpus name (``[mafw]``: its label set and words)
    or a list of labels (canonical, or declared labels of one's own)."""
    if not spec:
        raise ValueError(
            "the model's label set is unknown (no saved run config records prompt.labels): "
            f"set prompt.labels=<corpus> (one of {', '.join(sorted(LABEL_SETS))}) or a list, "
            "e.g. prompt.labels=happy,sad,neutral"
        )
    if len(spec) == 1 and spec[0] in LABEL_SETS:
        return LABEL_SETS[spec[0]], spec[0]
    out = []
    for x in spec:
        try:
            out.append(to_canonical(x, where="prompt.labels"))
        except ValueError:
            out.append(x.strip().lower())  # a label of the user's own
    return tuple(dict.fromkeys(out)), "unlabeled"


def collect_inputs(spec: str) -> list[Sample]:
    """Samples to predict: a label-free manifest (.jsonl), a folder (its media files, sorted), a glob
    pattern, or one media file. Ids are the paths relative to the folder / the file names."""
    p = Path(spec).expanduser()
    if p.is_file() and p.suffix == ".jsonl":
        return read_manifest(p, labeled=False)
    if p.is_dir():
        files = sorted(
            f
            for f in p.rglob("*")
            if f.is_file()
            and f.suffix.lower() in MEDIA_EXTS
            and not any(part.startswith(".") for part in f.relative_to(p).parts)
        )
        base = p
    elif any(c in spec for c in "*?["):
        files = sorted(
            Path(f)
            for f in glob.glob(os.path.expanduser(spec), recursive=True)
            if Path(f).is_file() and Path(f).suffix.lower() in MEDIA_EXTS
        )
        base = Path(os.path.commonpath([str(f.parent) for f in files])) if files else None
    elif p.is_file():
        files, base = [p], p.parent
    else:
        raise FileNotFoundError(f"{spec}: no such clip, folder, glob match or manifest")
    if not files:
        raise FileNotFoundError(f"{spec}: no media files ({', '.join(sorted(MEDIA_EXTS))})")
    return [
        Sample(id=str(f.relative_to(base)), media=str(f.resolve()), label="", dataset="unlabeled", split="predict")
        for f in files
    ]


def answer_prefix(completion: str, style: str) -> str:
    """``completion`` cut just after where its answer begins (the opening appended when absent)."""
    opening = _OPEN_CLOSE[style][0]
    at = completion.rfind(opening) if style in ("boxed", "think_boxed") else completion.find(opening)
    if at >= 0:
        return completion[: at + len(opening)]
    body = completion.rstrip()
    return f"{body}\n{opening}" if body else opening


@torch.no_grad()
def option_probabilities(
    adapter,
    prompts: list,
    completions: list[str],
    labels: tuple[str, ...],
    style: str,
    words: dict[str, str] | None = None,
) -> list[dict[str, float]]:
    """P(label | prompt, reasoning) for every label, per prompt (each dict sums to 1).

    prompts[i] (a PromptInputs) with completions[i] (its generated text): the K continuations
    ``word + closing`` after ``answer_prefix`` are scored in one shared-prefix pass per prompt.
    """
    tok = adapter.tokenizer
    closing = _OPEN_CLOSE[style][1]
    conts = [tok((words or {}).get(lab, lab) + closing, add_special_tokens=False)["input_ids"] for lab in labels]
    out = []
    for p, text in zip(prompts, completions, strict=True):
        prefix = tok(answer_prefix(text, style), add_special_tokens=False)["input_ids"]
        rows = [torch.tensor(prefix + c) for c in conts]
        logps, _, _ = adapter.completion_logprobs([p] * len(rows), rows, groups=[0] * len(rows))
        score = torch.stack([logps[k, len(prefix) : len(prefix) + len(c)].sum() for k, c in enumerate(conts)])
        probs = torch.softmax(score.float(), dim=0).tolist()
        out.append(dict(zip(labels, probs, strict=True)))
    return out


class ResumableWriter:
    """Rows appended to a JSONL or CSV file as they come; reopening keeps the complete rows already
    written (a half-written last line from a crash is dropped) and reports their ids."""

    def __init__(self, path: str | Path, columns: list[str]):
        self.path = Path(path)
        self.columns = columns
        self.csv = self.path.suffix.lower() == ".csv"
        if not self.csv and self.path.suffix.lower() != ".jsonl":
            raise ValueError(f"{self.path}: the output must be a .jsonl or .csv file")
        self.done: set[str] = set()
        kept = self._read_existing() if self.path.is_file() else []
        atomic_write_text(self.path, "".join(kept) if kept else (self._header() if self.csv else ""))

    def _header(self) -> str:
        buf = io.StringIO()
        csv.writer(buf).writerow(self.columns)
        return buf.getvalue()

    def _read_existing(self) -> list[str]:
        text = self.path.read_text(encoding="utf-8")
        lines = text.splitlines(keepends=True)
        if lines and not lines[-1].endswith("\n"):
            lines = lines[:-1]  # the row being written when the run stopped
        if not self.csv:
            for i, line in enumerate(lines, 1):
                try:
                    self.done.add(json.loads(line)["id"])
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise ManifestError(
                        f"{self.path}:{i}: not a prediction row; move the file away or choose another --out"
                    ) from None
            return lines
        rows = list(csv.reader(io.StringIO("".join(lines))))
        if rows and rows[0] != self.columns:
            raise ManifestError(
                f"{self.path}: its columns {rows[0]} differ from this run's {self.columns} "
                "(another label set?); choose another --out"
            )
        self.done.update(r[0] for r in rows[1:] if r)
        return lines

    def write(self, rows: Iterable[dict]) -> None:
        with self.path.open("a", encoding="utf-8", newline="") as f:
            for r in rows:
                if self.csv:
                    w = csv.writer(f)
                    w.writerow(
                        [r.get(c, r.get("probabilities", {}).get(c.removeprefix("p_"), "")) for c in self.columns]
                    )
                else:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")
                self.done.add(r["id"])
            f.flush()
            os.fsync(f.fileno())


def predict_files(
    adapter,
    builder,
    samples: list[Sample],
    out: str | Path,
    *,
    recipe: RewardRecipe,
    labels: tuple[str, ...],
    words: dict[str, str] | None = None,
    batch_size: int = 8,
    max_new_tokens: int = 512,
    modality: Modality = Modality.AV,
    progress: bool = True,
) -> dict:
    """Predict every sample not yet in ``out`` and append its row; returns counts."""
    from tqdm.auto import tqdm

    from emorl.models.adapter import sample_by_modality
    from emorl.utils import chunks

    columns = ["id", "media", "emotion", "format_ok", "parse", "reasoning", *(f"p_{lab}" for lab in labels), "error"]
    writer = ResumableWriter(out, columns)
    todo = [s for s in samples if s.id not in writer.done]
    params = SamplingParams(max_new_tokens=max_new_tokens, greedy=True)
    errors = 0
    bar = tqdm(total=len(samples), initial=len(samples) - len(todo), desc="predict", disable=not progress)
    for batch in chunks(todo, batch_size):
        ok, prompts, rows = [], [], []
        for s in batch:
            try:
                prompts.append(builder.prompt(s, modality))
                ok.append(s)
            except MediaError as e:
                errors += 1
                rows.append({"id": s.id, "media": s.media, "emotion": None, "error": f"{e.outcome}: {e}"})
        if prompts:
            texts = [t[0] for t in sample_by_modality(adapter, prompts, 1, params).texts]
            probs = option_probabilities(adapter, prompts, texts, labels, recipe.style, words)
            for s, text, pr in zip(ok, texts, probs, strict=True):
                parsed = recipe.parse(text, labels, words)
                rows.append(
                    {
                        "id": s.id,
                        "media": s.media,
                        "emotion": parsed.emotion,
                        "format_ok": parsed.format_ok,
                        "parse": parsed.reason,
                        "reasoning": parsed.reasoning,
                        "probabilities": pr,
                        "completion": text,
                        **({"media_notes": builder.notes[s.id]} if s.id in builder.notes else {}),
                    }
                )
        writer.write(rows)
        bar.update(len(batch))
    bar.close()
    return {
        "inputs": len(samples),
        "predicted": len(todo) - errors,
        "skipped_done": len(samples) - len(todo),
        "media_errors": errors,
        "out": str(out),
    }


def prepare_inputs(samples: list[Sample], labels: tuple[str, ...], dataset: str) -> list[Sample]:
    """Inputs scored over the model's label set (prompt options list it; the dataset, when the label
    set is a corpus's, gives its own words, e.g. MELD's ``joy``)."""
    for s in samples:
        s.label_set = list(labels)
        if s.dataset == "unlabeled":
            s.dataset = dataset
    return samples
