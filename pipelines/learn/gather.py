"""Batches gathered straight from the shards' memory maps into their tensors (issue 14).

:func:`gathered_batches` is the default read path of ``pipelines.learn.data.BlockDataset`` for
memory-mapped video: for every batch of the dataset's plan, one tensor per stream is allocated and
each run of windows of one recording is gathered into it with one ``numpy.take`` of every sample
the windows keep (``pipelines.shards.reader.WindowReader.read_into``). Nothing is read twice: no
block held in a temporary, no per-window copy. In a DataLoader worker the tensor is allocated in
shared memory, as torch's ``default_collate`` does, so it reaches the main process without a copy.
Yields exactly the batches of the block-read path. Imports only numpy and torch.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def empty_tensor(shape: tuple, dtype, shared: bool) -> torch.Tensor:
    """An uninitialised CPU tensor of a numpy ``dtype``; ``shared``: in shared memory (what torch's
    ``default_collate`` makes in a worker), so that sending it to the main process moves no bytes.
    Otherwise numpy's allocation: reused heap memory, where ``torch.empty`` of a batch's size
    page-faults afresh every time (measured: 0 vs 4-24 minor faults per video window)."""
    if not shared:
        return torch.from_numpy(np.empty(shape, dtype))
    t = torch.from_numpy(np.empty(0, dtype))
    storage = t._typed_storage()._new_shared(math.prod(shape), device=t.device)
    return t.new(storage).resize_(shape)


def gathered_batches(ds, batches, shared: bool):
    """The batches of a ``BlockDataset`` ``ds`` for ``batches`` (its ``local_batches``: positions in
    ``ds.ids``, offset, global size), each window gathered from the memory map into the batch."""
    with_part = ds.world > 1 and ds.shard == "batch"
    for pos, off, n_global in batches:
        g = ds.ids[pos]
        rec, win = ds.shards.rec[g], ds.shards.win[g]
        cut = np.flatnonzero(np.diff(rec) != 0) + 1  # runs of windows of one recording, in batch order
        runs = list(zip(np.concatenate([[0], cut]).tolist(), np.concatenate([cut, [len(pos)]]).tolist()))
        batch = {}
        for s, (_, fidx) in ds.reads.items():
            first = ds._reader(int(rec[0]), s)
            t = empty_tensor((len(pos), *first.out_shape(fidx)), first.ds.dtype, shared)
            o = t.numpy()
            for a, b in runs:
                ds._reader(int(rec[a]), s).read_into(o[a:b], win[a:b], fidx)
            batch[s] = t
        batch["y"] = torch.from_numpy(ds.shards.y[g])
        batch["idx"] = torch.from_numpy(np.ascontiguousarray(pos, dtype=np.int64))
        if with_part:
            batch["part"] = torch.tensor([off, n_global], dtype=torch.int64)
        yield batch


__all__ = ["empty_tensor", "gathered_batches"]
