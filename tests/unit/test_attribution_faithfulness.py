"""Reasoning attribution, consistency, hallucination and the informative-modality inference,
on hand-made rows and on the synthetic world's own traces (no model, no media)."""

from __future__ import annotations

import numpy as np
import pytest

from emorl.data.manifest import Sample
from emorl.data.synthetic.traces import describe_cues, make_trace
from emorl.data.synthetic.world import CLASSES, split_specs
from emorl.eval.attribution import (
    AdapterJudge,
    CueLexicon,
    attribute,
    attribute_rows,
    cue_emotion,
    find_cues,
    lexicon,
    named_emotion,
    register_lexicon,
    summarize_attribution,
    synthetic_cue_emotion,
)
from emorl.eval.faithfulness import (
    analyze_reasoning,
    consistency,
    cue_hallucination,
    modality_hallucination,
    reference_cue_consistency,
)
from emorl.eval.modality import ideal_observer, infer_informative, informative_agreement
from emorl.models.adapter import Completions

SPECS = split_specs(7, "test", 70)
META = {s.id: s.meta() for s in SPECS}


def _row(i, label, completion, pred=None, modality="video+audio"):
    return {
        "id": i,
        "label": label,
        "pred": pred,
        "completion": completion,
        "modality": modality,
        "correct": pred == label,
        "format_ok": True,
    }


def _think(text, answer="happy"):
    return f"<think>{text}</think><answer>{answer}</answer>"


def test_matching_longest_first_case_and_word_boundaries():
    lex = lexicon()
    ms = find_cues("I hear A Shaky Voice and see knitted   brows; the voiceover is eclipsed.", lex)
    assert [(m.phrase, m.modality, m.kind) for m in ms] == [
        ("hear", "audio", "generic"),
        ("a shaky voice", "audio", "cue"),
        ("knitted brows", "video", "cue"),
    ]
    a = attribute("The face gives nothing away, but the voice is a harsh voice.", lex)
    assert a["cites"] == "audio" and a["mentions"] == "both"
    assert a["audio"]["cue"] == ["a harsh voice"] and a["video"]["generic"] == ["face"]
    assert attribute("A blank face. I hear a plain voice.", lex)["cites"] == "none"  # flat claims cite nothing
    assert attribute("", lex) == {
        "cites": "none",
        "mentions": "none",
        "video": {"cue": [], "flat": [], "generic": []},
        "audio": {"cue": [], "flat": [], "generic": []},
    }
    # English wording, not in the synthetic world's lexicon
    assert attribute("She is smiling and laughing.", lexicon("en"))["cites"] == "both"


def test_extensible_lexicon_other_language():
    de = CueLexicon(
        "de-test",
        "de",
        {"video": ["lächeln", "hochgezogene Augenbrauen"], "audio": ["zitternde Stimme"]},
        generic={"video": ["Gesicht"], "audio": ["Stimme"]},
        cue_emotion={"lächeln": {"happy": 1.0}},
    )
    register_lexicon(de, replace=True)
    lex = lexicon("de-test")
    a = attribute("Das Gesicht zeigt ein Lächeln, die zitternde Stimme auch.", lex)
    assert a["cites"] == "both" and a["audio"]["cue"] == ["zitternde stimme"] and a["video"]["generic"] == ["gesicht"]
    assert cue_emotion("ein Lächeln", lex) == ("happy", {"happy": 1.0})
    merged = lexicon("en", "de-test")
    assert attribute("a smile and a zitternde Stimme", merged)["cites"] == "both"
    with pytest.raises(ValueError):
        CueLexicon("bad", "en", {"smell": ["x"]})
    with pytest.raises(KeyError):
        lexicon("nope")


