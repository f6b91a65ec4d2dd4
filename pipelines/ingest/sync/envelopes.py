"""Activity envelopes for the lag estimate: one or more per stream, each fitting its sensor.

An envelope is a non-negative activity measure on a uniform grid of the stream's own clock:

- video ``motion``: mean absolute difference of consecutive (small, green-channel) grid frames;
- audio ``rms``: RMS energy per 10 ms hop, and ``onset``: its rise (positive difference of log RMS);
- IMU ``gyr``: gyroscope magnitude (rotation speed); ``acc``: accelerometer vector high-passed
  (gravity and slow posture removed: the vector minus its 0.5 s moving average), then its
  magnitude; ``jerk``: magnitude of the derivative of the 10 Hz low-passed accelerometer vector.
  Channels are grouped by role, never mixed across units: roles come from meta.json
  (``roles``), else the declared ``units``, else the header names (``ax``, ``acc_x``,
  ``accel_x``, ``gx``, ``gyr_x``, ``gyro_x``, ``wx``, ...). An unrecognised layout gives
  ``channels``/``channels_diff``: each channel high-passed and scaled to unit variance before
  summing (unit-free), with a warning that says so.

``condition`` turns an envelope into the series that is cross-correlated: log-compressed (scene
cuts and impacts do not dominate), smoothed (0.05 s, or 0.5 s on the coarse scale), slow trends
removed, z-scored; on the fine scale its rate of change is correlated instead (prewhitened:
neighbouring samples nearly independent, so the peak is sharp and chance peaks are rarer),
clipped at ``WINSOR`` robust SDs so that a lone spike (a scene cut, an impact) cannot carry it.
Envelopes that follow speed (``motion``, ``gyr``) peak mid-movement, those that follow
acceleration (``acc``, ``jerk``, audio) at its start and end: they are compared only on the
coarse scale, where a movement's start and end average out to its middle.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

ENV_RATE_HZ = 100.0  # the grid every envelope is put on before correlating

# header name patterns (lower case, after stripping); the axis suffix is optional for magnitudes
_ACC_RE = re.compile(r"^(acc|accel|accelerometer|a|lin_?acc|linear_?acc(el)?|user_?acc)[_ .-]?([xyz]|[123])?$")
_GYR_RE = re.compile(r"^(gyr|gyro|gyroscope|g|w|omega|rot|rotation_?rate|angvel)[_ .-]?([xyz]|[123])?$")
_ACC_UNITS = {"m/s^2", "m/s2", "m/s**2", "m s-2", "g", "mg"}
_GYR_UNITS = {"rad/s", "deg/s", "dps", "°/s", "rad s-1"}
ROLES = ("acc", "gyr", "mag", "other")


@dataclass
class Envelope:
    """Sample k at stream time ``t0_s + k / rate_hz``; NaN where unknown. ``name`` says what it measures."""

    t0_s: float
    rate_hz: float
    values: np.ndarray
    name: str = "activity"

    @property
    def end_s(self) -> float:
        return self.t0_s + len(self.values) / self.rate_hz


def moving_average(x: np.ndarray, n: int) -> np.ndarray:
    """Centred moving average over ``n`` samples (edges: average of the samples present). An even
    ``n`` spans ``n + 1`` samples with half weight at both ends: a plain even window would shift
    the series by half a sample (17 ms on a 30 Hz video envelope)."""
    if n <= 1 or len(x) == 0:
        return x
    k = np.ones(n + 1 - n % 2)
    if n % 2 == 0:
        k[0] = k[-1] = 0.5
    lo = (len(k) - 1) // 2  # the centred part of the full convolution: len(x) samples, also when
    num = np.convolve(x, k)[lo:lo + len(x)]  # the window is longer than x (mode="same" would not)
    den = np.convolve(np.ones(len(x)), k)[lo:lo + len(x)]
    return num / den


def channel_roles(channels: list[str], units: dict[str, str] | None = None,
                  roles: dict[str, str] | None = None) -> dict[str, str]:
    """Role of every channel: ``acc``, ``gyr``, ``mag`` or ``other``; declared roles win, then
    declared units, then the header name."""
    out = {}
    units = {k: str(v).strip().lower() for k, v in (units or {}).items()}
    for c in channels:
        if roles and c in roles:
            out[c] = roles[c]
            continue
        u = units.get(c, "")
        low = c.strip().lower()
        if u in _ACC_UNITS:
            out[c] = "acc"
        elif u in _GYR_UNITS:
            out[c] = "gyr"
        elif _ACC_RE.match(low):
            out[c] = "acc"
        elif _GYR_RE.match(low):
            out[c] = "gyr"
        elif re.match(r"^(mag|m)[_ .-]?[xyz]$", low):
            out[c] = "mag"
        else:
            out[c] = "other"
    return out


def _grid(t: np.ndarray) -> np.ndarray:
    """The ENV_RATE_HZ grid from t[0] through t[-1]."""
    return t[0] + np.arange(int(np.floor((t[-1] - t[0]) * ENV_RATE_HZ)) + 1) / ENV_RATE_HZ


def _column(t: np.ndarray, x: np.ndarray, c: int, grid: np.ndarray) -> np.ndarray:
    """Channel ``c`` of ``x`` at times ``t`` on ``grid`` (linear; NaN samples skipped)."""
    col = x[:, c].astype(np.float64)
    ok = np.isfinite(col)
    return np.interp(grid, t[ok], col[ok]) if ok.sum() >= 2 else np.zeros(len(grid))


def _add_sq(acc: np.ndarray | None, v: np.ndarray) -> np.ndarray:
    """``acc + v ** 2`` (in place), or ``v ** 2`` to start."""
    if acc is None:
        return v ** 2
    acc += v ** 2
    return acc


def _sum_sq(cols) -> np.ndarray:
    out = None
    for v in cols:
        out = _add_sq(out, v)
    return out


def _uniform(t: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x`` (n, C) at times ``t`` on the ENV_RATE_HZ grid from t[0]; NaN rows held from the last good row."""
    grid = _grid(t)
    out = np.empty((len(grid), x.shape[1]))
    for c in range(x.shape[1]):
        out[:, c] = _column(t, x, c, grid)
    return grid, out


