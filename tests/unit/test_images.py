"""A still image is a first-class visual input: a manifest whose media is an image file decodes to
one frame (no audio, no video pretence), becomes an image prompt (the family's image placeholder
and image inputs) for every family that takes images, passes the manifest check, and its
modality ablation is image vs text. (Exactness of image prompts through the group paths:
test_group_exact.py and test_logprobs.py, parametrized over every family's modalities.)"""

import json

import numpy as np
import pytest
from family_helpers import FAMILY_NAMES
from PIL import Image

from emorl.data.manifest import Sample, write_manifest
from emorl.data.media import MediaError, load_clip
from emorl.models.adapter import Modality
from emorl.models.registry import load_adapter
from emorl.prompting import PromptBuilder, available, carried
from emorl.recipes.prompts import PromptSpec


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    out = []
    for i, (ext, size) in enumerate([(".png", (40, 30)), (".jpg", (64, 48)), (".png", (56, 56))]):
        p = d / f"face{i}{ext}"
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(p)
        out.append(p)
    return out


def test_an_image_decodes_to_one_frame(photos):
    c = load_clip(photos[0], size=56, want_audio=False)
    assert c.frames.shape == (1, 56, 56, 3) and c.audio is None and c.source_frames == 1 and c.duration == 0.0
    with pytest.raises(MediaError, match="no_audio"):  # audio asked of a photo: the usual missing-track rule
        load_clip(photos[0], size=56)


def test_image_samples_become_image_prompts():
    s = Sample("p0", "faces/a.jpg", "happy", "ferv", "test")
    assert carried(s) == "image"
    assert available(s, Modality.AV) == available(s, Modality.VIDEO) == Modality.IMAGE
    assert available(s, Modality.TEXT) == Modality.TEXT
    with pytest.raises(ValueError, match="p0: audio requested but the sample is a still image"):
        available(s, Modality.AUDIO)
    v = Sample("v0", "clips/a.mp4", "happy", "dfew", "test")
    assert available(v, Modality.IMAGE) == Modality.IMAGE  # a video's middle frame as a still image


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_prompt_builder_gives_the_family_an_image(tiny_dir_of, photos, family):
    ad = load_adapter(tiny_dir_of(family))
    assert Modality.IMAGE in ad.modalities
    builder = PromptBuilder(
        ad,
        PromptSpec(),
        num_frames=8,
        frame_size=56,
        modality=Modality.AV if Modality.AV in ad.modalities else Modality.VIDEO,
    )
    p = builder.prompt(Sample("p0", str(photos[1]), "happy", "ferv", "test"))
    assert p.modality == Modality.IMAGE and ad.media_kinds(p.modality) == ("image",)
    ids = ad.placeholder_ids()
    n_image = int((p.input_ids == ids["image"]).sum())
    assert n_image > 0 and int((p.input_ids == ids["video"]).sum()) == 0
    grids = [v for v in p.mm.values() if v.dtype == p.input_ids.dtype and v.shape == (1, 3)]
    if family == "parts":  # one frame at the vision encoder's size, its tokens (a one-frame clip)
        assert not grids and tuple(p.mm["pixel_values"].shape) == (1, 3, 56, 56)
        assert n_image == ad.processor.image_tokens()
    else:
        (grid,) = grids
        assert int(grid[0, 0]) == 1 and n_image == int(grid.prod()) // 4  # one temporal patch, 2x2 merge
    (media,) = ad.encode_kind("image", [p])
    assert media.image.shape[0] == n_image


def test_manifest_check_accepts_photos(photos, tmp_path):
    from emorl.data.check import check_manifest, sample_modality

    m = tmp_path / "photos.jsonl"
    samples = [Sample(f"p{i}", str(p), "happy", "ferv", "test") for i, p in enumerate(photos)]
    write_manifest(m, samples)
    assert {sample_modality(s) for s in samples} == {"image"}
    r = check_manifest(m, tmp_path / "checked", workers=1, num_frames=8)
    assert r.usable == 3 and r.rejected == 0


def test_image_modality_ablation_is_image_vs_text(tiny_dir_of, photos, tmp_path):
    from emorl.eval.modality import analyze_modality

    ad = load_adapter(tiny_dir_of("qwen2.5-vl"))
    samples = [
        Sample(f"p{i}", str(p), lab, "ferv", "test")
        for i, (p, lab) in enumerate(zip(photos, ["happy", "sad", "happy"]))
    ]
    builder = PromptBuilder(ad, PromptSpec(), num_frames=8, frame_size=56, modality=Modality.VIDEO)
    out = analyze_modality(ad, builder, samples, tmp_path / "abl", max_new_tokens=4, progress=False, n_boot=50)
    assert out["conditions"]["video"]["n"] == 3 and out["conditions"]["text"]["n"] == 3
    assert set(out["not_taken"]) == {"av", "audio"} and "av" not in out["conditions"]
    rows = [json.loads(x) for x in (tmp_path / "abl" / "video" / "predictions.jsonl").read_text().splitlines()]
    assert {r["modality"] for r in rows} == {"image"}
