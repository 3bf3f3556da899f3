"""benchmarks/grpo_step.py runs the tiny shape on CPU and writes the JSON report (no timing
assertions: CI machines vary)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "grpo_step.py"
MEMORY = BENCH.with_name("train_memory.py")
ROLLOUT = BENCH.with_name("rollout_decode.py")
PATH_KEYS = {
    "encoder_s",
    "ttft_s",
    "decode_ms_per_step",
    "decode_tokens_per_s",
    "decode_floor_fraction",
    "generate_s",
    "reference_s",
    "policy_s",
    "step_s",
    "peak_memory_bytes",
    "encoder_calls",
}


@pytest.mark.e2e
def test_benchmark_tiny_cpu(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("grpo_step_bench", BENCH)
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # dataclasses look their module up
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    bench.main(
        [
            "--shape",
            "tiny",
            "--device",
            "cpu",
            "--prompts",
            "2",
            "--group",
            "3",
            "--answer-tokens",
            "4",
            "--out",
            str(out),
        ]
    )
    report = json.loads(out.read_text())
    assert {"config", "env", "bandwidth_GBps", "decode_floor", "paths", "speedup"} <= report.keys()
    assert set(report["paths"]) == {"duplicated", "group"}
    for name, res in report["paths"].items():
        assert PATH_KEYS <= res.keys(), name
        assert res["decode_steps"] == 3 and res["completion_tokens"] == 2 * 3 * 4
    # the group path encodes each clip once per step: nothing in the log-prob passes
    assert report["paths"]["group"]["encoder_calls"]["log_prob_passes"] == {"vision": 0, "audio": 0}
    assert report["paths"]["duplicated"]["encoder_calls"]["log_prob_passes"]["vision"] > 0
    assert {"step_s", "peak_memory_ratio_group_over_duplicated"} <= report["speedup"].keys()
    floor = report["decode_floor"]
    assert floor["kv_bytes_mean_shared"] < floor["kv_bytes_mean"]  # 2 prompts' KV once, not 6 times
    assert "whole step s" in capsys.readouterr().out
    # the group decoder (each prompt's KV once per group), as the CUDA-graph decoder runs it
    bench.main(
        [
            "--shape",
            "tiny",
            "--device",
            "cpu",
            "--prompts",
            "2",
            "--group",
            "3",
            "--answer-tokens",
            "4",
            "--paths",
            "group",
            "--decode",
            "static",
            "--check",
            "--out",
            str(out),
        ]
    )
    report = json.loads(out.read_text())
    res = report["paths"]["group"]
    assert res["decode_steps"] == 3 and res["decode_floor_fraction_shared"] < res["decode_floor_fraction"]
    assert report["exactness_check"]["greedy_rows_equal"] == report["exactness_check"]["greedy_rows"] == 6


@pytest.mark.e2e
def test_benchmark_tiny_cpu_qwen3_omni(tmp_path):
    """--family qwen3-omni: routed experts, prompts from the real processor, both paths, the check."""
    spec = importlib.util.spec_from_file_location("grpo_step_bench_q3", BENCH)
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    bench.main(
        [
            "--shape",
            "tiny",
            "--device",
            "cpu",
            "--family",
            "qwen3-omni",
            "--prompts",
            "2",
            "--group",
            "3",
            "--answer-tokens",
            "4",
            "--decode",
            "static",
            "--check",
            "--out",
            str(out),
        ]
    )
    report = json.loads(out.read_text())
    assert report["config"]["family"] == "qwen3-omni" and report["config"]["frame_size"] == 64
    for res in report["paths"].values():
        assert res["decode_steps"] == 3 and res["completion_tokens"] == 2 * 3 * 4
    assert report["paths"]["group"]["encoder_calls"]["log_prob_passes"] == {"vision": 0, "audio": 0}
    assert report["exactness_check"]["greedy_rows_equal"] == report["exactness_check"]["greedy_rows"] == 6
    assert report["exactness_check"]["logprob_max_abs_diff"] < 1e-5
    with pytest.raises(SystemExit, match="runs the shapes tiny, small, not 7b"):
        bench.main(["--shape", "7b", "--family", "qwen3-omni", "--device", "cpu"])


@pytest.mark.e2e
@pytest.mark.parametrize("family", ["qwen2.5-vl", "qwen3-vl"])
def test_benchmark_tiny_cpu_vl(tmp_path, family):
    """--family qwen2.5-vl / qwen3-vl: video prompts from the real processor (no audio tower), both
    paths, the exactness check; a 3b shape is defined for Qwen2.5-VL (GPU runs)."""
    spec = importlib.util.spec_from_file_location(f"grpo_step_bench_{family}", BENCH)
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    bench.main(
        [
            "--shape",
            "tiny",
            "--device",
            "cpu",
            "--family",
            family,
            "--prompts",
            "2",
            "--group",
            "3",
            "--answer-tokens",
            "4",
            "--decode",
            "static",
            "--check",
            "--out",
            str(out),
        ]
    )
    report = json.loads(out.read_text())
    assert report["config"]["family"] == family and report["config"]["modality"] == "video"
    assert set(report["config"]["params"]) == {"total", "llm", "vision"}
    for res in report["paths"].values():
        assert res["decode_steps"] == 3 and res["completion_tokens"] == 2 * 3 * 4 and res["audio_s"] == 0
    assert report["paths"]["group"]["encoder_calls"]["log_prob_passes"] == {"vision": 0, "audio": 0}
    assert report["paths"]["duplicated"]["encoder_calls"]["log_prob_passes"]["vision"] > 0
    assert report["exactness_check"]["greedy_rows_equal"] == report["exactness_check"]["greedy_rows"] == 6
    assert report["exactness_check"]["logprob_max_abs_diff"] < 1e-5
    assert "3b" in bench.FAMILY_FRAME_SIZE["qwen2.5-vl"]
    with pytest.raises(SystemExit, match="has no audio tower"):
        bench.main(["--shape", "tiny", "--family", family, "--device", "cpu", "--modality", "audio"])


@pytest.mark.e2e
def test_benchmark_tiny_cpu_parts(tmp_path):
    """--family parts: the tiny parts' architecture (Llama, SigLIP, Whisper, MLP projectors) with
    prompts from EmorlOmniProcessor, both paths and the exactness check; the humanomni-0.5b shape's
    config (not built: 1.37B parameters) has HumanOmni-0.5B's media token counts."""
    spec = importlib.util.spec_from_file_location("grpo_step_bench_parts", BENCH)
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    bench.main(
        [
            "--shape",
            "tiny",
            "--device",
            "cpu",
            "--family",
            "parts",
            "--prompts",
            "2",
            "--group",
            "3",
            "--answer-tokens",
            "4",
            "--check",
            "--out",
            str(out),
        ]
    )
    report = json.loads(out.read_text())
    assert report["config"]["family"] == "parts" and report["config"]["modality"] == "av"
    assert report["config"]["frame_size"] == 56 and report["config"]["rows"] == 6
    assert set(report["config"]["params"]) == {"total", "llm", "vision", "audio"}
    assert set(report["paths"]) == {"duplicated", "group"}
    for name, res in report["paths"].items():
        assert PATH_KEYS <= res.keys(), name
        assert res["decode_steps"] == 3 and res["completion_tokens"] == 2 * 3 * 4
    # trainable projectors (the default), frozen towers: the group path runs the towers once per
    # clip per step and caches their features; the log-prob passes only project them again
    assert report["paths"]["group"]["encoder_calls"]["generate"] == {"vision": 1, "audio": 1}
    assert report["paths"]["group"]["encoder_calls"]["log_prob_passes"] == {"vision": 0, "audio": 0}
    assert report["paths"]["group"]["encoder_cache"] == {"hits": 4, "misses": 2}
    assert report["paths"]["duplicated"]["encoder_calls"]["log_prob_passes"]["audio"] > 0
    assert {"step_s", "peak_memory_ratio_group_over_duplicated"} <= report["speedup"].keys()
    check = report["exactness_check"]
    assert check["greedy_rows_equal"] == check["greedy_rows"] == 6
    assert check["logprob_max_abs_diff"] < 1e-5
    # projectors frozen too: each clip encoded once per step, the log-prob passes hit the cache
    bench.main(
        [
            "--shape",
            "tiny",
            "--device",
            "cpu",
            "--family",
            "parts",
            "--prompts",
            "2",
            "--group",
            "3",
            "--answer-tokens",
            "4",
            "--paths",
            "group",
            "--decode",
            "static",
            "--freeze-projectors",
            "--check",
            "--out",
            str(out),
        ]
    )
    report = json.loads(out.read_text())
    res = report["paths"]["group"]
    assert res["encoder_calls"]["log_prob_passes"] == {"vision": 0, "audio": 0}
    assert res["encoder_cache"] == {"hits": 4, "misses": 2}
    assert report["exactness_check"]["greedy_rows_equal"] == report["exactness_check"]["greedy_rows"] == 6

    from emorl.models.parts import tiny as parts_tiny

    shape = bench.SHAPES["humanomni-0.5b"]
    assert bench.FAMILY_FRAME_SIZE["parts"]["humanomni-0.5b"] == 224
    dims = bench.tiny_dims(shape, tie_embeddings=True)
    cfg = parts_tiny.build_config(
        parts_tiny.train_tokenizer((), 1024), dims, "parts", frame_size=224, **shape.builder_options["parts"]
    )
    geometry = cfg.media_geometry()
    assert geometry.video_tokens(8) == 392 and geometry.audio_tokens() == 500  # R1-Omni's prompt
    assert cfg.vision_config.patch_size == 16 and cfg.audio_config.encoder_attention_heads == 20
    assert cfg.fusion_type == "bert_gate" and cfg.tie_word_embeddings
    with pytest.raises(SystemExit, match="is a shape of --family parts"):
        bench.main(["--shape", "humanomni-0.5b", "--device", "cpu"])
    with pytest.raises(SystemExit, match="runs the shapes tiny, small, humanomni-0.5b, not 7b"):
        bench.main(["--shape", "7b", "--family", "parts", "--device", "cpu"])


