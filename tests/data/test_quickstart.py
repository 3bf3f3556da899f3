"""docs/quickstart.md, run as written on fake DFEW / MAFW / RAVDESS trees and a tiny model (only the
paths substituted and tiny sizes appended), then `emorl cv`, a model trained with the emo-r3 recipe
evaluated by `emorl eval` with no other flag, and `emorl predict` on a folder."""

import csv
import json
import re
import shlex
from pathlib import Path

import pytest
from corpora_fixtures import build_dfew, build_mafw, build_ravdess, distinct_media
from media_helpers import make_clip

from emorl.cli import main

pytestmark = pytest.mark.e2e

QUICKSTART = Path(__file__).resolve().parents[2] / "docs" / "quickstart.md"
# tiny sizes appended to the commands that load a model with a recipe (a trained model's folder
# carries its own settings, so eval and predict of it get nothing appended)
TINY = [
    "model.device=cpu",
    "model.dtype=float32",
    "data.sampling=fixed",
    "data.frame_size=56",
    "data.num_frames=4",
    "sampling.max_new_tokens=6",
    "eval.max_new_tokens=6",
    "eval.batch_size=8",
    "grpo.steps=2",
    "grpo.prompts_per_step=2",
    "grpo.completions_per_prompt=2",
    "grpo.micro_batch_rows=4",
    "model.lora_rank=4",
    "grpo.lr=1e-3",
    "sft.epochs=2",
    "sft.samples_per_step=4",
    "sft.micro_batch_samples=2",
    "sft.lr=1e-3",
]


def quickstart_commands() -> list[str]:
    """Every `emorl ...` line of the page's bash blocks."""
    blocks = re.findall(r"```bash\n(.*?)```", QUICKSTART.read_text(), re.DOTALL)
    return [line.strip() for b in blocks for line in b.splitlines() if line.strip().startswith("emorl ")]


@pytest.fixture(scope="module")
def world(tmp_path_factory, bank, tiny_model_dir):
    d = tmp_path_factory.mktemp("quickstart")
    roots = {
        "DFEW": build_dfew(d / "data" / "DFEW", bank),
        "MAFW": build_mafw(d / "data" / "MAFW", bank),
        "RAVDESS": build_ravdess(d / "data" / "RAVDESS", bank),
    }
    seed = 1000
    for root in roots.values():
        seed = distinct_media(root, seed)
    clips = d / "data" / "my-clips"
    for i in range(3):
        make_clip(clips / f"clip{i}.mp4", seconds=1.0, size=32, seed=50 + i)
    return {"dir": d, **{k: str(v) for k, v in roots.items()}, "QWEN": str(tiny_model_dir), "CLIPS": str(clips)}


def run(cmd: str, env: dict) -> int:
    argv = shlex.split(re.sub(r"\$(\w+)", lambda m: env[m.group(1)], cmd))[1:]
    if argv[0] in ("train", "sft", "protocol", "cv", "traces"):
        argv += TINY
    return main(argv)


def scripted_teacher(manifest: Path, real):
    """The tiny teacher's sampler, its texts then replaced: the first answer of every clip is its
    label with a visual cue, the rest another label (the tiny model's own text never names the
    label, and a cold start needs traces to train on)."""
    from emorl.data.manifest import read_manifest

    labels: dict = {}

    def sample(adapter, prompts, k, params):
        texts = real(adapter, prompts, k, params)
        if not labels:
            labels.update({s.id: s.label for s in read_manifest(manifest)})
        out = []
        for p, t in zip(prompts, texts):
            lab = labels[p.key.split("|")[0]]
            wrong = "neutral" if lab != "neutral" else "happy"
            out.append(
                [
                    f"<think>There are tears in the eyes.</think><answer>{lab}</answer>",
                    *[f"<think>A smile ({j}).</think><answer>{wrong}</answer>" for j in range(len(t) - 1)],
                ]
            )
        return out

    return sample


def test_quickstart_runs_as_written(world, monkeypatch, capsys):
    from emorl import traces

    monkeypatch.chdir(world["dir"])
    monkeypatch.setattr(traces, "sample_traces", scripted_teacher(Path("manifests/dfew.jsonl"), traces.sample_traces))
    cmds = quickstart_commands()
    assert len(cmds) >= 14, cmds
    for cmd in cmds:
        assert run(cmd, world) == 0, cmd
        out = capsys.readouterr()
        if cmd.startswith("emorl protocol"):
            assert "mean ± std (5 folds)" in out.out and "R1-Omni (published)" in out.out
        if cmd.startswith("emorl eval"):
            assert "differs" not in out.err  # the trained model's own settings, not re-typed
    d = world["dir"]
    zero = json.loads((d / "runs/table1-zero-shot/cv.json").read_text())
    assert zero["n_folds"] == 5 and set(zero["mean"]) == {"dfew", "mafw", "ravdess"}
    trained = json.loads((d / "runs/table1/cv.json").read_text())
    assert sorted(trained["folds"]) == ["1", "2", "3", "4", "5"]
    for k in range(1, 6):  # each fold trained on its own training rows
        assert (d / f"runs/table1/fold-{k}/grpo/model/emorl_config.yaml").is_file()
    cold = json.loads((d / "runs/dfew-coldstart/cv.json").read_text())
    assert sorted(cold["folds"]) == ["1", "2", "3", "4", "5"]
    stats = json.loads((d / "traces/dfew.stats.json").read_text())
    assert stats["traces"] == stats["clips"] > 0  # one kept trace per clip (the scripted teacher's)
    for k in range(1, 6):  # each fold's SFT trained on the traces of its own training clips only
        test_media = {r["media"] for r in map(json.loads, (d / f"runs/dfew-coldstart/fold-{k}/dfew-test.jsonl").open())}
        sft_rows = [json.loads(x) for x in (d / f"runs/dfew-coldstart/fold-{k}/sft-train.jsonl").open()]
        assert sft_rows and not {r["media"] for r in sft_rows} & test_media
        assert (d / f"runs/dfew-coldstart/fold-{k}/grpo/model/emorl_config.yaml").is_file()
    rows = list(csv.DictReader((d / "predictions.csv").open()))
    assert len(rows) == 3
    for r in rows:
        probs = [float(v) for k, v in r.items() if k.startswith("p_")]
        assert len(probs) == 11 and abs(sum(probs) - 1) < 1e-5  # MAFW + DFEW's union of classes


