"""Streaming prediction for an IMU target (`dcat predict RUN - --stream`): CSV samples in on stdin,
one JSON line per window out, written as soon as the window is complete.

It owns the line format in (``CsvSamples``: ``t,<channels>``, an optional header naming the
channels, the same cell rules as the IMU reader of preprocessing), the incremental window grid
(``ImuWindower``), the loop that predicts and writes (``stream_predict``) and the command's stdin /
stdout (``stream_stdio``, which hands an audio model to ``pipelines.deploy.stream_audio``). The
model and the JSON rows are ``pipelines.deploy.predictor``'s.

The numbers are those of `dcat predict RUN <raw recording folder>` (which preprocesses the recording
with the checkpoint's settings and the model's stream only):

- the input rate is measured once on the first ``max(window, 1 s)`` of samples, as preprocessing
  measures a stream without a declared rate (``GAP_FACTOR`` x the median step, then
  ``measured_rate``); it fixes the decimation factor ``k`` and the gap threshold
  (``GAP_FACTOR`` input periods);
- the window grid starts where preprocessing's does for a lone IMU stream: the first timestamp plus
  the anti-alias filter's reach (``ImuStream.edge_s``: 10 output periods when ``k > 1``), windows
  ``stride`` apart, ``num_samples(window, rate)`` samples each;
- each window's samples come from ``pipelines.ingest.resample.resample_irregular`` (the function
  preprocessing calls) run on the buffered samples around the window, on the same grid; a window is
  complete once a sample past the last input instant its filter reads has arrived (that sample
  decides whether the last step is a gap);
- a window holding an output sample that preprocessing flags (outside the data, in or within the
  filter's reach of a gap longer than ``GAP_FACTOR`` input periods, NaN input) is written as
  ``{"start_s", "end_s", "skipped": <reason>}`` with the reason the quality gate would count
  (``coverage``, ``length``, ``gap``, ``nan``); ``rate`` when the input rate around it no longer
  gives the decimation factor fixed at the start.

One deliberate difference: the first window's filter reads from the first timestamp exactly, and
float noise in the grid arithmetic (which differs with the recording's ``clock_offset_s``) can put
that instant 1e-16 s before it, which ``resample_irregular`` counts as outside the data (it
tolerates 1e-9 s at the last sample, not at the first). The stream tolerates ``EDGE_NOISE_S`` there
too, so it keeps a first window that preprocessing may drop as ``coverage``.

Times are the CSV's own clock (preprocessing adds the recording's ``clock_offset_s``). Bad input
stops the stream as the reader stops a recording: a ``RecordingError`` naming the line.
"""

from __future__ import annotations

import csv
import math
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import numpy as np

from pipelines.core.errors import DcatError, RecordingError
from pipelines.core.io import to_json
from pipelines.core.timeutil import EPS_S, num_samples, sample_index
from pipelines.deploy.predictor import Predictor, StreamSpec, Window, spec_from_checkpoint, window_rows
from pipelines.ingest.raw import MAX_ABS_VALUE, MAX_RECORDING_S
from pipelines.ingest.readers import RATE_UNIT_FACTOR
from pipelines.ingest.resample import GAP_FACTOR, measured_rate, resample_irregular

WHERE, FILE = "stdin", "-"  # how messages name the stream
MIN_WARMUP_S = 1.0  # the input rate is measured on at least this much of the stream (and one window)
EDGE_NOISE_S = 1e-9  # float noise tolerated where the first window's filter meets the first sample (see _window)


def _err(lineno: int, problem: str, hint: str | None = None) -> RecordingError:
    return RecordingError(WHERE, FILE, f"line {lineno}: {problem}", hint)


