"""What every stream kind provides to preprocessing (``Stream``), and the checks they share.

A stream kind is one subclass of ``Stream`` (``video``, ``audio``, ``imu`` beside this module),
registered in ``pipelines.ingest.streams.KINDS``. The per-recording pipeline
(``pipelines.ingest.recording``) calls, in this order:

1. ``read``: open the file, put the stream on a uniform grid, collect its activity envelope and its
   info record (rate check, gap statistics, how it is resampled);
2. ``complete_envelope``: only when the lag must be known before windowing (``--align estimate``);
   ``finish_envelope`` otherwise, after writing (the envelope covers every sample, kept or not),
   then ``release`` (a decoder closed before the lag estimate);
   ``apply_drift``: with ``--align estimate``, a clock drift is corrected (IMU: timestamps scaled;
   video, audio: window starts mapped by ``window_index``);
3. ``cover_rec_s``: the span it covers on the recording clock (coverage check, window span);
4. ``resample``: onto the window grid, when the kind resamples there (IMU);
5. ``bad_samples``: the samples a window must not contain (gaps, NaN), per rejection reason;
6. ``write``: its datasets and attributes in the shard's ``streams/<name>`` group.

``probe_end_s`` serves `dcat validate --deep` (``pipelines.ingest.validate``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from pipelines.core.timeutil import sample_indices
from pipelines.ingest.sync.envelopes import Envelope
from pipelines.ingest.config import PreprocessConfig
from pipelines.ingest.raw import Recording, StreamSpec

BLOCK_BYTES = 32 << 20  # windows are written in blocks of about this many bytes per stream


@dataclass
class Stream:
    """A stream on a uniform grid: sample k at stream time ``t0_s + k / rate_hz``."""

    kind: ClassVar[str]  # the meta.json "kind" and the shard's stream "kind" attribute
    ref_rank: ClassVar[int]  # the reference stream of a recording is the one of lowest rank (first wins)

    name: str
    file: str
    rate_hz: float
    t0_s: float
    n: int
    offset_s: float  # total offset applied: recording time = stream time + offset_s
    envelopes: list[Envelope]  # activity envelopes for the lag estimate (pipelines.ingest.sync)
    info: dict
    scratch: Path | None = None  # samples in a raw scratch file (video: uint8 [n,H,W,3]; audio: float32 [n])
    frame_shape: tuple = ()
    dtype: str = "float32"
    clock: str = ""  # the clock that timestamps it (meta.json "clock"; default one per file)
    drift: float = 0.0  # clock drift corrected when windowing (``apply_drift``; kinds on a fixed grid)
    drift_ref_rec_s: float = 0.0  # recording time at which the drift correction is zero

    # ------------------------------------------------------------------ reading and checking
    @classmethod
    def read(cls, spec: StreamSpec, rec: Recording, cfg: PreprocessConfig, scratch_dir: Path) -> Stream:
        """Read ``spec`` into a stream on its grid with its envelope and info record."""
        raise NotImplementedError

    @classmethod
    def probe_end_s(cls, spec: StreamSpec, rec_id: str) -> float | None:
        """`dcat validate --deep`: open the file cheaply (RecordingError if it cannot be read) and
        return where it ends on the recording clock, or None when that needs a full read."""
        raise NotImplementedError

    def complete_envelope(self, scratch_dir: Path) -> None:
        """Make the envelope complete before windowing (the lag is applied): nothing to do unless
        the kind collects it while writing."""

    def stop_decoding(self) -> None:
        """Stop what a thread decodes for this stream and wait for it to end (a recording dropped
        before its turn); nothing unless the kind decodes in a thread."""

    def wait_decoded(self) -> None:
        """Return when what a thread decodes for this stream is done (its error raised here);
        nothing to wait for unless the kind decodes in a thread."""

    def finish_envelope(self) -> None:
        """After writing (``--align meta``): complete the envelope over the samples no kept window
        holds, so the lag estimate does not depend on windowing."""

    def release(self) -> None:
        """Written and its envelope complete: drop what only reading and writing needed (a decoder),
        so the lag estimate after writing does not run on top of it."""

    def apply_drift(self, drift: float, t_ref_rec_s: float) -> bool:
        """Correct a clock running ``1 + drift`` times too fast around recording time ``t_ref_rec_s``
        (the offset is applied separately). Kinds on a fixed grid (video, audio) keep their samples and
        map window starts instead (``window_index``); IMU rescales its timestamps. Returns True."""
        self.drift, self.drift_ref_rec_s = float(drift), float(t_ref_rec_s)
        return True

    def window_index(self, starts: np.ndarray) -> np.ndarray:
        """The grid sample at which each window (recording time ``starts``) begins: with a drift
        correction, a window at time ``u`` reads the stream where its drifting clock shows ``u``,
        i.e. at ``u + drift * (u - drift_ref_rec_s)``."""
        u = np.asarray(starts, dtype=np.float64)
        if self.drift:
            u = u + self.drift * (u - self.drift_ref_rec_s)
        return sample_indices(u, self.start_rec_s, self.rate_hz)

    @property
    def label(self) -> str:
        """How messages name it: the stream and its file (``audio in video.mp4``)."""
        return f"{self.name} in {self.file}"

    @property
    def start_rec_s(self) -> float:
        """Recording time of sample 0 (the grid origin)."""
        return self.t0_s + self.offset_s

    @property
    def cover_rec_s(self) -> tuple[float, float]:
        """The span this stream covers on the recording clock."""
        return self.start_rec_s, self.start_rec_s + self.n / self.rate_hz

    # ------------------------------------------------------------------ the window grid
    def resample(self, a: float, b: float, cfg: PreprocessConfig) -> None:
        """Put the stream on the window grid spanning ``[a, b]`` (recording clock), for kinds
        resampled there; the others are on their grid since ``read``."""

    def bad_samples(self) -> list[tuple[np.ndarray, str]]:
        """``(mask [n], reason)`` pairs: a window holding a masked sample is rejected for ``reason``."""
        return []

    def samples(self, i0: int, i1: int) -> np.ndarray:
        """Samples [i0, i1) from the scratch file (one contiguous read)."""
        item = int(np.prod(self.frame_shape, dtype=np.int64)) if self.frame_shape else 1
        dt = np.dtype(self.dtype)
        with open(self.scratch, "rb") as f:
            f.seek(i0 * item * dt.itemsize)
            a = np.fromfile(f, dtype=dt, count=(i1 - i0) * item)
        return a.reshape((i1 - i0,) + tuple(self.frame_shape))

    # ------------------------------------------------------------------ writing
    def write(self, gs, rec: Recording, cfg: PreprocessConfig, i0: np.ndarray, t_win: int) -> None:
        """Write the stream into its shard group ``gs``: the samples its kept windows cover, each
        once, plus ``window_start``.

        Overlapping windows share samples (stride < window), so nothing is stored twice; a block of
        consecutive windows is one contiguous slice (schemas/shard.md). ``i0``: each kept window's
        first grid sample; ``t_win``: grid samples per window.
        """
        from pipelines.shards.format import pack_windows

        gs.attrs.update({"kind": self.kind, "declared_rate_hz": float(self.info["declared_rate_hz"] or np.nan),
                         "measured_rate_hz": float(self.info["measured_rate_hz"]),
                         "clock_offset_s": self.info["clock_offset_s"],
                         "resample_method": self.info["resample_method"]})
        runs, ws = pack_windows(i0, t_win)
        self.write_runs(gs, rec, cfg, runs, ws, i0, t_win)

    def write_runs(self, gs, rec: Recording, cfg: PreprocessConfig, runs: list[tuple[int, int]],
                   window_start: np.ndarray, i0: np.ndarray, t_win: int) -> None:
        """The kind's datasets: grid intervals ``runs`` stored one after another (``pack_windows``),
        in blocks of about BLOCK_BYTES so memory does not grow with the recording."""
        raise NotImplementedError


def run_samples(runs: list[tuple[int, int]]) -> int:
    """Grid samples stored for ``runs``."""
    return int(sum(r1 - r0 for r0, r1 in runs))


def rate_check(declared: float | None, measured: float, tol: float) -> dict:
    """Info fields comparing the declared rate with the one measured from timestamps."""
    ok = True if declared is None or not math.isfinite(measured) else abs(measured / declared - 1) <= tol
    return {"declared_rate_hz": declared, "measured_rate_hz": measured, "rate_ok": bool(ok)}


def gap_stats(t: np.ndarray, gap_s: float) -> dict:
    """Info fields on the timestamp steps longer than ``gap_s``."""
    dt = np.diff(t)
    g = dt > gap_s
    return {"gaps": int(g.sum()), "gap_total_s": float((dt[g]).sum()), "max_gap_s": float(dt.max()) if len(dt) else 0.0}
