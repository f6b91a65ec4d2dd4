"""`dcat predict RUN - --stream`: a recording's imu.csv piped through stdin gives the windows, labels and
probabilities of `dcat predict RUN <recording folder>`; gaps, NaN cells, bad times and bad lines are
handled as preprocessing handles them; output comes window by window; strict JSON."""

from __future__ import annotations

import io
import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from _strict_json import strict_loads
from dcat_cli.main import app
from pipelines.core.errors import DcatError, RecordingError
from pipelines.deploy.stream import Predictor, spec_from_checkpoint, stream_predict
from pipelines.learn.predict import predict

SAMPLE_DATA = Path(__file__).resolve().parents[1] / "sample_data"
PROB_TOL = 1e-5  # one window at a time vs a batch of 64: measured differences are ~6e-8
REACH_S = 10 / 50.0  # the anti-alias filter's reach at 50 Hz after 100 Hz input (k = 2)


@pytest.fixture(scope="module")
def imu_run(tiny_run):
    return tiny_run("imu")


@pytest.fixture(scope="module")
def predictor(imu_run):
    return Predictor(imu_run, device="cpu", threads=1)


def _stream(predictor, lines) -> tuple[list[dict], dict]:
    out = io.StringIO()
    counts = stream_predict(predictor, lines, out)
    return [strict_loads(line) for line in out.getvalue().splitlines()], counts


def _offset(rec: Path) -> float:
    return float(json.loads((rec / "meta.json").read_text())["streams"]["imu"].get("clock_offset_s", 0.0))


def _assert_same_as_predict(predictor, imu_run, rec: Path) -> list[dict]:
    """Streamed windows == `predict` on the folder (times on the CSV clock; the folder's are on the
    recording clock, ``clock_offset_s`` later); the windows predict left out are exactly the skipped ones."""
    rows, _ = _stream(predictor, (rec / "imu.csv").read_text().splitlines(keepends=True))
    ref = {round(r["start_s"] - _offset(rec), 4): r for r in predict(imu_run, rec, device="cpu")["rows"]}
    kept = [r for r in rows if "skipped" not in r]
    assert {round(r["start_s"], 4) for r in kept} == set(ref)
    for r in kept:
        b = ref[round(r["start_s"], 4)]
        assert r["end_s"] - r["start_s"] == pytest.approx(b["end_s"] - b["start_s"], abs=1e-6)
        assert r["pred"] == b["pred"]
        for k in r:
            if k.startswith("prob"):
                assert abs(r[k] - b[k]) < PROB_TOL, (k, r[k], b[k])
    starts = np.array([r["start_s"] for r in rows])
    assert np.allclose(np.diff(starts), 1.0)  # one grid, stride 1 s, no window missing
    return rows


def test_stream_matches_predict_on_the_recording(predictor, imu_run, tiny_raw):
    rows = _assert_same_as_predict(predictor, imu_run, tiny_raw / "s01_r01")
    assert len(rows) >= 8 and not any("skipped" in r for r in rows)
    # s02_r01's IMU holds gaps (the generator's dropouts): predict drops those windows, the stream says so
    rows = _assert_same_as_predict(predictor, imu_run, tiny_raw / "s02_r01")
    assert {r.get("skipped") for r in rows if "skipped" in r} == {"gap"}


def test_first_window_kept_despite_float_noise(predictor, imu_run):
    """sample_data/s02_r01: the grid arithmetic puts the first window's first filter instant 1e-16 s
    before the first sample; the stream keeps that window, as `predict` does on the folder."""
    rows = _assert_same_as_predict(predictor, imu_run, SAMPLE_DATA / "s02_r01")
    assert "skipped" not in rows[0] and not any("skipped" in r for r in rows)