class CsvSamples:
    """IMU CSV lines one at a time, with the cell rules of ``pipelines.ingest.readers.read_imu_csv``:
    an optional header first (``t`` then channel names; the model's channels are picked by name),
    blank lines skipped, empty cells and ``nan`` kept as NaN, inf and values beyond MAX_ABS_VALUE made
    NaN (counted in ``nonfinite``); a comment, a wrong number of fields, a cell that is not a number
    or a time that is not finite is a RecordingError naming the line."""

    def __init__(self, channels: tuple[str, ...]):
        self.channels = channels
        self.ncol: int | None = None  # fields per line, known after the first non-blank line
        self.cols: list[int] = []  # field index of each model channel
        self.lineno = 0
        self.nonfinite = 0

    def _header(self, row: list[str]) -> None:
        names = [c.strip() for c in row[1:]]
        if not names:
            raise _err(self.lineno, "no channel columns after 't'")
        dup = sorted({c for c in names if names.count(c) > 1 or c.lower() == "t"})
        if dup:
            raise _err(self.lineno, f"duplicate column names {dup} in the header")
        missing = [c for c in self.channels if c not in names]
        if missing:
            raise _err(self.lineno, f"the header {names} lacks the channels {missing} the model reads "
                       f"({list(self.channels)})", "name the channels as the shards do: see `dcat inspect`")
        self.ncol, self.cols = 1 + len(names), [1 + names.index(c) for c in self.channels]

    def parse(self, line: str) -> tuple[float, np.ndarray] | None:
        """``(t, x float32 [C])`` of one line, or None for a blank line or the header."""
        self.lineno += 1
        if "\x00" in line:
            raise _err(self.lineno, "holds a NUL byte: not a text CSV")
        s = line.strip()
        if not s:
            return None
        try:
            row = next(csv.reader([s]))
        except csv.Error as e:
            raise _err(self.lineno, f"not CSV: {e}") from None
        if self.ncol is None:
            if row[0].strip().lower() == "t":
                self._header(row)
                return None
            self.ncol, self.cols = 1 + len(self.channels), list(range(1, 1 + len(self.channels)))
        if row[0].lstrip().startswith("#"):
            raise _err(self.lineno, f"a comment line ('{row[0][:40]}...'): the IMU CSV has no comments")
        if len(row) != self.ncol:
            raise _err(self.lineno, f"{len(row)} fields, expected {self.ncol} (t and "
                       f"{'the header' if self.cols != list(range(1, self.ncol)) else list(self.channels)})")
        vals = np.empty(len(self.cols) + 1)
        for out, j in enumerate([0, *self.cols]):
            c = row[j].strip()
            try:
                vals[out] = math.nan if c == "" or c.lower() == "nan" else float(c)
            except ValueError:
                raise RecordingError(WHERE, FILE, f"line {self.lineno}, column {j + 1}: {c[:40]!r} is not a number") \
                    from None
        if not math.isfinite(vals[0]):
            raise _err(self.lineno, "time 't' is not a finite number")
        x = vals[1:]
        bad = np.isinf(x) | (np.abs(x) > MAX_ABS_VALUE)
        if bad.any():
            self.nonfinite += int(bad.sum())
            x[bad] = np.nan
        return float(vals[0]), x.astype(np.float32)


