"""The one sample schema for every dataset, stored as JSONL (one JSON object a line).

Fields::

    id        str, unique within the manifest
    media     str, path to a video file (mp4/avi/flv/mkv...), an audio file (wav/mp3/flac)
              or a directory of frame images; relative paths resolve against the manifest's folder
    label     str, canonical emotion (see emorl.data.labels), or a label of the row's own label_set
    dataset   str, corpus name (a key of LABEL_SETS, or any name when label_set is given)
    split     str, e.g. train / test / coldstart / ood
    fold      int or null
    audio     str or null, a separate audio file for the same sample (RAVDESS: video from 02-, audio from 03-)
    label_set list[str] or null, candidate labels; null means the dataset's label set. Entries are
              canonical emotions or labels of the user's own (lower-case words: ``frustrated``)
    meta      dict, free metadata (cue values, speaker, captions, subject, media flags, ...)

Errors name the file, the line and the field. A manifest that mixes splits is read whole; the
commands that train or evaluate select rows by split (``select_split``), so test rows never reach
a training run by accident.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from emorl.data.labels import CANONICAL, LABEL_SETS, is_custom_label, label_words
from emorl.utils import atomic_write_text

REQUIRED = ("id", "media", "label", "dataset", "split")
KNOWN = (*REQUIRED, "fold", "audio", "label_set", "meta")


class ManifestError(ValueError):
    """A manifest that does not follow the schema; the message names file, line and field."""


@dataclass
class Sample:
    id: str
    media: str
    label: str
    dataset: str
    split: str
    fold: int | None = None
    audio: str | None = None
    label_set: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def labels(self) -> tuple[str, ...]:
        """Candidate labels this sample is scored over."""
        if self.label_set:
            return tuple(self.label_set)
        return LABEL_SETS.get(self.dataset, CANONICAL)

    @property
    def words(self) -> dict[str, str]:
        """The dataset's own word for a label where it is not one of the label's forms (MELD ``joy``)."""
        return label_words(self.dataset)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: v for k, v in d.items() if v is not None and not (k == "meta" and not v)}


def _check_row(obj: Any, where: str, labeled: bool = True) -> Sample:
    if not isinstance(obj, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    required = REQUIRED if labeled else ("id", "media")
    missing = [k for k in required if k not in obj]
    if missing:
        raise ManifestError(f"{where}: missing field(s) {', '.join(missing)}")
    unknown = [k for k in obj if k not in KNOWN]
    if unknown:
        raise ManifestError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(KNOWN)}")
    for k in REQUIRED:
        if (k in required or k in obj) and (not isinstance(obj.get(k), str) or not obj[k]):
            raise ManifestError(f"{where}: field '{k}' must be a non-empty string, got {obj.get(k)!r}")
    ls = obj.get("label_set")
    if ls is not None:
        bad = (
            [x for x in ls if not isinstance(x, str) or not (x in CANONICAL or is_custom_label(x))]
            if isinstance(ls, list)
            else ls
        )
        if not isinstance(ls, list) or not ls or bad or len(set(ls)) != len(ls):
            raise ManifestError(
                f"{where}: field 'label_set' must be a non-empty list of distinct labels (canonical "
                f"emotions or lower-case words of your own), got {ls!r}"
            )
    if "label" in obj:
        if ls is not None and obj["label"] not in ls:
            raise ManifestError(f"{where}: label {obj['label']!r} is not in its label_set {ls}")
        if ls is None and obj["label"] not in CANONICAL:
            raise ManifestError(
                f"{where}: field 'label' is {obj['label']!r}, not a canonical emotion "
                f"({', '.join(CANONICAL)}); a label of your own needs the row's label_set"
            )
    fold = obj.get("fold")
    if fold is not None and (not isinstance(fold, int) or isinstance(fold, bool)):
        raise ManifestError(f"{where}: field 'fold' must be an integer or null, got {fold!r}")
    if obj.get("audio") is not None and not isinstance(obj["audio"], str):
        raise ManifestError(f"{where}: field 'audio' must be a string path or null, got {obj['audio']!r}")
    meta = obj.get("meta", {})
    if not isinstance(meta, dict):
        raise ManifestError(f"{where}: field 'meta' must be an object, got {type(meta).__name__}")
    defaults = {"label": "", "dataset": "unlabeled", "split": "predict"}
    return Sample(**{**defaults, **obj, "meta": meta})


def read_manifest(path: str | os.PathLike, *, resolve: bool = True, labeled: bool = True) -> list[Sample]:
    """Read and validate a JSONL manifest. Media paths (relative ones resolve against the manifest's
    folder, from any working directory) are made absolute when ``resolve``. ``labeled=False``
    accepts rows with only ``id`` and ``media`` (prediction inputs)."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    samples: list[Sample] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ManifestError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from None
            s = _check_row(obj, where, labeled)
            if s.id in seen:
                raise ManifestError(f"{where}: duplicate id {s.id!r} (first on line {seen[s.id]})")
            seen[s.id] = lineno
            if resolve:
                s.media = str(_resolve(path.parent, s.media))
                if s.audio:
                    s.audio = str(_resolve(path.parent, s.audio))
            samples.append(s)
    if not samples:
        raise ManifestError(f"{path}: manifest has no rows")
    return samples


