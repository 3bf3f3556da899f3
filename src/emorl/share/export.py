"""``emorl export``: a trained model as a plain transformers checkpoint that loads without emorl.

What is written to ``--out`` (a new folder; written under a temporary name, then renamed):

- the model's weights and ``config.json`` via ``save_pretrained`` of the family's transformers class
  (for Qwen-Omni, the thinker class);
  a LoRA adapter folder (``adapter_config.json``, as ``emorl train`` writes to ``RUN/adapter``) is
  merged into its base model first (peft ``merge_and_unload``);
- the processor (tokenizer, chat template, feature extractor, video processor) via
  ``save_pretrained``, with emorl's per-frame pixel budget (``emorl_model.json``'s
  ``frame_pixels``) written into the video processor's ``size``. The Qwen-Omni processors apply
  their own class-level default ``size`` on every call, so the model card's usage code passes the
  budget explicitly as well (``videos_kwargs``), as emorl does;
- ``README.md``: the model card (``emorl.share.card``).

emorl-only files (``emorl_config.yaml``, ``emorl_model.json``, evaluation folders, checkpoints)
are not copied: the checkpoint is what ``save_pretrained`` writes, nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path


def source_of(model: str | Path) -> tuple[Path, str]:
    """(folder, kind) of what ``--model`` names: a model folder ("model"), a LoRA adapter folder
    ("adapter"), or a run folder holding ``model/`` ("model", that folder)."""
    d = Path(model).expanduser()
    if not d.is_dir():
        raise FileNotFoundError(f"--model {d}: no such folder")
    if (d / "adapter_config.json").is_file():
        return d, "adapter"
    if (d / "config.json").is_file():
        return d, "model"
    if (d / "model" / "config.json").is_file():
        return d / "model", "model"
    raise FileNotFoundError(
        f"--model {d}: neither a model folder (config.json), a LoRA adapter folder "
        "(adapter_config.json) nor a run folder with model/"
    )


def config_source(src: Path, kind: str) -> Path:
    """Where the run config of ``src`` is read from: the model folder itself; for a LoRA adapter
    folder (``RUN/adapter``), its run's ``RUN/model`` (whose saved config, or ``RUN/config.yaml``,
    ``config_for_model`` reads)."""
    from emorl.config import RUN_CONFIG_FILE

    if kind == "adapter" and not (src / RUN_CONFIG_FILE).is_file():
        return src.parent / "model"
    return src


def load_for_export(src: Path, kind: str, cfg):
    """The emorl adapter of ``src`` with a LoRA adapter merged into its base; returns (adapter,
    base model reference or None)."""
    from emorl.runs import load_adapter

    if kind == "model":
        return load_adapter(cfg, src), None
    from peft import PeftModel

    base = json.loads((src / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base:
        raise ValueError(
            f"{src}/adapter_config.json: no base_model_name_or_path; cannot tell which model to merge into"
        )
    adapter = load_adapter(cfg, base)
    adapter.model = PeftModel.from_pretrained(adapter.model, str(src)).merge_and_unload()
    return adapter, base


def _bake_frame_pixels(processor, frame_pixels: int | None) -> None:
    """Make the plain processor resize frames as emorl does (an exact pixel budget per frame)."""
    if not frame_pixels:
        return
    vp = getattr(processor, "video_processor", None)
    if vp is None:
        raise ValueError("the processor has no video processor to carry emorl's frame_pixels")
    vp.size = {"shortest_edge": int(frame_pixels), "longest_edge": int(frame_pixels)}
    for attr in ("min_pixels", "max_pixels"):
        if hasattr(vp, attr):
            setattr(vp, attr, int(frame_pixels))
    if hasattr(vp, "cap_pixels_per_frame"):
        vp.cap_pixels_per_frame = False


def export_model(
    model: str | Path,
    out: str | Path,
    *,
    evals: list[str | Path] = (),
    config: str | None = None,
    overrides: list[str] = (),
    base_model: str | None = None,
    license: str = "other",
) -> dict:
    """Export ``model`` to ``out`` (must not exist, or be empty) with a model card; returns a
    summary (paths, class, parameters, the card's evaluations)."""
    from emorl.config import config_for_model, saved_run_config
    from emorl.share.card import find_evaluations, model_card, run_folder

    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"--out {out}: exists and is not an empty folder; choose a new folder")
    src, kind = source_of(model)
    cfg, notes = config_for_model(config_source(src, kind), config, list(overrides))
    for n in notes:
        print(f"[emorl export] note: {n}", file=sys.stderr)
    cfg.model.device, cfg.model.dtype = "cpu", _saved_dtype(src, kind)
    adapter, merged_from = load_for_export(src, kind, cfg)
    tmp = out.with_name(f".{out.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        adapter.model.save_pretrained(tmp)
        _bake_frame_pixels(adapter.processor, adapter.frame_pixels)
        adapter.processor.save_pretrained(tmp)
        run = run_folder(src)
        found = find_evaluations(src, run, extra=evals)
        saved = saved_run_config(config_source(src, kind))
        card = model_card(
            cfg,
            name=out.name,
            architecture=type(adapter.model).__name__,
            evaluations=found,
            base_model=base_model,
            license=license,
            merged_lora=kind == "adapter",
            parameters=sum(p.numel() for p in adapter.model.parameters()),
            raw=saved[0] if saved else None,
            run=run,
            frame_pixels=adapter.frame_pixels,
            usage=adapter.usage_code,
        )
        (tmp / "README.md").write_text(card, encoding="utf-8")
        leftover = [p.name for p in tmp.iterdir() if p.name.startswith("emorl_")]
        if leftover:
            raise RuntimeError(f"emorl-only files in the export: {leftover}")
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return {
        "out": str(out),
        "class": type(adapter.model).__name__,
        "source": str(src),
        "kind": kind,
        "merged_lora_into": merged_from,
        "frame_pixels": adapter.frame_pixels,
        "files": sorted(p.name for p in out.iterdir()),
        "evaluations": [e["name"] for e in found["evals"]],
        "modality_analyses": len(found["modality"]),
    }


def _saved_dtype(src: Path, kind: str) -> str:
    """The dtype the checkpoint was saved in (config.json), so the export keeps it."""
    cfg_file = src / "config.json"
    if kind == "model" and cfg_file.is_file():
        c = json.loads(cfg_file.read_text())
        d = c.get("dtype") or c.get("torch_dtype") or (c.get("text_config") or {}).get("dtype")
        if d in ("float32", "bfloat16", "float16"):
            return d
    return "float32"
