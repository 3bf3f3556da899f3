"""Projectors of the parts family: per-token MLPs, HumanOmni's three-branch ``AllInOne`` /
``AllInOneSmall`` video projector (RegNet stages, a Conv3d sampler and readout MLPs for the
"scene" and "body" branches, an MLP for the "face" branch), its slow-fast compressor, the
audio projector (average pooling then an MLP) and the BERT-conditioned branch gate.

``RegStage`` re-implements timm's ``timm.models.regnet.RegStage`` as HumanOmni instantiates it
(``stride=1, dilation=1, act_layer=SiLU, norm_layer=LayerNorm2d`` with the Bottleneck defaults
``bottle_ratio=1, group_size=1, se_ratio=0.25, downsample='conv1x1'``) with the same parameter
names, so HumanOmni checkpoints load unchanged and timm is not a runtime dependency. timm turns
``LayerNorm2d`` into ``LayerNormAct2d`` inside its conv blocks, whose eps is 1e-5 (not
LayerNorm2d's 1e-6); this module does the same. The unit tests compare it with timm.

Shapes: b clips, t frames, n = g*g tokens per frame, c vision width, h LLM width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from emorl.models.parts.configuration import is_mlp, mlp_depth


def build_mlp(kind: str, in_dim: int, out_dim: int) -> nn.Sequential:
    """``linear`` -> Sequential(Linear); ``mlpNx_gelu`` -> Linear, GELU, Linear, ... (N Linears):
    parameter names ``0.``, ``2.``, ... as HumanOmni's ``build_mlp`` / ``build_audio_projector``."""
    if not is_mlp(kind):
        raise ValueError(f"not an MLP projector type: {kind!r}")
    layers: list[nn.Module] = [nn.Linear(in_dim, out_dim)]
    for _ in range(1, mlp_depth(kind)):
        layers += [nn.GELU(), nn.Linear(out_dim, out_dim)]
    return nn.Sequential(*layers)


