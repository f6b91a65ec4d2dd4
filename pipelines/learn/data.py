"""Reading windows from shards for training: a block-reading Dataset over a window index.

- :class:`ShardSet` (:mod:`pipelines.learn.shardset`, re-exported here) indexes a shards directory
  (schemas/shard.md): every window's recording, subject, time span and class index, checking the
  encoding versions and that the streams asked for exist with the manifest's shapes. It reads only
  ``/windows`` and the stream attributes.
- :class:`BlockDataset` is a torch ``IterableDataset`` that yields whole batches. It reads
  *blocks* of consecutive windows (one read per block and stream, of only the samples the kept
  time steps need: ``pipelines.shards.reader.WindowReader``, memory-mapped where the layout allows),
  visits blocks in a shuffled order, and shuffles windows inside a buffer of several blocks, so a
  batch mixes recordings without ever reading single windows. The batch plan is computed from the
  window ids alone; under ``torchrun`` each process takes its slice of every batch. Memory-mapped
  video is not read in blocks: each batch of the plan is gathered straight from the memory maps
  into its tensor (:mod:`pipelines.learn.gather`; the same batches). HDF5 files are opened lazily
  in the process that reads them (each DataLoader worker) and the handles are kept; they are never
  pickled to a worker (pytorch/pytorch#11929). :func:`make_loader`'s workers are persistent and
  read the epoch from shared memory, so they follow each epoch's plan.

Only the streams asked for are read, so a shards directory holding just the target stream works.
Video frames can be subsampled in time on read (``frames={"video": 8}``) to keep CPU cost low.
Imports only numpy, h5py and torch.
"""

from __future__ import annotations

import math

import h5py
import numpy as np
import torch

from pipelines.core.errors import ShardError, TrainingError
from pipelines.learn.distributed import part_of
from pipelines.learn.gather import gathered_batches
from pipelines.learn.models import frame_indices
from pipelines.learn.shardset import ShardSet, manifest_of_shard
from pipelines.shards.format import FEATURE_DATASETS
from pipelines.shards.reader import WindowReader


def stream_reads(shards: ShardSet, streams: list[str], frames: dict | None = None) -> dict:
    """Per stream: (dataset name, frame indices or None) for :class:`BlockDataset`."""
    out = {}
    for s in streams:
        kind = shards.kind(s)
        idx = None
        if kind == "video" and frames and frames.get(s):
            idx = frame_indices(shards.shape(s)[0], frames[s])
        out[s] = (FEATURE_DATASETS[kind], idx)
    return out


