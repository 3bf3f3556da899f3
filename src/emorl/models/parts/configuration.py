"""Configuration of the "parts" omni family: one composite ``PreTrainedConfig`` (model_type
``emorl_omni``) holding a causal LM's ``text_config``, a vision encoder's ``vision_config``, an
audio encoder's ``audio_config`` and, for HumanOmni's instruction-conditioned fusion, a BERT
``fusion_text_config``, plus the projector settings. It follows transformers' LLaVA / Qwen2-Audio
composition: each sub-config is a full transformers config, so the towers and the LLM are
built with their own classes and load with their own checkpoint conventions.

Media token counts are pure functions of a few geometry numbers (``MediaGeometry``) so that the
processor can expand placeholders without building the model.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

VISION_PROJECTORS = ("linear", "mlp2x_gelu", "all_in_one_small", "all_in_one")  # mlpNx_gelu also accepted
AUDIO_PROJECTORS = ("linear", "mlp2x_gelu")  # mlpNx_gelu also accepted
BRANCHED_PROJECTORS = ("all_in_one_small", "all_in_one")  # HumanOmni's scene / body / face projectors
FUSIONS = ("bert_gate",)
COMPRESSORS = ("slow_fast",)
SELECT_STRATEGIES = ("full", "default")


def is_mlp(kind: str) -> bool:
    """``linear`` or ``mlpNx_gelu`` (N >= 1)."""
    return kind == "linear" or re.fullmatch(r"mlp([1-9]\d*)x_gelu", kind) is not None


def mlp_depth(kind: str) -> int:
    """Number of Linear layers of a ``linear`` / ``mlpNx_gelu`` projector."""
    if kind == "linear":
        return 1
    m = re.fullmatch(r"mlp([1-9]\d*)x_gelu", kind)
    if m is None:
        raise ValueError(f"not an MLP projector type: {kind!r} (expected 'linear' or 'mlpNx_gelu')")
    return int(m.group(1))


def sampled_side(kind: str, grid: int) -> int:
    """Side of the per-frame token grid after HumanOmni's Conv3d sampler (kernel 2, stride 2;
    spatial padding 0 for ``all_in_one_small``, 1 for ``all_in_one``).

    >>> sampled_side("all_in_one_small", 14), sampled_side("all_in_one", 27)
    (7, 14)
    """
    pad = 0 if kind == "all_in_one_small" else 1
    return (grid + 2 * pad - 2) // 2 + 1


@dataclass(frozen=True)
class MediaGeometry:
    """What fixes the number of media tokens. grid: patches per side of one frame; vision_tokens:
    tokens per frame the tower yields after feature selection; projector: vision projector type;
    spatial_pool: bilinear down-sampling factor of MLP projectors (1 = none); compressor: None or
    ``slow_fast``; audio_frames: audio encoder output frames per clip; audio_pool: avg-pool stride."""

    grid: int
    projector: str
    spatial_pool: int
    compressor: str | None
    audio_frames: int
    audio_pool: int

    def frame_side(self) -> int:
        """Side of the token grid of one frame as it reaches the LLM (before any compressor)."""
        if self.projector in BRANCHED_PROJECTORS:
            return sampled_side(self.projector, self.grid)
        return math.ceil(self.grid / self.spatial_pool) if self.spatial_pool > 1 else self.grid

    def video_tokens(self, num_frames: int) -> int:
        """Tokens of a clip of ``num_frames`` frames (a still image is a clip of one frame).

        >>> MediaGeometry(14, "all_in_one_small", 1, None, 1500, 3).video_tokens(8)
        392
        >>> MediaGeometry(27, "all_in_one", 1, "slow_fast", 1500, 3).video_tokens(32)
        3136
        """
        if num_frames < 1:
            raise ValueError(f"a clip needs at least one frame, got {num_frames}")
        side = self.frame_side()
        if self.compressor == "slow_fast":
            slow = max(1, len(range(1, num_frames, 4)))
            return num_frames * (side // 2) ** 2 + slow * side * side
        return num_frames * side * side

    def audio_tokens(self) -> int:
        """Tokens of one audio clip (the encoder's fixed-length window, average-pooled).

        >>> MediaGeometry(14, "mlp2x_gelu", 2, None, 1500, 3).audio_tokens()
        500
        """
        return self.audio_frames // self.audio_pool if self.audio_pool > 1 else self.audio_frames

    def to_dict(self) -> dict:
        return asdict(self)


class EmorlOmniConfig(PreTrainedConfig):
    r"""An omni model built from parts: ``text_config`` (any causal LM), ``vision_config`` (SigLIP,
    CLIP, ... vision encoder), ``audio_config`` (Whisper, ... audio encoder: only its encoder is
    built) and optional ``fusion_text_config`` (BERT, for ``fusion_type="bert_gate"``).

    vision_feature_layer: hidden-state index of the vision tower fed to the projector (-2: the
        penultimate layer, before any post-norm; HumanOmni's choice).
    vision_feature_select_strategy: ``full`` keeps every token; ``default`` drops the first (CLIP's
        class token).
    vision_projector_type: ``linear`` / ``mlpNx_gelu`` (per-token MLP then ``vision_spatial_pool``
        bilinear down-sampling per frame) or HumanOmni's three-branch ``all_in_one_small`` /
        ``all_in_one`` (needs ``fusion_type="bert_gate"``).
    video_compressor: ``None`` or ``slow_fast`` (HumanOmni-7B's code path: 2x2-pooled tokens of every
        frame followed by full tokens of frames 1, 5, 9, ...).
    audio_projector_type / audio_pool_stride: average pooling over encoder frames (kernel = stride)
        then a ``linear`` / ``mlpNx_gelu`` projector.
    audio_seq_length: encoder output frames per clip; ``None`` reads ``max_source_positions`` of the
        audio config (Whisper: 1500 for 30 s).
    fusion_gate_hidden_size: width of the gate MLP (HumanOmni hard-codes 3584).
    image_token_id / video_token_id / audio_token_id: placeholder ids (real vocabulary tokens).
    """

    model_type = "emorl_omni"
    sub_configs_defaults = {  # noqa: RUF012  (transformers' class-level spec)
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="qwen2"),
        "vision_config": SubConfigSpec(config_class=AutoConfig, model_type="siglip_vision_model"),
        "audio_config": SubConfigSpec(config_class=AutoConfig, model_type="whisper"),
        "fusion_text_config": SubConfigSpec(config_class=AutoConfig, model_type="bert", optional=True),
    }

    text_config: dict | PreTrainedConfig | None = None
    vision_config: dict | PreTrainedConfig | None = None
    audio_config: dict | PreTrainedConfig | None = None
    fusion_text_config: dict | PreTrainedConfig | None = None
    vision_feature_layer: int = -2
    vision_feature_select_strategy: str = "full"
    vision_projector_type: str = "mlp2x_gelu"
    vision_spatial_pool: int = 2
    video_compressor: str | None = None
    audio_projector_type: str = "mlp2x_gelu"
    audio_pool_stride: int = 3
    audio_seq_length: int | None = None
    fusion_type: str | None = None
    fusion_gate_hidden_size: int = 3584
    image_token_id: int = 0
    video_token_id: int = 0
    audio_token_id: int = 0
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        # the LM head is tied exactly when the LLM part ties it
        self.tie_word_embeddings = bool(getattr(self.text_config, "tie_word_embeddings", False))
        self.validate_parts()

    def validate_parts(self) -> None:
        """Raise ValueError naming the field when the settings cannot describe a working model."""
        vp, ap = self.vision_projector_type, self.audio_projector_type
        if vp not in BRANCHED_PROJECTORS and not is_mlp(vp):
            raise ValueError(
                f"vision_projector_type: unknown {vp!r}; expected one of {VISION_PROJECTORS} or mlpNx_gelu"
            )
        if not is_mlp(ap):
            raise ValueError(f"audio_projector_type: unknown {ap!r}; expected one of {AUDIO_PROJECTORS} or mlpNx_gelu")
        if self.vision_feature_select_strategy not in SELECT_STRATEGIES:
            raise ValueError(
                f"vision_feature_select_strategy: expected one of {SELECT_STRATEGIES}, "
                f"got {self.vision_feature_select_strategy!r}"
            )
        if self.fusion_type not in (None, *FUSIONS):
            raise ValueError(f"fusion_type: expected None or one of {FUSIONS}, got {self.fusion_type!r}")
        if self.video_compressor not in (None, *COMPRESSORS):
            raise ValueError(f"video_compressor: expected None or one of {COMPRESSORS}, got {self.video_compressor!r}")
        if vp in BRANCHED_PROJECTORS and self.fusion_type != "bert_gate":
            raise ValueError(
                f"vision_projector_type={vp!r} has three branches mixed by HumanOmni's BERT gate: "
                "set fusion_type='bert_gate' (and a fusion_text_config)"
            )
        if vp not in BRANCHED_PROJECTORS and self.fusion_type is not None:
            raise ValueError(
                f"fusion_type={self.fusion_type!r} mixes the three branches of an all_in_one projector; "
                f"vision_projector_type={vp!r} has one"
            )
        if self.fusion_type is not None and self.fusion_text_config is None:
            raise ValueError(f"fusion_type={self.fusion_type!r} needs a fusion_text_config (a BERT config)")
        if self.vision_spatial_pool < 1 or self.audio_pool_stride < 1:
            raise ValueError("vision_spatial_pool and audio_pool_stride must be >= 1")
        if vp in BRANCHED_PROJECTORS:
            g = self.vision_grid
            if sampled_side(vp, g) != math.ceil(g / 2):
                parity = "an even" if vp == "all_in_one_small" else "an odd"
                raise ValueError(
                    f"{vp} needs {parity} patch grid (its Conv3d sampler and the face branch's 2x "
                    f"pooling must give the same token count); the vision tower gives {g}x{g}"
                )

    @property
    def vision_grid(self) -> int:
        """Patches per side of one frame (``image_size // patch_size`` of the vision config)."""
        vc = self.vision_config
        return int(vc.image_size) // int(vc.patch_size)

    @property
    def audio_frames(self) -> int:
        """Audio encoder output frames per clip."""
        if self.audio_seq_length is not None:
            return int(self.audio_seq_length)
        n = getattr(self.audio_config, "max_source_positions", None)
        if n is None:
            raise ValueError(
                f"audio_seq_length is not set and the {self.audio_config.model_type} audio config has "
                "no max_source_positions"
            )
        return int(n)

    def media_geometry(self) -> MediaGeometry:
        return MediaGeometry(
            grid=self.vision_grid,
            projector=self.vision_projector_type,
            spatial_pool=self.vision_spatial_pool,
            compressor=self.video_compressor,
            audio_frames=self.audio_frames,
            audio_pool=self.audio_pool_stride,
        )
