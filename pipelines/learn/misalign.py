"""Training-time misalignment of one stream: the synchronization-robustness study.

D-CAT assumes the source's and the target's windows cover the same seconds. ``--misalign imu=0.5``
breaks that on purpose when training: the ``imu`` stream is treated as if it were 0.5 s late, so the
imu window over ``[t, t + L)`` is paired with the other streams' windows over ``[t - 0.5, t - 0.5 + L)``.
Only the *pairing* changes: the target still reads its own windows with their own labels, so the
cross-entropy term is the same as without misalignment; what moves is which source window the
alignment (or distillation) term compares it with, and the source's MCMA correctness is judged
against the target window's label.

A stream's shift ``x_k`` (seconds, positive = late) gives source ``s`` a read offset
``x_tgt - x_s``: with ``imu=0.5`` and target imu, the video source is read 0.5 s *earlier*.

Shifted windows are read from the stored samples (schemas/shard.md): sample ``k`` of the stored
array belongs to the run of consecutive samples that holds it, and a shifted window is used only if it
lies wholly inside the run of the window it is shifted from (windows at the ends of a run, next to
dropped windows or the recording's edges, have no shifted counterpart). For those the transfer term
is masked (``valid`` = False), exactly as MCMA masks a window: the target still trains on them with
cross-entropy, so every shift trains on the same windows.
"""

from __future__ import annotations

import h5py
import numpy as np
import torch

from pipelines.learn.config import MisalignError, format_misalign, parse_misalign  # noqa: F401
from pipelines.shards.reader import WindowReader


def source_offsets(misalign: dict[str, float], tgt: str, sources: list[str]) -> dict[str, float]:
    """Per source: the read offset in seconds (``x_tgt - x_src``; 0 without misalignment)."""
    x_t = float(misalign.get(tgt, 0.0))
    return {s: x_t - float(misalign.get(s, 0.0)) for s in sources}


def run_ids(starts_stored: np.ndarray, start_s: np.ndarray, rate_hz: float, length: int) -> np.ndarray:
    """Which stored run each window lies in (schemas/shard.md: windows that overlap or touch share a
    run; after dropped windows a new run starts right behind the previous one in storage)."""
    n = len(starts_stored)
    if n == 0:
        return np.zeros(0, np.int64)
    d_store = np.diff(starts_stored)
    d_grid = np.round(np.diff(start_s) * rate_hz)
    # a new run is stored straight after the previous window (d_store == length) although the
    # windows lie further apart in time; allow a sample of rounding between the two grids
    new = np.abs(d_store - d_grid) > 1
    return np.concatenate([[0], np.cumsum(new)]).astype(np.int64)


def shifted_starts(starts_stored: np.ndarray, start_s: np.ndarray, rate_hz: float, length: int,
                   offset_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Stored start of each window moved by ``offset_s`` and whether it stays inside its run."""
    st = np.asarray(starts_stored, np.int64)
    o = int(round(offset_s * rate_hz))
    rid = run_ids(st, np.asarray(start_s, np.float64), rate_hz, length)
    if len(st) == 0:
        return st, np.zeros(0, bool)
    first = np.zeros(rid[-1] + 1, np.int64)
    last = np.zeros(rid[-1] + 1, np.int64)
    first[rid[::-1]] = st[::-1]
    last[rid] = st
    new = st + o
    valid = (new >= first[rid]) & (new <= last[rid])
    return np.where(valid, new, st), valid


class ShiftedReader:
    """Reads one stream's windows of one shard shifted by ``offset_s`` seconds (a
    :class:`pipelines.shards.reader.WindowReader` whose window starts are moved).

    ``read(win)`` -> ``(array [len(win), T', ...], valid [len(win)])``; invalid windows hold the
    unshifted window (so shapes stay fixed) and must be masked by the caller.
    """

    def __init__(self, f: h5py.File, stream: str, dataset: str, offset_s: float):
        g = f["streams"][stream]
        self.reader = WindowReader(g, dataset)
        rate = float(g.attrs["rate_hz"])
        self.reader.starts, self.valid = shifted_starts(self.reader.starts, f["windows"]["start_s"][()], rate,
                                                        self.reader.length, offset_s)

    def read(self, win: np.ndarray, frames=None):
        win = np.asarray(win, np.int64)
        return self.reader.read_windows(win, frames), self.valid[win]


def shifted_batches(shards, ids, stream: str, offset_s: float, batch_size: int = 64, frames=None):
    """Batches ``{stream, y, idx, valid}`` over windows ``ids`` (in order) of ``stream`` read
    ``offset_s`` seconds away from each window's own span (``idx``: position in ``ids``)."""
    from pipelines.learn.data import stream_reads

    ids = np.asarray(ids, np.int64)
    dataset, fidx = stream_reads(shards, [stream], {stream: frames})[stream]
    order = np.argsort(ids, kind="stable")
    rec = shards.rec[ids[order]]
    for r in np.unique(rec):
        pos = order[rec == r]
        with h5py.File(shards.recordings[int(r)].path, "r") as f:
            rd = ShiftedReader(f, stream, dataset, offset_s)
            for c in range(0, len(pos), batch_size):
                p = pos[c:c + batch_size]
                x, valid = rd.read(shards.win[ids[p]], fidx)
                yield {stream: torch.from_numpy(np.ascontiguousarray(x)), "y": torch.from_numpy(shards.y[ids[p]]),
                       "idx": torch.from_numpy(p), "valid": torch.from_numpy(valid)}


__all__ = ["MisalignError", "parse_misalign", "format_misalign", "source_offsets", "shifted_starts", "run_ids",
           "ShiftedReader", "shifted_batches"]
