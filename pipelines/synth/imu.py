"""The wrist IMU stream (``imu.csv``): the ideal latent signals sampled on the sensor's own clock
(rate drift, start/end, clock offset, timestamp jitter) with per-channel gain, the subject's bias and
noise, and dropouts (rows removed)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pipelines.synth.motion import _Latent
from pipelines.synth.plan import RecordingPlan, SynthConfig, _r

IMU_CHANNELS: list[str] = ["acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z"]
IMU_UNITS: dict[str, str] = {c: ("m/s^2" if c.startswith("acc") else "rad/s") for c in IMU_CHANNELS}


def _imu_table(plan: RecordingPlan, lat: _Latent, cfg: SynthConfig, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Rows (t on the IMU clock, 6 channels) and the facts about them."""
    subj = plan.subject
    rate = cfg.imu_hz * (1.0 + plan.imu_rate_drift)
    n = int(math.floor((plan.imu_end_s - plan.imu_start_s) * rate)) + 1
    tau = plan.imu_start_s + np.arange(n) / rate  # true sampling times, recording clock
    vals = np.empty((n, 6))
    for c in range(6):
        vals[:, c] = np.interp(tau, lat.t, lat.imu[:, c])
    gain = 1.0 + rng.normal(0.0, 0.01, 6)
    bias = np.concatenate([subj.acc_bias_ms2, subj.gyr_bias_rads])
    noise = np.concatenate([np.full(3, subj.acc_noise_ms2), np.full(3, subj.gyr_noise_rads)])
    vals = vals * gain + bias + rng.normal(size=(n, 6)) * noise
    jitter = np.clip(rng.normal(0.0, 0.0005, n), -0.0015, 0.0015)
    s = tau - plan.imu_true_offset_s + jitter
    keep = np.ones(n, dtype=bool)
    drops = []
    for a, b in plan.imu_dropouts:
        m = (tau >= a) & (tau < b)
        keep &= ~m
        drops.append({"start_s": a, "end_s": b, "stream_start_s": _r(a - plan.imu_true_offset_s),
                      "stream_end_s": _r(b - plan.imu_true_offset_s), "rows_removed": int(m.sum())})
    s_round = np.round(s[keep], 4)
    assert np.all(np.diff(s_round) > 0), "IMU timestamps must be strictly increasing"
    table = np.column_stack([s_round, vals[keep]])
    facts = {"rows": int(keep.sum()), "actual_rate_hz": _r(rate, 6), "rate_drift": plan.imu_rate_drift,
             "timestamp_jitter_sd_s": 0.0005, "dropouts": drops,
             "start_s": plan.imu_start_s, "end_s": _r(tau[-1], 6),
             "stream_start_s": float(s_round[0]), "stream_end_s": float(s_round[-1])}
    return table, facts


def _write_imu_csv(path: Path, table: np.ndarray) -> None:
    np.savetxt(path, table, fmt=["%.4f"] + ["%.4f"] * 6, delimiter=",",
               header="t," + ",".join(IMU_CHANNELS), comments="")
