"""EMO-R3's Structured Emotional Thinking (SET) traces for the synthetic omni clips, and the
reflection tasks a tiny judge is taught (the still-image counterparts are in ``image_traces``).

A trace is written from a clip's true cues (``emorl.data.synthetic.traces``): step 1 cites the
face and voice cues, step 2 a human response to the label (no emotion word), step 3 its valence and
arousal, then the label in ``\\boxed{}`` (style ``boxed``) or ``<answer>`` tags (style ``steps``).

Reflection tasks are supervised examples of the questions EMO-R3's reflective reward asks
(``emorl.recipes.emo_r3``): a real omni model answers them zero-shot, a tiny one has to be taught.
Each task is a copy of a sample (``task_sample``) whose ``meta`` carries the prompt text
(``task_prompt``), the media to show (``task_modality``), the target (``trace``) and the sample it
was copied from (``clip_of``, so the copies share that sample's decoded media).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from emorl.data.labels import VALENCE_AROUSAL
from emorl.data.manifest import Sample

# Step 2 ("how a human would feel") per label, with no emotion word (see emorl.data.labels.emotions_in),
# so the coherence judge has to map a felt response to an emotion rather than copy a word.
HUMAN_RESPONSE: dict[str, tuple[str, ...]] = {
    "happy": ("A person would feel warm and light, ready to laugh along.", "Anyone watching would feel cheered up."),
    "sad": ("A person would feel heavy and low, close to tears.", "Anyone listening would feel drained and down."),
    "neutral": ("A person would feel nothing much either way.", "Anyone watching would stay unmoved and even."),
    "angry": ("A person would feel heated and ready to fight back.", "Anyone listening would feel their temper rise."),
    "surprise": (
        "A person would be caught off guard, jolted by the unexpected.",
        "Anyone watching would feel startled.",
    ),
    "disgust": (
        "A person would want to pull away from something foul.",
        "Anyone watching would feel their stomach turn.",
    ),
    "fear": (
        "A person would feel threatened and want to escape.",
        "Anyone listening would sense danger and want to hide.",
    ),
}


def cue_description(meta: dict[str, Any], label: str, rng: np.random.Generator) -> str:
    """Stage 1 from a clip's true cues: the cold-start trace's cue sentences (face, voice),
    without its closing sentence (the one that names the emotion)."""
    from emorl.data.synthetic.traces import make_trace

    think = make_trace(meta, label, rng).split("<think>", 1)[1].split("</think>", 1)[0]
    sentences = [s for s in think.replace(". ", ".\n").split("\n") if s.strip()]
    return " ".join(sentences[:-1])


def valence_arousal_sentence(label: str) -> str:
    valence, arousal = VALENCE_AROUSAL[label]
    return f"The emotion is {valence}, with {arousal} arousal."


def structured_trace(meta: dict[str, Any], label: str, rng: np.random.Generator, *, style: str = "boxed") -> str:
    """A SET cold-start trace from a synthetic clip's true cues: step 1 cites the face and voice
    cues, step 2 a human response, step 3 valence and arousal (``VALENCE_AROUSAL``), then the
    label in ``\\boxed{}`` (style ``boxed``) or ``<answer>`` tags (style ``steps``)."""
    s1, s2 = cue_description(meta, label, rng), str(rng.choice(HUMAN_RESPONSE[label]))
    answer = f"\\boxed{{{label}}}" if style == "boxed" else f"<answer>{label}</answer>"
    return f"<step1>{s1}</step1><step2>{s2}</step2><step3>{valence_arousal_sentence(label)}</step3>{answer}"


def task_sample(s: Sample, tag: str, prompt: str, modality: str, target: str) -> Sample:
    """A copy of ``s`` (id ``<id>#<tag>``) that asks ``prompt`` over ``modality`` of its media and
    is supervised with ``target``."""
    return replace(
        s,
        id=f"{s.id}#{tag}",
        meta={**s.meta, "clip_of": s.id, "task_prompt": prompt, "task_modality": modality, "trace": target},
    )


def reflection_tasks(samples: list[Sample], views: tuple[str, ...], rng: np.random.Generator) -> list[Sample]:
    """Supervised examples of the reflection questions on synthetic clips (``task_sample`` copies).

    Per clip: one coherence question (reasoning written for the label or, half the time, for
    another emotion -> that emotion) and, per grounding view, one yes/no question (the clip's own
    description -> yes; another clip's, of another label -> no). Reasoning comes in both formats
    (SET stages, ``<think>`` text) so one judge can read every arm.
    """
    from emorl.data.synthetic.traces import make_trace
    from emorl.recipes.emo_r3 import coherence_prompt, grounding_prompt, split_by_modality

    out: list[Sample] = []
    for i, s in enumerate(samples):
        others = [o for o in samples if o.label != s.label]
        target = s.label if rng.random() < 0.5 else str(rng.choice([c for c in s.labels if c != s.label]))
        if rng.random() < 0.5:
            reasoning = (
                f"<step1>{cue_description(s.meta, target, rng)}</step1><step2>"
                f"{rng.choice(HUMAN_RESPONSE[target])}</step2>"
            )
        else:
            reasoning = make_trace(s.meta, target, rng).split("<think>", 1)[1].split("</think>", 1)[0]
        out.append(task_sample(s, f"coh{i}", coherence_prompt(reasoning, s.labels), "text", target))
        for view in views:
            match = rng.random() < 0.5
            src = s if match else others[int(rng.integers(len(others)))]
            desc = cue_description(src.meta, src.label, rng)
            if view == "joint":
                desc = f"<step1>{desc}</step1>" if rng.random() < 0.5 else desc
            else:
                desc = split_by_modality(desc)[view]
                if not desc:
                    continue
            modality = {"joint": "video+audio", "video": "video", "audio": "audio"}[view]
            out.append(task_sample(s, f"g{view}{i}", grounding_prompt(desc, view), modality, "yes" if match else "no"))
    return out
