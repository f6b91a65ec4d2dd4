"""Preprocessing speed-ups change no shard byte: the video prefetching thread
(``pipelines.ingest.streams.video._Prefetch``) against decoding on demand (the path without it), on
the sample data with ``--align meta`` and ``--align estimate``; the prefetcher's own contract
(forward ranges across chunk boundaries, decoder errors raised to the reader, the thread stopped when
its frames are dropped); one BLAS thread per recording (``one_blas_thread``) gives the same log-mel."""

from __future__ import annotations

import gc
import json
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pipelines.ingest.preprocess import PreprocessConfig, one_blas_thread, process_recording
from pipelines.ingest.streams import video

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
VOLATILE_ATTRS = {"created_utc"}
VOLATILE_CHECKS = {"timing_s", "seconds"}


def _shard_items(path: Path) -> dict:
    """Every group's and dataset's attributes and every dataset's dtype, shape and bytes, by name
    (the creation time and the step timings left out: they differ between any two runs)."""
    import h5py

    items: dict = {}

    def attrs(obj) -> dict:
        out = {}
        for k, v in obj.attrs.items():
            if k in VOLATILE_ATTRS:
                continue
            if k == "checks_json":
                v = {kk: vv for kk, vv in json.loads(v).items() if kk not in VOLATILE_CHECKS}
            out[k] = (str(v.dtype), v.tolist()) if isinstance(v, np.ndarray) else v
        return out

    def visit(name, obj) -> None:
        entry = {"attrs": attrs(obj)}
        if isinstance(obj, h5py.Dataset):
            a = obj[()]
            entry.update(dtype=str(obj.dtype), shape=obj.shape,
                         data=a.tobytes() if a.dtype != object else [bytes(x) if isinstance(x, bytes) else x for x in a])
        items[name] = entry

    with h5py.File(path, "r") as h:
        items["/"] = {"attrs": attrs(h)}
        h.visititems(visit)
    return items


def _assert_same_shards(a: Path, b: Path) -> None:
    ia, ib = _shard_items(a), _shard_items(b)
    assert sorted(ia) == sorted(ib)
    for name in ia:
        assert ia[name] == ib[name], f"{a.name}: {name} differs"


@pytest.mark.parametrize("align", ["meta", "estimate"])
def test_prefetch_writes_the_same_shard_as_decoding_on_demand(align, tmp_path, monkeypatch):
    cfg = replace(PreprocessConfig(), align=align)
    recs = [SAMPLE / "s01_r01", SAMPLE / "s02_r02"]
    monkeypatch.setattr(video, "DIRECT_TO_SHARD", False)  # the paths that decode while writing
    monkeypatch.setattr(video, "PREFETCH_BYTES", 0)  # the old path: each span decoded when asked for
    for r in recs:
        process_recording(r, tmp_path / "on_demand", cfg)
    # a queue of one chunk, and chunks that do not line up with the windows' runs
    monkeypatch.setattr(video, "PREFETCH_BYTES", 1)
    monkeypatch.setattr(video, "VIDEO_CHUNK", 97)
    for r in recs:
        process_recording(r, tmp_path / "prefetch", cfg)
    monkeypatch.setattr(video, "VIDEO_CHUNK", 256)
    monkeypatch.setattr(video, "PREFETCH_BYTES", 48 << 20)
    for r in recs:
        process_recording(r, tmp_path / "prefetch_default", cfg)
    for r in recs:
        name = f"{r.name}.h5"
        _assert_same_shards(tmp_path / "on_demand" / name, tmp_path / "prefetch" / name)
        _assert_same_shards(tmp_path / "on_demand" / name, tmp_path / "prefetch_default" / name)


