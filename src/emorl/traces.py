"""Reasoning traces for any corpus: a teacher writes cold-start SFT data (R1-Omni's first stage).

``emorl traces generate --teacher MODEL --manifest M --out T.jsonl``: for every clip of M's rows
(``data.split``, default the training rows; a clip listed once per fold, as in a corpus prepared
with ``--split all``, is traced once), the teacher (any supported model: a large omni model, or
your own checkpoint) samples ``traces.per_clip`` completions with the recipe's prompt
(``prompt.*``, ``sampling.max_new_tokens`` / ``top_p`` / ``top_k``, ``traces.temperature``).
Rejection sampling keeps those whose answer is the clip's label (the recipe's grader, the one the
rewards use) and that pass the filters, in this order:

- ``wrong_answer`` / ``no_answer:<why>``: the answer is another emotion, or none can be read;
- ``format``: the completion does not follow the recipe's format (a cold start must teach it);
- ``no_cue`` (``traces.require_cue``): the reasoning states the label without citing any cue
  phrase of the cue lexicons (``traces.lexicons``, emorl.eval.attribution);
- ``cites_missing_audio`` / ``cites_missing_video``: it describes a modality the clip lacks
  (sounds for a silent clip, or one whose audio was substituted by silence);
- ``duplicate``: the same reasoning (case and spacing aside) again for the same clip.

A clip whose media cannot be decoded is counted (``media_error:<why>``) and skipped.

Clips where no sample survives get, with ``traces.rationalize``, one label-conditioned round
(STaR, Zelikman et al. 2022): the teacher is told the emotion and asked to explain the visual and
audio cues that show it; its completions pass the same filters and are marked
``meta.trace_source = "rationalized"``. The SFT prompt stays the normal one: only the teacher saw
the label. Rows that already carry a human trace (EMER: ``meta.trace``) keep it
(``"human"``) and are not sent to the teacher.

The output is a manifest ready for ``emorl sft sft.target=trace data.train=T.jsonl`` (or
``cv.sft_train``): one row per kept trace, id ``<clip id>#t<k>``, split ``train``, no fold,
``meta.trace`` (the completion), ``meta.trace_source``, ``meta.clip_id`` and ``meta.teacher``. At
most ``traces.keep_per_clip`` traces per clip; per class at most ``traces.max_per_class`` (0: no
cap), and with ``traces.balance`` at most the smallest class's count, taken round-robin over clips
(every clip's first trace before any clip's second). ``T.stats.json`` holds the acceptance
statistics per class and the rejection reasons; ``T.progress.jsonl`` records every finished clip
(and the settings it was made with), so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from emorl.config import RunConfig
from emorl.data.manifest import Sample, write_manifest
from emorl.eval.attribution import attribute, lexicon
from emorl.utils import atomic_write_json

RATIONALIZE = (
    "The emotion expressed in this clip is {word}. Explain the visual and audio cues in the clip that show "
    "it, then give the emotion as the final answer."
)


@dataclass
class ClipResult:
    """One clip's candidates judged: ``kept`` ({text, source}), rejection reasons counted."""

    sample: Sample
    kept: list[dict] = field(default_factory=list)
    rejected: Counter = field(default_factory=Counter)
    sampled: int = 0
    accepted: int = 0
    rationalized: int = 0
    rationalized_accepted: int = 0

    def to_json(self) -> dict:
        return {
            "id": self.sample.id,
            "label": self.sample.label,
            "sampled": self.sampled,
            "accepted": self.accepted,
            "rationalized": self.rationalized,
            "rationalized_accepted": self.rationalized_accepted,
            "rejected": dict(self.rejected),
            "kept": self.kept,
        }


def judge_trace(
    text: str,
    sample: Sample,
    recipe,
    *,
    has_video: bool,
    has_audio: bool,
    lex,
    seen: set[str],
    require_cue: bool = True,
) -> str:
    """'ok', or the first filter ``text`` fails for ``sample`` (module docstring). An accepted
    reasoning is added to ``seen`` (the clip's reasonings so far)."""
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


def clip_key(s: Sample) -> str:
    """A clip's identity across manifest rows: its media (and separate audio) paths, resolved."""
    return "|".join(os.path.realpath(p) for p in (s.media, s.audio) if p)


