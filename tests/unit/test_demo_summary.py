"""The demo's summary states its uncertainty: each UAR with its interval over the evaluation clips,
the paired differences GRPO − cold start and GRPO − label SFT with theirs, and that one run is one
draw of the training (emorl.demo.render_report, emorl.eval.report.demo.demo_intervals)."""

import json

import numpy as np

from emorl.data.manifest import Sample, write_manifest
from emorl.demo import format_table, render_report
from emorl.eval.report.demo import demo_intervals

LABELS = ["angry", "happy", "sad"]


def _write_demo(tmp_path, accuracy: dict[str, float], n: int = 90) -> dict:
    """A demo folder with data/{test,ood}.jsonl and eval/NAME/SPLIT/{predictions.jsonl,metrics.json};
    model NAME answers the first ``accuracy[NAME] * n`` clips right (the rest: the next label)."""
    results = {}
    for split in ("test", "ood"):
        samples = [Sample(f"{split}{i}", f"clips/{i}.mp4", LABELS[i % 3], "synthetic", split) for i in range(n)]
        write_manifest(tmp_path / "data" / f"{split}.jsonl", samples)
        for name, acc in accuracy.items():
            k = round(acc * n)
            rows = [
                {"id": s.id, "label": s.label, "pred": s.label if i < k else LABELS[(LABELS.index(s.label) + 1) % 3]}
                for i, s in enumerate(samples)
            ]
            d = tmp_path / "eval" / name / split
            d.mkdir(parents=True)
            (d / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            (d / "metrics.json").write_text(json.dumps({"labels": LABELS, "war": k / n, "uar": k / n}))
            results.setdefault(name, {})[split] = {"war": k / n, "uar": k / n, "format_rate": 1.0, "n": n}
    return results


def test_intervals_and_paired_differences(tmp_path):
    results = _write_demo(tmp_path, {"coldstart_sft": 1 / 3, "label_sft": 0.5, "grpo": 2 / 3})
    iv = demo_intervals(tmp_path, n_boot=500)
    assert set(iv["models"]) == {"coldstart_sft", "label_sft", "grpo"}  # base has no predictions here
    for name, by in iv["models"].items():
        for split in ("test", "ood"):
            c = by[split]["uar"]
            assert np.isclose(c["value"], results[name][split]["uar"])
            assert c["lo"] < c["value"] < c["hi"]
    d = iv["diffs"]["grpo - coldstart_sft"]["test"]["uar"]
    # grpo is right on every clip the cold start is right on, and on 30 more of 90
    assert np.isclose(d["diff"], 1 / 3) and d["lo"] > 0 and d["significant"]
    assert set(iv["diffs"]) == {"grpo - coldstart_sft", "grpo - label_sft"}


def test_summary_reports_intervals_and_one_draw(tmp_path):
    results = _write_demo(tmp_path, {"coldstart_sft": 0.5, "label_sft": 0.5, "grpo": 0.5})
    iv = demo_intervals(tmp_path, n_boot=500)
    text = render_report(results, {"total": 1.0}, tmp_path, quick=True, intervals=iv)
    c = iv["models"]["grpo"]["test"]["uar"]
    assert f"0.500 [{c['lo']:.2f}, {c['hi']:.2f}]" in text  # the table's UAR with its interval
    assert "| grpo − coldstart_sft | +0.000 [" in text and "| grpo − label_sft |" in text
    assert "not distinguishable" in text  # equal models: the interval contains 0, and the text says so
    assert "one draw" in text and "docs/results.md" in text
    assert "smoke test" in text and "label SFT stays ahead" not in text  # quick sizes claim nothing
    full = render_report(results, {"total": 1.0}, tmp_path, quick=False, intervals=iv)
    # the default demo says which half of R1-Omni's claim the repeated runs show, and which they do not
    assert "## Against the paper" in full and "the first half and not the second" in full
    assert "label SFT stays ahead of GRPO in distribution" in full
    other = render_report(results, {"total": 1.0}, tmp_path, quick=False, family="parts", intervals=iv)
    assert "measured once" in other and "the first half" not in other  # the grid is of the default family
    # without intervals the table is the plain one (older callers)
    assert "[" not in format_table(results)
