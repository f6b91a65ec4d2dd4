"""A video is decoded once, in a thread started when it is opened
(``pipelines.ingest.streams.video._Ahead``), into memory when it fits ``HOLD_BYTES``; else into a
scratch file (``--align estimate``) or on demand while written (``--align meta``; held there too
only with ``HOLD_META``, off by default): the shards are byte-identical either way and with chunks
that do not line up with the windows' runs; held frames are served as views; a decoder error in the
thread is raised in the reader; a dropped stream stops its thread."""

from __future__ import annotations

import gc
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pipelines.core.errors import RecordingError
from pipelines.ingest.preprocess import PreprocessConfig, process_recording
from pipelines.ingest.raw import load_recording
from pipelines.ingest.streams import video
from tests.test_perf_preprocess import _assert_same_shards

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
EST = replace(PreprocessConfig(), align="estimate")


def test_held_and_scratch_file_write_the_same_shard(tmp_path, monkeypatch):
    made: list = []

    class Spy(video._Ahead):
        def __init__(self, frames, n, scratch, sink=None):
            super().__init__(frames, n, scratch, sink)
            made.append(scratch)

    monkeypatch.setattr(video, "_Ahead", Spy)
    monkeypatch.setattr(video, "DIRECT_TO_SHARD", False)
    recs = [SAMPLE / "s01_r01", SAMPLE / "s02_r02"]
    monkeypatch.setattr(video, "HOLD_BYTES", 0)  # every video to the scratch file
    for r in recs:
        process_recording(r, tmp_path / "file", EST)
    assert len(made) == 2 and all(s is not None for s in made)
    monkeypatch.setattr(video, "HOLD_BYTES", 256 << 20)
    for r in recs:
        process_recording(r, tmp_path / "held", EST)
    monkeypatch.setattr(video, "VIDEO_CHUNK", 97)  # held chunks that do not line up with the windows' runs
    for r in recs:
        process_recording(r, tmp_path / "held97", EST)
    assert len(made) == 6 and made[2:] == [None] * 4
    for r in recs:
        name = f"{r.name}.h5"
        _assert_same_shards(tmp_path / "file" / name, tmp_path / "held" / name)
        _assert_same_shards(tmp_path / "file" / name, tmp_path / "held97" / name)


def test_decoding_starts_when_the_video_is_opened(tmp_path, monkeypatch):
    rec = load_recording(SAMPLE / "s01_r01", need_labels=False)
    spec = next(s for s in rec.streams.values() if s.kind == "video")
    s = video.VideoStream.read(spec, rec, EST, tmp_path)
    assert s.ahead is not None and s.ahead.thread.ident is not None  # started before complete_envelope
    s.complete_envelope(tmp_path)
    assert s.ahead is None and s.held is not None and s.scratch is None
    assert sum(len(c) for c in s.held) == s.n
    assert np.isfinite(s.frames.env[1:]).any()
    m = video.VideoStream.read(spec, rec, PreprocessConfig(), tmp_path)  # --align meta: decoded on demand
    assert m.ahead is None
    monkeypatch.setattr(video, "HOLD_META", True)
    m = video.VideoStream.read(spec, rec, PreprocessConfig(), tmp_path)  # ... unless HOLD_META and it fits
    assert m.ahead is not None
    assert m.samples(5, 9).shape == (4,) + m.frame_shape and m.ahead is None and m.held is not None
    monkeypatch.setattr(video, "HOLD_BYTES", 0)
    m = video.VideoStream.read(spec, rec, PreprocessConfig(), tmp_path)  # too long to hold
    assert m.ahead is None


