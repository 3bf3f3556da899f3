"""The report's sections, one function each: run views in, a :class:`~emorl.eval.report.page.Section` out.

Order on the page: summary (:mod:`emorl.eval.report.summary`), metrics with 95 % intervals and paired
comparisons, confusion matrices, modality ablations (bars, drops, reliance heat map, informative
modality agreement), reasoning attribution, faithfulness and hallucination, example clips
(:mod:`emorl.eval.report.examples`), definitions.
"""

from __future__ import annotations

from emorl.eval.faithfulness import CONDITIONS
from emorl.eval.report import figures
from emorl.eval.report.fmt import ci, diff, fmt, pct
from emorl.eval.report.load import Pairs, RunView, primary
from emorl.eval.report.page import Definitions, Figure, FigureGrid, Footer, Paragraph, Section, Table, b, span
from emorl.eval.report.page import code as code_
from emorl.eval.report.page import i as i_

# ----------------------------------------------------------------------------- metrics, confusion


def metrics_section(runs: list[RunView], pairs: Pairs) -> Section:
    extra = sorted({k for r in runs for k in r.extra})
    head = ["model", "n", "WAR", "UAR", "weighted F1", "format"]
    for k in extra:
        head += [f"{k} WAR", f"{k} UAR"]
    best_uar = max((r.metrics["av"]["ci"]["uar"]["value"] for r in runs if "av" in r.metrics), default=None)
    rows = []
    for r in runs:
        m = r.metrics.get("av")
        if not m:
            continue
        w, u = ci(m["ci"]["war"]), ci(m["ci"]["uar"])
        if u[0] != "–" and best_uar is not None and abs(m["ci"]["uar"]["value"] - best_uar) < 1e-12:
            u = (b(u[0]), u[1])
        row = [r.name, str(m["n"]), w, u, fmt(m.get("weighted_f1")), pct(m.get("format_rate"))]
        for k in extra:
            e = r.extra.get(k)
            row += [ci(e["ci"]["war"]) if e else "–", ci(e["ci"]["uar"]) if e else "–"]
        rows.append(row)
    blocks: list = [
        Table(head, rows, kind="metrics"),
        Paragraph("Video+audio input; 95% cluster-bootstrap intervals in brackets; the best UAR in bold.", cls="note"),
    ]
    if pairs:

        def sig(x: bool):
            return span("sig", "yes") if x else span("ns", "no")

        rows = [
            [
                f"{b_} − {a}",
                diff(c["war"]),
                sig(c["war"]["significant"]),
                diff(c["uar"]),
                sig(c["uar"]["significant"]),
                f"{c['mcnemar']['p_value']:.3g}",
            ]
            for a, b_, c in pairs
        ]
        blocks.append(
            Section(
                "Paired comparisons (B − A, same clips)",
                [Table(["B − A", "ΔWAR", "sig.", "ΔUAR", "sig.", "McNemar p"], rows, kind="pairs")],
                level=3,
            )
        )
    return Section("Metrics", blocks, anchor="metrics")


def confusion_section(runs: list[RunView]) -> Section:
    figs = [
        Figure(
            figures.fig_confusion(r.metrics["av"], r.name),
            f"confusion {r.name}",
            "confusion",
            caption=f"{r.name} · video+audio",
        )
        for r in runs
        if "av" in r.metrics
    ]
    return Section("Confusion matrices", [FigureGrid(figs)], anchor="confusion")


# ----------------------------------------------------------------------------- modality


def _informative_section(inf_runs: list[RunView]) -> Section:
    def row(name, inf) -> list:
        return [
            name,
            *[ci(inf[d]["single"], True) for d in ("combined", "evidence", "decision")],
            ci(inf["combined"]["video"], True),
            ci(inf["combined"]["audio"], True),
            pct(inf["combined"]["chance"]["chance"]),
            f"{inf['combined']['chance']['p_value']:.3g}",
        ]

    rows = [row(r.name, r.modality["informative"]) for r in inf_runs]
    p = primary(inf_runs)
    ref = p.modality["informative"].get("reference")
    if ref:
        rows.append(row([i_("ideal observer")], ref))
    blocks: list = [
        Table(
            [
                "model",
                "combined",
                "evidence",
                "decision",
                "video-informative",
                "audio-informative",
                "chance",
                "perm. p",
            ],
            rows,
            kind="informative",
            cls="stack",
        ),
        Paragraph(
            [
                (
                    "Share of clips informative by one modality alone whose modality the ablations recover "
                    "(definitions below). "
                ),
                i_("Ideal observer"),
                (
                    ": the Bayes decision of the world's generative "
                    "model from the true cue values, scored by the same rules — what a model using both channels "
                    "well could reach."
                ),
            ],
            cls="note",
        ),
    ]
    acc = p.modality["informative"]["accuracy_by_truth"]
    racc = (ref or {}).get("accuracy_by_truth")
    conds = ("av", "video", "audio")
    rows = [
        [t] + [ci(acc[t][c], True) for c in conds] + ([pct(racc[t][c]["rate"]) for c in conds] if racc else [])
        for t in ("both", "video", "audio")
    ]
    blocks += [
        Paragraph(
            [
                "Accuracy of ",
                b(p.name),
                " by the generator's informative modality and input condition"
                + (" (right: the ideal observer)" if racc else "")
                + ":",
            ]
        ),
        Table(
            ["informative", "video+audio", "video only", "audio only"]
            + (["ideal: av", "ideal: video", "ideal: audio"] if racc else []),
            rows,
            kind="accuracy_by_truth",
        ),
    ]
    return Section("Does the ablation recover the informative modality? (synthetic world)", blocks, level=3)


