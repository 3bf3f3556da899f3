"""The stages a command runs, as functions of a resolved config: load a model, build prompts,
SFT, GRPO, evaluate. The CLI and the demo both call these."""

from __future__ import annotations

import os
from pathlib import Path

from emorl.config import RunConfig, save_run_config
from emorl.data.loader import PromptBuilder
from emorl.data.manifest import Sample, read_manifest
from emorl.models.adapter import Modality
from emorl.recipes.prompts import PromptSpec
from emorl.recipes.rewards import get_recipe


def load_adapter(cfg: RunConfig, path: str | Path | None = None):
    """The family adapter of ``path`` (default ``model.path``), picked from its config.json
    ``model_type`` (emorl.models.registry)."""
    from emorl.models.registry import load_adapter as load

    p = path or cfg.model.path
    if not p:
        raise ValueError("no model given: set model.path (a local directory or hub id)")
    device = cfg.model.device
    if device == "cuda" and "LOCAL_RANK" in os.environ:  # several processes: one GPU each
        device = f"cuda:{os.environ['LOCAL_RANK']}"
    return load(p, dtype=cfg.model.dtype, device=device, frame_pixels=cfg.model.frame_pixels or None)


def make_builder(cfg: RunConfig, adapter) -> PromptBuilder:
    spec = PromptSpec(cfg.prompt.question, cfg.prompt.format, cfg.prompt.with_options)
    return PromptBuilder(adapter, spec, num_frames=cfg.data.num_frames, frame_size=cfg.data.frame_size,
                         on_missing_audio=cfg.data.on_missing_audio, modality=Modality.parse(cfg.data.modality))


def load_samples(manifest: str | Path, max_samples: int = 0, seed: int = 0) -> list[Sample]:
    """One manifest, or a training mixture written ``a.jsonl:1,b.jsonl:2`` (per-manifest weights =
    relative sampling rates, R1-Omni's DFEW + MAFW; see emorl.data.mixture). Every sample keeps its
    own dataset and so its own label set for the reward."""
    spec = str(manifest)
    if "," in spec or spec.rsplit(":", 1)[-1].replace(".", "", 1).isdigit():
        from emorl.data.mixture import load_mixture

        parts = []
        for item in spec.split(","):
            path, _, w = item.rpartition(":") if ":" in item else (item, "", "1")
            try:
                weight = float(w)
            except ValueError:
                raise ValueError(f"mixture entry {item!r}: expected path:weight, e.g. dfew.jsonl:1") from None
            parts.append({"manifest": path, "weight": weight})
        samples = load_mixture(parts, seed)
    else:
        samples = read_manifest(manifest)
    return samples[:max_samples] if max_samples else samples


def run_sft(cfg: RunConfig, *, progress: bool = True) -> dict:
    from emorl.sft import train_sft
    from emorl.utils import seed_everything

    seed_everything(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    save_run_config(cfg, out)
    adapter = load_adapter(cfg)
    samples = load_samples(cfg.data.train, cfg.data.max_samples, cfg.seed)
    res = train_sft(cfg, adapter, make_builder(cfg, adapter), samples, out, progress=progress)
    res["eval"] = _eval_after(cfg, out, progress)
    return res


def run_grpo(cfg: RunConfig, *, progress: bool = True) -> dict:
    from emorl.rl.trainer import train_grpo
    from emorl.utils import seed_everything

    seed_everything(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    save_run_config(cfg, out)
    adapter = load_adapter(cfg)
    samples = load_samples(cfg.data.train, cfg.data.max_samples, cfg.seed)
    builder = make_builder(cfg, adapter)
    res = train_grpo(cfg, adapter, builder, samples, out, progress=progress, extra_rewards=reflection_for(cfg, adapter, builder))
    if not res["interrupted"]:
        res["eval"] = _eval_after(cfg, out, progress)
    return res


def reflection_for(cfg: RunConfig, adapter, builder):
    """EMO-R3's reflective reward when enabled; a recipe that weights reflective components while
    reflection is off is an error, not a silently smaller reward."""
    from emorl.rl.reflection import make_reflection

    model_based = [k for k, w in get_recipe(cfg.prompt.recipe).weights.items()
                   if w and k in ("coherence", "grounding", "grounding_video", "grounding_audio")]
    if cfg.reflection.enabled:
        return make_reflection(adapter, builder, cfg)
    if model_based:
        raise ValueError(f"recipe {cfg.prompt.recipe!r} weights {', '.join(model_based)}, which need the reflection "
                         f"pass: set reflection.enabled=true (or use a recipe without them)")
    return None


def _eval_after(cfg: RunConfig, out: Path, progress: bool) -> dict:
    """Evaluate the trained model on each manifest of ``data.eval`` (out/eval/<manifest stem>)."""
    results = {}
    if not cfg.data.eval or not (out / "model").is_dir():
        return results
    adapter = load_adapter(cfg, out / "model")
    for m in cfg.data.eval:
        r = run_eval(cfg, out / "model", m, out / "eval" / Path(m).stem, progress=progress, adapter=adapter)
        results[Path(m).stem] = {k: r[k] for k in ("war", "uar", "format_rate", "n")}
    return results


def run_eval(cfg: RunConfig, model: str | Path, manifest: str | Path, out: str | Path, *,
             modality: str | None = None, progress: bool = True, title: str = "", adapter=None) -> dict:
    """Evaluate ``model`` on ``manifest`` into ``out``; ``modality`` defaults to ``data.modality``."""
    from emorl.eval.evaluate import evaluate

    adapter = adapter or load_adapter(cfg, model)
    samples = load_samples(manifest, cfg.data.max_samples)
    return evaluate(adapter, make_builder(cfg, adapter), samples, Path(out), style=get_recipe(cfg.prompt.recipe).style,
                    batch_size=cfg.eval.batch_size, max_new_tokens=cfg.eval.max_new_tokens,
                    modality=Modality.parse(modality or cfg.data.modality), progress=progress, title=title)
