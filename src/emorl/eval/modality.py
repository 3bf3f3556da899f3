"""Modality ablations: what does the model lose when a modality is taken away?

The same samples are evaluated under four input conditions (``Modality``): ``av`` (video +
audio), ``video`` (audio removed), ``audio`` (video removed) and ``text`` (neither; the prompt
alone). Per condition: WAR / UAR with cluster-bootstrap intervals and per-class recall. Then:

- **drop** from removing a modality = metric(av) − metric(av without it), with a paired bootstrap
  interval (removing video = the ``audio`` condition; removing audio = the ``video`` condition);
- **reliance** of class c on modality m = among clips of class c answered correctly with both
  modalities, the share answered wrongly once m is removed (0 = m not needed, 1 = every correct
  answer depended on m); the per-class recall drop is listed beside it;
- on the synthetic world (``meta.informative`` in both / video / audio), a per-clip **inferred
  informative modality**, compared with the generator's truth on clips where one modality alone
  is informative (see :func:`infer_informative`).

An *analysis run dir* (what ``run_analysis`` writes and ``emorl report`` reads)::

    RUN/run.json                      name, model, manifest, label set, timings
    RUN/modality.json                 this module's summary
    RUN/attribution.json              reasoning attribution (emorl.eval.attribution)
    RUN/faithfulness.json             consistency and hallucination (emorl.eval.faithfulness)
    RUN/{av,video,audio,text}/predictions.jsonl, metrics.json, confusion.png
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from emorl.data.manifest import Sample
from emorl.eval.evaluate import label_space, metrics_of, plot_confusion, predict
from emorl.eval.faithfulness import CONDITIONS, analyze_reasoning
from emorl.eval.stats import cluster_of, compare_paired, metric_cis, permutation_agreement, rate_ci
from emorl.models.adapter import Modality
from emorl.prompting import PromptBuilder, carried
from emorl.utils import atomic_write_json, atomic_write_text

CONDITION_MODALITY: dict[str, Modality] = {
    "av": Modality.AV,
    "video": Modality.VIDEO,
    "audio": Modality.AUDIO,
    "text": Modality.TEXT,
}
CONDITION_TITLE = {"av": "video+audio", "video": "video only", "audio": "audio only", "text": "neither (text)"}
WITHOUT = {"video": "audio", "audio": "video"}  # modality removed -> condition that remains


def supports(s: Sample, cond: str) -> bool:
    """Whether the sample carries what the condition asks for (``emorl.prompting.carried``: a
    video-only corpus has no 'audio' condition, an audio-only one no 'video'; a still image is
    its 'video' condition (an image prompt) and 'text', never 'av' or 'audio')."""
    has = carried(s)
    if has == "image":
        return cond in ("video", "text")
    if cond == "video":
        return has != "audio"
    if cond == "audio":
        return has != "video"
    return True


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _by_id(rows: list[dict]) -> dict[str, dict]:
    return {r["id"]: r for r in rows}


def infer_informative(
    correct_v: bool, correct_a: bool, pred_av: str | None, pred_v: str | None, pred_a: str | None
) -> dict:
    """Per-clip inferred informative modality, three ways.

    - ``evidence``: which single modality suffices for a correct answer — video if correct with
      video only and wrong with audio only, audio in the mirror case, 'both' if correct with
      either, 'none' if with neither.
    - ``decision``: which single modality reproduces the full-input answer — video if the
      video-only answer equals the av answer and the audio-only one does not, etc. (needs an av
      answer; 'none' otherwise).
    - ``combined`` (the headline): ``evidence`` when it singles out one modality, else
      ``decision`` when that does, else ``evidence``.
    """
    ev = "both" if correct_v and correct_a else "video" if correct_v else "audio" if correct_a else "none"
    if pred_av is None:
        de = "none"
    else:
        mv, ma = pred_v == pred_av, pred_a == pred_av
        de = "both" if mv and ma else "video" if mv else "audio" if ma else "none"
    comb = ev if ev in ("video", "audio") else de if de in ("video", "audio") else ev
    return {"evidence": ev, "decision": de, "combined": comb}


def _agreement(syn: list[Sample], pred: dict[str, dict[str, str | None]], n_perm: int) -> dict:
    """Agreement blocks of one set of per-condition predictions (``pred[cond][id]``)."""
    per_clip = []
    for s in syn:
        v, a, av = pred["video"][s.id], pred["audio"][s.id], pred["av"][s.id]
        inf = infer_informative(v == s.label, a == s.label, av, v, a)
        per_clip.append({"id": s.id, "truth": s.meta["informative"], **inf})
    out: dict = {}
    single = [p for p in per_clip if p["truth"] != "both"]
    for d in ("evidence", "decision", "combined"):
        table = {t: dict(Counter(p[d] for p in per_clip if p["truth"] == t)) for t in ("both", "video", "audio")}
        block = {"table": table, "single": rate_ci([p[d] == p["truth"] for p in single])}
        for t in ("video", "audio"):
            block[t] = rate_ci([p[d] == t for p in single if p["truth"] == t])
        block["both_as_both"] = rate_ci([p[d] == "both" for p in per_clip if p["truth"] == "both"])
        decisive = [p for p in single if p[d] in ("video", "audio")]
        block["decisive"] = rate_ci([p[d] == p["truth"] for p in decisive])
        block["chance"] = permutation_agreement([p["truth"] for p in single], [p[d] for p in single], n_perm=n_perm)
        out[d] = block
    out["accuracy_by_truth"] = {
        t: {
            c: rate_ci([pred[c][s.id] == s.label for s in syn if s.meta["informative"] == t])
            for c in ("av", "video", "audio")
        }
        for t in ("both", "video", "audio")
    }
    out["per_clip"] = per_clip
    return out


def ideal_observer(meta: dict, labels: Sequence[str] | None = None, *, n_intensity: int = 8) -> dict[str, str]:
    """Bayes decision of the synthetic world's own generative model from a clip's true cue values,
    per condition: {'av': label, 'video': label, 'audio': label}.

    Class-conditional likelihood of each modality's cues (Gaussian continuous cues with the mean
    averaged over the latent intensity, categorical head move / pitch contour from the class
    tables), mixed with the class-independent 'flat' distribution by the world's informative-
    modality proportions; uniform class prior. Clipping and occlusion are ignored. This is the
    reference a model that uses both channels well could approach; it calibrates what the
    informative-modality agreement can reach on this world."""
    import numpy as np

    from emorl.data.synthetic import world as w

    classes = list(labels or w.CLASSES)
    grid = np.linspace(w.INTENSITY[0], w.INTENSITY[1], n_intensity)

    def loglik(mod: str, c: str | None) -> float:
        cues = meta["cues"][mod]
        names = w.VIDEO_CUES if mod == "video" else w.AUDIO_CUES
        sds = w.VIDEO_SD if mod == "video" else w.AUDIO_SD
        cat, table, flat_cat = (
            ("head_move", w.HEAD_MOVE_P, w.FLAT_HEAD_MOVE)
            if mod == "video"
            else ("pitch_contour", w.CONTOUR_P, w.FLAT_CONTOUR)
        )
        if c is None:  # flat
            flat = w.FLAT_VIDEO if mod == "video" else w.FLAT_AUDIO
            ll = sum(-0.5 * ((float(cues[k]) - flat[k][0]) / flat[k][1]) ** 2 - np.log(flat[k][1]) for k in names)
            return float(ll + (0.0 if cues[cat] == flat_cat else -20.0))
        per_i = []
        for i in grid:
            per_i.append(
                sum(
                    -0.5 * ((float(cues[k]) - w.cue_mean(mod, c, k, float(i))) / sds[k]) ** 2 - np.log(sds[k])
                    for k in names
                )
            )
        per_i = np.array(per_i)
        m = per_i.max()
        return float(m + np.log(np.mean(np.exp(per_i - m))) + np.log(max(table[c].get(cues[cat], 0.0), 1e-9)))

    def lse(xs: list[float]) -> float:
        m = max(xs)
        return m + float(np.log(sum(np.exp(x - m) for x in xs)))

    p = w.INFORMATIVE
    fv, fa = loglik("video", None), loglik("audio", None)
    score: dict[str, dict[str, float]] = {"av": {}, "video": {}, "audio": {}}
    for c in classes:
        lv, la = loglik("video", c), loglik("audio", c)
        score["av"][c] = lse([np.log(p["both"]) + lv + la, np.log(p["video"]) + lv + fa, np.log(p["audio"]) + fv + la])
        score["video"][c] = lse([np.log(p["both"] + p["video"]) + lv, np.log(p["audio"]) + fv])
        score["audio"][c] = lse([np.log(p["both"] + p["audio"]) + la, np.log(p["video"]) + fa])
    return {cond: max(sc, key=sc.get) for cond, sc in score.items()}


def informative_agreement(
    samples: list[Sample], rows: dict[str, dict[str, dict]], *, n_perm: int = 5000, reference: bool = True
) -> dict | None:
    """Compare the inferred informative modality with the generator's ``meta.informative``.

    ``rows[cond][id]``: prediction rows of the av / video / audio conditions. For each definition
    (evidence, decision, combined): the truth x inferred table, the agreement rate with a Wilson
    interval on clips where one modality alone is informative (overall and per modality), the
    agreement chance would give (truth shuffled among those clips) and the permutation p. Also,
    per truth group, accuracy with video only and with audio only. With ``reference`` and
    ``meta.cues`` present, the same for the world's ideal observer (:func:`ideal_observer`) under
    ``reference``. None when no sample carries ``meta.informative`` or a condition is missing."""
    if not all(c in rows for c in ("av", "video", "audio")):
        return None
    syn = [
        s
        for s in samples
        if s.meta.get("informative") in ("both", "video", "audio")
        and all(s.id in rows[c] for c in ("av", "video", "audio"))
    ]
    if not syn:
        return None
    out: dict = {"n_clips": len(syn), "n_single": sum(s.meta["informative"] != "both" for s in syn)}
    out.update(
        _agreement(syn, {c: {s.id: rows[c][s.id]["pred"] for s in syn} for c in ("av", "video", "audio")}, n_perm)
    )
    from emorl.data.synthetic.world import CLASSES

    labels = label_space(syn)
    if reference and all("cues" in s.meta for s in syn) and set(labels) <= set(CLASSES):
        ideal = {s.id: ideal_observer(s.meta, labels) for s in syn}
        ref = _agreement(syn, {c: {i: p[c] for i, p in ideal.items()} for c in ("av", "video", "audio")}, n_perm)
        ref.pop("per_clip")
        out["reference"] = {"what": "ideal observer of the synthetic world (true cue values, Bayes decision)", **ref}
    return out


def _class_recall_ci(rows: list[dict], labels: Sequence[str], meta: dict) -> dict:
    out = {}
    for c in labels:
        rr = [r for r in rows if r["label"] == c]
        if rr:
            out[c] = rate_ci([r["correct"] for r in rr], [cluster_of(r["id"], meta.get(r["id"])) for r in rr])
    return out


def analyze_modality(
    adapter,
    builder: PromptBuilder,
    samples: list[Sample],
    out_dir: Path,
    *,
    style: str = "tags",
    recipe=None,
    batch_size: int = 32,
    max_new_tokens: int = 64,
    conditions: Sequence[str] = CONDITIONS,
    progress: bool = True,
    reuse: dict[str, list[dict]] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict:
    """Evaluate ``samples`` under each condition; write ``CONDITION/{predictions.jsonl,
    metrics.json, confusion.png}`` and ``modality.json`` into ``out_dir``; return the summary.

    ``reuse[cond]``: prediction rows already made with the same settings (e.g. the demo's own
    eval of the full-input condition); used when they cover every sample of that condition."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = label_space(samples)
    meta = {s.id: s.meta for s in samples}
    rows: dict[str, dict[str, dict]] = {}
    summary: dict = {"labels": list(labels), "n": len(samples), "conditions": {}, "seconds": {}}
    # a condition the model family cannot take (audio for a vision-language model) is recorded, not run
    takes = getattr(adapter, "modalities", tuple(Modality))
    summary["not_taken"] = {
        c: f"{getattr(adapter, 'family', 'the model')} does not take {CONDITION_TITLE[c]} prompts"
        for c in conditions
        if CONDITION_MODALITY[c] not in takes
    }
    for cond in [c for c in conditions if c not in summary["not_taken"]]:
        mod = CONDITION_MODALITY[cond]
        elig = [s for s in samples if supports(s, cond)]
        t0 = time.perf_counter()
        prev = _by_id((reuse or {}).get(cond, []))
        if elig and all(s.id in prev for s in elig):
            rr = [prev[s.id] for s in elig]
            source = "reused"
        else:
            rr = (
                predict(
                    adapter,
                    builder,
                    elig,
                    style=style,
                    recipe=recipe,
                    batch_size=batch_size,
                    max_new_tokens=max_new_tokens,
                    modality=mod,
                    progress=progress,
                    desc=f"modality {cond}",
                )
                if elig
                else []
            )
            source = "predicted"
        summary["seconds"][cond] = round(time.perf_counter() - t0, 2)
        d = out_dir / cond
        d.mkdir(parents=True, exist_ok=True)
        _write_jsonl(d / "predictions.jsonl", rr)
        if not rr:
            summary["conditions"][cond] = {"n": 0, "skipped": len(samples)}
            continue
        m = metrics_of(rr, labels)
        cl = [cluster_of(r["id"], meta.get(r["id"])) for r in rr]
        m["ci"] = metric_cis([r["label"] for r in rr], [r["pred"] for r in rr], labels, cl, n_boot=n_boot, seed=seed)
        m["condition"] = cond
        m["skipped"] = len(samples) - len(elig)
        m["source"] = source
        atomic_write_json(d / "metrics.json", m)
        plot_confusion(m, d / "confusion.png", f"{CONDITION_TITLE[cond]}: WAR {m['war']:.3f}  UAR {m['uar']:.3f}")
        rows[cond] = _by_id(rr)
        summary["conditions"][cond] = {
            "n": m["n"],
            "skipped": m["skipped"],
            "source": source,
            "war": m["ci"]["war"],
            "uar": m["ci"]["uar"],
            "format_rate": m.get("format_rate"),
            "per_class_recall": m["per_class_recall"],
            "per_class_recall_ci": _class_recall_ci(rr, labels, meta),
            "n_clusters": m["ci"]["n_clusters"],
        }

    # drops and reliance: paired on the samples present in both conditions
    summary["drops"], summary["reliance"] = {}, {}
    if "av" in rows:
        for removed, remaining in (*WITHOUT.items(), ("both", "text")):
            if remaining not in rows:
                continue
            ids = [s.id for s in samples if s.id in rows["av"] and s.id in rows[remaining]]
            if not ids:
                continue
            true = [rows["av"][i]["label"] for i in ids]
            cmp = compare_paired(
                true,
                [rows[remaining][i]["pred"] for i in ids],
                [rows["av"][i]["pred"] for i in ids],
                labels,
                [cluster_of(i, meta.get(i)) for i in ids],
                n_boot=n_boot,
                seed=seed,
            )
            summary["drops"][removed] = {"condition": remaining, **cmp}
            rel = {}
            for c in [*labels, "all"]:
                cid = [i for i in ids if c == "all" or rows["av"][i]["label"] == c]
                if not cid:
                    continue
                ok = [i for i in cid if rows["av"][i]["correct"]]
                lost = [not rows[remaining][i]["correct"] for i in ok]
                r_av = len(ok) / len(cid)
                r_wo = sum(rows[remaining][i]["correct"] for i in cid) / len(cid)
                rel[c] = {
                    "reliance": (sum(lost) / len(ok)) if ok else None,
                    "n_correct_av": len(ok),
                    "n": len(cid),
                    "recall_av": r_av,
                    "recall_without": r_wo,
                    "recall_drop": r_av - r_wo,
                    "ci": rate_ci(lost) if ok else None,
                }
            summary["reliance"][removed] = rel
    summary["informative"] = informative_agreement(samples, rows)
    if summary["informative"] is not None:
        atomic_write_json(out_dir / "informative_per_clip.json", summary["informative"].pop("per_clip"))
    atomic_write_json(out_dir / "modality.json", summary)
    return summary


