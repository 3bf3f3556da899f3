"""Procedural speech-like voice (numpy only): a string of vowel-like syllables with prosody.

The *audio cues* (see ``emorl.data.synthetic.world.AUDIO_CUES``) set the prosody:

    pitch          semitones above the style's base F0 (level)
    pitch_range    semitones of the utterance-wide contour excursion
    pitch_contour  "rising" | "falling" | "flat" | "rise-fall"
    energy         dB relative to the reference speech level (loudness)
    rate           syllables per second (tempo)
    breathiness    0..1, aspiration noise mixed into the source, steeper spectral tilt
    jitter         0..1, pitch/amplitude tremor (5–8 Hz) and random pitch jitter
    harshness      0..1, subharmonics, clipped (squarer) source, flatter spectral tilt

Synthesis: an anti-aliased (polyBLEP) sawtooth at the F0 contour, per-syllable formant filtering
in the frequency domain (one of five vowels), a raised-cosine envelope per syllable, optional
noise-burst consonants, then level normalisation, a soft limiter and a faint room-noise floor.
The speaker's timbre (formant scale, spectral tilt, base F0) comes from a :class:`VoiceStyle`
and a class-independent :class:`Speaker` draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16_000
CONTOURS: tuple[str, ...] = ("rising", "falling", "flat", "rise-fall")
REFERENCE_DB = -24.0  # speech RMS level in dBFS at energy = 0

# (F1, F2, F3) Hz of five vowels, roughly an adult average
VOWELS: tuple[tuple[float, float, float], ...] = (
    (730.0, 1090.0, 2440.0),  # a
    (530.0, 1840.0, 2480.0),  # e
    (300.0, 2250.0, 3000.0),  # i
    (570.0, 840.0, 2410.0),  # o
    (320.0, 900.0, 2300.0),  # u
)


@dataclass(frozen=True)
class VoiceStyle:
    """Timbre of one style's speakers."""

    name: str
    base_f0: float  # Hz at pitch = 0
    formant_scale: tuple[float, float]  # per-speaker uniform range
    tilt: float  # base spectral-tilt exponent (higher = darker)
    bandwidths: tuple[float, float, float]  # formant bandwidths, Hz


VOICE_STYLES: dict[str, VoiceStyle] = {
    "default": VoiceStyle("default", 175.0, (0.97, 1.12), 0.55, (90.0, 110.0, 160.0)),
    "ood": VoiceStyle("ood", 118.0, (0.80, 0.90), 0.95, (70.0, 90.0, 130.0)),
}


@dataclass(frozen=True)
class Speaker:
    """Class-independent per-clip voice nuisance."""

    formant_scale: float
    noise_db: float  # room-noise floor, dBFS
    vowel_bias: int  # favourite vowel (index into VOWELS)


def sample_speaker(style: VoiceStyle, rng: np.random.Generator) -> Speaker:
    """Draw a speaker of ``style`` (independent of the emotion)."""
    return Speaker(
        formant_scale=round(float(rng.uniform(*style.formant_scale)), 4),
        noise_db=round(float(rng.uniform(-62.0, -50.0)), 2),
        vowel_bias=int(rng.integers(len(VOWELS))),
    )


def contour_shape(kind: str, u: np.ndarray) -> np.ndarray:
    """Utterance-level pitch shape in [-0.5, 0.5] over normalised time u ∈ [0, 1] (same shape as u)."""
    if kind == "rising":
        return u**1.6 - 0.5
    if kind == "falling":
        return 0.5 - u**0.8
    if kind == "flat":
        return np.zeros_like(u)
    if kind == "rise-fall":
        return np.sin(math.pi * np.clip(u * 1.1, 0, 1)) - 0.5
    raise ValueError(f"unknown pitch contour {kind!r}; expected one of {CONTOURS}")


