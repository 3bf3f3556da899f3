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


class PromptBuilder:
    """Encodes samples into ``PromptInputs`` for one adapter, prompt spec and media settings."""

    def __init__(self, adapter: OmniAdapter, spec: PromptSpec, *, num_frames: int = 8, frame_size: int | None = 84,
                 on_missing_audio: str = "error", modality: Modality = Modality.AV,
                 media_limits: MediaLimits | None = None):
        self.adapter = adapter
        self.spec = spec
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
            settings = (self.num_frames, self.frame_size, has != "audio", want_audio, self.on_missing_audio,
                        self.media_limits)
            cache = clip_cache()
            key = cache.key(s.media, s.audio, settings) if cache.max_bytes else None
            c = cache.get(key) if key is not None else None
            if c is None:
                c = load_clip(s.media, num_frames=self.num_frames, size=self.frame_size, audio_path=s.audio,
                              want_video=has != "audio", want_audio=want_audio,
                              on_missing_audio=self.on_missing_audio, limits=self.media_limits)
                if key is not None:
                    cache.put(key, c)
            notes = [*c.notes, *(f"flag:{f}" for f in c.flags)]
            for n in notes:
                self.substitutions[n] += 1
            if notes:
                self.notes[s.id] = notes
            self._clips[s.id] = c
        return self._clips[s.id]

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
            fps = (self.num_frames / c.duration) if c is not None and c.duration else 2.0
            self._prompts[key] = self.adapter.encode(
                c.frames if c is not None else None, audio, self.text(s), modality, fps=fps,
                key=f"{s.id}|{modality.value}")
        return self._prompts[key]
