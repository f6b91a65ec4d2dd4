"""IMU streams: a CSV read whole (float32 channels), resampled onto the window grid at ``--imu-hz``
(anti-aliased polyphase) once the window span is known, so window indices are exact.

The shard also stores per-channel sums and moments of the stored samples (normalisation). The lag
envelopes follow the channels' roles (accelerometer, gyroscope: ``pipelines.ingest.sync.envelopes``);
a clock drift is corrected by scaling the timestamps (``apply_drift``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.core.timeutil import sample_index
from pipelines.ingest.config import PreprocessConfig
from pipelines.ingest.raw import Recording, StreamSpec
from pipelines.ingest.readers import ImuTable, read_imu_csv
from pipelines.ingest.resample import GAP_FACTOR, ResampleResult, measured_rate, resample_irregular
from pipelines.ingest.streams.base import Stream, gap_stats, rate_check
from pipelines.ingest.sync.envelopes import channel_roles, imu_envelopes
from pipelines.core.io import to_json


@dataclass
class ImuStream(Stream):
    """IMU samples at their own timestamps until ``resample`` puts them on the window grid
    (``n`` is 0 before)."""

    kind = "imu"
    ref_rank = 2

    imu: ImuTable | None = None  # as read: timestamps on the stream clock, float32 channels
    edge_s: float = 0.0  # span at each end where the anti-alias FIR would reach past the data
    resampled: ResampleResult | None = None  # on the window grid, after ``resample``

    @classmethod
    def read(cls, spec: StreamSpec, rec: Recording, cfg: PreprocessConfig, scratch_dir: Path) -> ImuStream:
        tab = read_imu_csv(spec, rec.id)
        gap_s = GAP_FACTOR / spec.declared_rate_hz if spec.declared_rate_hz else GAP_FACTOR * float(np.median(np.diff(tab.t)))
        rate_meas = measured_rate(tab.t, gap_s)
        nan_rows = int(np.isnan(tab.x).any(axis=1).sum())
        info = {"kind": "imu", "file": spec.file, "samples": int(len(tab.t)), "channels": tab.channels,
                **rate_check(spec.declared_rate_hz, rate_meas, cfg.rate_tol), **gap_stats(tab.t, gap_s),
                "nan_samples": nan_rows, "nonfinite_values": tab.nonfinite}
        k = max(1, int(round(rate_meas / cfg.imu_hz))) if math.isfinite(rate_meas) else 1
        envs, warn = imu_envelopes(tab.t, tab.x, tab.channels, spec.units, spec.roles)
        roles = channel_roles(tab.channels, spec.units, spec.roles)
        info["channel_roles"] = roles
        info["envelopes"] = [e.name for e in envs]
        info["envelope_warning"] = warn
        return cls(name=spec.name, file=spec.file, rate_hz=float(cfg.imu_hz), t0_s=float(tab.t[0]),
                   n=0, offset_s=spec.clock_offset_s, envelopes=envs, info=info,
                   imu=tab, edge_s=(10.0 / cfg.imu_hz if k > 1 else 0.0), clock=spec.clock)

    @classmethod
    def probe_end_s(cls, spec: StreamSpec, rec_id: str) -> float | None:
        tab = read_imu_csv(spec, rec_id)
        return float(tab.t[-1]) + spec.clock_offset_s

    @property
    def cover_rec_s(self) -> tuple[float, float]:
        """The span of the timestamps, less the filter's reach at each end, on the recording clock."""
        return (float(self.imu.t[0]) + self.edge_s + self.offset_s, float(self.imu.t[-1]) - self.edge_s + self.offset_s)

    def apply_drift(self, drift: float, t_ref_rec_s: float) -> bool:
        """Scale the timestamps: recording time ``u`` becomes ``u - drift * (u - t_ref_rec_s)``."""
        t = self.imu.t
        self.imu.t = t - drift * (t + self.offset_s - t_ref_rec_s)
        self.t0_s = float(self.imu.t[0])
        return True

    def resample(self, a: float, b: float, cfg: PreprocessConfig) -> None:
        """Resample onto the window grid (origin ``a``, through ``b``) so window indices are exact."""
        n_out = sample_index(b, a, cfg.imu_hz) + 1
        dec = self.info["declared_rate_hz"] or self.info["measured_rate_hz"]
        r = resample_irregular(self.imu.t, self.imu.x, cfg.imu_hz, a - self.offset_s, n_out, GAP_FACTOR / dec)
        self.resampled = r
        self.t0_s, self.n = a - self.offset_s, n_out
        self.info["resample_method"] = r.method

    def bad_samples(self) -> list[tuple[np.ndarray, str]]:
        r = self.resampled
        return [(r.outside, "coverage"), (r.gap, "gap"), (r.nan, "nan")]

    def write_runs(self, gs, rec: Recording, cfg: PreprocessConfig, runs: list[tuple[int, int]],
                   window_start: np.ndarray, i0: np.ndarray, t_win: int) -> None:
        """``data`` float32 [total, C], ``window_start``, and per-channel sum / sumsq / count /
        mean / std over every stored sample once."""
        data = np.concatenate([self.resampled.y[r0:r1] for r0, r1 in runs]).astype(np.float32)
        gs.create_dataset("data", data=data)
        gs.create_dataset("window_start", data=window_start)
        flat = data.astype(np.float64)  # every stored sample once
        ssum, ssq, cnt = flat.sum(0), (flat ** 2).sum(0), len(flat)
        mean = ssum / cnt
        std = np.sqrt(np.maximum(ssq / cnt - mean ** 2, 0))
        for name, val in (("sum", ssum), ("sumsq", ssq), ("count", np.int64(cnt)),
                          ("mean", mean.astype(np.float32)), ("std", std.astype(np.float32))):
            gs.create_dataset(name, data=val)
        units = {c: rec.streams[self.name].units.get(c, "") for c in self.imu.channels}
        gs.attrs.update(rate_hz=cfg.imu_hz, samples_per_window=t_win, channels=self.imu.channels,
                        units=to_json(units), unit="per channel: see units")
