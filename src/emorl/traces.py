"""Reasoning traces for any corpus: a teacher writes cold-start SFT data (R1-Omni's first stage).

``emorl traces generate --teacher MODEL --manifest M --out T.jsonl``: for every clip, the teacher
(any supported model; a large omni model, or your own checkpoint) samples ``traces.per_clip``
completions with the recipe's prompt. Rejection sampling keeps those whose answer is the clip's
label (the recipe's grader) and that pass the filters:

- ``format``: the completion follows the recipe's format (a cold start must teach it);
- ``no_cue``: the reasoning states the label without citing any cue phrase of the cue lexicon
  (``emorl.eval.attribution``; ``traces.lexicons``);
- ``cites_missing_audio`` / ``cites_missing_video``: it describes a modality the clip does not
  have (sounds for a silent clip);
- ``duplicate``: the same reasoning again for the same clip.

Clips where no sample survives get, with ``traces.rationalize``, a label-conditioned
rationalization (STaR): the teacher is told the emotion and asked to explain the cues; it passes
the same filters and is marked ``meta.trace_source = "rationalized"``. Clips that already carry a
human trace (EMER: ``meta.trace``) keep it (``"human"``) and are not sent to the teacher.

The output is a manifest: one row per kept trace (ids ``<clip id>#t<k>``), ``meta.trace`` holding
the completion, ready for ``emorl sft sft.target=trace data.train=T.jsonl``. At most
``traces.keep_per_clip`` traces per clip and ``traces.max_per_class`` per class (0: no cap) are
kept. ``T.stats.json`` holds the acceptance statistics per class and the rejection reasons;
``T.progress.jsonl`` records every finished clip, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from emorl.config import RunConfig, save_run_config
from emorl.data.manifest import Sample, write_manifest
from emorl.eval.attribution import attribute, lexicon
from emorl.utils import atomic_write_json

RATIONALIZE = ("The emotion expressed in this clip is {word}. Explain the visual and audio cues in the clip that show "
               "it, then give the emotion as the final answer.")


@dataclass
class Verdict:
    """One candidate trace judged: ``reason`` is 'ok' or why it was rejected."""

    text: str
    reason: str
    source: str = "teacher"


@dataclass
class ClipResult:
    sample: Sample
    kept: list[Verdict] = field(default_factory=list)
    rejected: Counter = field(default_factory=Counter)
    sampled: int = 0
    rationalized: int = 0


def judge_trace(text: str, sample: Sample, recipe, *, has_video: bool, has_audio: bool, lex, seen: set[str],
                require_cue: bool = True) -> str:
    """'ok', or the first filter ``text`` fails for ``sample`` (module docstring)."""
    parsed = recipe.parse(text, sample.labels, sample.words)
    if parsed.emotion != sample.label:
        return "wrong_answer" if parsed.emotion else f"no_answer:{parsed.reason}"
    if not parsed.format_ok:
        return "format"
    cues = attribute(parsed.reasoning, lex)
    if require_cue and cues["cites"] == "none":
        return "no_cue"
    if not has_audio and (cues["audio"]["cue"] or cues["audio"]["flat"]):
        return "cites_missing_audio"
    if not has_video and (cues["video"]["cue"] or cues["video"]["flat"]):
        return "cites_missing_video"
    key = re.sub(r"\s+", " ", parsed.reasoning.strip().lower())
    if key in seen:
        return "duplicate"
    seen.add(key)
    return "ok"


def _progress(path: Path) -> dict[str, dict]:
    done: dict[str, dict] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
                done[row["id"]] = row
            except (json.JSONDecodeError, KeyError):
                continue  # a line being written when the run stopped
    return done


def _append(path: Path, rows: list[dict]) -> None:
    with path.open("a", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _generate(adapter, builder, batch: list[Sample], cfg: RunConfig, recipe, lex, rationalize_spec) -> list[ClipResult]:
    from emorl.models.adapter import SamplingParams, sample_by_modality

    t = cfg.traces
    params = SamplingParams(max_new_tokens=cfg.sampling.max_new_tokens, temperature=t.temperature,
                            top_p=cfg.sampling.top_p, top_k=cfg.sampling.top_k)
    prompts = [builder.prompt(s) for s in batch]
    outs = sample_by_modality(adapter, prompts, t.per_clip, params)
    results = []
    for s, p, texts in zip(batch, prompts, outs.texts, strict=True):
        r, seen = ClipResult(s, sampled=len(texts)), set()
        kw = {"has_video": p.modality.has_video, "has_audio": p.modality.has_audio, "lex": lex,
              "require_cue": t.require_cue}
        for text in texts:
            reason = judge_trace(text, s, recipe, seen=seen, **kw)
            (r.kept.append(Verdict(text, reason)) if reason == "ok" else r.rejected.update([reason]))
        if not r.kept and t.rationalize:
            word = s.words.get(s.label, s.label)
            rb = copy.copy(builder)
            rb.spec = rationalize_spec(RATIONALIZE.format(word=word))
            rb._prompts = {}
            rp = rb.prompt(s)
            for text in sample_by_modality(adapter, [rp], t.per_clip, params).texts[0]:
                r.rationalized += 1
                reason = judge_trace(text, s, recipe, seen=seen, **kw)
                if reason == "ok":
                    r.kept.append(Verdict(text, reason, "rationalized"))
                else:
                    r.rejected.update([f"rationalized:{reason}"])
        r.kept = r.kept[: t.keep_per_clip]
        results.append(r)
    return results


def generate_traces(cfg: RunConfig, teacher: str | Path, manifest: str | Path, out: str | Path, *,
                    adapter=None, progress: bool = True) -> dict:
    """Write ``out`` (the traces manifest), ``<out>.stats.json`` and ``<out>.progress.jsonl``."""
    from tqdm.auto import tqdm

    from emorl.recipes.prompts import PromptSpec, recipe_prompt
    from emorl.recipes.rewards import recipe_for
    from emorl.runs import load_adapter, load_samples, make_builder
    from emorl.utils import chunks

    t = cfg.traces
    if t.per_clip < 1 or t.keep_per_clip < 1:
        raise ValueError(f"traces.per_clip and traces.keep_per_clip must be >= 1, got {t.per_clip}, {t.keep_per_clip}")
    out = Path(out)
    if out.suffix != ".jsonl":
        raise ValueError(f"{out}: the traces manifest must be a .jsonl file")
    out.parent.mkdir(parents=True, exist_ok=True)
    prog_path, stats_path = out.with_suffix(".progress.jsonl"), out.with_suffix(".stats.json")
    save_run_config(cfg, out.parent) if not (out.parent / "config.yaml").exists() else None
    samples = load_samples(manifest, cfg.data.max_samples, split=cfg.data.split, default="train",
                           exclude_flagged=cfg.data.exclude_flagged)
    done = _progress(prog_path)
    recipe = recipe_for(cfg)
    lex = lexicon(*t.lexicons)
    human = [s for s in samples if s.meta.get("trace")]
    todo = [s for s in samples if not s.meta.get("trace") and s.id not in done]
    if todo:
        adapter = adapter or load_adapter(cfg, teacher)
        builder = make_builder(cfg, adapter)
        _, fmt = recipe_prompt(cfg.prompt.recipe, cfg.prompt.question, cfg.prompt.format)

        def rationalize_spec(question: str) -> PromptSpec:
            return PromptSpec(question, fmt, cfg.prompt.with_options)

        bar = tqdm(total=len(samples) - len(human), initial=len(done), desc="traces", disable=not progress)
        for batch in chunks(todo, cfg.eval.batch_size):
            rows = []
            for r in _generate(adapter, builder, list(batch), cfg, recipe, lex, rationalize_spec):
                rows.append({"id": r.sample.id, "label": r.sample.label, "sampled": r.sampled,
                             "rationalized": r.rationalized, "rejected": dict(r.rejected),
                             "kept": [{"text": v.text, "source": v.source} for v in r.kept]})
            _append(prog_path, rows)
            done.update({row["id"]: row for row in rows})
            bar.update(len(batch))
        bar.close()
    return write_outputs(samples, done, out, stats_path, max_per_class=t.max_per_class, teacher=str(teacher))


def write_outputs(samples: list[Sample], done: dict[str, dict], out: Path, stats_path: Path, *, max_per_class: int,
                  teacher: str) -> dict:
    """The traces manifest (class caps applied in manifest order) and the statistics, written atomically."""
    per_class: dict[str, Counter] = defaultdict(Counter)
    rows: list[Sample] = []
    for s in samples:
        c = per_class[s.label]
        c["clips"] += 1
        if s.meta.get("trace"):
            kept = [{"text": s.meta["trace"], "source": "human"}]
        else:
            d = done.get(s.id)
            if d is None:
                continue
            c["sampled"] += d["sampled"]
            c["rationalized_samples"] += d["rationalized"]
            for k, v in d["rejected"].items():
                c[f"rejected:{k}"] += v
            kept = d["kept"]
        for i, k in enumerate(kept):
            if max_per_class and c["kept"] >= max_per_class:
                c["capped"] += 1
                continue
            c["kept"] += 1
            c[f"kept_{k['source']}"] += 1
            meta = {**s.meta, "trace": k["text"], "trace_source": k["source"], "teacher": teacher, "clip_id": s.id}
            rows.append(Sample(**{**s.__dict__, "id": f"{s.id}#t{i}", "meta": meta}))
        c["clips_with_trace"] += bool(kept)
    write_manifest(out, rows, relative_to=out.parent.resolve())
    stats = {"teacher": teacher, "clips": len(samples), "traces": len(rows),
             "per_class": {k: dict(v) for k, v in sorted(per_class.items())},
             "acceptance": {k: (v["kept_teacher"] / v["sampled"] if v["sampled"] else None)
                            for k, v in sorted(per_class.items())}}
    atomic_write_json(stats_path, stats)
    return {"out": str(out), "stats": str(stats_path), "traces": len(rows), "clips": len(samples)}
