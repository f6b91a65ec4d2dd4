"""Synchronization (issue 10): envelopes per sensor, a calibrated ``reliable``, declared clocks,
windowing-independent estimates, drift, coverage failures caused by a lag, strict JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import ground_truth
from pipelines.ingest.preprocess import PreprocessConfig, preprocess, process_recording
from pipelines.ingest.raw import discover
from pipelines.ingest.sync import Envelope, channel_roles, estimate_drift, estimate_lag, imu_envelopes, prepare


def _strict(text: str):
    def bad(c):
        raise ValueError(f"non-strict JSON constant {c}")

    return json.loads(text, parse_constant=bad)


def _activity(seconds: float, rng: np.random.Generator, rate: float = 100.0) -> np.ndarray:
    """Bursts of movement (0.3-1.5 s) at random intervals: a wrist's speed."""
    x = np.zeros(int(seconds * rate))
    t = 0.0
    while t < seconds:
        d = rng.uniform(0.3, 1.5)
        a, b = int(t * rate), min(len(x), int((t + d) * rate))
        if b > a:
            x[a:b] += rng.uniform(0.3, 2.0) * np.sin(np.linspace(0, np.pi, b - a))
        t += d + rng.exponential(0.8)
    return x


def test_channel_roles_from_header_units_and_declared_roles():
    assert channel_roles(["ax", "ay", "az", "gx", "gy", "gz"]) == {
        "ax": "acc", "ay": "acc", "az": "acc", "gx": "gyr", "gy": "gyr", "gz": "gyr"}
    assert set(channel_roles(["accel_x", "gyro_z", "wx", "acc_y", "mag_x"]).values()) == {"acc", "gyr", "mag"}
    assert channel_roles(["c1", "c2"], units={"c1": "m/s^2", "c2": "deg/s"}) == {"c1": "acc", "c2": "gyr"}
    assert channel_roles(["c1", "c2"], roles={"c2": "gyr"}) == {"c1": "other", "c2": "gyr"}


def test_unrecognised_imu_header_warns_and_never_mixes_units():
    t = np.arange(0, 10, 0.01)
    x = np.random.default_rng(0).normal(size=(len(t), 2)).astype(np.float32)
    envs, warn = imu_envelopes(t, x, ["foo", "bar"])
    assert [e.name for e in envs] == ["channels", "channels_diff"] and "not recognised" in warn and "roles" in warn
    envs, warn = imu_envelopes(t, np.c_[x, x], ["ax", "ay", "gx", "gy"])
    assert warn is None and [e.name for e in envs] == ["gyr", "acc", "jerk"]


def test_shifted_envelopes_give_a_reliable_lag_and_unrelated_ones_do_not():
    rng = np.random.default_rng(3)
    m = _activity(70, rng)
    t = np.arange(len(m)) / 100 - 5
    video = Envelope(0.0, 30.0, np.interp(np.arange(60 * 30) / 30, t, m) + rng.normal(0, 0.05, 1800), "motion")
    ti = np.arange(-2, 62, 0.01)
    sp = np.interp(ti - 0.3, t, m)  # the IMU's events come 0.3 s later
    gyr = np.c_[sp, 0.3 * sp, 0.1 * sp] + rng.normal(0, 0.05, (len(ti), 3))
    acc = np.c_[30 * np.gradient(sp), 10 * np.gradient(sp), 9.81 + 0 * sp] + rng.normal(0, 0.1, (len(ti), 3))
    envs, _ = imu_envelopes(ti, np.c_[acc, gyr], ["ax", "ay", "az", "gx", "gy", "gz"])
    e = estimate_lag(prepare([video], 0.0), prepare(envs, 0.0), 2.0)
    assert e["reliable"] and e["lag_s"] == pytest.approx(0.3, abs=1 / 30) and e["reason"] is None
    other = Envelope(0.0, 30.0, np.interp(np.arange(1800) / 30, t, _activity(70, rng)), "motion")
    u = estimate_lag(prepare([other], 0.0), prepare(envs, 0.0), 2.0)
    assert not u["reliable"] and u["status"] == "uncertain" and u["reason"]


