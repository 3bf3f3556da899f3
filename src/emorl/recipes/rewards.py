"""Rewards: plain functions that return named components, combined by a recipe's weights.

Every component is returned (and logged by the trainer), so a user can see why a completion got
its reward. ``overall`` is the weighted sum the advantages use. A weight may name a product of
components, ``"accuracy*coherence"`` (EMO-R3's multiplicative variants): its term is the product of
the factors, logged under that name, and each factor is logged too.

Weights are recipe defaults; a run overrides any of them with ``reward.weights`` (``recipe_for``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from emorl.recipes.emo_r3 import structure_reward, valence_arousal_reward
from emorl.recipes.official import official_accuracy, official_emotion, official_format
from emorl.recipes.parse import Parsed, parse_completion


def format_reward(parsed: Parsed, label: str, labels: tuple[str, ...]) -> float:
    """1 if the completion follows the recipe's format exactly, else 0."""
    return float(parsed.format_ok)


def accuracy_reward(parsed: Parsed, label: str, labels: tuple[str, ...]) -> float:
    """1 if the answer names exactly one emotion, it is the label, and it is in the sample's label set."""
    return float(parsed.emotion is not None and parsed.emotion == label and parsed.emotion in labels)


REWARDS: dict[str, Callable[[Parsed, str, tuple[str, ...]], float]] = {
    "format": format_reward,
    "accuracy": accuracy_reward,
    "structure": structure_reward,  # EMO-R3 SET: stages present and in order (emo_r3.py)
    "valence_arousal": valence_arousal_reward,  # EMO-R3 ablation: step-3 valence/arousal credit
}


@dataclass(frozen=True)
class RewardRecipe:
    """How answers are read and paid: answer style, component weights and grading options.
    Components not in ``REWARDS`` (e.g. EMO-R3's reflective ``coherence`` / ``grounding``) are
    supplied by the caller through ``extra``.

    synonyms: extra answer word -> label pairs (``grading.answer_synonyms``); official: grade
    accuracy and format with the paper's released code instead (``grading.strict_official``,
    emorl.recipes.official)."""

    style: str = "tags"
    weights: dict[str, float] = field(default_factory=lambda: {"accuracy": 1.0, "format": 1.0})
    synonyms: tuple[tuple[str, str], ...] = ()
    official: bool = False
    name: str = ""

    def parse(self, completion: str, labels: tuple[str, ...] = (), words: dict[str, str] | None = None) -> Parsed:
        """The completion parsed under this recipe's answer grammar; with ``official``, ``emotion``
        is the label the released grader counts it correct for, and ``format_ok`` its format regex."""
        parsed = parse_completion(completion, self.style, labels=labels, words=words, synonyms=dict(self.synonyms))
        if not self.official:
            return parsed
        emotion = official_emotion(self.style, completion, labels, words)
        return dataclasses.replace(
            parsed,
            format_ok=bool(official_format(self.style, completion)),
            emotion=emotion,
            reason="ok" if emotion else "official_mismatch",
        )


# components a model supplies (emorl.rl.reflection), through score(..., extra=)
MODEL_COMPONENTS = ("coherence", "grounding", "grounding_video", "grounding_audio")
_EMO_R3_LOGGED = {"structure": 0.0, "valence_arousal": 0.0, "grounding_video": 0.0, "grounding_audio": 0.0}