def test_cv_trains_and_evaluates_every_fold(world, tmp_path, capsys):
    d = Path(world["dir"])
    manifest = d / "manifests/dfew.jsonl"
    if not manifest.is_file():
        assert main(["data", "prepare", "dfew", "--root", world["DFEW"], "--out", str(manifest)]) == 0
    assert (
        main(
            [
                "cv",
                "--manifest",
                str(manifest),
                "--out",
                str(tmp_path / "cv"),
                "model.path=" + world["QWEN"],
                "cv.stages=sft",
                "sft.target=label",
                "sft.epochs=2",
                "sft.samples_per_step=4",
                "sft.lr=1e-3",
                *TINY,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    res = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert res["n_folds"] == 5 and "mean ± std (5 folds)" in out
    wars = [f["dfew"]["war"] for f in res["folds"].values()]
    assert res["mean"]["dfew"]["war"] == pytest.approx(sum(wars) / 5)
    # resumable: a second run skips every finished stage
    assert (
        main(
            [
                "cv",
                "--manifest",
                str(manifest),
                "--out",
                str(tmp_path / "cv"),
                "model.path=" + world["QWEN"],
                "cv.stages=sft",
                "sft.target=label",
                "sft.epochs=2",
                "sft.samples_per_step=4",
                *TINY,
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.count("already done") >= 10


def test_an_emo_r3_model_is_evaluated_with_its_own_recipe(world, tmp_path, capsys):
    d = Path(world["dir"])
    train, test = d / "manifests/dfew-f1-train.jsonl", d / "manifests/dfew-f1-test.jsonl"
    for split, path in (("train", train), ("test", test)):
        if not path.is_file():
            assert (
                main(
                    [
                        "data",
                        "prepare",
                        "dfew",
                        "--root",
                        world["DFEW"],
                        "--fold",
                        "1",
                        "--split",
                        split,
                        "--out",
                        str(path),
                    ]
                )
                == 0
            )
    out = tmp_path / "r3"
    assert (
        main(
            [
                "sft",
                "--config",
                "emo-r3-tiny",
                f"model.path={world['QWEN']}",
                f"data.train={train}",
                f"out={out}",
                "sft.target=label",
                "sft.epochs=30",
                "sft.samples_per_step=4",
                "sft.lr=3e-3",
                "data.sampling=fixed",
                "data.frame_size=56",
                "data.num_frames=4",
                "eval.max_new_tokens=8",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["eval", "--model", str(out / "model"), "--manifest", str(test)]) == 0
    err = capsys.readouterr().err
    assert "differs" not in err
    m = json.loads((out / "model" / "eval" / "dfew-f1-test" / "metrics.json").read_text())
    assert m["grading"]["recipe"] == "emo-r3" and m["grading"]["style"] == "boxed"
    assert m["settings"] == {
        "sampling": "fixed",
        "num_frames": 4,
        "frame_size": 56,
        "max_new_tokens": 8,
        "modality": "video+audio",
    }
    preds = [json.loads(x) for x in (out / "model" / "eval" / "dfew-f1-test" / "predictions.jsonl").open()]
    assert any(p["completion"].startswith("\\boxed{") and p["pred"] for p in preds)  # read as EMO-R3's boxed answers
    # an explicit override is used, and said
    assert (
        main(
            [
                "eval",
                "--model",
                str(out / "model"),
                "--manifest",
                str(test),
                "--out",
                str(tmp_path / "e2"),
                "eval.max_new_tokens=4",
            ]
        )
        == 0
    )
    assert "eval.max_new_tokens=4 differs from the model's training setting 8" in capsys.readouterr().err


def test_predict_a_folder_is_resumable(world, tmp_path, capsys):
    clips = Path(world["CLIPS"])
    out = tmp_path / "p.jsonl"
    args = [
        "predict",
        str(clips),
        "--model",
        world["QWEN"],
        "--out",
        str(out),
        "prompt.labels=dfew",
        "data.sampling=fixed",
        "data.frame_size=56",
        "data.num_frames=4",
        "eval.max_new_tokens=6",
    ]
    assert main(args) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["clip0.mp4", "clip1.mp4", "clip2.mp4"]
    for r in rows:
        assert list(r["probabilities"]) == ["happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"]
        assert abs(sum(r["probabilities"].values()) - 1) < 1e-5
    # a run stopped mid-row: the complete rows stay, the half row is redone
    out.write_text(out.read_text().splitlines(keepends=True)[0] + '{"id": "clip1.mp4", "emot')
    capsys.readouterr()
    assert main(args) == 0
    assert "2 predicted, 1 already in" in capsys.readouterr().out
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["clip0.mp4", "clip1.mp4", "clip2.mp4"]
    with pytest.raises(SystemExit):
        main(["predict", str(clips / "nope.mp4"), "--model", world["QWEN"], "--bogus"])
    assert main(["predict", str(clips / "nope.mp4"), "--model", world["QWEN"], "prompt.labels=dfew"]) == 2
    assert main(["predict", str(clips), "--model", world["QWEN"]]) == 2  # no label set known: a clear error
    assert "prompt.labels" in capsys.readouterr().err