class ImuWindower:
    """Samples in (``push``), complete windows out, equal to preprocessing's windows of the same
    samples (module docstring); ``finish`` at the end of the input."""

    def __init__(self, rate_hz: float, window_s: float, stride_s: float, input_hz: float | None = None):
        self.rate, self.w, self.stride, self.input_hz = float(rate_hz), float(window_s), float(stride_s), input_hz
        self.t_win = num_samples(window_s, rate_hz)
        self.warmup_s = max(self.w, MIN_WARMUP_S)
        self.t: list[float] = []
        self.x: list[np.ndarray] = []
        self.k: int | None = None  # decimation factor, fixed after the warm-up
        self.half = 0
        self.edge_s = 0.0
        self.gap_s = math.inf
        self.origin = 0.0  # grid origin: first timestamp + the filter's reach
        self.j = 0  # index of the next window on the grid
        self.input_rate_hz = math.nan

    def push(self, t: float, x: np.ndarray, lineno: int) -> list[Window]:
        if self.t and not t > self.t[-1]:
            raise _err(lineno, f"timestamps are not strictly increasing (t={t:g} after t={self.t[-1]:g})",
                       "sort the rows or fix the logger's clock; dcat does not reorder samples")
        if self.t and t - self.t[-1] > MAX_RECORDING_S:
            raise _err(lineno, f"time jumps by {t - self.t[-1]:.4g} s, more than a recording may last",
                       "'t' must be in seconds")
        self.t.append(t)
        self.x.append(x)
        if self.k is None:
            if t - self.t[0] < self.warmup_s:
                return []
            self._fix_rate(lineno)
        return self._ready(final=False)

    def finish(self, lineno: int = 0) -> list[Window]:
        """The windows the samples so far complete (the end of the input, after line ``lineno``)."""
        if self.k is None:
            if len(self.t) < 2:
                return []
            self._fix_rate(lineno)
        return self._ready(final=True)

    def _fix_rate(self, lineno: int) -> None:
        """Measure the input rate as preprocessing does for a stream without a declared rate."""
        t = np.asarray(self.t)
        dec = self.input_hz or measured_rate(t, GAP_FACTOR * float(np.median(np.diff(t))))
        self.gap_s = GAP_FACTOR / dec
        rate_in = measured_rate(t, self.gap_s)
        if not math.isfinite(rate_in) or rate_in * RATE_UNIT_FACTOR < self.rate:
            raise _err(lineno, f"the first {t[-1] - t[0]:.4g} s of samples give an input rate of {rate_in:.4g} Hz, "
                       f"too slow for a model at {self.rate:g} Hz", "'t' must be in seconds (milliseconds?)")
        self.input_rate_hz = rate_in
        self.k = max(1, int(round(rate_in / self.rate)))
        self.half = 10 * self.k if self.k > 1 else 0  # resample_irregular's filter half-length
        self.edge_s = 10.0 / self.rate if self.k > 1 else 0.0  # ImuStream.edge_s
        self.origin = float(t[0]) + self.edge_s

    def _ready(self, final: bool) -> list[Window]:
        out: list[Window] = []
        r_u = self.k * self.rate
        t_last = self.t[-1]
        b = t_last - self.edge_s + 1.0 / self.rate  # windows.span_end of a lone IMU stream
        n_grid = sample_index(b, self.origin, self.rate) + 1
        while True:
            start = self.origin + self.j * self.stride
            i0 = sample_index(start, self.origin, self.rate)
            t0c = self.origin + i0 / self.rate
            u_end = t0c + ((self.t_win - 1) * self.k + self.half) / r_u  # last input instant the window reads
            if final:
                if not start + self.w <= b + EPS_S:  # not a window of the grid over these samples
                    break
            elif not t_last > u_end:
                break
            out.append(self._window(start, i0, t0c, n_grid if final else None))
            self.j += 1
        if out:
            self._trim(r_u)
        return out

    def _window(self, start: float, i0: int, t0c: float, n_grid: int | None) -> Window:
        if n_grid is not None and i0 + self.t_win > n_grid:
            return Window(start, start + self.w, None, "length")
        t = np.asarray(self.t)
        u0 = t0c - self.half / (self.k * self.rate)
        u1 = t0c + (self.t_win * self.k + self.half) / (self.k * self.rate)
        if 0.0 < t[0] - u0 < EDGE_NOISE_S:  # the first window's filter starts at t[0] up to float noise
            t0c += EDGE_NOISE_S
        lo = max(0, int(np.searchsorted(t, u0, side="right")) - 1)
        hi = int(np.searchsorted(t, u1, side="right")) + 1
        tc, xc = t[lo:hi], np.stack(self.x[lo:hi])
        rate_c = measured_rate(tc, self.gap_s) if len(tc) > 1 else math.nan
        k_c = max(1, int(round(rate_c / self.rate))) if math.isfinite(rate_c) else 1
        if k_c != self.k:  # resample_irregular would pick another filter here
            gap = len(tc) > 1 and bool((np.diff(tc) > self.gap_s).any())
            return Window(start, start + self.w, None, "gap" if gap else "rate")
        r = resample_irregular(tc, xc, self.rate, t0c, self.t_win, self.gap_s)
        for mask, reason in ((r.outside, "coverage"), (r.gap, "gap"), (r.nan, "nan")):  # ImuStream.bad_samples
            if mask.any():
                return Window(start, start + self.w, None, reason)
        return Window(start, start + self.w, r.y, "")

    def _trim(self, r_u: float) -> None:
        """Drop the samples no later window reads (keep the last one at or before its first instant)."""
        start = self.origin + self.j * self.stride
        u0 = self.origin + sample_index(start, self.origin, self.rate) / self.rate - self.half / r_u
        cut = int(np.searchsorted(np.asarray(self.t), u0, side="right")) - 1
        if cut > 0:
            del self.t[:cut]
            del self.x[:cut]


