"""Lag between streams from the data: cross-correlation of activity envelopes.

Envelopes: video frame-difference energy, IMU rotation speed (gyroscope magnitude; acceleration
magnitude with gravity removed when there is no gyroscope), audio RMS energy. Each is smoothed,
high-passed (slow trends removed) and z-scored on a common 100 Hz grid on the recording clock; the
lag is the peak of their cross-correlation within +-max_lag_s, refined by a parabola through the
peak and its neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ENV_RATE_HZ = 100.0
MIN_RELIABLE_CORR = 0.25  # below this peak correlation the estimate is reported as unreliable
AMBIGUITY = 0.85  # a second peak (> 0.25 s away) this close to the best makes the estimate unreliable


@dataclass
class Envelope:
    t0_s: float  # time of sample 0 on the stream's own clock
    rate_hz: float
    values: np.ndarray  # float64 [n]; NaN where unknown


def _moving_average(x: np.ndarray, n: int) -> np.ndarray:
    if n <= 1:
        return x
    k = np.ones(n) / n
    return np.convolve(x, k, mode="same")


def imu_envelope(t: np.ndarray, x: np.ndarray, channels: list[str]) -> Envelope:
    """Rotation speed |gyro| if gyroscope channels exist, else |acc| minus its 1 s moving average."""
    low = [c.lower() for c in channels]
    gyr = [i for i, c in enumerate(low) if c.startswith(("gyr", "gyro"))]
    acc = [i for i, c in enumerate(low) if c.startswith("acc")]
    if gyr:
        mag = np.sqrt(np.nansum(x[:, gyr] ** 2, axis=1))
    else:
        cols = acc or list(range(x.shape[1]))
        mag = np.sqrt(np.nansum(x[:, cols] ** 2, axis=1))
    rate = ENV_RATE_HZ
    grid = np.arange(t[0], t[-1], 1 / rate)
    v = np.interp(grid, t, mag)
    if not gyr:
        v = np.abs(v - _moving_average(v, int(rate)))
    return Envelope(t0_s=float(t[0]), rate_hz=rate, values=v)


def _condition(v: np.ndarray, rate: float) -> np.ndarray:
    v = np.where(np.isfinite(v), v, np.nanmedian(v) if np.isfinite(v).any() else 0.0)
    v = _moving_average(v, max(1, int(round(0.1 * rate))))  # 100 ms smoothing
    v = v - _moving_average(v, max(1, int(round(2.0 * rate))))  # remove trends slower than ~2 s
    sd = v.std()
    return (v - v.mean()) / sd if sd > 0 else np.zeros_like(v)


def _on_grid(env: Envelope, offset_s: float, grid: np.ndarray) -> np.ndarray:
    t = env.t0_s + offset_s + np.arange(len(env.values)) / env.rate_hz
    return np.interp(grid, t, env.values, left=np.nan, right=np.nan)


def estimate_lag(ref: Envelope, ref_offset_s: float, other: Envelope, other_offset_s: float,
                 max_lag_s: float) -> dict:
    """Lag of ``other`` behind ``ref`` on the recording clock (positive: other's events come later).

    Offsets are the clock offsets already applied (recording time = stream time + offset).
    Returns ``{"lag_s", "corr", "second_corr", "reliable"}``: ``corr`` is the cross-correlation of the
    z-scored envelopes at the peak, normalised by the largest overlap (so lags that leave less overlap
    count less); ``second_corr`` the best peak more than 0.25 s away. The estimate is reliable when
    ``corr >= 0.25`` and ``second_corr < 0.85 * corr`` (periodic motion makes several peaks).
    """
    rate = ENV_RATE_HZ
    t_start = min(ref.t0_s + ref_offset_s, other.t0_s + other_offset_s)
    t_end = max(ref.t0_s + ref_offset_s + len(ref.values) / ref.rate_hz,
                other.t0_s + other_offset_s + len(other.values) / other.rate_hz)
    grid = np.arange(t_start, t_end, 1 / rate)
    a_raw, b_raw = _on_grid(ref, ref_offset_s, grid), _on_grid(other, other_offset_s, grid)
    ma, mb = np.isfinite(a_raw), np.isfinite(b_raw)
    if ma.sum() < 4 * rate or mb.sum() < 4 * rate:
        return {"lag_s": float("nan"), "corr": float("nan"), "reliable": False}
    a = np.zeros_like(grid)
    b = np.zeros_like(grid)
    a[ma] = _condition(a_raw[ma], rate)
    b[mb] = _condition(b_raw[mb], rate)
    # direct correlation over the lags searched only (memory stays flat with the recording's length):
    # c[k] = sum_n b[n + k] a[n], k in [-K, K]
    big_k = int(np.ceil(max_lag_s * rate)) + 1
    ks = np.arange(-big_k, big_k + 1)
    fa, fb = ma.astype(np.float64), mb.astype(np.float64)
    n = len(grid)
    c = np.empty(len(ks))
    n_ov = np.empty(len(ks))
    for j, k in enumerate(ks):
        lo, hi = max(0, -k), min(n, n - k)
        c[j] = np.dot(b[lo + k:hi + k], a[lo:hi]) if hi > lo else 0.0
        n_ov[j] = np.dot(fb[lo + k:hi + k], fa[lo:hi]) if hi > lo else 0.0
    lags = ks / rate
    sel = (np.abs(lags) <= max_lag_s) & (n_ov > 2 * rate)
    if not sel.any():
        return {"lag_s": float("nan"), "corr": float("nan"), "reliable": False}
    # normalise by the largest overlap, not each lag's own: a lag that leaves less overlap must
    # explain more with less data (the biased estimator; it prefers small lags when motion repeats)
    cn = np.where(sel, c / n_ov[sel].max(), -np.inf)
    i = int(np.argmax(cn))
    lag = float(lags[i])
    if 0 < i < len(cn) - 1 and np.isfinite(cn[i - 1]) and np.isfinite(cn[i + 1]):
        den = cn[i - 1] - 2 * cn[i] + cn[i + 1]
        if den < 0:
            lag += float(0.5 * (cn[i - 1] - cn[i + 1]) / den) / rate
    corr = float(min(cn[i], 1.0))
    # ambiguity: the best peak more than 0.25 s away from this one (periodic motion gives several)
    far = sel & (np.abs(lags - lags[i]) > 0.25)
    second = float(cn[far].max()) if far.any() else -1.0
    reliable = corr >= MIN_RELIABLE_CORR and second < AMBIGUITY * corr
    return {"lag_s": lag, "corr": corr, "second_corr": second, "reliable": bool(reliable)}
