"""EMO-R3's Reflective Emotional Reward on omni clips and still images: a judge (the current
policy, as released; or a frozen copy of the starting checkpoint, or another model: see
``emorl.rl.judge``) re-reads the policy's reasoning in extra passes (no gradients) and its answers
become reward components.

Per completion, batched over every completion of a GRPO step:

- ``coherence`` (text only): the judge reads stages 1-2 (EMO-R3's ``<step1>.*?</step2>``) and
  names one emotion from the sample's label set (as the dataset words it: EmoSet's anger,
  sadness); 1 if it is the label, 0 if it is another emotion, 0.5 when there is no usable answer.
- ``grounding`` (media + text): the judge sees the clip's video and audio, or the still image
  (EMO-R3's own question: "Can the following text describe the image?"), and says whether the
  stage-1 description fits; yes -> 1, no -> 0, anything else -> 0.5.
- ``grounding_video`` / ``grounding_audio`` (``grounding="per_modality"``, an omni extension): the
  sentences of stage 1 that cite what is seen (heard) against the video-only (audio-only) clip; a
  still image is checked as an image for ``video`` and has no ``audio`` check (0.5).

With ``scoring="logprob"`` each question is one scoring pass over its candidate answers instead
of a sampled word, and the component is the expected score (``emorl.rl.judge``).

Where emorl deliberately departs from the reference code (SeerRay-Lab/emo-r3 ray_trainer.py and
reward_function/emor3.py), and why:

- The reflection answer is read with the shared vocabulary (``emotions_in``: case, punctuation and
  synonyms such as "sadness" -> sad), not ``output.lower() == gt.lower()`` (which fails "Sad." and
  " sad"). No emotion named (empty, "None", "I don't know") is "no usable answer" -> 0.5 (the
  reference gives 0.5 only for empty / "none", 0 otherwise). Several different emotions -> 0, as
  the reference's exact match would.
- yes/no is read on words, not substrings: the reference scores "eyes" as yes and "None",
  "not", "know" as no. Both "yes" and "no" -> 0.5 (the reference: yes wins).
- No reasoning to reflect on (no ``<step1>…</step2>`` / no stage 1): the reference still asks the
  policy ("Answer 'None'") and, through "None" containing "no", ends up with coherence 0.5 and
  grounding 0.0. emorl skips the generation and assigns those values directly.
- Answers injected into the reasoning (``\\boxed{…}``, ``<answer>…</answer>``) are removed before
  the coherence judge reads it, so it judges "the reasoning alone" and cannot copy a smuggled answer.
- The text is normalised like the format check (no whitespace around '<', '>', '/') before the
  stages are extracted.
- Prompts: EMO-R3's wording ("image" for still images; "clip" (joint), "video" or "audio" for
  clips), and the sample's own label set listed in its dataset's words (EMO-R3 hard-codes its 8
  categories). The reference's missing space ("image?Please") is kept.
- For the ``tags`` style (R1-Omni ``<think>``) the whole think text stands in for both stage 1-2
  (coherence) and stage 1 (grounding); used to measure R1-Omni-style models the same way.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from emorl.data.labels import emotions_in
from emorl.data.manifest import Sample
from emorl.models.adapter import Modality, OmniAdapter, PromptInputs, SamplingParams, sample_by_modality
from emorl.prompting import PromptBuilder, available, carried
from emorl.recipes.emo_r3 import (  # noqa: F401  (re-exported: the reflection's texts live with the recipe)
    AUDIO_WORDS,
    COHERENCE_PROMPT,
    GROUNDING_PROMPT,
    THINK_STYLES,
    VISUAL_WORDS,
    coherence_prompt,
    grounding_prompt,
    reflection_reasoning,
    split_by_modality,
    stage1_description,
)
from emorl.rl import judge as judges
from emorl.rl.rollout import Group
from emorl.utils import chunks

# grounding view -> the media it shows
VIEWS: dict[str, Modality] = {
    "joint": Modality.AV,
    "video": Modality.VIDEO,
    "audio": Modality.AUDIO,
    "image": Modality.IMAGE,
}
GROUNDING_MODES = ("none", "joint", "per_modality")
NO_REASONING_COHERENCE = 0.5  # reference: "Answer 'None'" -> "None" -> 0.5
NO_DESCRIPTION_GROUNDING = 0.0  # reference: "Answer 'None'" -> "None" contains "no" -> 0.0
_WORD = re.compile(r"[a-z]+")


def grounding_views(mode: str) -> tuple[str, ...]:
    """The grounding passes of a ``reflection.grounding`` mode."""
    if mode not in GROUNDING_MODES:
        raise ValueError(f"reflection.grounding must be one of {', '.join(GROUNDING_MODES)}, got {mode!r}")
    return {"none": (), "joint": ("joint",), "per_modality": ("joint", "video", "audio")}[mode]


def sample_view(s: Sample, view: str) -> str | None:
    """The view a sample is checked under: a still image is shown as an image (EMO-R3's
    ``<image>`` question, "describe the image") for the joint and video views and has nothing to
    check for audio (None); a clip gets ``view`` when it carries that media, else None."""
    if carried(s) == "image":
        return "image" if view in ("joint", "video", "image") else None
    return view if has_view(s, view) else None


# ----------------------------------------------------------------------------- scoring
def coherence_score(output: str | None, label: str) -> float:
    """Score a coherence answer against the label: 1 / 0 for one emotion, 0 for several,
    0.5 for no usable answer (nothing asked, empty, "None", no emotion word).

    >>> [coherence_score(o, "sad") for o in ("Sadness.", "happy", "None", "", "sad or angry", None)]
    [1.0, 0.0, 0.5, 0.5, 0.0, 0.5]
    """
    if output is None:
        return NO_REASONING_COHERENCE
    named = emotions_in(output)
    if not named:
        return 0.5
    return float(len(named) == 1 and named[0] == label)


def grounding_score(output: str | None) -> float:
    """yes -> 1, no -> 0, neither or both -> 0.5 (word level); nothing asked -> 0.

    >>> [grounding_score(o) for o in ("Yes.", "no", "None", "the eyes", "yes and no", "", None)]
    [1.0, 0.0, 0.5, 0.5, 0.5, 0.5, 0.0]
    """
    if output is None:
        return NO_DESCRIPTION_GROUNDING
    words = set(_WORD.findall(output.lower()))
    yes, no = "yes" in words, "no" in words
    return 1.0 if yes and not no else 0.0 if no and not yes else 0.5


def label_names(s: Sample) -> tuple[str, ...]:
    """The sample's label set as its dataset words it (EmoSet: anger, sadness), for the coherence question."""
    words = s.words
    return tuple(words.get(c, c) for c in s.labels)