def run_analysis(
    adapter,
    builder: PromptBuilder,
    samples: list[Sample],
    out_dir: Path,
    *,
    style: str = "tags",
    recipe=None,
    batch_size: int = 32,
    max_new_tokens: int = 64,
    conditions: Sequence[str] = CONDITIONS,
    lexicons: Sequence[str] = ("en", "synthetic"),
    judge=None,
    progress: bool = True,
    reuse: dict[str, list[dict]] | None = None,
    name: str | None = None,
    model: str | None = None,
    manifest: str | None = None,
) -> dict:
    """Modality ablations + reasoning attribution + faithfulness for one model; writes a complete
    analysis run dir (see the module docstring) and returns {modality, attribution, faithfulness}."""
    from emorl.eval.attribution import lexicon
    from emorl.eval.faithfulness import load_condition_rows

    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    mod = analyze_modality(
        adapter,
        builder,
        samples,
        out_dir,
        style=style,
        recipe=recipe,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        conditions=conditions,
        progress=progress,
        reuse=reuse,
    )
    t1 = time.perf_counter()
    res = analyze_reasoning(
        load_condition_rows(out_dir),
        samples,
        label_space(samples),
        style=style,
        lex=lexicon(*lexicons),
        judge=judge,
        out_dir=out_dir,
    )
    t2 = time.perf_counter()
    atomic_write_json(
        out_dir / "run.json",
        {
            "name": name or out_dir.name,
            "model": str(model) if model else None,
            "manifest": str(manifest) if manifest else None,
            "style": style,
            "labels": list(label_space(samples)),
            "n": len(samples),
            "conditions": list(conditions),
            "lexicons": list(lexicons),
            "seconds": {"modality": round(t1 - t0, 2), "reasoning": round(t2 - t1, 2), **mod["seconds"]},
        },
    )
    return {"modality": mod, **res}


