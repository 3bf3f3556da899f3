"""EMO-R3's Reflective Emotional Reward on omni clips: the current policy re-reads its own
reasoning in extra generation passes (no gradients) and its answers become reward components.

Per completion, batched over every completion of a GRPO step:

- ``coherence`` (text only): the policy reads its stages 1-2 (EMO-R3's ``<step1>.*?</step2>``) and
  names one emotion from the sample's label set; 1 if it is the label, 0 if it is another
  emotion, 0.5 when there is no usable answer.
- ``grounding`` (clip + text): the policy sees the clip's video and audio and says whether its
  stage-1 description fits; yes -> 1, no -> 0, anything else -> 0.5.
- ``grounding_video`` / ``grounding_audio`` (``grounding="per_modality"``, an omni extension): the
  sentences of stage 1 that cite what is seen (heard) against the video-only (audio-only) clip.

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
- Prompts: EMO-R3's wording with "image" replaced by "clip" (joint), "video" or "audio", and the
  sample's own label set listed (EMO-R3 hard-codes its 8 categories). The reference's missing
  space ("image?Please") is kept.
- For the ``tags`` style (R1-Omni ``<think>``) the whole think text stands in for both stage 1-2
  (coherence) and stage 1 (grounding); used to measure R1-Omni-style models the same way.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from emorl.data.labels import emotions_in
from emorl.data.loader import PromptBuilder, available
from emorl.data.manifest import Sample
from emorl.models.adapter import Modality, OmniAdapter, PromptInputs, SamplingParams, sample_by_modality
from emorl.recipes.parse import normalize_tags
from emorl.rl.rollout import Group
from emorl.utils import chunks

COHERENCE_PROMPT = ("{reasoning}\nWhich emotion best describes the text above?\n"
                    "Answer the question using one emotional category (one word only): {labels}.")
GROUNDING_PROMPT = "Can the following text describe the {what}?Please answer with yes or no.{description}"
VIEWS: dict[str, tuple[Modality, str]] = {  # grounding view -> (clip modality, what the question names)
    "joint": (Modality.AV, "clip"),
    "video": (Modality.VIDEO, "video"),
    "audio": (Modality.AUDIO, "audio"),
}
GROUNDING_MODES = ("none", "joint", "per_modality")
NO_REASONING_COHERENCE = 0.5  # reference: "Answer 'None'" -> "None" -> 0.5
NO_DESCRIPTION_GROUNDING = 0.0  # reference: "Answer 'None'" -> "None" contains "no" -> 0.0

_COHERENCE_SPAN = re.compile(r"(<step1>.*?</step2>)", re.DOTALL)
_STEP1_SPAN = re.compile(r"(<step1>.*?)(?=<step2>)", re.DOTALL)
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
THINK_STYLES = ("tags", "think_boxed")  # answer styles whose reasoning is one <think> block
_INJECTED = re.compile(r"\\boxed\{[^{}]*\}|<answer>.*?</answer>", re.DOTALL)
_TAG = re.compile(r"</?(?:step[123]|think|answer)>")
_SENTENCE = re.compile(r"(?<=[.!?;])\s+")
_WORD = re.compile(r"[a-z]+")

# Words that mark a sentence as citing what is seen / heard (general, not synthetic-world specific).
VISUAL_WORDS = frozenset((
    "face", "facial", "expression", "expressions", "brow", "brows", "eyebrow", "eyebrows", "eye", "eyes", "gaze",
    "mouth", "lips", "lip", "jaw", "nose", "cheeks", "forehead", "head", "smile", "smiles", "smiling", "frown",
    "frowning", "grin", "tears", "stare", "staring", "glance", "gesture", "gestures", "posture", "body", "hands",
    "shoulders", "scene", "background", "see", "sees", "seen", "saw", "look", "looks", "looking", "visually",
    "visual", "video", "screen", "shows", "appears", "nodding", "nods"))
AUDIO_WORDS = frozenset((
    "voice", "voices", "vocal", "hear", "hears", "heard", "listening", "listen", "tone", "tones", "intonation",
    "pitch", "pitched", "speech", "speaks", "speaking", "spoken", "speaker", "says", "said", "say", "words",
    "utterance", "sound", "sounds", "audio", "loud", "loudness", "quiet", "volume", "melody", "syllables", "pace",
    "tempo", "shouts", "shouting", "whisper", "whispers", "sigh", "sighs", "laughter", "murmur", "prosody"))


def grounding_views(mode: str) -> tuple[str, ...]:
    """The grounding passes of a ``reflection.grounding`` mode."""
    if mode not in GROUNDING_MODES:
        raise ValueError(f"reflection.grounding must be one of {', '.join(GROUNDING_MODES)}, got {mode!r}")
    return {"none": (), "joint": ("joint",), "per_modality": ("joint", "video", "audio")}[mode]


# ----------------------------------------------------------------------------- extraction
def reflection_reasoning(completion: str, style: str) -> str | None:
    """What the coherence judge reads: EMO-R3's ``<step1>…</step2>`` span (stages 1-2 with their
    tags; SET styles) or the ``<think>`` content (``tags`` and ``think_boxed`` styles), with
    injected answers removed; None when there is none."""
    text = normalize_tags(completion)
    if style in THINK_STYLES:
        m = _THINK.search(text)
    else:
        m = _COHERENCE_SPAN.search(text)
    if not m:
        return None
    reasoning = _INJECTED.sub("", m.group(1)).strip()
    return reasoning if _TAG.sub("", reasoning).strip() else None


def stage1_description(completion: str, style: str) -> str | None:
    """What the grounding judge checks against the clip: EMO-R3's ``<step1>…`` span up to
    ``<step2>`` (SET styles) or the ``<think>`` content (``tags``, ``think_boxed``); None when
    there is none."""
    text = normalize_tags(completion)
    m = _THINK.search(text) if style in THINK_STYLES else _STEP1_SPAN.search(text)
    if not m:
        return None
    desc = m.group(1).strip()
    return desc if _TAG.sub("", desc).strip() else None


def split_by_modality(description: str) -> dict[str, str]:
    """The sentences of a description that cite what is seen ('video') and heard ('audio').

    A sentence goes to every modality whose words it uses; one that uses none goes nowhere.

    >>> split_by_modality("<step1>I see a smile. The voice is loud. Taken together, it is clear.</step1>")
    {'video': 'I see a smile.', 'audio': 'The voice is loud.'}
    """
    plain = _TAG.sub(" ", description).strip()
    out: dict[str, list[str]] = {"video": [], "audio": []}
    for sentence in _SENTENCE.split(plain):
        words = set(_WORD.findall(sentence.lower()))
        if words & VISUAL_WORDS:
            out["video"].append(sentence.strip())
        if words & AUDIO_WORDS:
            out["audio"].append(sentence.strip())
    return {m: " ".join(v) for m, v in out.items()}


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


def coherence_prompt(reasoning: str, labels: tuple[str, ...]) -> str:
    return COHERENCE_PROMPT.format(reasoning=reasoning, labels=", ".join(labels))


def grounding_prompt(description: str, view: str) -> str:
    return GROUNDING_PROMPT.format(what=VIEWS[view][1], description=description)


# ----------------------------------------------------------------------------- passes
def encode_clip_prompt(adapter: OmniAdapter, builder: PromptBuilder, s: Sample, text: str,
                       modality: Modality) -> PromptInputs | None:
    """``text`` with the sample's clip under ``modality`` (restricted to what the clip carries);
    None when the clip lacks that modality altogether. Media come from ``builder``'s decode cache."""
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
    return adapter.encode(clip.frames if modality.has_visual else None, audio, text, modality, fps=fps,
                          key=f"{s.id}|reflect|{modality.value}")