def make_blocks(shards: ShardSet, ids: np.ndarray, block_windows: int) -> list[tuple[int, int, int, np.ndarray]]:
    """Split sorted global window ids into blocks ``(rec, i, j, positions)`` of consecutive windows of
    one recording, at most ``block_windows`` long; ``positions`` index into ``ids``."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) == 0:
        return []
    order = np.argsort(ids, kind="stable")
    s = ids[order]
    rec, win = shards.rec[s], shards.win[s]
    brk = np.flatnonzero((np.diff(rec) != 0) | (np.diff(win) != 1)) + 1
    blocks = []
    for a, b in zip(np.concatenate([[0], brk]), np.concatenate([brk, [len(s)]])):
        for c in range(a, b, block_windows):
            d = min(b, c + block_windows)
            blocks.append((int(rec[c]), int(win[c]), int(win[d - 1]) + 1, order[c:d]))
    return blocks


class BlockDataset(torch.utils.data.IterableDataset):
    """Batches of windows read in contiguous blocks.

    ids: global window ids of a :class:`ShardSet` (e.g. one split part). Each batch is a dict:
    one tensor per stream (as stored: video uint8, others float32), ``y`` (int64 class index),
    ``idx`` (int64 position in ``ids``: lets a cache indexed like ``ids`` be looked up).

    shuffle: visit blocks in a random order and shuffle windows inside a buffer of at least
    ``buffer_windows`` windows (several blocks); the order depends only on ``seed`` and the epoch
    (:meth:`set_epoch`) and the number of workers, so a resumed run sees the same batches.
    block_windows: most windows per read (default: as many as fit in ``block_mb`` MiB, 8..256).

    Several processes (``world`` > 1, ``rank`` this one; see :mod:`pipelines.learn.distributed`):

    - ``shard="batch"`` (training): every rank computes the same global batch plan and yields its
      own contiguous slice of each global batch (sizes differ by at most 1), reading only the
      windows of its slices; each batch then also holds ``part`` = ``[offset, global batch size]``
      (int64) so the step can weigh its share and draw per-window randomness like one process.
      A final global batch smaller than ``world`` (at most ``world - 1`` windows, once per epoch
      and loader worker) is left out, as every rank must take part in every step.
    - ``shard="block"`` (inference): each rank reads a disjoint subset of the blocks.

    ``mmap`` (class attribute): read through memory maps where the layout allows
    (:class:`pipelines.shards.reader.WindowReader`); False forces h5py reads (benchmarks compare both).
    ``gather`` (class attribute): True gathers each batch straight from the memory maps into its
    tensor (one ``numpy.take`` per run of windows of one recording; in a DataLoader worker the
    tensor is allocated in shared memory, so it is not copied again on the way to the main
    process); False reads whole blocks, then copies each window into the batch (the loader before
    issue 14); None (default): gather when a video stream is read and every stream read is
    memory-mapped (h5py reads keep the block reads, which save h5py's per-call cost). The same
    batches either way (``benchmarks/loader.py`` compares both).

    The epoch lives in a shared-memory tensor once :meth:`share_epoch` is called (``make_loader``
    does, for persistent DataLoader workers): :meth:`set_epoch` in the main process then reaches
    the workers' copies, so persistent workers follow each epoch's plan.
    """

    mmap = True
    gather: bool | None = None

    def __init__(self, shards: ShardSet, ids, streams: list[str], batch_size: int, *, shuffle: bool = False,
                 seed: int = 0, frames: dict | None = None, block_windows: int | None = None,
                 block_mb: float = 32.0, buffer_windows: int | None = None, num_workers: int = 0,
                 drop_last: bool = False, rank: int = 0, world: int = 1, shard: str = "batch"):
        super().__init__()
        self.shards = shards
        self.ids = np.asarray(ids, dtype=np.int64)
        self.streams = list(streams)
        self.batch_size = int(batch_size)
        self._epoch_t = None
        self.shuffle, self.seed, self.epoch = shuffle, int(seed), 0
        self.reads = stream_reads(shards, self.streams, frames)
        if block_windows is None:
            per = sum(math.prod(shards.shape(s)) * (1 if shards.kind(s) == "video" else 4) for s in self.reads)
            block_windows = int(min(256, max(8, block_mb * 2 ** 20 // max(per, 1))))
        self.block_windows = int(block_windows)
        self.buffer_windows = int(buffer_windows or max(4 * self.batch_size, 2 * self.block_windows))
        self.num_workers = int(num_workers)
        self.drop_last = drop_last
        if shard not in ("batch", "block"):
            raise ValueError(f"shard must be 'batch' or 'block', not {shard!r}")
        self.rank, self.world, self.shard = int(rank), int(world), shard
        if not 0 <= self.rank < self.world:
            raise ValueError(f"rank {rank} outside world {world}")
        if self.world > 1 and shard == "batch" and self.batch_size < self.world:
            raise ValueError(f"batch size {self.batch_size} is smaller than the {self.world} processes: "
                             "each needs at least one window per step; raise --batch-size")
        self.blocks = make_blocks(shards, self.ids, self.block_windows)
        self._block_of = np.zeros(len(self.ids), np.int64)
        for k, blk in enumerate(self.blocks):
            self._block_of[blk[3]] = k
        self._files: dict = {}

    def __getstate__(self):
        st = self.__dict__.copy()
        st["_files"] = {}
        return st

    @property
    def epoch(self) -> int:
        return self._epoch if self._epoch_t is None else int(self._epoch_t.item())

    @epoch.setter
    def epoch(self, epoch: int) -> None:
        self._epoch = int(epoch)
        if self._epoch_t is not None:
            self._epoch_t.fill_(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def share_epoch(self) -> None:
        """Keep the epoch in shared memory, seen by DataLoader workers started before a later
        :meth:`set_epoch` (persistent workers)."""
        if self._epoch_t is None:
            self._epoch_t = torch.tensor(self._epoch, dtype=torch.int64).share_memory_()

    def _rng(self, worker: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, worker, 0x5EED])

    def _lane(self, worker: int, n_workers: int) -> tuple[int, int]:
        """(lane, lanes) the blocks are dealt over: the loader workers, times the ranks in "block" mode."""
        if self.world > 1 and self.shard == "block":
            return self.rank * n_workers + worker, self.world * n_workers
        return worker, n_workers

    def _plan(self, worker: int, n_workers: int) -> list[int]:
        """Indices into ``self.blocks`` this (worker, rank) visits, in order."""
        lane, lanes = self._lane(worker, n_workers)
        order = np.arange(len(self.blocks))
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch, 0x0B10C]).permutation(len(self.blocks))
        return [int(k) for k in order[lane::lanes]]

    def global_batches(self, worker: int = 0, n_workers: int = 1) -> list[np.ndarray]:
        """The batches of one loader worker's stream as positions in ``ids``, before any split over
        ranks: blocks in plan order fill a buffer of at least ``buffer_windows`` windows, shuffled
        (``shuffle``) and cut into batches; the remainder stays for the next fill. Reads nothing."""
        plan = self._plan(worker, n_workers)
        rng = self._rng(self._lane(worker, n_workers)[0])
        bs = self.batch_size
        out: list[np.ndarray] = []
        buf: list[np.ndarray] = []
        n_buf = 0
        for bi, k in enumerate(plan):
            buf.append(self.blocks[k][3])
            n_buf += len(self.blocks[k][3])
            last = bi == len(plan) - 1
            if n_buf >= self.buffer_windows or last:
                merged = np.concatenate(buf)
                perm = rng.permutation(n_buf) if self.shuffle else np.arange(n_buf)
                n_full = n_buf // bs
                for b in range(n_full):
                    out.append(self._take(merged, perm[b * bs:(b + 1) * bs]))
                rest = perm[n_full * bs:]
                if last:
                    if len(rest) and not self.drop_last:
                        out.append(self._take(merged, rest))
                    buf, n_buf = [], 0
                else:
                    buf = [merged[rest]] if len(rest) else []
                    n_buf = len(rest)
        return out

    def _take(self, merged: np.ndarray, sel: np.ndarray) -> np.ndarray:
        return merged[sel if self.shuffle else np.sort(sel)]

    def local_batches(self, worker: int = 0, n_workers: int = 1) -> list[tuple[np.ndarray, int, int]]:
        """This rank's batches: ``(positions, offset in the global batch, global batch size)``."""
        out = []
        for b in self.global_batches(worker, n_workers):
            n = len(b)
            if self.world > 1 and self.shard == "batch":
                if n < self.world:
                    continue
                part = part_of(n, self.rank, self.world)
                out.append((b[part], part.start, n))
            else:
                out.append((b, 0, n))
        return out

    def __len__(self) -> int:
        n = 0
        w = max(1, self.num_workers)
        for k in range(w):
            m = sum(len(self.blocks[i][3]) for i in self._plan(k, w))
            r = m % self.batch_size
            n += m // self.batch_size
            if r and not self.drop_last and not (self.world > 1 and self.shard == "batch" and r < self.world):
                n += 1
        return n

    def _reader(self, rec: int, stream: str) -> WindowReader:
        key = (rec, stream)
        if key not in self._files:
            path = self.shards.recordings[rec].path
            f = self._files.get(("file", rec))
            if f is None:
                f = h5py.File(path, "r")
                self._files[("file", rec)] = f
            self._files[key] = WindowReader(f["streams"][stream], self.reads[stream][0], mmap=self.mmap)
        return self._files[key]

    def _gathers(self, batches) -> bool:
        """Whether this iteration gathers batches from the memory maps (see ``gather``)."""
        if self.gather is not None:
            return bool(self.gather)
        if not any(self.shards.kind(s) == "video" for s in self.reads):
            return False
        recs = np.unique(self.shards.rec[self.ids[np.concatenate([b for b, _, _ in batches])]])
        return all(self._reader(int(r), s).mm is not None for r in recs.tolist() for s in self.reads)

    def read_block(self, rec: int, i: int, j: int) -> dict:
        """Windows ``i:j`` of recording ``rec``, per stream: each window's (selected) time steps."""
        return {s: self._reader(rec, s).read(i, j, frames=fidx) for s, (_, fidx) in self.reads.items()}

    def read_windows(self, rec: int, wins: np.ndarray) -> dict:
        """Windows ``wins`` (indices in recording ``rec``), per stream."""
        return {s: self._reader(rec, s).read_windows(wins, frames=fidx) for s, (_, fidx) in self.reads.items()}

    def close(self) -> None:
        for k, f in list(self._files.items()):
            if k[0] == "file":
                f.close()
        self._files = {}

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        batches = self.local_batches(worker, n_workers)
        if not batches:
            return
        if self._gathers(batches):
            yield from gathered_batches(self, batches, shared=info is not None)
            return
        need = np.concatenate([b for b, _, _ in batches])
        blk = self._block_of[need]
        left = np.bincount(blk, minlength=len(self.blocks))  # windows of each block still to be used
        loaded: dict[int, tuple[np.ndarray, dict]] = {}
        with_part = self.world > 1 and self.shard == "batch"
        for pos, off, n_global in batches:
            kb = self._block_of[pos]
            for k in np.unique(kb):
                k = int(k)
                if k not in loaded:
                    rec, i, j, bpos = self.blocks[k]
                    mine = np.sort(need[blk == k])
                    if len(mine) == len(bpos):  # the whole block: windows i..j-1, in the order of ids[bpos]
                        loaded[k] = (np.asarray(bpos), self.read_block(rec, i, j))
                    else:
                        loaded[k] = (mine, self.read_windows(rec, self.shards.win[self.ids[mine]]))
            out = {}
            for k in np.unique(kb):
                k = int(k)
                where = np.flatnonzero(kb == k)
                have, arrays = loaded[k]
                srt = np.argsort(have, kind="stable")
                rows = srt[np.searchsorted(have, pos[where], sorter=srt)]
                for s, a in arrays.items():
                    if s not in out:
                        out[s] = np.empty((len(pos), *a.shape[1:]), a.dtype)
                    o = out[s]
                    for i, r in zip(where.tolist(), rows.tolist()):  # one contiguous copy per window:
                        o[i] = a[r]  # 1.4x faster than a masked or fancy-indexed assignment
                left[k] -= len(where)
                if left[k] == 0:
                    del loaded[k]
            batch = {s: torch.from_numpy(a) for s, a in out.items()}
            batch["y"] = torch.from_numpy(self.shards.y[self.ids[pos]])
            batch["idx"] = torch.from_numpy(np.ascontiguousarray(pos, dtype=np.int64))
            if with_part:
                batch["part"] = torch.tensor([off, n_global], dtype=torch.int64)
            yield batch


def make_loader(ds: BlockDataset, workers: int = 0, pin_memory: bool = False, seed: int = 0):
    """A DataLoader over a :class:`BlockDataset` (which already batches): ``batch_size=None``.

    With workers, they are persistent (started once, their open files and warm memory maps kept
    from epoch to epoch) when the dataset can share its epoch with them
    (:meth:`BlockDataset.share_epoch`); a dataset without it gets workers started every epoch."""
    ds.num_workers = int(workers)
    kw = {}
    if workers > 0:
        persistent = hasattr(ds, "share_epoch")
        if persistent:
            ds.share_epoch()
        kw = {"prefetch_factor": 2, "persistent_workers": persistent}
    return torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers, pin_memory=pin_memory,
                                       generator=torch.Generator().manual_seed(int(seed)), **kw)


