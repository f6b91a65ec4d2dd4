"""Where a recording's windows lie and which of them pass the quality gate.

Coverage: every stream's span on the recording clock; a stream that starts late or ends early
beyond ``--coverage-tol`` fails the recording or is cropped (``--short-streams``). Windows: a grid
of starts ``--stride`` apart with its origin at the start of the span all streams cover; windows
inside that span pass the gate unless a stream lacks samples for them (length), holds a gap, NaN
or uncovered sample in them, or their majority label is not pure enough. Every window of the grid
over the recording is counted: kept, or rejected under one reason (``REJECT_REASONS``, the first
that applies; windows outside the common span count as ``coverage``).

A stream's reported end (``Stream.cover_rec_s``) is either one sample period past its last sample
(kinds on their own grid: ``start + n / rate``) or the time of its last usable sample (the IMU: the
last output sample its anti-alias filter fully sees). The span therefore reaches one sample period
of each stream past its reported end (:func:`span_end`); the gate checks each stream's samples
exactly, so a window that reaches past a stream's last sample is rejected (``length`` /
``coverage``), never silently left out. (Without this, a 50 Hz IMU recording whose last sample is
at 45.98 s lost the window [44, 46) although all of its 100 samples exist, and no reason counted it.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from pipelines.core.errors import RecordingError
from pipelines.core.timeutil import EPS_S, num_samples
from pipelines.ingest.config import PreprocessConfig
from pipelines.ingest.raw import MAX_RECORDING_S, Recording, Segment
from pipelines.ingest.streams import Stream

REJECT_REASONS = ("coverage", "length", "gap", "nan", "label_purity")


class Span(NamedTuple):
    """On the recording clock: ``[u0, u1]`` spans every stream's samples, ``[a, b]`` is the part all cover."""

    u0: float
    u1: float
    a: float
    b: float


def check_coverage(rec: Recording, series: list[Stream], cfg: PreprocessConfig, warnings: list[str]) -> Span:
    """Spans on the recording clock; a stream that starts late / ends early beyond tolerance fails or is cropped."""
    starts = {s.name: s.cover_rec_s[0] for s in series}
    ends = {s.name: s.cover_rec_s[1] for s in series}
    u0, u1 = min(starts.values()), max(ends.values())
    if not u1 - u0 <= MAX_RECORDING_S:  # before any window grid is allocated over [u0, u1]
        raise RecordingError(rec.id, None, f"the streams span {u0:.6g} to {u1:.6g} s on the recording clock, more "
                             f"than the {MAX_RECORDING_S / 3600:g} h a recording may last (spans: "
                             + ", ".join(f"{k} {starts[k]:.6g}-{ends[k]:.6g}" for k in starts) + ")",
                             "check clock_offset_s in meta.json and the time units of the streams")
    tol = cfg.coverage_tol_s
    for s in series:
        late, early = starts[s.name] - u0, u1 - ends[s.name]
        s.info.update(start_s=starts[s.name], end_s=ends[s.name], start_late_s=late, end_early_s=early,
                      coverage_ok=bool(late <= tol and early <= tol))
        if s.info["coverage_ok"]:
            continue
        what = " and ".join(x for x in (f"starts {late:.2f} s late" if late > tol else "",
                                         f"ends {early:.2f} s early" if early > tol else "") if x)
        msg = (f"stream '{s.name}' covers {starts[s.name]:.2f}-{ends[s.name]:.2f} s but the recording spans "
               f"{u0:.2f}-{u1:.2f} s: it {what}")
        if cfg.short_streams == "fail":
            raise RecordingError(rec.id, s.file, msg, "truncated file? use --short-streams crop to keep the part "
                                 "every stream covers")
        warnings.append(f"{s.file}: {msg} (cropped)")
    a, b = max(starts.values()), min(ends.values())
    if span_end(series, b) - a < cfg.window_s - EPS_S:
        raise RecordingError(rec.id, None, f"the streams overlap for {max(0.0, b - a):.2f} s, less than one "
                             f"{cfg.window_s:g} s window (spans: "
                             + ", ".join(f"{k} {starts[k]:.2f}-{ends[k]:.2f}" for k in starts) + ")")
    return Span(u0, u1, a, span_end(series, b))


def span_end(series: list[Stream], b: float) -> float:
    """The end of the common span: each stream's reported end plus one of its sample periods (an end
    given as the last sample's time becomes the end of that sample's period), the smallest of them,
    at least ``b`` (the smallest reported end)."""
    return max(b, min(s.cover_rec_s[1] + 1.0 / s.rate_hz for s in series))