def test_header_optional_and_channels_picked_by_name(predictor, tiny_raw):
    lines = (tiny_raw / "s01_r01" / "imu.csv").read_text().splitlines(keepends=True)
    full, _ = _stream(predictor, lines)
    assert _stream(predictor, lines[1:])[0] == full  # no header: the model's channels in its order
    header = lines[0].strip().split(",")
    perm = [0, 3, 1, 6, 2, 5, 4]  # shuffled columns plus one the model does not read
    shuffled = [",".join([header[i] for i in perm] + ["temp"]) + "\n"]
    for line in lines[1:]:
        f = line.strip().split(",")
        shuffled.append(",".join([f[i] for i in perm] + ["21.5"]) + "\n")
    assert _stream(predictor, shuffled)[0] == full
    with pytest.raises(RecordingError, match=r"line 1: the header .* lacks the channels \['gyr_x'\]"):
        _stream(predictor, [lines[0].replace("gyr_x", "gyro_x")] + lines[1:])


def test_gap_and_nan_windows_are_skipped_where_preprocessing_drops_them(predictor, imu_run, tiny_raw, tmp_path):
    rec = tmp_path / "s01_r01"
    shutil.copytree(tiny_raw / "s01_r01", rec)
    lines = (rec / "imu.csv").read_text().splitlines(keepends=True)
    t = np.array([float(ln.split(",")[0]) for ln in lines[1:]])
    drop = (t >= 5.0) & (t < 5.5)  # a 0.5 s hole: 50 periods at 100 Hz, far over the 2.5-period gap threshold
    nan_at = int(np.searchsorted(t, 9.3))  # one empty cell at t ~ 9.3 s
    body = [ln for ln, d in zip(lines[1:], drop) if not d]
    k = nan_at - int(drop[:nan_at].sum())
    f = body[k].split(",")
    body[k] = ",".join([f[0], "", *f[2:]])
    (rec / "imu.csv").write_text(lines[0] + "".join(body))
    rows = _assert_same_as_predict(predictor, imu_run, rec)  # the same windows as preprocessing keeps
    # and the skipped ones are where the filter's reach touches the hole or the NaN sample
    g0, g1, tn = t[~drop][t[~drop] < 5.0][-1], t[drop.argmax() + drop.sum()], t[nan_at]
    for r in rows:
        a, b = r["start_s"] - REACH_S, r["start_s"] + 2.0 - 0.02 + REACH_S  # instants the window's filter reads
        want = "gap" if (a < g1 and b > g0) else "nan" if (a <= tn + 0.01 and b >= tn - 0.01) else None
        assert r.get("skipped") == want, (r, g0, g1, tn)
    assert sum("skipped" in r for r in rows) == 3 + 2


def test_bad_time_stops_like_preprocessing(predictor, tiny_raw):
    lines = (tiny_raw / "s01_r01" / "imu.csv").read_text().splitlines(keepends=True)
    for bad in ([*lines[:600], lines[601], lines[600], *lines[602:]],  # two rows swapped: line 602 goes back
                [*lines[:602], lines[601], *lines[602:]]):  # a repeated row: line 603 has line 602's time
        out = io.StringIO()
        with pytest.raises(RecordingError, match=r"stdin: -: line 60[23]: timestamps are not strictly increasing"):
            stream_predict(predictor, bad, out)
        # the windows completed before the bad line are out already (t ~ 5.2 s: windows ending by ~4.8 s)
        done = [strict_loads(x) for x in out.getvalue().splitlines()]
        assert [r["start_s"] for r in done] == pytest.approx([-0.5905, 0.4095, 1.4095, 2.4095], abs=1e-6)