def _clip_and_imu(seed: int, seconds: float, lag_s: float, related: bool = True,
                  spike_s: float | None = None) -> tuple[list, list]:
    """A video envelope of ``seconds`` (30 Hz) and a gyroscope recorded 3 s longer on each side,
    whose rotation follows the video's motion ``lag_s`` later (or unrelated motion). ``spike_s``:
    a scene cut in the video there, and (unrelated case) an impact in the IMU ``lag_s`` later."""
    rng = np.random.default_rng(seed)
    m = _activity(seconds + 10, rng)
    t = np.arange(len(m)) / 100 - 5
    v = np.abs(np.interp(np.arange(int(seconds * 30)) / 30, t, m) + rng.normal(0, 0.05, int(seconds * 30)))
    ti = np.arange(-3, seconds + 3, 0.01)
    sp = np.interp(ti - lag_s, t, m if related else _activity(seconds + 10, np.random.default_rng(seed + 1000)))
    if spike_s is not None:
        v[int(spike_s * 30)] += 20.0
        sp = sp + 20.0 * np.exp(-0.5 * ((ti - spike_s - lag_s) / 0.02) ** 2)
    envs, _ = imu_envelopes(ti, np.c_[sp, 0.3 * sp, 0.1 * sp] + rng.normal(0, 0.05, (len(ti), 3)), ["gx", "gy", "gz"])
    return prepare([Envelope(0.0, 30.0, v, "motion")], 0.0), prepare(envs, 0.0)


def test_peak_p_follows_the_gumbel_law_of_the_surrogate_peaks():
    from pipelines.ingest.sync.null import peak_p

    null = np.random.default_rng(0).gumbel(3.0, 0.4, 20000)
    assert peak_p(float(null.mean()), null) == pytest.approx(1 - np.exp(-np.exp(-0.5772)), abs=0.01)  # 0.43
    for q in (0.9, 0.99, 0.999):  # the law's own quantiles (location 3, scale 0.4)
        assert peak_p(3.0 - 0.4 * np.log(-np.log(q)), null) == pytest.approx(1 - q, rel=0.15)
    assert peak_p(10.0, null) < 1e-6 and peak_p(0.0, null) == pytest.approx(1.0)


def test_surrogates_keep_the_spectrum_and_lose_the_alignment():
    from pipelines.ingest.sync.null import random_phases, surrogates

    x = np.convolve(np.random.default_rng(1).normal(size=600), np.ones(15) / 15, mode="same")
    x = (x - x.mean()) / x.std()
    ok = np.ones(600, bool)
    s = surrogates(x, ok, random_phases(600, 50))
    assert np.allclose(np.abs(np.fft.rfft(s, axis=1)), np.abs(np.fft.rfft(x))[None], atol=1e-6)
    c = s @ x / 600  # correlation with the original at lag 0 (1 for the original itself)
    assert abs(c.mean()) < 0.1 and np.abs(c).max() < 0.8


def test_chance_is_measured_on_the_pair_itself():
    """An 8 s clip whose IMU follows it is reliable (p tiny); 20 unrelated IMUs never are, and
    their p spreads over (0, 1) as a calibrated chance should."""
    for seed in range(3):
        e = estimate_lag(*_clip_and_imu(seed, 8.0, 0.7), 2.0)
        assert e["reliable"] and e["lag_s"] == pytest.approx(0.7, abs=1 / 30) and e["p"] <= 1e-3, e
    ps = []
    for seed in range(20):
        u = estimate_lag(*_clip_and_imu(seed, 8.0, 0.7, related=False), 2.0)
        assert not u["reliable"] and u["reason"], u
        ps.append(u["p"])
    assert 0.1 < float(np.median(ps)) < 0.9 and min(ps) > 1e-3


def test_a_scene_cut_and_an_impact_alone_are_not_a_reliable_lag():
    """Unrelated motion, but one spike in each stream 0.5 s apart: the fine scale is clipped, so the
    spikes do not carry the correlation (without the clipping most of these read "reliable +0.48 s")."""
    for seed in range(6):
        e = estimate_lag(*_clip_and_imu(seed, 5.0, 0.5, related=False, spike_s=2.0), 2.0)
        assert not e["reliable"], e


def test_a_clip_shorter_than_3_s_has_no_estimate_and_says_why():
    rng = np.random.default_rng(1)
    m = _activity(10, rng)
    video = Envelope(0.0, 30.0, np.interp(np.arange(75) / 30, np.arange(1000) / 100, m), "motion")  # 2.5 s
    ti = np.arange(-3, 8, 0.01)
    envs, _ = imu_envelopes(ti, np.c_[np.interp(ti, np.arange(1000) / 100, m)[:, None].repeat(3, 1)], ["gx", "gy", "gz"])
    e = estimate_lag(prepare([video], 0.0), prepare(envs, 0.0), 2.0)
    assert e["lag_s"] is None and e["status"] == "none" and not e["reliable"]
    assert "2.5 s" in e["reason"] and "3 s" in e["reason"]


