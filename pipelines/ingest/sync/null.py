"""What chance gives on this very pair: surrogate reference envelopes and the tail probability of a peak.

A surrogate keeps a reference envelope's amplitude spectrum (so its autocorrelation) and draws
its phases at random (phase randomisation): a series just as smooth and just as busy as the real
one, but unrelated to the other stream. Every reference series of one estimate (e.g. the video's
fine and coarse motion) gets the same random phases, so the surrogates keep their relations too.
Cross-correlating surrogates against the other stream's real envelopes, over the same search
range, gives the peak heights chance produces on this pair, over this overlap and search range:
``peak_p`` fits a Gumbel law (the law of a maximum) to the surrogates' peaks and returns the
probability of a peak at least as high as the one observed.

Cost: ``n_surrogates`` FFT correlations per envelope pair. The number falls with the overlap's
length (``SURROGATE_BUDGET`` samples in all, between ``MIN_SURROGATES`` and ``MAX_SURROGATES``),
so a 30 min recording costs about as much as the estimate itself, not 100 times more.
"""

from __future__ import annotations

import numpy as np

MAX_SURROGATES = 100
MIN_SURROGATES = 20
SURROGATE_BUDGET = 400_000  # surrogate samples in all (n_surrogates x padded length)
_EULER = 0.5772156649


def n_surrogates(length: int) -> int:
    return int(np.clip(SURROGATE_BUDGET // max(length, 1), MIN_SURROGATES, MAX_SURROGATES))


def random_phases(n: int, count: int, seed: int = 0) -> np.ndarray:
    """``count`` rows of unit phase factors for the real FFT of length ``n`` (reproducible)."""
    rng = np.random.default_rng(seed)
    ph = np.exp(2j * np.pi * rng.random((count, n // 2 + 1)))
    ph[:, 0] = 1.0
    if n % 2 == 0:
        ph[:, -1] = np.where(rng.random(count) < 0.5, 1.0, -1.0)
    return ph


def surrogates(x: np.ndarray, ok: np.ndarray, phases: np.ndarray) -> np.ndarray:
    """Phase-randomised copies of the standardised series ``x`` (rows), unknown samples zero,
    standardised again over the known ones."""
    n = len(x)
    xs = np.fft.irfft(np.abs(np.fft.rfft(x))[None] * phases, n) * ok[None]
    k = max(float(ok.sum()), 1.0)
    xs -= (xs.sum(1, keepdims=True) / k) * ok[None]
    sd = np.sqrt((xs ** 2).sum(1, keepdims=True) / k)
    return xs / np.where(sd > 0, sd, 1.0)


def fft_size(n: int, n_lags: int, len_b: int) -> int:
    from scipy.fft import next_fast_len

    return next_fast_len(max(len_b, n + n_lags - 1), real=True)


def row_spectra(rows: np.ndarray, size: int) -> np.ndarray:
    """Conjugate real FFTs of ``rows`` (once per reference series, reused for every pair)."""
    from scipy.fft import rfft

    return np.conj(rfft(rows, size, axis=1))


def correlate_spectra(spectra: np.ndarray, b: np.ndarray, size: int, n_lags: int) -> np.ndarray:
    """``out[r, k] = sum_i rows[r, i] * b[i + k]`` for k in 0..n_lags-1, from ``row_spectra(rows, size)``."""
    from scipy.fft import irfft, rfft

    return irfft(spectra * rfft(b, size)[None], size, axis=1)[:, :n_lags]


def peak_p(observed: float, null_peaks: np.ndarray) -> float | None:
    """Probability that chance gives a peak >= ``observed``: a Gumbel law fitted (by moments) to
    the surrogates' peaks. None without surrogates."""
    if len(null_peaks) < 2:
        return None
    sd = float(np.std(null_peaks))
    if sd <= 0:
        return 0.0 if observed > float(null_peaks[0]) else 1.0
    beta = sd * np.sqrt(6) / np.pi
    loc = float(np.mean(null_peaks)) - _EULER * beta
    y = (observed - loc) / beta
    return float(-np.expm1(-np.exp(-y))) if y > -30 else 1.0