def format_summary(mod: dict) -> str:
    """A few lines of text for the terminal from ``analyze_modality``'s result (or modality.json)."""
    lines = [f"{'condition':<14} {'n':>5}  {'WAR [95% CI]':<22} {'UAR [95% CI]':<22}"]
    for c, v in mod.get("conditions", {}).items():
        if "war" not in v:
            lines.append(f"{CONDITION_TITLE[c]:<14} {0:>5}  (no sample carries this modality)")
            continue
        w, u = v["war"], v["uar"]
        lines.append(
            f"{CONDITION_TITLE[c]:<14} {v['n']:>5}  {w['value']:.3f} [{w['lo']:.2f}, {w['hi']:.2f}]"
            f"{'':<6} {u['value']:.3f} [{u['lo']:.2f}, {u['hi']:.2f}]"
        )
    for m, d in mod.get("drops", {}).items():
        u = d["uar"]
        lines.append(
            f"drop from removing {m:<5}: UAR {u['diff']:+.3f} [{u['lo']:+.2f}, {u['hi']:+.2f}]"
            f" ({'significant' if u['significant'] else 'not significant'}; McNemar p on WAR "
            f"{d['mcnemar']['p_value']:.3g})"
        )
    inf = mod.get("informative")
    if inf:
        s, ch = inf["combined"]["single"], inf["combined"]["chance"]
        if s["n"]:
            line = (
                f"informative modality recovered on {s['rate']:.0%} [{s['lo']:.0%}, {s['hi']:.0%}] of {s['n']} "
                f"single-modality clips (chance {ch['chance']:.0%}, p = {ch['p_value']:.3g})"
            )
            ref = (inf.get("reference") or {}).get("combined", {}).get("single")
            if ref and ref.get("rate") is not None:
                line += f"; ideal observer {ref['rate']:.0%}"
            lines.append(line)
    return "\n".join(lines)
