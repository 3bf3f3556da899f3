"""The group is the unit of RL work: one clip's prompt, its G completions, their reward
components and advantages."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from emorl.data.manifest import Sample
from emorl.models.adapter import OmniAdapter, PromptInputs, SamplingParams, sample_by_modality
from emorl.recipes.parse import Parsed
from emorl.recipes.rewards import RewardRecipe, score


@dataclass
class Group:
    """sample, prompt; completions: G tensors (L_g,); texts: G strings;
    rewards: component -> (G,) tensor, incl. 'overall'; advantages: (G,) filled later."""

    sample: Sample
    prompt: PromptInputs
    completions: list[torch.Tensor]
    texts: list[str]
    truncated: list[bool]
    rewards: dict[str, torch.Tensor] = field(default_factory=dict)
    parsed: list[Parsed] = field(default_factory=list)
    advantages: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return len(self.completions)


ExtraRewards = Callable[[list["Group"]], list[list[dict[str, float]]]]
"""Model-based reward components (e.g. EMO-R3's reflection): groups -> per group, per completion,
{component: value}. Called once per step with every group, so it can batch its own passes."""


def rollout(
    adapter: OmniAdapter,
    samples: list[Sample],
    prompts: list[PromptInputs],
    group_size: int,
    params: SamplingParams,
    recipe: RewardRecipe,
    extra: ExtraRewards | None = None,
) -> list[Group]:
    """Sample ``group_size`` completions per prompt and score each with the recipe's components
    (rule-based ones here, model-based ones from ``extra``); ``rewards['overall']`` is their
    weighted sum."""
    groups = sample_groups(adapter, samples, prompts, group_size, params)
    score_groups(groups, recipe, extra)
    return groups


def sample_groups(
    adapter: OmniAdapter, samples: list[Sample], prompts: list[PromptInputs], group_size: int, params: SamplingParams
) -> list[Group]:
    comp = sample_by_modality(adapter, prompts, group_size, params)
    return [
        Group(s, p, ids, texts, trunc)
        for s, p, ids, texts, trunc in zip(samples, prompts, comp.ids, comp.texts, comp.truncated)
    ]


def score_groups(groups: list[Group], recipe: RewardRecipe, extra: ExtraRewards | None = None) -> None:
    """Fill ``g.rewards`` (component -> (G,)) and ``g.parsed`` for every group."""
    extras = extra(groups) if extra is not None else [[{} for _ in g.texts] for g in groups]
    for g, g_extra in zip(groups, extras):
        per: dict[str, list[float]] = defaultdict(list)
        for t, ex in zip(g.texts, g_extra):
            comps, parsed = score(recipe, t, g.sample.label, g.sample.labels, extra=ex, words=g.sample.words)
            g.parsed.append(parsed)
            for k, v in comps.items():
                per[k].append(v)
        g.rewards = {k: torch.tensor(v, dtype=torch.float32) for k, v in per.items()}
