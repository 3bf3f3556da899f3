"""The stages a command runs, as functions of a resolved config: load a model, build prompts,
SFT, GRPO, evaluate. The CLI and the demo both call these."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from emorl.config import RunConfig, save_run_config
from emorl.data.manifest import ManifestError, Sample, read_manifest, record_labels, select_split
from emorl.models.adapter import Modality
from emorl.prompting import PromptBuilder
from emorl.recipes.prompts import PromptSpec, recipe_prompt
from emorl.recipes.rewards import recipe_for


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
    """The prompt builder of a run: the recipe's prompt (its still-image variant, EMO-R3's released
    SET prompt, when ``data.modality`` is image) unless ``prompt.question`` / ``prompt.format`` say otherwise."""
    image = Modality.parse(cfg.data.modality) == Modality.IMAGE
    question, fmt = recipe_prompt(cfg.prompt.recipe, cfg.prompt.question, cfg.prompt.format, image=image)
    return PromptBuilder(
        adapter,
        PromptSpec(question, fmt, cfg.prompt.with_options),
        num_frames=cfg.data.num_frames,
        frame_size=cfg.data.frame_size,
        on_missing_audio=cfg.data.on_missing_audio,
        modality=Modality.parse(cfg.data.modality),
        media_limits=media_limits(cfg),
        sampling=cfg.data.sampling,
    )


def media_limits(cfg: RunConfig):
    """The degenerate-media thresholds of ``data.min_*`` (emorl.data.media.MediaLimits)."""
    from emorl.data.media import MediaLimits

    return MediaLimits(min_frames=cfg.data.min_frames, min_seconds=cfg.data.min_seconds, min_side=cfg.data.min_side)


def load_samples(
    manifest: str | Path,
    max_samples: int = 0,
    seed: int = 0,
    *,
    split: str = "",
    default: str = "train",
    key: str = "data.split",
    exclude_flagged: bool = False,
) -> list[Sample]:
    """The rows a command uses from one manifest, or from a training mixture written
    ``a.jsonl:1,b.jsonl:2`` (per-manifest weights = relative sampling rates, R1-Omni's DFEW + MAFW;
    see emorl.data.mixture). Rows are selected by split in each manifest (``split``, or the command's
    ``default``: emorl.data.manifest.select_split). Every sample keeps its own dataset and so its own
    label set for the reward. ``exclude_flagged`` drops rows ``emorl data check`` flagged as degenerate.
    """
    spec = str(manifest)

    def rows(path: str) -> list[Sample]:
        got = select_split(read_manifest(path), split, default=default, source=path, key=key)
        if default == "train":
            check_one_fold(got, path)
        return drop_flagged(got, path) if exclude_flagged else got

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
        samples = load_mixture(parts, seed, read=rows)
    else:
        samples = rows(spec)
    return samples[:max_samples] if max_samples else samples


def check_one_fold(samples: list[Sample], source: str) -> None:
    """Training rows of a corpus with official folds must come from one fold: every clip is in the
    training rows of all folds but one, and in that one's test rows."""
    folds: dict[str, set[int]] = {}
    for s in samples:
        if s.fold is not None:
            folds.setdefault(s.dataset, set()).add(s.fold)
    several = {d: sorted(f) for d, f in folds.items() if len(f) > 1}
    if several:
        d, f = next(iter(several.items()))
        raise ManifestError(
            f"{source}: training rows span folds {f} of {d}: each clip is a training clip of all "
            f"folds but one and the test clip of that one; prepare one fold "
            f"(emorl data prepare {d} --fold K --split train) or run `emorl cv`"
        )


def drop_flagged(samples: list[Sample], source: str) -> list[Sample]:
    """Rows without degenerate-media flags; the flags come from ``emorl data check`` (meta.flags)."""
    unchecked = [s.id for s in samples if "flags" not in s.meta]
    if unchecked:
        raise ManifestError(
            f"{source}: data.exclude_flagged=true needs the clean manifest `emorl data check` writes "
            f"(row {unchecked[0]!r} and {len(unchecked) - 1} more carry no meta.flags)"
        )
    kept = [s for s in samples if not s.meta["flags"]]
    if len(kept) < len(samples):
        print(f"[data] {source}: {len(samples) - len(kept)} flagged samples excluded (data.exclude_flagged)")
    return kept


def training_samples(cfg: RunConfig) -> list[Sample]:
    """``data.train`` rows for a training command, checked against every evaluation manifest of the
    config for shared clips (an error) and shared subjects (reported)."""
    from emorl.data.leakage import guard

    samples = load_samples(
        cfg.data.train, cfg.data.max_samples, cfg.seed, split=cfg.data.split, exclude_flagged=cfg.data.exclude_flagged
    )
    if cfg.data.eval:
        guard(
            samples,
            {m: load_samples(m, split=cfg.eval.split, default="test", key="eval.split") for m in cfg.data.eval},
            train_name=cfg.data.train,
        )
    return samples


