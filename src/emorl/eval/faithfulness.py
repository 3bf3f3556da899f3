"""Is the reasoning faithful? Three measurable checks, each a rate with a 95 % interval.

(a) **Reasoning–answer consistency.** Does the emotion the reasoning implies match the answer?
    Two readings of "implies", reported separately:

    - *named*: the last emotion word the reasoning names (``attribution.named_emotion``);
      consistency = share of answered rows naming an emotion whose named emotion equals the answer;
    - *cues*: the emotion the cited cue phrases favour (``attribution.cue_emotion``, the lexicon's
      cue -> emotion evidence) — does the *evidence* the reasoning cites support its answer?
    - *judge* (optional): the emotion an LLM judge reads from the reasoning.

    On the synthetic world the same cue check is run on the generator's own traces for the same
    clips (``reference_cues``): the ceiling the cue map allows, since cues overlap between classes.

(b) **Modality hallucination** (needs the ablation predictions). With audio removed, a reasoning
    that states any audio claim (a cue or flat phrase: "a shaky voice", "a plain voice")
    describes sounds it never received; with video removed, likewise for face claims; with
    neither, any claim. Rate = share of reasonings (non-empty) with such a claim.

(c) **Cue hallucination** (synthetic world, ``meta.cues`` known). Each claim phrase of the
    world's lexicon is checked against ``describe_cues(meta)``, the phrases TRUE for the clip;
    a stated phrase not among them is hallucinated. Rates per modality: hallucinated claims /
    stated claims (interval: cluster bootstrap by clip), and the share of reasonings with at
    least one hallucinated claim.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from emorl.data.manifest import Sample
from emorl.eval.attribution import (
    MODALITIES,
    AdapterJudge,
    CueLexicon,
    attribute_rows,
    cue_emotion,
    find_cues,
    lexicon,
    named_emotion,
    summarize_attribution,
)
from emorl.eval.stats import cluster_of, rate_ci
from emorl.recipes.parse import parse_completion
from emorl.utils import atomic_write_json

CONDITIONS = ("av", "video", "audio", "text")  # directory names of the ablation conditions
REMOVED = {"video": ("audio",), "audio": ("video",), "text": ("video", "audio"), "av": ()}


def _reasoning(row: dict, style: str) -> str:
    return parse_completion(row.get("completion", "") or "", style).reasoning


def _clusters(rows: list[dict], meta: dict[str, dict]) -> list[str]:
    return [cluster_of(r["id"], meta.get(r["id"])) for r in rows]


def consistency(
    rows: list[dict],
    labels: Sequence[str],
    *,
    lex: CueLexicon | None = None,
    style: str = "tags",
    meta: dict[str, dict] | None = None,
    judge: AdapterJudge | None = None,
) -> dict:
    """(a) on answered rows (``pred`` set): named, cue-based [and judge] consistency rates."""
    lex = lex or lexicon()
    meta = meta or {}
    answered = [r for r in rows if r.get("pred") is not None]
    texts = [_reasoning(r, style) for r in answered]
    named = [named_emotion(t, labels) for t in texts]
    cues = [cue_emotion(t, lex, labels)[0] for t in texts]
    out: dict = {"answered": len(answered), "n_rows": len(rows)}
    cl = _clusters(answered, meta)
    for key, implied in (("named", named), ("cues", cues)):
        idx = [i for i, e in enumerate(implied) if e is not None]
        out[key] = rate_ci([implied[i] == answered[i]["pred"] for i in idx], [cl[i] for i in idx])
        out[key]["coverage"] = len(idx) / len(answered) if answered else None
    if judge is not None and answered:
        jud = judge.emotion(texts, labels)
        idx = [i for i, e in enumerate(jud) if e is not None]
        out["judge"] = rate_ci([jud[i] == answered[i]["pred"] for i in idx], [cl[i] for i in idx])
        out["judge"]["coverage"] = len(idx) / len(answered)
    return out


def reference_cue_consistency(
    samples: list[Sample], labels: Sequence[str], *, lex: CueLexicon | None = None, seed: int = 0
) -> dict | None:
    """The cue-based consistency of the generator's own traces (true cues, true label) on the
    synthetic ``samples``; None when no sample carries ``meta.cues``."""
    import numpy as np

    from emorl.data.synthetic.traces import make_trace

    syn = [s for s in samples if "cues" in s.meta and "informative" in s.meta]
    if not syn:
        return None
    lex = lex or lexicon()
    rng = np.random.default_rng(seed)
    flags = []
    for s in syn:
        e = cue_emotion(parse_completion(make_trace(s.meta, s.label, rng)).reasoning, lex, labels)[0]
        if e is not None:
            flags.append(e == s.label)
    return rate_ci(flags)


def modality_hallucination(
    rows_by_condition: dict[str, list[dict]],
    *,
    lex: CueLexicon | None = None,
    style: str = "tags",
    meta: dict[str, dict] | None = None,
) -> dict:
    """(b) per ablation condition that removes something: share of non-empty reasonings that state
    a claim about a removed modality, with the phrases most often claimed."""
    lex = lex or lexicon()
    meta = meta or {}
    out = {}
    for cond, rows in rows_by_condition.items():
        removed = REMOVED.get(cond, ())
        if not removed:
            continue
        flags, used, top = [], [], Counter()
        for r in rows:
            if r.get("modality") and r["modality"] != cond:
                continue  # the sample could not be ablated (e.g. a video-only corpus under 'video')
            t = _reasoning(r, style)
            if not t.strip():
                continue
            bad = [m.phrase for m in find_cues(t, lex) if m.claim and m.modality in removed]
            flags.append(bool(bad))
            used.append(r)
            top.update(set(bad))
        out[cond] = {
            "removed": list(removed),
            **rate_ci(flags, _clusters(used, meta)),
            "top_phrases": top.most_common(5),
        }
    return out


def cue_hallucination(rows: list[dict], meta: dict[str, dict], *, style: str = "tags") -> dict | None:
    """(c) claims of the synthetic world's lexicon checked against ``describe_cues``; None when no
    row's sample carries ``meta.cues``."""
    from emorl.data.synthetic.traces import describe_cues

    syn = lexicon("synthetic")
    per_mod: dict[str, dict[str, list]] = {m: {"flags": [], "clusters": []} for m in MODALITIES}
    clip_flags, clip_cl = [], []
    top: dict[str, Counter] = {m: Counter() for m in MODALITIES}
    n_rows = 0
    for r in rows:
        mt = meta.get(r["id"])
        if not mt or "cues" not in mt:
            continue
        n_rows += 1
        true = {m: {p.lower() for p in ps} for m, ps in describe_cues(mt).items()}
        claims = [c for c in find_cues(_reasoning(r, style), syn) if c.claim]
        if not claims:
            continue
        any_bad = False
        for c in claims:
            bad = c.phrase not in true[c.modality]
            per_mod[c.modality]["flags"].append(bad)
            per_mod[c.modality]["clusters"].append(r["id"])
            if bad:
                top[c.modality][c.phrase] += 1
            any_bad |= bad
        clip_flags.append(any_bad)
        clip_cl.append(cluster_of(r["id"], mt))
    if not n_rows:
        return None
    out: dict = {
        "rows": n_rows,
        "rows_with_claims": len(clip_flags),
        "reasonings_with_hallucination": rate_ci(clip_flags, clip_cl),
    }
    for m in MODALITIES:
        out[m] = {**rate_ci(per_mod[m]["flags"], per_mod[m]["clusters"]), "top_phrases": top[m].most_common(5)}
    out["all"] = rate_ci(
        per_mod["video"]["flags"] + per_mod["audio"]["flags"],
        per_mod["video"]["clusters"] + per_mod["audio"]["clusters"],
    )
    return out