def sample_traces(adapter, prompts, k: int, params) -> list[list[str]]:
    """The teacher's ``k`` completions per prompt (texts)."""
    from emorl.models.adapter import sample_by_modality

    return sample_by_modality(adapter, prompts, k, params).texts


def rationalization_prompt(builder, s: Sample, spec):
    """``s``'s prompt with the label-conditioned question ``spec``: a copy of ``builder`` that shares
    its decoded clips and keeps its own prompt cache (the normal prompts stay cached as they are)."""
    rb = copy.copy(builder)
    rb.spec, rb._prompts = spec, {}
    p = rb.prompt(s)
    return dataclasses.replace(p, key=f"{p.key}|rationalize")


def media_present(builder, s: Sample, prompt) -> tuple[bool, bool]:
    """(has video, has audio) of what the teacher was given: audio substituted by silence
    (``data.on_missing_audio=silence``) does not count."""
    silent = any(n.startswith("no_audio") for n in builder.notes.get(s.id, []))
    return prompt.modality.has_visual, prompt.modality.has_audio and not silent


def judge_clip(s: Sample, texts: list[str], result: ClipResult, recipe, seen: set[str], *, source: str, **kw) -> None:
    for text in texts:
        reason = judge_trace(text, s, recipe, seen=seen, **kw)
        if reason == "ok":
            result.kept.append({"text": text, "source": source})
            if source == "teacher":
                result.accepted += 1
            else:
                result.rationalized_accepted += 1
        else:
            result.rejected.update([reason if source == "teacher" else f"rationalized:{reason}"])


def generate_batch(adapter, builder, batch: list[Sample], cfg: RunConfig, recipe, lex, spec_for) -> list[ClipResult]:
    """Sample, judge and (where nothing survived) rationalize one batch of clips."""
    from emorl.models.adapter import SamplingParams

    t = cfg.traces
    params = SamplingParams(
        max_new_tokens=cfg.sampling.max_new_tokens,
        temperature=t.temperature,
        top_p=cfg.sampling.top_p,
        top_k=cfg.sampling.top_k,
    )
    from emorl.data.media import MediaError

    results, ok, prompts = [], [], []
    for s in batch:  # a clip whose media cannot be decoded is recorded (media_error) and skipped
        try:
            prompts.append(builder.prompt(s))
            ok.append(s)
        except MediaError as e:
            results.append(ClipResult(s, rejected=Counter({f"media_error:{e.outcome}": 1})))
    for s, p, texts in zip(ok, prompts, sample_traces(adapter, prompts, t.per_clip, params) if ok else [], strict=True):
        r, seen = ClipResult(s, sampled=len(texts)), set()
        has_video, has_audio = media_present(builder, s, p)
        kw = {"has_video": has_video, "has_audio": has_audio, "lex": lex, "require_cue": t.require_cue}
        judge_clip(s, texts, r, recipe, seen, source="teacher", **kw)
        results.append(r)
    todo = [r for r in results if not r.kept and r.sampled] if t.rationalize else []
    if todo:
        rprompts = [rationalization_prompt(builder, r.sample, spec_for(r.sample)) for r in todo]
        for r, p, texts in zip(todo, rprompts, sample_traces(adapter, rprompts, t.per_clip, params), strict=True):
            has_video, has_audio = media_present(builder, r.sample, p)
            r.rationalized = len(texts)
            judge_clip(
                r.sample,
                texts,
                r,
                recipe,
                set(),
                source="rationalized",
                has_video=has_video,
                has_audio=has_audio,
                lex=lex,
                require_cue=t.require_cue,
            )
    for r in results:
        r.kept = r.kept[: t.keep_per_clip]
    return results