class LayerNormAct2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor, then an optional SiLU (timm's LayerNormAct2d)."""

    def __init__(self, channels: int, apply_act: bool = True, eps: float = 1e-5):
        super().__init__(channels, eps=eps)
        self.act = nn.SiLU() if apply_act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return self.act(x.permute(0, 3, 1, 2))


class ConvNormAct(nn.Module):
    """Conv2d (no bias, 'same' padding for stride 1) then LayerNormAct2d: parameters ``conv.weight``,
    ``bn.weight``, ``bn.bias``."""

    def __init__(self, cin: int, cout: int, kernel: int, groups: int = 1, apply_act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=(kernel - 1) // 2, groups=groups, bias=False)
        self.bn = LayerNormAct2d(cout, apply_act=apply_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class SqueezeExcite(nn.Module):
    """timm's SEModule with a SiLU: x * sigmoid(fc2(silu(fc1(mean_hw(x)))))."""

    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.act = nn.SiLU()
        self.fc2 = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(s)


class Bottleneck(nn.Module):
    """RegNet bottleneck (ratio 1, depthwise 3x3, SE width round(in/4)) with a 1x1 conv shortcut
    when the width changes."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = ConvNormAct(cin, cout, 1)
        self.conv2 = ConvNormAct(cout, cout, 3, groups=cout)
        self.se = SqueezeExcite(cout, round(cin * 0.25))
        self.conv3 = ConvNormAct(cout, cout, 1, apply_act=False)
        self.downsample = ConvNormAct(cin, cout, 1, apply_act=False) if cin != cout else nn.Identity()
        self.act3 = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv3(self.se(self.conv2(self.conv1(x))))
        return self.act3(y + self.downsample(x))


class RegStage(nn.Sequential):
    """``depth`` bottlenecks named ``b1``, ``b2``, ...; (N, cin, H, W) -> (N, cout, H, W)."""

    def __init__(self, depth: int, cin: int, cout: int):
        super().__init__()
        for i in range(depth):
            self.add_module(f"b{i + 1}", Bottleneck(cin if i == 0 else cout, cout))


def pool_frames_2d(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Bilinear resize of each frame's token grid to ceil(g / stride) per side (HumanOmni's
    ``get_2dPool``; for even g and stride 2 it equals 2x2 average pooling).

    x: (t, g*g, h) -> (t, ceil(g/stride)**2, h).
    """
    t, n, h = x.shape
    g = math.isqrt(n)
    if g * g != n:
        raise ValueError(f"pool_frames_2d needs a square token grid per frame, got {n} tokens")
    side = math.ceil(g / stride)
    y = x.view(t, g, g, h).permute(0, 3, 1, 2).contiguous()
    y = F.interpolate(y, size=[side, side], mode="bilinear")
    return y.permute(0, 2, 3, 1).reshape(t, side * side, h)


class MlpVisionProjector(nn.Sequential):
    """Per-token MLP (parameters ``0.``, ``2.``, ...) then per-frame bilinear pooling:
    (b, t, g*g, c) -> (b, t*s*s, h) with s = ceil(g / spatial_pool)."""

    def __init__(self, kind: str, vision_dim: int, text_dim: int, spatial_pool: int):
        super().__init__(*build_mlp(kind, vision_dim, text_dim))
        self.spatial_pool = spatial_pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, n, _ = x.shape
        y = super().forward(x.reshape(b * t, n, -1))
        if self.spatial_pool > 1:
            y = pool_frames_2d(y, self.spatial_pool)
        return y.reshape(b, -1, y.shape[-1])


class AllInOneProjector(nn.Module):
    """HumanOmni's ``AllInOneSmall`` (``small=True``: RegStage depth 2, Conv3d spatial padding 0) or
    ``AllInOne`` (depth 4, padding 1). Parameter names follow HumanOmni's: ``s1_video``,
    ``sampler_video.0``, ``s2_video``, ``readout_video``, the same with ``_body``, and
    ``mlp_2xgelu_face``.

    forward(x) with x: (b, t, g*g, c) frames features returns (scene, body, face), each
    (b, t*s*s, h) with s the sampled side (the face branch is 2x bilinear-pooled to match).
    """

    def __init__(self, vision_dim: int, text_dim: int, small: bool):
        super().__init__()
        depth, pad = (2, 0) if small else (4, 1)
        for branch in ("video", "body"):
            self.add_module(f"s1_{branch}", RegStage(depth, vision_dim, text_dim))
            conv = nn.Conv3d(text_dim, text_dim, kernel_size=(2, 2, 2), stride=(1, 2, 2), padding=(1, pad, pad))
            self.add_module(f"sampler_{branch}", nn.Sequential(conv, nn.SiLU()))
            self.add_module(f"s2_{branch}", RegStage(depth, text_dim, text_dim))
            self.add_module(f"readout_{branch}", build_mlp("mlp2x_gelu", text_dim, text_dim))
        self.mlp_2xgelu_face = build_mlp("mlp2x_gelu", vision_dim, text_dim)

    def _branch(self, x: torch.Tensor, name: str) -> torch.Tensor:
        b, t, n, c = x.shape
        g = math.isqrt(n)
        # (b, t, g*g, c) -> (b*t, c, g, g), the layout HumanOmni's einops calls produce
        y = x.reshape(b, t, g, g, c).permute(0, 1, 4, 2, 3).reshape(b * t, c, g, g)
        y = getattr(self, f"s1_{name}")(y)
        d = y.shape[1]
        y = y.reshape(b, t, d, g, g).permute(0, 2, 1, 3, 4)  # (b, d, t, g, g)
        y = getattr(self, f"sampler_{name}")(y)[:, :, :-1]  # Conv3d adds one step in time: drop the last
        t2, s = y.shape[2], y.shape[3]
        y = getattr(self, f"s2_{name}")(y.permute(0, 2, 1, 3, 4).reshape(b * t2, d, s, s))
        y = y.reshape(b, t2, d, s, s).permute(0, 1, 3, 4, 2).reshape(b, t2 * s * s, d)
        return getattr(self, f"readout_{name}")(y)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, t, n, c = x.shape
        scene = self._branch(x, "video")
        body = self._branch(x, "body")
        face = self.mlp_2xgelu_face(x.reshape(b * t, n, c))
        face = torch.stack([pool_frames_2d(f, 2).flatten(0, 1) for f in face.reshape(b, t, n, -1)])
        return scene, body, face


class BertBranchGate(nn.Sequential):
    """HumanOmni's ``bert_gate``: softmax(Linear(d, hidden) -> GELU -> Linear(hidden, 3)) over the
    [CLS] state of the instruction; parameters ``0.`` and ``2.``."""

    def __init__(self, text_dim: int, hidden: int, branches: int = 3):
        super().__init__(nn.Linear(text_dim, hidden), nn.GELU(), nn.Linear(hidden, branches))

    def forward(self, cls_state: torch.Tensor) -> torch.Tensor:
        """cls_state: (n, d) -> branch weights (n, 3), rows sum to 1."""
        return torch.softmax(super().forward(cls_state), dim=1)


def mix_branches(scene: torch.Tensor, body: torch.Tensor, face: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per-clip weighted sum ``scene*w0 + body*w1 + face*w2``. branches: (b, L, h); weights: (b, 3)."""
    w = weights[:, :, None, None].to(scene.dtype)
    return scene * w[:, 0] + body * w[:, 1] + face * w[:, 2]


def slow_fast(x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """HumanOmni-7B's ``SFDynamicCompressor``: for one clip's tokens (t*s*s, h) return the 2x2
    average-pooled tokens of every frame followed by the full tokens of frames 1, 5, 9, ...
    (frame 0 when t == 1): (t*floor(s/2)**2 + k*s*s, h)."""
    n, h = x.shape
    s = math.isqrt(n // num_frames)
    frames = x.reshape(num_frames, s, s, h)
    fast = F.avg_pool2d(frames.permute(0, 3, 1, 2), 2, 2)  # (t, h, s/2, s/2)
    fast = fast.permute(0, 2, 3, 1).reshape(-1, h)
    index = torch.arange(1, num_frames, 4, device=x.device)
    if index.numel() == 0:
        index = torch.zeros(1, dtype=torch.long, device=x.device)
    return torch.cat([fast, frames[index].reshape(-1, h)], dim=0)


class AudioProjector(nn.Sequential):
    """Average pooling over encoder frames (kernel = stride = ``pool``) then an MLP (parameters
    ``0.``, ``2.`` as HumanOmni's ``audio_projector``): (b, frames, d) -> (b, frames // pool, h)."""

    def __init__(self, kind: str, audio_dim: int, text_dim: int, pool: int):
        super().__init__(*build_mlp(kind, audio_dim, text_dim))
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool > 1:
            x = x.permute(0, 2, 1).contiguous()
            x = F.avg_pool1d(x, kernel_size=self.pool, stride=self.pool).permute(0, 2, 1).contiguous()
        return super().forward(x)
