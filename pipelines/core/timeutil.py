"""Time <-> sample-count conversions with one explicit rounding rule.

Time is seconds (float64) at every API boundary; sample counts come only from these helpers.
"""

from __future__ import annotations

import math

# Tolerance for float time arithmetic: 1 microsecond.
EPS_S = 1e-6


def num_samples(duration_s: float, rate_hz: float) -> int:
    """Number of samples in ``duration_s`` at ``rate_hz``: round half up, after removing float noise.

    ``num_samples(2.0, 30) == 60``, ``num_samples(2.0, 29.97) == 60`` (59.94 rounds up),
    ``num_samples(0.1, 16000) == 1600`` (not 1599 from 1599.9999999).
    """
    if duration_s < 0 or rate_hz <= 0:
        raise ValueError(f"num_samples needs duration_s >= 0 and rate_hz > 0, got {duration_s}, {rate_hz}")
    x = duration_s * rate_hz
    return int(math.floor(x + 0.5 + 1e-9))


def sample_index(time_s: float, t0_s: float, rate_hz: float) -> int:
    """Index of the sample nearest to ``time_s`` on the grid ``t0_s + k / rate_hz`` (half rounds up)."""
    return int(math.floor((time_s - t0_s) * rate_hz + 0.5 + 1e-9))


def sample_indices(times_s, t0_s: float, rate_hz: float):
    """:func:`sample_index` for an array of times (same rounding), as int64."""
    import numpy as np

    return np.floor((np.asarray(times_s, dtype=np.float64) - t0_s) * rate_hz + 0.5 + 1e-9).astype(np.int64)