def test_named_and_cue_emotion():
    assert named_emotion("Not angry at first; overall this reads as sadness.") == "sad"
    assert named_emotion("happy or calm", labels=("happy", "sad")) == "happy"
    assert named_emotion("no emotion words") is None
    syn = lexicon("synthetic")
    emo, scores = cue_emotion("a smile and a rise-fall melody", syn)
    assert emo == "happy" and scores["happy"] > scores["sad"]
    assert cue_emotion("a wrinkled nose and a harsh voice", syn)[0] == "disgust"
    assert cue_emotion("nothing here", syn) == (None, {})
    m = synthetic_cue_emotion()
    assert m["knitted brows"]["angry"] > 0 > m["knitted brows"]["happy"]


def test_traces_of_the_generator_are_truthful_and_cite_the_informative_modality():
    rng = np.random.default_rng(0)
    rows = [_row(s.id, s.label, make_trace(META[s.id], s.label, rng), s.label) for s in SPECS]
    ch = cue_hallucination(rows, META)
    assert ch["rows_with_claims"] == len(rows)
    assert ch["all"]["k"] == 0 and ch["all"]["n"] > 3 * len(rows)  # every stated phrase is true
    attr = attribute_rows(rows, lexicon())
    for a, s in zip(attr, SPECS):
        if s.informative != "both":  # never cites the flat (uninformative) modality
            assert a["cites"] in (s.informative, "none"), (a, s.informative)
    summ = summarize_attribution(attr, CLASSES)
    assert (
        summ["overall"]["n"] == len(rows) and sum(summ["overall"][c] for c in ("video", "audio", "both", "none")) == 1
    )
    cons = consistency(rows, CLASSES)
    assert cons["named"]["rate"] == 1.0 and cons["named"]["coverage"] == 1.0
    assert cons["cues"]["rate"] > 0.7  # cues overlap between classes: not 1
    ref = reference_cue_consistency(
        [Sample(s.id, "x.mp4", s.label, "synthetic", "test", meta=META[s.id]) for s in SPECS], CLASSES
    )
    assert 0.7 < ref["rate"] <= 1.0


def test_cue_hallucination_flags_false_phrases():
    s = SPECS[0]
    true = describe_cues(META[s.id])
    syn = lexicon("synthetic")
    false_audio = next(p for p in syn.cues["audio"] if p.lower() not in {t.lower() for t in true["audio"]})
    true_video = next(p for p in true["video"] if p in syn.cues["video"] + syn.flat["video"])
    rows = [_row(s.id, s.label, _think(f"I see {true_video}. I hear {false_audio}."), s.label)]
    ch = cue_hallucination(rows, META)
    assert ch["video"]["k"] == 0 and ch["video"]["n"] == 1
    assert ch["audio"]["k"] == 1 and ch["audio"]["n"] == 1 and ch["audio"]["top_phrases"] == [(false_audio.lower(), 1)]
    assert ch["reasonings_with_hallucination"]["rate"] == 1.0
    assert cue_hallucination(rows, {}) is None


def test_modality_hallucination_counts_claims_about_removed_input():
    rows = {
        "av": [_row("a", "happy", _think("a smile and a shaky voice"))],
        "video": [
            _row("a", "happy", _think("I see a smile and hear a shaky voice"), modality="video"),
            _row("b", "sad", _think("I see a downturned mouth; the voice tells nothing"), modality="video"),
            _row("c", "sad", "no reasoning at all", modality="video"),
        ],
        "audio": [
            _row("a", "happy", _think("a plain voice and a blank face"), modality="audio"),
            _row("b", "sad", _think("slow speech"), modality="audio"),
        ],
        "text": [
            _row("a", "happy", _think("I cannot perceive anything"), modality="text"),
            _row("b", "sad", _think("tears in the eyes"), modality="text"),
        ],
    }
    mh = modality_hallucination(rows)
    assert "av" not in mh
    # video only: 'a shaky voice' is a claim about sound; 'the voice' alone is only a mention; row c has no reasoning
    assert (mh["video"]["k"], mh["video"]["n"]) == (1, 2) and mh["video"]["top_phrases"] == [("a shaky voice", 1)]
    assert (mh["audio"]["k"], mh["audio"]["n"]) == (1, 2)  # 'a blank face' (a flat claim still describes the face)
    assert (mh["text"]["k"], mh["text"]["n"]) == (1, 2) and mh["text"]["removed"] == ["video", "audio"]