def modality_section(runs: list[RunView]) -> Section:
    analysed = [r for r in runs if r.kind == "analysis" and r.modality]
    if not analysed:
        return Section(
            "Modality ablations",
            [
                Paragraph(
                    [
                        "Not analysed: none of these run dirs holds ablation results (run ",
                        code_("emorl analyze modality"),
                        ").",
                    ]
                )
            ],
            anchor="modality",
        )
    rows = []
    for r in analysed:
        row: list = [r.name] + [ci((r.modality["conditions"].get(c) or {}).get("uar")) for c in CONDITIONS]
        for m in ("video", "audio", "both"):
            d = r.modality.get("drops", {}).get(m)
            if d:
                v, iv = diff(d["uar"])
                row.append((f"{v}{'*' if d['uar']['significant'] else ''}", iv))
            else:
                row.append("–")
        rows.append(row)
    blocks: list = [
        Figure(figures.fig_modality_bars(analysed), "WAR and UAR by input condition", "modality"),
        Table(
            ["model", "UAR av", "UAR video", "UAR audio", "UAR none", "drop −video", "drop −audio", "drop −both"],
            rows,
            kind="modality",
            cls="stack",
        ),
        Paragraph(
            "Drop = UAR(video+audio) − UAR(without the modality); * = significant (paired bootstrap).", cls="note"
        ),
    ]
    rel_runs = [r for r in analysed if r.modality.get("reliance")]
    if rel_runs:
        blocks.append(
            Section(
                "Reliance per class", [Figure(figures.fig_reliance(rel_runs), "reliance heat map", "reliance")], level=3
            )
        )
    inf_runs = [r for r in analysed if r.modality.get("informative")]
    if inf_runs:
        blocks.append(_informative_section(inf_runs))
    return Section("Modality ablations", blocks, anchor="modality")


# ----------------------------------------------------------------------------- reasoning


def attribution_section(runs: list[RunView]) -> Section:
    blocks: list = [Figure(figures.fig_attribution(runs), "reasoning attribution", "attribution")]
    p = primary(runs)
    pc = (p.attribution or {}).get("per_class", {})
    if pc:
        rows = [
            [
                c,
                str(x["n"]),
                pct(x.get("video")),
                pct(x.get("audio")),
                pct(x.get("both")),
                pct(x.get("none")),
                fmt(x.get("video_cues_per_reasoning"), 2),
                fmt(x.get("audio_cues_per_reasoning"), 2),
            ]
            for c, x in pc.items()
            if x["n"]
        ]
        blocks += [
            Paragraph(["Per class, ", b(p.name), " (video+audio input):"]),
            Table(
                ["class", "n", "video", "audio", "both", "none", "face cues / reasoning", "voice cues / reasoning"],
                rows,
                kind="attribution_per_class",
            ),
        ]
    civ = [(r, x) for r in runs if (x := (r.attribution or {}).get("cites_vs_informative"))]
    if civ:
        rows = [
            [r.name, ci(x["single"], True), ci(x["video"], True), ci(x["audio"], True), ci(x["both"], True)]
            for r, x in civ
        ]
        blocks += [
            Paragraph("Does the reasoning cite exactly the informative modality? (synthetic world)"),
            Table(
                ["model", "single-modality clips", "video-informative", "audio-informative", "both → cites both"],
                rows,
                kind="cites_informative",
            ),
        ]
    return Section("Which modality does the reasoning cite?", blocks, anchor="attribution")


