"""From manifest rows to encoded prompts: decode media once per process (emorl.data.media.ClipCache,
shared by every builder), render the recipe's prompt, run the model's processor, cache the result
per (sample, modality). Substitutions (e.g. silence for a missing audio track, when configured)
and degenerate-media flags (``flag:few_frames`` ...) are counted per outcome and kept per sample."""

from __future__ import annotations

from collections import Counter

from emorl.data.manifest import Sample
from emorl.data.media import Clip, MediaLimits, clip_cache, is_image, load_clip
from emorl.models.adapter import Modality, OmniAdapter, PromptInputs
from emorl.recipes.prompts import PromptSpec, build_prompt


def carried(s: Sample) -> str:
    """What the sample's media carry: ``meta.modality`` from the corpus adapters ('video' for frame
    folders or silent video, 'audio' for audio-only files, 'image' for photos), 'image' for an
    image file, else 'audio+video'."""
    return "image" if is_image(s.media) else s.meta.get("modality", "audio+video")


def available(s: Sample, requested: Modality) -> Modality:
    """The requested modality restricted to what the sample carries (``carried``). A still-image
    sample under a visual condition (video+audio, video) is an ``IMAGE`` prompt."""
    has = carried(s)
    if has == "image":
        if requested.has_visual:
            return Modality.IMAGE
        if requested.has_audio:
            raise ValueError(f"sample {s.id}: audio requested but the sample is a still image")
        return requested
    if has == "video" and requested.has_audio:
        if not requested.has_video:
            raise ValueError(f"sample {s.id}: audio requested but the sample is video-only")
        return Modality.VIDEO
    if has == "audio" and requested.has_visual:
        if not requested.has_audio:
            raise ValueError(f"sample {s.id}: video requested but the sample is audio-only")
        return Modality.AUDIO
    return requested


SAMPLINGS = ("native", "fixed")


def check_sampling(sampling: str, num_frames: int, frame_size: int | None, modality: Modality = Modality.AV) -> None:
    """``data.sampling`` and the settings that belong to it: ``fixed`` needs ``data.num_frames``
    (except for still images, ``modality=image``: one frame, resized to ``data.frame_size``²);
    ``native`` (the model family's own frame rate and sizes) takes neither ``data.num_frames`` nor
    ``data.frame_size``, which it would otherwise ignore."""
    if sampling not in SAMPLINGS:
        raise ValueError(f"data.sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
    if sampling == "fixed" and num_frames <= 0 and modality != Modality.IMAGE:
        raise ValueError("data.sampling=fixed needs data.num_frames > 0 (frames at segment middles; R1-Omni: 8)")
    if sampling == "native" and (num_frames or frame_size):
        given = ", ".join(
            f"{k}={v}" for k, v in (("data.num_frames", num_frames), ("data.frame_size", frame_size)) if v
        )
        raise ValueError(
            f"{given}: data.sampling=native takes the model family's own frames and sizes; set "
            "data.sampling=fixed to use them (or leave them 0)"
        )


class PromptBuilder:
    """Encodes samples into ``PromptInputs`` for one adapter, prompt spec and media settings.

    ``sampling``: ``fixed`` (``num_frames`` frames at segment middles, resized to ``frame_size``²
    when given, else handed over at their size for the processor's own resizing) or ``native``
    (the family's own rules, ``adapter.native_video``: Qwen's 2 frames per second at its pixel
    budget, the parts family's fixed frame count at its encoder's size). Audio is decoded at the
    family's ``audio_sample_rate``."""

    def __init__(
        self,
        adapter: OmniAdapter,
        spec: PromptSpec,
        *,
        num_frames: int = 8,
        frame_size: int | None = 84,
        on_missing_audio: str = "error",
        modality: Modality = Modality.AV,
        media_limits: MediaLimits | None = None,
        sampling: str = "fixed",
    ):
        check_sampling(sampling, num_frames, frame_size, modality)
        self.adapter = adapter
        self.spec = spec
        self.sampling = sampling
        self.num_frames = num_frames
        self.frame_size = frame_size or None
        self.on_missing_audio = on_missing_audio
        self.modality = modality  # default media condition of prompt()
        self.media_limits = media_limits or MediaLimits()
        self._clips: dict[str, Clip] = {}
        self._prompts: dict[tuple[str, Modality], PromptInputs] = {}
        self.substitutions: Counter[str] = Counter()
        self.notes: dict[str, list[str]] = {}

    def clip(self, s: Sample, modality: Modality = Modality.AV) -> Clip:
        if s.id not in self._clips:
            has = carried(s)
            want_audio = has not in ("video", "image")
            settings = (self.media_settings(), has != "audio", want_audio, self.on_missing_audio, self.media_limits)
            cache = clip_cache()
            key = cache.key(s.media, s.audio, settings) if cache.max_bytes else None
            c = cache.get(key) if key is not None else None
            if c is None:
                native = self.sampling == "native"
                c = load_clip(
                    s.media,
                    num_frames=self.num_frames,
                    size=self.frame_size,
                    audio_path=s.audio,
                    want_video=has != "audio",
                    want_audio=want_audio,
                    on_missing_audio=self.on_missing_audio,
                    limits=self.media_limits,
                    sample_rate=getattr(self.adapter, "audio_sample_rate", 16_000),
                    plan=self.adapter.native_video if native else None,
                )
                if key is not None:
                    cache.put(key, c)
            notes = [*c.notes, *(f"flag:{f}" for f in c.flags)]
            for n in notes:
                self.substitutions[n] += 1
            if notes:
                self.notes[s.id] = notes
            self._clips[s.id] = c
        return self._clips[s.id]

    def media_settings(self) -> str:
        """How frames are taken, as a string for cache keys and records: the fixed count and size,
        or the family's native rules (``adapter.native_preprocessing()``)."""
        if self.sampling == "native":
            import json

            return "native:" + json.dumps(self.adapter.native_preprocessing(), sort_keys=True, default=str)
        return f"fixed:{self.num_frames}:{self.frame_size}"

    def text(self, s: Sample) -> str:
        return build_prompt(self.spec, s.labels, s.words)

    def prompt(self, s: Sample, modality: Modality | None = None) -> PromptInputs:
        modality = available(s, modality or self.modality)
        key = (s.id, modality)
        if key not in self._prompts:
            c = self.clip(s, modality) if modality != Modality.TEXT else None
            audio = c.audio if c is not None else None
            if modality.has_audio and audio is None:  # on_missing_audio="skip": fall back to video only
                modality = Modality.VIDEO
                self.substitutions["modality:video-only"] += 1
            fps = c.fps if c is not None and c.fps else 2.0
            self._prompts[key] = self.adapter.encode(
                c.frames if c is not None else None,
                audio,
                self.text(s),
                modality,
                fps=fps,
                key=f"{s.id}|{modality.value}",
            )
        return self._prompts[key]
