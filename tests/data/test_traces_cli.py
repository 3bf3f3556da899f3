"""`emorl traces generate` on a fake MAFW tree with the tiny model as the teacher: the tiny model
samples every completion (so generation, batching, the rationalization prompts and the resumable
progress file all run), and a scripted stand-in then replaces its random text with known answers,
so that what is kept can be checked: only label-matching traces that cite a cue of a modality the
clip has, rationalized ones marked, the statistics written, and `emorl sft` trains on the output."""

import json
from pathlib import Path

import pytest
from corpora_fixtures import MAFW_SILENT, build_mafw, distinct_media

from emorl.cli import main
from emorl.data.manifest import read_manifest
from emorl.eval.attribution import attribute, lexicon
from emorl.recipes.rewards import get_recipe

pytestmark = pytest.mark.e2e

TINY = [
    "data.sampling=fixed",
    "data.frame_size=56",
    "data.num_frames=4",
    "data.on_missing_audio=silence",
    "sampling.max_new_tokens=6",
    "traces.clips_per_batch=4",
]
AV = "<think>I see knitted brows and hear a loud voice.</think><answer>{lab}</answer>"  # cites video and audio
VIDEO = "<think>There are tears in the eyes.</think><answer>{lab}</answer>"  # cites video only
NO_CUE = "<think>The person feels {lab}.</think><answer>{lab}</answer>"
WRONG = "<think>A smile, take {j}.</think><answer>{wrong}</answer>"


def clip_no(sample) -> int:
    return int(Path(sample.media).stem)


def answers_right(n: int) -> bool:
    """Clips whose own samples hold a right answer (even ones and the silent one); the others'
    are all wrong, so they are rationalized."""
    return n % 2 == 0 or n == MAFW_SILENT


def scripted(rows, real, calls):
    """The teacher's sampler: the tiny model samples (``real``), then each prompt's k texts are
    replaced: [AV, AV again, no cue, wrong] or 4 wrong ones; rationalization prompts get
    [VIDEO, AV, wrong, no cue]."""
    by_id = {s.id: s for s in rows}

    def sample(adapter, prompts, k, params):
        texts = real(adapter, prompts, k, params)
        assert len(texts) == len(prompts) and all(len(t) == k == 4 for t in texts)
        calls.append([p.key for p in prompts])
        out = []
        for p in prompts:
            s = by_id[p.key.split("|")[0]]
            lab, wrong = s.label, "neutral" if s.label != "neutral" else "happy"
            if p.key.endswith("|rationalize"):
                out.append(
                    [VIDEO.format(lab=lab), AV.format(lab=lab), WRONG.format(j=0, wrong=wrong), NO_CUE.format(lab=lab)]
                )
            elif answers_right(clip_no(s)):
                out.append(
                    [AV.format(lab=lab), AV.format(lab=lab), NO_CUE.format(lab=lab), WRONG.format(j=0, wrong=wrong)]
                )
            else:
                out.append([WRONG.format(j=j, wrong=wrong) for j in range(4)])
        return out

    return sample


@pytest.fixture(scope="module")
def mafw(tmp_path_factory, bank):
    d = tmp_path_factory.mktemp("traces")
    root = build_mafw(d / "MAFW", bank)
    distinct_media(root)
    m = d / "manifests" / "mafw.jsonl"
    assert main(["data", "prepare", "mafw", "--root", str(root), "--out", str(m)]) == 0
    return m


def test_traces_keep_only_label_matching_cited_traces(mafw, tiny_model_dir, tmp_path, monkeypatch, capsys):
    from emorl import traces

    rows = read_manifest(mafw)
    clips = {clip_no(s) for s in rows}
    calls: list = []
    monkeypatch.setattr(traces, "sample_traces", scripted(rows, traces.sample_traces, calls))
    out = tmp_path / "traces" / "mafw.jsonl"
    args = ["traces", "generate", "--teacher", str(tiny_model_dir), "--manifest", str(mafw), "--out", str(out), *TINY]
    assert main(args) == 0
    assert "grpo" not in capsys.readouterr().err  # nothing unused was set
    got = read_manifest(out)
    recipe, lex = get_recipe("r1-omni"), lexicon("en")
    # only traces whose answer is the clip's label, each citing a cue
    for r in got:
        parsed = recipe.parse(r.meta["trace"], r.labels, r.words)
        assert parsed.emotion == r.label and parsed.format_ok and attribute(parsed.reasoning, lex)["cites"] != "none"
        assert r.id == f"{r.meta['clip_id']}#t{r.id[-1]}" and r.meta["teacher"] == str(tiny_model_dir)
        assert r.split == "train" and r.fold is None
    by_clip: dict[int, list] = {}
    for r in got:
        by_clip.setdefault(clip_no(r), []).append(r)
    assert set(by_clip) == clips  # every clip of every fold's training rows, traced once
    for n, rs in by_clip.items():
        sources = {r.meta["trace_source"] for r in rs}
        if n == MAFW_SILENT:  # its own samples cite sounds: rejected; the rationalization citing tears is kept
            assert sources == {"rationalized"} and [r.meta["trace"] for r in rs] == [VIDEO.format(lab=rs[0].label)]
            assert all(not attribute(r.meta["trace"], lex)["audio"]["cue"] for r in rs)
        elif answers_right(n):
            assert sources == {"teacher"} and len(rs) == 1  # the duplicate is dropped
        else:
            assert sources == {"rationalized"} and len(rs) == 2  # traces.keep_per_clip
    stats = json.loads(out.with_suffix(".stats.json").read_text())
    total = {}
    for c in stats["per_class"].values():
        for k, v in c.items():
            total[k] = total.get(k, 0) + v
    right = sum(answers_right(n) and n != MAFW_SILENT for n in clips)
    other = len(clips) - right - 1
    assert total["clips"] == len(clips) and stats["traces"] == len(got) == right + 2 * other + 1
    assert total["sampled"] == 4 * len(clips) and total["accepted"] == right
    assert total["rejected:duplicate"] == right and total["rejected:no_cue"] == right + 1
    assert total["rejected:cites_missing_audio"] == 2 and total["rejected:wrong_answer"] == right + 4 * other + 1
    assert total["rationalized"] == 4 * (other + 1) and total["rejected:rationalized:cites_missing_audio"] == 1
    assert total["kept_rationalized"] == 2 * other + 1 and total["kept_teacher"] == right
    assert all(0 <= a <= 1 for a in stats["acceptance"].values() if a is not None)

    # resumable: a second run reads the progress file and asks the teacher nothing
    n_calls = len(calls)
    assert main(args) == 0 and len(calls) == n_calls
    assert [r.id for r in read_manifest(out)] == [r.id for r in got]
    # and the output is a cold-start set for emorl sft
    sft = tmp_path / "sft"
    assert (
        main(
            [
                "sft",
                f"model.path={tiny_model_dir}",
                f"data.train={out}",
                f"out={sft}",
                "sft.target=trace",
                "sft.epochs=1",
                "sft.samples_per_step=4",
                "sft.lr=1e-3",
                *TINY[:4],
            ]
        )
        == 0
    )
    assert (sft / "model" / "config.json").is_file()
