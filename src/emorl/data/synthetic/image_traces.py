"""Cold-start reasoning traces for the synthetic image world, built from an image's true cues.

SET style (EMO-R3), for the ``boxed`` and ``steps`` answer styles::

    <step1>The scene shows towering snowy mountains under a wide sky. A face looks on with wide
    eyes and a small round open mouth. The picture is brightly lit, with moderate colours, warm
    tones and a few smooth lines.</step1>
    <step2>A viewer would feel small before something vast and hold still, wondering.</step2>
    <step3>The emotion is positive, with low arousal.</step3>\\boxed{awe}

Step 1 describes only what is drawn (``describe_image``: scene, face, light, colour, strokes),
step 2 how a viewer would respond to the label, step 3 the label's valence and arousal
(``emorl.data.labels.VALENCE_AROUSAL``). Steps 1 and 2 never contain an emotion word (checked
with ``emorl.data.labels.emotions_in``), so a coherence judge reading them has to infer the
emotion. The ``tags`` and ``think_boxed`` styles put the same three parts into one ``<think>``.
The answer is the label set's own word (``anger``, ``sadness``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

SCENE_PHRASES: dict[str, tuple[str, ...]] = {
    "party": ("balloons and streamers at a party", "a room full of balloons and paper streamers"),
    "fireworks": ("fireworks bursting in the night sky", "bright rockets exploding above the ground"),
    "mountains": ("towering snowy mountains under a wide sky", "a range of high peaks with white tops"),
    "starry_sky": ("a vast starry sky over a dark horizon", "countless stars and a pale moon above the land"),
    "meadow": ("a sunny meadow dotted with flowers", "a green field of flowers under the sun"),
    "beach": ("a quiet beach with gentle waves", "sand, sea and a low sun"),
    "fire": ("flames leaping from a burning building", "a house on fire with tall flames"),
    "storm": ("storm clouds split by lightning", "dark clouds and a bolt of lightning"),
    "dark_forest": ("a dark forest of looming trees", "black trees crowding together in the dark"),
    "rain": ("grey rain falling on an empty street", "a wet street under steady rain"),
    "garbage": ("overflowing garbage with flies", "a heap of rotting rubbish and flies"),
    "swamp": ("a murky swamp with bubbling slime", "stagnant green water with rising bubbles"),
    "room": ("a plain room with a window", "an ordinary room with a window and a table"),
}
FACE_PHRASES: dict[str, tuple[str, ...]] = {
    "laugh": ("A face is laughing with its mouth wide open.", "A face laughs with squeezed eyes and an open mouth."),
    "smile": ("A face wears a broad smile.", "A face smiles with turned-up mouth corners."),
    "serene": ("A face rests with closed eyes and a soft smile.", "A face has loosely closed eyes and a gentle smile."),
    "wonder": (
        "A face looks on with wide eyes and a small round open mouth.",
        "A face stares with raised brows and a small open mouth.",
    ),
    "frown": (
        "A face has brows pulled into a V and a tight, turned-down mouth.",
        "A face glares with lowered brows and a hard mouth.",
    ),
    "grimace": (
        "A face wrinkles its nose and sticks its tongue out.",
        "A face pulls back with a wrinkled nose and the tongue out.",
    ),
    "scream": ("A face has wide eyes and a gaping mouth.", "A face screams with the mouth stretched open."),
    "tears": ("A face has tears on its cheeks and a downturned mouth.", "A face cries with drooping brows."),
    "blank": ("A face shows a blank look.", "A face gives nothing away."),
}
NO_FACE = ("No face is visible.", "There is nobody in the picture.")
HUMAN_RESPONSE: dict[str, tuple[str, ...]] = {
    "amusement": (
        "A viewer would want to laugh along; it feels playful and light.",
        "Anyone looking would grin at the silliness of it.",
    ),
    "excitement": (
        "A viewer's heart would race with eagerness, ready to jump in and cheer.",
        "Anyone looking would feel a rush of energy and want to join in.",
    ),
    "awe": (
        "A viewer would feel small before something vast and hold still, wondering.",
        "Anyone looking would fall silent before how grand it is.",
    ),
    "contentment": (
        "A viewer would feel at ease and unhurried, settled and warm.",
        "Anyone looking would breathe out slowly and feel at peace.",
    ),
    "angry": (
        "A viewer's blood would boil; they would want to strike back at the wrong.",
        "Anyone looking would clench their fists and want to shout.",
    ),
    "disgust": (
        "A viewer would want to pull away and hold their nose.",
        "Anyone looking would feel their stomach turn at the sight.",
    ),
    "fear": (
        "A viewer would feel threatened and tense, wanting to run and hide.",
        "Anyone looking would freeze, sensing danger close by.",
    ),
    "sad": ("A viewer would feel heavy and low, close to tears.", "Anyone looking would feel drained and alone."),
}


def _bin(x: float, lo: float, hi: float, words: tuple[str, str, str]) -> str:
    return words[0] if x < lo else words[2] if x > hi else words[1]


def describe_image(cues: dict[str, Any], rng: np.random.Generator) -> str:
    """Step 1 from the true cues: scene, face (or none), light, colour, tone and strokes."""

    def pick(seq: tuple[str, ...]) -> str:
        return seq[int(rng.integers(len(seq)))]

    light = _bin(cues["brightness"], 0.38, 0.62, ("dimly lit", "evenly lit", "brightly lit"))
    colour = _bin(cues["colorfulness"], 0.35, 0.6, ("washed-out colours", "moderate colours", "vivid colours"))
    tone = _bin(cues["valence"], -0.2, 0.2, ("cold blue tones", "mixed tones", "warm tones"))
    strokes = _bin(
        cues["arousal"] * 6, 1.5, 3.5, ("a few smooth lines", "some restless strokes", "many jagged, busy strokes")
    )
    face = pick(NO_FACE) if cues["face"] == "none" else pick(FACE_PHRASES[cues["face"]])
    return (
        f"The scene shows {pick(SCENE_PHRASES[cues['scene']])}. {face} The picture is {light}, with {colour}, "
        f"{tone} and {strokes}."
    )


def image_trace(
    meta: dict[str, Any], label: str, rng: np.random.Generator, *, style: str = "boxed", word: str | None = None
) -> str:
    """A cold-start trace in answer ``style`` (boxed, steps, tags, think_boxed) for an image of
    the synthetic image world (``meta`` = its manifest meta, with ``cues``) and its ``label``;
    ``word``: how the answer names the label (default the label)."""
    from emorl.data.labels import VALENCE_AROUSAL

    word = word or label
    s1 = describe_image(meta["cues"], rng)
    s2 = HUMAN_RESPONSE[label][int(rng.integers(len(HUMAN_RESPONSE[label])))]
    valence, arousal = VALENCE_AROUSAL[label]
    s3 = f"The emotion is {valence}, with {arousal} arousal."
    if style in ("boxed", "steps"):
        answer = f"\\boxed{{{word}}}" if style == "boxed" else f"<answer>{word}</answer>"
        return f"<step1>{s1}</step1><step2>{s2}</step2><step3>{s3}</step3>{answer}"
    if style in ("tags", "think_boxed"):
        answer = f"<answer>{word}</answer>" if style == "tags" else f"\\boxed{{{word}}}"
        return f"<think>{s1} {s2} {s3}</think>{answer}"
    raise ValueError(f"unknown answer style {style!r}; expected boxed, steps, tags or think_boxed")


def image_reasoning(meta: dict[str, Any], label: str, rng: np.random.Generator, *, think: bool = False) -> str:
    """The reasoning a coherence judge reads for an image and an emotion ``label``: SET steps 1-2
    (``<step1>…</step1><step2>…</step2>``, what EMO-R3 extracts) or, with ``think``, the text of a
    ``<think>`` block (steps 1-3 run together, as the ``think_boxed`` style writes it)."""
    trace = image_trace(meta, label, rng, style="think_boxed" if think else "boxed")
    if think:
        return trace.split("<think>", 1)[1].split("</think>", 1)[0]
    return trace.split("<step3>", 1)[0]


def image_description(meta: dict[str, Any], label: str, rng: np.random.Generator, *, think: bool = False) -> str:
    """What a grounding judge checks against an image: the SET step 1 with its tags (EMO-R3's
    ``<step1>…`` span) or, with ``think``, a whole ``<think>`` text."""
    if think:
        return image_reasoning(meta, label, rng, think=True)
    return f"<step1>{describe_image(meta['cues'], rng)}</step1>"


def image_reflection_tasks(samples: list, rng: np.random.Generator) -> list:
    """Supervised examples of EMO-R3's two reflection questions on synthetic images, as
    ``emorl.data.synthetic.set_traces.task_sample`` copies (a tiny judge has to be taught them).

    Per image: one coherence question (reasoning written for the label or, half the time, for
    another class -> that class's word: ``anger``, ``sadness``, as the question lists them) and
    one image question (the image's own description -> yes; half the time another image's, of
    another class -> no). Half the texts are SET steps, half ``<think>`` text, so one judge reads
    both formats.
    """
    from emorl.data.synthetic.set_traces import task_sample
    from emorl.recipes.emo_r3 import coherence_prompt, grounding_prompt

    out = []
    for i, s in enumerate(samples):
        words = s.words
        names = tuple(words.get(c, c) for c in s.labels)
        others = [o for o in samples if o.label != s.label]
        target = s.label if rng.random() < 0.5 else str(rng.choice([c for c in s.labels if c != s.label]))
        reasoning = image_reasoning(s.meta, target, rng, think=bool(rng.random() < 0.5))
        out.append(task_sample(s, f"coh{i}", coherence_prompt(reasoning, names), "text", words.get(target, target)))
        match = bool(rng.random() < 0.5) or not others
        src = s if match else others[int(rng.integers(len(others)))]
        desc = image_description(src.meta, src.label, rng, think=bool(rng.random() < 0.5))
        out.append(task_sample(s, f"gimage{i}", grounding_prompt(desc, "image"), "image", "yes" if match else "no"))
    return out