@pytest.mark.e2e
def test_train_memory_tiny_cpu(tmp_path, capsys):
    """benchmarks/train_memory.py runs emorl's GRPO step under each memory lever (tiny shape, bf16
    on CPU so that the float32 master weights are exercised) and reports every phase's peak."""
    spec = importlib.util.spec_from_file_location("train_memory_bench", MEMORY)
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    out = tmp_path / "mem.json"
    bench.main(
        [
            "--shape",
            "tiny",
            "--device",
            "cpu",
            "--dtype",
            "bfloat16",
            "--configs",
            "full,full_beta0_bf16,lora",
            "--in-process",
            "--out",
            str(out),
        ]
    )
    res = {r["config"]: r for r in json.loads(out.read_text())["results"]}
    assert set(res) == {"full", "full_beta0_bf16", "lora"} and all(r["fits"] for r in res.values())
    assert res["full"]["master_weights"] and not res["full_beta0_bf16"]["master_weights"]
    assert not res["lora"]["master_weights"] and res["lora"]["trainable_params"] < res["full"]["trainable_params"]
    for name in ("full", "lora"):  # a real update: the (master) weights moved
        assert all(res[name]["params_changed"].values()), name
    for r in res.values():
        assert [s["step"] for s in r["steps"]] == [1, 2]
        assert {"rollout", "update", "step"} <= r["steps"][0]["peak_GB"].keys()
        assert ("reference" in r["steps"][0]["peak_GB"]) == (r["config"] != "full_beta0_bf16")
    assert "OUT OF MEMORY" not in capsys.readouterr().out