def faithfulness_section(runs: list[RunView]) -> Section:
    rows = []
    for r in runs:
        f = r.faithfulness or {}
        cons = f.get("consistency") or {}
        mh = f.get("modality_hallucination") or {}
        cue = f.get("cue_hallucination") or {}
        rows.append(
            [
                r.name,
                ci(cons.get("named"), True),
                ci(cons.get("cues"), True),
                ci(f.get("reference_cues"), True),
                ci(mh.get("video"), True),
                ci(mh.get("audio"), True),
                ci(mh.get("text"), True),
                ci(cue.get("video"), True),
                ci(cue.get("audio"), True),
            ]
        )
    blocks: list = [
        Table(
            [
                "model",
                "consistency (named)",
                "consistency (cues)",
                "cue ceiling",
                "sounds w/o audio",
                "face w/o video",
                "any w/o both",
                "false face cues",
                "false voice cues",
            ],
            rows,
            kind="faithfulness",
            cls="stack",
        ),
        Paragraph(
            "Consistency: share of answered reasonings whose implied emotion equals the answer (named emotion "
            "word; or the emotion favoured by the cited cues — the generator's own traces reach the 'cue "
            "ceiling'). Hallucination rates: see Definitions. '–' = nothing to measure (e.g. no reasoning "
            "stated).",
            cls="note",
        ),
        Figure(figures.fig_hallucination(runs), "hallucination rates", "hallucination"),
    ]
    p = primary(runs)
    tops = (p.faithfulness or {}).get("cue_hallucination") or {}
    top = [(m, ph, k) for m in ("video", "audio") for ph, k in (tops.get(m) or {}).get("top_phrases", [])]
    if top:
        blocks.append(
            Paragraph(
                [
                    "Most frequent false cue phrases of ",
                    b(p.name),
                    ": " + ", ".join(f"“{ph}” ({m}, {k}×)" for m, ph, k in top[:8]) + ".",
                ]
            )
        )
    return Section("Faithfulness and hallucination", blocks, anchor="faithfulness")


# ----------------------------------------------------------------------------- definitions

DEFS = [
    (
        "WAR / UAR",
        (
            "Weighted average recall (accuracy) and unweighted average recall (mean of per-class recall). "
            "A sample without a parsable single emotion counts as wrong. Intervals: 95% percentile bootstrap, "
            "resampling clusters (meta.video / speaker / actor, else each sample)."
        ),
    ),
    (
        "Paired comparison",
        (
            "Model B minus model A on the same samples, the same cluster draws for both; significant "
            "when the 95% interval of the difference excludes 0. McNemar's exact test on discordant "
            "pairs is given for WAR."
        ),
    ),
    ("Drop", "Metric with video+audio minus metric with one modality removed (paired bootstrap interval)."),
    (
        "Reliance",
        (
            "Per class and modality: of the clips answered correctly with video+audio, the share answered "
            "wrongly once that modality is removed."
        ),
    ),
    (
        "Inferred informative modality",
        (
            "Per clip, from the ablations. Evidence: correct with video only and wrong "
            "with audio only gives video (and mirrored). Decision: the single modality "
            "whose answer equals the video+audio answer. Combined (headline): evidence "
            "when it singles one out, else decision. Agreement is measured on clips where "
            "the generator made exactly one modality informative; chance = agreement "
            "with the truth shuffled among those clips."
        ),
    ),
    (
        "Attribution",
        (
            "A reasoning cites a modality when it states one of that modality's cue phrases (lexicon: "
            "English cue wording plus the synthetic world's cue lexicon)."
        ),
    ),
    (
        "Consistency",
        (
            "Named: the last emotion word in the reasoning equals the answer. Cues: the emotion the cited "
            "cue phrases favour (lexicon cue-to-emotion evidence) equals the answer; the generator's own "
            "traces give the ceiling."
        ),
    ),
    (
        "Modality hallucination",
        (
            "Share of non-empty reasonings that make a claim (cue or flat phrase) about a "
            "modality that was removed from the input."
        ),
    ),
    (
        "Cue hallucination",
        (
            "Synthetic world only: share of stated cue phrases that are not true for the clip "
            "(describe_cues), clustered by clip."
        ),
    ),
]


def definitions_section(runs: list[RunView]) -> Section:
    """The definitions and a footer naming the run dirs."""
    srcs = ", ".join(str(r.path) for r in runs)
    return Section(
        "Definitions",
        [Definitions(DEFS), Footer(f"Run dirs: {srcs}. Made by emorl.eval.report; see docs/analysis.md.")],
        anchor="definitions",
    )