def test_consistency_hand_counts():
    rows = [
        _row("1", "happy", _think("a smile; this is joy", "happy"), "happy"),
        _row("2", "sad", _think("a smile; this is happiness", "sad"), "sad"),  # named happy, answered sad
        _row("3", "sad", _think("a drooping mouth and slow speech", "sad"), "sad"),  # cues only
        _row("4", "sad", _think("whatever", "sad"), None),
    ]  # unanswered: not counted
    c = consistency(rows, CLASSES, lex=lexicon())
    assert c["answered"] == 3 and c["n_rows"] == 4
    assert (c["named"]["k"], c["named"]["n"]) == (1, 2) and c["named"]["coverage"] == pytest.approx(2 / 3)
    assert (c["cues"]["k"], c["cues"]["n"]) == (2, 3)  # rows 1 and 3 support the answer; row 2's smile does not


class _FakeAdapter:
    def __init__(self, answers):
        self.answers = list(answers)
        self.asked = []

    def encode_text(self, text, *, key=""):
        self.asked.append(text)
        return text

    def sample_groups(self, prompts, group_size, params):
        assert group_size == 1 and params.greedy
        out = [[self.answers.pop(0)] for _ in prompts]
        return Completions([[None] for _ in prompts], out, [[False] for _ in prompts])


def test_adapter_judge_through_the_adapter_interface():
    fake = _FakeAdapter(["Video.", "both of them", "I don't know", "Audio"])
    j = AdapterJudge(fake, batch_size=3)
    assert j.cites(["a", "b", "c", "d"]) == ["video", "both", None, "audio"]
    assert "Which channel" in fake.asked[0] and '"a"' in fake.asked[0]
    fake2 = _FakeAdapter(["Sadness.", "maybe anger", "calm"])
    assert AdapterJudge(fake2).emotion(["x", "y", "z"], ("happy", "sad", "angry")) == ["sad", "angry", None]
    rows = [
        _row("1", "happy", _think("a smile", "happy"), "happy"),
        _row("2", "sad", _think("slow speech", "sad"), "sad"),
    ]
    attr = attribute_rows(rows, lexicon(), judge=AdapterJudge(_FakeAdapter(["video", "video"])))
    s = summarize_attribution(attr, ("happy", "sad"))
    assert s["overall"]["judge_agreement"] == 0.5
    c = consistency(rows, ("happy", "sad"), judge=AdapterJudge(_FakeAdapter(["happy", "happy"])))
    assert (c["judge"]["k"], c["judge"]["n"]) == (1, 2)


def test_infer_informative_truth_table():
    f = infer_informative
    assert f(True, False, "sad", "sad", "happy") == {"evidence": "video", "decision": "video", "combined": "video"}
    assert f(False, True, "sad", "happy", "sad")["combined"] == "audio"
    # wrong everywhere, but the video-only answer reproduces the full answer: decision says video
    assert f(False, False, "fear", "fear", "neutral") == {"evidence": "none", "decision": "video", "combined": "video"}
    # right with either: evidence 'both' unless the decision singles one out
    assert f(True, True, "sad", "sad", "sad")["combined"] == "both"
    assert f(False, False, None, "x", "y")["combined"] == "none"