def _gaps(t: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Grid samples inside a timestamp gap (a step over 5 median periods): unknown, not interpolated."""
    dt = np.diff(t)
    big = np.flatnonzero(dt > 5 * np.median(dt))
    bad = np.zeros(len(grid), bool)
    for k in big:
        bad |= (grid > t[k]) & (grid < t[k + 1])
    return bad


def imu_envelopes(t: np.ndarray, x: np.ndarray, channels: list[str], units: dict[str, str] | None = None,
                  roles: dict[str, str] | None = None) -> tuple[list[Envelope], str | None]:
    """The envelopes of an IMU table and a warning when its layout was not recognised (else None)."""
    role = channel_roles(channels, units, roles)
    grid = _grid(t)
    bad = _gaps(t, grid)
    envs: list[Envelope] = []
    acc = [i for i, c in enumerate(channels) if role[c] == "acc"]
    gyr = [i for i, c in enumerate(channels) if role[c] == "gyr"]
    rate = ENV_RATE_HZ
    # channel by channel (memory: a few grid-long columns, not the whole table on the grid): the same
    # sums of squares, in the same order, as over the table's columns
    if gyr:
        envs.append(Envelope(float(grid[0]), rate, np.sqrt(_sum_sq(_column(t, x, j, grid) for j in gyr)), "gyr"))
    if acc:
        hp_sq, jerk_sq = None, None
        for j in acc:
            a = _column(t, x, j, grid)
            hp_sq = _add_sq(hp_sq, a - moving_average(a, int(0.5 * rate)))
            jerk_sq = _add_sq(jerk_sq, np.gradient(moving_average(a, int(0.1 * rate))))
            del a
        envs.append(Envelope(float(grid[0]), rate, np.sqrt(hp_sq), "acc"))
        envs.append(Envelope(float(grid[0]), rate, np.sqrt(jerk_sq) * rate, "jerk"))
    warning = None
    if not envs:
        cols = [i for i, c in enumerate(channels) if role[c] != "mag"] or list(range(len(channels)))
        z = _uniform(t, x)[1][:, cols]
        hp = z - np.stack([moving_average(z[:, j], int(0.5 * rate)) for j in range(z.shape[1])], 1)
        hp = hp / np.maximum(hp.std(0), 1e-12)
        d = np.gradient(z, axis=0)
        d = d / np.maximum(d.std(0), 1e-12)
        envs = [Envelope(float(grid[0]), rate, np.sqrt((hp ** 2).sum(1)), "channels"),
                Envelope(float(grid[0]), rate, np.sqrt((d ** 2).sum(1)), "channels_diff")]
        warning = (f"channels {channels} not recognised as accelerometer or gyroscope (declare \"roles\" or "
                   "\"units\" in meta.json); lag envelope: each channel high-passed and scaled to unit variance, "
                   "magnitudes summed (unit-free)")
    for e in envs:
        e.values[bad] = np.nan
    return envs, warning


def audio_envelopes(env: Envelope) -> list[Envelope]:
    """``rms`` (as collected while reading) and ``onset``: the rise of log RMS."""
    v = env.values
    floor = np.nanmedian(v) * 1e-3 + 1e-9 if np.isfinite(v).any() else 1e-9
    lg = np.log(v + floor)
    onset = np.maximum(np.diff(lg, prepend=lg[:1]), 0.0)
    return [Envelope(env.t0_s, env.rate_hz, v, "rms"), Envelope(env.t0_s, env.rate_hz, onset, "onset")]


#: what an envelope follows: ``speed`` (image motion, rotation speed) or ``accel`` (acceleration,
#: jerk, sound energy and onsets, unrecognised channels); pairs of one kind are also compared finely
KIND_OF = {"motion": "speed", "gyr": "speed"}
FINE_S, COARSE_S = 0.05, 0.5  # smoothing of the two scales compared
WINSOR = 3.0  # the whitened fine scale is clipped at this many robust SDs (median absolute deviation)


def condition(v: np.ndarray, rate: float, smooth_s: float = FINE_S,
              whiten: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The series that is correlated, and its mask of known samples (see the module docstring):
    smoothed over ``smooth_s``, trends slower than ``4 * smooth_s`` (at least 1 s) removed; with
    ``whiten`` (the fine scale) its rate of change is taken instead (prewhitening: neighbouring
    samples become nearly independent, so the cross-correlation's peak is sharp and a chance peak
    is rarer), clipped at ``WINSOR`` robust SDs."""
    ok = np.isfinite(v)
    # a single unknown sample between known ones (a held video frame) is filled, not a gap
    lone = ~ok & np.r_[False, ok[:-2] & ok[2:], False] if len(v) > 2 else np.zeros(len(v), bool)
    ok = ok | lone
    out = np.zeros(len(v))
    if ok.sum() < 3:
        return out, ok
    x = np.where(np.isfinite(v), v, np.nan)
    x = np.where(np.isfinite(x), x, np.interp(np.arange(len(x)), np.flatnonzero(np.isfinite(x)), x[np.isfinite(x)]))
    med = float(np.median(x[ok]))
    scale = med if med > 0 else float(np.mean(np.abs(x[ok]))) or 1.0
    x = np.log1p(np.maximum(x, 0.0) / scale)
    x = np.where(ok, x, np.interp(np.arange(len(x)), np.flatnonzero(ok), x[ok]))
    x = moving_average(x, max(1, int(round(smooth_s * rate))))
    x = x - moving_average(x, max(1, int(round(max(1.0, 4 * smooth_s) * rate))))
    if whiten:
        x = np.gradient(x)
        # a lone spike (a scene cut, an impact) must not carry the correlation: clip at WINSOR robust SDs
        c = float(np.median(x[ok]))
        r = 1.4826 * float(np.median(np.abs(x[ok] - c)))
        if r > 0:
            x = np.clip(x, c - WINSOR * r, c + WINSOR * r)
    sd = x[ok].std()
    out[ok] = (x[ok] - x[ok].mean()) / sd if sd > 0 else 0.0
    return out, ok
