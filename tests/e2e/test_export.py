"""`emorl export` of a tiny GRPO run trained with LoRA (its adapter merged into the base), checked in
a subprocess where emorl cannot be imported: the checkpoint loads with the family's transformers
class, its processor makes emorl's inputs, and its log-probabilities equal emorl's; the model card
carries the run's metrics with their intervals and the modality analysis in the hub's format; the
card's own usage code runs; `--push-to-hub` reaches the upload call (HfApi replaced)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from emorl.cli import main

pytestmark = pytest.mark.e2e

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
    "grpo.lr=1e-2",
    "seed=3",
]

NO_EMORL = """
import sys
class _NoEmorl:
    def find_spec(self, name, path=None, target=None):
        if name == "emorl" or name.startswith("emorl."):
            raise ImportError(name + ": an export must load without emorl")
        return None
sys.meta_path.insert(0, _NoEmorl())
"""

CHECK = (
    NO_EMORL
    + """
import json
import torch, transformers
from transformers import AutoProcessor
folder, data_file, out_file = sys.argv[1:4]
data = torch.load(data_file, weights_only=True)
arch = json.load(open(folder + "/config.json"))["architectures"][0]
model = getattr(transformers, arch).from_pretrained(folder).eval()
proc = AutoProcessor.from_pretrained(folder)
msgs = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": data["text"]}]}]
text = proc.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
side = proc.video_processor.size  # emorl's pixel budget, carried by the export
audio = data["audio"].numpy()
kw = dict(text=[text], videos=[data["frames"].numpy()], audio=[audio], load_audio_from_video=True,
          audio_from_video_indices=[0], return_tensors="pt",
          videos_kwargs={"fps": float(data["fps"]), "cap_pixels_per_frame": False,
                         "size": {"shortest_edge": side.shortest_edge, "longest_edge": side.longest_edge}})
inp = proc(**kw)  # the processor's own audio padding (30 s): its valid frames are emorl's
comp = data["completion"]
ids = torch.cat([inp["input_ids"], comp[None]], 1)
media = {k: v for k, v in inp.items() if k not in ("input_ids", "attention_mask")}
with torch.no_grad():
    logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_audio_in_video=True, **media).logits[0]
p = inp["input_ids"].shape[1]
logp = torch.log_softmax(logits[p - 1 : p - 1 + len(comp)].float(), -1)
n = int(inp["feature_attention_mask"][0].sum())
torch.save({"class": type(model).__name__, "input_ids": inp["input_ids"][0],
            "pixel_values_videos": inp["pixel_values_videos"], "input_features": inp["input_features"][0, :, :n],
            "logps": logp.gather(-1, comp[:, None])[:, 0], "entropy": -(logp.exp() * logp).sum(-1),
            "emorl_loaded": [m for m in sys.modules if m.split(".")[0] == "emorl"]}, out_file)