RECIPES: dict[str, RewardRecipe] = {
    # R1-Omni: accuracy + format, summed (total in {0, 1, 2}).
    "r1-omni": RewardRecipe("tags", {"accuracy": 1.0, "format": 1.0}),
    # EMO-R3: 0.8 acc + 0.1 coherence + 0.1 grounding + 0.1 format; the offline scorer has no model,
    # so coherence and grounding are only present when the trainer supplies them.
    # Weight-0 components are computed and logged but do not move the reward: structure and
    # valence_arousal (rules), grounding_video / grounding_audio (reflection.grounding=per_modality).
    "emo-r3": RewardRecipe(
        "boxed", {"accuracy": 0.8, "coherence": 0.1, "grounding": 0.1, "format": 0.1, **_EMO_R3_LOGGED}
    ),
    # The same with the answer in <answer> tags after the stages (answer style "steps").
    "emo-r3-tags": RewardRecipe(
        "steps", {"accuracy": 0.8, "coherence": 0.1, "grounding": 0.1, "format": 0.1, **_EMO_R3_LOGGED}
    ),
    # EMO-R3's emothink_think_reward ablation: 0.9 acc + 0.1 format + 0.1 valence/arousal, no reflection.
    "emo-r3-va": RewardRecipe("boxed", {"accuracy": 0.9, "format": 0.1, "valence_arousal": 0.1, "structure": 0.0}),
    # EMO-R3's emothink_rethink variant: text-only reflection, multiplicative: 0.9 acc * coherence + 0.1 format
    # (run it with reflection.grounding=none: no image pass).
    "emo-r3-text": RewardRecipe("boxed", {"accuracy*coherence": 0.9, "format": 0.1, "structure": 0.0}),
    # EMO-R3's commented-out multiplicative total: 0.9 acc * coherence * grounding + 0.1 format.
    "emo-r3-mult": RewardRecipe("boxed", {"accuracy*coherence*grounding": 0.9, "format": 0.1, "structure": 0.0}),
    # Plain GRPO on R1-Omni's <think>/<answer> format with EMO-R3's Naive-GRPO weighting (0.9 acc + 0.1 format).
    "plain": RewardRecipe("tags", {"accuracy": 0.9, "format": 0.1}),
    # EMO-R3's naive-GRPO baseline as released: EasyR1's math prompt, <think>…</think> then \boxed{},
    # 0.9 accuracy + 0.1 format.
    "naive-grpo": RewardRecipe("think_boxed", {"accuracy": 0.9, "format": 0.1}),
}


def known_components() -> tuple[str, ...]:
    """Every component a weight may name (alone, or as a factor of a ``a*b`` product)."""
    return (*REWARDS, *MODEL_COMPONENTS)


def factors(name: str) -> tuple[str, ...]:
    """The components a weight key multiplies: ``"accuracy*coherence"`` -> ('accuracy', 'coherence')."""
    return tuple(f.strip() for f in name.split("*"))


def check_weights(weights: dict[str, float], where: str = "reward.weights") -> dict[str, float]:
    """``weights`` with every key made of known components and every value a finite number;
    ValueError naming the key and the known components otherwise."""
    import math

    known = known_components()
    out = {}
    for key, w in weights.items():
        parts = factors(key)
        bad = [f for f in parts if f not in known]
        if bad or not key.strip():
            raise ValueError(
                f"{where}: unknown reward component {bad[0] if bad else key!r} in {key!r}; known: "
                f"{', '.join(known)} (or a product of them, e.g. accuracy*coherence)"
            )
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w):
            raise ValueError(f"{where}: weight of {key!r} must be a finite number, got {w!r}")
        out["*".join(parts)] = float(w)
    return out


def get_recipe(name: str) -> RewardRecipe:
    try:
        return dataclasses.replace(RECIPES[name], name=name)
    except KeyError:
        raise KeyError(f"unknown reward recipe {name!r}; known: {', '.join(RECIPES)}") from None


