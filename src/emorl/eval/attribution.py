"""Which modality a reasoning cites, and which emotion its cues point to.

A :class:`CueLexicon` lists, per modality (``video``, ``audio``) and per language:

- ``cues``: phrases that describe an expressive cue, i.e. evidence ("knitted brows", "a shaky voice");
- ``flat``: phrases that describe the channel as unremarkable ("a blank face", "a plain voice",
  "level brows"): still claims about what is seen or heard, but no evidence for an emotion;
- ``generic`` words: names of the channel ("face", "voice") that mention a modality without
  describing it;
- ``cue_emotion``: optional phrase -> {emotion: evidence score} (log-likelihood ratio style;
  positive = the cue favours that emotion).

Two lexicons ship: ``en`` (general English wording of facial and vocal cues, hand-written) and
``synthetic`` (the synthetic world's own :data:`~emorl.data.synthetic.traces.CUE_LEXICON`, with
a cue -> emotion map derived from the world's class distributions). ``lexicon()`` merges the ones
you name; ``register_lexicon`` adds your own (another language, a corpus's wording).

Matching is case-insensitive, on word boundaries, longest phrase first, without overlaps: "a
shaky voice" counts once as an audio cue, not also as the generic word "voice".

A reasoning *cites* a modality when it states at least one cue phrase of it; it *mentions* a
modality when any phrase of it (cue, flat or generic) occurs. *Claims* about a modality are its
cue and flat phrases (what hallucination checks look at).

An optional *judge* answers the same questions with a model through the
:class:`~emorl.models.adapter.OmniAdapter` interface (text-only prompts); see :class:`AdapterJudge`.

Past 500 lines because about 240 of them are the ``en`` lexicon's phrase lists (data, one phrase a
line as the formatter writes them), kept beside the matcher that defines what a phrase means.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from emorl.data.labels import mentioned

MODALITIES = ("video", "audio")
CITES = ("video", "audio", "both", "none")


@dataclass
class CueLexicon:
    """Cue vocabulary of one language (or one corpus's wording)."""

    name: str
    lang: str
    cues: dict[str, list[str]]
    flat: dict[str, list[str]] = field(default_factory=dict)
    generic: dict[str, list[str]] = field(default_factory=dict)
    cue_emotion: dict[str, dict[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for m in (*self.cues, *self.flat, *self.generic):
            if m not in MODALITIES:
                raise ValueError(f"lexicon {self.name!r}: unknown modality {m!r}; expected one of {MODALITIES}")
        self._rx = None

    def phrases(self) -> dict[str, tuple[str, str]]:
        """lower-cased phrase -> (modality, kind) with kind 'cue' | 'flat' | 'generic'; on a clash
        cue beats flat beats generic."""
        out: dict[str, tuple[str, str]] = {}
        for kind, table in (("generic", self.generic), ("flat", self.flat), ("cue", self.cues)):
            for m, ps in table.items():
                for p in ps:
                    out[p.lower().strip()] = (m, kind)
        return out

    def merged(self, other: CueLexicon) -> CueLexicon:
        def cat(a: dict, b: dict) -> dict:
            return {m: list(dict.fromkeys([*a.get(m, []), *b.get(m, [])])) for m in MODALITIES if m in a or m in b}

        ce = {k: dict(v) for k, v in self.cue_emotion.items()}
        for k, v in other.cue_emotion.items():
            ce.setdefault(k, {}).update(v)
        return CueLexicon(
            f"{self.name}+{other.name}",
            self.lang if self.lang == other.lang else "mixed",
            cat(self.cues, other.cues),
            cat(self.flat, other.flat),
            cat(self.generic, other.generic),
            ce,
        )

    def regex(self) -> re.Pattern:
        if self._rx is None:
            ps = sorted(self.phrases(), key=lambda p: (-len(p), p))
            alts = "|".join(r"\s+".join(re.escape(w) for w in p.split()) for p in ps)
            self._rx = re.compile(rf"(?<![\w-])(?:{alts})(?![\w-])", re.IGNORECASE)
        return self._rx


@dataclass(frozen=True)
class CueMatch:
    phrase: str  # lexicon form (lower case)
    modality: str
    kind: str  # cue | flat | generic

    @property
    def claim(self) -> bool:
        """A statement about the channel's content (cue or flat), not just its name."""
        return self.kind != "generic"

    start: int
    end: int


def find_cues(text: str, lex: CueLexicon) -> list[CueMatch]:
    """Every lexicon phrase in ``text``, left to right, longest first, no overlaps."""
    if not text:
        return []
    table = lex.phrases()
    out = []
    for m in lex.regex().finditer(text):
        key = re.sub(r"\s+", " ", m.group(0).lower())
        mod, kind = table[key]
        out.append(CueMatch(key, mod, kind, m.start(), m.end()))
    return out


def _which(mods: set[str]) -> str:
    if mods >= {"video", "audio"}:
        return "both"
    return next(iter(mods)) if mods else "none"


def cites_of(matches: Iterable[CueMatch]) -> str:
    """'video', 'audio', 'both' or 'none': the modalities whose cue phrases occur."""
    return _which({m.modality for m in matches if m.kind == "cue"})


def attribute(text: str, lex: CueLexicon) -> dict:
    """Attribution of one reasoning: ``cites`` (modalities with a cue phrase), ``mentions``
    (modalities with any phrase), and the matched phrases per modality and kind."""
    ms = find_cues(text, lex)
    out: dict = {"cites": cites_of(ms), "mentions": _which({m.modality for m in ms})}
    for mod in MODALITIES:
        out[mod] = {k: [m.phrase for m in ms if m.modality == mod and m.kind == k] for k in ("cue", "flat", "generic")}
    return out


# ----------------------------------------------------------------------------- emotion implied


_WORD = re.compile(r"[a-z]+")


def named_emotion(text: str, labels: Sequence[str] | None = None) -> str | None:
    """The last canonical emotion named in ``text`` (the conclusion of a reasoning usually comes
    last), restricted to ``labels`` when given; None when none is named."""
    last = None
    for w in _WORD.findall((text or "").lower()):
        c = mentioned(w)
        if c is not None and (labels is None or c in labels):
            last = c
    return last


def cue_emotion(text: str, lex: CueLexicon, labels: Sequence[str] | None = None) -> tuple[str | None, dict[str, float]]:
    """The emotion the cited cue phrases favour: the argmax of summed ``cue_emotion`` scores over
    the distinct cue and flat phrases found (None when no phrase carries a score or the top two
    tie). Returns (emotion, scores)."""
    scores: dict[str, float] = defaultdict(float)
    for p in dict.fromkeys(m.phrase for m in find_cues(text, lex) if m.claim):
        for emo, s in lex.cue_emotion.get(p, {}).items():
            if labels is None or emo in labels:
                scores[emo] += s
    if not scores:
        return None, {}
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    if len(ranked) > 1 and math.isclose(ranked[0][1], ranked[1][1], abs_tol=1e-9):
        return None, dict(scores)
    return ranked[0][0], dict(scores)


# ----------------------------------------------------------------------------- lexicons

_EN_VIDEO = [
    "smile",
    "smiles",
    "smiling",
    "grin",
    "grinning",
    "frown",
    "frowns",
    "frowning",
    "scowl",
    "scowling",
    "grimace",
    "grimacing",
    "pout",
    "pouting",
    "raised eyebrows",
    "raised brows",
    "furrowed brows",
    "furrowed brow",
    "knitted brows",
    "lowered brows",
    "wide eyes",
    "wide-open eyes",
    "narrowed eyes",
    "squinting",
    "glare",
    "glaring",
    "tears",
    "teary eyes",
    "watery eyes",
    "downcast eyes",
    "looks down",
    "averted gaze",
    "blank stare",
    "staring",
    "eye contact",
    "open mouth",
    "dropped jaw",
    "clenched jaw",
    "tight lips",
    "pursed lips",
    "trembling lips",
    "wrinkled nose",
    "flushed",
    "pale face",
    "blushing",
    "nodding",
    "head shake",
    "shaking head",
    "covers face",
    "clenched fists",
    "slumped",
    "hunched",
    "tense posture",
    "relaxed posture",
    "gesturing",
]
_EN_AUDIO = [
    "loud voice",
    "raised voice",
    "shouting",
    "shouts",
    "yelling",
    "yells",
    "screaming",
    "screams",
    "scream",
    "whisper",
    "whispering",
    "soft voice",
    "quiet voice",
    "trembling voice",
    "shaky voice",
    "cracking voice",
    "breaking voice",
    "choked voice",
    "high pitch",
    "high-pitched",
    "low pitch",
    "low-pitched",
    "deep voice",
    "rising intonation",
    "falling intonation",
    "flat tone",
    "monotone",
    "harsh tone",
    "sharp tone",
    "warm tone",
    "cheerful tone",
    "laughter",
    "laughing",
    "laughs",
    "giggling",
    "chuckling",
    "sigh",
    "sighs",
    "sighing",
    "sobbing",
    "sobs",
    "gasp",
    "gasps",
    "gasping",
    "groan",
    "groaning",
    "fast speech",
    "speaks quickly",
    "slow speech",
    "speaks slowly",
    "stuttering",
    "hesitant speech",
    "pauses",
    "emphatic",
    "tone of voice",
]
_EN_GENERIC = {
    "video": [
        "face",
        "facial",
        "eyes",
        "eyebrows",
        "brows",
        "mouth",
        "lips",
        "gaze",
        "posture",
        "body language",
        "gesture",
        "visual",
        "visually",
        "video",
        "frames",
        "expression",
        "facial expression",
    ],
    "audio": [
        "voice",
        "vocal",
        "tone",
        "pitch",
        "intonation",
        "speech",
        "speaking",
        "sound",
        "audio",
        "heard",
        "hear",
        "hears",
        "listening",
        "volume",
        "prosody",
        "acoustic",
    ],
}
_EN_CUE_EMOTION: dict[str, dict[str, float]] = {
    **{
        p: {"happy": 1.0}
        for p in (
            "smile",
            "smiles",
            "smiling",
            "grin",
            "grinning",
            "laughter",
            "laughing",
            "laughs",
            "giggling",
            "chuckling",
            "cheerful tone",
            "warm tone",
        )
    },
    **{
        p: {"sad": 1.0}
        for p in (
            "tears",
            "teary eyes",
            "watery eyes",
            "downcast eyes",
            "sobbing",
            "sobs",
            "sigh",
            "sighs",
            "sighing",
            "slumped",
            "choked voice",
            "cracking voice",
            "breaking voice",
            "pout",
            "pouting",
            "looks down",
        )
    },
    **{
        p: {"angry": 1.0}
        for p in (
            "frown",
            "frowns",
            "frowning",
            "scowl",
            "scowling",
            "glare",
            "glaring",
            "furrowed brows",
            "furrowed brow",
            "knitted brows",
            "lowered brows",
            "clenched jaw",
            "clenched fists",
            "shouting",
            "shouts",
            "yelling",
            "yells",
            "raised voice",
            "loud voice",
            "harsh tone",
            "sharp tone",
        )
    },
    **{
        p: {"surprise": 1.0}
        for p in ("raised eyebrows", "raised brows", "open mouth", "dropped jaw", "gasp", "gasps", "gasping")
    },
    **{
        p: {"fear": 1.0}
        for p in (
            "screaming",
            "screams",
            "scream",
            "trembling voice",
            "shaky voice",
            "trembling lips",
            "pale face",
            "wide-open eyes",
        )
    },
    "wide eyes": {"surprise": 0.5, "fear": 0.5},
    **{p: {"disgust": 1.0} for p in ("wrinkled nose", "grimace", "grimacing")},
    **{p: {"neutral": 1.0} for p in ("monotone", "flat tone", "blank stare", "relaxed posture")},
}
_LEXICONS: dict[str, CueLexicon] = {}


def register_lexicon(lex: CueLexicon, *, replace: bool = False) -> None:
    """Make ``lex`` available to ``lexicon(lex.name)``."""
    if lex.name in _LEXICONS and not replace:
        raise ValueError(f"lexicon {lex.name!r} already registered (pass replace=True)")
    _LEXICONS[lex.name] = lex


def _normal_cdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


@lru_cache(maxsize=1)
def synthetic_cue_emotion(intensity: float = 0.65) -> dict[str, dict[str, float]]:
    """phrase -> {class: log P(bin | class) - log mean_c' P(bin | c')} for every descriptor of the
    synthetic world, from its class distributions at a typical ``intensity`` (continuous cues:
    Gaussian mass of the bin; head move and pitch contour: the class tables). 'overall' and
    'occluded' phrases carry no evidence."""
    from emorl.data.synthetic import traces as tr
    from emorl.data.synthetic import world as w

    out: dict[str, dict[str, float]] = {}
    for d in tr.DESCRIPTORS:
        if d.cue in ("overall", "occluded"):
            continue
        probs = []
        for c in w.CLASSES:
            if d.cue in ("head_move", "pitch_contour"):
                table = w.HEAD_MOVE_P if d.cue == "head_move" else w.CONTOUR_P
                probs.append(table[c].get(d.bin, 0.0))
                continue
            if d.cue == "mouth_open":
                lo, hi = {"open": (0.45, math.inf), "closed": (-math.inf, 0.15), "parted": (0.15, 0.45)}[d.bin]
            else:
                lo_bin, lo_t, mid_bin, hi_t, hi_bin = tr._BINS[d.cue]
                lo, hi = {lo_bin: (-math.inf, lo_t), mid_bin: (lo_t, hi_t), hi_bin: (hi_t, math.inf)}[d.bin]
            sd = (w.VIDEO_SD if d.modality == "video" else w.AUDIO_SD)[d.cue]
            mu = w.cue_mean(d.modality, c, d.cue, intensity)
            probs.append(max(_normal_cdf((hi - mu) / sd) - _normal_cdf((lo - mu) / sd), 1e-6))
        mean = sum(probs) / len(probs)
        scores = {c: math.log(max(p, 1e-6)) - math.log(mean) for c, p in zip(w.CLASSES, probs)}
        for p in d.phrases:
            out[p.lower()] = scores
    return out


def _builtin() -> None:
    if "en" not in _LEXICONS:
        _LEXICONS["en"] = CueLexicon(
            "en", "en", {"video": _EN_VIDEO, "audio": _EN_AUDIO}, {}, _EN_GENERIC, _EN_CUE_EMOTION
        )
    if "synthetic" not in _LEXICONS:
        from emorl.data.synthetic.traces import DESCRIPTORS, MODALITY_WORDS

        cues = {m: [p for d in DESCRIPTORS if d.modality == m and d.expressive for p in d.phrases] for m in MODALITIES}
        flat = {
            m: [p for d in DESCRIPTORS if d.modality == m and not d.expressive for p in d.phrases] for m in MODALITIES
        }
        _LEXICONS["synthetic"] = CueLexicon(
            "synthetic", "en", cues, flat, {m: list(MODALITY_WORDS[m]) for m in MODALITIES}, synthetic_cue_emotion()
        )


def lexicon(*names: str) -> CueLexicon:
    """The named lexicons merged, in order (default: ``en`` + ``synthetic``)."""
    _builtin()
    names = names or ("en", "synthetic")
    try:
        lexs = [_LEXICONS[n] for n in names]
    except KeyError as e:
        raise KeyError(f"unknown lexicon {e.args[0]!r}; known: {', '.join(sorted(_LEXICONS))}") from None
    out = lexs[0]
    for lx in lexs[1:]:
        out = out.merged(lx)
    return out


# ----------------------------------------------------------------------------- judge


_JUDGE_MOD = (
    'Here is a reasoning about a video clip:\n"{text}"\nWhich channel does it describe: the face '
    "(video), the voice (audio), both, or none? Answer with one word: video, audio, both or none."
)
_JUDGE_EMO = (
    'Here is a reasoning about a video clip:\n"{text}"\nWhich emotion does this reasoning support? '
    "Answer with one word from: {labels}."
)


class AdapterJudge:
    """A model as judge, through the same adapter interface as everything else: text-only
    prompts (``adapter.encode_text``), one greedy completion each (``adapter.sample_groups``).

    ``cites(texts)`` -> 'video' | 'audio' | 'both' | 'none' | None (unparsable) per text;
    ``emotion(texts, labels)`` -> a label or None per text. The prompts are plain English
    questions; a judge worth trusting is an instruction-tuned model, not the tiny demo thinker."""

    def __init__(self, adapter, *, max_new_tokens: int = 16, batch_size: int = 16):
        self.adapter = adapter
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size

    def _ask(self, questions: list[str]) -> list[str]:
        from emorl.models.adapter import SamplingParams

        params = SamplingParams(max_new_tokens=self.max_new_tokens, greedy=True)
        out: list[str] = []
        for i in range(0, len(questions), self.batch_size):
            prompts = [self.adapter.encode_text(q, key=f"judge|{hash(q)}") for q in questions[i : i + self.batch_size]]
            comp = self.adapter.sample_groups(prompts, 1, params)
            out += [t[0] for t in comp.texts]
        return out

    def cites(self, texts: Sequence[str]) -> list[str | None]:
        answers = self._ask([_JUDGE_MOD.format(text=t) for t in texts])
        out: list[str | None] = []
        for a in answers:
            words = _WORD.findall(a.lower())
            hit = next((w for w in words if w in CITES), None)
            out.append(hit)
        return out

    def emotion(self, texts: Sequence[str], labels: Sequence[str]) -> list[str | None]:
        answers = self._ask([_JUDGE_EMO.format(text=t, labels=", ".join(labels)) for t in texts])
        out: list[str | None] = []
        for a in answers:
            found = [c for c in (mentioned(w) for w in _WORD.findall(a.lower())) if c is not None and c in labels]
            out.append(found[0] if found else None)
        return out


# ----------------------------------------------------------------------------- aggregation


def attribute_rows(
    rows: list[dict], lex: CueLexicon, *, style: str = "tags", judge: AdapterJudge | None = None
) -> list[dict]:
    """Per prediction row: {id, label, pred, modality, reasoning, cites, mentions, video, audio
    [, judge_cites]}, from
    the row's reasoning (parsed with the one parser)."""
    from emorl.recipes.parse import parse_completion

    texts = [parse_completion(r.get("completion", ""), style).reasoning for r in rows]
    out = []
    for r, t in zip(rows, texts):
        a = attribute(t, lex)
        out.append(
            {
                "id": r["id"],
                "label": r["label"],
                "pred": r.get("pred"),
                "modality": r.get("modality"),
                "reasoning": t,
                **a,
            }
        )
    if judge is not None:
        for o, j in zip(out, judge.cites(texts)):
            o["judge_cites"] = j
    return out


def summarize_attribution(attr: list[dict], labels: Sequence[str]) -> dict:
    """Shares of reasonings citing video / audio / both / none, overall and per true class, and
    the mean number of cue phrases per modality. Rows without reasoning count as 'none' (their share
    is also given as ``no_reasoning``)."""

    def block(items: list[dict]) -> dict:
        n = len(items)
        cnt = Counter(a["cites"] for a in items)
        res = {
            "n": n,
            **{c: (cnt[c] / n if n else None) for c in CITES},
            "no_reasoning": (sum(1 for a in items if not a.get("reasoning", "x").strip()) / n) if n else None,
        }
        for m in MODALITIES:
            res[f"{m}_any"] = (sum(1 for a in items if a["cites"] in (m, "both")) / n) if n else None
            res[f"{m}_cues_per_reasoning"] = (sum(len(a[m]["cue"]) for a in items) / n) if n else None
        if items and "judge_cites" in items[0]:
            jc = Counter(a.get("judge_cites") for a in items)
            res["judge"] = {c: jc[c] / n for c in (*CITES, None) if jc[c]}
            agree = [a for a in items if a.get("judge_cites") is not None]
            res["judge_agreement"] = (
                (sum(a["judge_cites"] == a["cites"] for a in agree) / len(agree)) if agree else None
            )
        return res

    return {"overall": block(attr), "per_class": {c: block([a for a in attr if a["label"] == c]) for c in labels}}