# ----------------------------------------------------------------------------- passes
def encode_clip_prompt(
    adapter: OmniAdapter, builder: PromptBuilder, s: Sample, text: str, modality: Modality
) -> PromptInputs | None:
    """``text`` with the sample's media under ``modality`` (restricted to what the sample carries:
    a still image is an image prompt); None when the sample lacks that modality altogether. Media
    come from ``builder``'s decode cache; the prompt is encoded by ``adapter`` (the judge)."""
    try:
        modality = available(s, modality)
    except ValueError:  # e.g. audio asked of a video-only sample
        return None
    clip = builder.clip(s, modality)
    audio = clip.audio if modality.has_audio else None
    if modality.has_audio and audio is None:  # on_missing_audio="skip"
        if not modality.has_video:
            return None
        modality = Modality.VIDEO
    fps = clip.fps or 2.0
    return adapter.encode(
        clip.frames if modality.has_visual else None,
        audio,
        text,
        modality,
        fps=fps,
        key=f"{s.id}|reflect|{modality.value}",
    )


def generate(
    adapter: OmniAdapter, prompts: list[PromptInputs | None], params: SamplingParams, batch_size: int
) -> list[str | None]:
    """One completion per prompt (None stays None), ``batch_size`` prompts per call, no gradients
    (the adapter's group-aware sampling path)."""
    live = [i for i, p in enumerate(prompts) if p is not None]
    out: list[str | None] = [None] * len(prompts)
    for idx in chunks(live, batch_size):
        comp = sample_by_modality(adapter, [prompts[i] for i in idx], 1, params)
        for i, texts in zip(idx, comp.texts):
            out[i] = texts[0]
    return out


