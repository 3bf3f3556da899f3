"""Each family's native preprocessing (``data.sampling=native``): the Qwen families' frame counts,
frame indices and sizes equal the official qwen-vl-utils / qwen-omni-utils rules, computed by the
packages themselves (their pure functions, and ``fetch_video`` on frame lists: their video readers
need torchvision's removed ``read_video`` or decord, neither usable here); a clip decoded through
emorl's loader gets those frames and sizes and the processor keeps them; the parts family takes
its checkpoint's fixed frame count at its encoder's size; the sampling settings are checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emorl.models.qwen import preprocess as q

vl = pytest.importorskip("qwen_vl_utils.vision_process", reason="qwen-vl-utils (test extra): the official rules")
omni = pytest.importorskip("qwen_omni_utils.v2_5.vision_process", reason="qwen-omni-utils (test extra)")

# (decoded frames, their rate, height, width): the 3 s 320x240 clip, a short clip (the 4-frame
# minimum), full HD (the per-frame cap), a tiny frame (upscaled to the minimum), a long clip (768 frames)
CLIPS = [
    (24, 8.0, 240, 320),
    (30, 25.0, 360, 640),
    (300, 30.0, 1080, 1920),
    (150, 30.0, 80, 100),
    (12000, 30.0, 720, 1280),
    (61, 29.97, 480, 270),
]


def official(pkg, total: int, fps: float, h: int, w: int, factor: int):
    """(indices, (h, w), sample fps) by the package: smart_nframes, its readers' linspace, fetch_video's budget."""
    n = pkg.smart_nframes({}, total_frames=total, video_fps=fps)
    idx = torch.linspace(0, total - 1, n).round().long().tolist()
    min_pixels = pkg.VIDEO_MIN_TOKEN_NUM * factor * factor
    total_pixels = pkg.MODEL_SEQ_LEN * factor * factor * 0.9
    max_pixels = max(
        min(pkg.VIDEO_MAX_TOKEN_NUM * factor * factor, total_pixels / n * pkg.FRAME_FACTOR), int(min_pixels * 1.05)
    )
    return idx, pkg.smart_resize(h, w, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels), n / total * fps


@pytest.mark.parametrize("factor", [28, 32], ids=["qwen2.5", "qwen3"])
@pytest.mark.parametrize("pkg", [vl, omni], ids=["qwen-vl-utils", "qwen-omni-utils"])
def test_frame_counts_indices_and_sizes_equal_the_official_rules(pkg, factor):
    for total, fps, h, w in CLIPS:
        idx, size, rate = q.native_video(total, fps, h, w, factor)
        want_idx, want_size, want_rate = official(pkg, total, fps, h, w, factor)
        assert (idx, size) == (want_idx, want_size), (total, fps, h, w)
        assert rate == pytest.approx(want_rate)
        assert size[0] % factor == 0 and size[1] % factor == 0
    # the example of issue 21: a 3 s 320x240 clip -> 6 frames at 280x392 for Qwen2.5-Omni (factor 28)
    if factor == 28:
        idx, size, rate = q.native_video(24, 8.0, 240, 320, 28)
        assert (len(idx), size, rate) == (6, (280, 392), 2.0) and idx == [0, 5, 9, 14, 18, 23]
    lengths = {len(q.native_video(t, f, h, w, factor)[0]) for t, f, h, w in CLIPS}
    assert {4, 768} <= lengths  # the minimum and the maximum were reached


@pytest.mark.parametrize("factor", [28, 32])
def test_the_total_pixel_budget_and_frame_lists_equal_fetch_video(monkeypatch, factor):
    """``fetch_video`` itself on lists of frames (no reader needed): the image-rule pass of each
    frame, padding to an even count, and the per-frame budget from the total pixels, triggered here
    with a small MODEL_SEQ_LEN set in the package and in emorl alike."""
    from PIL import Image

    for seq_len in (q.MODEL_SEQ_LEN, 400):
        monkeypatch.setattr(vl, "MODEL_SEQ_LEN", seq_len)
        monkeypatch.setattr(q, "MODEL_SEQ_LEN", seq_len)
        for n, h, w in ((5, 240, 320), (8, 500, 700), (6, 90, 60)):
            frames = [Image.fromarray(np.full((h, w, 3), 10 * i, np.uint8)) for i in range(n)]
            video, sample_fps = vl.fetch_video(
                {"video": frames}, image_patch_size=factor // 2, return_video_sample_fps=True
            )
            idx, size, rate = q.native_video(n, None, h, w, factor)
            assert (len(idx), *size) == (video.shape[0], *video.shape[2:]), (seq_len, n, h, w)
            assert idx[-1] == n - 1 and rate == sample_fps == 2.0


def test_a_clip_gets_native_frames_through_the_loader(tiny_dir_of, tmp_path):
    """A 3 s 320x240 mp4 at 8 fps through PromptBuilder(sampling="native") on a Qwen2.5-Omni adapter
    with the default video budget (a real checkpoint's): 6 frames at 280x392, kept by the processor
    (grid 3 x 20 x 28); on the parts family: the checkpoint's 8 frames at segment middles, resized
    by its encoder's processor to its input size."""
    from emorl.data.manifest import Sample
    from emorl.data.media import write_mp4
    from emorl.models.adapter import Modality
    from emorl.models.registry import load_adapter
    from emorl.prompting import PromptBuilder
    from emorl.recipes.prompts import PromptSpec

    rng = np.random.default_rng(0)
    clip = tmp_path / "wide.mp4"
    write_mp4(
        clip,
        rng.integers(0, 255, (24, 240, 320, 3), dtype=np.uint8),
        8,
        (0.1 * rng.standard_normal(48000)).astype(np.float32),
    )
    sample = Sample("w", str(clip), "happy", "dfew", "test")
    ad = load_adapter(tiny_dir_of("qwen2.5-omni"))
    ad.frame_pixels = None  # a real checkpoint: no exact budget of its own
    ad.processor.video_processor.size = {"shortest_edge": 128 * 28 * 28, "longest_edge": 768 * 28 * 28}
    b = PromptBuilder(ad, PromptSpec(), sampling="native", num_frames=0, frame_size=None, modality=Modality.VIDEO)
    c = b.clip(sample)
    assert c.frames.shape == (6, 280, 392, 3) and c.fps == pytest.approx(2.0)
    assert b.prompt(sample).mm["video_grid_thw"].tolist() == [[3, 20, 28]]
    assert b.media_settings().startswith("native:") and '"factor": 28' in b.media_settings()

    parts = load_adapter(tiny_dir_of("parts"))
    pb = PromptBuilder(parts, PromptSpec(), sampling="native", num_frames=0, frame_size=None, modality=Modality.AV)
    pc = pb.clip(sample)
    assert pc.frames.shape == (parts.processor.settings.num_frames, 240, 320, 3)
    p = pb.prompt(sample)
    assert tuple(p.mm["pixel_values_videos"].shape) == (1, parts.processor.settings.num_frames, 3, 56, 56)
    plan = parts.native_video(24, 8.0, 240, 320)
    assert plan.indices == (1, 4, 7, 10, 13, 16, 19, 22) and plan.size is None  # segment middles of 24 frames


def test_sampling_settings_are_checked():
    from emorl.prompting import check_sampling

    check_sampling("native", 0, None)
    check_sampling("fixed", 8, 224)
    with pytest.raises(ValueError, match="data.frame_size=224: data.sampling=native takes the model family's own"):
        check_sampling("native", 0, 224)
    with pytest.raises(ValueError, match="data.num_frames=8: data.sampling=native"):
        check_sampling("native", 8, None)
    with pytest.raises(ValueError, match="data.sampling=fixed needs data.num_frames > 0"):
        check_sampling("fixed", 0, None)
    with pytest.raises(ValueError, match="data.sampling must be one of native, fixed, got 'fps'"):
        check_sampling("fps", 0, None)


def test_saved_configs_without_sampling_read_as_fixed(tmp_path):
    """A model trained before data.sampling existed was trained on fixed frames: it is read back so."""
    import yaml

    from emorl.config import config_for_model

    (tmp_path / "emorl_config.yaml").write_text(yaml.safe_dump({"data": {"num_frames": 8, "frame_size": 84}}))
    cfg, _ = config_for_model(tmp_path)
    assert (cfg.data.sampling, cfg.data.num_frames, cfg.data.frame_size) == ("fixed", 8, 84)