class Progress:
    """``<out>.progress.jsonl``: a settings line, then one line per finished clip, appended and
    flushed per batch; an interrupted run continues from it (a half-written last line is redone)."""

    def __init__(self, path: Path, settings: dict):
        self.path = path
        self.done: dict[str, dict] = {}
        if path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            head = json.loads(lines[0]) if lines else {}
            if head.get("settings") != settings:
                diff = {
                    k: (head.get("settings", {}).get(k), v)
                    for k, v in settings.items()
                    if head.get("settings", {}).get(k) != v
                }
                raise ValueError(
                    f"{path}: made with other settings ((then, now): {diff}); continue with the same "
                    "settings, or write to another --out"
                )
            for line in lines[1:]:
                try:
                    row = json.loads(line)
                    self.done[row["id"]] = row
                except (json.JSONDecodeError, KeyError):
                    continue  # the line being written when the run stopped: the clip is redone
        else:
            self._append([{"settings": settings}])

    def add(self, rows: list[dict]) -> None:
        self._append(rows)
        self.done.update({r["id"]: r for r in rows})

    def _append(self, rows: list[dict]) -> None:
        with self.path.open("a+", encoding="utf-8") as f:
            f.seek(0, os.SEEK_END)
            if f.tell():  # a half-written last line must not swallow the next row
                f.seek(f.tell() - 1)
                if f.read(1) != "\n":
                    f.write("\n")
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())


def trace_rows(cfg: RunConfig, manifest: str | Path) -> list[Sample]:
    """The rows to trace: ``data.split`` rows (default train) of ``manifest``, one per clip."""
    from emorl.data.manifest import read_manifest, select_split
    from emorl.runs import drop_flagged

    rows = select_split(
        read_manifest(manifest), cfg.data.split, default="train", source=str(manifest), key="data.split"
    )
    if cfg.data.exclude_flagged:
        rows = drop_flagged(rows, str(manifest))
    unique = list({clip_key(s): s for s in reversed(rows)}.values())[::-1]  # first row of each clip
    return unique[: cfg.data.max_samples] if cfg.data.max_samples else unique


def settings_of(cfg: RunConfig, teacher: str) -> dict:
    """What the candidates of ``progress.jsonl`` depend on (class caps do not: applied at the end)."""
    t, d = cfg.traces, cfg.data
    return {
        "teacher": str(teacher),
        "per_clip": t.per_clip,
        "keep_per_clip": t.keep_per_clip,
        "temperature": t.temperature,
        "rationalize": t.rationalize,
        "require_cue": t.require_cue,
        "lexicons": list(t.lexicons),
        "prompt": dataclasses.asdict(cfg.prompt),
        "grading": dataclasses.asdict(cfg.grading),
        "num_frames": d.num_frames,
        "frame_size": d.frame_size,
        "modality": d.modality,
        "max_new_tokens": cfg.sampling.max_new_tokens,
        "top_p": cfg.sampling.top_p,
        "top_k": cfg.sampling.top_k,
    }


def generate_traces(
    cfg: RunConfig, teacher: str | Path, manifest: str | Path, out: str | Path, *, adapter=None, progress: bool = True
) -> dict:
    """Write ``out`` (the traces manifest), ``<out>.stats.json`` and ``<out>.progress.jsonl``."""
    from tqdm.auto import tqdm

    from emorl.recipes.prompts import PromptSpec, recipe_prompt
    from emorl.recipes.rewards import recipe_for
    from emorl.runs import load_adapter, make_builder
    from emorl.utils import chunks, seed_everything

    t = cfg.traces
    for name in ("per_clip", "keep_per_clip", "clips_per_batch"):
        if getattr(t, name) < 1:
            raise ValueError(f"traces.{name} must be >= 1, got {getattr(t, name)}")
    if t.max_per_class < 0:
        raise ValueError(f"traces.max_per_class must be >= 0 (0: no cap), got {t.max_per_class}")
    out = Path(out)
    if out.suffix != ".jsonl":
        raise ValueError(f"{out}: the traces manifest must be a .jsonl file")
    out.parent.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    samples = trace_rows(cfg, manifest)
    recipe, lex = recipe_for(cfg), lexicon(*t.lexicons)
    prog = Progress(out.with_suffix(".progress.jsonl"), settings_of(cfg, str(teacher)))
    todo = [s for s in samples if not s.meta.get("trace") and s.id not in prog.done]
    if todo:
        adapter = adapter or load_adapter(cfg, teacher)
        builder = make_builder(cfg, adapter)
        _, fmt = recipe_prompt(cfg.prompt.recipe, cfg.prompt.question, cfg.prompt.format)

        def spec_for(s: Sample) -> PromptSpec:
            return PromptSpec(RATIONALIZE.format(word=s.words.get(s.label, s.label)), fmt, cfg.prompt.with_options)

        teacher_clips = sum(1 for s in samples if not s.meta.get("trace"))
        bar = tqdm(total=teacher_clips, initial=teacher_clips - len(todo), desc="traces", disable=not progress)
        for batch in chunks(todo, t.clips_per_batch):
            prog.add([r.to_json() for r in generate_batch(adapter, builder, list(batch), cfg, recipe, lex, spec_for)])
            bar.update(len(batch))
        bar.close()
    return write_outputs(
        samples,
        prog.done,
        out,
        out.with_suffix(".stats.json"),
        max_per_class=t.max_per_class,
        balance=t.balance,
        teacher=str(teacher),
    )


