"""`dcat import mmact` end to end on a tiny fixture of the MMAct trimmed layout (tests/importfix_mmact.py):
import -> meta/units/clocks/labels/protocols -> validate --deep -> preprocess -> pretrain 1 epoch
(--split official) -> evaluate; the quirks reported per recording; --subjects; --copy vs link."""

from __future__ import annotations

import csv
import json
import math
import os

import numpy as np
import pytest
from typer.testing import CliRunner

import importfix_mmact as fx
from dcat_cli.main import app
from importfix_common import ok, pretrain_and_evaluate

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")

ALL = {"subject1_cam1_scene1_session1_walking", "subject1_cam2_scene1_session1_walking",
       "subject1_cam1_scene3_session5_using_phone", "subject2_cam1_scene1_session1_walking",
       "subject2_cam1_scene4_session2_carrying_light", "subject17_cam1_scene1_session1_walking",
       "subject17_cam2_scene3_session5_using_phone", "subject17_scene2_session3_jumping"}


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = tmp_path_factory.mktemp("mmact")
    src = fx.build(root)
    out = root / "raw"
    res = ok(runner.invoke(app, ["import", "mmact", str(src), "--out", str(out), "--json"]))
    return src, out, json.loads(res.stdout)


def _meta(out, rid):
    return json.loads((out / rid / "meta.json").read_text())


def _table(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], np.array(rows[1:], dtype=float)


def _src_rows(path):
    return [r.split(",") for r in path.read_text().splitlines()]


def test_import_writes_each_view_with_its_clip_sensors(imported):
    src, out, rep = imported
    assert set(rep["recordings"]) == ALL
    assert [s["recording"] for s in rep["skipped"]] == ["subject2_scene2_session1_kicking"]
    assert "empty file kicking.csv" in rep["skipped"][0]["problem"]
    assert rep["protocols"] == ["cross-subject", "cross-session", "cross-scene-challenge"]
    m = _meta(out, "subject1_cam2_scene1_session1_walking")
    assert (m["subject"], m["cam"], m["scene"], m["mmact_session"], m["label"]) == (
        "subject1", "cam2", "scene1", "session1", "walking")
    assert set(m["streams"]) == {"video", "imu_acc_phone", "imu_acc_watch", "imu_gyro", "imu_orientation"}
    video = src / "Video_trimmed/subject1/cam2/scene1/session1/walking.mp4"
    assert (out / "subject1_cam2_scene1_session1_walking/video.mp4").samefile(video)  # hard link, not a copy
    assert m["streams"]["imu_acc_watch"]["source_file"] == "Walking.csv"  # the capitalised name was found
    acc = m["streams"]["imu_acc_phone"]
    assert acc["rate_hz"] == 100.0 and acc["clock"] == "phone" and acc["units"]["acc_y"] == "m/s^2"
    assert acc["roles"] == {"acc_x": "acc", "acc_y": "acc", "acc_z": "acc"}
    assert m["streams"]["imu_gyro"]["rate_hz"] == 50.0 and m["streams"]["imu_gyro"]["units"]["gyr_x"] == "rad/s"
    assert m["streams"]["imu_acc_watch"]["clock"] == "watch"
    # wall clock: the watch starts 50 ms and the gyroscope 10 ms after the phone accelerometer
    assert m["streams"]["imu_acc_watch"]["clock_offset_s"] == pytest.approx(0.05)
    assert m["streams"]["imu_gyro"]["clock_offset_s"] == pytest.approx(0.01)
    assert m["sensor_start_local"] == "2018-10-11T10:00:00.000+09:00"
    head, a = _table(out / "subject1_cam2_scene1_session1_walking/imu_acc_phone.csv")
    raw = _src_rows(src / "Sensor_trimmed/acc_phone_clip/subject1/scene1/session1/walking.csv")
    assert head == ["t", "acc_x", "acc_y", "acc_z"] and len(a) == len(raw) == 400
    assert np.allclose(a[:, 1:], np.array([r[1:] for r in raw], float), atol=1e-5)  # m/s^2 kept as stored
    assert np.allclose(a[:, 0], np.arange(400) / 100.0)
    assert abs(np.median(np.linalg.norm(a[:, 1:], axis=1)) - 9.81) < 0.5


