"""`dcat import table --mapping map.toml`: PAMAP2-like, WISDM-like, lab-session and label-table fixtures
(tests/importfix_table.py) imported through the CLI, checked against the values the fixtures wrote,
validated, and (PAMAP2) preprocessed, pretrained one epoch and evaluated."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import importfix_table as fx
from dcat_cli.main import app
from importfix_common import ok, read_imu

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")


def _import(src: Path, toml: str, out: Path, *extra: str) -> dict:
    mp = src.parent / f"{out.name}.toml"
    mp.write_text(toml)
    res = ok(runner.invoke(app, ["import", "table", str(src), "--out", str(out), "--mapping", str(mp), "--json",
                                  *extra]))
    return json.loads(res.stdout)


def _labels(path: Path) -> list[tuple[float, float, str]]:
    return [(float(a), float(b), c) for a, b, c in list(csv.reader(path.open()))[1:]]


@pytest.fixture(scope="module")
def srcs(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("tables")
    out = {}
    out["pamap2"] = (root / "PAMAP2_Dataset", fx.pamap2(root / "PAMAP2_Dataset"))
    (root / "wisdm").mkdir()
    w = fx.wisdm(root / "wisdm")
    (root / "wisdm" / "WISDM_ar_v1.1_raw.txt").write_text(w["text"])
    out["wisdm"] = (root / "wisdm", w)
    out["lab"] = (root / "lab", fx.lab_sessions(root / "lab"))
    out["trials"] = (root / "trials", fx.trials_with_label_table(root / "trials"))
    return out


def test_pamap2_like_end_to_end(srcs, tmp_path, monkeypatch):
    src, known = srcs["pamap2"]
    raw = tmp_path / "raw"
    rep = _import(src, fx.PAMAP2_TOML, raw)
    assert rep["recordings"] == ["subject101", "subject102"] and rep["skipped"] == [] and rep["protocols"] == ["xsub"]
    meta = json.loads((raw / "subject101" / "meta.json").read_text())
    assert meta["subject"] == "101" and set(meta["streams"]) == {"imu_hand", "imu_chest", "imu_ankle"}
    hand = meta["streams"]["imu_hand"]
    assert hand["rate_hz"] == 100 and hand["clock"] == meta["streams"]["imu_ankle"]["clock"]  # one clock: one file
    assert hand["units"]["acc_x"] == "m/s^2" and hand["units"]["gyr_z"] == "rad/s" and hand["roles"]["mag_y"] == "mag"
    assert meta["source_t0_s"] == pytest.approx(known["t0"])
    header, data = read_imu(raw / "subject102" / "imu_ankle.csv")
    assert header == ["t", "acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z"] and len(data) == known["n"]
    assert data[0, 0] == 0.0 and data[1, 0] == pytest.approx(0.01)
    assert data[0, 2] == pytest.approx(known["first_acc_y"], rel=1e-5)  # already m/s^2 in PAMAP2: unchanged
    _, hand_data = read_imu(raw / "subject101" / "imu_hand.csv")
    assert np.isnan(hand_data[500:505, 1:4]).all() and np.isfinite(hand_data[505, 1:4]).all()  # the dropped packet
    expected, t = [], 0.0  # runs of the plan, transients (0) left unlabelled
    for act, sec in fx.PAMAP2_PLAN:
        if act:
            expected.append((t, t + sec, fx.PAMAP2_NAMES[act]))
        t += sec
    got = _labels(raw / "subject101" / "labels.csv")
    assert [g[2] for g in got] == [e[2] for e in expected]
    np.testing.assert_allclose([g[:2] for g in got], [e[:2] for e in expected], atol=0.011)
    splits = json.loads((raw / "splits.json").read_text())
    assert splits["protocols"]["xsub"] == {"train": ["subject101"], "test": ["subject102"]}
    ok(runner.invoke(app, ["validate", str(raw), "--deep"]))
    monkeypatch.chdir(tmp_path)
    ok(runner.invoke(app, ["preprocess", "raw", "--out", "shards"]))
    res = ok(runner.invoke(app, ["pretrain", "--modality", "imu_hand", "--d", "16", "--epochs", "1", "--threads", "1",
                                  "--batch-size", "16", "--json", "--quiet"]))
    run = json.loads(res.stdout)
    assert run["epochs_run"] == 1
    ev = json.loads(ok(runner.invoke(app, ["evaluate", run["run_dir"], "--json", "--threads", "1"])).stdout)
    assert set(ev["per_class"]) <= {"lying", "walking", "running"} and 0.0 <= ev["macro_f1"] <= 1.0
    # --subjects filters by the dataset's names (the pattern's group), before the file is read
    rep = _import(src, fx.PAMAP2_TOML, tmp_path / "only102", "--subjects", "102")
    assert rep["recordings"] == ["subject102"] and "protocol xsub: not written" in " ".join(rep["notes"])


def test_wisdm_like_splits_users_gaps_and_clock_resets(srcs, tmp_path):
    src, known = srcs["wisdm"]
    raw = tmp_path / "raw"
    rep = _import(src, fx.WISDM_TOML, raw)
    base = "WISDM_ar_v1.1_raw"
    assert rep["recordings"] == [f"{base}_33_p01", f"{base}_33_p02", f"{base}_17_p01", f"{base}_17_p02"]
    notes = " ".join(rep["notes"])
    assert "1 malformed rows dropped" in notes and "3 fields, need 6" in notes and "1 rows without a time" in notes
    assert _labels(raw / f"{base}_33_p01" / "labels.csv") == [(0.0, 20.0, "Jogging"), (20.0, 40.0, "Walking")]
    assert _labels(raw / f"{base}_33_p02" / "labels.csv") == [(0.0, 15.0, "Walking")]
    meta = json.loads((raw / f"{base}_17_p02" / "meta.json").read_text())
    assert meta["subject"] == "17" and meta["source_t0_s"] == pytest.approx(1.0)  # after the clock reset
    header, data = read_imu(raw / f"{base}_17_p01" / "imu.csv")
    first = known["lines"][0].rstrip(";").split(",")  # user 33's first line; user 17's first comes later
    assert header == ["t", "acc_x", "acc_y", "acc_z"] and len(data) == 401 and np.isnan(data[-1, 3])  # ';' stripped
    x33 = read_imu(raw / f"{base}_33_p01" / "imu.csv")[1]
    assert x33[0, 1:] == pytest.approx([float(v) for v in first[3:]], rel=1e-6) and x33[1, 0] == pytest.approx(0.05)
    ok(runner.invoke(app, ["validate", str(raw), "--deep"]))
    rep = _import(src, fx.WISDM_TOML, tmp_path / "u17", "--subjects", "17")
    assert rep["recordings"] == [f"{base}_17_p01", f"{base}_17_p02"]


def test_lab_sessions_convert_units_and_link_or_copy_video(srcs, tmp_path):
    src, known = srcs["lab"]
    raw = tmp_path / "raw"
    rep = _import(src, fx.LAB_TOML, raw)
    assert rep["recordings"] == ["P01_S1", "P01_S2", "P02_S1"]
    assert any("P02_S1: no video" in n for n in rep["notes"])
    meta = json.loads((raw / "P01_S1" / "meta.json").read_text())
    assert meta["subject"] == "P01" and meta["session"] == "S1" and meta["source_t0_s"] == pytest.approx(1.0)
    imu = meta["streams"]["imu"]
    assert imu["source_units"]["acc_x"] == "g" and imu["units"]["acc_x"] == "m/s^2"
    assert imu["source_units"]["gyr_y"] == "deg/s" and imu["units"]["gyr_y"] == "rad/s"
    assert meta["streams"]["audio"]["file"] == meta["streams"]["video"]["file"] == "video.mp4"
    assert "audio" not in json.loads((raw / "P01_S2" / "meta.json").read_text())["streams"]  # its mp4 has no audio
    assert set(json.loads((raw / "P02_S1" / "meta.json").read_text())["streams"]) == {"imu"}
    _, data = read_imu(raw / "P01_S1" / "imu.csv")
    assert data[0, 1:] == pytest.approx([0.5 * 9.80665, 9.80665, 0.0, np.pi / 2, -np.pi, 0.0], rel=1e-6)
    assert data[-1, 1:3] == pytest.approx([0.0, 9.80665]) and data[1, 0] == pytest.approx(0.02)
    # empty cells = unlabelled; a label holding a comma comes back whole (quoted in labels.csv)
    assert _labels(raw / "P01_S1" / "labels.csv") == [(0.0, 8.0, "walk"), (10.0, 20.0, "sit, relaxed")]
    assert (raw / "P01_S1" / "video.mp4").samefile(src / "sessions" / "P01_S1.mp4")
    ok(runner.invoke(app, ["validate", str(raw), "--deep"]))
    copied = tmp_path / "copied"
    _import(src, fx.LAB_TOML, copied, "--copy")
    v = copied / "P01_S1" / "video.mp4"
    assert not v.samefile(src / "sessions" / "P01_S1.mp4") and os.stat(v).st_nlink == 1
    assert v.read_bytes() == (src / "sessions" / "P01_S1.mp4").read_bytes()
    req = fx.LAB_TOML.replace('file = "{dir}/{stem}.mp4"', 'file = "{dir}/{stem}.mp4"\nrequired = true')
    rep = _import(src, req, tmp_path / "req")
    assert rep["recordings"] == ["P01_S1", "P01_S2"]
    assert rep["skipped"] == [{"recording": "P02_S1", "file": "sessions/P02_S1.mp4",
                               "problem": "video missing (video.required = true)"}]


def test_label_table_segments_whole_labels_and_a_file_without_a_row(srcs, tmp_path):
    src, truth = srcs["trials"]
    rep = _import(src, fx.TRIALS_TOML, tmp_path / "raw")
    ids = [f"trials_{k}" for k in truth if k != "s2_trial3"]
    assert rep["recordings"] == ids
    assert rep["skipped"] == [{"recording": "trials_s2_trial3", "file": "trials/s2/trial3.csv",
                               "problem": "no row for this file in the label table labels.csv"}]
    assert "trials/s9/trial1.csv" in " ".join(rep["notes"])
    for rid in ids:
        assert _labels(tmp_path / "raw" / rid / "labels.csv") == [(0.5, 5.5, truth[rid[len("trials_"):]])]
    meta = json.loads((tmp_path / "raw" / "trials_s2_trial1" / "meta.json").read_text())
    assert meta["subject"] == "s2" and meta["streams"]["imu"]["source_units"]["acc_y"] == "mg"
    _, data = read_imu(tmp_path / "raw" / "trials_s2_trial1" / "imu.csv")
    assert data[:, 2] == pytest.approx(9.80665) and data[3, 0] == pytest.approx(3 / 50) and len(data) == 300
    ok(runner.invoke(app, ["validate", str(tmp_path / "raw"), "--deep"]))
    whole = fx.TRIALS_TOML.replace('start = "start_s"\nend = "end_s"\n', "")
    _import(src, whole, tmp_path / "whole")
    meta = json.loads((tmp_path / "whole" / "trials_s1_trial2" / "meta.json").read_text())
    assert meta["label"] == "squat" and not (tmp_path / "whole" / "trials_s1_trial2" / "labels.csv").exists()


INDEX_TOML = """
[files]
glob = "*.csv"
[subject]
value = "me"
[time]
column = "idx"
unit = "index"
rate_hz = 25
[streams.emg]
other = { columns = ["volt"], unit = "V" }
[labels]
column = "label"
"""


def test_sample_index_time_other_channels_and_a_bad_label(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.csv").write_text("idx,volt,label\n" + "".join(f"{i},{i % 7},{'x' if i < 50 else 'y'}\n"
                                                             for i in range(100)))
    (src / "b.csv").write_text("idx,volt,label\n" + "".join(f"{i},1,bad\x07label\n" for i in range(100)))
    rep = _import(src, INDEX_TOML, tmp_path / "raw")
    assert rep["recordings"] == ["a"] and rep["skipped"][0]["recording"] == "b"
    assert "control character" in rep["skipped"][0]["problem"]
    meta = json.loads((tmp_path / "raw" / "a" / "meta.json").read_text())
    assert meta["subject"] == "me" and meta["streams"]["emg"]["units"] == {"other_1": "V"}
    assert meta["streams"]["emg"]["roles"] == {"other_1": "other"}
    header, data = read_imu(tmp_path / "raw" / "a" / "emg.csv")
    assert header == ["t", "other_1"] and data[3, 0] == pytest.approx(3 / 25) and data[8, 1] == 1.0
    assert _labels(tmp_path / "raw" / "a" / "labels.csv") == [(0.0, 2.0, "x"), (2.0, 4.0, "y")]


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace('unit = "g" }', 'unit = "g", colums = [1] }'), "[streams.imu.acc]: unknown key 'colums'"),
    (lambda t: t + "\n[extra]\nx = 1\n", "unknown table or key 'extra'"),
    (lambda t: t.replace('unit = "ms"', 'unit = "minutes"'), "[time]: unit must be one of"),
    (lambda t: t.replace('unit = "deg/s"', 'unit = "rpm"'), "unit 'rpm' is not one dcat converts for gyr"),
    (lambda t: t.replace('[labels]\ncolumn = "label"', '[labels]\nignore = ["x"]'), "give labels.column"),
    (lambda t: t.replace("rate_hz = 50", "rate_hz = -5"), "rate_hz must be a finite positive number"),
    (lambda t: t.replace("glob =", "globb ="), "[files]: unknown key 'globb'"),
])
def test_mapping_is_checked_strictly(srcs, tmp_path, edit, message):
    src, _ = srcs["lab"]
    mp = tmp_path / "bad.toml"
    mp.write_text(edit(fx.LAB_TOML))
    res = runner.invoke(app, ["import", "table", str(src), "--out", str(tmp_path / "raw"), "--mapping", str(mp)])
    assert res.exit_code == 1 and message in res.stderr and "Traceback" not in res.output + res.stderr
    assert str(mp) in res.stderr
    assert not (tmp_path / "raw").exists() or not any((tmp_path / "raw").iterdir())


def test_missing_mapping_and_parquet(srcs, tmp_path):
    src, _ = srcs["lab"]
    res = runner.invoke(app, ["import", "table", str(src), "--out", str(tmp_path / "raw")])
    assert res.exit_code == 1 and "--mapping" in res.stderr
    pq_src = tmp_path / "pq"
    (pq_src / "sessions").mkdir(parents=True)
    rows = list(csv.reader((src / "sessions" / "P01_S1.csv").open()))
    toml = fx.LAB_TOML.replace("sessions/*.csv", "sessions/*.parquet")
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ModuleNotFoundError:
        (pq_src / "sessions" / "P01_S1.parquet").write_bytes(b"PAR1 not really")
        mp = tmp_path / "pq.toml"
        mp.write_text(toml)
        res = runner.invoke(app, ["import", "table", str(pq_src), "--out", str(tmp_path / "raw"), "--mapping", str(mp)])
        assert res.exit_code == 1 and "pip install pyarrow" in res.stderr
        return
    cols = {h: [r[i] for r in rows[1:]] for i, h in enumerate(rows[0])}
    tab = pa.table({h: (v if h == "label" else [float(x) for x in v]) for h, v in cols.items()})
    pq.write_table(tab, pq_src / "sessions" / "P01_S1.parquet")
    rep = _import(pq_src, toml, tmp_path / "raw")
    assert rep["recordings"] == ["P01_S1"]
    assert _labels(tmp_path / "raw" / "P01_S1" / "labels.csv") == [(0.0, 8.0, "walk"), (10.0, 20.0, "sit, relaxed")]
