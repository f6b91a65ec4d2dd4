"""Audio features: log-mel spectrograms of whole windows, in numpy (no numba compile at start-up)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

LOG_EPS = 1e-6


@dataclass(frozen=True)
class MelSettings:
    sample_rate_hz: int = 16000
    n_fft: int = 400  # 25 ms at 16 kHz
    hop_length: int = 160  # 10 ms at 16 kHz
    n_mels: int = 64
    fmin_hz: float = 0.0
    fmax_hz: float | None = None  # None: sample_rate / 2

    def n_frames(self, n_samples: int) -> int:
        """Frames of ``center=False`` framing: frame f covers samples [f*hop, f*hop + n_fft)."""
        return 1 + (n_samples - self.n_fft) // self.hop_length if n_samples >= self.n_fft else 0


def _hz_to_mel(f: float) -> float:
    """Slaney's mel scale (librosa's ``hz_to_mel``, ``htk=False``): linear below 1 kHz, log above."""
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return min_log_mel + np.log(f / min_log_hz) / logstep if f >= min_log_hz else f / f_sp


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    freqs = f_sp * mels
    log_t = mels >= min_log_mel
    freqs[log_t] = min_log_hz * np.exp(logstep * (mels[log_t] - min_log_mel))
    return freqs


def mel_basis(sr: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """The Slaney-normalised triangular mel filterbank [n_mels, n_fft // 2 + 1] float32: librosa's
    ``filters.mel`` defaults, the same operations in the same order, so the same bytes
    (``tests/test_features.py``), without importing librosa (which pulls in numba: +63 MB in every
    preprocessing worker)."""
    fmax = float(sr) / 2 if fmax is None else float(fmax)
    weights = np.zeros((n_mels, int(1 + n_fft // 2)), dtype=np.float32)
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(float(fmin)), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    for i in range(n_mels):
        weights[i] = np.maximum(0, np.minimum(-ramps[i] / fdiff[i], ramps[i + 2] / fdiff[i + 1]))
    weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, np.newaxis]
    return weights


@lru_cache(maxsize=8)
def _mel_basis(s: MelSettings) -> np.ndarray:
    return mel_basis(s.sample_rate_hz, s.n_fft, s.n_mels, s.fmin_hz, s.fmax_hz)


@lru_cache(maxsize=8)
def _hann(n: int) -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)  # periodic Hann


def logmel(x: np.ndarray, s: MelSettings) -> np.ndarray:
    """``x`` float32 [B, S] -> ``log(mel power + 1e-6)`` float32 [B, frames, n_mels]."""
    x = np.asarray(x, dtype=np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(x, s.n_fft, axis=-1)[..., :: s.hop_length, :]
    import scipy.fft

    spec = scipy.fft.rfft(frames * _hann(s.n_fft), axis=-1)
    power = (spec.real ** 2 + spec.imag ** 2).astype(np.float32)
    mel = power @ _mel_basis(s).T
    return np.log(mel + LOG_EPS).astype(np.float32)
