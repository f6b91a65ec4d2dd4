"""A full disk while a shard is written fails that recording with a clear error naming its shard
(not "internal error"), keeps nothing of it, and the run goes on; other OSErrors stay internal errors."""

from __future__ import annotations

import errno
import json
import threading
from pathlib import Path

import pytest

from pipelines.ingest import preprocess as P
from pipelines.ingest import recording as R
from pipelines.ingest.preprocess import PreprocessConfig, disk_full, preprocess
from pipelines.ingest.streams import video
from tests.test_bad_inputs import assert_no_leftovers

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
# the text h5py gives a failed write: the C library's errno only in the message, ``e.errno`` is None
H5_FULL = ("Can't synchronously write data (file write failed: time = Tue Dec  1 00:12:09 2026, filename = "
           "'/x/.s01_r01.h5.abc.tmp', file descriptor = 7, errno = 28, error message = 'No space left on device', "
           "buf = 0x7f, total write size = 2408448, bytes this sub-write = 2408448, bytes actually written = "
           "18446744073709551615, offset = 0)")


def test_disk_full_recognises_errno_and_hdf5_text():
    assert disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert disk_full(OSError(H5_FULL))
    assert not disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not disk_full(OSError("errno = 2, error message = 'No such file or directory'"))
    assert not disk_full(ValueError("No space left on device"))


@pytest.mark.parametrize("where", ["frames", "shard"])
def test_full_disk_fails_the_recording_cleanly(where, tmp_path, monkeypatch):
    recs = [SAMPLE / "s01_r01", SAMPLE / "s02_r01"]
    hit = []
    if where == "frames":  # h5py's error, raised in the thread writing the video's frames
        store = video.ShardFrames._store

        def full_store(self, a, frames):
            if not hit:
                hit.append(a)
                raise OSError(H5_FULL)
            return store(self, a, frames)

        monkeypatch.setattr(video.ShardFrames, "_store", full_store)
    else:  # the OS's error, writing the rest of the shard
        write = R.write_shard

        def full_write(h, rec, *a, **k):
            if not hit:
                hit.append(rec.id)
                raise OSError(errno.ENOSPC, "No space left on device")
            return write(h, rec, *a, **k)

        monkeypatch.setattr(R, "write_shard", full_write)
    out = tmp_path / "shards"
    got: list = []
    run = threading.Thread(target=lambda: got.append(preprocess(recs, out, PreprocessConfig())), daemon=True)
    run.start()
    run.join(timeout=120)  # a failed frames writer once left its thread waiting for more: a hang
    assert not run.is_alive(), "preprocess hung after the write failed"
    res = got[0]
    by = {r["recording"]: r for r in res["results"]}
    assert hit and by["s01_r01"]["status"] == "failed" and by["s02_r01"]["status"] == "ok"
    err = by["s01_r01"]["error"]
    assert err["file"] == str(out / "s01_r01.h5")
    assert err["problem"].startswith("no space left on the device while writing the shard")
    assert "internal error" not in by["s01_r01"]["message"] and "traceback" not in err
    assert "free space" in err["hint"]
    assert_no_leftovers(out, failed=["s01_r01"])
    info = json.loads((out / "preprocess-info.json").read_text())
    assert [r["recording"] for r in info["recordings"] if r["status"] == "failed"] == ["s01_r01"]


def test_other_os_errors_stay_internal_errors(tmp_path, monkeypatch):
    def denied(*a, **k):
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(R, "write_shard", denied)
    r = P._run_one(str(SAMPLE / "s01_r01"), str(tmp_path), PreprocessConfig(), False)
    assert r["status"] == "failed" and r["error"]["problem"].startswith("internal error PermissionError")
