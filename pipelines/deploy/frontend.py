"""The audio front end of an exported model: waveform -> log-mel in torch, equal to preprocessing's.

Preprocessing (``pipelines.ingest.features.logmel``) frames the waveform without centring (frame
``f`` covers samples ``[f*hop, f*hop + n_fft)``), multiplies by a periodic Hann window, takes the
power of the real FFT, maps it with librosa's Slaney mel filterbank and returns
``log(mel + 1e-6)``. :class:`LogMel` does the same with operators every exporter knows: the
windowed DFT is one strided ``conv1d`` whose kernels are ``hann * cos`` and ``-hann * sin`` (constants),
the filterbank a constant matrix. :func:`mel_basis` computes the filterbank in numpy with librosa's
formulas (``htk=False``, ``norm="slaney"``), so neither export nor the exported model needs
librosa; ``tests/test_export.py`` checks it against ``librosa.filters.mel``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

#: the constant inside the log of preprocessing's log-mel (``pipelines.ingest.features.LOG_EPS``)
LOG_EPS = 1e-6


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa ``hz_to_mel(htk=False)``): linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-12) / min_log_hz) / logstep, f / f_sp)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_basis(sr: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """The Slaney-normalised triangular filterbank [n_mels, n_fft // 2 + 1], float32 (librosa's default)."""
    fmax = float(sr) / 2 if fmax is None else float(fmax)
    fft_freqs = np.fft.rfftfreq(n_fft, d=1.0 / sr)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    weights = np.zeros((n_mels, len(fft_freqs)), dtype=np.float64)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2: n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)


def hann(n: int) -> np.ndarray:
    """Periodic Hann window (preprocessing's)."""
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)


class LogMel(nn.Module):
    """``[B, S]`` float32 waveform -> ``[B, frames, n_mels]`` = ``log(mel power + 1e-6)``, frames as
    preprocessing makes them (no centring, ``1 + (S - n_fft) // hop`` frames)."""

    def __init__(self, sr: int, n_fft: int, hop: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None):
        super().__init__()
        self.hop = int(hop)
        k = np.arange(n_fft // 2 + 1)[:, None]
        ang = 2 * np.pi * k * np.arange(n_fft)[None, :] / n_fft
        w = hann(n_fft)[None, :]
        dft = np.concatenate([w * np.cos(ang), -w * np.sin(ang)], axis=0)  # [2 * bins, n_fft]
        self.register_buffer("dft", torch.from_numpy(dft.astype(np.float32))[:, None, :])
        self.register_buffer("mel", torch.from_numpy(mel_basis(sr, n_fft, n_mels, fmin, fmax)))
        self.bins = n_fft // 2 + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = nn.functional.conv1d(x.float().unsqueeze(1), self.dft, stride=self.hop)  # [B, 2 * bins, F]
        re, im = spec[:, : self.bins], spec[:, self.bins:]
        power = re * re + im * im
        mel = torch.matmul(self.mel, power)  # [B, n_mels, F]
        return torch.log(mel + LOG_EPS).transpose(1, 2)


def logmel_reference(x: np.ndarray, sr: int, n_fft: int, hop: int, n_mels: int) -> np.ndarray:
    """Preprocessing's log-mel in float64 numpy with :func:`mel_basis` (no librosa): the reference
    export measures :class:`LogMel` against. ``x`` [B, S] -> [B, frames, n_mels] float64."""
    x = np.asarray(x, dtype=np.float64)
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft, axis=-1)[..., ::hop, :]
    spec = np.fft.rfft(frames * hann(n_fft), axis=-1)
    power = spec.real ** 2 + spec.imag ** 2
    return np.log(power @ mel_basis(sr, n_fft, n_mels).astype(np.float64).T + LOG_EPS)
