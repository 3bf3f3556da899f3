"""The parts family's projectors: RegStage against timm (names and numbers), token counts, the
bilinear 2x pooling, and config validation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from emorl.models.parts.configuration import MediaGeometry, sampled_side
from emorl.models.parts.projectors import AudioProjector, RegStage, build_mlp, pool_frames_2d, slow_fast


@pytest.mark.parametrize("depth,cin,cout", [(2, 12, 16), (4, 16, 16)])
def test_regstage_equals_timm(depth, cin, cout):
    timm_regnet = pytest.importorskip("timm.models.regnet", reason="timm (test extra) is the reference RegStage")
    from timm.layers import LayerNorm2d

    torch.manual_seed(0)
    ref = timm_regnet.RegStage(
        depth=depth, in_chs=cin, out_chs=cout, stride=1, dilation=1, act_layer=nn.SiLU, norm_layer=LayerNorm2d
    )
    for p in ref.parameters():
        nn.init.normal_(p, std=0.2)
    ours = RegStage(depth, cin, cout)
    assert set(ours.state_dict()) == set(ref.state_dict())
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(3, cin, 6, 6)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-6, rtol=1e-5)
    # the SE width is round(in/4) of each block's input; a width change adds a 1x1 conv shortcut
    assert ours.b1.se.fc1.out_channels == round(cin / 4)
    assert ("b1.downsample.conv.weight" in ours.state_dict()) == (cin != cout)


def test_token_counts_hand_computed():
    # R1-Omni: SigLIP-224/16 (14x14), AllInOneSmall -> 8 frames x 7 x 7; Whisper 1500 frames / 3
    r1 = MediaGeometry(
        grid=14, projector="all_in_one_small", spatial_pool=1, compressor=None, audio_frames=1500, audio_pool=3
    )
    assert (r1.video_tokens(8), r1.video_tokens(1), r1.audio_tokens()) == (392, 49, 500)
    # HumanOmni-7B: SigLIP-384/14 (27x27), AllInOne -> 14x14 per frame; slow-fast: 32 x 7 x 7 + 8 x 14 x 14
    ho7 = MediaGeometry(27, "all_in_one", 1, "slow_fast", 1500, 3)
    assert sampled_side("all_in_one", 27) == 14 and ho7.video_tokens(32) == 32 * 49 + 8 * 196
    # MLP projector with 2x bilinear pooling: ceil(14 / 2) = 7; an odd grid rounds up
    assert MediaGeometry(14, "mlp2x_gelu", 2, None, 1500, 1).video_tokens(8) == 392
    assert MediaGeometry(5, "linear", 2, None, 10, 1).video_tokens(2) == 2 * 9
    assert MediaGeometry(5, "linear", 2, None, 10, 1).audio_tokens() == 10


def test_pool_frames_2d_is_avg_pool_on_even_grids():
    x = torch.arange(2 * 16 * 3, dtype=torch.float32).reshape(2, 16, 3)
    got = pool_frames_2d(x, 2)
    want = nn.functional.avg_pool2d(x.view(2, 4, 4, 3).permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1).reshape(2, 4, 3)
    torch.testing.assert_close(got, want)
    # tokens (0,0),(0,1),(1,0),(1,1) of frame 0, channel 0: 0, 3, 12, 15 -> mean 7.5
    assert got[0, 0, 0].item() == 7.5


def test_slow_fast_order():
    # 8 frames of 2x2 tokens, 1 channel: fast = the mean of each frame, slow = frames 1 and 5 in full
    x = torch.arange(32, dtype=torch.float32).reshape(32, 1)
    out = slow_fast(x, 8).flatten().tolist()
    assert out[:8] == [1.5 + 4 * i for i in range(8)]
    assert out[8:] == [4.0, 5.0, 6.0, 7.0, 20.0, 21.0, 22.0, 23.0]


def test_audio_projector_pools_by_three():
    proj = AudioProjector("linear", 2, 2, pool=3)
    with torch.no_grad():
        proj[0].weight.copy_(torch.eye(2))
        proj[0].bias.zero_()
    x = torch.arange(14, dtype=torch.float32).reshape(1, 7, 2)  # 7 frames -> 2 pooled (the 7th is dropped)
    torch.testing.assert_close(proj(x), torch.tensor([[[2.0, 3.0], [8.0, 9.0]]]))


def test_mlp_names_and_depth():
    assert [k for k in build_mlp("mlp3x_gelu", 4, 5).state_dict() if k.endswith("weight")] == [
        "0.weight",
        "2.weight",
        "4.weight",
    ]
    with pytest.raises(ValueError, match="not an MLP"):
        build_mlp("mlp0x_gelu", 4, 5)


def test_config_rejects_what_cannot_work():
    from transformers import SiglipVisionConfig

    from emorl.models.parts import EmorlOmniConfig

    odd = SiglipVisionConfig(image_size=40, patch_size=8)  # 5x5 grid
    with pytest.raises(ValueError, match="all_in_one_small needs an even patch grid"):
        EmorlOmniConfig(
            vision_config=odd,
            vision_projector_type="all_in_one_small",
            fusion_type="bert_gate",
            fusion_text_config={"model_type": "bert"},
        )
    with pytest.raises(ValueError, match="fusion_type='bert_gate'"):
        EmorlOmniConfig(vision_projector_type="all_in_one_small")
    with pytest.raises(ValueError, match="vision_projector_type: unknown"):
        EmorlOmniConfig(vision_projector_type="qformer")
    cfg = EmorlOmniConfig()
    assert cfg.media_geometry().video_tokens(8) == 392 and cfg.media_geometry().audio_tokens() == 1500 // 3


def test_humanomni_frame_rule():
    from emorl.data.media import segment_middles
    from emorl.models.parts.humanomni import humanomni_frame_indices

    # HumanOmni splits n - 1 into segments (round((i + 0.5) * 15 / 4)); emorl splits n
    assert humanomni_frame_indices(16, 4) == [2, 6, 9, 13]
    assert segment_middles(16, 4) == [2, 6, 10, 14]
    assert humanomni_frame_indices(3, 4) == [0, 1, 1, 2]