@pytest.mark.parametrize("align", ["meta", "estimate"])
def test_held_and_on_demand_write_the_same_shard(align, tmp_path, monkeypatch):
    """--align meta: held (HOLD_META, decoded ahead) vs decoded on demand while written; estimate: held
    vs the scratch file."""
    cfg = replace(PreprocessConfig(), align=align)
    r = SAMPLE / "s03_r01"
    monkeypatch.setattr(video, "DIRECT_TO_SHARD", False)
    monkeypatch.setattr(video, "HOLD_META", True)
    process_recording(r, tmp_path / "held", cfg)
    monkeypatch.setattr(video, "HOLD_BYTES", 0)
    process_recording(r, tmp_path / "other", cfg)
    _assert_same_shards(tmp_path / "held" / f"{r.name}.h5", tmp_path / "other" / f"{r.name}.h5")


def _held_stream(n: int, chunk: int) -> tuple[video.VideoStream, np.ndarray]:
    frames = np.random.default_rng(3).integers(0, 256, (n, 4, 2, 3), dtype=np.uint8)
    s = video.VideoStream(name="video", file="video.mp4", rate_hz=30.0, t0_s=0.0, n=n, offset_s=0.0, envelopes=[],
                          info={}, frame_shape=(4, 2, 3), dtype="uint8",
                          held=[frames[a:a + chunk].copy() for a in range(0, n, chunk)], held_chunk=chunk)
    return s, frames


def test_held_samples_across_chunks():
    s, frames = _held_stream(53, 10)
    for a, b in [(0, 53), (0, 10), (3, 7), (9, 11), (10, 20), (17, 44), (50, 53), (52, 53), (20, 20)]:
        got = s.samples(a, b)
        assert got.shape == (b - a, 4, 2, 3)
        assert np.array_equal(got, frames[a:b])
    k = s.held[1]
    assert np.shares_memory(s.samples(12, 19), k)  # inside one held chunk: a view, no copy


class _Src:
    """A decoder of ``n`` frames (frame k filled with k % 256); fails at ``fail_at``; ``delay`` s per call."""

    def __init__(self, fail_at: int | None = None, delay: float = 0.0):
        self.fail_at, self.delay, self.calls = fail_at, delay, 0

    def get(self, idx: np.ndarray) -> np.ndarray:
        self.calls += 1
        time.sleep(self.delay)
        if self.fail_at is not None and idx[0] <= self.fail_at <= idx[-1]:
            raise RecordingError("rec", "video.mp4", f"decoding failed near frame {self.fail_at}")
        k = (np.asarray(idx) % 256).astype(np.uint8)
        return np.broadcast_to(k[:, None, None, None], (len(idx), 2, 2, 3)).copy()


def test_ahead_raises_the_decoders_error_in_the_reader(monkeypatch):
    monkeypatch.setattr(video, "VIDEO_CHUNK", 8)
    frames = video.VideoFrames(_Src(fail_at=30), np.arange(100), (2, 2, 3), "rec", "video.mp4")
    ahead = video._Ahead(frames, 100, None)
    with pytest.raises(RecordingError, match="near frame 30"):
        ahead.wait()
    assert not ahead.thread.is_alive()
    ok = video._Ahead(video.VideoFrames(_Src(), np.arange(100), (2, 2, 3), "rec", "video.mp4"), 100, None)
    ok.wait()
    assert np.concatenate(ok.held)[:, 0, 0, 0].tolist() == list(range(100))


def test_ahead_thread_stops_when_the_stream_is_dropped(tmp_path, monkeypatch):
    """A recording that fails while its other streams are read leaves no decoding thread behind."""
    monkeypatch.setattr(video, "VIDEO_CHUNK", 4)
    src = _Src(delay=0.01)
    s = video.VideoStream(name="video", file="video.mp4", rate_hz=30.0, t0_s=0.0, n=4000, offset_s=0.0,
                          envelopes=[], info={}, frame_shape=(2, 2, 3), dtype="uint8",
                          frames=video.VideoFrames(src, np.arange(4000), (2, 2, 3), "rec", "video.mp4"))
    s.start_ahead(tmp_path)
    thread = s.ahead.thread
    time.sleep(0.05)
    assert thread.is_alive()
    del s
    gc.collect()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert src.calls < 1000  # stopped, not run to the end
    assert not any(t is thread for t in threading.enumerate())
