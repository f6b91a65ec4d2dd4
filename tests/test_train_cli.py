"""The training commands end to end through typer's CliRunner on a tiny fake subset."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from _fake_shards import write_fake_shards
from dcat_cli.main import app

runner = CliRunner()
TINY = ["--epochs", "2", "--batch-size", "16", "--threads", "1"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    write_fake_shards(d / "shards", subjects=("s01", "s02", "s03"), recordings_per_subject=2, duration_s=20.0,
                      streams=("video", "imu"), seed=5)
    return d


def _ok(res):
    assert res.exit_code == 0, res.output + res.stderr
    return res


def test_cli_chain_pretrain_transfer_evaluate_predict(workdir, monkeypatch):
    monkeypatch.chdir(workdir)  # --data shards/ and runs/ are the defaults
    _ok(runner.invoke(app, ["pretrain", "--modality", "video", "--d", "16", "--video-frames", "4",
                            "--block-s", "6", *TINY, "--quiet"]))
    res = _ok(runner.invoke(app, ["pretrain", "--modality", "imu", "--d", "16", "--block-s", "6", *TINY, "--json"]))
    info = json.loads(res.stdout)
    assert info["run_dir"] == "runs/imu-id" and info["epochs_run"] == 2
    assert "epoch 2" in res.stderr  # progress lines go to stderr, the result to stdout
    res = _ok(runner.invoke(app, ["transfer", "--src", "video", "--tgt", "imu", "--lambda", "0.5", "--norm", "seqlen",
                                  "--no-mcma", *TINY, "--json", "--quiet"]))
    t = json.loads(res.stdout)
    assert t["run_dir"] == "runs/video-to-imu-id" and t["cache"] and t["source_unchanged"]
    assert t["lam"] == 0.5 and t["norm"] == "seqlen" and t["mcma"] is False
    cfg = json.loads((workdir / "runs/video-to-imu-id/config.json").read_text())
    assert cfg["args"]["lam"] == 0.5 and cfg["split_from"].startswith("source")
    res = _ok(runner.invoke(app, ["evaluate", "runs/video-to-imu-id", "--json", "--threads", "1"]))
    rep = json.loads(res.stdout)
    assert rep["split"] == "test" and rep["stream"] == "imu" and 0.0 <= rep["macro_f1"] <= 1.0
    assert set(rep["per_class"]) == {"drink", "eat", "walk"}
    res = _ok(runner.invoke(app, ["evaluate", "runs/imu-id", "--threads", "1"]))
    assert "macro-F1" in res.stdout and "confusion" in res.stdout
    assert (workdir / "runs/imu-id/confusion-test.png").is_file()
    from pipelines.learn.evaluate import summarize_runs

    rows = {r["run"]: r for r in summarize_runs("runs")}
    assert set(rows) == {"imu-id", "video-to-imu-id"}  # video-id was not evaluated
    assert rows["video-to-imu-id"]["source"] == "video" and rows["video-to-imu-id"]["macro_f1"] == rep["macro_f1"]
    res = _ok(runner.invoke(app, ["predict", "runs/video-to-imu-id", "shards", "--format", "jsonl", "--threads", "1"]))
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(rows) == 6 * 19 and {"recording_id", "start_s", "end_s", "pred", "prob", "label"} <= set(rows[0])
    res = _ok(runner.invoke(app, ["predict", "runs/imu-id", "shards/s01_r00.h5", "--out", "pred.csv", "--threads", "1"]))
    lines = (workdir / "pred.csv").read_text().splitlines()
    assert lines[0].startswith("recording_id,subject,start_s,end_s,pred,prob,label") and len(lines) == 1 + 19


def test_cli_errors_exit_1_with_a_message_on_stderr(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    res = runner.invoke(app, ["transfer", "--src", "imu", "--tgt", "video", "--runs", "no_runs", *TINY])
    assert res.exit_code == 1
    assert "dcat pretrain --modality imu" in res.stderr and "Traceback" not in res.stderr + res.stdout
    res = runner.invoke(app, ["pretrain", "--modality", "audio", *TINY])
    assert res.exit_code == 1 and "stream 'audio' is not in these shards" in res.stderr
    res = runner.invoke(app, ["evaluate", "nowhere"])
    assert res.exit_code == 1 and "not a dcat run folder" in res.stderr
    res = runner.invoke(app, ["pretrain", "--modality", "imu", "--data", "missing", "--out", "runs/new", *TINY])
    assert res.exit_code == 1 and "manifest" in res.stderr


def test_cli_on_real_preprocessed_shards_and_a_raw_recording(tiny_raw, tiny_shards, tmp_path, monkeypatch):
    """The chain on shards written by `dcat preprocess` (conftest: 2 subjects x 12 s of synthetic
    recordings), out of distribution (s02 held out), then predict on s01's raw folder, which is
    preprocessed on the fly with the checkpoint's settings and the IMU stream only."""
    shards, _ = tiny_shards
    monkeypatch.chdir(tmp_path)
    split = ["--split", "ood", "--test-subjects", "s02", "--block-s", "2", "--ood-val", "time"]  # one training subject
    common = ["--data", str(shards), "--d", "16", "--quiet", *TINY]
    _ok(runner.invoke(app, ["pretrain", "--modality", "video", *split, *common]))
    _ok(runner.invoke(app, ["pretrain", "--modality", "imu", *split, *common]))
    res = _ok(runner.invoke(app, ["transfer", "--src", "video", "--tgt", "imu", *split, "--data", str(shards),
                                  "--mcma-correctness", "insample", "--quiet", "--json", *TINY]))  # 2 blocks: no 5 folds
    t = json.loads(res.stdout)
    assert t["run_dir"] == "runs/video-to-imu-ood-s02" and t["source_checkpoint"] == "runs/video-ood-s02/best.pt"
    rep = json.loads(_ok(runner.invoke(app, ["evaluate", t["run_dir"], "--json", "--threads", "1"])).stdout)
    assert rep["subjects"] == ["s02"] and rep["n_windows"] == 4
    from_shard = [json.loads(x) for x in _ok(runner.invoke(app, [
        "predict", t["run_dir"], str(shards / "s01_r01.h5"), "--format", "jsonl", "--threads", "1"])).stdout.splitlines()]
    from_raw = [json.loads(x) for x in _ok(runner.invoke(app, [
        "predict", t["run_dir"], str(tiny_raw / "s01_r01"), "--format", "jsonl", "--threads", "1"])).stdout.splitlines()]
    by_start = {r["start_s"]: r for r in from_raw}
    common_windows = [r for r in from_shard if r["start_s"] in by_start]
    assert len(common_windows) == len(from_shard) == 7
    for r in common_windows:
        assert by_start[r["start_s"]]["pred"] == r["pred"]
        assert r["label"] and by_start[r["start_s"]]["label"] == r["label"]  # labelled from labels.csv
        assert by_start[r["start_s"]]["prob"] == pytest.approx(r["prob"], abs=1e-4)
