"""Resampling with the method on record: IMU (anti-aliased polyphase), video (by timestamps).

Gaps stay gaps: samples that fall in a gap come out flagged, never filled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

GAP_FACTOR = 2.5  # a step longer than this many sample periods is a gap


def measured_rate(t: np.ndarray, gap_s: float | None = None) -> float:
    """Rate from timestamps: steps / time over the steps that are not gaps (drift-accurate, jitter-robust)."""
    dt = np.diff(t)
    if gap_s is None:
        gap_s = GAP_FACTOR * float(np.median(dt))
    ok = dt <= gap_s
    return float(ok.sum() / dt[ok].sum()) if ok.any() else float("nan")


@dataclass
class ResampleResult:
    y: np.ndarray  # float32 [n_out, C]; NaN where gap or NaN input
    gap: np.ndarray  # bool [n_out]: sample lies in (or within the filter's reach of) a timestamp gap
    nan: np.ndarray  # bool [n_out]: sample touched NaN input
    outside: np.ndarray  # bool [n_out]: sample time lies outside [t[0], t[-1]] (no extrapolation)
    method: str


def resample_irregular(t: np.ndarray, x: np.ndarray, out_rate: float, t0: float, n_out: int,
                       gap_s: float) -> ResampleResult:
    """Resample irregularly timed samples ``x[t]`` onto ``t0 + i / out_rate`` (i < n_out), anti-aliased.

    Method: linear interpolation on the timestamps onto a uniform grid at ``k * out_rate`` with
    ``k = round(measured_rate / out_rate)``, then, if ``k > 1``, polyphase FIR decimation by ``k``
    (``scipy.signal.resample_poly``, Kaiser window, zero phase, ``padtype='line'``). When ``k == 1``
    (rates match, or upsampling) the linear interpolation is the whole method, and the method string
    says so. Steps longer than ``gap_s`` are gaps: output samples inside a gap, or within the FIR's
    reach of one, are flagged in ``gap`` and set to NaN; NaN input likewise (``nan``). Output outside
    ``[t[0], t[-1]]``, or whose FIR reaches past it (edge-distorted), is flagged in ``outside``.
    """
    from scipy.signal import resample_poly

    x = np.asarray(x)
    if x.ndim == 1:
        x = x[:, None]
    rate_in = measured_rate(t, gap_s)
    k = max(1, int(round(rate_in / out_rate))) if math.isfinite(rate_in) else 1
    r_u = k * out_rate
    # uniform grid at r_u that contains the output grid (every k-th sample); pad for the filter
    half = 10 * k if k > 1 else 0  # resample_poly's default filter half-length, in input samples
    j = np.arange(-half, n_out * k + half)
    u = t0 + j / r_u
    # linear interpolation + gap flags on the uniform grid, in blocks (memory stays small), float32
    m = len(u)
    xu = np.empty((m, x.shape[1]), np.float32)
    inside = np.empty(m, bool)
    gap_u = np.empty(m, bool)
    for b0 in range(0, m, 1 << 16):
        ub = u[b0:b0 + (1 << 16)]
        pos = np.searchsorted(t, ub, side="right") - 1  # t[pos] <= u < t[pos+1]
        ins = ((pos >= 0) & (pos < len(t) - 1)) | (np.abs(ub - t[-1]) < 1e-9)
        pos_c = np.clip(pos, 0, len(t) - 2)
        step = t[pos_c + 1] - t[pos_c]
        w = np.clip((ub - t[pos_c]) / step, 0.0, 1.0)[:, None]
        xu[b0:b0 + len(ub)] = x[pos_c] * (1 - w) + x[pos_c + 1] * w
        inside[b0:b0 + len(ub)] = ins
        gap_u[b0:b0 + len(ub)] = ins & (step > gap_s)
    nan_u = np.isnan(xu).any(axis=1) & ~gap_u
    bad_u = gap_u | nan_u
    if bad_u.any():  # hold the last good value across bad samples so the FIR sees no step
        good = np.flatnonzero(~bad_u)
        if len(good):
            fill = good[np.clip(np.searchsorted(good, np.flatnonzero(bad_u), side="right") - 1, 0, len(good) - 1)]
            xu[bad_u] = xu[fill]
    np.nan_to_num(xu, copy=False, nan=0.0)
    if k > 1:
        y = resample_poly(xu, up=1, down=k, axis=0, padtype="line")
        # output i sits at uniform index half + i*k; its filter reaches +-half input samples
        y = y[half // k: half // k + n_out]  # half is a multiple of k
        reach = np.ones(2 * half + 1, dtype=bool)
        gap_d = np.convolve(gap_u, reach, mode="same")[half::k][:n_out] > 0
        nan_d = np.convolve(nan_u, reach, mode="same")[half::k][:n_out] > 0
        method = (f"linear interpolation on timestamps to {r_u:g} Hz, then polyphase FIR decimation by {k} "
                  f"(scipy.signal.resample_poly, Kaiser window) to {out_rate:g} Hz")
    else:
        y, gap_d, nan_d = xu, gap_u, nan_u
        inside = inside[:n_out]
        method = (f"linear interpolation on timestamps to {out_rate:g} Hz "
                  f"(measured {rate_in:.4g} Hz: no decimation needed, no anti-alias filter applied)")
    # an output sample whose FIR reaches past the data is edge-distorted: count it as outside
    outside = (np.convolve(~inside, reach, mode="same")[half::k][:n_out] > 0) if k > 1 else ~inside
    y = np.asarray(y, dtype=np.float32)[:n_out]
    gap_d, nan_d = gap_d[:n_out], nan_d[:n_out]
    y[gap_d | nan_d | outside] = np.nan
    return ResampleResult(y=y, gap=gap_d & ~outside, nan=nan_d & ~gap_d & ~outside, outside=outside, method=method)


def select_frames(frame_t: np.ndarray, grid_t: np.ndarray, max_hold_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Video to a target rate by timestamps: for each grid time, the last frame shown at or before it.

    Returns ``(frame_index, valid)``. ``valid`` is False where the chosen frame is older than
    ``max_hold_s`` (a gap in the video) or the grid time precedes the first frame.
    """
    idx = np.searchsorted(frame_t, grid_t + 1e-6, side="right") - 1
    valid = idx >= 0
    idx = np.clip(idx, 0, len(frame_t) - 1)
    valid &= (grid_t - frame_t[idx]) <= max_hold_s
    return idx, valid
