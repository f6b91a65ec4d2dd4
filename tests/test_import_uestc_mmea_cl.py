"""`dcat import uestc-mmea-cl` on a small fixture of UESTC-MMEA-CL's exact layout: import, the raw counts
converted to SI, the time base from the video's frame rate, the official splits and the clips left
out, then validate, preprocess, pretrain one epoch and evaluate; --copy, an audio track, --subjects
and a folder that is not the dataset."""

from __future__ import annotations

import json
import math

import importfix_uestc_mmea_cl as fx
import numpy as np
import pytest
from typer.testing import CliRunner

from dcat_cli.main import app
from importfix_common import ok, pretrain_and_evaluate, read_imu

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mmea(tmp_path_factory):
    return fx.build(tmp_path_factory.mktemp("mmea") / "UESTC-MMEA-CL")


def _listed(part):
    return {fx.clip_name(c, k) for c in fx.CLASSES for k in fx.PLAN[part]}


def test_import_then_validate_preprocess_pretrain_evaluate(mmea, tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    res = ok(runner.invoke(app, ["import", "uestc-mmea-cl", str(mmea), "--out", str(raw), "--json"]))
    rep = json.loads(res.stdout)
    every = set().union(*(_listed(p) for p in fx.PLAN)) | {fx.FEW_FRAMES, fx.UNLISTED}
    assert set(rep["recordings"]) == every - {fx.NO_SENSOR}
    assert [(s["recording"], "no sensor .csv" in s["problem"]) for s in rep["skipped"]] == [(fx.NO_SENSOR, True)]
    assert rep["skipped"][0]["file"].endswith(f"video/32_watch_TV/{fx.NO_SENSOR}.mp4")
    notes = "\n".join(rep["notes"])
    assert "test.txt: 1 line(s) with fewer than 3 RGB frames" in notes and "2 clip(s) in no list" in notes
    assert "time base" in notes and "subject 'unknown'" in notes

    clip = fx.clip_name("32_watch_TV", 0)
    meta = json.loads((raw / clip / "meta.json").read_text())
    assert meta["subject"] == "unknown" and meta["session"] == "2022_04_27" and "subject_source" in meta
    assert meta["label"] == "watch_TV" and meta["label_id"] == 31 and meta["class_dir"] == "32_watch_TV"
    assert meta["split"] == "train" and "t = row / fps" in meta["time_base"]
    assert meta["imu_rows"] == meta["video_frames"] == 100
    imu = meta["streams"]["imu"]
    assert imu["rate_hz"] == pytest.approx(25.0) and imu["rate_source"] == "video frame rate"
    assert imu["units"]["acc_x"] == "m/s^2" and imu["units"]["gyr_z"] == "rad/s"
    assert imu["source_units"]["acc_y"] == "counts/8192 g" and imu["source_units"]["gyr_x"] == "counts/16.4 deg/s"
    assert imu["roles"] == {c: c[:3] for c in ("acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z")}
    assert "audio" not in meta["streams"]
    video = raw / clip / meta["streams"]["video"]["file"]
    assert video.samefile(mmea / "video" / "32_watch_TV" / f"{clip}.mp4")

    header, x = read_imu(raw / clip / "imu.csv")
    src = fx.sensor_rows("32_watch_TV", 0, 100)
    assert header == ["t", "acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z"] and len(x) == 100
    assert x[1, 0] == pytest.approx(0.04) and x[-1, 0] == pytest.approx(99 / 25)
    assert np.allclose(x[:, 2], -9.80665) and np.allclose(x[:, 1], src[:, 0] / 8192 * 9.80665, atol=1e-5)
    assert np.allclose(x[:, 4], math.radians(10.0)) and np.allclose(x[:, 5], math.radians(-20.0))
    assert len(read_imu(raw / fx.SHORT_ROWS / "imu.csv")[1]) == 99  # rows as they are, one per frame

    splits = json.loads((raw / "splits.json").read_text())
    off = splits["protocols"]["official"]
    assert splits["default"] == "official"
    assert {p: set(v) for p, v in off.items()} == {"train": _listed("train"), "val": _listed("val"),
                                                   "test": _listed("test") - {fx.NO_SENSOR}}

    ok(runner.invoke(app, ["validate", str(raw), "--deep"]))
    shards = tmp_path / "shards"
    pre = json.loads(ok(runner.invoke(app, ["preprocess", str(raw), "--out", str(shards), "--json"])).stdout)
    assert pre["ok"] == len(every) - 1 and pre["failed"] == 0 and pre["windows_kept"] >= 2 * pre["ok"]
    monkeypatch.chdir(tmp_path)
    run, ev = pretrain_and_evaluate(runner, app, shards)
    assert run["epochs_run"] == 1
    assert ev["stream"] == "imu" and 0.0 <= ev["macro_f1"] <= 1.0
    assert ev["n_windows"] == 2 * len(off["test"])  # the official test clips, 2 windows each
    assert set(ev["per_class"]) <= {"upstairs", "watch_TV"}


def test_copy_audio_track_subjects_and_not_the_dataset(mmea, tmp_path):
    small = tmp_path / "small"
    clip = fx.clip_name("1_upstairs", 0)
    (small / "video" / "1_upstairs").mkdir(parents=True)
    (small / "sensor" / "1_upstairs").mkdir(parents=True)
    fx.write_clip_with_audio(small / "video" / "1_upstairs" / f"{clip}.mp4")
    (small / "sensor" / "1_upstairs" / f"{clip}.csv").write_text("120,-8192,300,164,-328,0\n" * 50)
    bad = fx.clip_name("1_upstairs", 1)
    (small / "video" / "1_upstairs" / f"{bad}.mp4").write_bytes(b"not a video")
    (small / "sensor" / "1_upstairs" / f"{bad}.csv").write_text("120,-8192,300,164,-328,0\n" * 50)
    raw = tmp_path / "raw"
    rep = json.loads(ok(runner.invoke(app, ["import", "uestc-mmea-cl", str(small), "--out", str(raw), "--copy",
                                             "--subjects", "unknown", "--json"])).stdout)
    assert rep["recordings"] == [clip] and rep["protocols"] == [] and not (raw / "splits.json").exists()
    assert [(x["recording"], "unreadable video" in x["problem"]) for x in rep["skipped"]] == [(bad, True)]
    assert any("no splits.json" in n for n in rep["notes"])
    meta = json.loads((raw / clip / "meta.json").read_text())
    assert meta["streams"]["audio"] == {"kind": "audio", "file": f"{clip}.mp4", "clock_offset_s": 0.0}
    assert meta["split"] is None and meta["label"] == "upstairs"
    copied = raw / clip / f"{clip}.mp4"
    assert copied.stat().st_nlink == 1 and not copied.samefile(small / "video" / "1_upstairs" / f"{clip}.mp4")
    ok(runner.invoke(app, ["validate", str(raw), "--deep"]))

    res = runner.invoke(app, ["import", "uestc-mmea-cl", str(mmea), "--out", str(tmp_path / "r2"), "--subjects", "s1"])
    assert res.exit_code == 1 and "names no subjects" in res.output + res.stderr
    (tmp_path / "other").mkdir()
    res = runner.invoke(app, ["import", "uestc-mmea-cl", str(tmp_path / "other"), "--out", str(tmp_path / "r3")])
    assert res.exit_code == 1 and "no video/ or sensor/ folder" in res.output + res.stderr
    assert "Traceback" not in res.output + res.stderr
    cards = json.loads(ok(runner.invoke(app, ["import", "--list", "--json"])).stdout)
    card = next(c for c in cards if c["name"] == "uestc-mmea-cl")
    assert card["classes"] == "32 activities" and card["protocols"] == ["official"]