@dataclass
class Reflection:
    """EMO-R3's reflection as ``ExtraRewards``: ``reflection(groups)`` -> per group, per completion,
    ``{"coherence", ["grounding"], ["grounding_video", "grounding_audio"]}``.

    ``adapter`` is the judge (the policy, a frozen copy or another model: ``emorl.rl.judge``);
    ``scoring`` is ``sample`` (a sampled word) or ``logprob`` (one scoring pass over the candidate
    answers, the expected score). ``last_seconds`` holds the last call's time per pass and
    ``total_seconds`` the sum over calls; ``last_outputs`` the raw judge answers (per group, per
    completion: the sampled text, or ``{candidate: probability}`` with ``logprob``), for logs.
    """

    adapter: OmniAdapter = field(repr=False)
    builder: PromptBuilder = field(repr=False)
    style: str = "boxed"
    grounding: str = "joint"
    params: SamplingParams = field(default_factory=lambda: SamplingParams(16, 0.6, 0.95))
    batch_size: int = 64
    scoring: str = "sample"
    judge: str = "policy"  # what ``adapter`` is, for logs
    last_seconds: dict[str, float] = field(default_factory=dict)
    total_seconds: float = 0.0
    last_outputs: list[list[dict]] = field(default_factory=list, repr=False)

    def __post_init__(self):
        grounding_views(self.grounding)  # validates the mode
        if self.scoring not in judges.SCORINGS:
            raise ValueError(f"reflection.scoring must be one of {', '.join(judges.SCORINGS)}, got {self.scoring!r}")

    @property
    def views(self) -> tuple[str, ...]:
        return grounding_views(self.grounding)

    def __call__(self, groups: list[Group]) -> list[list[dict[str, float]]]:
        samples = [g.sample for g in groups for _ in g.texts]
        flat, outputs = self.score(samples, [t for g in groups for t in g.texts])
        out, raw, k = [], [], 0
        for g in groups:
            out.append(flat[k : k + len(g.texts)])
            raw.append(outputs[k : k + len(g.texts)])
            k += len(g.texts)
        self.last_outputs = raw
        return out

    def score(self, samples: list[Sample], completions: list[str]) -> tuple[list[dict[str, float]], list[dict]]:
        """Reflection components for each (sample, completion) pair, and the raw judge answers."""
        self.last_seconds = {}
        comps: list[dict[str, float]] = [{} for _ in completions]
        raw: list[dict] = [{} for _ in completions]
        t = time.perf_counter()
        reasonings = [reflection_reasoning(c, self.style) for c in completions]
        for i, (v, a) in enumerate(zip(*self.coherence(samples, reasonings))):
            comps[i]["coherence"], raw[i]["coherence"] = v, a
        self.last_seconds["coherence"] = time.perf_counter() - t
        descriptions = [stage1_description(c, self.style) for c in completions]
        for view in self.views:
            t = time.perf_counter()
            name = "grounding" if view == "joint" else f"grounding_{view}"
            for i, (v, a) in enumerate(zip(*self.grounding_pass(samples, descriptions, view))):
                comps[i][name], raw[i][name] = v, a
            self.last_seconds[name] = time.perf_counter() - t
        self.total_seconds += sum(self.last_seconds.values())
        return comps, raw

    def coherence(self, samples: list[Sample], reasonings: list[str | None]) -> tuple[list[float], list]:
        """Coherence per (sample, reasoning): the score and the judge's raw answer (None: not asked)."""
        prompts = [
            self.adapter.encode_text(coherence_prompt(r, label_names(s)), key=f"{s.id}|coherence")
            if r is not None
            else None
            for s, r in zip(samples, reasonings)
        ]
        if self.scoring == "sample":
            answers = generate(self.adapter, prompts, self.params, self.batch_size)
            return [coherence_score(a, s.label) for s, a in zip(samples, answers)], answers
        live = [i for i, p in enumerate(prompts) if p is not None]
        forms = {s.id: _forms(label_names(s)) for s in samples}
        cands = {
            names: judges.candidate_ids(self.adapter, tuple(f for fs in names for f in fs))
            for names in set(forms.values())
        }
        probs = judges.answer_probs(
            self.adapter, [prompts[i] for i in live], [cands[forms[samples[i].id]] for i in live], self.batch_size
        )
        scores = [NO_REASONING_COHERENCE] * len(samples)
        answers: list = [None] * len(samples)
        for i, p in zip(live, probs):
            s = samples[i]
            per = {n: float(sum(p[2 * k : 2 * k + 2])) for k, n in enumerate(label_names(s))}
            mine = per[s.words.get(s.label, s.label)]
            scores[i] = judges.expected_coherence(mine, sum(per.values()))
            answers[i] = {n: round(v, 4) for n, v in per.items()}
        return scores, answers

    def grounding_pass(
        self, samples: list[Sample], descriptions: list[str | None], view: str
    ) -> tuple[list[float], list]:
        """One grounding view per (sample, description): the score and the judge's raw answer.
        A sample without this view's media has nothing to check against: neutral 0.5."""
        views = [sample_view(s, view) for s in samples]
        texts = [d if view == "joint" or d is None else (split_by_modality(d)[view] or None) for d in descriptions]
        prompts = [
            encode_clip_prompt(self.adapter, self.builder, s, grounding_prompt(x, v), VIEWS[v])
            if x is not None and v is not None
            else None
            for s, x, v in zip(samples, texts, views)
        ]
        if self.scoring == "sample":
            answers = generate(self.adapter, prompts, self.params, self.batch_size)
            scores = [grounding_score(a) for a in answers]
        else:
            live = [i for i, p in enumerate(prompts) if p is not None]
            cands = judges.candidate_ids(self.adapter, YES_NO)
            probs = judges.answer_probs(self.adapter, [prompts[i] for i in live], [cands] * len(live), self.batch_size)
            scores, answers = [NO_DESCRIPTION_GROUNDING] * len(samples), [None] * len(samples)
            for i, p in zip(live, probs):
                p_yes, p_no = float(p[0] + p[1]), float(p[2] + p[3])
                scores[i] = judges.expected_grounding(p_yes, p_no)
                answers[i] = {"yes": round(p_yes, 4), "no": round(p_no, 4)}
        for i, (v, x, p) in enumerate(zip(views, texts, prompts)):
            if v is None or (x is not None and p is None):
                scores[i] = 0.5
        return scores, answers