def score(
    recipe: RewardRecipe,
    completion: str,
    label: str,
    labels: tuple[str, ...],
    extra: dict[str, float] | None = None,
    *,
    words: dict[str, str] | None = None,
) -> tuple[dict[str, float], Parsed]:
    """Score one completion. Returns ({component: value, ..., 'overall': weighted sum}, parsed).

    ``labels`` / ``words``: the sample's label set and its own words (``Sample.labels`` /
    ``Sample.words``). Components that need a model and are absent from ``extra`` are left out of
    the sum and of the result (never silently counted as 0 or 1).
    """
    parsed = recipe.parse(completion, labels, words)
    comps: dict[str, float] = {}
    for name in dict.fromkeys(f for key in recipe.weights for f in factors(key)):
        if recipe.official and name == "accuracy":
            comps[name] = official_accuracy(recipe.style, completion, label, words)
        elif recipe.official and name == "format":
            comps[name] = official_format(recipe.style, completion)
        elif name in REWARDS:
            comps[name] = REWARDS[name](parsed, label, labels)
        elif extra and name in extra:
            comps[name] = float(extra[name])
    for key in recipe.weights:
        parts = factors(key)
        if len(parts) > 1 and all(f in comps for f in parts):
            comps[key] = math.prod(comps[f] for f in parts)
    comps["overall"] = sum(w * comps[k] for k, w in recipe.weights.items() if k in comps)
    return comps, parsed


def recipe_for(cfg) -> RewardRecipe:
    """The recipe ``cfg.prompt.recipe`` names, with the run's grading options (``cfg.grading``): one
    grader for rewards, evaluation, prediction and serving; and its weights overridden by
    ``cfg.reward.weights`` (a component named there replaces the recipe's weight for it, one the
    recipe lacks is added, 0 turns one off). ``cfg``: an emorl.config.RunConfig."""
    from emorl.data.labels import parse_synonyms

    synonyms = parse_synonyms(cfg.grading.answer_synonyms)
    recipe = get_recipe(cfg.prompt.recipe)
    weights = {**recipe.weights, **check_weights(dict(cfg.reward.weights))}
    return dataclasses.replace(
        recipe, weights=weights, synonyms=tuple(sorted(synonyms.items())), official=cfg.grading.strict_official
    )


def model_components(recipe: RewardRecipe) -> list[str]:
    """The model-supplied components (``MODEL_COMPONENTS``) a recipe pays for with a non-zero weight,
    alone or inside a product."""
    return [c for c in MODEL_COMPONENTS if any(w and c in factors(k) for k, w in recipe.weights.items())]


def score_file(path, recipe: RewardRecipe):
    """Score a JSONL file of completions (``emorl reward``): each row has ``completion`` and
    ``label`` and optionally ``label_set`` and ``dataset`` (default dfew; a label outside the
    dataset's set falls back to every canonical label). A declared ``label_set`` also declares the
    row's words for its labels (``joy`` for happy), as a corpus's label set does. Yields one
    result dict per row."""
    from emorl.data.labels import CANONICAL, LABEL_SETS, label_words, to_canonical
    from emorl.data.manifest import iter_jsonl

    for lineno, row in iter_jsonl(path):
        where = f"{path}:{lineno}"
        for k in ("completion", "label"):
            if not isinstance(row.get(k), str):
                raise ValueError(f"{where}: field {k!r} must be a string")
        dataset = row.get("dataset", "dfew")
        if not isinstance(dataset, str):
            raise ValueError(f"{where}: field 'dataset' must be a string")
        label = to_canonical(row["label"], where=f"{where}: field 'label'")
        words = label_words(dataset)
        ls = row.get("label_set")
        if ls is not None:
            if not isinstance(ls, list) or not ls or not all(isinstance(x, str) for x in ls):
                raise ValueError(f"{where}: field 'label_set' must be a non-empty list of strings")
            labels = tuple(to_canonical(x, where=f"{where}: field 'label_set'") for x in ls)
            words = {c: x.strip().lower() for c, x in zip(labels, ls, strict=True)}
        else:
            labels = LABEL_SETS.get(dataset, CANONICAL)
            labels = labels if label in labels else CANONICAL
        comps, parsed = score(recipe, row["completion"], label, labels, words=words)
        yield {
            "line": lineno,
            **({"id": row["id"]} if "id" in row else {}),
            "label": label,
            "answer": parsed.answer,
            "emotion": parsed.emotion,
            "parse": parsed.reason,
            **comps,
        }
