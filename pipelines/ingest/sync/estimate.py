"""The lag of one stream behind another from their activity envelopes, with a calibrated ``reliable``.

Every pair of envelopes (one of each stream: e.g. video ``motion`` x IMU ``gyr``, ``acc``,
``jerk``) is cross-correlated on the whole overlap of the two streams (independent of windowing):
the first stream's conditioned envelope over the overlap against the second's over the overlap
widened by the search range, on a common 100 Hz grid on the recording clock. A lag's score is
the sum of products divided by the overlap's length (lags that leave part of the overlap without
data score less: a prior for small lags) and expressed as a z-score against what two unrelated
series with the same autocorrelations would give (Bartlett's variance of a cross-correlation,
``sum_k rho_a(k) rho_b(k) / N``).

The lag is the peak of the consensus, refined by a parabola: the mean z-curve of the fine-scale
pairs (speed against speed, prewhitened: sharp peaks, frame precision); with coarse-scale pairs
only, the z-weighted lag of the pairs that agree with the strongest one (their mean z-curve is the
consensus). How high a peak chance gives **on this very pair** is measured, not assumed: the
reference's envelopes are replaced by surrogates (same amplitude spectrum, random phases:
``pipelines.ingest.sync.null``) and the consensus's highest peak over the whole search range is
taken for each; ``p`` is the probability (a Gumbel law fitted to those peaks) of a peak
at least as high as the one observed. The estimate is **reliable** only when all of these hold:

1. with a fine-scale pair: the fine-scale pairs have their own peak at the lag (within
   ``tol_s``, one frame), ``p <= P_RELIABLE``, and the coarse-scale pairs do not contradict it
   (their mean z at the lag is positive);
   with coarse-scale pairs only (e.g. an accelerometer against a gyroscope, or against video):
   at least two pairs peak within ``COARSE_TOL_S`` of each other with z >= ``Z_AGREE``, the best
   reaches ``Z_COARSE_ONLY`` and ``p <= P_COARSE_ONLY`` (coarse peaks are broad: a frame-precise
   claim needs more);
2. no other local peak of the consensus more than ``SEPARATION_S`` away reaches ``SECOND_PEAK``
   of the main one (periodic motion repeats its peaks);
3. the lag lies at least ``EDGE_S`` inside the search range (a peak on the edge may be a slope
   whose top lies outside);
4. the overlap is at least ``MIN_OVERLAP_S`` at that lag.

Otherwise the estimate is ``uncertain`` (with the reason), and below ``MIN_OVERLAP_S`` of overlap
there is none. The benchmark (``benchmarks/sync.py``: real footage, unrelated pairs, same-clock
pairs) checks ``p``: on unrelated pairs it spreads over 0.003-1, 3-12% of it under 0.05.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.ingest.sync.envelopes import COARSE_S, ENV_RATE_HZ, FINE_S, KIND_OF, Envelope, condition
from pipelines.ingest.sync.null import (correlate_spectra, fft_size, n_surrogates, peak_p, phase_blocks, row_spectra,
                                        series_spectrum, surrogates)

MIN_OVERLAP_S = 3.0
P_RELIABLE = 1e-3  # the chance of so high a peak on this pair (surrogates) may be at most this
P_COARSE_ONLY = 1e-2  # coarse-scale pairs only: z >= Z_COARSE_ONLY and at most this chance
Z_COARSE_ONLY = 6.0  # when no fine-scale pair exists (e.g. accelerometer only against video)
Z_AGREE = 2.5
SECOND_PEAK = 0.8
SEPARATION_S = 0.25
EDGE_S = 0.02
AGREE_TOL_S = 0.04
COARSE_TOL_S = 0.12  # coarse-scale pairs (0.5 s smoothing) agree within this
_NULL_LAGS_S = 1.0  # autocorrelation lags summed for the null variance


@dataclass
class Series:
    """A conditioned envelope on the recording clock (sample k at ``t0_s + k / rate_hz``)."""

    name: str  # the envelope's name, with "@coarse" on the coarse scale
    kind: str  # KIND_OF: speed / accel
    coarse: bool
    t0_s: float
    rate_hz: float
    x: np.ndarray
    ok: np.ndarray

    @property
    def end_s(self) -> float:
        return self.t0_s + len(self.x) / self.rate_hz

    def at(self, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Values (linear interpolation) and known-mask (nearest sample) at recording times ``grid``."""
        pos = (grid - self.t0_s) * self.rate_hz
        inside = (pos >= -0.5) & (pos <= len(self.x) - 0.5)
        k = np.clip(np.round(pos).astype(np.int64), 0, len(self.x) - 1)
        ok = inside & self.ok[k]
        v = np.interp(pos, np.arange(len(self.x)), self.x)
        return np.where(ok, v, 0.0), ok