def test_video_scratch_samples_mapped_equal_read(tmp_path):
    """``--align estimate``: frames mapped from the scratch file are the bytes ``Stream.samples`` reads."""
    from pipelines.ingest.streams.base import Stream

    frames = np.random.default_rng(1).integers(0, 256, (50, 6, 4, 3), dtype=np.uint8)
    scratch = tmp_path / "video.u8"
    frames.tofile(scratch)
    s = video.VideoStream(name="video", file="video.mp4", rate_hz=30.0, t0_s=0.0, n=50, offset_s=0.0, envelopes=[],
                          info={}, scratch=scratch, frame_shape=(6, 4, 3), dtype="uint8")
    for a, b in [(0, 50), (7, 8), (13, 41), (49, 50), (20, 20)]:
        got = s.samples(a, b)
        assert got.shape == (b - a, 6, 4, 3)
        assert np.array_equal(got, Stream.samples(s, a, b))
        assert np.array_equal(got, frames[a:b])


class _Fake:
    """A decoder of grid frames: frame k holds the value k; fails at ``fail_at`` when set."""

    def __init__(self, fail_at: int | None = None):
        self.calls: list[tuple[int, int]] = []
        self.fail_at = fail_at

    def __call__(self, a: int, b: int) -> np.ndarray:
        self.calls.append((a, b))
        if self.fail_at is not None and a <= self.fail_at < b:
            raise ValueError(f"bad frame {self.fail_at}")
        return np.repeat(np.arange(a, b, dtype=np.int64)[:, None], 2, axis=1)


def test_prefetch_take_across_chunks(monkeypatch):
    monkeypatch.setattr(video, "VIDEO_CHUNK", 10)
    dec = _Fake()
    pre = video._Prefetch(dec, 47, frame_bytes=1)
    try:
        for a, b in [(0, 3), (3, 25), (31, 40), (40, 41), (44, 47)]:  # skips, odd sizes, the last partial chunk
            got = pre.take(a, b)
            assert got[:, 0].tolist() == list(range(a, b))
        assert dec.calls == [(0, 10), (10, 20), (20, 30), (30, 40), (40, 47)]
        with pytest.raises(RuntimeError, match="outside"):
            pre.take(30, 35)  # behind the chunk in hand
    finally:
        pre.close()


def test_prefetch_raises_the_decoders_error_in_the_reader(monkeypatch):
    monkeypatch.setattr(video, "VIDEO_CHUNK", 10)
    pre = video._Prefetch(_Fake(fail_at=23), 50, frame_bytes=1)
    assert pre.take(0, 20)[-1, 0] == 19
    with pytest.raises(ValueError, match="bad frame 23"):
        pre.take(20, 30)
    pre.thread.join(timeout=5)
    assert not pre.thread.is_alive()


def test_prefetch_thread_stops_when_its_frames_are_dropped(monkeypatch):
    """A recording that fails before reading every frame leaves no decoding thread behind."""
    monkeypatch.setattr(video, "VIDEO_CHUNK", 4)
    monkeypatch.setattr(video, "PREFETCH_BYTES", 1)  # the thread blocks on a full queue at once
    src = type("Src", (), {"get": lambda self, idx: np.zeros((len(idx), 2, 2, 3), np.uint8)})()
    frames = video.VideoFrames(src, np.arange(1000), (2, 2, 3), "rec", "video.mp4")
    assert frames._pre is None  # nothing decoded before the first frame is asked for
    assert frames.span(0, 3).shape == (3, 2, 2, 3)
    thread = frames._pre.thread
    time.sleep(0.05)
    assert thread.is_alive()  # waiting to hand over its next chunk
    del frames
    gc.collect()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert not any(t.name == "dcat-video-prefetch" and t is thread for t in threading.enumerate())


def test_one_blas_thread_gives_the_same_logmel():
    from pipelines.ingest.features import MelSettings, logmel

    x = np.random.default_rng(0).standard_normal((1, 16000 * 20)).astype(np.float32)
    many = logmel(x, MelSettings())
    with one_blas_thread():
        one = logmel(x, MelSettings())
    assert one.shape == (1, 1998, 64)
    assert np.array_equal(one, many)
