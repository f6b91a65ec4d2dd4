"""The reference video is decoded from the start, in a thread, straight into the shard
(``pipelines.ingest.streams.video.ShardFrames``, ``DIRECT_TO_SHARD``): every grid frame is stored and
each window starts at its grid frame. Against the other path (frames held or decoded while written,
only the kept windows' runs stored) the shard is the same everywhere else, and every window holds
the same frames; it passes the shard check; a recording that fails while the video is being written
leaves no file and no thread; a closed writer refuses to write."""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest

from pipelines.core.errors import RecordingError
from pipelines.ingest.preprocess import PreprocessConfig, process_recording
from pipelines.ingest.streams import video
from pipelines.shards.check import shard_problems
from tests.test_perf_preprocess import _shard_items

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"


@pytest.mark.parametrize("align", ["meta", "estimate"])
def test_direct_frames_hold_the_same_windows(align, tmp_path, monkeypatch):
    cfg = replace(PreprocessConfig(), align=align)
    r = SAMPLE / "s01_r03"  # has gaps and rejected windows: runs with holes between them
    monkeypatch.setattr(video, "DIRECT_TO_SHARD", False)
    process_recording(r, tmp_path / "runs", cfg)
    monkeypatch.setattr(video, "DIRECT_TO_SHARD", True)
    process_recording(r, tmp_path / "direct", cfg)
    a, b = tmp_path / "runs" / f"{r.name}.h5", tmp_path / "direct" / f"{r.name}.h5"
    assert shard_problems(b) == []
    ia, ib = _shard_items(a), _shard_items(b)
    assert sorted(ia) == sorted(ib)
    moved = {"streams/video/frames", "streams/video/window_start"}
    for name in ia:
        if name not in moved:
            assert ia[name] == ib[name], name
    with h5py.File(a) as ha, h5py.File(b) as hb:
        t_win = int(ha["streams/video"].attrs["samples_per_window"])
        fa, sa = ha["streams/video/frames"][()], ha["streams/video/window_start"][()]
        fb, sb = hb["streams/video/frames"][()], hb["streams/video/window_start"][()]
        starts = hb["windows/start_s"][()]
        rate = float(hb["streams/video"].attrs["rate_hz"])
    assert len(fb) > len(fa)  # the frames between the kept runs are stored too
    assert len(sa) == len(sb) > 0
    for x, y in zip(sa, sb):
        assert np.array_equal(fa[x:x + t_win], fb[y:y + t_win])
    # each window starts at its grid frame: the steps between window starts are the stride's frames
    # where windows follow each other, and the window's start time over the grid period elsewhere
    assert np.array_equal(np.diff(sb), np.round(np.diff(starts) * rate).astype(np.int64))


def test_a_failing_recording_leaves_no_file_and_no_thread(tmp_path):
    rec = tmp_path / "raw" / "bad"
    shutil.copytree(SAMPLE / "s01_r01", rec)
    lines = (rec / "imu.csv").read_text().splitlines()
    lines[len(lines) // 2] = "1.0,not-a-number,2,3,4,5,6"
    (rec / "imu.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    with pytest.raises(RecordingError, match="imu.csv"):
        process_recording(rec, out, PreprocessConfig())
    deadline = time.time() + 5
    while any(t.name == "dcat-video-ahead" for t in threading.enumerate()) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(t.name == "dcat-video-ahead" for t in threading.enumerate())
    assert sorted(p.name for p in out.iterdir()) == []  # no shard, no temporary file, no scratch folder


def test_a_closed_writer_refuses_to_write(tmp_path):
    class _Shard:
        def __init__(self, h):
            self.h, self.sinks = h, []

    with h5py.File(tmp_path / "x.h5", "w") as h:
        shard = _Shard(h)
        sink = video.ShardFrames(shard, "video", 10, (2, 2, 3))
        assert shard.sinks == [sink] and sink.thread is not None  # written by a thread of its own
        sink.write(3, np.full((2, 2, 2, 3), 7, np.uint8))
        sink.write(8, np.full((1, 2, 2, 3), 9, np.uint8))
        sink.finish()  # both written
        got = h["streams/video/frames"][()]
        sink.close()
        with pytest.raises(RuntimeError, match="closed"):
            sink.write(5, np.zeros((1, 2, 2, 3), np.uint8))
        assert not sink.thread.is_alive()
        assert (h["streams/video/frames"][5] == 0).all()
    assert got.shape == (10, 2, 2, 3)
    assert (got[3:5] == 7).all() and (got[8] == 9).all() and (got[5] == 0).all()
