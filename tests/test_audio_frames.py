"""``readers._frame_mono``: a decoded PyAV audio frame as mono float32, the channels' mean with
integers scaled by their maximum; a mono float frame is read straight from its plane (the fast
path AAC, Opus and MP3 take) and must give the same samples as the general path."""

from __future__ import annotations

import numpy as np
import pytest

av = pytest.importorskip("av")

from pipelines.ingest.readers import _frame_mono  # noqa: E402


def _frame(a: np.ndarray, fmt: str, layout: str, rate: int = 16000):
    f = av.AudioFrame.from_ndarray(a, format=fmt, layout=layout)
    f.sample_rate = rate
    return f


def test_mono_float_plane_is_read_as_is():
    x = np.array([[0.5, -0.25, 1.0, 0.0, -1.0]], np.float32)
    for fmt in ("fltp", "flt"):
        got = _frame_mono(_frame(x, fmt, "mono"))
        assert got.dtype == np.float32 and got.flags.writeable
        assert np.array_equal(got, x[0])


def test_stereo_and_integer_frames_are_averaged_and_scaled():
    planar = np.array([[0.5, 1.0, -1.0], [0.25, 0.0, -0.5]], np.float32)  # channels x samples
    assert np.array_equal(_frame_mono(_frame(planar, "fltp", "stereo")), np.array([0.375, 0.5, -0.75], np.float32))
    packed = planar.T.reshape(1, -1).copy()  # L R L R ...
    assert np.array_equal(_frame_mono(_frame(packed, "flt", "stereo")), np.array([0.375, 0.5, -0.75], np.float32))
    s16 = np.array([[32767, -32767, 0, 16384]], np.int16)
    got = _frame_mono(_frame(s16, "s16", "mono"))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, [1.0, -1.0, 0.0, 16384 / 32767], rtol=1e-6)


def test_fast_path_matches_to_ndarray_on_a_decoded_file(tmp_path):
    """AAC decodes to mono ``fltp``: the samples read from the plane equal ``to_ndarray``'s."""
    path = tmp_path / "a.m4a"
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as c:
        st = c.add_stream("aac", rate=16000, layout="mono")
        for k in range(20):
            fr = _frame(rng.uniform(-0.5, 0.5, (1, 1024)).astype(np.float32), "fltp", "mono")
            fr.pts = k * 1024
            for p in st.encode(fr):
                c.mux(p)
        for p in st.encode(None):
            c.mux(p)
    with av.open(str(path)) as c:
        frames = list(c.decode(c.streams.audio[0]))
    assert frames and frames[0].format.name == "fltp"
    got = np.concatenate([_frame_mono(f) for f in frames])
    want = np.concatenate([f.to_ndarray().reshape(-1) for f in frames])
    assert len(got) >= 20 * 1024 - 1024 and np.array_equal(got, want)
