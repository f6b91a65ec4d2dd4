"""The audio stream: class-specific sounds placed at the motion events (clinks, thumps, slurps,
crunches), a continuous sound that follows the wrist speed while the hand moves, and low background
noise; ``audio_strength`` scales the class sounds, not the background. It becomes the AAC track of
``video.mp4`` (on the video clock) or a separate ``audio.wav`` with a clock offset of its own.
soundfile is imported inside the function that writes the wav."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pipelines.core.timeutil import num_samples
from pipelines.synth.motion import _Latent, _taper
from pipelines.synth.plan import RecordingPlan, SynthConfig, _r


def _bandnoise(rng: np.random.Generator, n: int, lo: float, hi: float, sr: int) -> np.ndarray:
    from scipy.signal import butter, sosfilt

    sos = butter(2, [lo, min(hi, 0.45 * sr)], btype="band", fs=sr, output="sos")
    x = sosfilt(sos, rng.normal(size=n))
    return x / (np.std(x) + 1e-12)


def _template(kind: str, rng: np.random.Generator, sr: int) -> np.ndarray:
    """A short sound placed at a motion event."""
    if kind == "clink":  # spoon on pot rim: metallic partials
        n = int(0.12 * sr)
        tt = np.arange(n) / sr
        x = sum(a * np.sin(2 * np.pi * f * rng.uniform(0.97, 1.03) * tt) * np.exp(-tt / d)
                for f, a, d in [(2300, 1.0, 0.03), (3700, 0.6, 0.02), (5900, 0.4, 0.012)])
        return 0.25 * rng.uniform(0.6, 1.0) * x
    if kind == "thump":  # knuckles on wood
        n = int(0.1 * sr)
        tt = np.arange(n) / sr
        body = np.sin(2 * np.pi * rng.uniform(120, 200) * tt) * np.exp(-tt / 0.03)
        click = rng.normal(size=n) * np.exp(-tt / 0.002)
        return 0.45 * rng.uniform(0.7, 1.0) * (body + 0.4 * click)
    if kind == "tock":  # cup put down
        n = int(0.06 * sr)
        tt = np.arange(n) / sr
        return 0.15 * np.sin(2 * np.pi * rng.uniform(700, 900) * tt) * np.exp(-tt / 0.01)
    if kind == "tick":  # spoon scoops in the bowl
        n = int(0.05 * sr)
        tt = np.arange(n) / sr
        return 0.12 * np.sin(2 * np.pi * rng.uniform(3800, 4400) * tt) * np.exp(-tt / 0.008)
    if kind == "slurp":
        n = int(rng.uniform(0.3, 0.45) * sr)
        tt = np.arange(n) / sr
        gate = np.maximum(0.0, np.sin(2 * np.pi * rng.uniform(15, 25) * tt)) ** 2
        return 0.08 * _bandnoise(rng, n, 400, 2500, sr) * gate * _taper(tt / tt[-1], 0.15)
    if kind == "crunch":
        n = int(0.6 * sr)
        x = np.zeros(n)
        m = int(0.004 * sr)
        for _ in range(int(rng.integers(5, 11))):
            k = int(rng.integers(0, n - m))
            x[k:k + m] += rng.uniform(0.1, 0.25) * rng.normal(size=m) * np.exp(-np.arange(m) / (0.001 * sr))
        return x
    raise ValueError(kind)


# which events of which class make which sound, and which continuous sound a class makes
_EVENT_SOUNDS = {
    "stir": {"revolution": "clink"},
    "knock": {"impact": "thump"},
    "drink": {"at_mouth": "slurp", "lift_end": "tock"},
    "eat": {"lift_start": "tick", "at_mouth": "crunch"},
}
# class: (low Hz, high Hz, gain per m/s of wrist speed): every class makes some sound while the
# hand moves (rustle, slosh, scrape, swish), so audio energy follows the motion envelope
_CONTINUOUS_SOUNDS = {
    "wave": (150, 800, 0.04),
    "drink": (300, 1500, 0.03),
    "eat": (2500, 6000, 0.03),
    "stir": (2000, 6000, 0.04),
    "wipe": (1000, 5000, 0.10),
    "knock": (200, 1000, 0.02),
}


def _audio_track(plan: RecordingPlan, lat: _Latent, t0: float, n: int, sr: int, rng: np.random.Generator,
                 strength: float = 1.0) -> np.ndarray:
    """Mono waveform whose sample k is at recording time ``t0 + k / sr``; ``strength`` scales the
    class-specific sounds (not the background), with the same random draws for any value."""
    from scipy.signal import butter, sosfilt

    tau = t0 + np.arange(n) / sr
    seg_of = np.full(n, -1)
    for j, (a, b, _) in enumerate(plan.segments):
        seg_of[(tau >= a) & (tau < b)] = j
    x = np.zeros(n)
    bg = sosfilt(butter(1, 3000, fs=sr, output="sos"), rng.normal(size=n))
    x += rng.uniform(0.002, 0.005) * bg / (np.std(bg) + 1e-12)
    speed = np.interp(tau, lat.t, lat.speed)
    for cls, (lo, hi, gain) in _CONTINUOUS_SOUNDS.items():
        js = [j for j, s in enumerate(plan.segments) if s[2] == cls]
        if not js:
            continue
        mask = np.isin(seg_of, js)
        x += mask * (gain * strength) * speed * _bandnoise(rng, n, lo, hi, sr)
    for te, kind, j in lat.events:
        sound = _EVENT_SOUNDS.get(plan.segments[j][2], {}).get(kind)
        if sound is None:
            continue
        tpl = _template(sound, rng, sr)
        k0 = int(math.floor((te - t0) * sr + 0.5))
        a, b = max(k0, 0), min(k0 + len(tpl), n)
        if b > a:
            x[a:b] += strength * tpl[a - k0:b - k0]
    return np.clip(x, -0.99, 0.99).astype(np.float32)


def _make_audio(rec_dir: Path, plan: RecordingPlan, lat: _Latent, cfg: SynthConfig,
                rng: np.random.Generator) -> tuple[np.ndarray | None, dict]:
    """The recording's audio: for ``audio_mode == "container"`` the track for ``video.mp4`` (on the
    video clock, as long as the video); otherwise ``rec_dir/audio.wav`` is written (on its own clock)
    and the track is None. Also returns the facts for ground truth (file, start_s, end_s)."""
    sr = cfg.audio_sr
    if plan.audio_mode == "container":
        audio = _audio_track(plan, lat, 0.0, num_samples(plan.seconds, sr), sr, rng, cfg.audio_strength)
        return audio, {"file": "video.mp4", "start_s": 0.0, "end_s": _r(len(audio) / sr, 6)}
    import soundfile as sf

    n_a = num_samples(plan.audio_end_s - plan.audio_true_offset_s, sr)
    wav = _audio_track(plan, lat, plan.audio_true_offset_s, n_a, sr, rng, cfg.audio_strength)
    sf.write(str(rec_dir / "audio.wav"), wav, sr, subtype="PCM_16")
    return None, {"file": "audio.wav", "start_s": plan.audio_true_offset_s,
                  "end_s": _r(plan.audio_true_offset_s + n_a / sr, 6)}
