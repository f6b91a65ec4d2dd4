"""`dcat import epic-kitchens`: a small EPIC-KITCHENS-100 tree (tests/importfix_epic.py) imported through the
CLI, checked against the fixture's known values, validated, preprocessed, pretrained one epoch on the IMU
and evaluated; the skip reasons, --subjects, --copy, video_only and the overlap policy."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
from typer.testing import CliRunner

import importfix_epic as fx
from dcat_cli.main import app
from importfix_common import ok
from pipelines.ingest.importers import run_import
from pipelines.ingest.importers.epic_kitchens import unambiguous_segments

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")


def _labels(path):
    return [(float(a), float(b), c) for a, b, c in list(csv.reader(path.open()))[1:]]


@pytest.fixture(scope="module")
def epic(tmp_path_factory) -> dict:
    return fx.build(tmp_path_factory.mktemp("epic"))


def _import(src, out, *extra) -> dict:
    res = ok(runner.invoke(app, ["import", "epic-kitchens", str(src), "--out", str(out), "--json", *extra]))
    return json.loads(res.stdout)


def test_epic_import_end_to_end(epic, tmp_path, monkeypatch):
    src, raw = epic["src"], tmp_path / "raw"
    rep = _import(src, raw)
    assert rep["recordings"] == sorted(fx.EXPECTED)
    skipped = {s["recording"]: s for s in rep["skipped"]}
    assert set(skipped) == {"P01_01", "P02_103", "P02_104"}
    assert "EPIC-55" in skipped["P01_01"]["problem"] and skipped["P02_103"]["problem"] == "video missing"
    assert "no P02_104-gyro.csv" in skipped["P02_104"]["problem"]
    assert any("1 test video(s) not imported" in n for n in rep["notes"])
    meta = json.loads((raw / "P01_101" / "meta.json").read_text())
    assert meta["subject"] == "P01" and meta["split"] == "train" and meta["ambiguous_s"] == pytest.approx(0.5)
    st = meta["streams"]
    assert st["video"]["file"] == st["audio"]["file"] == "video.mp4"  # the audio track of the MP4
    assert st["video"]["clock"] == st["audio"]["clock"] == st["imu"]["clock"] == "gopro"
    assert st["imu"]["rate_hz"] == pytest.approx(200.0) and st["imu"]["gyr_rate_hz"] == pytest.approx(400.0)
    assert st["imu"]["units"]["acc_y"] == "m/s^2" and st["imu"]["units"]["gyr_x"] == "rad/s"
    assert (raw / "P01_101" / "video.mp4").samefile(src / "P01" / "videos" / "P01_101.MP4")
    rows = list(csv.reader((raw / "P01_101" / "imu.csv").open()))
    assert rows[0] == ["t", "acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z"]
    data = np.array([[float(v) if v else np.nan for v in r] for r in rows[1:]])
    assert data[0, 0] == pytest.approx(epic["acc_t0"]) and data[1, 0] - data[0, 0] == pytest.approx(epic["acc_step"])
    assert data[:, 2] == pytest.approx(9.81)  # m/s^2 as GoPro stores it: unchanged
    inside = np.isfinite(data[:, 4])
    assert inside.mean() > 0.99  # the gyro covers 1 ms .. 12 s: accl rows past its last sample are NaN
    np.testing.assert_allclose(data[inside, 4:7], np.array([fx.gyr_fn(t) for t in data[inside, 0]]), atol=2e-6)
    for vid, want in fx.EXPECTED.items():
        got = _labels(raw / vid / "labels.csv")
        assert [g[2] for g in got] == [w[2] for w in want], vid
        np.testing.assert_allclose([g[:2] for g in got], [w[:2] for w in want], atol=0.05)
    splits = json.loads((raw / "splits.json").read_text())
    assert splits["protocols"]["official"] == {"train": ["P01_101", "P02_101"], "test": ["P01_102", "P02_102"]}
    ok(runner.invoke(app, ["validate", str(raw), "--deep"]))
    monkeypatch.chdir(tmp_path)
    ok(runner.invoke(app, ["preprocess", "raw", "--out", "shards"]))
    res = ok(runner.invoke(app, ["pretrain", "--modality", "imu", "--d", "16", "--epochs", "1", "--threads", "1",
                                  "--batch-size", "8", "--block-s", "4", "--json", "--quiet"]))
    run = json.loads(res.stdout)
    assert run["epochs_run"] == 1 and run["n_windows"]["train"] > 0
    ev = json.loads(ok(runner.invoke(app, ["evaluate", run["run_dir"], "--json", "--threads", "1"])).stdout)
    assert set(ev["per_class"]) <= {"take", "put", "wash", "open"} and 0.0 <= ev["macro_f1"] <= 1.0


def test_epic_subjects_copy_and_video_only(epic, tmp_path):
    src = epic["src"]
    rep = _import(src, tmp_path / "p02", "--subjects", "P02", "--copy")
    assert rep["recordings"] == ["P02_101", "P02_102"]
    assert {s["recording"] for s in rep["skipped"]} == {"P02_103", "P02_104"}
    v = tmp_path / "p02" / "P02_101" / "video.mp4"
    assert not v.samefile(src / "P02" / "videos" / "P02_101.MP4") and os.stat(v).st_nlink == 1
    assert v.read_bytes() == (src / "P02" / "videos" / "P02_101.MP4").read_bytes()
    rep = run_import("epic-kitchens", src, tmp_path / "vo", subjects=["P01", "P02"], video_only=True)
    assert "P01_01" in rep.written and "P02_104" in rep.written and "P02_103" not in rep.written
    meta = json.loads((tmp_path / "vo" / "P01_01" / "meta.json").read_text())
    assert set(meta["streams"]) == {"video", "audio"}
    assert _labels(tmp_path / "vo" / "P01_01" / "labels.csv") == [(1.0, 4.0, "take")]
    assert any("P02_104: no P02_104-gyro.csv: imported video-only" in n for n in rep.notes)


def test_overlapping_actions_keep_only_time_with_one_verb():
    segs = [(0.0, 10.0, "take"), (2.0, 3.0, "open"), (9.0, 12.0, "take"), (12.0, 13.0, "put"), (20.0, 21.0, "put")]
    out, ambiguous = unambiguous_segments(segs)
    assert out == [(0.0, 2.0, "take"), (3.0, 12.0, "take"), (12.0, 13.0, "put"), (20.0, 21.0, "put")]
    assert ambiguous == pytest.approx(1.0)
    assert all(b0 <= a1 for (_, b0, _), (a1, _, _) in zip(out, out[1:]))  # labels.csv: no overlaps
    assert unambiguous_segments([(1.0, 2.0, "a"), (1.0, 2.0, "b")]) == ([], pytest.approx(1.0))


def test_not_epic_folder_fails_with_a_message(tmp_path):
    (tmp_path / "P01" / "videos").mkdir(parents=True)
    res = runner.invoke(app, ["import", "epic-kitchens", str(tmp_path), "--out", str(tmp_path / "raw")])
    assert res.exit_code == 1 and "EPIC_100_train.csv" in res.stderr and "Traceback" not in res.output + res.stderr
