"""The example-clips section: one clip per class with its frames, every model's answer and the
primary model's reasoning with cue phrases marked (false ones struck through on the synthetic world)."""

from __future__ import annotations

from emorl.data.manifest import Sample
from emorl.eval.report.figures import frame_strip
from emorl.eval.report.load import RunView, primary
from emorl.eval.report.page import Answer, Example, Figure, Paragraph, Section, Text, b, i, mark, span


def highlight(text: str, meta: dict | None) -> list:
    """Reasoning as rich text with cue phrases marked: ``v`` (video) / ``a`` (audio), ``g`` when only
    a channel is named, ``x`` when the cue is false for the clip (synthetic ground truth in
    ``meta.cues``)."""
    from emorl.eval.attribution import find_cues, lexicon

    true: dict[str, set[str]] = {}
    syn_phrases: set[str] = set()
    if meta and "cues" in meta:
        from emorl.data.synthetic.traces import describe_cues

        true = {m: {p.lower() for p in ps} for m, ps in describe_cues(meta).items()}
        syn_phrases = set(lexicon("synthetic").phrases())
    out: list = []
    pos = 0
    for m in find_cues(text, lexicon()):
        if m.start > pos:
            out.append(text[pos : m.start])
        cls = ("v" if m.modality == "video" else "a") if m.claim else "g"
        title = f"{m.modality} {m.kind}"
        if true and m.claim and m.phrase in syn_phrases and m.phrase not in true[m.modality]:
            cls, title = "x", f"{m.modality}: not true for this clip"
        out.append(mark(cls, title, text[m.start : m.end]))
        pos = m.end
    if pos < len(text):
        out.append(text[pos:])
    return out


def legend(primary_name: str) -> Text:
    return span(
        "legend",
        "Cue phrases: ",
        mark("v", "", "about the face"),
        " ",
        mark("a", "", "about the voice"),
        " ",
        mark("x", "", "stated but false for this clip"),
        "; ",
        mark("g", "", "channel named"),
        ". One clip per class, preferring one the primary model "
        f"({primary_name}) answers correctly with a parsable reasoning.",
    )


def _example(r: dict, c: str, p: RunView, by_model: dict[str, dict], samples: dict[str, Sample]) -> Example:
    from emorl.recipes.parse import parse_completion

    s = samples.get(r["id"])
    meta = s.meta if s else {}
    reasoning = parse_completion(r.get("completion", ""), p.style).reasoning or r.get("completion", "")
    facts: list[tuple[str, Text]] = [("true", b(c))]
    if meta.get("informative"):
        facts.append(("informative", meta["informative"]))
    answers = [
        Answer(name, byid[r["id"]]["pred"] or "no answer", bool(byid[r["id"]]["correct"]))
        for name, byid in by_model.items()
        if r["id"] in byid
    ]
    strip = frame_strip(s.media) if s else None
    fig = Figure(strip, f"frames of {r['id']}", "frames", mime="image/jpeg", cls="strip") if strip else None
    return Example(
        r["id"],
        facts,
        answers,
        fig,
        highlight(reasoning, meta) if reasoning else i("(no reasoning)"),
        f"answer: {r.get('answer') or '–'}",
    )


def examples_section(runs: list[RunView], samples: dict[str, Sample], per_class: int = 1) -> Section:
    """Up to ``per_class`` clips per class of the primary model, preferring correct answers with a
    parsable reasoning (then by id); empty when the primary model has no predictions."""
    sec = Section("Example clips", anchor="examples")
    p = primary(runs)
    rows = p.rows.get("av", [])
    if not rows:
        return sec
    by_model = {r.name: {x["id"]: x for x in r.rows.get("av", [])} for r in runs}
    sec.blocks.append(Paragraph(legend(p.name), md="Cue phrases are marked in the HTML version."))
    for c in p.labels:
        cand = sorted(
            (r for r in rows if r["label"] == c), key=lambda r: (not r["correct"], not r.get("format_ok"), r["id"])
        )
        sec.blocks += [_example(r, c, p, by_model, samples) for r in cand[:per_class]]
    return sec