def test_drift_of_100_ppm_over_30_minutes_is_estimated_and_corrected():
    """Envelope level (fast): a 30 min recording whose IMU clock runs 100 ppm fast."""
    rng = np.random.default_rng(5)
    T = 1800.0
    m = _activity(T + 20, rng)
    t = np.arange(len(m)) / 100 - 10
    video = Envelope(0.0, 30.0, np.interp(np.arange(int(T * 30)) / 30, t, m) + rng.normal(0, 0.05, int(T * 30)), "motion")
    drift, lag0 = 100e-6, 0.2
    tau = np.arange(-2, T + 2, 0.01)  # true times; the IMU stamps them on a clock running 100 ppm fast
    stamp = (tau + lag0) * (1 + drift)
    sp = np.interp(tau, t, m)
    envs, _ = imu_envelopes(stamp, np.c_[sp, 0.4 * sp, 0.2 * sp] + rng.normal(0, 0.05, (len(tau), 3)),
                            ["gyr_x", "gyr_y", "gyr_z"])
    ref, other = prepare([video], 0.0), prepare(envs, 0.0)
    e = estimate_lag(ref, other, 2.0)
    assert e["reliable"]
    d = estimate_drift(ref, other, e["lag_s"])
    assert d["status"] == "ok" and d["drift_ppm"] == pytest.approx(100, abs=20)
    assert abs(d["lag_end_s"] - d["lag_start_s"]) > 1 / 30  # the drift moves the lag by more than a frame
    # correct: recording time u -> u - lag(u); what remains is under one frame everywhere
    dd = d["drift_ppm"] * 1e-6
    fixed = stamp - d["offset_s"] - dd * (stamp - d["t_ref_s"])
    envs2, _ = imu_envelopes(fixed, np.c_[sp, 0.4 * sp, 0.2 * sp], ["gyr_x", "gyr_y", "gyr_z"])
    d2 = estimate_drift(ref, prepare(envs2, 0.0), 0.0)
    assert max(abs(d2["lag_start_s"]), abs(d2["lag_end_s"])) < 1 / 30 and d2["residual_s"] < 1 / 30


# ------------------------------------------------------------------------------ through preprocess
def _split_imu(rec_dir, clock: str | None) -> None:
    """Rewrite a synthetic recording as video + two IMU streams (accelerometer, gyroscope) of one watch."""
    meta = json.loads((rec_dir / "meta.json").read_text())
    imu = meta["streams"].pop("imu")
    lines = (rec_dir / "imu.csv").read_text().splitlines()
    rows = [ln.split(",") for ln in lines[1:]]
    (rec_dir / "acc.csv").write_text("t,ax,ay,az\n" + "\n".join(",".join(r[:4]) for r in rows) + "\n")
    (rec_dir / "gyr.csv").write_text("t,gx,gy,gz\n" + "\n".join(",".join([r[0]] + r[4:7]) for r in rows) + "\n")
    for name, f in (("acc", "acc.csv"), ("gyr", "gyr.csv")):
        meta["streams"][name] = {"kind": "imu", "file": f, "clock_offset_s": imu["clock_offset_s"]}
        if clock:
            meta["streams"][name]["clock"] = clock
    (rec_dir / "meta.json").write_text(json.dumps(meta))


def test_streams_on_a_declared_clock_are_never_shifted_against_each_other(raw_copy, tmp_path):
    rid = "s02_r01"
    _split_imu(raw_copy / rid, "watch")
    cfg = PreprocessConfig(align="estimate", streams=("video", "audio", "acc", "gyr"))
    info = process_recording(raw_copy / rid, tmp_path, cfg)
    acc, gyr = info["streams"]["acc"], info["streams"]["gyr"]
    assert acc["clock"] == gyr["clock"] == "watch"
    assert {acc["lag_role"], gyr["lag_role"]} == {"estimated", "clock group"}
    assert acc["lag_applied_s"] == gyr["lag_applied_s"] != 0.0  # moved together
    truth = ground_truth(raw_copy)["recordings"][rid]["expected_lag_s"]["imu"]
    assert -acc["lag_applied_s"] == pytest.approx(truth, abs=1 / 30)
    # audio in the video's file shares the video's clock: a consistency check, never applied
    assert info["streams"]["audio"]["lag_role"] == "same clock" and info["streams"]["audio"]["lag_applied_s"] == 0.0