@pytest.mark.e2e
@pytest.mark.parametrize("family", ["qwen2.5-omni", "qwen2.5-vl"])
def test_train_step_tiny_cpu(tmp_path, capsys, family):
    """benchmarks/train_memory.py as the whole-step benchmark: each GRPO step's phases (EMO-R3's
    reflection as its own, every completion judged twice), verl's token accounting, a checkpoint
    written through the Session, and EasyR1's reference figure (qwen2.5-vl: the real processor)."""
    spec = importlib.util.spec_from_file_location(f"train_step_bench_{family}", MEMORY)
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    out = tmp_path / "step.json"
    argv = ["--shape", "tiny", "--device", "cpu", "--family", family, "--configs", "full,emo_r3_lora"]
    bench.main([*argv, "--in-process", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["family"] == family and report["reference"]["runs"][0]["tokens_per_s_per_gpu"] == 1800
    res = {r["config"]: r for r in report["results"]}
    assert set(res) == {"full", "emo_r3_lora"} and all(r["fits"] for r in res.values())
    w = report["workload"]
    rows = w["prompts"] * w["group"]
    for name, r in res.items():
        assert all(r["params_changed"].values()), name
        reflects = name.startswith("emo_r3")
        assert ("prompt.recipe=emo-r3" in r["overrides"]) == reflects
        for s in r["steps"]:
            assert s["tokens_total"] == s["prompt_tokens"] + s["completion_tokens"]
            assert s["completion_tokens"] == rows * w["answer_tokens"] and s["completion_len"] == w["answer_tokens"]
            assert s["prompt_tokens"] > 0 and s["prompt_tokens"] % w["group"] == 0  # each prompt once per completion
            assert s["gpus"] == 1 and s["tokens_per_s_per_gpu"] == pytest.approx(s["tokens_total"] / s["step_s"])
            ph = s["phases_s"]
            assert {"encode", "rollout", "reward", "advantage", "reference", "update"} <= ph.keys(), name
            assert ("reflection" in ph) == reflects and sum(ph.values()) <= s["step_s"]
            assert ph["reward"] + ph.get("reflection", 0) == pytest.approx(s["time"]["time/reward"])
            if reflects:  # both of EMO-R3's passes asked the judge about every completion
                assert s["reflection_answers"] == {"coherence": rows, "grounding": rows}
                assert set(s["reflection_passes_s"]) == {"coherence", "grounding"}
        ckpt = r["checkpoint"]
        assert ckpt["bytes"] > 0 and {"trainer_state.pt", "rng_rank0.pt"} <= set(ckpt["files"])
        assert ("adapter/adapter_model.safetensors" in ckpt["files"]) == ("lora" in name)
        assert ("model_state.pt" in ckpt["files"]) == ("lora" not in name)
    assert res["emo_r3_lora"]["checkpoint"]["bytes"] < res["full"]["checkpoint"]["bytes"]
    printed = capsys.readouterr().out
    assert "tok/s/GPU" in printed and "reference: EasyR1 Qwen2.5-VL-3B-Instruct" in printed
    bench.main([*argv[:-1], "full", "--in-process", "--no-checkpoint", "--steps", "1", "--out", str(out)])
    assert json.loads(out.read_text())["results"][0]["checkpoint"] == {"skipped": "--no-checkpoint"}


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_train_memory_sft_tiny_cpu(tmp_path, capsys):
    """benchmarks/train_memory.py's SFT configurations (R1-Omni's cold-start step: micro-batches of 2,
    accumulated) on the tiny shape in bf16 on CPU: full with float32 masters, LoRA without
    checkpointing (in this process), and ZeRO-3 with parameters and optimizer offloaded to the CPU (in
    a child process, as the GPU runs do); every step trains (the loss of the same samples falls)."""
    spec = importlib.util.spec_from_file_location("train_memory_bench_sft", MEMORY)
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    res = {}
    for configs, extra in (("sft_full,sft_lora_nockpt", ["--in-process"]), ("sft_zero3_offload", [])):
        out = tmp_path / f"{configs}.json"
        bench.main(
            [
                "--shape",
                "tiny",
                "--device",
                "cpu",
                "--dtype",
                "bfloat16",
                "--configs",
                configs,
                *extra,
                "--out",
                str(out),
            ]
        )
        res.update({r["config"]: r for r in json.loads(out.read_text())["results"]})
    assert set(res) == {"sft_full", "sft_lora_nockpt", "sft_zero3_offload"}, res
    assert all(r.get("fits") and r["stage"] == "sft" for r in res.values()), res
    assert res["sft_full"]["master_weights"] and res["sft_zero3_offload"]["master_weights"]  # DeepSpeed's bf16 mode
    assert res["sft_lora_nockpt"]["trainable_params"] < res["sft_full"]["trainable_params"]
    assert res["sft_zero3_offload"]["trainable_params"] == res["sft_full"]["trainable_params"]
    for name, r in res.items():
        assert r["workload"] == {"samples_per_step": 4, "micro_batch_samples": 2, "target_tokens": 8}
        steps = r["steps"]
        assert [s["step"] for s in steps] == [1, 2] and all(s["micro_batches"] == 2 and not s["skipped"] for s in steps)
        assert steps[1]["loss"] < steps[0]["loss"] - 1e-4, name  # the same 4 samples: the update lowered their loss
        assert {"encode", "update", "step"} <= steps[0]["peak_GB"].keys()
    assert all(
        res[n]["params_changed"] and all(res[n]["params_changed"].values()) for n in ("sft_full", "sft_lora_nockpt")
    )
    assert "OUT OF MEMORY" not in capsys.readouterr().out


@pytest.mark.e2e
def test_rollout_decode_tiny_cpu(tiny_model_dir, clips, tmp_path, capsys):
    """benchmarks/rollout_decode.py builds a manifest's prompts as training does and samples them
    with both group decoders from the same seed: same tokens in fp32 (here 2 prompts x G=3)."""
    spec = importlib.util.spec_from_file_location("rollout_decode_bench", ROLLOUT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        "".join(
            json.dumps({"id": f"c{i}", "media": str(c), "label": "happy", "dataset": "synthetic", "split": "train"})
            + "\n"
            for i, c in enumerate(clips)
        )
    )
    out = tmp_path / "rollout.json"
    report = bench.main(
        [
            "--model",
            str(tiny_model_dir),
            "--manifest",
            str(manifest),
            "--prompts",
            "2",
            "--group",
            "3",
            "--repeats",
            "1",
            "--out",
            str(out),
        ]
    )
    assert json.loads(out.read_text()) == report
    assert report["rows"] == 6 and report["sampled_rows_equal"] == 6 and report["completion_tokens"] > 0
    assert set(report["seconds"]) == {"dynamic", "static"}
    assert "rows token-equal between the modes: 6 of 6" in capsys.readouterr().out


@pytest.mark.e2e
def test_tower_attention_tiny_cpu(tmp_path):
    """benchmarks/tower_attention.py: both towers, loop and packed in one run, equal outputs."""
    spec = importlib.util.spec_from_file_location("tower_attention_bench", BENCH.with_name("tower_attention.py"))
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    out = tmp_path / "towers.json"
    report = bench.main(["--shape", "tiny", "--frames", "4", "--frame-size", "56", "--repeats", "1", "--out", str(out)])
    assert json.loads(out.read_text()) == report
    assert set(report["towers"]) == {"vision", "audio"}
    for name, r in report["towers"].items():
        assert r["max_abs_diff"] <= 1e-5, name
        assert r["segment_kinds"] and all(k["segments"] >= 2 for k in r["segment_kinds"]), name
        assert r["loop_s"] > 0 and r["packed_s"] > 0