def _resolve(base: Path, p: str) -> Path:
    q = Path(p).expanduser()
    return q if q.is_absolute() else (base.resolve() / q)


def write_manifest(
    path: str | os.PathLike, samples: Iterable[Sample], *, relative_to: str | os.PathLike | None = None
) -> int:
    """Write samples atomically as JSONL; with ``relative_to`` media paths are stored relative to it."""
    lines = []
    for s in samples:
        d = s.to_json()
        if relative_to is not None:
            for k in ("media", "audio"):
                if d.get(k):
                    d[k] = os.path.relpath(d[k], relative_to)
        lines.append(json.dumps(d, ensure_ascii=False))
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))
    return len(lines)


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for a generic JSONL file, with errors naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object")
            yield lineno, obj


def label_space(samples: Iterable[Sample]) -> tuple[str, ...]:
    """The label set metrics are computed over: the dataset's own, or the union for a mixture
    (canonical labels in vocabulary order, then declared labels of one's own, sorted)."""
    sets = {s.labels for s in samples}
    if len(sets) == 1:
        return sets.pop()
    union = {lab for ls in sets for lab in ls}
    return (*(c for c in CANONICAL if c in union), *sorted(union - set(CANONICAL)))


def record_labels(cfg, samples: Iterable[Sample]) -> None:
    """Record the training samples' label set as the model's (``cfg.prompt.labels``, an
    emorl.config.RunConfig's) unless it is set."""
    if not cfg.prompt.labels:
        cfg.prompt.labels = list(label_space(samples))


# ----------------------------------------------------------------------------------------- splits
EVAL_SPLITS = frozenset({"test", "val", "valid", "validation", "dev", "ood", "test1", "test2", "test3"})


def split_counts(samples: Iterable[Sample]) -> dict[str, int]:
    """Rows per split, most frequent first."""
    from collections import Counter

    return dict(Counter(s.split for s in samples).most_common())


def select_split(samples: list[Sample], split: str, *, default: str, source: str, key: str) -> list[Sample]:
    """The rows a command uses: ``split`` names one split, ``all`` every row, and ``""`` the
    command's ``default`` (training ``train``, evaluation ``test``).

    With ``""``, a manifest holding one split is used whole, except that a training command
    (``default="train"``) refuses a manifest of evaluation rows only (test, val, ood, ...); a
    manifest mixing splits gives its ``default`` rows and is an error without them. Errors name
    ``source``, the split counts and the config ``key`` to set.
    """
    counts = split_counts(samples)
    desc = ", ".join(f"{k} {v}" for k, v in counts.items())
    if split == "all":
        return list(samples)
    if split:
        chosen = [s for s in samples if s.split == split]
        if not chosen:
            raise ManifestError(f"{source}: no rows of split {split!r} ({key}); the manifest holds {desc}")
        return chosen
    if default in counts:
        return [s for s in samples if s.split == default]
    if len(counts) == 1:
        only = next(iter(counts))
        if default == "train" and only in EVAL_SPLITS:
            raise ManifestError(
                f"{source}: holds only {only!r} rows ({desc}); training on them needs {key}={only} set explicitly"
            )
        return list(samples)
    raise ManifestError(
        f"{source}: mixes splits ({desc}) and has no {default!r} rows; choose one with {key}=<split> (or {key}=all)"
    )
