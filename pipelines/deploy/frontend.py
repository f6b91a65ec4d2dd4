"""The audio front end of an exported model: waveform -> log-mel in torch, equal to preprocessing's.

Preprocessing (``pipelines.ingest.features.logmel``) frames the waveform without centring (frame
``f`` covers samples ``[f*hop, f*hop + n_fft)``), multiplies by a periodic Hann window, takes the
power of the real FFT, maps it with librosa's Slaney mel filterbank and returns
``log(mel + 1e-6)``. :class:`LogMel` does the same with operators every exporter knows: the
windowed DFT is one strided ``conv1d`` whose kernels are ``hann * cos`` and ``-hann * sin`` (constants),
the filterbank a constant matrix. The filterbank is preprocessing's own
(``pipelines.ingest.features.mel_basis``: librosa's bytes, computed in numpy), so neither export nor
the exported model needs librosa.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pipelines.ingest.features import mel_basis

#: the constant inside the log of preprocessing's log-mel (``pipelines.ingest.features.LOG_EPS``)
LOG_EPS = 1e-6


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