def test_same_clock_imu_streams_are_a_consistency_check(raw_copy, tmp_path):
    rid = "s01_r01"
    _split_imu(raw_copy / rid, "watch")
    info = process_recording(raw_copy / rid, tmp_path, PreprocessConfig(streams=("acc", "gyr")))
    assert info["reference_stream"] == "acc"
    g = info["streams"]["gyr"]
    assert g["lag_role"] == "same clock" and g["in_sync_ok"] is True and info["sync_ok"] is True
    assert g["lag_s"] is None or abs(g["lag_s"]) <= 0.1
    assert info["max_abs_lag_ms"] is None  # no lag between clocks was estimated


def test_the_estimate_does_not_depend_on_windowing(raw_copy, tmp_path):
    rid = "s02_r01"
    a = process_recording(raw_copy / rid, tmp_path / "a", PreprocessConfig())
    b = process_recording(raw_copy / rid, tmp_path / "b", PreprocessConfig(stride_s=0.5, window_s=3.0))
    for k in ("lag_s", "lag_status", "lag_z", "lag_overlap_s"):
        assert a["streams"]["imu"][k] == b["streams"]["imu"][k], k


def test_a_lag_that_pushes_a_stream_out_of_coverage_is_named_as_the_cause(raw_copy, tmp_path):
    rid = "s02_r01"  # its IMU estimate is reliable; declare a wrong offset of 1.5 s and crop the IMU
    truth = ground_truth(raw_copy)["recordings"][rid]["expected_lag_s"]["imu"]
    meta = json.loads((raw_copy / rid / "meta.json").read_text())
    meta["streams"]["imu"]["clock_offset_s"] += 1.5
    (raw_copy / rid / "meta.json").write_text(json.dumps(meta))
    res = preprocess(discover([raw_copy / rid]), tmp_path, PreprocessConfig(align="estimate", coverage_tol_s=0.3))
    r = res["results"][0]
    assert r["status"] == "failed", r
    assert "after the estimated lag was applied" in r["message"] and "imu in imu.csv" in r["message"]
    kept = r["sync"]["streams"]["imu"]
    assert kept["lag_reliable"] and kept["lag_s"] == pytest.approx(truth + 1.5, abs=1 / 30)
    info = _strict((tmp_path / "preprocess-info.json").read_text())
    assert info["recordings"][0]["sync"]["streams"]["imu"]["lag_applied_s"] == pytest.approx(-kept["lag_s"])


def test_every_json_dcat_writes_is_strict(tiny_raw, tmp_path):
    from typer.testing import CliRunner

    from dcat_cli.main import app

    raw = tmp_path / "raw"
    import shutil

    shutil.copytree(tiny_raw, raw)
    # a recording whose lag cannot be estimated (too short): None, never NaN
    (raw / "s01_r01" / "labels.csv").write_text("start,end,label\n0,2.5,wave\n")
    lines = (raw / "s01_r01" / "imu.csv").read_text().splitlines()
    (raw / "s01_r01" / "imu.csv").write_text("\n".join(lines[:300]) + "\n")
    out = tmp_path / "shards"
    runner = CliRunner()
    r = runner.invoke(app, ["preprocess", str(raw), "--out", str(out), "--short-streams", "crop", "--json"])
    assert r.exit_code == 0, r.output
    _strict(r.stdout)
    info = _strict((out / "preprocess-info.json").read_text())
    short = next(x for x in info["recordings"] if x["recording"] == "s01_r01")["checks"]
    assert short["streams"]["imu"]["lag_s"] is None and "3 s" in short["streams"]["imu"]["lag_reason"]
    assert any("imu in imu.csv" in w and "not checked" in w for w in short["warnings"])
    _strict((out / "manifest.json").read_text())
    import h5py

    for p in out.glob("*.h5"):
        with h5py.File(p) as h:
            for k in ("checks_json", "args_json", "meta_json", "sources_json"):
                _strict(h.attrs[k])
    for cmd in (["inspect", str(out), "--json"], ["validate", str(out), "--json"], ["validate", str(raw), "--json"]):
        r = runner.invoke(app, cmd)
        _strict(r.stdout)