YES_NO = (*judges.YES_FORMS, *judges.NO_FORMS)


def _forms(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """Each label word in two surface forms (``sad``, ``Sad``), the candidates of a logprob coherence pass."""
    return tuple((n, n[:1].upper() + n[1:]) for n in names)


def has_view(s: Sample, view: str) -> bool:
    """Whether the sample carries the media a grounding view needs."""
    try:
        available(s, VIEWS[view])
    except ValueError:
        return False
    return True


def make_reflection(adapter: OmniAdapter, builder: PromptBuilder, cfg) -> Reflection:
    """The reflection for a run config (``cfg.reflection``, answer style of ``cfg.prompt.recipe``),
    to pass as ``train_grpo(..., extra_rewards=make_reflection(adapter, builder, cfg))``. ``adapter``
    is the policy; the judge is it, a frozen copy of ``model.path`` or another checkpoint
    (``reflection.judge``)."""
    from emorl.recipes.rewards import get_recipe

    r = cfg.reflection
    return Reflection(
        judges.load_judge(cfg, adapter),
        builder,
        style=get_recipe(cfg.prompt.recipe).style,
        grounding=r.grounding,
        params=SamplingParams(r.max_new_tokens, r.temperature, r.top_p),
        batch_size=r.batch_size,
        scoring=r.scoring,
        judge=r.judge,
    )