def run_sft(cfg: RunConfig, *, progress: bool = True) -> dict:
    from emorl.sft import train_sft
    from emorl.utils import seed_everything

    seed_everything(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    samples = training_samples(cfg)
    val = validation_samples(cfg, samples)
    record_labels(cfg, samples)
    save_run_config(cfg, out)
    adapter = load_adapter(cfg)
    res = train_sft(cfg, adapter, make_builder(cfg, adapter), samples, out, progress=progress, val_samples=val)
    if not res["interrupted"]:
        res["eval"] = _eval_after(cfg, out, progress)
    return res


def validation_samples(cfg: RunConfig, train: list[Sample]) -> list[Sample] | None:
    """``sft.val`` rows (its ``val`` rows, or a one-split manifest whole), checked against the
    training rows for shared clips (an error), as the evaluation manifests are; None without it."""
    if not cfg.sft.val:
        return None
    from emorl.data.leakage import guard

    val = load_samples(cfg.sft.val, split="", default="val", key="sft.val", exclude_flagged=cfg.data.exclude_flagged)
    guard(train, {cfg.sft.val: val}, train_name=cfg.data.train)
    return val


def run_grpo(cfg: RunConfig, *, progress: bool = True) -> dict:
    from emorl.rl.trainer import train_grpo
    from emorl.utils import seed_everything

    seed_everything(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    samples = training_samples(cfg)
    record_labels(cfg, samples)
    save_run_config(cfg, out)
    adapter = load_adapter(cfg)
    builder = make_builder(cfg, adapter)
    res = train_grpo(
        cfg, adapter, builder, samples, out, progress=progress, extra_rewards=reflection_for(cfg, adapter, builder)
    )
    if not res["interrupted"]:
        res["eval"] = _eval_after(cfg, out, progress)
    return res


def reflection_for(cfg: RunConfig, adapter, builder):
    """EMO-R3's reflective reward when enabled; a recipe that weights reflective components while
    reflection is off is an error, not a silently smaller reward."""
    from emorl.recipes.rewards import model_components
    from emorl.rl.reflection import make_reflection

    model_based = model_components(recipe_for(cfg))
    if cfg.reflection.enabled:
        return make_reflection(adapter, builder, cfg)
    if model_based:
        raise ValueError(
            f"recipe {cfg.prompt.recipe!r} weights {', '.join(model_based)}, which need the reflection "
            f"pass: set reflection.enabled=true (or use a recipe without them)"
        )
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


def run_eval(
    cfg: RunConfig,
    model: str | Path,
    manifest: str | Path,
    out: str | Path,
    *,
    modality: str | None = None,
    progress: bool = True,
    title: str = "",
    adapter=None,
) -> dict:
    """Evaluate ``model`` on the ``eval.split`` rows of ``manifest`` (default: test rows) into ``out``;
    ``modality`` defaults to ``data.modality``."""
    from emorl.eval.evaluate import evaluate

    adapter = adapter or load_adapter(cfg, model)
    samples = load_samples(
        manifest,
        cfg.data.max_samples,
        split=cfg.eval.split,
        default="test",
        key="eval.split",
        exclude_flagged=cfg.data.exclude_flagged,
    )
    return evaluate(
        adapter,
        make_builder(cfg, adapter),
        samples,
        Path(out),
        recipe=recipe_for(cfg),
        batch_size=cfg.eval.batch_size,
        max_new_tokens=cfg.eval.max_new_tokens,
        modality=Modality.parse(modality or cfg.data.modality),
        progress=progress,
        title=title,
    )


def run_predict(
    cfg: RunConfig,
    model: str | Path,
    inputs: str,
    out: str | Path,
    *,
    modality: str | None = None,
    adapter=None,
    progress: bool = True,
) -> dict:
    """``emorl predict``: every input (clip, folder, glob or label-free manifest) -> one row in
    ``out`` (.jsonl or .csv, resumable) with the emotion, the reasoning, format and a probability
    for every class of the model's label set (``prompt.labels``)."""
    from emorl.eval.predict import collect_inputs, model_labels, predict_files, prepare_inputs

    labels, dataset = model_labels(cfg.prompt.labels)
    samples = prepare_inputs(collect_inputs(inputs), labels, dataset)
    adapter = adapter or load_adapter(cfg, model)
    from emorl.data.labels import label_words

    return predict_files(
        adapter,
        make_builder(cfg, adapter),
        samples,
        out,
        recipe=recipe_for(cfg),
        labels=labels,
        words=label_words(dataset),
        batch_size=cfg.eval.batch_size,
        max_new_tokens=cfg.eval.max_new_tokens,
        modality=Modality.parse(modality or cfg.data.modality),
        progress=progress,
    )


def run_analyze(
    cfg,
    model: str | Path,
    manifest: str | Path,
    out: str | Path,
    *,
    progress: bool = True,
    name: str | None = None,
    adapter=None,
    conditions: Sequence[str] | None = None,
    lexicons: Sequence[str] = ("en", "synthetic"),
    judge_model: str | Path | None = None,
    reuse: dict[str, list[dict]] | None = None,
) -> dict:
    """What ``emorl analyze modality --model DIR --manifest M --out DIR`` runs: load the model,
    read the manifest's evaluation rows (``eval.split``; ``cfg.data.max_samples`` applies), run
    ``emorl.eval.modality.run_analysis`` with the config's grader and eval settings.
    ``judge_model``: a checkpoint used as judge."""
    from emorl.eval.attribution import AdapterJudge
    from emorl.eval.modality import CONDITIONS, run_analysis

    adapter = adapter or load_adapter(cfg, model)
    samples = load_samples(
        manifest,
        cfg.data.max_samples,
        split=cfg.eval.split,
        default="test",
        key="eval.split",
        exclude_flagged=cfg.data.exclude_flagged,
    )
    judge = AdapterJudge(load_adapter(cfg, judge_model)) if judge_model else None
    recipe = recipe_for(cfg)
    return run_analysis(
        adapter,
        make_builder(cfg, adapter),
        samples,
        Path(out),
        style=recipe.style,
        recipe=recipe,
        batch_size=cfg.eval.batch_size,
        max_new_tokens=cfg.eval.max_new_tokens,
        conditions=conditions or CONDITIONS,
        lexicons=lexicons,
        judge=judge,
        progress=progress,
        reuse=reuse,
        name=name,
        model=str(model),
        manifest=str(Path(manifest).resolve()),
    )
