"""The trace filters of `emorl traces generate` (emorl.traces.judge_trace), the class caps and the
resumable progress file, on hand-written completions."""

import json

import pytest

from emorl.data.manifest import Sample, read_manifest
from emorl.eval.attribution import lexicon
from emorl.recipes.rewards import get_recipe
from emorl.traces import Progress, judge_trace, write_outputs

SAD = Sample("c1", "/data/c1.mp4", "sad", "dfew", "train")


def judge(text, *, has_video=True, has_audio=True, seen=None):
    return judge_trace(
        text,
        SAD,
        get_recipe("r1-omni"),
        has_video=has_video,
        has_audio=has_audio,
        lex=lexicon("en"),
        seen=set() if seen is None else seen,
    )


def test_only_label_matching_traces_that_cite_a_present_cue_pass():
    ok = "<think>Her eyes are downcast eyes and she is sobbing.</think><answer>sad</answer>"
    assert judge(ok) == "ok"
    assert judge("<think>The brows are knitted brows.</think><answer>angry</answer>") == "wrong_answer"
    assert judge("sad").startswith("no_answer")
    assert judge("<think>There are tears.</think>\n<answer>sad</answer> extra") == "format"
    assert judge("<think>She is sad.</think><answer>sad</answer>") == "no_cue"  # states the label, cites nothing
    assert judge("<think>She is sobbing.</think><answer>sad</answer>", has_audio=False) == "cites_missing_audio"
    assert judge("<think>There are tears.</think><answer>sad</answer>", has_video=False) == "cites_missing_video"
    assert judge("<think>There are tears.</think><answer>sad</answer>", has_audio=False) == "ok"
    seen: set = set()
    assert judge(ok, seen=seen) == "ok"
    assert judge(ok.replace("Her", "her  "), seen=seen) == "duplicate"  # case and spacing aside
    assert judge(ok.replace("sobbing", "sighing"), seen=seen) == "ok"


def _done(cid, label, kept, sampled=4):
    return {
        "id": cid,
        "label": label,
        "sampled": sampled,
        "accepted": kept,
        "rationalized": 0,
        "rationalized_accepted": 0,
        "rejected": {"wrong_answer": sampled - kept},
        "kept": [
            {"text": f"<think>tears {i}</think><answer>{label}</answer>", "source": "teacher"} for i in range(kept)
        ],
    }


def test_class_caps_take_each_clips_first_trace_first(tmp_path):
    """traces.balance caps every class at the smallest class's count, round-robin over clips (each
    clip's first trace before any second one); human traces are kept and counted."""
    samples = [Sample(f"h{i}", f"/d/h{i}.mp4", "happy", "dfew", "train") for i in range(3)] + [
        Sample("s0", "/d/s0.mp4", "sad", "dfew", "train"),
        Sample("s1", "/d/s1.mp4", "sad", "dfew", "train", meta={"trace": "<think>a sigh</think><answer>sad</answer>"}),
    ]
    done = {
        "h0": _done("h0", "happy", 2),
        "h1": _done("h1", "happy", 2),
        "h2": _done("h2", "happy", 0),
        "s0": _done("s0", "sad", 2),
    }
    out = tmp_path / "t.jsonl"
    r = write_outputs(samples, done, out, tmp_path / "t.stats.json", max_per_class=0, balance=True, teacher="T")
    rows = read_manifest(out)
    by = {lab: [x.id for x in rows if x.label == lab] for lab in ("happy", "sad")}
    # 3 per class (sad: 2 teacher + 1 human); h1's first trace is in and its second is not: round-robin
    assert r["traces"] == 6 and by == {"happy": ["h0#t0", "h0#t1", "h1#t0"], "sad": ["s0#t0", "s0#t1", "s1#t0"]}
    stats = json.loads((tmp_path / "t.stats.json").read_text())
    assert stats["class_cap"] == 3 and stats["per_class"]["happy"]["capped"] == 1
    assert stats["per_class"]["sad"]["kept_human"] == 1 and stats["per_class"]["happy"]["clips_with_trace"] == 2
    assert stats["acceptance"]["happy"] == pytest.approx(4 / 12)
    human = next(x for x in rows if x.id == "s1#t0")
    assert human.meta["trace_source"] == "human" and "teacher" not in human.meta and human.fold is None


def test_progress_resumes_and_refuses_other_settings(tmp_path):
    p = tmp_path / "t.progress.jsonl"
    prog = Progress(p, {"per_clip": 4})
    prog.add([{"id": "a", "kept": []}])
    with p.open("a") as f:
        f.write('{"id": "b", "ke')  # the run stopped mid-line
    again = Progress(p, {"per_clip": 4})
    assert set(again.done) == {"a"}
    again.add([{"id": "b", "kept": []}])
    assert set(Progress(p, {"per_clip": 4}).done) == {"a", "b"}  # the half line did not swallow b
    with pytest.raises(ValueError, match="made with other settings.*per_clip"):
        Progress(p, {"per_clip": 8})
