"""Training-time misalignment of one stream: the synchronization-robustness study.

D-CAT assumes the source's and the target's windows cover the same seconds. ``--misalign`` breaks
that on purpose when training. A stream's shift ``x_k`` (seconds) gives source ``s`` the read offset
``x_tgt - x_s`` (:func:`source_offsets`): the target window over ``[t, t + L)`` is paired with source
``s``'s samples over ``[t + x_tgt - x_s, t + x_tgt - x_s + L)``. So with target imu:

- ``imu=+0.5`` pairs the imu window ``[t, t + 2)`` with the video window ``[t + 0.5, t + 2.5)``
  (the source is read 0.5 s *later*): what a model sees when the imu is 0.5 s late, i.e. an event
  at time T appears in the imu's samples at T + 0.5, so the imu's ``[t, t + 2)`` shows what the
  video shows at ``[t - 0.5, t + 1.5)`` and the video of ``[t, t + 2)`` shows what the imu shows
  over ``[t + 0.5, t + 2.5)``;
- ``imu=-0.5`` (or ``video=+0.5``) pairs it with the video window ``[t - 0.5, t + 1.5)``.

``tests/test_misalign.py`` pins this sign. Only the *pairing* changes: the target still reads its
own windows with their own labels, so the cross-entropy term is the same as without misalignment;
what moves is which source window the alignment (or distillation) term compares it with, and the
source's MCMA correctness is judged against the target window's label.

A shifted window is used only where it reads nothing the training part may not hold
(:func:`shifted_batches`):

- it lies wholly inside the run of stored samples of the window it is shifted from
  (schemas/shard.md: windows at the ends of a run, next to dropped windows or the recording's
  edges, have no shifted counterpart), and
- its time span lies wholly inside the time the training windows cover (the split's training
  part, which already keeps ``guard_s`` from every validation and test window): a shift never
  reads validation or test time, nor time within the guard of it.

Elsewhere the transfer term is masked (``valid`` = False), exactly as MCMA masks a window: the
target still trains on those windows with cross-entropy, so every shift trains on the same windows.
"""

from __future__ import annotations

import h5py
import numpy as np
import torch

from pipelines.learn.config import MisalignError, format_misalign, parse_misalign  # noqa: F401
from pipelines.shards.reader import WindowReader

EPS_S = 1e-6


def source_offsets(misalign: dict[str, float], tgt: str, sources: list[str]) -> dict[str, float]:
    """Per source: the read offset in seconds (``x_tgt - x_src``; 0 without misalignment): the
    target window ``[t, t + L)`` is paired with the source's ``[t + offset, t + offset + L)``."""
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
        self.rate = rate = float(g.attrs["rate_hz"])
        self.reader.starts, self.valid = shifted_starts(self.reader.starts, f["windows"]["start_s"][()], rate,
                                                        self.reader.length, offset_s)

    def read(self, win: np.ndarray, frames=None):
        win = np.asarray(win, np.int64)
        return self.reader.read_windows(win, frames), self.valid[win]


def covered(start_s: np.ndarray, end_s: np.ndarray, spans_start: np.ndarray, spans_end: np.ndarray) -> np.ndarray:
    """Which intervals ``[start_s, end_s]`` lie wholly inside the union of the intervals
    ``[spans_start, spans_end]`` (overlapping or touching spans merge into one)."""
    start_s, end_s = np.asarray(start_s, np.float64), np.asarray(end_s, np.float64)
    out = np.zeros(len(start_s), bool)
    if len(spans_start) == 0 or len(start_s) == 0:
        return out
    merged: list[list[float]] = []
    for a, b in sorted(zip(np.asarray(spans_start, np.float64).tolist(), np.asarray(spans_end, np.float64).tolist())):
        if merged and a <= merged[-1][1] + EPS_S:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    iv = np.asarray(merged)
    k = np.searchsorted(iv[:, 0], start_s + EPS_S, side="right") - 1
    ok = k >= 0
    out[ok] = end_s[ok] <= iv[k[ok], 1] + EPS_S
    return out


def shifted_batches(shards, ids, stream: str, offset_s: float, batch_size: int = 64, frames=None, within=None):
    """Batches ``{stream, y, idx, valid}`` over windows ``ids`` (in order) of ``stream`` read
    ``offset_s`` seconds away from each window's own span (``idx``: position in ``ids``).

    ``within``: global ids of the windows whose time the shifted reads may use (default: ``ids``;
    give the whole training part when ``ids`` is a share of it, so the mask does not depend on the
    share). ``valid`` is False where the shifted span leaves its stored run or the time those
    windows cover (the read offset is rounded to the stream's sample grid, as the read is)."""
    from pipelines.learn.data import stream_reads

    ids = np.asarray(ids, np.int64)
    within = ids if within is None else np.asarray(within, np.int64)
    dataset, fidx = stream_reads(shards, [stream], {stream: frames})[stream]
    order = np.argsort(ids, kind="stable")
    rec = shards.rec[ids[order]]
    for r in np.unique(rec):
        pos = order[rec == r]
        mine = within[shards.rec[within] == r]
        with h5py.File(shards.recordings[int(r)].path, "r") as f:
            rd = ShiftedReader(f, stream, dataset, offset_s)
            o = round(offset_s * rd.rate) / rd.rate
            for c in range(0, len(pos), batch_size):
                p = pos[c:c + batch_size]
                g = ids[p]
                x, valid = rd.read(shards.win[g], fidx)
                valid = valid & covered(shards.start_s[g] + o, shards.end_s[g] + o, shards.start_s[mine],
                                        shards.end_s[mine])
                yield {stream: torch.from_numpy(np.ascontiguousarray(x)), "y": torch.from_numpy(shards.y[ids[p]]),
                       "idx": torch.from_numpy(p), "valid": torch.from_numpy(valid)}


__all__ = ["MisalignError", "parse_misalign", "format_misalign", "source_offsets", "shifted_starts", "run_ids",
           "ShiftedReader", "covered", "shifted_batches"]