def _candidates(samples: list[Sample], done: dict[str, dict]) -> list[tuple[int, int, Sample, dict]]:
    """(rank within its clip, clip order, clip, {text, source}) of every kept trace."""
    out = []
    for order, s in enumerate(samples):
        kept = (
            [{"text": s.meta["trace"], "source": "human"}]
            if s.meta.get("trace")
            else done.get(s.id, {}).get("kept", [])
        )
        out += [(rank, order, s, k) for rank, k in enumerate(kept)]
    return out


def write_outputs(
    samples: list[Sample],
    done: dict[str, dict],
    out: Path,
    stats_path: Path,
    *,
    max_per_class: int,
    balance: bool,
    teacher: str,
) -> dict:
    """The traces manifest (class caps taken round-robin over clips) and the statistics, written
    atomically."""
    cands = _candidates(samples, done)
    per_class: dict[str, Counter] = defaultdict(Counter)
    for s in samples:
        c = per_class[s.label]
        c["clips"] += 1
        d = done.get(s.id)
        if d is not None and not s.meta.get("trace"):
            for k in ("sampled", "accepted", "rationalized", "rationalized_accepted"):
                c[k] += d[k]
            for k, v in d["rejected"].items():
                c[f"rejected:{k}"] += v
    found = Counter(s.label for _, _, s, _ in cands)
    cap = max_per_class or None
    if balance and found:
        cap = min(found.values()) if cap is None else min(cap, min(found.values()))
    chosen: list[tuple[int, int, Sample]] = []
    with_trace: set[str] = set()
    for rank, order, s, k in sorted(cands, key=lambda x: (x[0], x[1])):
        c = per_class[s.label]
        if cap is not None and c["kept"] >= cap:
            c["capped"] += 1
            continue
        c["kept"] += 1
        c[f"kept_{k['source']}"] += 1
        with_trace.add(s.id)
        meta = {**s.meta, "trace": k["text"], "trace_source": k["source"], "clip_id": s.id}
        if k["source"] != "human":
            meta["teacher"] = teacher
        chosen.append((order, rank, dataclasses.replace(s, id=f"{s.id}#t{rank}", split="train", fold=None, meta=meta)))
    for s in samples:
        per_class[s.label]["clips_with_trace"] += s.id in with_trace
    rows = [row for _, _, row in sorted(chosen, key=lambda x: (x[0], x[1]))]  # manifest order
    write_manifest(out, rows, relative_to=out.parent.resolve())
    stats = {
        "teacher": teacher,
        "clips": len(samples),
        "traces": len(rows),
        "class_cap": cap,
        "per_class": {k: dict(v) for k, v in sorted(per_class.items())},
        "acceptance": {
            k: (v["accepted"] / v["sampled"] if v["sampled"] else None) for k, v in sorted(per_class.items())
        },
        "rationalized_acceptance": {
            k: (v["rationalized_accepted"] / v["rationalized"] if v["rationalized"] else None)
            for k, v in sorted(per_class.items())
        },
    }
    atomic_write_json(stats_path, stats)
    if not rows:
        print(f"[traces] warning: no trace passed the filters; {out} is empty (see {stats_path})")
    return {
        "out": str(out),
        "stats": str(stats_path),
        "traces": len(rows),
        "clips": len(samples),
        "clips_with_trace": len(with_trace),
    }
