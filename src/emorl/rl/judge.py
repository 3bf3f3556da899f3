"""Who answers EMO-R3's reflection questions, and how an answer becomes a score.

The judge (``reflection.judge``):

- ``policy``: the current policy, as EMO-R3 released it (the same weights that are being trained);
- ``frozen``: a frozen copy of the starting checkpoint (``model.path``), loaded once next to the
  policy: the judge no longer moves with the policy, so the policy cannot train it into agreeing;
- a path: another checkpoint (any registered family), e.g. a larger model or one taught the
  reflection questions. It encodes the questions with its own processor; the media come from the
  run's decoding settings.

The scoring (``reflection.scoring``):

- ``sample``: one answer sampled at ``reflection.temperature`` / ``top_p`` and read as words
  (``emorl.rl.reflection.coherence_score`` / ``grounding_score``: 1, 0 or 0.5);
- ``logprob``: one scoring pass over the candidate answers (``adapter.completion_logprobs`` with
  the candidates of a question as one group, so the question runs once) instead of a generation.
  ``P(w)`` is the probability, at temperature 1, that the answer starts with the tokens of ``w``,
  summed over its surface forms (``yes``, ``Yes``). The score is what the sampled answer would
  score on average if every answer began with a candidate or with something neither yes nor no:
  grounding ``0.5 + (P(yes) - P(no)) / 2``; coherence ``P(label) + 0.5 * (1 - sum_k P(k))`` over
  the label set's words (``P(label)`` when the mass on emotion words is 1). Both lie in [0, 1]
  (the mass is clipped at 1) and move continuously with the judge's belief, so a group of
  completions gets graded rewards where a sampled word gives ties.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from emorl.models.adapter import OmniAdapter, PromptInputs
from emorl.utils import chunks

JUDGES = ("policy", "frozen")  # or a checkpoint path
SCORINGS = ("sample", "logprob")
YES_FORMS = ("yes", "Yes")
NO_FORMS = ("no", "No")


def check_judge(judge: str, scoring: str) -> None:
    """Validate ``reflection.judge`` / ``reflection.scoring`` (a path must be a directory)."""
    if scoring not in SCORINGS:
        raise ValueError(f"reflection.scoring must be one of {', '.join(SCORINGS)}, got {scoring!r}")
    if not judge:
        raise ValueError("reflection.judge must be policy, frozen or a checkpoint directory, got ''")
    if judge not in JUDGES and not (Path(judge) / "config.json").is_file():
        raise ValueError(
            f"reflection.judge={judge!r}: expected policy, frozen or a checkpoint directory holding config.json"
        )


def freeze(adapter: OmniAdapter) -> OmniAdapter:
    """No gradients and eval mode for a judge that is not the policy."""
    for p in adapter.model.parameters():
        p.requires_grad_(False)
    adapter.model.eval()
    return adapter


def load_judge(cfg, policy: OmniAdapter) -> OmniAdapter:
    """The adapter that answers the reflection questions for a run config (``reflection.judge``):
    the policy itself, or a checkpoint loaded frozen on the policy's device in ``model.dtype``."""
    from emorl.models.registry import load_adapter

    judge = cfg.reflection.judge
    check_judge(judge, cfg.reflection.scoring)
    if judge == "policy":
        return policy
    path = cfg.model.path if judge == "frozen" else judge
    if not path:
        raise ValueError("reflection.judge=frozen needs model.path (the starting checkpoint)")
    return freeze(
        load_adapter(path, dtype=cfg.model.dtype, device=policy.device, frame_pixels=cfg.model.frame_pixels or None)
    )


@contextlib.contextmanager
def scoring_mode(adapter: OmniAdapter):
    """No gradients and eval mode for a scoring pass; the model's training flag is restored."""
    was = adapter.model.training
    adapter.model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        adapter.model.train(was)


def candidate_ids(adapter: OmniAdapter, forms: tuple[str, ...]) -> list[torch.Tensor]:
    """The token ids of each candidate answer (no special tokens, no EOS)."""
    out = []
    for w in forms:
        ids = adapter.tokenizer(w, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"candidate answer {w!r} has no tokens")
        out.append(torch.tensor(ids, dtype=torch.long))
    return out


def answer_probs(
    adapter: OmniAdapter, prompts: list[PromptInputs], candidates: list[list[torch.Tensor]], batch_size: int
) -> list[np.ndarray]:
    """Per prompt, the probability that the answer starts with each of its candidates: one
    group-aware scoring pass (a prompt and its candidates are one group), ``batch_size`` prompts
    per call, one modality per call when the family needs it. Returns arrays (n_candidates,)."""
    split = getattr(adapter, "one_modality_per_batch", True)
    buckets: dict = defaultdict(list)
    for i, p in enumerate(prompts):
        buckets[p.modality if split else None].append(i)
    out: list = [None] * len(prompts)
    with scoring_mode(adapter):
        for idx in buckets.values():
            for part in chunks(idx, batch_size):
                rows_p, rows_c, groups = [], [], []
                for i in part:
                    rows_p += [prompts[i]] * len(candidates[i])
                    rows_c += candidates[i]
                    groups += [i] * len(candidates[i])
                logps, mask, _ = adapter.completion_logprobs(rows_p, rows_c, groups=groups)
                seq = (logps.float() * mask.float()).sum(-1).exp().cpu().numpy()
                k = 0
                for i in part:
                    out[i] = seq[k : k + len(candidates[i])]
                    k += len(candidates[i])
    return out


def expected_grounding(p_yes: float, p_no: float) -> float:
    """0.5 + (P(yes) - P(no)) / 2, in [0, 1].

    >>> expected_grounding(1.0, 0.0), expected_grounding(0.2, 0.2), expected_grounding(0.0, 0.5)
    (1.0, 0.5, 0.25)
    """
    return float(np.clip(0.5 + 0.5 * (p_yes - p_no), 0.0, 1.0))


def expected_coherence(p_label: float, p_all: float) -> float:
    """P(label) + 0.5 * (1 - P(any label word)), the mass clipped at 1; in [0, 1].

    >>> expected_coherence(1.0, 1.0), expected_coherence(0.0, 0.0), expected_coherence(0.3, 0.8)
    (1.0, 0.5, 0.4)
    """
    p_all = min(1.0, p_all)
    return float(np.clip(p_label + 0.5 * (1.0 - p_all), 0.0, 1.0))