def test_malformed_line_exits_1_naming_the_line(imu_run, tiny_raw):
    lines = (tiny_raw / "s01_r01" / "imu.csv").read_text().splitlines(keepends=True)
    runner = CliRunner()

    def run(text: str | bytes):
        return runner.invoke(app, ["predict", str(imu_run), "-", "--stream", "--device", "cpu"], input=text)

    f = lines[40].split(",")
    res = run("".join(lines[:40] + [",".join([f[0], f[1], "abc", *f[3:]])] + lines[41:]))
    assert res.exit_code == 1
    assert "line 41, column 3: 'abc' is not a number" in res.stderr and "Traceback" not in res.stderr
    res = run("".join(lines[:30] + [lines[30].rsplit(",", 1)[0] + "\n"] + lines[31:]))
    assert res.exit_code == 1 and "line 31: 6 fields, expected 7" in res.stderr
    res = run("".join(lines[:50]).encode() + b"4.1,\xff\n" + "".join(lines[51:]).encode())
    assert res.exit_code == 1 and "line 51: not UTF-8 text" in res.stderr
    res = runner.invoke(app, ["predict", str(imu_run), str(tiny_raw / "s01_r01"), "--stream"])
    assert res.exit_code == 1 and "use INPUT `-` together with --stream" in res.stderr


def test_an_exported_model_streams_the_same(predictor, imu_run, tiny_raw, tmp_path):
    from pipelines.deploy.export import export_run

    export_run(imu_run, "torchscript", out=tmp_path / "model.pt")
    exported = Predictor(tmp_path / "model.pt", threads=1)
    assert exported.exported and exported.spec == predictor.spec
    lines = (tiny_raw / "s02_r01" / "imu.csv").read_text().splitlines(keepends=True)
    a, b = _stream(predictor, lines)[0], _stream(exported, lines)[0]
    assert [(r["start_s"], r.get("pred"), r.get("skipped")) for r in a] == \
        [(r["start_s"], r.get("pred"), r.get("skipped")) for r in b]
    assert max(abs(x[k] - y[k]) for x, y in zip(a, b) for k in x if k.startswith("prob")) < PROB_TOL


def test_video_models_are_refused():
    ck = {"stream": "video", "kind": "video", "data": {"kind": "video"}, "classes": ["a"]}
    with pytest.raises(DcatError, match="supports IMU and audio targets; this model reads the video stream 'video'"):
        spec_from_checkpoint(ck, "run/best.pt")


def _read_lines(fd: int, n: int, timeout: float) -> list[str]:
    """``n`` lines from the pipe ``fd`` (unbuffered reads, so nothing waits in a Python buffer)."""
    buf, deadline = b"", time.monotonic() + timeout
    while buf.count(b"\n") < n:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"{len(buf.splitlines())} of {n} lines within {timeout} s"
        chunk = os.read(fd, 1 << 16)
        assert chunk, "the process closed its output"
        buf += chunk
    lines = buf.decode().splitlines()
    assert len(lines) == n, lines  # nothing beyond the n lines yet
    return lines


def test_windows_come_out_before_the_input_ends(imu_run, tiny_raw):
    """A real pipeline: half the lines written, the windows they complete are read before stdin closes;
    then the reader quits (closed pipe) and dcat exits 0 without a traceback."""
    lines = (tiny_raw / "s01_r01" / "imu.csv").read_text().splitlines(keepends=True)
    half = len(lines) // 2  # up to t ~ 5.2 s: the windows from -0.59 s and 0.41 s ... 2.41 s are complete
    proc = subprocess.Popen([sys.executable, "-m", "dcat_cli.main", "predict", str(imu_run), "-", "--stream",
                             "--device", "cpu"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, bufsize=1)
    try:
        proc.stdin.write("".join(lines[:half]))
        proc.stdin.flush()
        got = [strict_loads(line) for line in _read_lines(proc.stdout.fileno(), 4, 30.0)]
        assert [r["start_s"] for r in got] == pytest.approx([-0.5905, 0.4095, 1.4095, 2.4095], abs=1e-6)
        time.sleep(0.3)
        assert not select.select([proc.stdout], [], [], 0)[0]  # the next window needs samples not sent yet
        assert proc.poll() is None
        proc.stdout.close()  # the consumer quits
        try:
            proc.stdin.write("".join(lines[half:]))
            proc.stdin.close()
        except BrokenPipeError:
            pass
        assert proc.wait(30) == 0
        err = proc.stderr.read()
        assert "Traceback" not in err and "Broken pipe" not in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
