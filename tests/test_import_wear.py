"""`dcat import wear` end to end on a tiny fixture of the WEAR download (tests/importfix_wear.py):
import -> meta/units/segments/protocols -> validate --deep -> preprocess -> pretrain 1 epoch
(--split official) -> evaluate; the authors' JSON quirks counted; a broken subject reported;
labels="json"; --subjects; --copy vs link."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
from typer.testing import CliRunner

import importfix_wear as fx
from dcat_cli.main import app
from importfix_common import ok, pretrain_and_evaluate
from pipelines.ingest.importers.base import G

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = tmp_path_factory.mktemp("wear")
    src = fx.build(root)
    out = root / "raw"
    res = ok(runner.invoke(app, ["import", "wear", str(src), "--out", str(out), "--json"]))
    return src, out, json.loads(res.stdout)


def _labels(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["start", "end", "label"]
    return [(float(a), float(b), c) for a, b, c in rows[1:]]


def _expected_runs(sbj):
    out, i = [], 0
    for n, lab in fx.PLAN[sbj]:
        if lab is not None:
            out.append((i / 50, (i + n) / 50, lab))
        i += n
    return out


def test_import_streams_units_and_segments(imported):
    src, out, rep = imported
    assert rep["recordings"] == ["sbj_0", "sbj_1", "sbj_2"]
    assert [s["recording"] for s in rep["skipped"]] == ["sbj_3"]
    assert "left_arm_acc_x" in rep["skipped"][0]["problem"]
    m = json.loads((out / "sbj_0/meta.json").read_text())
    assert m["subject"] == "sbj_0" and set(m["streams"]) == {"video", "audio", "imu"}
    assert m["streams"]["audio"]["file"] == "video.mp4"  # the GoPro container's audio track
    assert (out / "sbj_0/video.mp4").samefile(src / "raw/videos/sbj_0.mp4")
    assert "audio" not in json.loads((out / "sbj_1/meta.json").read_text())["streams"]  # no audio track
    imu = m["streams"]["imu"]
    assert imu["rate_hz"] == 50.0 and imu["clock"] == "watches"
    assert imu["units"]["left_arm_acc_z"] == "m/s^2" and imu["source_units"]["left_arm_acc_z"] == "g"
    assert set(imu["roles"].values()) == {"acc"}
    for s in (0, 1):  # sbj_1's CSV has its columns in another order: read by name
        with open(out / f"sbj_{s}/imu.csv", newline="") as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["t", *fx.HEADER[1:13]]
        a = np.array(rows[1:], dtype=float)
        n = sum(k for k, _ in fx.PLAN[s])
        assert a.shape == (n, 13) and np.allclose(a[:, 0], np.arange(n) / 50)
        assert np.allclose(a[:, 1:], fx.acc_rows(s, n) * G, atol=1e-4)  # g -> m/s^2
    assert a[0, 1] == pytest.approx((1 + 0.3 * np.sin(1.0) * 0.5) * 9.80665, abs=1e-4)
    for s in (0, 1, 2):  # segments = the CSV's runs, not the JSON's shifted ones
        assert _labels(out / f"sbj_{s}/labels.csv") == _expected_runs(s)
    assert _labels(out / "sbj_0/labels.csv")[0] == (2.0, 10.0, "jogging")
    chk = m["annotation_check"]
    assert chk == {"csv_segments": 3, "json_segments": 2, "json_start_one_sample_late": 2,
                   "csv_runs_missing_from_json": 1}
    assert any("4 segments one sample (20 ms) late and lack 2 runs" in n for n in rep["notes"])


def test_protocols_from_the_split_files(imported):
    _, out, rep = imported
    assert rep["protocols"] == ["wear_split_1", "wear_split_2", "wear_split_3"]
    doc = json.loads((out / "splits.json").read_text())
    assert doc["default"] == "wear_split_1"
    for k, held in enumerate(("sbj_0", "sbj_1", "sbj_2"), start=1):
        p = doc["protocols"][f"wear_split_{k}"]
        assert p["test"] == [held] and set(p["train"]) == {"sbj_0", "sbj_1", "sbj_2"} - {held}
    assert any("wear_split_4" in n for n in rep["notes"])  # sbj_3 was not imported


def test_validate_preprocess_pretrain_evaluate(imported, tmp_path, monkeypatch):
    _, out, _ = imported
    ok(runner.invoke(app, ["validate", str(out), "--deep"]))
    shards = tmp_path / "shards"
    info = json.loads(ok(runner.invoke(app, ["preprocess", str(out), "--out", str(shards), "--video-size", "64",
                                              "--json"])).stdout)
    assert info["ok"] == 3 and info["failed"] == 0 and info["windows_kept"] > 20
    monkeypatch.chdir(tmp_path)
    run, rep = pretrain_and_evaluate(runner, app, shards)
    assert run["epochs_run"] == 1 and run["n_windows"]["test"] > 0
    assert rep["subjects"] == ["sbj_0"] and 0.0 <= rep["macro_f1"] <= 1.0


def test_json_labels_reproduce_the_released_annotations(imported, tmp_path):
    from pipelines.ingest.importers.wear import prepare

    src, _, _ = imported
    rep = prepare(src, tmp_path / "raw", subjects=["0"], labels="json", background=None)
    assert rep.written == ["sbj_0"]
    assert _labels(tmp_path / "raw/sbj_0/labels.csv") == [(2.02, 10.0, "jogging"), (10.02, 14.0, "push-ups")]
    rep = prepare(src, tmp_path / "raw2", subjects=["sbj_1"], background="null")
    segs = _labels(tmp_path / "raw2/sbj_1/labels.csv")
    assert segs[0] == (0.0, 1.0, "null") and segs[-1] == (19.0, 20.0, "null") and len(segs) == 5


def test_subjects_filter_and_copy(imported, tmp_path):
    src, _, _ = imported
    out = tmp_path / "raw"
    rep = json.loads(ok(runner.invoke(app, ["import", "wear", str(src), "--out", str(out), "--subjects", "0,sbj_2",
                                             "--copy", "--json"])).stdout)
    assert rep["recordings"] == ["sbj_0", "sbj_2"] and rep["skipped"] == []
    v, orig = out / "sbj_2/video.mp4", src / "raw/videos/sbj_2.mp4"
    assert not v.samefile(orig) and os.stat(v).st_nlink == 1 and v.read_bytes() == orig.read_bytes()
    prot = json.loads((out / "splits.json").read_text())["protocols"]
    assert set(prot) == {"wear_split_1", "wear_split_3"}  # sbj_1's split has no test subject here
    assert prot["wear_split_1"] == {"train": ["sbj_2"], "test": ["sbj_0"]}


def test_not_a_wear_folder_fails_with_a_message(tmp_path):
    (tmp_path / "src" / "raw").mkdir(parents=True)
    res = runner.invoke(app, ["import", "wear", str(tmp_path / "src"), "--out", str(tmp_path / "raw")])
    assert res.exit_code == 1 and "no WEAR subject found" in res.stderr and "Traceback" not in res.output
