"""Leakage guard: no clip of an evaluation manifest may be a training clip.

A clip's identity is its id (a mixture's ``#rep<k>`` suffix dropped), its resolved media path (and
audio path), and, where two media files have the same size, a hash of their first 64 KiB (cheap:
only size collisions are read). Shared clips are an error listing the overlaps; shared subjects
(``meta.subject``: RAVDESS / CREMA-D actors) are reported, because speaker-independent protocols
need them disjoint but some published ones do not.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from dataclasses import dataclass, field

from emorl.data.manifest import ManifestError, Sample

_HEAD = 64 * 1024


class LeakageError(ManifestError):
    """Training and evaluation manifests share clips."""


@dataclass
class Overlap:
    train_id: str
    eval_id: str
    eval_manifest: str
    how: str  # id | media | content


@dataclass
class Leakage:
    clips: list[Overlap] = field(default_factory=list)
    subjects: dict[str, list[str]] = field(default_factory=dict)  # eval manifest -> shared subjects


def _base_id(s: Sample) -> str:
    return s.id.split("#rep", 1)[0]


def _paths(s: Sample) -> list[str]:
    return [os.path.realpath(p) for p in (s.media, s.audio) if p]


def _size(path: str) -> int | None:
    try:
        return os.stat(path).st_size if os.path.isfile(path) else None
    except OSError:
        return None


def _head_hash(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha1(f.read(_HEAD)).hexdigest()


def find_leakage(train: list[Sample], evals: dict[str, list[Sample]]) -> Leakage:
    """Clips and subjects ``train`` shares with each evaluation manifest's rows."""
    by_id = {_base_id(s): s for s in train}
    by_path = {p: s for s in train for p in _paths(s)}
    train_sizes: dict[int, list[tuple[str, Sample]]] = defaultdict(list)
    for p, s in by_path.items():
        if (n := _size(p)) is not None:
            train_sizes[n].append((p, s))
    subjects = {s.meta["subject"] for s in train if s.meta.get("subject")}
    out = Leakage()
    hashes: dict[str, str] = {}

    def digest(p: str) -> str:
        if p not in hashes:
            hashes[p] = _head_hash(p)
        return hashes[p]

    for name, rows in evals.items():
        shared_subjects = set()
        for e in rows:
            hit = None
            if _base_id(e) in by_id:
                hit = Overlap(by_id[_base_id(e)].id, e.id, name, "id")
            for p in _paths(e):
                if hit is None and p in by_path:
                    hit = Overlap(by_path[p].id, e.id, name, "media")
                n = _size(p) if hit is None else None
                for q, s in train_sizes.get(n, []) if n is not None else []:
                    if hit is None and digest(p) == digest(q):
                        hit = Overlap(s.id, e.id, name, "content")
            if hit:
                out.clips.append(hit)
            if e.meta.get("subject") in subjects:
                shared_subjects.add(e.meta["subject"])
        if shared_subjects:
            out.subjects[name] = sorted(shared_subjects)
    return out


def guard(train: list[Sample], evals: dict[str, list[Sample]], *, train_name: str = "training data") -> Leakage:
    """Raise LeakageError when ``train`` shares clips with an evaluation manifest; print shared
    subjects. Returns what was found."""
    found = find_leakage(train, evals)
    if found.clips:
        show = "\n  ".join(f"{o.train_id} ~ {o.eval_id} in {o.eval_manifest} (same {o.how})" for o in found.clips[:10])
        more = f"\n  ... and {len(found.clips) - 10} more" if len(found.clips) > 10 else ""
        raise LeakageError(
            f"{train_name}: {len(found.clips)} training clip(s) are also evaluation clips:\n  {show}{more}\n"
            "train and evaluate on disjoint splits (emorl data prepare NAME --fold K --split train|test)"
        )
    for name, subs in found.subjects.items():
        print(
            f"[data] note: {train_name} and {name} share {len(subs)} subject(s) "
            f"({', '.join(subs[:6])}{' ...' if len(subs) > 6 else ''}): not a speaker-independent split"
        )
    return found
