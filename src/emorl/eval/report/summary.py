"""The report's top section: a summary written from the numbers, key-number cards and notes."""

from __future__ import annotations

from emorl.eval.report.fmt import ci, fmt, pct
from emorl.eval.report.load import Pairs, RunView, primary
from emorl.eval.report.page import Callout, Cards, Paragraph, Section, b


def _best(runs: list[RunView]):
    av = [(r, r.metrics.get("av", {}).get("ci")) for r in runs]
    return max((x for x in av if x[1]), key=lambda x: x[1]["uar"]["value"], default=None)


def _headline_items(runs: list[RunView], pairs: Pairs) -> list:
    items: list = []
    best = _best(runs)
    if best:
        r, c = best
        v, iv = ci(c["uar"])
        items.append(
            [
                "Best UAR on video+audio: ",
                b(r.name),
                (f" at {v} {iv} (WAR {ci(c['war'])[0]}; chance UAR {1 / len(r.labels):.3f})."),
            ]
        )
    sig = [(a, b_, c) for a, b_, c in pairs if c["uar"]["significant"] or c["war"]["significant"]]
    if pairs:
        if sig:
            txt = "; ".join(
                f"{b_} vs {a}: ΔWAR {c['war']['diff']:+.3f}, ΔUAR {c['uar']['diff']:+.3f}" for a, b_, c in sig[:4]
            )
            items.append(f"Significant paired differences (95% bootstrap interval excludes 0): {txt}.")
        else:
            items.append("No paired difference between models is significant at 95%.")
    return items


def _modality_items(p: RunView) -> list:
    drops = (p.modality or {}).get("drops", {})
    if not drops:
        return []
    parts = []
    for m in ("video", "audio"):
        if m in drops:
            d = drops[m]["uar"]
            parts.append(
                f"removing {m} changes UAR by {-d['diff']:+.3f} [{-d['hi']:+.2f}, {-d['lo']:+.2f}]"
                f" ({'significant' if d['significant'] else 'not significant'})"
            )
    items: list = [["For ", b(p.name), ": " + "; ".join(parts) + "."]]
    ov = (p.attribution or {}).get("overall") or {}
    if ov.get("n") and (ov.get("no_reasoning") or 0) < 0.5 and "video" in drops and "audio" in drops:
        items.append(
            f"{p.name}'s reasonings cite face cues in {pct(ov.get('video_any'))} and voice "
            f"cues in {pct(ov.get('audio_any'))} of answers; compare with the drops above — a channel "
            "that is cited but whose removal costs nothing is cited, not used."
        )
    return items


def _informative_items(runs: list[RunView], p: RunView) -> list:
    inf = (p.modality or {}).get("informative")
    if not inf or not inf["combined"]["single"]["n"]:
        return []
    c, ch = inf["combined"]["single"], inf["combined"]["chance"]
    if c["lo"] > 0.5:
        verdict = [
            f"a clear majority (interval above 50%, by {100 * (c['rate'] - 0.5):.0f} points at the point estimate)"
        ]
    elif c["rate"] > 0.5:
        verdict = ["a majority, but not a clear one (the interval reaches 50%)"]
    else:
        verdict = [b("not"), f" a majority ({100 * (0.5 - c['rate']):.0f} points short of 50%)"]
    ref = (inf.get("reference") or {}).get("combined", {}).get("single")
    ref_txt = (
        f" The world's ideal observer, scored by the same rule, reaches {pct(ref['rate'])} "
        f"{ci(ref, True)[1]}, so the rule can recover the informative modality when a model uses "
        "both channels; the gap is the model's."
        if ref and ref.get("rate") is not None
        else ""
    )
    items: list = [
        [
            "Informative modality recovered by ablation for ",
            b(p.name),
            (
                f": {pct(c['rate'])} {ci(c, True)[1]} of the {c['n']} clips informative by one modality alone "
                f"(video-informative {pct(inf['combined']['video']['rate'])}, audio-informative "
                f"{pct(inf['combined']['audio']['rate'])}; chance {pct(ch['chance'])}, permutation "
                f"p = {ch['p_value']:.3g}) — "
            ),
            *verdict,
            f".{ref_txt}",
        ]
    ]
    others = [
        (r.name, r.modality["informative"]["combined"]["single"])
        for r in runs
        if r is not p and r.modality and r.modality.get("informative")
    ]
    if others:
        items.append(
            "Same measure for the other models: "
            + ", ".join(f"{n} {pct(x['rate'])} {ci(x, True)[1]}" for n, x in others)
            + "."
        )
    return items


def _faithfulness_items(p: RunView) -> list:
    f = p.faithfulness or {}
    items: list = []
    mh = f.get("modality_hallucination") or {}
    if mh.get("video", {}).get("rate") is not None:
        items.append(
            f"With audio removed, {pct(mh['video']['rate'])} {ci(mh['video'], True)[1]} of "
            f"{p.name}'s reasonings still describe sounds; with video removed, "
            f"{pct((mh.get('audio') or {}).get('rate'))} describe a face."
        )
    cue = f.get("cue_hallucination") or {}
    if (cue.get("all") or {}).get("rate") is not None:
        items.append(
            f"{pct(cue['all']['rate'])} {ci(cue['all'], True)[1]} of the cue phrases "
            f"{p.name} states are false for the clip (synthetic ground truth)."
        )
    cons = (f.get("consistency") or {}).get("named") or {}
    if cons.get("rate") is not None:
        items.append(
            f"Reasoning–answer consistency (emotion named in the reasoning = answer): {pct(cons['rate'])} "
            f"{ci(cons, True)[1]}, on the {cons['n']} answered reasonings that name an emotion."
        )
    return items


def _cards(runs: list[RunView], p: RunView) -> list[tuple[str, str, str]]:
    cards = []
    best = _best(runs)
    if best:
        cards.append(("best UAR", fmt(best[1]["uar"]["value"]), best[0].name))
    inf = (p.modality or {}).get("informative")
    if inf and inf["combined"]["single"]["n"]:
        cards.append(
            (
                "informative modality recovered",
                pct(inf["combined"]["single"]["rate"]),
                f"{p.name}, {inf['combined']['single']['n']} single-modality clips",
            )
        )
    f = p.faithfulness or {}
    cue = f.get("cue_hallucination") or {}
    if (cue.get("all") or {}).get("rate") is not None:
        cards.append(("false cue phrases", pct(cue["all"]["rate"]), f"{p.name}, synthetic ground truth"))
    mh = f.get("modality_hallucination") or {}
    if mh.get("video", {}).get("rate") is not None:
        cards.append(("sounds described w/o audio", pct(mh["video"]["rate"]), p.name))
    return cards


def summary_section(runs: list[RunView], pairs: Pairs, notes: list[str] | None = None) -> Section:
    """The untitled top section: a summary written from the numbers, key-number cards, notes."""
    p = primary(runs)
    items = _headline_items(runs, pairs) + _modality_items(p) + _informative_items(runs, p) + _faithfulness_items(p)
    blocks: list = [Callout("Summary", items)]
    cards = _cards(runs, p)
    if cards:
        blocks.append(Cards(cards))
    blocks += [Paragraph(n, cls="note") for n in notes or []]
    return Section("", blocks)
