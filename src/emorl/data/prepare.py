"""``emorl data prepare``: a corpus in its official layout -> a manifest and its rejects.

Media paths are written relative to the manifest's folder (``read_manifest`` resolves them
against it), so the manifest works from any working directory whatever ``--root`` was. Hub-format
image corpora (``CorpusSpec.extracts``) extract their images to ``images/`` beside the manifest
(content-addressed, see ``emorl.data.corpora.hub``).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from emorl.data.manifest import split_counts, write_manifest
from emorl.utils import atomic_write_text


def prepare_manifest(
    name: str,
    root: str,
    out: str | Path,
    *,
    fold: int | None = None,
    subset: str | None = None,
    split: str = "all",
    **options: Any,
) -> dict:
    """Prepare corpus ``name`` and write ``out`` and ``<stem>.rejects.jsonl``; returns a summary
    (rows, classes, splits, folds, reject reasons, paths)."""
    from emorl.data.corpora import SPECS, prepare

    out = Path(out)
    if name in SPECS and SPECS[name].extracts:
        options.setdefault("image_dir", out.parent / "images")
    elif options.get("image_dir"):
        from emorl.data.corpora import DatasetError

        hub = ", ".join(k for k, v in SPECS.items() if v.extracts)
        raise DatasetError(f"{name}: image_dir (--image-dir) only applies to hub-format image corpora ({hub})")
    samples, rejects = prepare(name, root, fold=fold, subset=subset, split=split, **options)
    out.parent.mkdir(parents=True, exist_ok=True)
    n = write_manifest(out, samples, relative_to=out.parent.resolve())
    rej_path = out.with_name(out.stem + ".rejects.jsonl")
    atomic_write_text(rej_path, "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in rejects))
    return {
        "rows": n,
        "out": str(out),
        "rejects_path": str(rej_path),
        "rejects": len(rejects),
        "reject_reasons": dict(Counter(r.reason for r in rejects)),
        "classes": dict(Counter(s.label for s in samples).most_common()),
        "splits": split_counts(samples),
        "folds": sorted({s.fold for s in samples if s.fold is not None}),
    }
