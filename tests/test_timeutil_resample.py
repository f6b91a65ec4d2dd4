"""Sample counts, IMU resampling (frequencies, lengths, anti-aliasing, gaps) and video frame selection."""

import numpy as np
import pytest

from pipelines.ingest.resample import measured_rate, resample_irregular, select_frames
from pipelines.core.timeutil import num_samples, sample_index


def dominant_hz(y: np.ndarray, rate: float) -> float:
    y = np.asarray(y, dtype=np.float64) - np.mean(y)
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.fft.rfftfreq(len(y), 1 / rate)[np.argmax(spec)])


@pytest.mark.parametrize("dur,rate,n", [(2.0, 30, 60), (2.0, 50, 100), (0.1, 16000, 1600), (2.0, 29.97, 60),
                                        (1.0 / 3, 30, 10), (0.0, 50, 0), (0.01, 50, 1)])
def test_num_samples_rounding(dur, rate, n):
    assert num_samples(dur, rate) == n


def test_sample_index_half_up_and_float_noise():
    assert sample_index(1.0, 0.0, 50) == 50
    assert sample_index(0.1 * 3, 0.0, 10) == 3  # 0.30000000000000004 * 10
    assert sample_index(0.01, 0.0, 50) == 1  # 0.5 rounds up
    assert sample_index(-0.02, 0.0, 50) == -1


def test_5hz_sine_200_to_50_hz_stays_5hz_with_right_length_and_values():
    # known input: a 5 Hz sine sampled at 200 Hz for 10 s
    t = np.arange(0, 10, 1 / 200)
    x = np.sin(2 * np.pi * 5 * t)
    r = resample_irregular(t, x, 50.0, 1.0, 400, gap_s=2.5 / 200)  # 8 s from t=1 s
    y = r.y[:, 0]
    assert y.shape == (400,)
    assert "decimation by 4" in r.method and "resample_poly" in r.method
    assert not np.isnan(y).any() and not r.gap.any() and not r.outside.any()
    assert dominant_hz(y, 50.0) == pytest.approx(5.0, abs=0.13)
    expect = np.sin(2 * np.pi * 5 * (1.0 + np.arange(400) / 50))
    assert np.max(np.abs(y - expect)) < 1e-3  # the right values at the right times (no delay)


def test_anti_aliasing_removes_content_above_new_nyquist():
    # a 40 Hz sine at 200 Hz would alias to 10 Hz at 50 Hz without a low-pass filter
    t = np.arange(0, 10, 1 / 200)
    r = resample_irregular(t, np.sin(2 * np.pi * 40 * t), 50.0, 1.0, 400, gap_s=2.5 / 200)
    assert np.nanmax(np.abs(r.y)) < 0.01


def test_jittered_drifting_timestamps_resample_by_time():
    rng = np.random.default_rng(0)
    t = np.cumsum(np.full(2000, 1 / 100.3)) + rng.normal(0, 5e-4, 2000)  # 100.3 Hz with 0.5 ms jitter
    t.sort()
    x = np.sin(2 * np.pi * 3 * t)
    assert measured_rate(t) == pytest.approx(100.3, rel=2e-3)
    r = resample_irregular(t, x, 50.0, 2.0, 500, gap_s=2.5 / 100)
    expect = np.sin(2 * np.pi * 3 * (2.0 + np.arange(500) / 50))
    assert np.nanmax(np.abs(r.y[:, 0] - expect)) < 0.02


def test_upsampling_25_to_50_hz_is_interpolation():
    t = np.arange(0, 8, 1 / 25)
    r = resample_irregular(t, np.sin(2 * np.pi * 2 * t), 50.0, 0.0, 390, gap_s=2.5 / 25)
    assert "no decimation" in r.method
    assert dominant_hz(r.y[:, 0], 50.0) == pytest.approx(2.0, abs=0.15)


def test_gaps_stay_gaps_and_nan_is_flagged_separately():
    t = np.arange(0, 10, 1 / 100)
    x = np.sin(2 * np.pi * 1 * t)[:, None].repeat(2, 1)
    keep = (t < 3.0) | (t >= 4.0)  # 1 s dropout
    x2 = x.copy()
    x2[(t >= 6.0) & (t < 6.5), 1] = np.nan  # a NaN run in one channel
    r = resample_irregular(t[keep], x2[keep], 50.0, 0.0, 500, gap_s=2.5 / 100)
    times = np.arange(500) / 50
    assert r.gap[(times > 3.05) & (times < 3.95)].all()  # inside the dropout: gap, never filled
    assert np.isnan(r.y[r.gap]).all()
    assert not r.gap[(times > 1.0) & (times < 2.5)].any()
    assert r.nan[(times > 6.05) & (times < 6.45)].all() and not r.gap[(times > 6.05) & (times < 6.45)].any()
    assert not r.nan[(times > 8.0)].any()


def test_output_outside_the_data_is_flagged_not_extrapolated():
    t = np.arange(0, 5, 1 / 100)
    r = resample_irregular(t, np.ones_like(t), 50.0, -1.0, 350, gap_s=0.025)
    times = -1.0 + np.arange(350) / 50
    assert r.outside[times < 0].all() and r.outside[times > 5.0].all()
    assert not r.outside[(times > 0.5) & (times < 4.5)].any()


def test_select_frames_by_timestamp():
    ft = np.arange(0, 2, 1 / 30)  # 30 fps frames
    idx, valid = select_frames(ft, np.arange(0, 2, 1 / 15), max_hold_s=2.5 / 30)  # to 15 fps
    assert np.array_equal(idx, np.arange(0, 60, 2)) and valid.all()
    ft25 = np.arange(0, 2, 1 / 25)
    idx, valid = select_frames(ft25, np.arange(0, 2, 1 / 30), max_hold_s=2.5 / 25)  # 25 -> 30 fps
    assert np.array_equal(idx, np.floor(np.arange(60) / 30 * 25 + 1e-6).astype(int))
    gap = np.concatenate([ft[:20], ft[40:]])  # 20 frames missing
    idx, valid = select_frames(gap, np.arange(0, 2, 1 / 30), max_hold_s=2.5 / 30)
    assert not valid[24:40].any() and valid[:20].all() and valid[40:].all()


def test_sample_indices_equal_sample_index():
    from pipelines.core.timeutil import sample_indices

    times = [0.0, 0.01, 0.3, 1.0, 2.49, -0.02, 123.456]
    assert sample_indices(times, 0.1, 50).tolist() == [sample_index(t, 0.1, 50) for t in times]
