"""decord is asked only for consecutive frames from where it stands (its skip loop can go one frame
off under load), and the frames asked for come back, whatever the pattern of the request."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipelines.ingest import readers
from pipelines.ingest.raw import load_recording
from pipelines.ingest.readers import VideoSource

ROOT = Path(__file__).resolve().parents[1]


class _FakeReader:
    """A decoder whose frame k is filled with k % 251; records every get_batch request and counts
    the requests that would make decord seek or skip (not starting where it stands)."""

    def __init__(self, n: int):
        self.n, self.calls, self.pos, self.jumps = n, [], 0, 0

    def get_batch(self, ids):
        ids = list(ids)
        self.calls.append(ids)
        for k in ids:
            self.jumps += k != self.pos
            self.pos = k + 1
        out = np.empty((len(ids), 2, 2, 3), np.uint8)
        out[:] = (np.asarray(ids) % 251)[:, None, None, None]

        class _A:
            def asnumpy(self_inner):
                return out

        return _A()


def _fake_source(n: int) -> VideoSource:
    src = object.__new__(VideoSource)
    src.vr, src.rec, src.file, src.size, src.path = _FakeReader(n), "r", "video.mp4", (2, 2), "video.mp4"
    src.resize_here, src.pos, src.n = False, 0, n
    return src


def test_requests_are_consecutive_and_continue_from_the_decoder_position():
    src = _fake_source(5000)
    asks = [np.array([0, 1, 3, 4, 6]), np.array([8, 9, 11]), np.array([12]), np.array([1200, 1201, 1300])]
    for idx in asks:
        got = src.get(idx)
        assert got[:, 0, 0, 0].tolist() == (idx % 251).tolist()
    assert src.vr.jumps == 0  # never a seek or a skip
    flat = [k for c in src.vr.calls for k in c]
    assert flat == list(range(0, 1301))  # every frame once, in order
    assert max(len(c) for c in src.vr.calls) <= readers.DROP_PIECE + 101  # dropped frames come in pieces


def test_going_back_seeks_and_still_returns_the_frames_asked_for():
    src = _fake_source(100)
    src.get(np.array([50, 60]))
    got = src.get(np.array([10, 12]))
    assert got[:, 0, 0, 0].tolist() == [10, 12]
    assert src.vr.jumps == 1 and src.pos == 13


@pytest.mark.slow
def test_real_video_sparse_requests_equal_one_sequential_decode():
    rec = load_recording(ROOT / "sample_data" / "s01_r01")
    spec = next(s for s in rec.streams.values() if s.kind == "video")
    whole = VideoSource(spec, rec.id, (64, 64))
    ref = whole.get(np.arange(whole.n))
    rng = np.random.default_rng(0)
    src = VideoSource(spec, rec.id, (64, 64))
    a = 0
    while a < src.n - 1:
        b = min(src.n, a + int(rng.integers(5, 80)))
        idx = np.unique(rng.integers(a, b, size=max(1, (b - a) // 2)))
        assert np.array_equal(src.get(idx), ref[idx])
        a = b + int(rng.integers(0, 40))
