"""Stream readers: IMU CSV (numpy), video (decord), audio (PyAV for containers, soundfile for wav/flac).

Media libraries are imported inside the functions that use them, so importing this module is cheap
and training never pulls them in. Every failure raises RecordingError naming recording and file.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from pipelines.core.errors import RecordingError
from pipelines.ingest.raw import (CONTAINER_AUDIO_SUFFIXES, MAX_ABS_VALUE, MAX_RECORDING_S, MIN_IMU_SPAN_S,
                                  StreamSpec)

RATE_UNIT_FACTOR = 20.0  # median step this many times off the declared period: wrong unit of t


# ----------------------------------------------------------------------------------------- IMU
@dataclass
class ImuTable:
    t: np.ndarray  # float64 [n], seconds, stream clock, strictly increasing
    x: np.ndarray  # float32 [n, C]; NaN where the file has NaN, an empty cell, inf or |value| > MAX_ABS_VALUE
    channels: list[str]
    nonfinite: int = 0  # cells of the kept channels that were inf or beyond MAX_ABS_VALUE (now NaN)


def _parse_csv_slow(text: str, rec: str, file: str, ncol: int) -> np.ndarray:
    """Row-by-row parse that reports the first bad line; empty cells and 'nan' become NaN."""
    rows = []
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise RecordingError(rec, file, f"line {line}: holds a NUL byte: not a text CSV")
    reader = csv.reader(io.StringIO(text))
    next(reader)
    for lineno, row in enumerate(reader, start=2):
        if not row:
            continue
        if row[0].lstrip().startswith("#"):
            raise RecordingError(rec, file, f"line {lineno}: a comment line ('{row[0][:40]}...'): the IMU CSV has "
                                 "no comments; every line after the header is a row of numbers")
        if len(row) != ncol:
            raise RecordingError(rec, file, f"line {lineno}: {len(row)} fields, the header has {ncol}")
        vals = []
        for j, c in enumerate(row):
            c = c.strip()
            if c == "" or c.lower() == "nan":
                vals.append(math.nan)
                continue
            try:
                vals.append(float(c))
            except ValueError:
                raise RecordingError(rec, file, f"line {lineno}, column {j + 1}: {c[:40]!r} is not a number") from None
        rows.append(vals)
    return np.asarray(rows, dtype=np.float64).reshape(-1, ncol)


def _imu_header(spec: StreamSpec, rec: str) -> list[str]:
    """The header row: ``t`` first, then unique, non-empty channel names without control characters."""
    file = spec.file
    try:
        with open(spec.path, encoding="utf-8") as f:
            first = f.readline(1 << 20).strip()
    except UnicodeDecodeError:
        raise RecordingError(rec, file, "not UTF-8 text: is this a CSV?") from None
    try:
        header = [h.strip() for h in next(csv.reader([first]))] if first else []
    except csv.Error as e:
        raise RecordingError(rec, file, f"line 1: the header is not CSV: {e}") from None
    if not header or header[0].lower() != "t":
        got = str(header[:1])[:60] if header else "nothing"
        raise RecordingError(rec, file, f"first header column must be 't' (seconds), got {got}")
    if len(header) < 2:
        raise RecordingError(rec, file, "no channel columns after 't'")
    names = header[1:]
    bad = [c for c in names if not c or len(c) > 200 or any(ord(ch) < 32 for ch in c)]
    if bad:
        raise RecordingError(rec, file, f"line 1: header channel names must be non-empty, at most 200 characters, "
                             f"without control characters; got {str(bad[:3])[:120]}")
    dup = sorted({c for c in names if names.count(c) > 1})
    if dup or "t" in names:
        raise RecordingError(rec, file, f"line 1: duplicate column names {dup or ['t']} in the header",
                             "every channel needs its own name")
    return header


def _parse_imu_fast(spec: StreamSpec, ncol: int) -> tuple[np.ndarray, np.ndarray]:
    """Blocks of rows straight from the file: t float64, channels float64 (cast later). ValueError
    on anything unusual (empty cells, a bad line, a comment): the caller parses row by row."""
    ts, xs = [], []
    with open(spec.path, encoding="utf-8") as f, np.errstate(all="ignore"):
        f.readline()
        while True:
            lines = list(itertools.islice(f, 1 << 16))
            if not lines:
                break
            if any("\x00" in ln for ln in lines):
                raise ValueError("NUL")
            block = np.loadtxt(lines, delimiter=",", dtype=np.float64, ndmin=2, comments=None)
            if block.size == 0:
                continue
            if block.shape[1] != ncol:
                raise ValueError("ragged")
            ts.append(block[:, 0].copy())
            xs.append(_to_float32(block[:, 1:]))
    t = np.concatenate(ts) if ts else np.zeros(0)
    x = np.concatenate(xs) if xs else np.zeros((0, ncol - 1), np.float32)
    return t, x


def _parse_imu(spec: StreamSpec, rec: str, ncol: int) -> tuple[np.ndarray, np.ndarray]:
    """t float64 [n] and channels float32 [n, ncol - 1]: fast, else row by row naming the bad line."""
    try:
        return _parse_imu_fast(spec, ncol)
    except (ValueError, UnicodeDecodeError):  # empty cells or a bad line: parse row by row, name the line
        try:
            text = spec.path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise RecordingError(rec, spec.file, "not UTF-8 text: is this a CSV?") from None
        arr = _parse_csv_slow(text, rec, spec.file, ncol)
        del text
        return arr[:, 0].copy(), _to_float32(arr[:, 1:])


def _to_float32(a: np.ndarray) -> np.ndarray:
    """float64 -> float32; values that are inf, or beyond MAX_ABS_VALUE (so beyond float32 too),
    become +-inf here and NaN in ``_mask_nonfinite``."""
    with np.errstate(all="ignore"):
        a = np.where(np.abs(a) > MAX_ABS_VALUE, np.copysign(np.inf, a), a)
        return a.astype(np.float32)


def _check_imu_times(t: np.ndarray, spec: StreamSpec, rec: str) -> None:
    """t finite, strictly increasing, at least 2 samples, spanning MIN_IMU_SPAN_S to MAX_RECORDING_S, with steps
    that fit the declared rate (a factor of RATE_UNIT_FACTOR off means a wrong unit)."""
    file = spec.file
    if len(t) == 0:
        raise RecordingError(rec, file, "no data rows")
    if not np.all(np.isfinite(t)):
        bad = int(np.flatnonzero(~np.isfinite(t))[0])
        raise RecordingError(rec, file, f"line {bad + 2}: time 't' is not a finite number")
    dt = np.diff(t)
    if np.any(dt <= 0):
        k = int(np.flatnonzero(dt <= 0)[0])
        raise RecordingError(rec, file, f"timestamps are not strictly increasing at line {k + 3} "
                             f"(t={float(t[k + 1]):g} after t={float(t[k]):g})",
                             "sort the rows or fix the logger's clock; dcat does not reorder samples")
    if len(t) < 2:
        raise RecordingError(rec, file, "fewer than 2 samples")
    span = float(t[-1] - t[0])
    if span > MAX_RECORDING_S:
        raise RecordingError(rec, file, f"time 't' spans {span:.4g} s, more than the {MAX_RECORDING_S / 3600:g} h "
                             f"({MAX_RECORDING_S:g} s) a recording may last",
                             "'t' must be in seconds: are the times in milliseconds, microseconds or nanoseconds?")
    if span < MIN_IMU_SPAN_S:
        raise RecordingError(rec, file, f"time 't' spans only {span:.4g} s ({len(t)} samples); an IMU stream must "
                             f"cover at least {MIN_IMU_SPAN_S:g} s", "a truncated file?")
    if spec.declared_rate_hz:
        r = float(np.median(dt)) * spec.declared_rate_hz
        if r > RATE_UNIT_FACTOR or r < 1 / RATE_UNIT_FACTOR:
            raise RecordingError(rec, file, f"the median time step is {float(np.median(dt)):.4g} s, {r:.4g} times "
                                 f"the period of the declared rate_hz {spec.declared_rate_hz:g}",
                                 "'t' must be in seconds (milliseconds or nanoseconds?), or rate_hz is wrong")


def read_imu_csv(spec: StreamSpec, rec: str) -> ImuTable:
    """Read an IMU CSV: header row, first column ``t`` (seconds), then numeric channels.

    Fails on: no header / no ``t`` column, duplicate names, ragged rows, non-numeric cells (a
    ``#`` comment too), NaN or non-monotonic time, a time span over MAX_RECORDING_S or steps that
    contradict the declared rate (checked before anything is allocated from the times). NaN in
    channels is kept (windows that touch it are dropped later and counted); inf and values beyond
    MAX_ABS_VALUE become NaN and are counted (``ImuTable.nonfinite``).
    """
    file = spec.file
    try:
        header = _imu_header(spec, rec)
        t, x = _parse_imu(spec, rec, len(header))
    except OSError as e:
        raise RecordingError(rec, file, f"cannot read: {e.strerror or e}") from None
    _check_imu_times(t, spec, rec)
    names = header[1:]
    if spec.channels:
        missing = [c for c in spec.channels if c not in names]
        if missing:
            raise RecordingError(rec, file, f"channels {missing} named in meta.json are not in the header {names}")
        x, names = x[:, [names.index(c) for c in spec.channels]], list(spec.channels)
    bad = np.isinf(x)
    nonfinite = int(bad.sum())
    if nonfinite:
        x[bad] = np.nan
    return ImuTable(t=t, x=x, channels=names, nonfinite=nonfinite)


# --------------------------------------------------------------------------------------- video
def _decoder_message(e: Exception) -> str:
    """decord's error text without its log prefix ('[time] /path/file.cc:123: Error: ...')."""
    import re

    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    msg = re.sub(r"^\[[0-9:]+\]\s+\S+:\d+:\s*", "", msg)
    return msg[:200]


DROP_PIECE = 256  # frames decoded and dropped per call on the way to the first frame asked for


class VideoSource:
    """A decord VideoReader at the output size, with per-frame presentation times (stream clock)."""

    def __init__(self, spec: StreamSpec, rec: str, size: tuple[int, int]):
        import decord

        self.rec, self.file = rec, spec.file
        h, w = size
        self.size, self.path, self.resize_here = (h, w), str(spec.path), False
        self.pos = 0  # the frame decord decodes next without seeking or skipping
        try:
            self.vr = decord.VideoReader(str(spec.path), ctx=decord.cpu(0), width=w, height=h, num_threads=1)
        except Exception as e:  # decord raises DECORDError / RuntimeError with ffmpeg's words
            raise RecordingError(rec, spec.file, f"cannot open video: {_decoder_message(e)}",
                                 "the file is corrupt, truncated or not a video") from None
        n = len(self.vr)
        if n < 2:
            raise RecordingError(rec, spec.file, f"video has {n} frames")
        try:
            ts = np.asarray(self.vr.get_frame_timestamp(np.arange(n)), dtype=np.float64)
        except Exception as e:
            raise RecordingError(rec, spec.file, f"cannot read frame timestamps: {e}") from None
        self.t = ts[:, 0]
        self.n = n
        self.native_fps = float(self.vr.get_avg_fps())
        if np.any(np.diff(self.t) <= 0):
            k = int(np.flatnonzero(np.diff(self.t) <= 0)[0])
            raise RecordingError(rec, spec.file, f"frame timestamps not increasing at frame {k + 1}")

    def close(self) -> None:
        """Free the decoder (its buffers and the file's index); ``get`` cannot be called after."""
        self.vr = None

    def get(self, idx: np.ndarray) -> np.ndarray:
        """Decode frames ``idx`` (sorted, ascending) -> uint8 [len(idx), H, W, 3].

        decord is only ever asked for consecutive frames that continue from where it stands, and the
        frames in between are dropped here: asked for a frame further on, decord skips to it with a
        loop that gives up after 10,000 polls of a busy decoder thread and goes on one frame off
        (decord2's ``SkipFramesImpl``, "Failed to skip frames effectively"), so under CPU load two
        runs of one recording gave different frames. Frames before the decoder's position (going
        back) are reached with decord's seek.
        """
        if self.vr is None:
            raise RuntimeError(f"VideoSource.get after close ({self.file})")
        idx = np.asarray(idx, dtype=np.int64)
        if len(idx) == 0:
            return np.zeros((0, *self.size, 3), np.uint8)
        start = self.pos if self.pos <= idx[0] else int(idx[0])
        try:
            while idx[0] - start > DROP_PIECE:  # frames before the first one asked for, in pieces
                self._batch(start, start + DROP_PIECE)
                start += DROP_PIECE
            frames = self._batch(start, int(idx[-1]) + 1)
            frames = frames if len(frames) == len(idx) else frames[idx - start]
            return resize_frames(frames, self.size) if self.resize_here else frames
        except Exception as e:
            if not self.resize_here and "size must exactly match" in str(e):
                # decord's own scaler returns frames of another size for some output sizes (seen: widths
                # 32, 48 and 96 from 128 px): decode at the file's size and resize here instead
                import decord

                self.vr = decord.VideoReader(self.path, ctx=decord.cpu(0), num_threads=1)
                self.resize_here, self.pos = True, 0
                return self.get(idx)
            raise RecordingError(self.rec, self.file,
                                 f"decoding failed near frame {int(idx[0])} of {self.n}: {_decoder_message(e)}",
                                 "the file is corrupt or truncated") from None

    def _batch(self, a: int, b: int) -> np.ndarray:
        """Frames ``[a, b)`` in one decord call; the decoder then stands at ``b``."""
        frames = self.vr.get_batch(list(range(a, b))).asnumpy()
        self.pos = b
        return frames

def _lerp_axis(x: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """Linear interpolation of ``x`` to ``n_out`` samples along ``axis``, pixel centres aligned
    (``src = (i + 0.5) * n_in / n_out - 0.5``, clamped at the edges)."""
    n_in = x.shape[axis]
    src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    i0 = np.floor(src).astype(np.intp)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w = (src - i0).astype(np.float32).reshape([-1 if a == axis else 1 for a in range(x.ndim)])
    a = np.take(x, i0, axis=axis)
    return a + (np.take(x, i1, axis=axis) - a) * w


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 frames [N, H, W, 3] -> [N, h, w, 3]: the mean of whole fy x fx blocks where the frame
    shrinks by an integer factor or more, then linear interpolation to the exact size."""
    h, w = size
    n, hh, ww, c = frames.shape
    fy, fx = max(1, hh // h), max(1, ww // w)
    x = frames[:, : hh // fy * fy, : ww // fx * fx] if (fy > 1 or fx > 1) else frames
    if fy > 1 or fx > 1:
        sums = x.reshape(n, hh // fy, fy, ww // fx, fx, c).sum(axis=(2, 4), dtype=np.uint32)
        if (hh // fy, ww // fx) == (h, w):  # an exact factor: integer mean, rounded half up
            return ((sums + (fy * fx) // 2) // (fy * fx)).astype(np.uint8)
        x = sums.astype(np.float32) / (fy * fx)
    else:
        x = x.astype(np.float32)
    if x.shape[1] != h:
        x = _lerp_axis(x, h, 1)
    if x.shape[2] != w:
        x = _lerp_axis(x, w, 2)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------- audio
def audio_reader_name(spec: StreamSpec) -> str:
    return "pyav" if spec.path.suffix.lower() in CONTAINER_AUDIO_SUFFIXES else "soundfile"


def iter_audio(spec: StreamSpec, rec: str, chunk_s: float = 10.0) -> Iterator[tuple[float, np.ndarray, int]]:
    """Yield ``(time_s_of_first_sample, mono float32 samples, sample_rate)`` chunks in order.

    Containers are read with PyAV (timestamps from the stream, encoder priming removed by the
    decoder); wav/flac/ogg with soundfile. Times are on the stream's own clock.
    """
    if audio_reader_name(spec) == "pyav":
        yield from _iter_audio_pyav(spec, rec, chunk_s)
    else:
        yield from _iter_audio_soundfile(spec, rec, chunk_s)


def _iter_audio_soundfile(spec: StreamSpec, rec: str, chunk_s: float):
    import soundfile as sf

    try:
        f = sf.SoundFile(str(spec.path))
    except Exception as e:
        raise RecordingError(rec, spec.file, f"cannot open audio: {e}") from None
    with f:
        sr = f.samplerate
        block = max(1, int(chunk_s * sr))
        pos = 0
        while True:
            try:
                x = f.read(block, dtype="float32", always_2d=True)
            except Exception as e:
                raise RecordingError(rec, spec.file, f"audio decoding failed at {pos / sr:.2f} s: {e}") from None
            if len(x) == 0:
                break
            yield pos / sr, x.mean(axis=1), sr
            pos += len(x)
    if pos == 0:
        raise RecordingError(rec, spec.file, "audio has no samples")


def _frame_mono(frame) -> np.ndarray:
    """One decoded PyAV audio frame as mono float32 (the channels' mean; integers scaled by their
    maximum). A mono float frame (AAC, Opus, MP3 decode to ``fltp``) is read straight from its
    plane: ``to_ndarray`` stacks the planes, which costs more than decoding a 1024-sample frame."""
    nch = len(frame.layout.channels)
    if nch == 1 and frame.format.name in ("flt", "fltp"):
        return np.frombuffer(frame.planes[0], np.float32, count=frame.samples).copy()
    x = frame.to_ndarray()
    if x.dtype.kind == "i":
        x = x.astype(np.float32) / np.iinfo(x.dtype).max
    x = x.astype(np.float32, copy=False)
    if nch > 1:
        return x.reshape(nch, -1).mean(axis=0) if frame.format.is_planar else x.reshape(-1, nch).mean(axis=1)
    return x.reshape(-1)


def _iter_audio_pyav(spec: StreamSpec, rec: str, chunk_s: float = 10.0):
    import av

    try:
        container = av.open(str(spec.path))
    except Exception as e:
        raise RecordingError(rec, spec.file, f"cannot open container: {e}") from None
    with container:
        if not container.streams.audio:
            raise RecordingError(rec, spec.file, "container has no audio track",
                                 "point the audio stream at a file with audio, or drop it from meta.json")
        st = container.streams.audio[0]
        got = 0
        parts: list[np.ndarray] = []
        t_part = math.nan
        n_part = 0
        try:
            for frame in container.decode(st):
                x = _frame_mono(frame)
                if not parts:
                    t_part = float(frame.time) if frame.time is not None else math.nan
                    sr = int(frame.sample_rate)
                parts.append(x)
                n_part += len(x)
                got += len(x)
                if n_part >= chunk_s * sr:  # hand out ~10 s at a time: per-frame work is slow in Python
                    yield t_part, np.concatenate(parts), sr
                    parts, n_part = [], 0
            if parts:
                yield t_part, np.concatenate(parts), sr
        except av.error.FFmpegError as e:
            raise RecordingError(rec, spec.file, f"audio decoding failed after {got} samples: {e}",
                                 "the file is corrupt or truncated") from None
        if got == 0:
            raise RecordingError(rec, spec.file, "audio track has no samples")
