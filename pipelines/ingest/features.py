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


@lru_cache(maxsize=8)
def _mel_basis(s: MelSettings) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=s.sample_rate_hz, n_fft=s.n_fft, n_mels=s.n_mels, fmin=s.fmin_hz,
                               fmax=s.fmax_hz).astype(np.float32)


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