def test_informative_agreement_on_hand_made_rows():
    samples = [
        Sample(f"c{i}", "x.mp4", "happy", "synthetic", "test", meta={"informative": inf})
        for i, inf in enumerate(["video"] * 4 + ["audio"] * 4 + ["both"] * 2)
    ]

    def r(i, pred):
        return {"id": f"c{i}", "label": "happy", "pred": pred, "correct": pred == "happy"}

    rows = {"av": {}, "video": {}, "audio": {}}
    for i in range(10):
        rows["av"][f"c{i}"] = r(i, "happy")
    for i in range(4):  # video-informative: 3 recovered, 1 wrong everywhere with no clear decision
        ok = i < 3
        rows["video"][f"c{i}"] = r(i, "happy" if ok else "sad")
        rows["audio"][f"c{i}"] = r(i, "sad" if ok else "fear")
    for i in range(4, 8):  # audio-informative: 2 recovered, 2 inverted
        ok = i < 6
        rows["video"][f"c{i}"] = r(i, "sad" if ok else "happy")
        rows["audio"][f"c{i}"] = r(i, "happy" if ok else "sad")
    for i in range(8, 10):
        rows["video"][f"c{i}"] = r(i, "happy")
        rows["audio"][f"c{i}"] = r(i, "happy")
    inf = informative_agreement(samples, rows, n_perm=200)
    assert inf["n_clips"] == 10 and inf["n_single"] == 8
    assert (inf["combined"]["single"]["k"], inf["combined"]["single"]["n"]) == (5, 8)
    assert inf["combined"]["video"]["k"] == 3 and inf["combined"]["audio"]["k"] == 2
    assert inf["combined"]["table"]["video"] == {"video": 3, "none": 1}
    assert inf["combined"]["both_as_both"]["rate"] == 1.0
    assert inf["combined"]["decisive"]["n"] == 7
    assert inf["accuracy_by_truth"]["video"]["video"]["k"] == 3
    assert informative_agreement(samples, {"av": rows["av"]}) is None


def test_analyze_reasoning_writes_files(tmp_path):
    rng = np.random.default_rng(1)
    samples = [Sample(s.id, "x.mp4", s.label, "synthetic", "test", meta=META[s.id]) for s in SPECS[:20]]
    av = [_row(s.id, s.label, make_trace(s.meta, s.label, rng), s.label) for s in samples]
    vid = [dict(r, modality="video") for r in av]
    res = analyze_reasoning({"av": av, "video": vid}, samples, CLASSES, out_dir=tmp_path)
    assert (tmp_path / "attribution.json").is_file() and (tmp_path / "faithfulness.json").is_file()
    f = res["faithfulness"]
    assert f["cue_hallucination"]["all"]["k"] == 0
    # the traces always describe both channels, so with audio removed nearly all 'describe sounds'
    assert f["modality_hallucination"]["video"]["rate"] > 0.9
    assert res["attribution"]["cites_vs_informative"]["single"]["n"] == sum(
        s.meta["informative"] != "both" for s in samples
    )


def test_ideal_observer_recovers_the_informative_modality():
    """The world's Bayes observer matches the accuracies the generator documents (about 0.84 on
    'both' clips, 0.73 from the face, 0.6 from the voice) and, scored by the same ablation rule
    as a model, recovers the informative modality on a clear majority of single-modality clips."""
    specs = split_specs(11, "test", 280)
    samples = [Sample(s.id, "x.mp4", s.label, "synthetic", "test", meta=s.meta()) for s in specs]
    ideal = {s.id: ideal_observer(s.meta) for s in samples}

    def acc(group, cond):
        g = [s for s in samples if s.meta["informative"] == group]
        return sum(ideal[s.id][cond] == s.label for s in g) / len(g)

    assert acc("both", "av") > 0.75 and acc("video", "video") > 0.6 and acc("audio", "audio") > 0.5
    assert acc("video", "audio") < 0.3 and acc("audio", "video") < 0.3  # the flat channel is near chance
    rows = {c: {i: {"pred": p[c]} for i, p in ideal.items()} for c in ("av", "video", "audio")}
    inf = informative_agreement(samples, rows, n_perm=200, reference=False)
    assert inf["combined"]["single"]["lo"] > 0.5 and inf["combined"]["chance"]["p_value"] < 0.01
    assert "reference" not in inf