def _watch_recording(root, seconds: float, seed: int, gyr_scale: float = 1.0, gyr_shift_s: float = 0.0):
    """An IMU-only recording from the generator's wrist motion: acc.csv and gyr.csv, no declared clock;
    the gyroscope's timestamps scaled by ``gyr_scale`` and shifted by ``gyr_shift_s``."""
    from pipelines.synth.imu import _imu_table
    from pipelines.synth.motion import _latent
    from pipelines.synth.plan import SynthConfig, plan_dataset

    cfg = SynthConfig(subjects=1, recordings=1, seconds=seconds, seed=seed, dropouts=False, whole_label_every=1)
    plan = plan_dataset(cfg)[0]
    ss = np.random.SeedSequence([seed, 2, 0]).spawn(2)
    table, _ = _imu_table(plan, _latent(plan, np.random.default_rng(ss[0])), cfg, np.random.default_rng(ss[1]))
    d = root / "w01"
    d.mkdir(parents=True)
    np.savetxt(d / "acc.csv", table[:, :4], fmt="%.5f", delimiter=",", header="t,ax,ay,az", comments="")
    g = table[:, [0, 4, 5, 6]].copy()
    g[:, 0] = g[:, 0] * gyr_scale + gyr_shift_s
    np.savetxt(d / "gyr.csv", g, fmt="%.5f", delimiter=",", header="t,gx,gy,gz", comments="")
    (d / "meta.json").write_text(json.dumps({"subject": "s01", "label": "exercise", "streams": {
        "acc": {"kind": "imu", "file": "acc.csv"}, "gyr": {"kind": "imu", "file": "gyr.csv"}}}))
    return d


def test_align_estimate_corrects_offset_and_drift_of_an_imu_clock(tmp_path):
    d = _watch_recording(tmp_path / "raw", 200.0, 4, gyr_scale=1 + 400e-6, gyr_shift_s=0.25)
    meta = process_recording(d, tmp_path / "m", PreprocessConfig())
    g = meta["streams"]["gyr"]
    assert g["lag_reliable"] and g["drift_status"] == "ok" and g["drift_exceeds_frame"]
    assert g["drift_ppm"] == pytest.approx(400, rel=0.2) and meta["sync_ok"] is False
    # the fitted lag line is within one frame of the truth (lag(t) = 0.25 + 400e-6 t) at both ends
    assert g["drift_lag_start_s"] == pytest.approx(0.25, abs=1 / 30)
    assert g["drift_lag_end_s"] == pytest.approx(0.25 + 400e-6 * 200, abs=1 / 30)
    assert any("drifts" in w and "gyr in gyr.csv" in w for w in meta["warnings"])
    est = process_recording(d, tmp_path / "e", PreprocessConfig(align="estimate"))
    g2 = est["streams"]["gyr"]
    assert g2["drift_applied_ppm"] == pytest.approx(-g["drift_ppm"]) and est["sync_ok"] is True
    assert g2["lag_applied_s"] == pytest.approx(-(g["drift_lag_start_s"] + g["drift_lag_end_s"]) / 2, abs=0.01)
    assert est["streams"]["acc"]["lag_role"] == "reference" and est["streams"]["acc"]["lag_applied_s"] == 0.0
    # and in the shard the gyroscope now lines up with the accelerometer at both ends (under one frame)
    import h5py

    process_recording(d, tmp_path / "e2", PreprocessConfig(align="estimate", stride_s=2.0))  # contiguous windows
    with h5py.File(tmp_path / "e2" / "w01.h5") as h:
        a, gy, st = h["streams/acc/data"][()], h["streams/gyr/data"][()], h["windows/start_s"][()]
    t = st[0] + np.arange(len(a)) / 50.0
    for lo in (0.0, t[-1] - t[0] - 60):
        m = (t >= t[0] + lo) & (t < t[0] + lo + 60)
        ea, _ = imu_envelopes(t[m], a[m], ["ax", "ay", "az"])
        eg, _ = imu_envelopes(t[m], gy[m], ["gx", "gy", "gz"])
        e = estimate_lag(prepare(ea, 0.0), prepare(eg, 0.0), 0.6)
        assert e["reliable"] and abs(e["lag_s"]) < 1 / 30


