"""Rewards: plain functions that return named components, combined by a recipe's weights.

Every component is returned (and logged by the trainer), so a user can see why a completion got
its reward. ``overall`` is the weighted sum the advantages use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from emorl.recipes.emo_r3 import structure_reward, valence_arousal_reward
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
    """Answer style and component weights. Components not in ``REWARDS`` (e.g. EMO-R3's
    reflective ``coherence`` / ``grounding``) are supplied by the caller through ``extra``."""

    style: str = "tags"
    weights: dict[str, float] = field(default_factory=lambda: {"accuracy": 1.0, "format": 1.0})


_EMO_R3_LOGGED = {"structure": 0.0, "valence_arousal": 0.0, "grounding_video": 0.0, "grounding_audio": 0.0}

RECIPES: dict[str, RewardRecipe] = {
    # R1-Omni: accuracy + format, summed (total in {0, 1, 2}).
    "r1-omni": RewardRecipe("tags", {"accuracy": 1.0, "format": 1.0}),
    # EMO-R3: 0.8 acc + 0.1 coherence + 0.1 grounding + 0.1 format; the offline scorer has no model,
    # so coherence and grounding are only present when the trainer supplies them.
    # Weight-0 components are computed and logged but do not move the reward: structure and
    # valence_arousal (rules), grounding_video / grounding_audio (reflection.grounding=per_modality).
    "emo-r3": RewardRecipe("boxed", {"accuracy": 0.8, "coherence": 0.1, "grounding": 0.1, "format": 0.1,
                                     **_EMO_R3_LOGGED}),
    # The same with the answer in <answer> tags after the stages (answer style "steps").
    "emo-r3-tags": RewardRecipe("steps", {"accuracy": 0.8, "coherence": 0.1, "grounding": 0.1, "format": 0.1,
                                          **_EMO_R3_LOGGED}),
    # EMO-R3's emothink_think_reward ablation: 0.9 acc + 0.1 format + 0.1 valence/arousal, no reflection.
    "emo-r3-va": RewardRecipe("boxed", {"accuracy": 0.9, "format": 0.1, "valence_arousal": 0.1, "structure": 0.0}),
    # Plain GRPO on R1-Omni's <think>/<answer> format with EMO-R3's Naive-GRPO weighting (0.9 acc + 0.1 format).
    "plain": RewardRecipe("tags", {"accuracy": 0.9, "format": 0.1}),
}


def get_recipe(name: str) -> RewardRecipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise KeyError(f"unknown reward recipe {name!r}; known: {', '.join(RECIPES)}") from None


def score(recipe: RewardRecipe, completion: str, label: str, labels: tuple[str, ...],
          extra: dict[str, float] | None = None) -> tuple[dict[str, float], Parsed]:
    """Score one completion. Returns ({component: value, ..., 'overall': weighted sum}, parsed).

    Components that need a model and are absent from ``extra`` are left out of the sum and of
    the result (never silently counted as 0 or 1).
    """
    parsed = parse_completion(completion, recipe.style)
    comps: dict[str, float] = {}
    for name in recipe.weights:
        if name in REWARDS:
            comps[name] = REWARDS[name](parsed, label, labels)
        elif extra and name in extra:
            comps[name] = float(extra[name])
    comps["overall"] = sum(recipe.weights[k] * v for k, v in comps.items())
    return comps, parsed
