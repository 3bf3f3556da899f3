"""Recipe comparisons from one cold start on the synthetic worlds, each a list of stages
(``emorl.stages``):

- ``run_compare`` (``emorl compare``): plain GRPO vs the R1-Omni recipe vs the EMO-R3 recipe on
  the omni clips (``emorl.compare.clips``);
- ``run_image_compare`` (``emorl compare --images``): SFT vs naive GRPO vs EMO-R3 on the still-image
  world with a tiny Qwen2.5-VL (``emorl.compare.images``).

Both check the reflection judge as a classifier (``emorl.compare.common.judge_check``).
"""

from emorl.compare.clips import ARMS, arm_configs, format_table, render_markdown, rewards_table, run_compare
from emorl.compare.common import TaskPromptBuilder, judge_check
from emorl.compare.images import run_image_compare
from emorl.data.synthetic.set_traces import (  # trace synthesis lives with the synthetic world
    HUMAN_RESPONSE,
    cue_description,
    reflection_tasks,
    structured_trace,
    valence_arousal_sentence,
)

__all__ = [
    "ARMS",
    "HUMAN_RESPONSE",
    "TaskPromptBuilder",
    "arm_configs",
    "cue_description",
    "format_table",
    "judge_check",
    "reflection_tasks",
    "render_markdown",
    "rewards_table",
    "run_compare",
    "run_image_compare",
    "structured_trace",
    "valence_arousal_sentence",
]
