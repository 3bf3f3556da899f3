"""Manifest validation (errors name file, line and field) and PyAV media decoding outcomes."""

import json

import numpy as np
import pytest
from media_helpers import make_clip

from emorl.data.manifest import ManifestError, Sample, read_manifest, write_manifest
from emorl.data.media import MediaError, decode_audio, load_clip, segment_middles, write_mp4, write_wav


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


GOOD = {"id": "a", "media": "clips/a.mp4", "label": "happy", "dataset": "dfew", "split": "test", "fold": 1}


def test_roundtrip_and_relative_paths(tmp_path):
    n = write_manifest(
        tmp_path / "m.jsonl", [Sample(**{**GOOD, "media": str(tmp_path / "clips/a.mp4")})], relative_to=tmp_path
    )
    assert n == 1
    assert json.loads((tmp_path / "m.jsonl").read_text())["media"] == "clips/a.mp4"
    s = read_manifest(tmp_path / "m.jsonl")[0]
    assert s.media == str(tmp_path / "clips/a.mp4") and s.labels[0] == "happy" and len(s.labels) == 7


@pytest.mark.parametrize(
    "row,msg",
    [
        ({k: v for k, v in GOOD.items() if k != "label"}, r"m.jsonl:2: missing field\(s\) label"),
        ({**GOOD, "label": "bored"}, r"m.jsonl:2: field 'label' is 'bored'"),
        ({**GOOD, "fold": "one"}, r"m.jsonl:2: field 'fold' must be an integer"),
        ({**GOOD, "colour": 1}, r"m.jsonl:2: unknown field\(s\) colour"),
        ({**GOOD, "label_set": ["sad"]}, r"m.jsonl:2: label 'happy' is not in its label_set"),
        ({**GOOD, "id": "first"}, r"m.jsonl:2: duplicate id 'first' \(first on line 1\)"),
        ("{not json", r"m.jsonl:2: invalid JSON"),
        ([1, 2], r"m.jsonl:2: expected a JSON object"),
    ],
)
def test_errors_name_line_and_field(tmp_path, row, msg):
    p = _write(tmp_path / "m.jsonl", [{**GOOD, "id": "first"}, row])
    with pytest.raises(ManifestError, match=msg):
        read_manifest(p)


def test_missing_and_empty_manifest(tmp_path):
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(tmp_path / "nope.jsonl")
    with pytest.raises(ManifestError, match="no rows"):
        read_manifest(_write(tmp_path / "e.jsonl", []))


def test_segment_middles():
    assert segment_middles(16, 8) == [1, 3, 5, 7, 9, 11, 13, 15]
    assert segment_middles(10, 4) == [1, 3, 6, 8]
    with pytest.raises(ValueError):
        segment_middles(0, 4)


def test_decode_frames_and_audio(tmp_path):
    p = make_clip(tmp_path / "a.mp4", seconds=2.0, fps=8, size=56)
    c = load_clip(p, num_frames=8)
    assert c.frames.shape == (8, 56, 56, 3) and c.frames.dtype == np.uint8
    assert c.audio.dtype == np.float32 and len(c.audio) == 32000  # AAC padding trimmed to the duration
    assert c.source_frames == 16 and c.notes == []
    # the 220-Hz-ish tone survives: dominant frequency of the decoded audio
    spec = np.abs(np.fft.rfft(c.audio))
    assert abs(np.argmax(spec) * 16000 / len(c.audio) - 120) < 3
    assert load_clip(p, num_frames=4, size=28).frames.shape == (4, 28, 28, 3)


def test_no_audio_track_is_an_explicit_outcome(tmp_path):
    p = make_clip(tmp_path / "silent.mp4", audio=False)
    with pytest.raises(MediaError) as e:
        load_clip(p)
    assert e.value.outcome == "no_audio" and "silent.mp4" in str(e.value)
    c = load_clip(p, on_missing_audio="silence")
    assert c.notes == ["no_audio:silence"] and not c.audio.any()
    c = load_clip(p, on_missing_audio="skip")
    assert c.audio is None and c.notes == ["no_audio:skip"]
    assert load_clip(p, want_audio=False).frames is not None


