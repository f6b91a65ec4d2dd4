"""`predict` on a raw recording folder fills the label column from meta.json's label / the labels file."""

from __future__ import annotations

import json
import shutil

import pytest

from pipelines.learn.predict import predict


@pytest.fixture(scope="module")
def imu_run(tiny_run):
    return tiny_run("imu")


def test_labels_from_the_labels_file_match_the_shards(imu_run, tiny_raw, tiny_shards):
    shards, _ = tiny_shards
    raw_rows = predict(imu_run, tiny_raw / "s01_r01")["rows"]
    shard_rows = predict(imu_run, shards / "s01_r01.h5")["rows"]
    by_start = {r["start_s"]: r for r in raw_rows}
    assert len(raw_rows) >= len(shard_rows) > 0
    # every window the shards kept (purity >= 0.8) has the shard's label in the raw prediction
    for r in shard_rows:
        assert r["label"] and by_start[r["start_s"]]["label"] == r["label"]
    # the raw windows the purity gate dropped from the shards carry no label
    kept = {r["start_s"] for r in shard_rows}
    assert all(r["label"] == "" for r in raw_rows if r["start_s"] not in kept)


def test_whole_recording_label_and_no_label(imu_run, tiny_raw, tmp_path):
    rec = tmp_path / "s01_r01"
    shutil.copytree(tiny_raw / "s01_r01", rec)
    (rec / "labels.csv").unlink()
    meta = json.loads((rec / "meta.json").read_text())
    (rec / "meta.json").write_text(json.dumps({**meta, "label": "wave"}))
    rows = predict(imu_run, rec)["rows"]
    assert rows and all(r["label"] == "wave" for r in rows)
    meta.pop("label", None)
    (rec / "meta.json").write_text(json.dumps(meta))
    rows = predict(imu_run, rec)["rows"]
    assert rows and all(r["label"] == "" for r in rows)
