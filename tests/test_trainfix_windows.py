"""The last window of a recording: kept when every sample of it exists, else counted under a reason."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from pipelines.ingest.preprocess import PreprocessConfig
from pipelines.ingest.recording import process_recording


def _imu_recording(root, rate_hz: float, last_t: float, nan_tail: int = 0, name: str = "r1"):
    """An IMU-only recording, whole-recording label, samples at 0, 1/rate, ..., ``last_t``."""
    rec = root / name
    rec.mkdir(parents=True)
    t = np.arange(int(round(last_t * rate_hz)) + 1) / rate_hz
    x = np.random.default_rng(0).normal(size=(len(t), 3))
    if nan_tail:
        x[-nan_tail:, 0] = np.nan
    lines = ["t,acc_x,acc_y,acc_z"] + [f"{ti:.6f},{a:.5f},{b:.5f},{c:.5f}" for ti, (a, b, c) in zip(t, x)]
    (rec / "imu.csv").write_text("\n".join(lines) + "\n")
    (rec / "meta.json").write_text(json.dumps({"subject": "s01", "label": "walk", "streams": {
        "imu": {"kind": "imu", "file": "imu.csv", "rate_hz": rate_hz}}}))
    return rec


def _starts(out, rid="r1"):
    with h5py.File(out / f"{rid}.h5") as h:
        return h["windows/start_s"][()], h["streams/imu/data"].shape


def test_a_45_98_s_recording_keeps_its_last_window(tmp_path):
    """50 Hz, samples 0 .. 45.98 s (2300): [44, 46) has all of its 100 samples, so it is kept."""
    rec = _imu_recording(tmp_path / "raw", 50.0, 45.98)
    info = process_recording(rec, tmp_path / "out", PreprocessConfig())
    starts, shape = _starts(tmp_path / "out")
    assert starts[-1] == pytest.approx(44.0) and len(starts) == 45 == info["windows_kept"]
    assert info["windows_total"] == info["windows_kept"] + sum(info["rejected"].values())
    # the stored samples of the last window are the CSV's last 100 rows (same rate: no filter)
    csv = np.loadtxt(rec / "imu.csv", delimiter=",", skiprows=1)
    with h5py.File(tmp_path / "out" / "r1.h5") as h:
        data = h["streams/imu/data"][()]
    assert np.allclose(data[-100:], csv[-100:, 1:], atol=1e-4)


def test_a_last_window_that_cannot_be_kept_is_counted(tmp_path):
    """The last sample is NaN: [44, 46) is rejected and counted as `nan`, not left out silently."""
    rec = _imu_recording(tmp_path / "raw", 50.0, 45.98, nan_tail=1)
    info = process_recording(rec, tmp_path / "out", PreprocessConfig())
    starts, _ = _starts(tmp_path / "out")
    assert starts[-1] == pytest.approx(43.0) and info["windows_kept"] == 44
    assert info["rejected"]["nan"] == 1 and info["windows_total"] == 45


@pytest.mark.parametrize("rate", [100.0, 25.0])
def test_every_window_of_the_grid_is_kept_or_counted(tmp_path, rate):
    """Decimated (100 -> 50 Hz, the anti-alias filter's reach trims each end) and upsampled (25 Hz)
    recordings: the windows lie where the samples are valid, and kept + rejected = total."""
    rec = _imu_recording(tmp_path / "raw", rate, 45.98 if rate == 100.0 else 45.96)
    info = process_recording(rec, tmp_path / "out", PreprocessConfig())
    starts, _ = _starts(tmp_path / "out")
    assert info["windows_total"] == info["windows_kept"] + sum(info["rejected"].values())
    a, b = info["span_s"]
    assert (starts >= a - 1e-9).all() and (starts + 2.0 <= b + 1e-9).all()
    if rate == 100.0:  # the filter reaches 10 output samples (0.2 s): valid output 0.2 .. 45.78 s
        assert starts[0] == pytest.approx(0.2) and starts[-1] == pytest.approx(43.2)
    else:  # samples to 45.96 s: [44, 46) would need an output sample at 45.98 s, past the data
        assert starts[-1] == pytest.approx(43.0)