def label_windows(starts: np.ndarray, w: float, rec: Recording,
                  segs: list[Segment]) -> tuple[np.ndarray, np.ndarray]:
    """Each window's majority label (object array) and the fraction of the window it covers."""
    if rec.label is not None and not segs:  # whole-recording label ("" when labels are ignored)
        return np.array([rec.label] * len(starts), dtype=object), np.ones(len(starts), np.float32)
    names = sorted({s.label for s in segs})
    cover = np.zeros((len(starts), len(names)))
    ends = starts + w
    for s in segs:
        ov = np.clip(np.minimum(ends, s.end_s) - np.maximum(starts, s.start_s), 0, None)
        cover[:, names.index(s.label)] += ov
    best = cover.argmax(axis=1) if len(names) else np.zeros(len(starts), int)
    purity = (cover[np.arange(len(starts)), best] / w).astype(np.float32) if len(names) else np.zeros(len(starts), np.float32)
    return np.array(names, dtype=object)[best], purity


@dataclass
class WindowPlan:
    """The candidate windows inside the common span, and which of them the gate kept."""

    starts: np.ndarray  # float64 [n]: window starts, recording clock
    keep: np.ndarray  # indices into ``starts`` of the kept windows
    labels: np.ndarray  # object [n]: majority label
    purity: np.ndarray  # float32 [n]: fraction of the window its label covers
    first: dict[str, np.ndarray]  # per stream: each window's first grid sample
    per_window: dict[str, int]  # per stream: grid samples per window
    rejected: dict[str, int]  # windows rejected, per reason (REJECT_REASONS)

    @property
    def n_kept(self) -> int:
        return len(self.keep)

    @property
    def windows_total(self) -> int:
        return int(len(self.starts) + self.rejected["coverage"])


def window_starts(span: Span, cfg: PreprocessConfig) -> tuple[np.ndarray, int]:
    """Starts of the windows inside ``[a, b]`` on the grid with origin ``a``, and how many windows
    of the grid over ``[u0, u1]`` lie outside it."""
    w, st = cfg.window_s, cfg.stride_s
    u0, u1, a, b = span
    j_lo = -int(math.floor((a - u0) / st + EPS_S))
    j_hi = int(math.floor((max(u1, b) - w - a) / st + EPS_S))
    cand = a + np.arange(j_lo, j_hi + 1) * st
    inside = (cand >= a - EPS_S) & (cand + w <= b + EPS_S)
    return cand[inside], int((~inside).sum())


class _Gate:
    """Which windows are still in, and the reason each rejected one was rejected for first."""

    def __init__(self, n: int):
        self.ok = np.ones(n, bool)
        self.reason_of = np.full(n, "", dtype=object)

    def reject(self, mask: np.ndarray, reason: str) -> None:
        self.reason_of[mask & self.ok] = reason
        self.ok &= ~mask


def gate_windows(rec: Recording, segs: list[Segment], series: list[Stream], span: Span,
                 cfg: PreprocessConfig) -> WindowPlan:
    """Put the streams on the window grid (``Stream.resample``) and keep the windows that pass the
    quality gate. Raises RecordingError when none does."""
    w = cfg.window_s
    cand, outside = window_starts(span, cfg)
    rejected = {r: 0 for r in REJECT_REASONS}
    rejected["coverage"] = outside
    gate = _Gate(len(cand))
    first: dict[str, np.ndarray] = {}
    per_win: dict[str, int] = {}
    for s in series:
        s.resample(span.a, span.b, cfg)
        t_win = num_samples(w, s.rate_hz)
        i0 = s.window_index(cand)  # the stream's clock drift corrected (--align estimate)
        first[s.name], per_win[s.name] = i0, t_win
        gate.reject((i0 < 0) | (i0 + t_win > s.n), "length")
        i0c = np.clip(i0, 0, max(0, s.n - t_win))
        for mask, reason in s.bad_samples():
            cs = np.concatenate([[0], np.cumsum(mask)])
            gate.reject((cs[i0c + t_win] - cs[i0c]) > 0, reason)
    labels, purity = label_windows(cand, w, rec, segs)
    if cfg.labels == "require":
        gate.reject(purity < cfg.min_purity - 1e-6, "label_purity")
    for r in REJECT_REASONS:
        rejected[r] += int((gate.reason_of == r).sum())
    keep = np.flatnonzero(gate.ok)
    if len(keep) == 0:
        raise RecordingError(rec.id, None, "no window passed the quality gate (rejected: "
                             + ", ".join(f"{k}={v}" for k, v in rejected.items() if v) + ")",
                             "check labels.csv, --min-purity and the stream spans")
    return WindowPlan(starts=cand, keep=keep, labels=labels, purity=purity, first=first, per_window=per_win,
                      rejected=rejected)
