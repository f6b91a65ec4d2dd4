"""`dcat import utd-mhad` on a small fixture of UTD-MHAD's exact layout: import, the units and rates
in meta.json and imu.csv, the skipped trials, the cross-subject splits, then validate, preprocess,
pretrain one epoch and evaluate; --subjects, --copy and a folder that is not the dataset."""

from __future__ import annotations

import json
import math

import importfix_utd_mhad as fx
import numpy as np
import pytest
from typer.testing import CliRunner

from dcat_cli.main import app
from importfix_common import ok, pretrain_and_evaluate, read_imu

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def utd(tmp_path_factory):
    return fx.build(tmp_path_factory.mktemp("utd") / "UTD-MHAD")


def test_import_then_validate_preprocess_pretrain_evaluate(utd, tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    res = ok(runner.invoke(app, ["import", "utd-mhad", str(utd), "--out", str(raw), "--json"]))
    rep = json.loads(res.stdout)
    expected = {f"a{a}_s{s}_t{t}" for a, s, t in fx.TRIALS}
    assert set(rep["recordings"]) == expected and rep["written"] == len(fx.TRIALS)
    skipped = {s["recording"]: s for s in rep["skipped"]}
    assert set(skipped) == {"a8_s1_t4", "a1_s4_t3", "a22_s3_t3"}
    assert "no variable d_iner (has: d_skel)" in skipped["a22_s3_t3"]["problem"]
    assert "no RGB video" in skipped["a8_s1_t4"]["problem"] and "not release" in skipped["a8_s1_t4"]["problem"]
    assert skipped["a8_s1_t4"]["file"].endswith("a8_s1_t4_inertial.mat")
    assert "unreadable" in skipped["a1_s4_t3"]["problem"]
    assert "skipped a8_s1_t4" in res.stderr
    assert any(fx.MS2_TRIAL in n and "m/s^2" in n for n in rep["notes"])
    assert not (raw / "a8_s1_t4" / "meta.json").exists()

    meta = json.loads((raw / "a1_s1_t1" / "meta.json").read_text())
    assert meta["subject"] == "s1" and meta["label"] == "right arm swipe to the left"
    imu, video = meta["streams"]["imu"], meta["streams"]["video"]
    assert imu["rate_hz"] == 50.0 and imu["placement"] == "right_wrist" and imu["source_variable"] == "d_iner"
    assert imu["units"] == {"acc_x": "m/s^2", "acc_y": "m/s^2", "acc_z": "m/s^2",
                            "gyr_x": "rad/s", "gyr_y": "rad/s", "gyr_z": "rad/s"}
    assert imu["source_units"]["acc_z"] == "g" and imu["source_units"]["gyr_x"] == "deg/s"
    assert imu["roles"]["acc_x"] == "acc" and imu["roles"]["gyr_z"] == "gyr"
    assert video["kind"] == "video" and video["file"] == "a1_s1_t1_color.avi"
    assert (raw / "a1_s1_t1" / video["file"]).samefile(utd / "RGB" / "a1_s1_t1_color.avi")  # hard link
    assert (utd / "RGB" / "a1_s1_t1_color.avi").stat().st_nlink == 2

    header, x = read_imu(raw / "a1_s1_t1" / "imu.csv")
    src = fx.d_iner(1, 1, 1, int(fx.SECONDS * fx.RATE))
    assert header == ["t", "acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z"]
    assert len(x) == len(src) and x[1, 0] == pytest.approx(0.02) and x[-1, 0] == pytest.approx((len(src) - 1) / 50)
    assert np.allclose(x[:, 3], -9.80665) and np.allclose(x[:, 1], src[:, 0] * 9.80665, atol=1e-5)
    assert np.allclose(x[:, 4], math.pi / 2, atol=1e-6)  # 90 deg/s
    assert np.allclose(x[:, 6], -math.pi) and np.allclose(x[:, 5], np.deg2rad(src[:, 4]), atol=1e-6)

    v73 = read_imu(raw / fx.MAT73_TRIAL / "imu.csv")[1]  # the MATLAB v7.3 file reads as the others
    assert np.allclose(v73[:, 1], fx.d_iner(1, 2, 2, len(v73))[:, 0] * 9.80665, atol=1e-5)
    ms2 = json.loads((raw / fx.MS2_TRIAL / "meta.json").read_text())["streams"]["imu"]
    assert ms2["source_units"]["acc_x"] == "m/s^2"
    assert np.allclose(read_imu(raw / fx.MS2_TRIAL / "imu.csv")[1][:, 3], -9.80665)  # not scaled twice
    thigh = json.loads((raw / "a22_s4_t2" / "meta.json").read_text())  # the 'Inertial\\...' file name
    assert thigh["label"] == "jogging in place" and thigh["streams"]["imu"]["placement"] == "right_thigh"

    splits = json.loads((raw / "splits.json").read_text())
    xs = splits["protocols"]["cross-subject"]
    assert splits["default"] == "cross-subject"
    assert set(xs["train"]) == {r for r in expected if r.split("_")[1] in ("s1", "s3")}
    assert set(xs["test"]) == {r for r in expected if r.split("_")[1] in ("s2", "s4")}
    assert "cross-subject-val" not in splits["protocols"]  # no subject 7 in the fixture

    ok(runner.invoke(app, ["validate", str(raw), "--deep"]))
    shards = tmp_path / "shards"
    pre = json.loads(ok(runner.invoke(app, ["preprocess", str(raw), "--out", str(shards), "--json"])).stdout)
    assert pre["ok"] == len(fx.TRIALS) and pre["failed"] == 0 and pre["windows_kept"] >= len(fx.TRIALS)
    monkeypatch.chdir(tmp_path)
    run, ev = pretrain_and_evaluate(runner, app, shards)
    assert run["epochs_run"] == 1
    assert ev["stream"] == "imu" and 0.0 <= ev["macro_f1"] <= 1.0
    assert ev["subjects"] == ["s2", "s4"] and ev["n_windows"] == 2 * len(xs["test"])  # the even subjects
    assert set(ev["per_class"]) <= {"right arm swipe to the left", "jogging in place"}


def test_subjects_filter_and_copy(utd, tmp_path):
    raw = tmp_path / "raw"
    rep = json.loads(ok(runner.invoke(app, ["import", "utd-mhad", str(utd), "--out", str(raw), "--subjects",
                                             "s2,3", "--copy", "--json"])).stdout)
    assert set(rep["recordings"]) == {f"a{a}_s{s}_t{t}" for a, s, t in fx.TRIALS if s in (2, 3)}
    assert [s["recording"] for s in rep["skipped"]] == ["a22_s3_t3"]  # not those of s1 and s4
    copied = raw / "a1_s2_t1" / "a1_s2_t1_color.avi"
    assert not copied.samefile(utd / "RGB" / "a1_s2_t1_color.avi") and copied.stat().st_nlink == 1
    assert copied.read_bytes() == (utd / "RGB" / "a1_s2_t1_color.avi").read_bytes()
    xs = json.loads((raw / "splits.json").read_text())["protocols"]["cross-subject"]
    assert {r.split("_")[1] for r in xs["train"]} == {"s3"} and {r.split("_")[1] for r in xs["test"]} == {"s2"}

    rep = json.loads(ok(runner.invoke(app, ["import", "utd-mhad", str(utd), "--out", str(tmp_path / "even"),
                                             "--subjects", "s2,s4", "--json"])).stdout)
    assert rep["protocols"] == [] and not (tmp_path / "even" / "splits.json").exists()
    assert any("no splits.json" in n for n in rep["notes"])


def test_not_the_dataset_and_listed(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "video.avi").write_bytes(b"x")
    res = runner.invoke(app, ["import", "utd-mhad", str(tmp_path / "other"), "--out", str(tmp_path / "raw")])
    assert res.exit_code == 1 and "no UTD-MHAD files" in res.output + res.stderr
    assert "Traceback" not in res.output + res.stderr
    cards = json.loads(ok(runner.invoke(app, ["import", "--list", "--json"])).stdout)
    card = next(c for c in cards if c["name"] == "utd-mhad")
    assert card["classes"] == "27 actions" and "cross-subject" in card["protocols"]
