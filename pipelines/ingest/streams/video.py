"""Video streams: put on the ``--fps`` grid by frame timestamps, decoded forward on demand.

Reading opens the file and reads its timestamps. The reference video (the first: no lag moves its
grid) of at most DIRECT_MAX_S is then decoded once, by a thread started at reading (``_Ahead``: decoding overlaps the reading
of the other streams), straight into the shard with every grid frame (``ShardFrames``; its windows
point at their grid frames). Another video is decoded once, while it is written to the shard; or,
when the lag must be known before windowing (``--align estimate``), by such a thread into memory when
the frames fit HOLD_BYTES, else into a scratch file.
The activity envelope (``motion``: frame-difference energy) is collected on the way, for every grid
frame: frames no kept window holds are decoded for it too (between and after the kept runs), so
the lag estimate does not depend on windowing. Since every grid frame is decoded, in order, a
background thread can decode them ahead of their use (``_Prefetch``, at most PREFETCH_BYTES ahead;
off by default): decoding then overlaps the HDF5 writes and the envelope; the frames, and so the
shard, are the same as decoding on demand.
"""

from __future__ import annotations

import math
import queue
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.core.errors import RecordingError
from pipelines.core.timeutil import EPS_S
from pipelines.ingest.config import PreprocessConfig
from pipelines.ingest.raw import Recording, StreamSpec
from pipelines.ingest.readers import VideoSource
from pipelines.ingest.resample import GAP_FACTOR, measured_rate, select_frames
from pipelines.ingest.streams.base import Stream, gap_stats, rate_check, run_samples
from pipelines.ingest.sync.envelopes import Envelope

VIDEO_CHUNK = 256  # frames decoded per decoder call (about 10 MB at 112x112)
# decoded frames a background thread may hold ahead of their use (``_Prefetch``); 0: no thread, frames
# decoded on demand. Off by default: on 2 cores it measured 0.91-1.07x (no gain) once started lazily
# (benchmarks/preprocess.py --ab), +43 MB peak for a 1-hour recording; 48 << 20 turns it on
PREFETCH_BYTES = 0
# --align estimate decodes the whole video before windowing, in a thread started when the video is opened
# (``_Ahead``): a video whose grid frames take at most HOLD_BYTES is held in memory (the decoded chunks
# themselves, no copy; 150 s at 112x112 is 169 MB), a longer one goes to a scratch file. 128 MB (about
# 110 s at 112x112, 30 fps) keeps a recording of any length under 400 MB of peak memory
# (benchmarks/memory.py: at 256 MB a 3.5-minute recording peaked at 471 MB, more than a 1-hour one)
HOLD_BYTES = 128 << 20
# the same for --align meta (held when it fits, else decoded on demand while written). Off: on 2 busy
# cores it measured 0.90-1.15x (no gain; benchmarks/preprocess.py --align meta --ab-tree), for +169 MB
# per 150 s recording
HOLD_META = False
# the reference video (the first; its grid never moves) is decoded from the start, in a thread, straight into
# the shard's ``frames`` with every grid frame (``ShardFrames``), in both --align modes: written once, while
# the other streams are read, nothing held or left to write after the lag is known. Its shard then also
# stores the grid frames no kept window holds (sample_data: +20% bytes). False: the paths above
DIRECT_TO_SHARD = True
# ... for a video of at most this many seconds. A longer one takes the paths above: there the decoding's
# memory, beside the audio and IMU reads, raised the peak of a run of two 1-hour recordings from 330 to 409-428
# MB (and +11% bytes) for no gain in time (51.0 against 54-55 s)
DIRECT_MAX_S = 600.0
# chunks (VIDEO_CHUNK frames, ~10 MB at 112x112) waiting for ShardFrames' writer thread (>= 1)
WRITE_AHEAD = 2


