"""One worker starts the next recording's reference video decoding (into its shard, in a thread) once
the current recording's is decoded (``pipelines.ingest.preprocess._start_early``, ``EARLY_START``):
the shards are the same as without it; a recording whose shard exists, or whose lock another run
holds, is not started early and is handled in its turn as before; one that fails to open is
reported in its turn; with --fail-fast a recording started early and never run leaves nothing."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from pipelines.core.lock import FileLock, lock_path_for
from pipelines.ingest import preprocess as P
from pipelines.ingest.preprocess import PreprocessConfig, preprocess
from tests.test_perf_preprocess import _assert_same_shards

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
RECS = ["s01_r01", "s02_r02", "s03_r01"]


def _spy(monkeypatch) -> list:
    got: list = []
    real = P._start_early

    def spy(rec_dir, out_dir, cfg):
        o = real(rec_dir, out_dir, cfg)
        got.append((Path(rec_dir).name, o is not None))
        return o

    monkeypatch.setattr(P, "_start_early", spy)
    return got


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith("."))


def test_early_start_writes_the_same_shards(tmp_path, monkeypatch):
    recs = [SAMPLE / r for r in RECS]
    monkeypatch.setattr(P, "EARLY_START", False)
    preprocess(recs, tmp_path / "serial", PreprocessConfig())
    got = _spy(monkeypatch)
    monkeypatch.setattr(P, "EARLY_START", True)
    res = preprocess(recs, tmp_path / "early", PreprocessConfig())
    assert res["summary"]["ok"] == 3
    assert got == [("s02_r02", True), ("s03_r01", True)]  # each next recording, none after the last
    for r in RECS:
        _assert_same_shards(tmp_path / "serial" / f"{r}.h5", tmp_path / "early" / f"{r}.h5")
    assert _leftovers(tmp_path / "early") == []
    assert not any(t.name == "dcat-video-ahead" for t in threading.enumerate())


def test_existing_shard_or_held_lock_is_not_started_early(tmp_path, monkeypatch):
    out = tmp_path / "out"
    recs = [SAMPLE / r for r in RECS]
    preprocess([recs[1]], out, PreprocessConfig())  # s02_r02's shard exists: skipped in its turn
    got = _spy(monkeypatch)
    res = preprocess(recs[:2], out, PreprocessConfig())
    assert got == [("s02_r02", False)]
    assert [r["status"] for r in res["results"]] == ["ok", "skipped"]
    got.clear()
    out = tmp_path / "out2"
    other = FileLock(lock_path_for(out / "s03_r01.h5")).acquire()  # another run holds s03_r01's lock ...
    threading.Timer(3.0, other.release).start()  # ... and lets it go later: this run waits for it
    res = preprocess([recs[0], recs[2]], out, PreprocessConfig())
    assert got == [("s03_r01", False)]
    assert [r["status"] for r in res["results"]] == ["ok", "ok"]
    assert _leftovers(out) == []


def test_a_next_recording_that_fails_to_open_is_reported_in_its_turn(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    for r in RECS[:2]:
        shutil.copytree(SAMPLE / r, raw / r)
    (raw / "s02_r02" / "meta.json").write_text("{not json")
    got = _spy(monkeypatch)
    res = preprocess([raw / r for r in RECS[:2]], tmp_path / "out", PreprocessConfig())
    assert got == [("s02_r02", False)]
    bad = next(r for r in res["results"] if r["recording"] == "s02_r02")
    assert bad["status"] == "failed" and "meta.json" in bad["message"]
    assert _leftovers(tmp_path / "out") == []


def test_fail_fast_leaves_nothing_of_the_recording_started_early(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    for r in RECS[:2]:
        shutil.copytree(SAMPLE / r, raw / r)
    meta = json.loads((raw / "s01_r01" / "meta.json").read_text())
    meta["streams"]["imu"]["clock_offset_s"] = 35.0  # the IMU covers too little: fails after its video is decoded
    (raw / "s01_r01" / "meta.json").write_text(json.dumps(meta))
    got = _spy(monkeypatch)
    out = tmp_path / "out"
    res = preprocess([raw / r for r in RECS[:2]], out, PreprocessConfig(), fail_fast=True)
    assert got == [("s02_r02", True)]  # started early ...
    status = {r["recording"]: r["status"] for r in res["results"]}
    assert status == {"s01_r01": "failed", "s02_r02": "not_run"}  # ... never run
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".h5") == []
    assert _leftovers(out) == []
    assert not any(t.name == "dcat-video-ahead" for t in threading.enumerate())
    with FileLock(lock_path_for(out / "s02_r02.h5")).acquire(blocking=False):
        pass  # its lock was released


@pytest.mark.parametrize("workers", [2])
def test_workers_do_not_start_early(tmp_path, monkeypatch, workers):
    got = _spy(monkeypatch)
    res = preprocess([SAMPLE / r for r in RECS[:2]], tmp_path / "out", PreprocessConfig(), workers=workers)
    assert res["summary"]["ok"] == 2 and got == []


def test_long_recordings_take_the_old_paths(tmp_path, monkeypatch):
    """Longer than ``video.DIRECT_MAX_S``: the video is not written while decoded (only the kept
    windows' runs are stored, as with ``DIRECT_TO_SHARD`` off) and the next recording is not started
    early."""
    from pipelines.ingest.streams import video

    recs = [SAMPLE / r for r in RECS[:2]]
    monkeypatch.setattr(video, "DIRECT_TO_SHARD", False)
    preprocess(recs, tmp_path / "old", PreprocessConfig())
    monkeypatch.setattr(video, "DIRECT_TO_SHARD", True)
    monkeypatch.setattr(video, "DIRECT_MAX_S", 30.0)  # the sample recordings are 40 s
    got = _spy(monkeypatch)
    res = preprocess(recs, tmp_path / "long", PreprocessConfig())
    assert res["summary"]["ok"] == 2 and got == []
    for r in RECS[:2]:
        _assert_same_shards(tmp_path / "old" / f"{r}.h5", tmp_path / "long" / f"{r}.h5")
