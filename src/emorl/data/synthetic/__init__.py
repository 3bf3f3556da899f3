"""The synthetic omni-emotion world: the project's embedded default dataset.

Procedural faces (``face``) and voices (``voice``) whose expression and prosody follow per-class
cue distributions (``world``), with cold-start reasoning traces built from the true cues
(``traces``). Generate a world with :func:`synthesize`::

    from emorl.data.synthetic import synthesize
    manifests = synthesize("data/synthetic", seed=0, workers=2)   # {split: Path to <split>.jsonl}

The still-image world (Mikels-8 scenes, EMO-R3's ground) is ``image_world`` (drawing: ``scenes``;
SET traces: ``image_traces``)::

    from emorl.data.synthetic.image_world import synthesize_images
    manifests = synthesize_images("data/synthetic-images", seed=0)
"""

from emorl.data.synthetic.traces import CUE_LEXICON, THINK_WORDS, describe_cues, make_trace
from emorl.data.synthetic.world import (
    AUDIO_CUES,
    CLASSES,
    DEFAULT_SIZES,
    GENERATOR_VERSION,
    INFORMATIVE,
    SPLITS,
    VIDEO_CUES,
    ClipSpec,
    make_spec,
    plan_split,
    render_clip,
    split_specs,
    synthesize,
)

__all__ = [
    "AUDIO_CUES",
    "CLASSES",
    "CUE_LEXICON",
    "DEFAULT_SIZES",
    "GENERATOR_VERSION",
    "INFORMATIVE",
    "SPLITS",
    "THINK_WORDS",
    "VIDEO_CUES",
    "ClipSpec",
    "describe_cues",
    "make_spec",
    "make_trace",
    "plan_split",
    "render_clip",
    "split_specs",
    "synthesize",
]
