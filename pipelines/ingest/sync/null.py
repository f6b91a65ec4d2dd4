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

Memory: the phases are drawn a few rows at a time (``phase_rows``: the same numbers as
``random_phases`` draws at once), every transform keeps only the lags searched, so a long
recording (a 1-hour overlap: 360,000 samples a row) holds a few rows' spectra, never all of them.
"""

from __future__ import annotations

import functools

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


def phase_rows(n: int, count: int, chunk: int, seed: int = 0):
    """``random_phases(n, count, seed)`` in blocks of ``chunk`` rows (``(first row, block)``), the
    same numbers, without holding them all: the uniform draws come from the same stream in the same
    order, and the signs of the last column (drawn after all of them) from a generator advanced past
    them (PCG64, ``default_rng``'s: one 64-bit step per float64). A block is not kept once handed out."""
    m = n // 2 + 1
    rng = np.random.default_rng(seed)
    signs = None
    if n % 2 == 0:
        tail = np.random.default_rng(seed)
        tail.bit_generator.advance(count * m)
        signs = np.where(tail.random(count) < 0.5, 1.0, -1.0)

    def block(lo: int) -> np.ndarray:
        ph = np.exp(2j * np.pi * rng.random((min(chunk, count - lo), m)))
        ph[:, 0] = 1.0
        if signs is not None:
            ph[:, -1] = signs[lo:lo + len(ph)]
        return ph

    for lo in range(0, count, max(1, chunk)):
        yield lo, block(lo)


#: phases of at most this many bytes are drawn once and kept for the next estimate of the same length
#: (the reference's other series, every drift segment); longer ones are drawn block by block each time
HELD_PHASES_BYTES = 4 << 20


@functools.lru_cache(maxsize=1)
def _held_phases(n: int, count: int, chunk: int, seed: int) -> tuple[tuple[int, np.ndarray], ...]:
    blocks = tuple(phase_rows(n, count, chunk, seed))
    for _, b in blocks:
        b.flags.writeable = False
    return blocks


def phase_blocks(n: int, count: int, chunk: int, seed: int = 0):
    """``phase_rows``; when they are small (``HELD_PHASES_BYTES``), the same blocks kept from the
    previous call (read-only) instead of drawn again."""
    if count * (n // 2 + 1) * 16 <= HELD_PHASES_BYTES:
        return iter(_held_phases(n, count, chunk, seed))
    return phase_rows(n, count, chunk, seed)


def surrogates(x: np.ndarray, ok: np.ndarray, phases: np.ndarray, amp: np.ndarray | None = None,
               overwrite: bool = False) -> np.ndarray:
    """Phase-randomised copies of the standardised series ``x`` (rows), unknown samples zero,
    standardised again over the known ones. ``amp``: ``|rfft(x)|`` when already known;
    ``overwrite``: ``phases`` may be overwritten (one array fewer; not when read-only)."""
    n = len(x)
    amp = np.abs(np.fft.rfft(x)) if amp is None else amp
    if overwrite and phases.flags.writeable:
        phases *= amp[None]
        xs = np.fft.irfft(phases, n)
    else:
        xs = np.fft.irfft(amp[None] * phases, n)
    xs *= ok[None]
    k = max(float(ok.sum()), 1.0)
    xs -= (xs.sum(1, keepdims=True) / k) * ok[None]
    # row by row: the same sums as ``(xs ** 2).sum(1)`` without a second array of every row
    sd = np.sqrt(np.array([(r ** 2).sum() for r in xs])[:, None] / k)
    xs /= np.where(sd > 0, sd, 1.0)
    return xs


def fft_size(n: int, n_lags: int, len_b: int) -> int:
    from scipy.fft import next_fast_len

    return next_fast_len(max(len_b, n + n_lags - 1), real=True)


def row_spectra(rows: np.ndarray, size: int) -> np.ndarray:
    """Conjugate real FFTs of ``rows`` (once per reference series, reused for every pair)."""
    from scipy.fft import rfft

    spec = rfft(rows, size, axis=1)
    return np.conjugate(spec, out=spec)


def series_spectrum(b: np.ndarray, size: int) -> np.ndarray:
    """The real FFT of the other stream's series ``b`` (made once, reused for every reference row)."""
    from scipy.fft import rfft

    return rfft(b, size)


def correlate_spectra(spectra: np.ndarray, b: np.ndarray, size: int, n_lags: int) -> np.ndarray:
    """``out[r, k] = sum_i rows[r, i] * b[i + k]`` for k in 0..n_lags-1, from ``row_spectra(rows, size)``;
    ``b`` is the series or its ``series_spectrum`` (complex). A new array of ``n_lags`` columns (not
    a view that would keep the whole transform alive)."""
    from scipy.fft import irfft

    fb = b if np.iscomplexobj(b) else series_spectrum(b, size)
    prod = spectra * fb[None]
    out = irfft(prod, size, axis=1, overwrite_x=True)
    del prod
    return np.array(out[:, :n_lags])


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