def cites_vs_informative(attr: list[dict], meta: dict[str, dict]) -> dict | None:
    """Synthetic world: does the reasoning cite the informative modality? For clips informative by
    one modality, the share whose reasoning cites exactly that one; for 'both' clips, the share
    citing both. Rows without reasoning are left out. None when no row has ``meta.informative``."""
    groups: dict[str, list[bool]] = {"single": [], "video": [], "audio": [], "both": []}
    for a in attr:
        inf = (meta.get(a["id"]) or {}).get("informative")
        if inf is None or not a.get("reasoning", "x").strip():
            continue
        ok = a["cites"] == inf
        groups[inf].append(ok)
        if inf in ("video", "audio"):
            groups["single"].append(ok)
    if not any((meta.get(a["id"]) or {}).get("informative") for a in attr):
        return None
    return {k: rate_ci(v) for k, v in groups.items()}


def load_condition_rows(run_dir: Path) -> dict[str, list[dict]]:
    """Prediction rows per condition of an analysis run dir (``CONDITION/predictions.jsonl``)."""
    out = {}
    for c in CONDITIONS:
        p = Path(run_dir) / c / "predictions.jsonl"
        if p.is_file():
            out[c] = [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    return out


def analyze_reasoning(
    rows_by_condition: dict[str, list[dict]],
    samples: list[Sample],
    labels: Sequence[str],
    *,
    style: str = "tags",
    lex: CueLexicon | None = None,
    judge: AdapterJudge | None = None,
    out_dir: Path | None = None,
) -> dict:
    """Attribution (on the full-input condition) and faithfulness (a, b, c) of one model's
    predictions; writes ``attribution.json`` and ``faithfulness.json`` into ``out_dir`` if given.
    ``rows_by_condition`` maps condition names (av, video, audio, text) to prediction rows."""
    lex = lex or lexicon()
    meta = {s.id: s.meta for s in samples}
    main = rows_by_condition.get("av") or next(iter(rows_by_condition.values()))
    attr_rows = attribute_rows(main, lex, style=style, judge=judge)
    attribution = {
        "lexicon": lex.name,
        "condition": "av" if "av" in rows_by_condition else next(iter(rows_by_condition)),
        **summarize_attribution(attr_rows, labels),
        "per_condition": {
            c: summarize_attribution(attribute_rows(r, lex, style=style), labels)["overall"]
            for c, r in rows_by_condition.items()
        },
        "cites_vs_informative": cites_vs_informative(attr_rows, meta),
        "rows": [{k: a[k] for k in ("id", "label", "pred", "cites", "mentions", "video", "audio")} for a in attr_rows],
    }
    faith = {
        "lexicon": lex.name,
        "consistency": consistency(main, labels, lex=lex, style=style, meta=meta, judge=judge),
        "reference_cues": reference_cue_consistency(samples, labels, lex=lex),
        "modality_hallucination": modality_hallucination(rows_by_condition, lex=lex, style=style, meta=meta),
        "cue_hallucination": cue_hallucination(main, meta, style=style),
    }
    if out_dir is not None:
        out_dir = Path(out_dir)
        atomic_write_json(out_dir / "attribution.json", attribution)
        atomic_write_json(out_dir / "faithfulness.json", faith)
    return {"attribution": attribution, "faithfulness": faith}