def generate(adapter: OmniAdapter, prompts: list[PromptInputs | None], params: SamplingParams,
             batch_size: int) -> list[str | None]:
    """One completion per prompt (None stays None), ``batch_size`` prompts per call, no gradients."""
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

    ``last_seconds`` holds the last call's generation time per pass and ``total_seconds`` the sum
    over calls; ``last_outputs`` the raw judge answers (per group, per completion), for logs.
    """

    adapter: OmniAdapter = field(repr=False)
    builder: PromptBuilder = field(repr=False)
    style: str = "boxed"
    grounding: str = "joint"
    params: SamplingParams = field(default_factory=lambda: SamplingParams(16, 0.6, 0.95))
    batch_size: int = 64
    last_seconds: dict[str, float] = field(default_factory=dict)
    total_seconds: float = 0.0
    last_outputs: list[list[dict[str, str | None]]] = field(default_factory=list, repr=False)

    def __post_init__(self):
        grounding_views(self.grounding)  # validates the mode

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
        prompts = [self.adapter.encode_text(coherence_prompt(r, s.labels), key=f"{s.id}|coherence")
                   if r is not None else None for s, r in zip(samples, reasonings)]
        answers = generate(self.adapter, prompts, self.params, self.batch_size)
        self.last_seconds["coherence"] = time.perf_counter() - t
        for i, (s, a) in enumerate(zip(samples, answers)):
            comps[i]["coherence"] = coherence_score(a, s.label)
            raw[i]["coherence"] = a
        descriptions = [stage1_description(c, self.style) for c in completions]
        for view in self.views:
            t = time.perf_counter()
            modality, _ = VIEWS[view]
            texts = descriptions if view == "joint" else [
                (split_by_modality(d)[view] or None) if d is not None else None for d in descriptions]
            prompts = [encode_clip_prompt(self.adapter, self.builder, s, grounding_prompt(x, view), modality)
                       if x is not None else None for s, x in zip(samples, texts)]
            answers = generate(self.adapter, prompts, self.params, self.batch_size)
            name = "grounding" if view == "joint" else f"grounding_{view}"
            self.last_seconds[name] = time.perf_counter() - t
            for i, (s, x, p, a) in enumerate(zip(samples, texts, prompts, answers)):
                # a clip without this modality has nothing to check against: neutral 0.5
                absent = not has_view(s, view) or (x is not None and p is None)
                comps[i][name] = 0.5 if absent else grounding_score(a)
                raw[i][name] = a
        self.total_seconds += sum(self.last_seconds.values())
        return comps, raw


def has_view(s: Sample, view: str) -> bool:
    """Whether the sample's clip carries the media a grounding view needs."""
    try:
        available(s, VIEWS[view][0])
    except ValueError:
        return False
    return True


def make_reflection(adapter: OmniAdapter, builder: PromptBuilder, cfg) -> Reflection:
    """The reflection for a run config (``cfg.reflection``, answer style of ``cfg.prompt.recipe``),
    to pass as ``train_grpo(..., extra_rewards=make_reflection(adapter, builder, cfg))``."""
    from emorl.recipes.rewards import get_recipe

    r = cfg.reflection
    return Reflection(adapter, builder, style=get_recipe(cfg.prompt.recipe).style, grounding=r.grounding,
                      params=SamplingParams(r.max_new_tokens, r.temperature, r.top_p), batch_size=r.batch_size)