def test_units_labels_and_time_quirks(imported):
    _, out, rep = imported
    m = _meta(out, "subject1_cam1_scene3_session5_using_phone")
    assert m["label"] == "using_phone_desk" and m["action"] == "using_phone"  # scene-3 alias
    assert _meta(out, "subject2_cam1_scene4_session2_carrying_light")["label"] == "carrying_light"
    ori = m["streams"]["imu_orientation"]
    assert ori["units"]["azimuth"] == "rad" and ori["source_units"]["azimuth"] == "deg" and "rate_hz" not in ori
    _, o = _table(out / "subject1_cam1_scene3_session5_using_phone/imu_orientation.csv")
    assert np.allclose(o[0, 1:], [math.pi / 2, -math.pi / 4, math.pi], atol=1e-6)  # 90, -45, 180 degrees
    gyro = m["streams"]["imu_gyro"]
    assert gyro["time_from"].startswith("row index / 50 Hz")  # a repeated row time in this clip
    _, g = _table(out / "subject1_cam1_scene3_session5_using_phone/imu_gyro.csv")
    assert np.allclose(g[:, 0], np.arange(len(g)) / 50.0)
    _, a = _table(out / "subject17_cam1_scene1_session1_walking/imu_acc_phone.csv")
    assert a[100, 0] == pytest.approx(1.0) and np.all(np.diff(a[:, 0]) > 0)  # the row without .fff
    m2 = _meta(out, "subject2_cam1_scene1_session1_walking")
    assert set(m2["streams"]) == {"video", "imu_acc_phone", "imu_orientation"}
    assert "empty file" in m2["missing_streams"]["imu_acc_watch"]
    assert "line 2" in m2["missing_streams"]["imu_gyro"]
    assert any(n.startswith("1 recordings lack") for n in rep["notes"])
    m3 = _meta(out, "subject17_scene2_session3_jumping")  # sensors without video: an IMU-only recording
    assert "video" not in m3["streams"] and "cam" not in m3 and m3["label"] == "jumping"
    doc = json.loads((out / "splits.json").read_text())
    prot = doc["protocols"]
    assert doc["default"] == "cross-subject"
    assert set(prot["cross-subject"]["test"]) == {r for r in ALL if r.startswith("subject17_")}
    assert set(prot["cross-session"]["test"]) == {r for r in ALL if "session5" in r}
    assert prot["cross-scene-challenge"]["test"] == ["subject2_cam1_scene4_session2_carrying_light"]
    for p in prot.values():
        assert set(p["train"]) | set(p["test"]) == ALL and not set(p["train"]) & set(p["test"])


def test_validate_preprocess_pretrain_evaluate(imported, tmp_path, monkeypatch):
    _, out, _ = imported
    ok(runner.invoke(app, ["validate", str(out), "--deep"]))
    shards = tmp_path / "shards"
    res = ok(runner.invoke(app, ["preprocess", str(out), "--out", str(shards), "--video-size", "64", "--json"]))
    info = json.loads(res.stdout)
    assert info["ok"] == len(ALL) and info["failed"] == 0
    assert (shards / "splits.json").is_file()
    monkeypatch.chdir(tmp_path)
    run, rep = pretrain_and_evaluate(runner, app, shards, "imu_acc_phone")
    assert run["epochs_run"] == 1 and run["n_windows"]["test"] > 0
    assert rep["subjects"] == ["subject17"] and 0.0 <= rep["macro_f1"] <= 1.0


def test_subjects_filter_and_copy(imported, tmp_path):
    src, _, _ = imported
    out = tmp_path / "raw"
    res = ok(runner.invoke(app, ["import", "mmact", str(src), "--out", str(out), "--subjects", "1,subject17",
                                  "--copy", "--json"]))
    rep = json.loads(res.stdout)
    assert set(rep["recordings"]) == {r for r in ALL if not r.startswith("subject2_")}
    assert rep["skipped"] == []  # the unreadable clip is subject2's
    v = out / "subject1_cam1_scene1_session1_walking/video.mp4"
    orig = src / "Video_trimmed/subject1/cam1/scene1/session1/walking.mp4"
    assert not v.samefile(orig) and os.stat(v).st_nlink == 1 and v.read_bytes() == orig.read_bytes()
    prot = json.loads((out / "splits.json").read_text())["protocols"]
    assert "cross-scene-challenge" not in prot  # no scene-4 clip among these subjects
    assert any("cross-scene-challenge" in n for n in rep["notes"])


def test_scan_accepts_the_challenge_layout(tmp_path):
    """The challenge release: trimmed/video/trainval/camM/subjectN/... and trimmed/sensors/<src>_clip/..."""
    from pipelines.ingest.importers.mmact import scan

    v = tmp_path / "trimmed/video/trainval/cam3/subject4/scene2/session1/Pushing.mp4"
    s = tmp_path / "trimmed/sensors/gyro_clip/subject4/scene2/session1/pushing.csv"
    for p in (v, s):
        p.parent.mkdir(parents=True)
        p.write_bytes(b"")
    videos, sensors = scan(tmp_path)
    assert videos == {("subject4", "cam3", "scene2", "session1", "pushing"): v}
    assert sensors["gyro_clip"] == {("subject4", "scene2", "session1", "pushing"): s}
    assert sensors["acc_phone_clip"] == {}


def test_not_an_mmact_folder_fails_with_a_message(tmp_path):
    (tmp_path / "src" / "other").mkdir(parents=True)
    res = runner.invoke(app, ["import", "mmact", str(tmp_path / "src"), "--out", str(tmp_path / "raw")])
    assert res.exit_code == 1 and "no MMAct clips found" in res.stderr and "Traceback" not in res.output
