"""One model answering clips: the model's run config (recipe, answer style, label set, frames),
its prompts, batched greedy inference, a probability for every class, and modality contributions.

**Class probabilities** are ``emorl.eval.predict.option_probabilities``: P(class as the answer |
prompt, the model's own reasoning), summing to 1 over the label set, as ``emorl predict`` gives.

**Modality contribution** (``ablation=true``; clips with video and audio, a model that takes
both): the clip is also run with video only and with audio only (the same prompt, one modality's
media left out, as ``emorl analyze modality`` does for a test set). Let c be the class with the
highest probability given both modalities. The contribution of a modality is how much c's
probability falls when that modality is taken away:

    contribution(video) = P_av(c) - P_audio-only(c)      contribution(audio) = P_av(c) - P_video-only(c)

In [-1, 1]: near 0, the answer does not need that modality; negative, the other modality alone
points to c more strongly. It describes this model on this clip (an occlusion test), not the clip.
"""

from __future__ import annotations

import time

import torch

from emorl.data.manifest import Sample
from emorl.models.adapter import Modality, PromptInputs, SamplingParams
from emorl.serve.batcher import Job
from emorl.serve.media import DecodeSpec
from emorl.serve.settings import ServeError, ServeSettings


class Engine:
    """The model and everything its run config says about reading clips and answers.

    ``cfg``: the resolved run config (``config_for_model``); ``adapter``: the loaded model.
    """

    def __init__(self, cfg, adapter, *, model: str = ""):
        from emorl.data.labels import label_words
        from emorl.eval.attribution import lexicon
        from emorl.eval.predict import model_labels
        from emorl.recipes.rewards import recipe_for
        from emorl.runs import make_builder

        self.cfg = cfg
        self.adapter = adapter
        self.model = model
        self.labels, self.dataset = model_labels(cfg.prompt.labels)
        self.words = label_words(self.dataset)
        self.recipe = recipe_for(cfg)
        self.builder = make_builder(cfg, adapter)
        self.modality = Modality.parse(cfg.data.modality)
        self.params = SamplingParams(max_new_tokens=cfg.eval.max_new_tokens, greedy=True)
        self.lexicon = lexicon()
        self.phase_seconds: dict[str, float] = {}  # model-thread time by phase, summed (GET /metrics)

    def describe(self) -> dict:
        """What /health reports about the model."""
        return {
            "model": self.model,
            "family": type(self.adapter.model).__name__,
            "labels": list(self.labels),
            "label_set": self.dataset,
            "recipe": self.recipe.name or self.cfg.prompt.recipe,
            "answer_style": self.recipe.style,
            "modality": self.modality.value,
            "num_frames": self.builder.num_frames,
            "frame_size": self.builder.frame_size,
            "max_new_tokens": self.params.max_new_tokens,
            "images": self.takes_images,
            "device": str(self.adapter.device),
            "dtype": str(next(self.adapter.model.parameters()).dtype).removeprefix("torch."),
        }

    def decode_spec(self, s: ServeSettings) -> DecodeSpec:
        from emorl.runs import media_limits

        return DecodeSpec(
            num_frames=self.builder.num_frames,
            frame_size=self.builder.frame_size,
            want_video=self.modality.has_video,
            want_audio=self.modality.has_audio,
            on_missing_audio=self.cfg.data.on_missing_audio,
            limits=media_limits(self.cfg),
            max_seconds=s.max_seconds,
            max_pixels=s.max_pixels,
            max_decoded_bytes=int(s.max_decoded_mb * 2**20),
            images=self.takes_images,
        )

    @property
    def takes_images(self) -> bool:
        """Still images are answered when the family takes them and the model reads pictures (a
        still image under a visual modality is an ``IMAGE`` prompt, as in training: prompting.available)."""
        return Modality.IMAGE in self.adapter.modalities and self.modality.has_visual

    # ---------------------------------------------------------------- prompts
    def conditions(self, job: Job) -> list[Modality]:
        """The main condition (the model's modality restricted to what the clip carries) and, with
        ablation on a clip with both, video only and audio only. A still image is one ``IMAGE`` prompt
        (no ablation: it has one modality)."""
        if job.kind == "image":
            if not self.takes_images:
                raise ServeError(415, "image_input", f"{job.name}: still images are not an input of this model")
            return [Modality.IMAGE]
        has_v = job.clip.frames is not None and job.kind == "video"
        has_a = job.clip.audio is not None
        want_v, want_a = self.modality.has_video and has_v, self.modality.has_audio and has_a
        if want_v and want_a:
            main = Modality.AV
        elif want_v or want_a:
            main = Modality.VIDEO if want_v else Modality.AUDIO
        else:
            raise ServeError(
                422,
                "modality_unavailable",
                f"{job.name}: the model takes {self.modality.value} and the "
                f"file carries {'audio' if has_a else 'video' if has_v else 'neither'}",
            )
        return [main, Modality.VIDEO, Modality.AUDIO] if job.ablation and main == Modality.AV else [main]

    def sample_of(self, job: Job) -> Sample:
        return Sample(
            id=job.id, media=job.name, label="", dataset=self.dataset, split="serve", label_set=list(self.labels)
        )

    def prompt(self, job: Job, modality: Modality) -> PromptInputs:
        """The prompt ``PromptBuilder.prompt`` builds for this clip (same text, frames, audio and
        fps), without its per-sample caches (a server sees every clip once)."""
        c = job.clip
        fps = (self.builder.num_frames / c.duration) if c.duration else 2.0
        return self.adapter.encode(
            c.frames if modality.has_visual else None,
            c.audio if modality.has_audio else None,
            self.builder.text(self.sample_of(job)),
            modality,
            fps=fps,
            key=f"{job.id}|{modality.value}",
        )

    # ---------------------------------------------------------------- inference
    def run(self, jobs: list[Job]) -> list[dict | ServeError]:
        """Answers for ``jobs`` (one batch): a result dict or a ServeError per job, in order."""
        from emorl.eval.predict import option_probabilities
        from emorl.models.adapter import sample_by_modality

        out: list[dict | ServeError] = [None] * len(jobs)  # type: ignore[list-item]
        t0 = time.perf_counter()
        prompts: list[PromptInputs] = []
        owner: list[tuple[int, Modality]] = []
        for i, j in enumerate(jobs):
            try:
                for m in self.conditions(j):
                    prompts.append(self.prompt(j, m))
                    owner.append((i, m))
            except ServeError as e:
                out[i] = e
            except ValueError as e:
                out[i] = ServeError(422, "bad_media", f"{j.name}: {e}")
        if not prompts:
            return out
        t1 = time.perf_counter()
        with torch.no_grad():
            texts = [t[0] for t in sample_by_modality(self.adapter, prompts, 1, self.params).texts]
            t2 = time.perf_counter()
            probs = option_probabilities(self.adapter, prompts, texts, self.labels, self.recipe.style, self.words)
        t3 = time.perf_counter()
        for k, dt in (("encode", t1 - t0), ("generate", t2 - t1), ("probabilities", t3 - t2)):
            self.phase_seconds[k] = self.phase_seconds.get(k, 0.0) + dt
        per: dict[int, dict[Modality, tuple[str, dict]]] = {}
        for (i, m), text, p in zip(owner, texts, probs, strict=True):
            if out[i] is None:
                per.setdefault(i, {})[m] = (text, p)
        for i, conds in per.items():
            out[i] = self.result(jobs[i], conds)
        return out

    def result(self, job: Job, conds: dict[Modality, tuple[str, dict]]) -> dict:
        from emorl.eval.attribution import find_cues

        main = next(iter(conds))
        text, probs = conds[main]
        parsed = self.recipe.parse(text, self.labels, self.words)
        cues = [
            {"start": m.start, "end": m.end, "phrase": m.phrase, "modality": m.modality, "kind": m.kind}
            for m in find_cues(parsed.reasoning, self.lexicon)
        ]
        return {
            "id": job.name,
            "emotion": parsed.emotion,
            "probabilities": probs,
            "reasoning": parsed.reasoning,
            "format_ok": bool(parsed.format_ok),
            "parse": parsed.reason,
            "completion": text,
            "modality": main.value,
            "cues": cues,
            # ablation asked for a clip of one modality (a still image, a silent or audio-only file): said, not ignored
            "media_notes": job.media_notes + (["ablation:single_modality"] if job.ablation and len(conds) == 1 else []),
            "ablation": contributions(conds, self.recipe, self.labels, self.words) if len(conds) > 1 else None,
        }


def contributions(conds: dict[Modality, tuple[str, dict]], recipe, labels, words) -> dict:
    """Per condition its answer and probabilities, and each modality's contribution (module
    docstring) to the top class of the full-input condition."""
    p_av = conds[Modality.AV][1]
    top = max(p_av, key=p_av.get)
    out = {"reference_class": top, "conditions": {}}
    for m, (text, p) in conds.items():
        out["conditions"][m.value] = {"emotion": recipe.parse(text, labels, words).emotion, "probabilities": p}
    out["contributions"] = {
        "video": p_av[top] - conds[Modality.AUDIO][1][top],
        "audio": p_av[top] - conds[Modality.VIDEO][1][top],
    }
    return out
