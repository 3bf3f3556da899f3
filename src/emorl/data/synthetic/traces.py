"""Cold-start reasoning traces built from a clip's true cues, and the cue vocabulary behind them.

Every continuous cue is *binned* (e.g. pitch low / mid / high, relative to the speaker's base);
each bin has a few synonymous phrases. A trace cites two or three of the most salient true
descriptors of each informative modality, says the other modality gives little away when it is
uninformative, and names the label::

    <think>The face shows knitted brows and a wrinkled nose. I hear a harsh voice and falling
    intonation. Seen and heard together, this reads as disgust.</think><answer>disgust</answer>

Phrases never contain an emotion word (see ``emorl.data.labels.emotions_in``), never describe a
cue by another class's name, and phrases of different bins are never substrings of each other,
so a text can be checked against :func:`describe_cues` (the phrases true for a clip) to find
hallucinated cues, and against :data:`CUE_LEXICON` to tell which modality it cites.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

THINK_WORDS = (20, 45)  # inclusive word-count range of the <think> part


@dataclass(frozen=True)
class Descriptor:
    """Phrases for one bin of one cue. ``expressive`` bins are worth citing as evidence."""

    modality: str
    cue: str
    bin: str
    expressive: bool
    phrases: tuple[str, ...]


_D = Descriptor
DESCRIPTORS: tuple[Descriptor, ...] = (
    # ---- face
    _D("video", "brow_raise", "lowered", True, ("lowered brows", "brows pulled down")),
    _D("video", "brow_raise", "raised", True, ("raised brows", "brows hiked up", "arched brows")),
    _D("video", "brow_raise", "level", False, ("level brows", "brows at rest")),
    _D("video", "brow_tilt", "knitted", True, ("knitted brows", "brows drawn together", "brows pinched into a V")),
    _D("video", "brow_tilt", "slanted", True, ("brows slanted up in the middle", "inner brow corners lifted")),
    _D("video", "eye_open", "narrowed", True, ("narrowed eyes", "squinting eyes", "half-closed eyes")),
    _D("video", "eye_open", "wide", True, ("wide-open eyes", "eyes opened wide", "staring eyes")),
    _D("video", "eye_open", "normal", False, ("normally open eyes",)),
    _D("video", "mouth_curve", "smile", True, ("a smile", "mouth corners turned up", "a smiling mouth")),
    _D(
        "video",
        "mouth_curve",
        "downturned",
        True,
        ("a downturned mouth", "mouth corners turned down", "a drooping mouth"),
    ),
    _D("video", "mouth_curve", "straight", False, ("a straight mouth", "a level mouth line")),
    _D("video", "mouth_open", "open", True, ("an open mouth", "a dropped jaw", "lips wide apart")),
    _D("video", "mouth_open", "parted", False, ("lips slightly apart",)),
    _D("video", "mouth_open", "closed", False, ("closed lips", "a shut mouth")),
    _D("video", "mouth_width", "stretched", True, ("lips stretched sideways", "a stretched mouth")),
    _D("video", "mouth_width", "narrow", True, ("a tight, narrow mouth", "pursed lips", "lips pressed small")),
    _D(
        "video", "nose_wrinkle", "wrinkled", True, ("a wrinkled nose", "a scrunched-up nose", "creases across the nose")
    ),
    _D("video", "head_move", "nod", True, ("a nodding head", "the head bobbing")),
    _D("video", "head_move", "shake", True, ("a shaking head", "the head turning side to side")),
    _D("video", "head_move", "tremble", True, ("a trembling head", "the head quivering")),
    _D("video", "head_move", "still", False, ("a motionless head", "the head held still")),
    _D("video", "occluded", "mask", False, ("a mask over the mouth", "a covered mouth")),
    _D("video", "overall", "blank", False, ("a blank face", "an unreadable face", "a face that reveals nothing")),
    # ---- voice
    _D("audio", "pitch", "low", True, ("a low-pitched voice", "a deep voice", "a low pitch")),
    _D("audio", "pitch", "high", True, ("a high-pitched voice", "a high pitch", "a shrill voice")),
    _D("audio", "pitch", "mid", False, ("a mid-range pitch", "an ordinary pitch")),
    _D(
        "audio",
        "pitch_contour",
        "rising",
        True,
        ("rising intonation", "pitch climbing at the end", "an upward pitch glide"),
    ),
    _D(
        "audio",
        "pitch_contour",
        "falling",
        True,
        ("falling intonation", "pitch dropping toward the end", "a downward pitch glide"),
    ),
    _D(
        "audio",
        "pitch_contour",
        "rise-fall",
        True,
        ("a rise-fall melody", "an arching pitch contour", "a sing-song melody"),
    ),
    _D("audio", "pitch_contour", "flat", False, ("flat intonation", "a monotone delivery")),
    _D("audio", "pitch_range", "wide", True, ("big pitch swings", "a very animated melody")),
    _D("audio", "pitch_range", "narrow", False, ("little pitch movement", "a compressed pitch range")),
    _D("audio", "energy", "loud", True, ("a loud voice", "forceful, loud speech", "lots of vocal energy")),
    _D("audio", "energy", "soft", True, ("a soft, quiet voice", "little vocal energy", "speech barely above a murmur")),
    _D("audio", "energy", "mid", False, ("moderate loudness", "normal volume")),
    _D("audio", "rate", "fast", True, ("fast speech", "a rapid speaking rate", "hurried syllables")),
    _D("audio", "rate", "slow", True, ("slow speech", "a slow, dragging pace", "lingering syllables")),
    _D("audio", "rate", "mid", False, ("an even pace", "a moderate tempo")),
    _D("audio", "breathiness", "breathy", True, ("a breathy voice", "audible breath in the voice", "an airy tone")),
    _D("audio", "jitter", "shaky", True, ("a shaky voice", "a quavering voice", "a wavering, unsteady voice")),
    _D(
        "audio", "harshness", "harsh", True, ("a harsh voice", "a rough, strained tone", "a gravelly edge in the voice")
    ),
    _D(
        "audio",
        "overall",
        "plain",
        False,
        ("a plain voice", "an unremarkable voice", "a voice without notable qualities"),
    ),
)
# Generic words that name a modality (always true for a clip): used to attribute citations.
# CUE_LEXICON[m] = these words + every descriptor phrase of modality m; no content word is shared
# between the two modalities. Match phrases case-insensitively on word boundaries.
MODALITY_WORDS: dict[str, tuple[str, ...]] = {
    "video": ("face", "brows", "eyes", "mouth", "lips", "nose", "head", "expression", "video"),
    "audio": ("voice", "pitch", "intonation", "speech", "tone", "audio", "melody", "syllables"),
}
CUE_LEXICON: dict[str, list[str]] = {
    m: list(MODALITY_WORDS[m]) + [p for d in DESCRIPTORS if d.modality == m for p in d.phrases]
    for m in ("video", "audio")
}

# bin thresholds: cue -> (low bin, low threshold, mid bin, high threshold, high bin); None = no phrase
_BINS: dict[str, tuple[str | None, float, str | None, float, str | None]] = {
    "brow_raise": ("lowered", -0.3, "level", 0.3, "raised"),
    "brow_tilt": ("knitted", -0.3, None, 0.3, "slanted"),
    "eye_open": ("narrowed", 0.38, "normal", 0.72, "wide"),
    "mouth_curve": ("downturned", -0.3, "straight", 0.3, "smile"),
    "mouth_width": ("narrow", 0.35, None, 0.7, "stretched"),
    "nose_wrinkle": (None, -1.0, None, 0.45, "wrinkled"),
    "pitch": ("low", -1.5, "mid", 3.0, "high"),
    "pitch_range": ("narrow", 2.0, None, 5.0, "wide"),
    "energy": ("soft", -4.0, "mid", 4.0, "loud"),
    "rate": ("slow", 3.3, "mid", 5.2, "fast"),
    "breathiness": (None, -1.0, None, 0.4, "breathy"),
    "jitter": (None, -1.0, None, 0.45, "shaky"),
    "harshness": (None, -1.0, None, 0.45, "harsh"),
}
_SCALE = {  # rough spread per cue, to rank how far past its threshold a value is
    "brow_raise": 0.38,
    "brow_tilt": 0.38,
    "eye_open": 0.18,
    "mouth_curve": 0.38,
    "mouth_width": 0.18,
    "nose_wrinkle": 0.23,
    "pitch": 2.5,
    "pitch_range": 2.3,
    "energy": 3.7,
    "rate": 0.98,
    "breathiness": 0.23,
    "jitter": 0.23,
    "harshness": 0.23,
}
HEAD_AMP_VISIBLE = 0.35  # a head move is cited only above this amplitude
_MOUTH_CUES = ("mouth_curve", "mouth_open", "mouth_width")
_BY_KEY: dict[tuple[str, str, str], Descriptor] = {(d.modality, d.cue, d.bin): d for d in DESCRIPTORS}


def _bin_continuous(cue: str, x: float) -> tuple[str | None, float]:
    """(bin name or None, salience ≥ 0 beyond the threshold in spread units) of one value."""
    lo_bin, lo, mid_bin, hi, hi_bin = _BINS[cue]
    if x < lo and lo_bin is not None:
        return lo_bin, (lo - x) / _SCALE[cue]
    if x > hi and hi_bin is not None:
        return hi_bin, (x - hi) / _SCALE[cue]
    return mid_bin, 0.0


def _mouth_open_bin(x: float) -> str:
    return "open" if x > 0.45 else ("closed" if x < 0.15 else "parted")


def cue_bins(meta: dict[str, Any]) -> dict[str, list[tuple[Descriptor, float]]]:
    """True descriptors of a clip per modality, each with a salience (how far past its bin
    threshold the value lies, in spread units; 0 for non-expressive bins)."""
    cues = meta["cues"]
    out: dict[str, list[tuple[Descriptor, float]]] = {"video": [], "audio": []}
    v, a = cues["video"], cues["audio"]
    occluded = bool(v.get("occluded"))
    for cue in ("brow_raise", "brow_tilt", "eye_open", "mouth_curve", "mouth_width", "nose_wrinkle"):
        if occluded and cue in _MOUTH_CUES:
            continue
        b, s = _bin_continuous(cue, float(v[cue]))
        if b is not None:
            out["video"].append((_BY_KEY[("video", cue, b)], s))
    if not occluded:
        b = _mouth_open_bin(float(v["mouth_open"]))
        sal = (float(v["mouth_open"]) - 0.45) / 0.18 if b == "open" else 0.0
        out["video"].append((_BY_KEY[("video", "mouth_open", b)], sal))
    move, amp = str(v["head_move"]), float(v["head_amp"])
    if move == "still":
        out["video"].append((_BY_KEY[("video", "head_move", "still")], 0.0))
    elif amp > HEAD_AMP_VISIBLE:
        out["video"].append((_BY_KEY[("video", "head_move", move)], 0.3 + (amp - HEAD_AMP_VISIBLE) / 0.23))
    if occluded:
        out["video"].append((_BY_KEY[("video", "occluded", "mask")], 0.0))
    for cue in ("pitch", "pitch_range", "energy", "rate", "breathiness", "jitter", "harshness"):
        b, s = _bin_continuous(cue, float(a[cue]))
        if b is not None:
            out["audio"].append((_BY_KEY[("audio", cue, b)], s))
    contour = str(a["pitch_contour"])
    out["audio"].append((_BY_KEY[("audio", "pitch_contour", contour)], 0.0 if contour == "flat" else 0.6))
    if not any(d.expressive for d, _ in out["video"]):
        out["video"].append((_BY_KEY[("video", "overall", "blank")], 0.0))
    if not any(d.expressive for d, _ in out["audio"]):
        out["audio"].append((_BY_KEY[("audio", "overall", "plain")], 0.0))
    return out


def describe_cues(meta: dict[str, Any]) -> dict[str, list[str]]:
    """Lexicon entries (``CUE_LEXICON``) that are TRUE for a clip, per modality.

    Includes every synonym of every true bin and the generic modality words; any lexicon phrase
    not listed here is a false (hallucinated) claim about this clip.
    """
    bins = cue_bins(meta)
    return {m: list(MODALITY_WORDS[m]) + [p for d, _ in bins[m] for p in d.phrases] for m in ("video", "audio")}


# ----------------------------------------------------------------------------- trace wording

_VIDEO_SENT = ("I see {}.", "On screen: {}.", "Visually: {}.", "The video shows {}.", "Looking at the face: {}.")
_AUDIO_SENT = ("I hear {}.", "In the audio: {}.", "The audio has {}.", "Listening: {}.", "As for the voice: {}.")
_VIDEO_BLANK = ("The video shows {}.", "I see {}.", "Visually there is only {}.")
_AUDIO_PLAIN = ("I hear {}.", "The audio offers only {}.", "Listening, there is only {}.")
_CLOSE = {
    "both": (
        "Seen and heard together, this reads as {}.",
        "Face and voice agree on {}.",
        "Both channels point to {}.",
        "Taken together, this is {}.",
    ),
    "video": ("So the face carries it: {}.", "The expression points to {}.", "Going by the face, this is {}."),
    "audio": ("So the voice carries it: {}.", "The voice points to {}.", "Going by the voice, this is {}."),
}
_PREAMBLE = ("Let me check the face and the voice.", "I look at the face and listen to the voice.")
_LABEL_WORDS: dict[str, tuple[str, ...]] = {
    "happy": ("happiness", "joy"),
    "sad": ("sadness", "sorrow"),
    "neutral": ("a neutral state", "neutral"),
    "angry": ("anger",),
    "surprise": ("surprise",),
    "disgust": ("disgust",),
    "fear": ("fear",),
    "contempt": ("contempt",),
    "anxiety": ("anxiety",),
    "helplessness": ("helplessness",),
    "disappointment": ("disappointment",),
    "calm": ("calm",),
}


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _pick(seq: tuple[str, ...] | list[str], rng: np.random.Generator) -> str:
    return seq[int(rng.integers(len(seq)))]


def _support(meta: dict[str, Any], d: Descriptor, label: str) -> float:
    """How much the clip's value of ``d.cue`` favours ``label`` over the average class (log ratio).

    Uses the world's class distributions at a typical intensity; 0 for labels outside the world.
    """
    from emorl.data.synthetic import world as w

    if label not in w.CLASSES:
        return 0.0
    x = meta["cues"][d.modality][d.cue]
    if d.cue in ("head_move", "pitch_contour"):
        table = w.HEAD_MOVE_P if d.cue == "head_move" else w.CONTOUR_P
        p = np.array([table[c].get(x, 1e-6) for c in w.CLASSES])
        return float(np.log(table[label].get(x, 1e-6)) - np.log(p.mean()))
    sd = (w.VIDEO_SD if d.modality == "video" else w.AUDIO_SD)[d.cue]
    mu = np.array([w.cue_mean(d.modality, c, d.cue, 0.65) for c in w.CLASSES])
    ll = -0.5 * ((float(x) - mu) / sd) ** 2
    return float(ll[w.CLASSES.index(label)] - np.log(np.mean(np.exp(ll - ll.max()))) - ll.max())


def _cite(
    meta: dict[str, Any], items: list[tuple[Descriptor, float]], label: str, k: int, rng: np.random.Generator
) -> list[str]:
    """Phrases for up to ``k`` true descriptors of one informative modality that best support
    ``label`` (ties broken by salience and a little noise); at least two are cited."""
    scored = []
    for d, sal in items:
        if d.cue in ("overall", "occluded"):
            continue
        sup = _support(meta, d, label)
        scored.append((sup > 0, sup + 0.3 * sal + float(rng.uniform(0, 0.3)), d))
    scored.sort(key=lambda t: (t[0], t[1]), reverse=True)
    n_sup = sum(t[0] for t in scored)
    chosen = [d for *_, d in scored[: max(2, min(k, n_sup))]]
    phrases = [_pick(d.phrases, rng) for d in chosen]
    for d, _ in items:  # a blank face / plain voice, or a mask, is worth saying too
        if d.cue in ("overall", "occluded"):
            phrases.insert(0, _pick(d.phrases, rng))
    return phrases


def _flat_phrases(items: list[tuple[Descriptor, float]], rng: np.random.Generator) -> list[str]:
    """Phrases that say an uninformative modality gives little away (mask first when present).

    Flat draws always land in non-expressive bins, so a blank-face / plain-voice phrase is true.
    """
    out = [_pick(d.phrases, rng) for d, _ in items if d.cue == "occluded"]
    out += [_pick(d.phrases, rng) for d, _ in items if d.cue == "overall"]
    return out


def _compose(meta: dict[str, Any], label: str, k: dict[str, int], rng: np.random.Generator) -> str:
    inf = meta["informative"]
    bins = cue_bins(meta)
    parts: dict[str, str] = {}
    for m, sents, flat_sents in (("video", _VIDEO_SENT, _VIDEO_BLANK), ("audio", _AUDIO_SENT, _AUDIO_PLAIN)):
        if inf in ("both", m):
            cited = _cite(meta, bins[m], label, k[m], rng)
            flat = any(d.cue == "overall" for d, _ in bins[m])
            parts[m] = _pick(flat_sents if flat else sents, rng).format(_join(cited))
        else:
            parts[m] = _pick(flat_sents, rng).format(_join(_flat_phrases(bins[m], rng)))
    order = ["video", "audio"]
    if inf == "audio" or (inf == "both" and rng.random() < 0.4):
        order.reverse()
    words = _LABEL_WORDS.get(label, (label,))
    close = _pick(_CLOSE[inf], rng).format(_pick(words, rng))
    text = " ".join(parts[m] for m in order) + " " + close
    return text[0].upper() + text[1:]


def make_trace(sample_meta: dict[str, Any], label: str, rng: np.random.Generator) -> str:
    """A cold-start trace ``<think>…</think><answer>label</answer>`` from the clip's true cues.

    ``sample_meta`` is a synthetic manifest row's ``meta`` (needs ``informative`` and ``cues``).
    The think part cites 2–3 true descriptors per informative modality (20–45 words).
    """
    lo, hi = THINK_WORDS
    k = {"video": int(rng.integers(2, 4)), "audio": int(rng.integers(2, 4))}
    text = _compose(sample_meta, label, k, rng)
    for _ in range(8):
        n = len(text.split())
        if lo <= n <= hi:
            break
        m = "video" if (k["video"] >= k["audio"]) == (n > hi) else "audio"
        k[m] = max(1, k[m] - 1) if n > hi else k[m] + 1
        text = _compose(sample_meta, label, k, rng)
    while len(text.split()) < lo:  # rare: a short flat clip
        text = _pick(_PREAMBLE, rng) + " " + text
    return f"<think>{text}</think><answer>{label}</answer>"
