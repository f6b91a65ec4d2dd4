"""`dcat preprocess`: raw recordings -> one synchronized, windowed HDF5 shard per recording.

Per recording, with memory that does not grow with the recording's length:

A. read: the IMU CSV (whole, float32 channels) and the audio (decoded in ~10 s chunks, resampled
   with soxr to --audio-sr into a scratch file beside the output); the video is opened and put on
   the --fps grid by its timestamps, not decoded yet. Activity envelopes are collected on the way.
B. align: clock offsets from meta.json are applied. The lag of every stream behind the reference
   stream (the first video, else audio, else IMU) is estimated from the envelopes and reported
   after the video is decoded; with ``align="estimate"`` it must be known before windowing, so the
   video is decoded once into a scratch file first and the lag is applied (a grid origin moves).
C. window: windows inside the span all streams cover pass a quality gate (coverage, exact length,
   gaps, NaN, label purity; rejections counted by reason). Each stream's samples that kept windows
   cover are written once (video decoded forward in chunks straight into the shard, IMU resampled
   on the window grid, log-mel per run of windows) to ``.<id>.h5.tmp``, renamed to ``<id>.h5`` only
   when complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from pipelines import __version__
from pipelines.ingest.align import ENV_RATE_HZ, Envelope, estimate_lag, imu_envelope
from pipelines.core.errors import DcatError, RecordingError
from pipelines.ingest.features import MelSettings, logmel
from pipelines.ingest.raw import Recording, Segment, check_segments_inside, load_recording, read_segments
from pipelines.ingest.resample import GAP_FACTOR, measured_rate, resample_irregular, select_frames
from pipelines.core.timeutil import EPS_S, num_samples, sample_index, sample_indices

BLOCK_BYTES = 32 << 20  # windows are written in blocks of about this many bytes per stream
VIDEO_CHUNK = 256  # frames decoded per decoder call (about 10 MB at 112x112)
REJECT_REASONS = ("coverage", "length", "gap", "nan", "label_purity")


@dataclass
class PreprocessConfig:
    """Settings of one preprocessing run; stored in every shard (``args_json``)."""

    fps: float = 30.0
    imu_hz: float = 50.0
    audio_sr: int = 16000
    window_s: float = 2.0
    stride_s: float = 1.0
    video_size: tuple[int, int] = (112, 112)  # (height, width)
    n_mels: int = 64
    n_fft: int = 400
    hop_length: int = 160
    audio_waveform: bool = False
    streams: tuple[str, ...] | None = None  # stream names to keep; None: all in meta.json
    min_purity: float = 0.8
    align: str = "meta"  # "meta": apply meta.json offsets, estimate + report lag; "estimate": also apply the lag
    max_lag_s: float = 2.0
    lag_tol_s: float = 0.1  # |lag| above this (when reliable) flags the recording as out of sync
    rate_tol: float = 0.01  # relative difference declared vs measured rate that flags a rate check
    short_streams: str = "fail"  # "fail" | "crop": a stream that starts/ends > coverage_tol_s off the others
    coverage_tol_s: float = 2.0
    labels: str = "require"  # "require": labels.csv or meta "label"; "ignore": unlabelled windows (deployment)

    def __post_init__(self):
        if isinstance(self.video_size, int):
            self.video_size = (self.video_size, self.video_size)
        self.video_size = tuple(int(v) for v in self.video_size)
        if self.streams is not None:
            self.streams = tuple(self.streams)
        for name in ("fps", "imu_hz", "window_s", "stride_s"):
            if not getattr(self, name) > 0:
                raise DcatError(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        if self.audio_sr <= 0 or self.n_fft > num_samples(self.window_s, self.audio_sr):
            raise DcatError(f"--audio-sr {self.audio_sr} gives windows shorter than one FFT frame ({self.n_fft})")
        if self.align not in ("meta", "estimate"):
            raise DcatError(f"--align must be 'meta' or 'estimate', got '{self.align}'")
        if self.short_streams not in ("fail", "crop"):
            raise DcatError(f"--short-streams must be 'fail' or 'crop', got '{self.short_streams}'")
        if self.labels not in ("require", "ignore"):
            raise DcatError(f"--labels must be 'require' or 'ignore', got '{self.labels}'")
        if not 0.0 < self.min_purity <= 1.0:
            raise DcatError(f"--min-purity must be in (0, 1], got {self.min_purity}")

    def mel(self) -> MelSettings:
        return MelSettings(sample_rate_hz=self.audio_sr, n_fft=self.n_fft, hop_length=self.hop_length,
                           n_mels=self.n_mels)

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["video_size"] = list(self.video_size)
        d["streams"] = list(self.streams) if self.streams is not None else None
        return d


# ------------------------------------------------------------------------------ stage A: read
@dataclass
class Series:
    """A stream on a uniform grid: sample k at stream time ``t0_s + k / rate_hz``."""

    name: str
    kind: str
    file: str
    rate_hz: float
    t0_s: float
    n: int
    offset_s: float  # total offset applied: recording time = stream time + offset_s
    envelope: Envelope
    info: dict
    scratch: Path | None = None  # video: uint8 [n,H,W,3]; audio: float32 [n]
    frame_shape: tuple = ()
    dtype: str = "float32"
    valid: np.ndarray | None = None  # bool [n]: False in gaps (video)
    imu: object = None  # ImuTable for IMU streams (resampled in stage C on the window grid)
    frames: VideoFrames | None = None  # video: decoded on demand
    edge_s: float = 0.0  # IMU: span at each end where the anti-alias FIR would reach past the data

    @property
    def start_rec_s(self) -> float:
        """Recording time of sample 0 (the grid origin)."""
        return self.t0_s + self.offset_s

    @property
    def cover_rec_s(self) -> tuple[float, float]:
        """The span this stream covers on the recording clock."""
        if self.kind == "imu":
            return (float(self.imu.t[0]) + self.edge_s + self.offset_s, float(self.imu.t[-1]) - self.edge_s + self.offset_s)
        return self.start_rec_s, self.start_rec_s + self.n / self.rate_hz

    def read(self, i0: int, i1: int) -> np.ndarray:
        """Samples [i0, i1): from the scratch file (one contiguous read), or decoded on demand."""
        if self.scratch is None:
            return self.frames.span(i0, i1)
        item = int(np.prod(self.frame_shape, dtype=np.int64)) if self.frame_shape else 1
        dt = np.dtype(self.dtype)
        with open(self.scratch, "rb") as f:
            f.seek(i0 * item * dt.itemsize)
            a = np.fromfile(f, dtype=dt, count=(i1 - i0) * item)
        return a.reshape((i1 - i0,) + tuple(self.frame_shape))


def _rate_check(declared: float | None, measured: float, tol: float) -> dict:
    ok = True if declared is None or not math.isfinite(measured) else abs(measured / declared - 1) <= tol
    return {"declared_rate_hz": declared, "measured_rate_hz": measured, "rate_ok": bool(ok)}


def _gap_stats(t: np.ndarray, gap_s: float) -> dict:
    dt = np.diff(t)
    g = dt > gap_s
    return {"gaps": int(g.sum()), "gap_total_s": float((dt[g]).sum()), "max_gap_s": float(dt.max()) if len(dt) else 0.0}


class VideoFrames:
    """A video on the ``--fps`` grid, decoded forward on demand; the activity envelope is collected
    on the way (frame-difference energy between consecutive grid frames; NaN where not decoded).

    ``span(a, b)`` decodes grid frames ``[a, b)`` with one decoder call and returns them; spans
    must move forward (the shard stores every grid frame at most once, so nothing is decoded twice).
    """

    def __init__(self, src, idx: np.ndarray, shape: tuple[int, int, int], rec: str, file: str):
        self.src, self.idx, self.shape, self.rec, self.file = src, idx, shape, rec, file
        self.env = np.full(len(idx), np.nan)
        self.done = 0  # grid frames below this were returned already
        self._prev: tuple[int, np.ndarray] | None = None  # (grid index, small gray frame)

    def span(self, a: int, b: int) -> np.ndarray:
        if a < self.done:
            raise RuntimeError(f"VideoFrames.span went backwards ({a} < {self.done})")
        need = self.idx[a:b]
        uniq = np.unique(need)
        frames = self.src.get(uniq)
        if frames.shape[1:] != self.shape:
            raise RecordingError(self.rec, self.file, f"decoder returned frames of shape {frames.shape[1:]}")
        if len(uniq) != len(need):  # the grid is faster than the video: a frame is held
            frames = frames[np.searchsorted(uniq, need)]
        small = frames[:, ::8, ::8, 1].astype(np.int16)  # green channel, 1/64 of the pixels: enough for motion energy
        d = np.full(len(frames), np.nan)
        d[1:] = np.abs(np.diff(small, axis=0)).mean(axis=(1, 2))
        if self._prev is not None and self._prev[0] == a - 1:
            d[0] = np.abs(small[0] - self._prev[1]).mean()
        self.env[a:b] = d
        self._prev = (b - 1, small[-1])
        self.done = b
        return frames


def _read_video(spec, rec: Recording, cfg: PreprocessConfig) -> Series:
    """Open the video and put it on the ``--fps`` grid by timestamps (nothing decoded yet)."""
    from pipelines.ingest.readers import VideoSource

    src = VideoSource(spec, rec.id, cfg.video_size)
    ft = src.t
    rate_meas = measured_rate(ft)
    period = 1.0 / rate_meas
    end = float(ft[-1]) + period
    k = max(0, int(math.floor((end - ft[0]) * cfg.fps + EPS_S)))
    grid = ft[0] + np.arange(k) / cfg.fps
    idx, valid = select_frames(ft, grid, GAP_FACTOR * period)
    h, w = cfg.video_size
    frames = VideoFrames(src, idx, (h, w, 3), rec.id, spec.file)
    declared = spec.declared_rate_hz if spec.declared_rate_hz is not None else src.native_fps
    info = {"kind": "video", "file": spec.file, "frames": int(src.n), **_rate_check(declared, rate_meas, 0.01),
            **_gap_stats(ft, GAP_FACTOR * period),
            "declared_source": "meta.json" if spec.declared_rate_hz is not None else "container",
            "resample_method": (f"by timestamps: frame shown at each {cfg.fps:g} Hz grid time "
                                f"(last frame with pts <= t; source {rate_meas:.4g} fps)"
                                + ("; rate matches" if abs(rate_meas - cfg.fps) < 0.01 * cfg.fps else "")),
            "decoder": "decord"}
    return Series(name=spec.name, kind="video", file=spec.file, rate_hz=cfg.fps, t0_s=float(ft[0]), n=k,
                  # a frame difference measures motion between two grid frames: centre it half a period earlier
                  offset_s=spec.clock_offset_s, envelope=Envelope(float(ft[0]) - 0.5 / cfg.fps, cfg.fps, frames.env), info=info,
                  frame_shape=(h, w, 3), dtype="uint8", valid=valid, frames=frames)


def _video_to_scratch(s: Series, scratch_dir: Path) -> None:
    """Decode the whole video once into a scratch file (needed when the lag must be known before windowing)."""
    s.scratch = scratch_dir / f"{s.name}.u8"
    with open(s.scratch, "wb") as f:
        for a in range(0, s.n, VIDEO_CHUNK):
            s.frames.span(a, min(s.n, a + VIDEO_CHUNK)).tofile(f)


def _read_audio(spec, rec: Recording, cfg: PreprocessConfig, scratch_dir: Path) -> Series:
    import soxr

    from pipelines.ingest.readers import audio_reader_name, iter_audio

    path = scratch_dir / f"{spec.name}.f32"
    hop = int(round(cfg.audio_sr / ENV_RATE_HZ))
    env_parts: list[np.ndarray] = []
    carry = np.zeros(0, np.float32)
    rs = None
    t0 = None
    sr_in = None
    n = 0
    n_in = 0
    with open(path, "wb") as f:
        def emit(y: np.ndarray):
            nonlocal n, carry
            y = np.asarray(y, dtype=np.float32)
            y.tofile(f)
            n += len(y)
            buf = np.concatenate([carry, y])
            m = len(buf) // hop
            if m:
                env_parts.append(np.sqrt((buf[: m * hop].reshape(m, hop).astype(np.float64) ** 2).mean(axis=1)))
            carry = buf[m * hop:]

        for t, x, sr in iter_audio(spec, rec.id):
            if t0 is None:
                t0, sr_in = (t if math.isfinite(t) else 0.0), sr
                rs = None if sr == cfg.audio_sr else soxr.ResampleStream(sr, cfg.audio_sr, 1, dtype="float32", quality="HQ")
            elif sr != sr_in:
                raise RecordingError(rec.id, spec.file, f"sample rate changes mid-stream ({sr_in} -> {sr} Hz)")
            n_in += len(x)
            emit(rs.resample_chunk(x) if rs is not None else x)
        if rs is not None:
            emit(rs.resample_chunk(np.zeros(0, np.float32), last=True))
    env = np.concatenate(env_parts) if env_parts else np.zeros(0)
    info = {"kind": "audio", "file": spec.file, **_rate_check(spec.declared_rate_hz, float(sr_in), cfg.rate_tol),
            "samples": int(n_in), "reader": audio_reader_name(spec),
            "resample_method": ("none: rate matches" if sr_in == cfg.audio_sr else
                                f"soxr HQ streaming resampler {sr_in} -> {cfg.audio_sr} Hz (anti-aliased)")}
    return Series(name=spec.name, kind="audio", file=spec.file, rate_hz=float(cfg.audio_sr), t0_s=float(t0), n=n,
                  offset_s=spec.clock_offset_s, envelope=Envelope(float(t0) + 0.5 * hop / cfg.audio_sr, ENV_RATE_HZ, env), info=info,
                  scratch=path, dtype="float32")


def _read_imu(spec, rec: Recording, cfg: PreprocessConfig) -> Series:
    from pipelines.ingest.readers import read_imu_csv

    tab = read_imu_csv(spec, rec.id)
    gap_s = GAP_FACTOR / spec.declared_rate_hz if spec.declared_rate_hz else GAP_FACTOR * float(np.median(np.diff(tab.t)))
    rate_meas = measured_rate(tab.t, gap_s)
    nan_rows = int(np.isnan(tab.x).any(axis=1).sum())
    info = {"kind": "imu", "file": spec.file, "samples": int(len(tab.t)), "channels": tab.channels,
            **_rate_check(spec.declared_rate_hz, rate_meas, cfg.rate_tol), **_gap_stats(tab.t, gap_s),
            "nan_samples": nan_rows}
    k = max(1, int(round(rate_meas / cfg.imu_hz))) if math.isfinite(rate_meas) else 1
    return Series(name=spec.name, kind="imu", file=spec.file, rate_hz=float(cfg.imu_hz), t0_s=float(tab.t[0]),
                  n=0, offset_s=spec.clock_offset_s, envelope=imu_envelope(tab.t, tab.x, tab.channels), info=info,
                  imu=tab, edge_s=(10.0 / cfg.imu_hz if k > 1 else 0.0))


# ------------------------------------------------------------------------------ stage C: windows
def _label_windows(starts: np.ndarray, w: float, rec: Recording, segs: list[Segment]):
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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def shard_path(out_dir: Path, rid: str) -> Path:
    return Path(out_dir) / f"{rid}.h5"


def _tmp_path(out_dir: Path, rid: str) -> Path:
    return Path(out_dir) / f".{rid}.h5.tmp"


def _estimate_lags(series: list[Series], ref: Series, cfg: PreprocessConfig, apply: bool, warnings: list[str]) -> None:
    """Estimate every stream's lag behind ``ref``; record it in the stream's info; apply it if asked."""
    ref.info.update(lag_s=0.0, lag_corr=1.0, lag_reliable=True, lag_applied_s=0.0, in_sync_ok=True)
    for s in series:
        if s is ref:
            continue
        est = estimate_lag(ref.envelope, ref.offset_s, s.envelope, s.offset_s, cfg.max_lag_s)
        applied = 0.0
        if apply:
            if est["reliable"]:
                applied = -est["lag_s"]
                s.offset_s += applied
            else:
                warnings.append(f"{s.file}: lag estimate unreliable (peak correlation {est['corr']:.2f}); "
                                "not applied, meta.json offset kept")
        residual = abs(est["lag_s"] + applied)
        # in_sync_ok: True / False when the estimate is reliable, None when it cannot tell
        in_sync = (residual <= cfg.lag_tol_s) if est["reliable"] else (True if residual <= cfg.lag_tol_s else None)
        s.info.update(lag_s=est["lag_s"], lag_corr=est["corr"], lag_second_corr=est.get("second_corr"),
                      lag_reliable=est["reliable"], lag_applied_s=applied, in_sync_ok=in_sync)
        if abs(est["lag_s"]) > cfg.lag_tol_s and math.isfinite(est["lag_s"]):
            msg = (f"{s.file}: events lag {ref.file} ({ref.name}) by {est['lag_s']:+.3f} s "
                   f"(correlation {est['corr']:.2f}")
            if not est["reliable"]:
                msg += f", uncertain: another peak reaches {est.get('second_corr', float('nan')):.2f})"
            else:
                msg += ")"
            msg += "; applied (--align estimate)" if applied else "; check clock_offset_s or use --align estimate"
            warnings.append(msg)


def _check_coverage(rec: Recording, series: list[Series], cfg: PreprocessConfig, warnings: list[str]):
    """Spans on the recording clock; a stream that starts late / ends early beyond tolerance fails or is cropped."""
    starts = {s.name: s.cover_rec_s[0] for s in series}
    ends = {s.name: s.cover_rec_s[1] for s in series}
    u0, u1 = min(starts.values()), max(ends.values())
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
    if b - a < cfg.window_s - EPS_S:
        raise RecordingError(rec.id, None, f"the streams overlap for {max(0.0, b - a):.2f} s, less than one "
                             f"{cfg.window_s:g} s window (spans: "
                             + ", ".join(f"{k} {starts[k]:.2f}-{ends[k]:.2f}" for k in starts) + ")")
    return u0, u1, a, b


def process_recording(rec_dir: Path, out_dir: Path, cfg: PreprocessConfig) -> dict:
    """Preprocess one recording into ``out_dir/<id>.h5``. Raises RecordingError on bad input.

    Returns the recording's info record (also stored in the shard as ``checks_json``).
    """
    import h5py

    from pipelines.shards.format import SHARD_TYPE, STREAM_TYPE, WINDOWS_TYPE, set_encoding

    t_start = time.perf_counter()
    rec = load_recording(rec_dir, need_labels=cfg.labels == "require")
    if cfg.labels == "ignore":
        rec.label, rec.labels_file = "", None  # windows carry the empty label; no purity gate
    segs = read_segments(rec)
    specs = list(rec.streams.values())
    if cfg.streams is not None:
        missing = [s for s in cfg.streams if s not in rec.streams]
        if missing:
            raise RecordingError(rec.id, "meta.json", f"has no stream(s) {missing} (--streams); it has {list(rec.streams)}")
        specs = [rec.streams[s] for s in cfg.streams]
    out_dir = Path(out_dir)
    scratch_dir = out_dir / f".scratch-{rec.id}-{os.getpid()}"
    tmp = _tmp_path(out_dir, rec.id)
    scratch_dir.mkdir(parents=True, exist_ok=True)
    try:
        timing: dict[str, float] = {}
        tick = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal tick
            now = time.perf_counter()
            timing[name] = timing.get(name, 0.0) + now - tick
            tick = now

        # ---- A: read every stream once (video: opened, timestamps read; decoded later, on demand)
        series: list[Series] = []
        for spec in specs:
            if spec.kind == "video":
                series.append(_read_video(spec, rec, cfg))
            elif spec.kind == "audio":
                series.append(_read_audio(spec, rec, cfg, scratch_dir))
            else:
                series.append(_read_imu(spec, rec, cfg))
        warnings: list[str] = []
        for s in series:
            s.info["clock_offset_s"] = s.offset_s
            if not s.info["rate_ok"]:
                warnings.append(f"{s.file}: declared {s.info['declared_rate_hz']:g} Hz but timestamps give "
                                f"{s.info['measured_rate_hz']:.4g} Hz (resampled by timestamps)")
        lap("read_s")
        # ---- B: align. The lag is always estimated and reported; with --align estimate it is applied,
        # which needs the video's envelope before windowing: decode it once into a scratch file.
        order = {"video": 0, "audio": 1, "imu": 2}
        ref = min(series, key=lambda s: order[s.kind])
        if cfg.align == "estimate":
            for s in series:
                if s.kind == "video":
                    _video_to_scratch(s, scratch_dir)
            _estimate_lags(series, ref, cfg, True, warnings)
        u0, u1, a, b = _check_coverage(rec, series, cfg, warnings)
        if cfg.streams is None:  # with a subset of streams the recording may extend beyond them
            check_segments_inside(rec, segs, u1)
        # ---- C: window grid (origin: the start of the common span), quality gate
        w, st = cfg.window_s, cfg.stride_s
        j_lo = -int(math.floor((a - u0) / st + EPS_S))
        j_hi = int(math.floor((u1 - w - a) / st + EPS_S))
        cand = a + np.arange(j_lo, j_hi + 1) * st
        rejected = {r: 0 for r in REJECT_REASONS}
        inside = (cand >= a - EPS_S) & (cand + w <= b + EPS_S)
        rejected["coverage"] = int((~inside).sum())
        cand = cand[inside]
        ok = np.ones(len(cand), bool)
        reason_of = np.full(len(cand), "", dtype=object)

        def reject(mask, reason):
            nonlocal ok
            reason_of[mask & ok] = reason
            ok &= ~mask

        imu_res = {}
        first_idx: dict[str, np.ndarray] = {}
        per_win: dict[str, int] = {}
        for s in series:
            if s.kind == "imu":  # resample on the window grid (origin a) so window indices are exact
                n_out = sample_index(b, a, cfg.imu_hz) + 1
                dec = s.info["declared_rate_hz"] or s.info["measured_rate_hz"]
                r = resample_irregular(s.imu.t, s.imu.x, cfg.imu_hz, a - s.offset_s, n_out, GAP_FACTOR / dec)
                imu_res[s.name] = r
                s.t0_s, s.n = a - s.offset_s, n_out
                s.info["resample_method"] = r.method
            t_win = num_samples(w, s.rate_hz)
            i0 = sample_indices(cand, s.start_rec_s, s.rate_hz)
            first_idx[s.name], per_win[s.name] = i0, t_win
            reject((i0 < 0) | (i0 + t_win > s.n), "length")
            i0c = np.clip(i0, 0, max(0, s.n - t_win))
            masks = []
            if s.kind == "video":
                masks = [(~s.valid, "gap")]
            elif s.kind == "imu":
                r = imu_res[s.name]
                masks = [(r.outside, "coverage"), (r.gap, "gap"), (r.nan, "nan")]
            for mask, reason in masks:
                cs = np.concatenate([[0], np.cumsum(mask)])
                reject((cs[i0c + t_win] - cs[i0c]) > 0, reason)
        labels, purity = _label_windows(cand, w, rec, segs)
        if cfg.labels == "require":
            reject(purity < cfg.min_purity - 1e-6, "label_purity")
        for r in REJECT_REASONS:
            rejected[r] += int((reason_of == r).sum())
        keep = np.flatnonzero(ok)
        n_win = len(keep)
        if n_win == 0:
            raise RecordingError(rec.id, None, "no window passed the quality gate (rejected: "
                                 + ", ".join(f"{k}={v}" for k, v in rejected.items() if v) + ")",
                                 "check labels.csv, --min-purity and the stream spans")
        lap("align_gate_s")
        # ---- write the shard under a temporary name
        mel = cfg.mel()
        if tmp.exists():
            tmp.unlink()
        with h5py.File(tmp, "w") as h:
            set_encoding(h, SHARD_TYPE)
            h.attrs.update({
                "recording_id": rec.id, "subject": rec.subject, "session": rec.session, "n_windows": n_win,
                "window_s": w, "stride_s": st, "tool_version": __version__,
                "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "args_json": json.dumps(cfg.as_dict()), "meta_json": json.dumps(rec.meta),
            })
            g = h.create_group("windows")
            set_encoding(g, WINDOWS_TYPE)
            g.create_dataset("start_s", data=cand[keep].astype(np.float64))
            g.create_dataset("end_s", data=(cand[keep] + w).astype(np.float64))
            g.create_dataset("label", data=np.array(list(labels[keep]), dtype=object), dtype=h5py.string_dtype())
            g.create_dataset("label_purity", data=purity[keep])
            sg = h.create_group("streams")
            for s in series:
                gs = sg.create_group(s.name)
                set_encoding(gs, STREAM_TYPE)
                _write_stream(gs, s, rec, cfg, mel, first_idx[s.name][keep], per_win[s.name], imu_res.get(s.name))
                lap(f"write_{s.name}_s")
            # the lag is reported for every recording; in meta mode the video envelope is complete only now
            if cfg.align != "estimate":
                _estimate_lags(series, ref, cfg, False, warnings)
                lap("lag_s")
            for s in series:
                sg[s.name].attrs["lag_applied_s"] = s.info["lag_applied_s"]
            sources = []
            files = {s.file for s in series} | ({rec.labels_file} if rec.labels_file else set()) | {"meta.json"}
            for f in sorted(files):
                p = rec.dir / f
                sources.append({"file": f, "size_bytes": p.stat().st_size, "sha256": _sha256(p),
                                "streams": [s.name for s in series if s.file == f]})
            lag_vals = [abs(s.info["lag_s"]) for s in series if s is not ref and s.info.get("lag_reliable")]
            info = {
                "recording": rec.id, "subject": rec.subject, "reference_stream": ref.name,
                "streams": {s.name: s.info for s in series},
                "span_s": [a, b], "windows_total": int(len(cand) + rejected["coverage"]), "windows_kept": n_win,
                "rejected": rejected, "max_abs_lag_ms": 1000 * max(lag_vals) if lag_vals else 0.0,
                "sync_ok": (False if any(s.info.get("in_sync_ok") is False for s in series) else
                            None if any(s.info.get("in_sync_ok") is None for s in series) else True),
                "rate_ok": all(s.info["rate_ok"] for s in series), "warnings": warnings,
            }
            lap("hash_s")
            info["timing_s"] = {k: round(v, 4) for k, v in timing.items()}
            h.attrs["sources_json"] = json.dumps(sources)
            h.attrs["checks_json"] = json.dumps(info, default=float)
        os.replace(tmp, shard_path(out_dir, rec.id))
        info["seconds"] = time.perf_counter() - t_start
        return info
    finally:
        shutil.rmtree(scratch_dir, ignore_errors=True)
        if tmp.exists():
            tmp.unlink()


def _write_stream(gs, s: Series, rec: Recording, cfg: PreprocessConfig, mel: MelSettings, i0: np.ndarray,
                  t_win: int, imu_r) -> None:
    """Write one stream: the samples its kept windows cover, each once, plus ``window_start``.

    Overlapping windows share samples (stride < window), so nothing is stored twice; a block of
    consecutive windows is one contiguous slice (schemas/shard.md). Written in blocks of about
    BLOCK_BYTES, so memory does not grow with the recording.
    """
    from pipelines.shards.format import pack_windows

    gs.attrs.update({"kind": s.kind, "declared_rate_hz": float(s.info["declared_rate_hz"] or np.nan),
                     "measured_rate_hz": float(s.info["measured_rate_hz"]), "clock_offset_s": s.info["clock_offset_s"],
                     "resample_method": s.info["resample_method"]})
    runs, ws = pack_windows(i0, t_win)
    total = int(sum(r1 - r0 for r0, r1 in runs))
    if s.kind == "imu":
        data = np.concatenate([imu_r.y[r0:r1] for r0, r1 in runs]).astype(np.float32)
        gs.create_dataset("data", data=data)
        gs.create_dataset("window_start", data=ws)
        flat = data.astype(np.float64)  # every stored sample once
        ssum, ssq, cnt = flat.sum(0), (flat ** 2).sum(0), len(flat)
        mean = ssum / cnt
        std = np.sqrt(np.maximum(ssq / cnt - mean ** 2, 0))
        for name, val in (("sum", ssum), ("sumsq", ssq), ("count", np.int64(cnt)),
                          ("mean", mean.astype(np.float32)), ("std", std.astype(np.float32))):
            gs.create_dataset(name, data=val)
        units = {c: rec.streams[s.name].units.get(c, "") for c in s.imu.channels}
        gs.attrs.update(rate_hz=cfg.imu_hz, samples_per_window=t_win, channels=s.imu.channels,
                        units=json.dumps(units), unit="per channel: see units")
        return
    if s.kind == "video":
        h_, w_ = cfg.video_size
        ds = gs.create_dataset("frames", shape=(total,) + (h_, w_, 3), dtype=np.uint8)
        gs.create_dataset("window_start", data=ws)
        gs.attrs.update(rate_hz=cfg.fps, samples_per_window=t_win, unit="uint8 RGB", height=h_, width=w_)
        step = VIDEO_CHUNK
        pos = 0
        for r0, r1 in runs:
            for c0 in range(r0, r1, step):
                c1 = min(r1, c0 + step)
                ds[pos:pos + c1 - c0] = s.read(c0, c1)
                pos += c1 - c0
        return
    # audio: log-mel frames of each run (frame f covers samples [f*hop, f*hop + n_fft) of the run)
    hop, nfft = mel.hop_length, mel.n_fft
    t_frames = mel.n_frames(t_win)
    run_frames = [1 + (r1 - r0 - nfft) // hop for r0, r1 in runs]
    ds = gs.create_dataset("logmel", shape=(int(sum(run_frames)), mel.n_mels), dtype=np.float32)
    wav = gs.create_dataset("waveform", shape=(total,), dtype=np.float32) if cfg.audio_waveform else None
    fstart = np.empty(len(i0), np.int64)
    fpos, spos = 0, 0
    chunk = max(1, BLOCK_BYTES // (hop * 4 * 4))  # frames per log-mel call
    for (r0, r1), nf in zip(runs, run_frames):
        sel = (i0 >= r0) & (i0 < r1)
        # windows start on the hop grid of their run when stride * sr is a multiple of hop (10 ms at
        # the defaults); otherwise the nearest frame (under half a hop away)
        fstart[sel] = fpos + np.minimum(np.round((i0[sel] - r0) / hop).astype(np.int64), nf - t_frames)
        for f0 in range(0, nf, chunk):
            f1 = min(nf, f0 + chunk)
            x = s.read(r0 + f0 * hop, r0 + (f1 - 1) * hop + nfft)
            ds[fpos + f0:fpos + f1] = logmel(x[None, :], mel)[0]
        if wav is not None:
            for c0 in range(r0, r1, chunk * hop):
                c1 = min(r1, c0 + chunk * hop)
                wav[spos + c0 - r0:spos + c1 - r0] = s.read(c0, c1)
        fpos += nf
        spos += r1 - r0
    gs.create_dataset("window_start", data=fstart)
    if wav is not None:
        gs.create_dataset("waveform_window_start", data=ws)
    gs.attrs.update(rate_hz=cfg.audio_sr / hop, samples_per_window=t_frames,
                    unit="log(mel power + 1e-6)", sample_rate_hz=cfg.audio_sr, n_fft=nfft,
                    hop_length=hop, n_mels=mel.n_mels, fmin_hz=mel.fmin_hz,
                    fmax_hz=cfg.audio_sr / 2, waveform_samples_per_window=t_win)


# ------------------------------------------------------------------------------ the run
def _run_one(rec_dir: str, out_dir: str, cfg: PreprocessConfig, overwrite: bool) -> dict:
    """Worker entry: never raises; returns a result record with status ok / skipped / failed."""
    rid = Path(rec_dir).name
    t0 = time.perf_counter()
    try:
        final = shard_path(Path(out_dir), rid)
        if final.exists() and not overwrite:
            prev = existing_shard_info(final)
            if prev["args"] != cfg.as_dict():
                raise RecordingError(rid, str(final), "a shard made with different settings exists",
                                     "use --overwrite to replace it, or another --out")
            return {"recording": rid, "status": "skipped", "info": prev["checks"], "seconds": time.perf_counter() - t0}
        info = process_recording(Path(rec_dir), Path(out_dir), cfg)
        return {"recording": rid, "status": "ok", "info": info, "seconds": time.perf_counter() - t0}
    except RecordingError as e:
        return {"recording": rid, "status": "failed", "error": e.as_dict(), "message": str(e),
                "seconds": time.perf_counter() - t0}
    except DcatError as e:
        return {"recording": rid, "status": "failed", "error": {"recording": rid, "file": None, "problem": str(e)},
                "message": f"{rid}: {e}", "seconds": time.perf_counter() - t0}
    except Exception as e:  # a bug, or a library failing in a way we did not foresee: keep going
        tb = traceback.format_exc(limit=3)
        return {"recording": rid, "status": "failed",
                "error": {"recording": rid, "file": None, "problem": f"internal error {type(e).__name__}: {e}", "traceback": tb},
                "message": f"{rid}: internal error {type(e).__name__}: {e}", "seconds": time.perf_counter() - t0}


def existing_shard_info(path: Path) -> dict:
    import h5py

    with h5py.File(path, "r") as h:
        return {"args": json.loads(h.attrs["args_json"]), "checks": json.loads(h.attrs["checks_json"])}


def summarize(results: list[dict]) -> dict:
    rej = {r: 0 for r in REJECT_REASONS}
    kept = 0
    worst = None
    for r in results:
        info = r.get("info")
        if not info:
            continue
        kept += info["windows_kept"]
        for k, v in info["rejected"].items():
            rej[k] = rej.get(k, 0) + v
        for name, s in info["streams"].items():
            if name == info["reference_stream"] or not s.get("lag_reliable"):
                continue
            if worst is None or abs(s["lag_s"]) > abs(worst["lag_s"]):
                worst = {"recording": r["recording"], "stream": name, "lag_s": s["lag_s"], "corr": s["lag_corr"]}
    count = lambda st: sum(1 for r in results if r["status"] == st)  # noqa: E731
    return {"recordings": len(results), "ok": count("ok"), "skipped": count("skipped"), "failed": count("failed"),
            "windows_kept": kept, "windows_dropped": rej, "worst_lag": worst,
            "out_of_sync": sorted(r["recording"] for r in results if r.get("info") and r["info"].get("sync_ok") is False),
            "sync_uncertain": sorted(r["recording"] for r in results if r.get("info") and r["info"].get("sync_ok") is None),
            "warnings": [f"{r['recording']}: {w}" for r in results if r.get("info") for w in r["info"].get("warnings", [])],
            "errors": [r["message"] for r in results if r["status"] == "failed"]}


def preprocess(recordings: list[Path], out_dir: Path, cfg: PreprocessConfig, *, overwrite: bool = False,
               workers: int = 1, fail_fast: bool = False, shard_index: int = 0, num_shards: int = 1,
               argv: list[str] | None = None,
               progress: Callable[[dict], None] | None = None) -> dict:
    """Preprocess recording folders (already discovered and selected) into ``out_dir``.

    Returns ``{"summary", "results", "manifest"}``. Recordings fail independently; ``fail_fast`` stops
    at the first failure (recordings not started are reported as not run).
    """
    from pipelines.shards.manifest import write_manifest
    from pipelines.core.io import atomic_write_text
    from pipelines.shards.format import INFO_NAME

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: list[dict] = []
    t0 = time.perf_counter()

    def done(r):
        results.append(r)
        if progress:
            progress(r)

    if workers <= 1:
        for p in recordings:
            done(_run_one(str(p), str(out_dir), cfg, overwrite))
            if fail_fast and results[-1]["status"] == "failed":
                break
    else:
        import multiprocessing as mp
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
            pending = {ex.submit(_run_one, str(p), str(out_dir), cfg, overwrite) for p in recordings}
            stop = False
            while pending and not stop:
                fin, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in fin:
                    done(f.result())
                    if fail_fast and results[-1]["status"] == "failed":
                        stop = True
            if stop:
                for f in pending:
                    f.cancel()
                for f in pending:
                    if not f.cancelled():
                        done(f.result())
    ran = {r["recording"] for r in results}
    for p in recordings:
        if p.name not in ran:
            results.append({"recording": p.name, "status": "not_run", "seconds": 0.0})
    results.sort(key=lambda r: r["recording"])
    summary = summarize(results)
    summary["not_run"] = sum(1 for r in results if r["status"] == "not_run")
    summary["seconds"] = time.perf_counter() - t0
    manifest = None
    try:
        manifest = write_manifest(out_dir)
    except DcatError as e:
        summary["errors"].append(f"manifest: {e}")
        summary["manifest_error"] = str(e)
    record = {"tool_version": __version__, "argv": argv, "config": cfg.as_dict(),
              "shard_index": shard_index, "num_shards": num_shards,
              "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "summary": summary,
              "recordings": [{k: v for k, v in r.items() if k != "info"} | ({"checks": r["info"]} if r.get("info") else {})
                             for r in results]}
    name = INFO_NAME if num_shards == 1 else INFO_NAME.replace(".json", f".{shard_index}-of-{num_shards}.json")
    atomic_write_text(out_dir / name, json.dumps(record, indent=1, default=float))
    return {"summary": summary, "results": results, "manifest": manifest}