class _Prefetch:
    """Decodes every grid frame in order, VIDEO_CHUNK at a time, in a background thread, at most
    PREFETCH_BYTES ahead of the reader (decord releases the GIL while it decodes, so decoding
    overlaps the HDF5 writes, the envelope and the other streams' work). Every grid frame is decoded
    in any case (kept windows' frames for the shard, the others for the envelope), in the same
    order, so the frames are the same as decoding on demand. ``take(a, b)`` returns grid frames
    ``[a, b)``; ranges must move forward. ``close()`` stops the thread."""

    def __init__(self, decode, n: int, frame_bytes: int):
        self.decode, self.n = decode, n
        self.q: queue.Queue = queue.Queue(maxsize=max(1, PREFETCH_BYTES // max(1, frame_bytes * VIDEO_CHUNK)))
        self.stop = threading.Event()
        self.buf: tuple[int, np.ndarray] = (0, np.zeros((0,)))  # (first grid frame, frames) of the chunk in hand
        self.thread = threading.Thread(target=self._run, name="dcat-video-prefetch", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for c in range(0, self.n, VIDEO_CHUNK):
                if not self._put((c, self.decode(c, min(self.n, c + VIDEO_CHUNK)))):
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the reader, raised there
            self._put(e)

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _next(self) -> None:
        item = self.q.get()
        if isinstance(item, BaseException):
            self.close()
            raise item
        self.buf = item

    def take(self, a: int, b: int) -> np.ndarray:
        if a < self.buf[0] or b > self.n:
            raise RuntimeError(f"_Prefetch.take({a}, {b}) outside the frames ahead ({self.buf[0]}..{self.n})")
        parts = []
        while a < b:
            c, fr = self.buf
            if not c <= a < c + len(fr):
                self._next()
                continue
            e = min(b, c + len(fr))
            parts.append(fr[a - c:e - c])
            a = e
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def close(self) -> None:
        self.stop.set()


class _Ahead:
    """Every grid frame decoded in a background thread, in order, VIDEO_CHUNK at a time, started when
    the video is opened (``VideoStream.start_ahead``), so decoding overlaps the reading of the other streams
    (decord releases the GIL while it decodes; the frames and their envelope are those of decoding in
    the main thread). The frames go straight into the shard when a ``sink`` is given (the reference
    video: ``ShardFrames``), else they are kept in ``held`` (one array per chunk) when they fit
    HOLD_BYTES, else written to the ``scratch`` file. ``wait()`` returns when done, or raises the decoder's error;
    ``stop`` ends the thread after its chunk (set when the stream is dropped: a recording that failed)."""

    def __init__(self, frames: "VideoFrames", n: int, scratch: Path | None, sink: "ShardFrames | None" = None):
        self.frames, self.n, self.scratch, self.chunk, self.sink = frames, n, scratch, VIDEO_CHUNK, sink
        self.held: list[np.ndarray] | None = [] if scratch is None and sink is None else None
        self.error: BaseException | None = None
        self.stop = threading.Event()
        if scratch is not None:  # the recording's scratch folder, made when needed (here, not in the thread)
            scratch.parent.mkdir(parents=True, exist_ok=True)
        self.thread = threading.Thread(target=self._run, name="dcat-video-ahead", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            f = open(self.scratch, "wb") if self.scratch is not None else None
            try:
                for a in range(0, self.n, self.chunk):
                    if self.stop.is_set():
                        return
                    fr = self.frames.span(a, min(self.n, a + self.chunk))
                    if self.sink is not None:
                        self.sink.write(a, fr)  # handed to the writer thread
                    elif f is None:
                        self.held.append(fr)
                    else:
                        fr.tofile(f)
            finally:
                if f is not None:
                    f.close()
                if self.sink is not None:
                    self.sink.finish()  # every chunk written (or the first write's error raised)
        except BaseException as e:  # noqa: BLE001 - raised in the reader by wait()
            self.error = e

    def wait(self) -> None:
        self.thread.join()
        if self.error is not None:
            raise self.error


class ShardFrames:
    """The shard's ``frames`` dataset of a video whose grid does not move (the reference stream), made
    before decoding with every grid frame: the decoding thread hands each chunk over once (``write``)
    and a writer thread of its own puts it into the shard, so the next chunk is decoded while the last
    one is written (at most WRITE_AHEAD chunks wait). No copy held,
    no scratch file, nothing left to write after the lag is known; the windows then start at their
    grid frame (``window_start`` = grid index; schemas/shard.md). ``finish()`` waits for the writes
    (their error raised there); ``close()`` (the recording ends, also by an error) makes later writes
    fail, so nothing is written into a closed file."""

    def __init__(self, shard, name: str, n: int, shape: tuple[int, int, int]):
        """``shard``: the open shard (``recording._ShardFile``: ``h``, the h5py file; ``sinks``, closed
        with it)."""
        self.lock, self.open, self.error = threading.Lock(), True, None
        self.ds = shard.h.require_group("streams").require_group(name).create_dataset(
            "frames", shape=(n,) + tuple(shape), dtype=np.uint8)
        shard.sinks.append(self)
        self.q: queue.Queue = queue.Queue(maxsize=max(1, WRITE_AHEAD))
        self.thread = threading.Thread(target=self._run, name="dcat-video-write", daemon=True)
        self.thread.start()

    def _store(self, a: int, frames: np.ndarray) -> None:
        with self.lock:
            if not self.open:
                raise RuntimeError("the shard was closed while its video was decoded")
            self.ds[a:a + len(frames)] = frames

    def _run(self) -> None:
        while True:
            try:
                item = self.q.get(timeout=0.1)
            except queue.Empty:
                if not self.open:  # closed and nothing left
                    return
                continue
            if item is None:
                return
            try:
                self._store(*item)
            except BaseException as e:  # noqa: BLE001 - raised by write() / finish()
                self.error = e  # set before the thread ends: ``_put`` raises it, ``finish`` joins
                return

    def _put(self, item) -> None:
        """Queue ``item`` unless the writer is gone (closed: RuntimeError; failed: its error)."""
        while True:
            if self.error is not None:
                raise self.error
            if not self.open or not self.thread.is_alive():
                raise RuntimeError("the shard was closed while its video was decoded")
            try:
                self.q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def write(self, a: int, frames: np.ndarray) -> None:
        self._put((a, frames))

    def finish(self) -> None:
        """Wait until every chunk handed over is written; raise the first write's error."""
        try:
            self._put(None)
        except BaseException:  # noqa: BLE001 - closed or failed: the writer ends by itself
            pass
        self.thread.join()
        if self.error is not None:
            raise self.error
        if not self.open:
            raise RuntimeError("the shard was closed while its video was decoded")

    def close(self) -> None:
        """No more writes (the writer thread ends once its queue is empty; a queued chunk fails)."""
        with self.lock:
            self.open = False


@dataclass
class _GridDecoder:
    """Grid frames ``[a, b)`` from the decoder (a frame the grid holds repeated)."""

    src: VideoSource
    idx: np.ndarray
    shape: tuple[int, int, int]
    rec: str
    file: str

    def __call__(self, a: int, b: int) -> np.ndarray:
        need = self.idx[a:b]
        uniq = np.unique(need)
        frames = self.src.get(uniq)
        if frames.shape[1:] != self.shape:
            raise RecordingError(self.rec, self.file, f"decoder returned frames of shape {frames.shape[1:]}")
        if len(uniq) != len(need):  # the grid is faster than the video: a frame is held
            frames = frames[np.searchsorted(uniq, need)]
        return frames


class VideoFrames:
    """A video on the ``--fps`` grid, decoded forward on demand; the activity envelope is collected
    on the way (frame-difference energy between consecutive grid frames; NaN where not decoded).

    ``span(a, b)`` decodes grid frames ``[a, b)`` with one decoder call and returns them; spans
    must move forward (the shard stores every grid frame at most once, so nothing is decoded twice).
    """

    def __init__(self, src: VideoSource, idx: np.ndarray, shape: tuple[int, int, int], rec: str, file: str):
        self.src, self.idx, self.shape, self.rec, self.file = src, idx, shape, rec, file
        self.env = np.full(len(idx), np.nan)
        self.done = 0  # grid frames below this were returned already
        self._prev: tuple[int, np.ndarray] | None = None  # (grid index, small gray frame)
        self._pre: _Prefetch | None = None  # started by the first frame asked for

    def _prefetch(self) -> _Prefetch | None:
        """The prefetching thread, started when the first frame is asked for (not while the other
        streams are read: decord keeps decoding ahead into memory of its own while it waits)."""
        if self._pre is None and PREFETCH_BYTES > 0 and len(self.idx):
            # the thread holds the source, not this object: when this object goes (a recording that
            # failed before reading all frames), the thread is stopped
            self._pre = _Prefetch(_GridDecoder(self.src, self.idx, self.shape, self.rec, self.file), len(self.idx),
                                  int(np.prod(self.shape)))
            weakref.finalize(self, self._pre.close)
        return self._pre

    def _frames(self, a: int, b: int) -> np.ndarray:
        return _GridDecoder(self.src, self.idx, self.shape, self.rec, self.file)(a, b)

    def span(self, a: int, b: int) -> np.ndarray:
        if a < self.done:
            raise RuntimeError(f"VideoFrames.span went backwards ({a} < {self.done})")
        self.scan(a)
        return self._decode(a, b)

    def scan(self, b: int) -> None:
        """Decode grid frames ``[done, b)`` for the envelope only (frames no kept window holds)."""
        for c in range(self.done, min(b, len(self.idx)), VIDEO_CHUNK):
            self._decode(c, min(b, c + VIDEO_CHUNK))

    def _decode(self, a: int, b: int) -> np.ndarray:
        need = self.idx[a:b]
        pre = self._prefetch()
        frames = pre.take(a, b) if pre is not None else self._frames(a, b)
        small = frames[:, ::8, ::8, 1].astype(np.int16)  # green channel, 1/64 of the pixels: enough for motion energy
        d = np.full(len(frames), np.nan)
        d[1:] = np.abs(np.diff(small, axis=0)).mean(axis=(1, 2))
        if self._prev is not None and self._prev[0] == a - 1:
            d[0] = np.abs(small[0] - self._prev[1]).mean()
        # a grid frame that holds the previous source frame (grid faster than the video) shows no
        # motion that happened: unknown there (filled from its neighbours when correlated)
        rep = np.r_[a > 0 and self.idx[a] == self.idx[a - 1], need[1:] == need[:-1]]
        d[rep] = np.nan
        self.env[a:b] = d
        self._prev = (b - 1, small[-1])
        self.done = b
        return frames


@dataclass
class VideoStream(Stream):
    """Frames on the ``--fps`` grid (uint8 RGB at ``--video-size``); a grid time with no source
    frame close enough is invalid (a gap)."""

    kind = "video"
    ref_rank = 0

    valid: np.ndarray | None = None  # bool [n]: False in gaps
    frames: VideoFrames | None = None  # decoded on demand
    held: list[np.ndarray] | None = None  # a short video: every grid frame, in chunks
    held_chunk: int = 0  # grid frames per held chunk
    ahead: _Ahead | None = None  # the whole video being decoded in a thread
    sink: ShardFrames | None = None  # every grid frame written into the shard while decoded (the reference)

    @classmethod
    def read(cls, spec: StreamSpec, rec: Recording, cfg: PreprocessConfig, scratch_dir: Path,
             shard=None) -> VideoStream:
        """Open the video and put it on the ``--fps`` grid by timestamps (nothing decoded yet). With
        ``shard`` (the open shard; given for the reference video, whose grid never moves), every grid
        frame is decoded now, in a thread, straight into the shard (``ShardFrames``)."""
        src = VideoSource(spec, rec.id, cfg.video_size)
        ft = src.t
        rate_meas = measured_rate(ft)
        period = 1.0 / rate_meas
        end = float(ft[-1]) + period
        k = max(0, int(math.floor((end - ft[0]) * cfg.fps + EPS_S)))
        grid = ft[0] + np.arange(k) / cfg.fps
        idx, valid = select_frames(ft, grid, GAP_FACTOR * period)
        h, w = cfg.video_size
        frames = VideoFrames(src, idx, (h, w, 3), rec.id, spec.file)
        declared = spec.declared_rate_hz if spec.declared_rate_hz is not None else src.native_fps
        info = {"kind": "video", "file": spec.file, "frames": int(src.n), **rate_check(declared, rate_meas, 0.01),
                **gap_stats(ft, GAP_FACTOR * period),
                "declared_source": "meta.json" if spec.declared_rate_hz is not None else "container",
                "resample_method": (f"by timestamps: frame shown at each {cfg.fps:g} Hz grid time "
                                    f"(last frame with pts <= t; source {rate_meas:.4g} fps)"
                                    + ("; rate matches" if abs(rate_meas - cfg.fps) < 0.01 * cfg.fps else "")),
                "decoder": "decord"}
        # a frame difference measures motion between two grid frames: centre it half a period earlier
        env = Envelope(float(ft[0]) - 0.5 / cfg.fps, cfg.fps, frames.env, "motion")
        info["envelopes"] = ["motion"]
        out = cls(name=spec.name, file=spec.file, rate_hz=cfg.fps, t0_s=float(ft[0]), n=k,
                  offset_s=spec.clock_offset_s, envelopes=[env], info=info,
                  frame_shape=(h, w, 3), dtype="uint8", valid=valid, frames=frames, clock=spec.clock)
        # decoded now, while the other streams are read: the reference video straight into the shard; another
        # with --align estimate (the whole video is decoded before windowing), or with --align meta only when
        # HOLD_META and the frames fit in memory
        if shard is not None and DIRECT_TO_SHARD and out.n <= DIRECT_MAX_S * cfg.fps:
            out.sink = ShardFrames(shard, spec.name, out.n, (h, w, 3))
            out.start_ahead(scratch_dir)
        elif cfg.align == "estimate" or (HOLD_META and out.n * int(np.prod(out.frame_shape)) <= HOLD_BYTES):
            out.start_ahead(scratch_dir)
        return out

    def start_ahead(self, scratch_dir: Path) -> None:
        """Start decoding the whole video in a thread (``_Ahead``): into the shard (``sink``), else into
        memory when it fits HOLD_BYTES, else into ``scratch_dir/<name>.u8``; stopped when this stream
        is dropped."""
        fits = self.sink is not None or self.n * int(np.prod(self.frame_shape)) <= HOLD_BYTES
        self.ahead = _Ahead(self.frames, self.n, None if fits else scratch_dir / f"{self.name}.u8", self.sink)
        weakref.finalize(self, self.ahead.stop.set)

    @classmethod
    def probe_end_s(cls, spec: StreamSpec, rec_id: str) -> float | None:
        v = VideoSource(spec, rec_id, (32, 32))
        return float(v.t[-1]) + spec.clock_offset_s

    def complete_envelope(self, scratch_dir: Path) -> None:
        """Decode the whole video once, into memory or a scratch file (the lag must be known before
        windowing): wait for the thread ``read`` started (``start_ahead``)."""
        if self.ahead is None and self.held is None and self.scratch is None and self.sink is None:
            self.start_ahead(scratch_dir)
        self._settle()
        self._retime()

    def wait_decoded(self) -> None:
        self._settle()

    def stop_decoding(self) -> None:
        if self.ahead is not None:
            self.ahead.stop.set()
            self.ahead.thread.join()

    def _settle(self) -> None:
        """Wait for the decoding thread, if one runs (its error raised here), and take its frames."""
        if self.ahead is not None:
            ahead, self.ahead = self.ahead, None
            ahead.wait()
            self.held, self.held_chunk, self.scratch = ahead.held, ahead.chunk, ahead.scratch

    def finish_envelope(self) -> None:
        """Decode the grid frames after the last kept window, for the envelope only."""
        self._settle()
        if self.scratch is None and self.held is None and self.sink is None:
            self.frames.scan(self.n)
        self._retime()

    def release(self) -> None:
        """Close the decoder (every grid frame was decoded; the envelope keeps its timestamps)."""
        self.frames.src.close()

    def _retime(self) -> None:
        """Put each frame difference at the midpoint of its two source frames' timestamps (a grid
        frame may hold a source frame shown up to one grid period earlier), on the uniform grid."""
        f = self.frames
        ft = f.src.t
        k = np.arange(1, len(f.idx))
        ok = np.isfinite(f.env[1:])
        if ok.sum() < 2:
            return
        t_mid = 0.5 * (ft[f.idx[k - 1]] + ft[f.idx[k]])[ok]
        grid = self.t0_s + np.arange(len(f.idx)) / self.rate_hz
        v = np.interp(grid, t_mid, f.env[1:][ok], left=np.nan, right=np.nan)
        gap = ~self.valid  # no source frame close enough: unknown
        v[gap] = np.nan
        self.envelopes = [Envelope(self.t0_s, self.rate_hz, v, "motion")]

    def bad_samples(self) -> list[tuple[np.ndarray, str]]:
        return [(~self.valid, "gap")]

    def samples(self, i0: int, i1: int) -> np.ndarray:
        """Frames [i0, i1): decoded now, or held or in the scratch file when decoded already."""
        self._settle()
        if self.held is not None:
            c = self.held_chunk
            parts = [self.held[k][max(i0, k * c) - k * c:min(i1, k * c + c) - k * c]
                     for k in range(i0 // c, (i1 - 1) // c + 1)] if i1 > i0 else []
            if len(parts) == 1:
                return parts[0]  # a view: no copy
            return np.concatenate(parts) if parts else np.zeros((0,) + tuple(self.frame_shape), np.uint8)
        if self.scratch is None:
            return self.frames.span(i0, i1)
        if i1 <= i0:
            return super().samples(i0, i1)
        # mapped, not read: HDF5 copies the frames from the page cache once (no buffer to fill first);
        # one mapping per call, so resident memory stays one chunk whatever the recording's length
        item = int(np.prod(self.frame_shape))
        return np.memmap(self.scratch, dtype=np.uint8, mode="r", offset=i0 * item,
                         shape=(i1 - i0,) + tuple(self.frame_shape))

    def write_runs(self, gs, rec: Recording, cfg: PreprocessConfig, runs: list[tuple[int, int]],
                   window_start: np.ndarray, i0: np.ndarray, t_win: int) -> None:
        """``frames`` uint8 [total, H, W, 3], decoded forward VIDEO_CHUNK frames at a time; the reference
        video (``sink``) has every grid frame in the shard already and writes its ``window_start`` only."""
        h_, w_ = cfg.video_size
        self._settle()
        if self.sink is not None:  # every grid frame is in the shard already: windows start at their grid frame
            gs.create_dataset("window_start", data=np.asarray(i0, dtype=np.int64))
            gs.attrs.update(rate_hz=cfg.fps, samples_per_window=t_win, unit="uint8 RGB", height=h_, width=w_)
            return
        ds = gs.create_dataset("frames", shape=(run_samples(runs),) + (h_, w_, 3), dtype=np.uint8)
        gs.create_dataset("window_start", data=window_start)
        gs.attrs.update(rate_hz=cfg.fps, samples_per_window=t_win, unit="uint8 RGB", height=h_, width=w_)
        pos = 0
        for r0, r1 in runs:
            c0 = r0
            while c0 < r1:  # held frames: pieces end where the held chunks end, so each is a view
                step = VIDEO_CHUNK if self.held is None else (c0 // self.held_chunk + 1) * self.held_chunk - c0
                c1 = min(r1, c0 + step)
                ds[pos:pos + c1 - c0] = self.samples(c0, c1)
                pos += c1 - c0
                c0 = c1