def syllable_plan(rate: float, duration: float, rng: np.random.Generator) -> list[tuple[float, float]]:
    """Voiced syllable intervals [(start s, length s)] for a tempo of ``rate`` syllables/s.

    Speech starts after 0.05–0.25 s and ends ≥ 0.12 s before ``duration``; phrase pauses of
    0.08–0.22 s follow about one syllable in six.
    """
    t = float(rng.uniform(0.05, 0.25))
    end = duration - 0.12
    out: list[tuple[float, float]] = []
    while True:
        slot = float(rng.uniform(0.8, 1.2)) / rate
        voiced = slot * float(rng.uniform(0.62, 0.82))
        if t + voiced > end:
            break
        out.append((t, voiced))
        t += slot
        if rng.random() < 0.16:
            t += float(rng.uniform(0.08, 0.22))
    if not out:  # very slow speech in a short clip: one long syllable
        out.append((0.1, max(0.2, end - 0.1)))
    return out


def _box_smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Moving average of a 1-D array with an odd box of ``width`` samples (O(n), edges held)."""
    if width <= 1:
        return x
    half = width // 2
    xp = np.concatenate([np.full(half, x[0]), x, np.full(half, x[-1])])
    c = np.cumsum(np.concatenate([[0.0], xp]))
    return (c[2 * half + 1 :] - c[: -2 * half - 1]) / (2 * half + 1)


def _polyblep_saw(phase: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """Band-limited-ish sawtooth in [-1, 1] from a phase in cycles (S,) and per-sample increment dt (S,).

    PolyBLEP: the discontinuity is smoothed over the one sample either side of each wrap, which
    removes most aliasing; only those few samples are touched.
    """
    t = phase - np.floor(phase)
    saw = 2.0 * t - 1.0
    lo = np.flatnonzero(t < dt)
    x = t[lo] / dt[lo]
    saw[lo] -= 2 * x - x * x - 1.0
    hi = np.flatnonzero(t > 1.0 - dt)
    y = (t[hi] - 1.0) / dt[hi]
    saw[hi] -= y * y + 2 * y + 1.0
    return saw


def _formant_response(
    freqs: np.ndarray, formants: np.ndarray, bw: tuple[float, float, float], tilt: float
) -> np.ndarray:
    """Magnitude response (F,) of three Lorentzian formant peaks times a spectral tilt."""
    amps = (1.0, 0.55, 0.3)
    h = np.full_like(freqs, 0.015)
    for f, b, a in zip(formants, bw, amps):
        h += a / (1.0 + ((freqs - f) / (b / 2.0)) ** 2)
    return h * (1.0 + freqs / 350.0) ** (-tilt)


def synth_voice(
    cues: dict,
    speaker: Speaker,
    style: VoiceStyle,
    duration: float,
    rng: np.random.Generator,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """Synthesize (round(duration·sample_rate),) float32 mono audio in [-1, 1] from audio cues."""
    sr = sample_rate
    n = round(duration * sr)
    t = np.arange(n) / sr
    sylls = syllable_plan(float(cues["rate"]), duration, rng)
    s0, s1 = sylls[0][0], sylls[-1][0] + sylls[-1][1]

    rng_pitch, jit = float(cues["pitch_range"]), float(cues["jitter"])
    breath, harsh, energy = float(cues["breathiness"]), float(cues["harshness"]), float(cues["energy"])

    # pitch in semitones at a 1 kHz control rate: level + contour + accents + tremor + jitter
    kr = 1000
    nk = int(duration * kr) + 2
    tk = np.arange(nk) / kr
    uk = np.clip((tk - s0) / max(s1 - s0, 1e-3), 0.0, 1.0)
    accents = np.zeros(nk)
    for a, d in sylls:
        accents[int(a * kr) : int((a + d) * kr)] = rng.normal(0.0, 0.12 * rng_pitch + 0.3)
    accents = _box_smooth(accents, 61)
    f_tr = float(rng.uniform(5.0, 8.0))
    tremor = jit * 0.9 * np.sin(2 * math.pi * f_tr * tk + rng.uniform(0, 2 * math.pi))
    wobble = jit * 0.6 * _box_smooth(rng.standard_normal(nk), 13) * math.sqrt(13)
    semis = float(cues["pitch"]) + rng_pitch * contour_shape(str(cues["pitch_contour"]), uk) + accents + tremor + wobble
    f0 = np.interp(t, tk, np.clip(style.base_f0 * 2.0 ** (semis / 12.0), 55.0, 520.0))
    amp_trem = np.interp(t, tk, 1.0 + 0.35 * jit * np.sin(2 * math.pi * f_tr * tk + 1.3))

    dt = f0 / sr
    phase = np.cumsum(dt)
    src = _polyblep_saw(phase, dt).astype(np.float32)
    if harsh > 0:
        # subharmonic (period doubling), then a squarer, clipped waveform
        src *= np.float32(1.0) + np.float32(0.5 * harsh) * np.sin(np.float32(math.pi) * phase.astype(np.float32))
        k = 1.0 + 3.0 * harsh
        src = np.tanh(np.float32(k) * src) * np.float32(1.0 / math.tanh(k))
    src *= np.float32(1.0 - 0.55 * breath)
    if breath > 0:
        src += np.float32((0.15 + 1.1 * breath) * breath) * rng.standard_normal(n, dtype=np.float32)

    tilt = float(np.clip(style.tilt + 0.6 * breath - 0.6 * harsh - 0.025 * energy, 0.0, 2.0))
    out = np.zeros(n, np.float32)
    voiced = np.zeros(n, bool)
    for a, d in sylls:
        i0, i1 = int(a * sr), min(n, int((a + d) * sr))
        m = i1 - i0
        if m < 16:
            continue
        vowel = speaker.vowel_bias if rng.random() < 0.3 else int(rng.integers(len(VOWELS)))
        formants = np.asarray(VOWELS[vowel]) * speaker.formant_scale * rng.uniform(0.96, 1.04)
        nfft = 1 << math.ceil(math.log2(m + 256))
        spec = np.fft.rfft(src[i0:i1], nfft)
        spec *= _formant_response(np.fft.rfftfreq(nfft, 1.0 / sr), formants, style.bandwidths, tilt)
        seg = np.fft.irfft(spec, nfft)[:m]
        seg /= np.sqrt(np.mean(seg * seg)) + 1e-9
        att, rel = max(2, int(rng.uniform(0.015, 0.035) * sr)), max(2, int(rng.uniform(0.03, 0.07) * sr))
        env = np.ones(m)
        att, rel = min(att, m // 2), min(rel, m // 2)
        env[:att] = 0.5 - 0.5 * np.cos(np.linspace(0, math.pi, att))
        env[m - rel :] = 0.5 + 0.5 * np.cos(np.linspace(0, math.pi, rel))
        out[i0:i1] += seg * env * rng.uniform(0.7, 1.0) * amp_trem[i0:i1]
        voiced[i0:i1] = True
        if rng.random() < 0.55:  # consonant: a short high-passed noise burst before the vowel
            cl = int(rng.uniform(0.02, 0.06) * sr)
            c0 = max(0, i0 - cl)
            if i0 - c0 >= 16:
                burst = _highpass_noise(i0 - c0, float(rng.uniform(1800, 4500)), rng, sr)
                ramp = np.linspace(0.2, 1.0, i0 - c0)
                out[c0:i0] += burst * ramp * rng.uniform(0.04, 0.12)

    target = 10.0 ** ((REFERENCE_DB + energy) / 20.0)
    rms = math.sqrt(float(np.mean(np.square(out[voiced], dtype=np.float64)))) if voiced.any() else 1.0
    out *= np.float32(target / (rms + 1e-9))
    if np.abs(out).max() > 0.5:  # soft limiter for the loudest voices (tanh is ~linear below 0.5)
        out = np.float32(0.97) * np.tanh(out * np.float32(1 / 0.97))
    out += np.float32(10.0 ** (speaker.noise_db / 20.0)) * rng.standard_normal(n, dtype=np.float32)
    return out


def _highpass_noise(m: int, corner: float, rng: np.random.Generator, sr: int) -> np.ndarray:
    """(m,) unit-RMS white noise with energy mostly above ``corner`` Hz."""
    nfft = 1 << math.ceil(math.log2(m + 64))
    spec = np.fft.rfft(rng.standard_normal(m), nfft)
    f = np.fft.rfftfreq(nfft, 1.0 / sr)
    spec *= (f / corner) ** 2 / (1.0 + (f / corner) ** 2)
    seg = np.fft.irfft(spec, nfft)[:m]
    return seg / (np.sqrt(np.mean(seg * seg)) + 1e-9)