@pytest.mark.parametrize(
    "content,outcome",
    [
        (b"\x00garbage" * 100, "unreadable"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\n", "lfs_pointer"),
        (b"", "unreadable"),
    ],
)
def test_corrupt_files(tmp_path, content, outcome):
    p = tmp_path / "bad.mp4"
    p.write_bytes(content)
    with pytest.raises(MediaError) as e:
        load_clip(p)
    assert e.value.outcome == outcome and "bad.mp4" in str(e.value)


def test_missing_file_and_separate_audio(tmp_path):
    with pytest.raises(MediaError, match="missing"):
        load_clip(tmp_path / "nope.mp4")
    v = make_clip(tmp_path / "v.mp4", audio=False)
    w = tmp_path / "a.wav"
    write_wav(w, 0.2 * np.sin(np.arange(16000) / 16000 * 2 * np.pi * 300).astype(np.float32))
    c = load_clip(v, audio_path=w)
    assert len(c.audio) == 16000 and c.frames.shape[0] == 8
    assert len(decode_audio(w)) == 16000


def test_frame_folder(tmp_path):
    from PIL import Image

    d = tmp_path / "00001"
    d.mkdir()
    for i in (1, 2, 10, 11):  # natural sort: 1, 2, 10, 11 (not 1, 10, 11, 2)
        Image.fromarray(np.full((32, 32, 3), i * 20, np.uint8)).save(d / f"{i}.jpg")
    c = load_clip(d, num_frames=4, want_audio=False)
    assert [round(f.mean() / 20) for f in c.frames] == [1, 2, 10, 11]


def test_writer_is_deterministic_and_atomic(tmp_path):
    a = make_clip(tmp_path / "x.mp4", seed=3)
    b = make_clip(tmp_path / "y.mp4", seed=3)
    assert a.read_bytes() == b.read_bytes()
    # a synthetic face clip written four times in one process: x264's mbtree rate control gave
    # different bytes on each call on some CPUs (AMD EPYC, av 18.1), hence no-mbtree
    from emorl.data.synthetic.world import render_clip, split_specs

    spec = split_specs(0, "coldstart", 4)[0]
    frames, audio = render_clip(spec, 64)
    names = [f"f{i}.mp4" for i in range(4)]
    for name in names:
        write_mp4(tmp_path / name, frames, spec.fps, audio, 16000)
    assert len({(tmp_path / n).read_bytes() for n in names}) == 1
    with pytest.raises(ValueError, match="even frame sizes"):
        write_mp4(tmp_path / "odd.mp4", np.zeros((2, 31, 32, 3), np.uint8), 8)
    assert not (tmp_path / "odd.mp4").exists() and not list(tmp_path.glob(".*tmp*"))


def test_clip_cache_shares_decodes_and_notices_rewrites(tmp_path, monkeypatch):
    """Builders share decoded clips (the demo decodes each file once, not once per stage); a
    rewritten file is decoded again; the byte bound evicts least recently used clips."""
    import os

    from emorl.data import media

    a = make_clip(tmp_path / "a.mp4", seconds=2.0, seed=0)
    b = make_clip(tmp_path / "b.mp4", seconds=2.0, seed=1)
    settings = (4, 56, True, True, "error")
    cache = media.ClipCache(max_bytes=10 * 2**20)
    ka = cache.key(a, None, settings)
    assert cache.get(ka) is None and cache.misses == 1
    clip = load_clip(a, num_frames=4, size=56)
    cache.put(ka, clip)
    assert cache.get(ka) is clip and cache.hits == 1
    assert cache.key(a, None, (8, *settings[1:])) != ka  # other decoding settings: another entry
    assert cache.key(tmp_path, None, settings) is None  # frame folders are not cached

    make_clip(a, seconds=3.0, seed=2)  # rewritten in place: new size/mtime, a new key
    os.utime(a, ns=(os.stat(a).st_atime_ns, os.stat(a).st_mtime_ns + 10**9))
    assert cache.key(a, None, settings) != ka

    one = cache._size(clip)
    small = media.ClipCache(max_bytes=int(1.5 * one))  # room for one clip
    kb = small.key(b, None, settings)
    small.put(ka, clip)
    small.put(kb, load_clip(b, num_frames=4, size=56))
    assert small.get(ka) is None and small.get(kb) is not None and small.bytes <= small.max_bytes


def test_clip_cache_is_used_by_builders_and_can_be_disabled(tmp_path, monkeypatch, tiny_model_dir):
    from emorl.data import media
    from emorl.models.qwen_omni import QwenOmniAdapter
    from emorl.prompting import PromptBuilder
    from emorl.recipes.prompts import PromptSpec

    clip = make_clip(tmp_path / "a.mp4", seconds=2.0, seed=0)
    s = Sample("a", str(clip), "happy", "dfew", "train")
    adapter = QwenOmniAdapter.from_pretrained(tiny_model_dir)
    monkeypatch.setattr(media, "CLIP_CACHE", None)
    monkeypatch.setenv("EMORL_CLIP_CACHE_MB", "64")
    first = PromptBuilder(adapter, PromptSpec(), num_frames=4, frame_size=56).clip(s)
    again = PromptBuilder(adapter, PromptSpec(), num_frames=4, frame_size=56).clip(s)
    assert again is first and media.clip_cache().hits == 1

    monkeypatch.setattr(media, "CLIP_CACHE", None)
    monkeypatch.setenv("EMORL_CLIP_CACHE_MB", "0")
    x = PromptBuilder(adapter, PromptSpec(), num_frames=4, frame_size=56).clip(s)
    y = PromptBuilder(adapter, PromptSpec(), num_frames=4, frame_size=56).clip(s)
    assert x is not y and np.array_equal(x.frames, y.frames)

    monkeypatch.setattr(media, "CLIP_CACHE", None)
    monkeypatch.setenv("EMORL_CLIP_CACHE_MB", "lots")
    with pytest.raises(ValueError, match="EMORL_CLIP_CACHE_MB must be an integer number of megabytes, got 'lots'"):
        media.clip_cache()
    monkeypatch.setattr(media, "CLIP_CACHE", None)