def test_an_unrecognised_imu_header_is_a_warning_naming_the_stream_and_envelope(raw_copy, tmp_path):
    rid = "s02_r01"
    d = raw_copy / rid
    lines = (d / "imu.csv").read_text().splitlines()
    (d / "imu.csv").write_text("\n".join(["t,c1,c2,c3,c4,c5,c6"] + lines[1:]) + "\n")
    meta = json.loads((d / "meta.json").read_text())
    meta["streams"]["imu"].pop("channels")
    meta["streams"]["imu"].pop("units")
    (d / "meta.json").write_text(json.dumps(meta))
    info = process_recording(d, tmp_path / "a", PreprocessConfig())
    assert info["streams"]["imu"]["envelopes"] == ["channels", "channels_diff"]
    assert any(w.startswith("imu in imu.csv:") and "not recognised" in w and "unit-free" in w for w in info["warnings"])
    # declaring the roles restores the sensor envelopes, and the warning goes
    meta["streams"]["imu"]["roles"] = {f"c{i}": ("acc" if i <= 3 else "gyr") for i in range(1, 7)}
    (d / "meta.json").write_text(json.dumps(meta))
    info = process_recording(d, tmp_path / "b", PreprocessConfig())
    assert info["streams"]["imu"]["envelopes"] == ["gyr", "acc", "jerk"]
    assert not any("not recognised" in w for w in info["warnings"])


def test_drift_on_a_fixed_grid_maps_window_starts_like_the_imu_rescales_timestamps():
    """Video and audio keep their samples; a drift correction maps each window start to where the
    drifting clock shows it, the inverse (to first order) of the IMU's timestamp rescaling."""
    from pipelines.ingest.streams.base import Stream

    s = Stream(name="audio", file="a.wav", rate_hz=30.0, t0_s=0.0, n=40000, offset_s=0.0, envelopes=[], info={})
    starts = np.array([100.0, 600.0, 1100.0])
    assert list(s.window_index(starts)) == [3000, 18000, 33000]
    assert s.apply_drift(400e-6, 100.0)
    # at 1100 s the clock, 400 ppm fast since 100 s, shows 1100.4 s: frame 33012
    assert list(s.window_index(starts)) == [3000, 18006, 33012]
    # the IMU's rescaling takes that stamp back to 1100 s (within a frame)
    v = 1100.4
    assert abs((v - 400e-6 * (v - 100.0)) - 1100.0) < 1 / 30


@pytest.mark.parametrize("n", [2, 3, 4, 30])
def test_moving_average_does_not_shift_the_series(n):
    """An even window must not move events by half a sample (17 ms on a 30 Hz video envelope: it
    biased every video-IMU lag of sample_data by about -19 ms)."""
    from pipelines.ingest.sync.envelopes import moving_average

    x = np.zeros(101)
    x[50] = 1.0
    y = moving_average(x, n)
    k = np.arange(101)
    assert (y * k).sum() / y.sum() == pytest.approx(50.0, abs=1e-9)  # centre of mass stays on the impulse
    assert y.sum() == pytest.approx(1.0)


def test_moving_average_keeps_the_length_when_the_window_is_longer_than_the_series():
    from pipelines.ingest.sync.envelopes import moving_average

    x = np.array([1.0, 2.0, 6.0])
    out = moving_average(x, 20)
    assert out.shape == (3,)
    assert np.allclose(out, 3.0)  # every sample's window holds the whole series
    assert np.allclose(moving_average(np.arange(10.0), 3)[1:-1], np.arange(1.0, 9.0))


def test_the_estimate_does_not_depend_on_how_many_surrogates_are_transformed_at_once(monkeypatch):
    """The surrogates' spectra are made a few rows at a time (memory of a long recording): the
    estimate, its chance level and every curve are those of all rows at once."""
    import pipelines.ingest.sync.estimate as est

    ref, other = _clip_and_imu(7, 40.0, 0.4)
    monkeypatch.setattr(est, "SURROGATE_CHUNK", 10_000)  # every row in one transform
    whole = estimate_lag(ref, other, 2.0)
    for chunk in (1, 3):
        monkeypatch.setattr(est, "SURROGATE_CHUNK", chunk)
        part = estimate_lag(ref, other, 2.0)
        assert part == whole  # lag, status, p, z, correlation, pairs: every reported field
    assert whole["reliable"] and whole["lag_s"] == pytest.approx(0.4, abs=1 / 30)
