"""Clock drift: the lag measured on segments of a long recording, fitted by offset + drift.

Two clocks that tick at slightly different rates (a watch and a camera) make the lag grow along the
recording: 100 ppm is 0.18 s over 30 minutes. ``estimate_drift`` estimates the lag on segments
(``SEGMENT_S`` long, every ``STEP_S``) around the whole-overlap lag, keeps the segments whose
estimate is reliable, and fits ``lag(t) = offset_s + drift * (t - t_ref_s)`` by least squares
(weighted by each segment's z-score). ``residual_s`` is the RMS distance of the kept segments
from the line. Below ``MIN_SEGMENTS`` reliable segments there is no drift estimate.
"""

from __future__ import annotations

import numpy as np

from pipelines.ingest.sync.estimate import Series, estimate_lag

SEGMENT_S = 60.0
STEP_S = 30.0
MIN_SEGMENTS = 3
SEARCH_S = 0.5  # segments search +- this around the whole-overlap lag


def overlap(ref: list[Series], other: list[Series], lag_s: float) -> tuple[float, float]:
    """The span on the recording clock that both cover when ``other`` lags by ``lag_s``."""
    a0 = max(min(s.t0_s for s in ref), min(s.t0_s - lag_s for s in other))
    a1 = min(max(s.end_s for s in ref), max(s.end_s - lag_s for s in other))
    return a0, a1


def estimate_drift(ref: list[Series], other: list[Series], lag_s: float, tol_s: float = 0.04) -> dict:
    """Offset and drift of ``other`` behind ``ref`` from segment lags (see the module docstring).

    Returns ``{"status": "ok", "drift_ppm", "offset_s" (lag at t_ref_s), "t_ref_s", "lag_start_s",
    "lag_end_s", "span_s", "residual_s", "segments_used", "segments"}`` or ``{"status": "none",
    "reason", "segments"}``.
    """
    a0, a1 = overlap(ref, other, lag_s)
    if a1 - a0 < SEGMENT_S + MIN_SEGMENTS * STEP_S - STEP_S:
        return {"status": "none", "reason": f"overlap {max(a1 - a0, 0):.0f} s is too short for {MIN_SEGMENTS} "
                f"segments of {SEGMENT_S:g} s", "segments": 0}
    starts = np.arange(a0, a1 - SEGMENT_S + 1e-9, STEP_S)
    t, y, w = [], [], []
    for s0 in starts:
        e = estimate_lag(ref, other, SEARCH_S, span=(s0, s0 + SEGMENT_S), center_s=lag_s, tol_s=tol_s)
        if e["reliable"]:
            t.append(s0 + SEGMENT_S / 2)
            y.append(e["lag_s"])
            w.append(e["z"])
    if len(t) < MIN_SEGMENTS:
        return {"status": "none", "reason": f"{len(t)} of {len(starts)} segments gave a reliable lag "
                f"({MIN_SEGMENTS} needed)", "segments": len(starts)}
    t, y, w = np.array(t), np.array(y), np.array(w)
    t_ref = float(np.average(t, weights=w))
    A = np.stack([np.ones_like(t), t - t_ref], 1) * np.sqrt(w)[:, None]
    # one robust pass: refit without segments more than 3 MADs (and 2 tolerances) off the first line
    coef = np.linalg.lstsq(A, y * np.sqrt(w), rcond=None)[0]
    res = y - (coef[0] + coef[1] * (t - t_ref))
    mad = float(np.median(np.abs(res - np.median(res)))) * 1.4826
    keep = np.abs(res) <= max(3 * mad, 2 * tol_s)
    if keep.sum() >= MIN_SEGMENTS and not keep.all():
        coef = np.linalg.lstsq(A[keep], (y * np.sqrt(w))[keep], rcond=None)[0]
        res = y - (coef[0] + coef[1] * (t - t_ref))
    off, d = float(coef[0]), float(coef[1])
    return {"status": "ok", "drift_ppm": round(d * 1e6, 2), "offset_s": round(off, 5), "t_ref_s": round(t_ref, 3),
            "lag_start_s": round(off + d * (a0 - t_ref), 4), "lag_end_s": round(off + d * (a1 - t_ref), 4),
            "span_s": [round(a0, 3), round(a1, 3)], "residual_s": round(float(np.sqrt(np.mean(res[keep] ** 2))), 4),
            "segments_used": int(keep.sum()), "segments": int(len(starts))}
