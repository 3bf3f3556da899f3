"""The one sample schema for every dataset, stored as JSONL (one JSON object a line).

Fields::

    id        str, unique within the manifest
    media     str, path to a video file (mp4/avi/flv/mkv...), an audio file (wav/mp3/flac)
              or a directory of frame images; relative paths resolve against the manifest's folder
    label     str, canonical emotion (see emorl.data.labels)
    dataset   str, corpus name (a key of LABEL_SETS)
    split     str, e.g. train / test / coldstart / ood
    fold      int or null
    audio     str or null, a separate audio file for the same sample (RAVDESS: video from 02-, audio from 03-)
    label_set list[str] or null, candidate labels; null means the dataset's label set
    meta      dict, free metadata (cue values, speaker, captions, ...)

Errors name the file, the line and the field.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from emorl.data.labels import CANONICAL, LABEL_SETS
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

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: v for k, v in d.items() if v is not None and not (k == "meta" and not v)}


def _check_row(obj: Any, where: str) -> Sample:
    if not isinstance(obj, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in REQUIRED if k not in obj]
    if missing:
        raise ManifestError(f"{where}: missing field(s) {', '.join(missing)}")
    unknown = [k for k in obj if k not in KNOWN]
    if unknown:
        raise ManifestError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(KNOWN)}")
    for k in REQUIRED:
        if not isinstance(obj[k], str) or not obj[k]:
            raise ManifestError(f"{where}: field '{k}' must be a non-empty string, got {obj[k]!r}")
    if obj["label"] not in CANONICAL:
        raise ManifestError(f"{where}: field 'label' is {obj['label']!r}, not a canonical emotion ({', '.join(CANONICAL)})")
    fold = obj.get("fold")
    if fold is not None and (not isinstance(fold, int) or isinstance(fold, bool)):
        raise ManifestError(f"{where}: field 'fold' must be an integer or null, got {fold!r}")
    ls = obj.get("label_set")
    if ls is not None:
        if not isinstance(ls, list) or not ls or any(x not in CANONICAL for x in ls):
            raise ManifestError(f"{where}: field 'label_set' must be a non-empty list of canonical emotions, got {ls!r}")
        if obj["label"] not in ls:
            raise ManifestError(f"{where}: label {obj['label']!r} is not in its label_set {ls}")
    if obj.get("audio") is not None and not isinstance(obj["audio"], str):
        raise ManifestError(f"{where}: field 'audio' must be a string path or null, got {obj['audio']!r}")
    meta = obj.get("meta", {})
    if not isinstance(meta, dict):
        raise ManifestError(f"{where}: field 'meta' must be an object, got {type(meta).__name__}")
    return Sample(**{**obj, "meta": meta})


def read_manifest(path: str | os.PathLike, *, resolve: bool = True) -> list[Sample]:
    """Read and validate a JSONL manifest. Media paths are made absolute when ``resolve``."""
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
            s = _check_row(obj, where)
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
    q = Path(p)
    return q if q.is_absolute() else (base / q)


def write_manifest(path: str | os.PathLike, samples: Iterable[Sample], *, relative_to: str | os.PathLike | None = None) -> int:
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