def _warm_up(predictor, win: ImuWindower) -> None:
    """Import the resampler's scipy module and run the model once now, not when the first window is due."""
    from scipy.signal import resample_poly  # noqa: F401 - resample_irregular imports it on its first call

    predictor(np.zeros((1, win.t_win, len(predictor.spec.channels)), np.float32))


def stream_predict(predictor, lines: Iterable[str], out: IO[str], input_hz: float | None = None) -> dict:
    """Read CSV ``lines``, write one JSON line per window to ``out`` (flushed) as soon as it is
    complete; returns counts ``{"windows", "skipped", "lines", "nonfinite", "input_rate_hz"}``."""
    spec = predictor.spec
    if spec.kind != "imu":
        raise DcatError(f"CSV samples are for IMU models; this model reads the {spec.kind} stream '{spec.stream}'")
    parser = CsvSamples(spec.channels)
    win = ImuWindower(spec.rate_hz, spec.window_s, spec.stride_s, input_hz=input_hz)
    counts = {"windows": 0, "skipped": 0}
    _warm_up(predictor, win)

    def emit(ws: list[Window]) -> None:
        if not ws:
            return
        for row in window_rows(ws, predictor, spec.classes):
            out.write(to_json(row) + "\n")
            counts["skipped" if "skipped" in row else "windows"] += 1
        out.flush()

    for line in lines:
        s = parser.parse(line)
        if s is not None:
            emit(win.push(s[0], s[1], parser.lineno))
    emit(win.finish(parser.lineno))
    return {**counts, "lines": parser.lineno, "nonfinite": parser.nonfinite, "input_rate_hz": win.input_rate_hz}


def _utf8_lines(buf) -> Iterator[str]:
    """Lines of a binary stream as they arrive, decoded as UTF-8 (a RecordingError names a line that is not)."""
    for n, raw in enumerate(iter(buf.readline, b""), start=1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _err(n, "not UTF-8 text: is this a CSV?") from None


def stream_stdio(model_path: str | Path, checkpoint: str = "best.pt", device: str = "auto", threads: int = 1) -> dict:
    """`dcat predict RUN - --stream`: stdin to stdout (IMU: UTF-8 CSV line by line; audio: raw PCM,
    ``stream_audio``); a closed stdout (the consumer of a pipeline quit) ends it quietly, Ctrl-C with
    exit status 130."""
    predictor = Predictor(model_path, checkpoint=checkpoint, device=device, threads=threads)
    buf = getattr(sys.stdin, "buffer", None)
    try:
        if predictor.spec.kind == "audio":
            from pipelines.deploy.stream_audio import stream_pcm

            return stream_pcm(predictor, buf if buf is not None else sys.stdin, sys.stdout)
        lines = _utf8_lines(buf) if buf is not None else iter(sys.stdin.readline, "")
        return stream_predict(predictor, lines, sys.stdout)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)  # so the interpreter's final flush does not fail again
        os.dup2(devnull, sys.stdout.fileno())
        return {"closed": True}
    except KeyboardInterrupt:  # Ctrl-C on `tail -f ... | dcat ...`: no traceback
        raise SystemExit(130) from None


__all__ = ["StreamSpec", "spec_from_checkpoint", "CsvSamples", "ImuWindower", "Window", "Predictor", "window_rows",
           "stream_predict", "stream_stdio"]