"""
)


def run_isolated(code: str, *args, cwd) -> subprocess.CompletedProcess:
    """``python -I`` (no PYTHONPATH, no user site, no current folder on sys.path) with emorl blocked."""
    return subprocess.run(
        [sys.executable, "-I", "-c", code, *map(str, args)],
        cwd=cwd,
        capture_output=True,
        check=False,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model_dir):
    """A GRPO run with LoRA (RUN/adapter + RUN/model merged), evaluated on its test manifest
    (RUN/eval/test), and a modality analysis (RUN/analysis)."""
    from emorl.data.synthetic import synthesize

    d = tmp_path_factory.mktemp("export_run")
    paths = synthesize(d / "world", seed=5, sizes={"train": 4, "test": 8}, frame_size=56, workers=1, progress=False)
    out = d / "run"
    assert (
        main(
            [
                "train",
                f"model.path={tiny_model_dir}",
                f"data.train={paths['train']}",
                f"data.eval={paths['test']}",
                f"out={out}",
                *TINY,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "analyze",
                "modality",
                "--model",
                str(out / "model"),
                "--manifest",
                str(paths["test"]),
                "--out",
                str(out / "analysis"),
            ]
        )
        == 0
    )
    return {"run": out, "test": paths["test"], "base": tiny_model_dir}


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("exports") / "tiny-emotion"
    assert main(["export", "--model", str(run["run"] / "adapter"), "--out", str(out)]) == 0
    return out


def _emorl_reference(run, clip: Path):
    """emorl's own view of the trained model (base + LoRA adapter, not merged): the prompt it builds
    for ``clip`` and the log-probs and entropies it scores for a completion."""
    from peft import PeftModel

    from emorl.config import config_for_model
    from emorl.data.manifest import Sample
    from emorl.runs import load_adapter, make_builder

    cfg, _ = config_for_model(run["run"] / "model")
    adapter = load_adapter(cfg, run["base"])
    PeftModel.from_pretrained(adapter.model, str(run["run"] / "adapter"))  # LoRA layers injected in place
    adapter.model.eval()
    builder = make_builder(cfg, adapter)
    s = Sample(id="c", media=str(clip), label="", dataset="dfew", split="test")
    prompt = builder.prompt(s)
    c = builder.clip(s)
    completion = torch.tensor(
        adapter.tokenizer("<think>The brows are pulled down.</think><answer>angry</answer>", add_special_tokens=False)[
            "input_ids"
        ]
    )
    with torch.no_grad():
        logps, _, ent = adapter.completion_logprobs([prompt], [completion], with_entropy=True)
    data = {
        "text": builder.text(s),
        "frames": torch.from_numpy(c.frames.copy()),
        "audio": torch.from_numpy(c.audio.copy()),
        "fps": torch.tensor(builder.num_frames / c.duration),
        "completion": completion,
    }
    return prompt, logps[0], ent[0], data


def test_export_loads_with_transformers_alone_and_matches_emorl(run, exported, tmp_path):
    files = sorted(p.name for p in exported.iterdir())
    assert "README.md" in files and "model.safetensors" in files and "config.json" in files
    assert not [f for f in files if f.startswith("emorl")] and not (exported / "adapter_config.json").exists()
    clip = min((run["test"].parent / "clips" / "test").glob("*.mp4"))
    prompt, logps, ent, data = _emorl_reference(run, clip)
    torch.save(data, tmp_path / "in.pt")
    r = run_isolated(CHECK, exported, tmp_path / "in.pt", tmp_path / "out.pt", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    got = torch.load(tmp_path / "out.pt", weights_only=True)
    assert got["emorl_loaded"] == [] and got["class"] == "Qwen2_5OmniThinkerForConditionalGeneration"
    # the plain processor reproduces emorl's inputs (the frame pixel budget travels in the export)
    assert torch.equal(got["input_ids"], prompt.input_ids)
    assert torch.allclose(got["pixel_values_videos"], prompt.mm["pixel_values_videos"], atol=1e-6)
    assert torch.allclose(got["input_features"], prompt.mm["input_features"], atol=1e-6)
    # merged weights in plain transformers = emorl's base + LoRA: same log-probs, same distributions
    assert (got["logps"] - logps).abs().max() < 1e-4, (got["logps"], logps)
    assert (got["entropy"] - ent).abs().max() < 1e-4
    assert logps.abs().sum() > 0


def test_the_cards_usage_code_runs_without_emorl(run, exported, tmp_path):
    card = (exported / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", card, re.DOTALL).group(1)
    clip = min((run["test"].parent / "clips" / "test").glob("*.mp4"))
    code = code.replace('"tiny-emotion"', repr(str(exported))).replace('"clip.mp4"', repr(str(clip)))
    r = run_isolated(NO_EMORL + code, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.endswith("\n")  # it reached the print of the greedy completion


def test_model_card_has_the_runs_metrics(run, exported):
    from huggingface_hub import ModelCard

    card = ModelCard((exported / "README.md").read_text())
    data = card.data.to_dict()
    assert data["library_name"] == "transformers" and "emotion-recognition" in data["tags"]
    assert "base_model" not in data  # trained from a local folder: no hub id to name
    m = json.loads((run["run"] / "eval" / "test" / "metrics.json").read_text())
    results = card.data.eval_results
    assert {r.metric_type for r in results} == {"accuracy", "recall"}
    war = next(r for r in results if r.metric_type == "accuracy")
    uar = next(r for r in results if r.metric_type == "recall")
    assert war.metric_value == pytest.approx(m["war"], abs=1e-4) and uar.metric_value == pytest.approx(
        m["uar"], abs=1e-4
    )
    assert war.dataset_split == "test" and "95% CI" in war.metric_name
    lo, hi = map(float, re.search(r"CI ([\d.]+)-([\d.]+)", war.metric_name).groups())
    assert lo <= m["war"] <= hi
    text = card.text
    assert f"{100 * m['war']:.1f} %" in text and "## Modality analysis" in text and "audio only" in text
    assert "(GRPO)" in text and "LoRA merged" in text and "rank 4" in text
    assert "&lt;think&gt;" in text  # the prompt's tags shown, not swallowed as HTML
    assert data["datasets"] == ["synthetic"]


def test_push_to_hub_reaches_the_upload(run, exported, tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, **kw):
            calls.append(("create_repo", repo_id, kw))
            return f"https://hub.example/{repo_id}"

        def upload_folder(self, **kw):
            calls.append(("upload_folder", kw))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    out = tmp_path / "pushed"
    assert (
        main(
            [
                "export",
                "--model",
                str(run["run"] / "model"),
                "--out",
                str(out),
                "--base-model",
                "Qwen/Qwen2.5-Omni-3B",
                "--push-to-hub",
                "someone/tiny-emotion",
                "--private",
            ]
        )
        == 0
    )
    assert calls[0] == ("init", "hf_test")
    assert calls[1][:2] == ("create_repo", "someone/tiny-emotion") and calls[1][2]["private"] is True
    assert calls[2][1]["folder_path"] == str(out) and calls[2][1]["repo_id"] == "someone/tiny-emotion"
    assert "base_model: Qwen/Qwen2.5-Omni-3B" in (out / "README.md").read_text()
    # an evaluation named with --eval: its WAR / UAR and intervals are the ones emorl.eval.stats gives
    from huggingface_hub import ModelCard

    from emorl.eval.stats import metric_cis

    ev = tmp_path / "evals" / "my-test"
    ev.mkdir(parents=True)
    labels = ["happy", "sad", "angry"]
    true = [labels[i % 3] for i in range(30)]
    pred = [t if i % 5 else "angry" for i, t in enumerate(true)]  # wrong at 0, 15 (happy), 10, 25 (sad): 26 right
    (ev / "predictions.jsonl").write_text(
        "".join(
            json.dumps({"id": str(i), "label": t, "pred": p, "format_ok": True, "dataset": "mafw", "split": "test"})
            + "\n"
            for i, (t, p) in enumerate(zip(true, pred))
        )
    )
    (ev / "metrics.json").write_text(json.dumps({"n": 30, "war": 26 / 30, "uar": 0.0, "labels": labels}))
    out2 = tmp_path / "with-eval"
    assert main(["export", "--model", str(run["run"] / "model"), "--out", str(out2), "--eval", str(ev)]) == 0
    ci = metric_cis(true, pred, labels)
    card = ModelCard((out2 / "README.md").read_text())
    war = next(r for r in card.data.eval_results if r.metric_type == "accuracy")
    assert ci["war"]["value"] == pytest.approx(26 / 30) and ci["war"]["lo"] < 26 / 30 < ci["war"]["hi"] < 1
    assert war.metric_value == pytest.approx(26 / 30, abs=1e-4) and war.dataset_type == "mafw"
    assert f"95% CI {ci['war']['lo']:.3f}-{ci['war']['hi']:.3f}" in war.metric_name
    assert (
        f"| my-test | mafw (test, ?) | 30 | 86.7 % [{100 * ci['war']['lo']:.1f} %, {100 * ci['war']['hi']:.1f} %]"
        in card.text
    )
    # a plain model folder exports too; a second export into a non-empty folder is refused
    assert main(["export", "--model", str(run["run"] / "model"), "--out", str(out)]) == 2
    assert (
        main(
            ["export", "--model", str(run["run"] / "model"), "--out", str(tmp_path / "x"), "--push-to-hub", "no-slash"]
        )
        == 2
    )