def prepare(envs: list[Envelope], offset_s: float) -> list[Series]:
    """Condition envelopes once and place them on the recording clock (``offset_s`` added)."""
    out = []
    for e in envs:
        kind = KIND_OF.get(e.name, "accel")
        for coarse in ((False, True) if kind == "speed" else (True,)):
            x, ok = condition(np.asarray(e.values, dtype=np.float64), e.rate_hz, COARSE_S if coarse else FINE_S,
                              whiten=not coarse)
            name = e.name + ("@coarse" if coarse else "")
            out.append(Series(name, kind, coarse, e.t0_s + offset_s, e.rate_hz, x, ok))
    return out


def _comparable(a: Series, b: Series) -> bool:
    """Pairs on the coarse scale, and on the fine scale when both follow the same quantity."""
    return a.coarse == b.coarse and (a.coarse or a.kind == b.kind)


def _on_grid(env, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """An envelope on ``grid``, standardised over its known samples, and the mask of those; None when
    they cover less than ``MIN_OVERLAP_S``."""
    x, m = env.at(grid)
    if m.sum() < MIN_OVERLAP_S * ENV_RATE_HZ:
        return None
    return _standardise(x, m), m


def _standardise(x: np.ndarray, ok: np.ndarray) -> np.ndarray:
    if ok.sum() < 2:
        return np.zeros_like(x)
    m, sd = x[ok].mean(), x[ok].std()
    return np.where(ok, (x - m) / sd, 0.0) if sd > 0 else np.zeros_like(x)


def _autocorr(x: np.ndarray, ok: np.ndarray, n_lags: int) -> np.ndarray:
    """rho(k), k = -n_lags..n_lags, of a standardised series with gaps (zeros where unknown): the
    circular autocorrelation of ``x`` zero-padded past ``len(x) + n_lags`` (so no lag wraps), one
    real FFT of about the series' length (not of twice its length, as the full correlation needs)."""
    from scipy.fft import irfft, next_fast_len, rfft

    size = next_fast_len(len(x) + n_lags, real=True)
    f = rfft(x, size)
    np.multiply(f, f.conj(), out=f)
    c = irfft(f, size, overwrite_x=True)
    del f
    n = max(int(ok.sum()), 1)
    m = min(n_lags, len(x) - 1)
    r = np.zeros(2 * n_lags + 1)
    r[n_lags:n_lags + m + 1] = c[:m + 1] / n
    r[n_lags - m:n_lags] = r[n_lags + m:n_lags:-1]
    return r


def _refine(curve: np.ndarray, i: int) -> float:
    """Sub-sample offset of the peak at ``i`` from a parabola through it and its neighbours."""
    if 0 < i < len(curve) - 1 and np.isfinite(curve[i - 1]) and np.isfinite(curve[i + 1]):
        den = curve[i - 1] - 2 * curve[i] + curve[i + 1]
        if den < 0:
            return float(np.clip(0.5 * (curve[i - 1] - curve[i + 1]) / den, -0.5, 0.5))
    return 0.0


def _none(reason: str, overlap_s: float) -> dict:
    return {"lag_s": None, "status": "none", "reliable": False, "reason": reason, "corr": None, "z": None, "p": None,
            "second_ratio": None, "agree": 0, "n_pairs": 0, "overlap_s": round(max(overlap_s, 0.0), 3), "pairs": []}


@dataclass
class _Pair:
    name: str
    coarse: bool
    corr: np.ndarray  # correlation per lag (observed)
    z: np.ndarray  # (1 + surrogates, lags): row 0 observed, then the surrogate reference's
    cnt: np.ndarray  # known samples overlapping per lag


#: surrogates transformed at a time: their spectra are the largest arrays of a lag estimate (a 1-hour
#: recording: 360,000 samples a row), so they are made (phases drawn included) a few rows at a time, at
#: most SURROGATE_CHUNK rows and SURROGATE_SAMPLES samples (at least one row; the result does not depend on it)
SURROGATE_CHUNK = 8
SURROGATE_SAMPLES = 1 << 19


def _rows(xa: np.ndarray, ma: np.ndarray, count: int, size: int):
    """The reference series itself (one row), then its ``count`` surrogates, a few rows at a time
    (``SURROGATE_CHUNK``, ``SURROGATE_SAMPLES``; their phases drawn as needed: ``phase_blocks``)."""
    yield xa[None]
    amp = np.abs(np.fft.rfft(xa))
    rows = max(1, min(SURROGATE_CHUNK, SURROGATE_SAMPLES // size))
    for _lo, phases in phase_blocks(len(xa), count, rows):
        yield surrogates(xa, ma, phases, amp, overwrite=True)
        del phases


def _pair_curves(ref: list[Series], other: list[Series], a0: float, n: int, big_k: int, kc: int) -> list[_Pair]:
    """Every comparable pair's z-curves over the lags searched: the observed one, then one per
    surrogate of the reference (``pipelines.ingest.sync.null``), with correlation and overlap.
    Pairs come ordered by the other series, then the reference. Memory: one reference series'
    spectra at a time, a few rows at a time (``SURROGATE_SAMPLES``), only the lags searched kept of each
    transform (the result does not depend on the chunk)."""
    rate = ENV_RATE_HZ
    n_lags = 2 * big_k + 1
    grid_b = a0 + (np.arange(n + 2 * big_k) - big_k + kc) / rate
    n_null = int(_NULL_LAGS_S * rate)
    size = fft_size(n, n_lags, n + 2 * big_k)
    count = n_surrogates(size)
    on_b = []
    for sb in other:
        got = _on_grid(sb, grid_b)
        if got is not None:
            xb, mb = got
            rb = _autocorr(xb[big_k:big_k + n], mb[big_k:big_k + n], n_null)
            on_b.append((sb, series_spectrum(xb, size), mb, rb))  # the spectrum, made once for every row
            del xb, got
    del grid_b
    grid_a = a0 + np.arange(n) / rate
    found: dict[tuple[int, int], _Pair] = {}
    for ia, sa in enumerate(ref):
        todo = [(ib, b) for ib, b in enumerate(on_b) if _comparable(sa, b[0])]
        got = _on_grid(sa, grid_a) if todo else None
        if got is None:
            continue
        xa, ma = got
        ra = _autocorr(xa, ma, n_null)
        parts: dict[int, list[np.ndarray]] = {ib: [] for ib, _ in todo}
        for block in _rows(xa, ma, count, size):
            spec = row_spectra(block, size)
            del block
            for ib, (_, fb, _, _) in todo:
                parts[ib].append(correlate_spectra(spec, fb, size, n_lags))
            del spec
        na_n = float(ma.sum())
        fma = row_spectra(ma[None].astype(float), size)
        for ib, (sb, _, mb, rb) in todo:
            corr = np.vstack(parts.pop(ib)) / na_n
            # known samples overlapping per lag: integers, so exact whichever FFT computes them
            cnt = np.rint(correlate_spectra(fma, mb.astype(float), size, n_lags)[0])
            sd = np.sqrt(max(float(np.dot(ra, rb)) / na_n, 1.0 / na_n))
            found[(ib, ia)] = _Pair(f"{sa.name.split('@')[0]}~{sb.name}", sa.coarse, corr[0], corr / sd, cnt)
    return [found[k] for k in sorted(found)]


def _peak(curve: np.ndarray, lags: np.ndarray, rate: float) -> tuple[int, float]:
    j = int(np.argmax(curve))
    return j, float(lags[j]) + _refine(curve, j) / rate


def _reasons(pairs: list[dict], agree: list[dict], p: float | None, any_fine: bool, confirm: float | None) -> list[str]:
    """Why the evidence is not enough (empty: enough); see the module docstring, rules 1-2."""
    if any_fine:
        if not any("@coarse" not in a["pair"] for a in agree):
            return [f"no fine-scale pair has its own peak there with z >= {Z_AGREE:g} (no frame precision)"]
        if p is None or p > P_RELIABLE:
            return [f"the peak could be chance (p {_fmt_p(p)} > {P_RELIABLE:g})"]
        if confirm is not None and confirm <= 0:
            return [f"the coarse-scale pairs contradict the peak (mean z {confirm:.1f} there)"]
        return []
    if len(agree) < 2:
        return [f"only coarse-scale pairs, and {len(agree)} of {len(pairs)} agree (2 needed)"]
    z = max(a["z"] for a in agree)
    if z < Z_COARSE_ONLY:
        return [f"only coarse-scale pairs, and their peak is too weak (z {z:.1f} < {Z_COARSE_ONLY:g})"]
    if p is None or p > P_COARSE_ONLY:
        return [f"only coarse-scale pairs, and their peak could be chance (p {_fmt_p(p)} > {P_COARSE_ONLY:g})"]
    return []


def _agreeing(pairs: list[dict], lag_s: float, tol_s: float) -> list[int]:
    """The pairs whose own peak lies near ``lag_s`` (one frame; ``COARSE_TOL_S`` on the coarse scale)
    with z >= ``Z_AGREE``."""
    return [k for k, q in enumerate(pairs) if q["z"] >= Z_AGREE
            and abs(q["lag_s"] - lag_s) <= (max(tol_s, COARSE_TOL_S) if "@coarse" in q["pair"] else tol_s)]


def _fmt_p(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.2g}"


def estimate_lag(ref: list[Series], other: list[Series], max_lag_s: float, *, span: tuple[float, float] | None = None,
                 center_s: float = 0.0, tol_s: float = AGREE_TOL_S) -> dict:
    """Lag of ``other`` behind ``ref`` on the recording clock (positive: ``other``'s events come
    later), searched in ``center_s +- max_lag_s``, on the overlap of the two (within ``span``).

    Returns ``lag_s`` (None when there is no estimate), ``status`` (``reliable`` / ``uncertain`` /
    ``none``), ``reliable``, ``reason`` (why not reliable, or None), ``corr`` (mean correlation of
    the agreeing pairs at their peaks), ``z`` (consensus z-score at the peak), ``p`` (the chance of
    so high a peak on this pair, from surrogates), ``second_ratio`` (best other peak / main peak),
    ``agree`` of ``n_pairs`` envelope pairs, ``overlap_s`` and ``pairs`` (each pair's own
    ``lag_s``, ``corr``, ``z``).
    """
    rate = ENV_RATE_HZ
    if not ref or not other:
        return _none("no activity envelope", 0.0)
    a0 = max(min(s.t0_s for s in ref), min(s.t0_s - center_s for s in other))
    a1 = min(max(s.end_s for s in ref), max(s.end_s - center_s for s in other))
    if span is not None:
        a0, a1 = max(a0, span[0]), min(a1, span[1])
    if a1 - a0 < MIN_OVERLAP_S:
        return _none(f"the streams overlap for {max(a1 - a0, 0.0):.1f} s, under the {MIN_OVERLAP_S:g} s the "
                     "estimate needs", a1 - a0)
    n = int(np.floor((a1 - a0) * rate))
    big_k = int(np.ceil(max_lag_s * rate))
    kc = int(round(center_s * rate))
    curves = _pair_curves(ref, other, a0, n, big_k, kc)
    if not curves:
        return _none(f"under {MIN_OVERLAP_S:g} s of known envelope samples in the overlap", a1 - a0)
    lags = (np.arange(2 * big_k + 1) - big_k + kc) / rate
    valid = np.all([c.cnt >= MIN_OVERLAP_S * rate for c in curves], axis=0) & (np.abs(lags - center_s) <= max_lag_s)
    if not valid.any():
        return _none(f"no lag in the search range leaves {MIN_OVERLAP_S:g} s of overlap", a1 - a0)
    pairs = []
    for c in curves:
        j, lag_j = _peak(np.where(valid, c.z[0], -np.inf), lags, rate)
        pairs.append({"pair": c.name, "lag_s": round(lag_j, 4), "corr": round(float(c.corr[j]), 4),
                      "z": round(float(c.z[0, j]), 2)})
    any_fine = any(not c.coarse for c in curves)
    if any_fine:  # the consensus: the mean z-curve of the fine-scale pairs (frame precision)
        cons = np.where(valid[None], np.mean([c.z for c in curves if not c.coarse], axis=0), -np.inf)
        i, lag = _peak(cons[0], lags, rate)
        agree_k = _agreeing(pairs, lag, tol_s)
    else:  # coarse only: around the strongest pair's peak, the z-weighted lag of the pairs that agree
        best = max(range(len(pairs)), key=lambda k: pairs[k]["z"])
        agree_k = _agreeing(pairs, pairs[best]["lag_s"], tol_s)
        lag = (float(np.average([pairs[k]["lag_s"] for k in agree_k], weights=[pairs[k]["z"] for k in agree_k]))
               if agree_k else pairs[best]["lag_s"])
        cons = np.where(valid[None], np.mean([curves[k].z for k in (agree_k or [best])], axis=0), -np.inf)
        i = int(np.argmax(cons[0]))
    agree = [pairs[k] for k in agree_k]
    peaks = cons.max(axis=1)
    p = peak_p(float(peaks[0]), peaks[1:])
    zc = cons[0]
    # the best other local peak of the consensus, away from the main one
    inner = np.r_[False, (zc[1:-1] >= zc[:-2]) & (zc[1:-1] >= zc[2:]), False] & valid
    far = inner & (np.abs(lags - lags[i]) > SEPARATION_S)
    second = float(zc[far].max()) if far.any() else None
    ratio = (second / zc[i]) if (second is not None and zc[i] > 0) else None
    coarse = [c.z[0, i] for c in curves if c.coarse]
    confirm = float(np.mean(coarse)) if (coarse and any_fine) else None
    reasons = _reasons(pairs, agree, p, any_fine, confirm)
    if ratio is not None and ratio >= SECOND_PEAK:
        reasons.append(f"another peak {lags[far][np.argmax(zc[far])]:+.2f} s reaches {ratio:.2f} of the main one")
    if abs(lag - center_s) > max_lag_s - EDGE_S:
        reasons.append(f"peak at the edge of the +-{max_lag_s:g} s search range")
    reliable = not reasons
    corr = float(np.mean([q["corr"] for q in agree])) if agree else float(max(q["corr"] for q in pairs))
    return {"lag_s": round(lag, 4), "status": "reliable" if reliable else "uncertain", "reliable": reliable,
            "reason": "; ".join(reasons) or None, "corr": round(corr, 4), "z": round(float(zc[i]), 2),
            "p": None if p is None else float(f"{p:.2g}"),
            "second_ratio": None if ratio is None else round(float(ratio), 3), "agree": len(agree),
            "n_pairs": len(pairs), "overlap_s": round(a1 - a0, 3), "pairs": pairs}