def estimate_stats(shards: ShardSet, ids, stream: str, max_windows: int = 512, seed: int = 0):
    """Per-channel (imu) / per-mel (audio) mean and std over up to ``max_windows`` of ``ids``
    (a random subset of whole blocks, read block-wise); float64 numpy arrays."""
    ds = BlockDataset(shards, ids, [stream], batch_size=max(1, max_windows), block_windows=64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ds.blocks))
    s = ss = None
    n = 0
    for k in order:
        rec, i, j, pos = ds.blocks[k]
        a = ds.read_block(rec, i, j)[stream].astype(np.float64)
        a = a.reshape(-1, a.shape[-1])
        s = a.sum(0) if s is None else s + a.sum(0)
        ss = (a ** 2).sum(0) if ss is None else ss + (a ** 2).sum(0)
        n += a.shape[0]
        if n >= max_windows * shards.shape(stream)[0]:
            break
    ds.close()
    if n == 0:
        raise ShardError(f"{shards.data_dir}: no windows to compute '{stream}' statistics from")
    mean = s / n
    std = np.sqrt(np.maximum(ss / n - mean ** 2, 0.0))
    return mean, std


def manifest_stats(shards: ShardSet, train_ids, stream: str):
    """``--standardize manifest``: per-channel mean and std (float64 numpy arrays) from the sums each
    shard stores (``sum``, ``sumsq``, ``count``: every stored sample of the stream once, the numbers
    the manifest's statistics add up), over the recordings of the training part only; None when the
    stream stores no sums (audio). Every window of such a recording must be a training window: a
    recording that also holds validation or test time (always in distribution, and out of
    distribution with ``--ood-val time``) is refused (:class:`TrainingError`), since its sums hold that
    time too."""
    ids = np.unique(np.asarray(train_ids, np.int64))
    if len(ids) == 0:
        raise TrainingError(f"{shards.data_dir}: no training windows to compute '{stream}' statistics from")
    n_in = np.bincount(shards.rec[ids], minlength=len(shards.recordings))
    recs = np.flatnonzero(n_in)
    partial = [shards.recordings[r].recording_id for r in recs if n_in[r] < len(shards.recordings[r].start_s)]
    if partial:
        raise TrainingError(f"--standardize manifest: the manifest's and shards' statistics cover whole recordings, "
                            f"and {len(partial)} recording(s) of the training part also hold windows outside it "
                            f"(e.g. {', '.join(partial[:3])}: validation/test time, or windows the guard dropped), so "
                            "they would standardize with statistics of those windows; use --standardize train (the "
                            "training windows only), or a split whose training recordings are wholly training "
                            "(--split ood with --ood-val subjects)")
    s = ss = None
    n = 0
    for r in recs:
        with h5py.File(shards.recordings[r].path, "r") as f:
            g = f["streams"][stream]
            if not all(k in g for k in ("sum", "sumsq", "count")):
                return None
            s = g["sum"][()].astype(np.float64) + (0 if s is None else s)
            ss = g["sumsq"][()].astype(np.float64) + (0 if ss is None else ss)
            n += int(g["count"][()])
    if n == 0:
        raise TrainingError(f"{shards.data_dir}: the training recordings store no '{stream}' samples")
    mean = s / n
    return mean, np.sqrt(np.maximum(ss / n - mean ** 2, 0.0))


__all__ = ["ShardSet", "manifest_of_shard", "BlockDataset", "make_loader", "estimate_stats", "manifest_stats",
           "make_blocks", "stream_reads"]
