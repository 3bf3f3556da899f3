"""Training mixtures: several manifests combined at chosen relative sampling rates.

R1-Omni trains on DFEW and MAFW together. A mixture is a list of ``{"manifest": path, "weight": w}``;
the share of source i in the mixture is ``w_i / sum(w)``, and the mixture has as many samples as
all sources together unless ``size`` says otherwise. Each source is drawn without replacement until
it is used up, then reshuffled (oversampling); a repeated sample gets the id ``<id>#rep<k>`` so ids
stay unique. Samples keep their own ``dataset`` and so their own label set (``Sample.labels``) for
the reward. The result is a deterministic function of the specs and the seed.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from emorl.data.manifest import Sample, read_manifest


def mixture_counts(weights: Sequence[float], total: int) -> list[int]:
    """Split ``total`` draws in proportion to ``weights`` (largest remainder, ties to the earlier source).

    >>> mixture_counts([1, 3], 30)
    [8, 22]
    """
    s = float(sum(weights))
    exact = [total * w / s for w in weights]
    counts = [math.floor(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def draw(samples: Sequence[Sample], n: int, rng: random.Random) -> list[Sample]:
    """``n`` samples: whole shuffled passes over ``samples`` then a shuffled part; repeats get ``#rep<k>`` ids."""
    if n > 0 and not samples:
        raise ValueError(f"cannot draw {n} samples from an empty source")
    out: list[Sample] = []
    k = 0
    while len(out) < n:
        order = list(range(len(samples)))
        rng.shuffle(order)
        for i in order[: n - len(out)]:
            s = samples[i]
            out.append(s if k == 0 else dataclasses.replace(s, id=f"{s.id}#rep{k}", meta={**s.meta, "repeat": k}))
        k += 1
    return out


def _check_spec(i: int, spec: Mapping[str, Any]) -> tuple[str, float]:
    if not isinstance(spec, Mapping) or "manifest" not in spec:
        raise ValueError(f"mixture entry {i}: expected {{'manifest': path, 'weight': w}}, got {spec!r}")
    w = spec.get("weight", 1.0)
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
        raise ValueError(f"mixture entry {i} ({spec['manifest']}): weight must be a positive number, got {w!r}")
    unknown = set(spec) - {"manifest", "weight"}
    if unknown:
        raise ValueError(f"mixture entry {i}: unknown key(s) {', '.join(sorted(unknown))}; known: manifest, weight")
    return os.fspath(spec["manifest"]), float(w)


def load_mixture(
    specs: Sequence[Mapping[str, Any]],
    seed: int,
    *,
    size: int | None = None,
    read: Callable[[str], list[Sample]] = read_manifest,
) -> list[Sample]:
    """A shuffled training list drawing from each manifest at its relative ``weight``.

    ``size``: number of samples (default: the sources' total); ``read``: how a manifest's rows are
    read (the training command passes one that selects the training split). Raises ValueError for
    bad entries and for an id that occurs in two manifests.
    """
    if not specs:
        raise ValueError("a mixture needs at least one manifest")
    checked = [_check_spec(i, s) for i, s in enumerate(specs)]
    sources = [read(path) for path, _ in checked]
    owner: dict[str, str] = {}
    for (path, _), samples in zip(checked, sources, strict=True):
        for s in samples:
            if s.id in owner:
                raise ValueError(f"mixture: id {s.id!r} occurs in both {owner[s.id]} and {path}")
            owner[s.id] = path
    total = sum(len(s) for s in sources) if size is None else size
    if total < 0:
        raise ValueError(f"mixture size must be >= 0, got {size}")
    rng = random.Random(seed)
    mixed: list[Sample] = []
    for samples, n in zip(sources, mixture_counts([w for _, w in checked], total), strict=True):
        mixed += draw(samples, n, rng)
    rng.shuffle(mixed)
    return mixed
