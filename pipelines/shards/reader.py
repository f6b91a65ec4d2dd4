"""Reading windows of one stream of one shard (the layout ``pipelines.shards.format`` describes).

Readers get shards checked on open (:func:`pipelines.shards.check.check_shard`, via
``pipelines.learn.shardset.ShardSet``); :class:`WindowReader` checks its window starts against
the data again (a read never leaves the array, even on a file changed since)."""

from __future__ import annotations

from pipelines.shards.check import check_window_starts
from pipelines.shards.format import FEATURE_DATASETS, as_str


class WindowReader:
    """Reads windows of one stream of one shard: ``read(i, j)`` -> array ``[j - i, T, ...]``.

    ``frames`` picks a subset of each window's time steps (e.g. 8 of a video window's 60 frames),
    and only those samples are read. A dataset stored the way ``dcat preprocess`` writes it
    (contiguous, uncompressed, native byte order) is read through a read-only memory map of its
    bytes in the file, so a read touches only the samples asked for, without h5py's per-call cost;
    any other layout falls back to one contiguous h5py read of the span the windows cover, then
    each window's (selected) steps. Measured on video windows (60 frames of 112x112, 8 kept, warm
    page cache): memory map 31-41k windows/s, contiguous h5py span 3.4-4.0k, one h5py slice per
    needed frame 3.0-3.6k, h5py fancy indexing 0.6-0.7k. Keep the reader (and its open file) for
    the life of a DataLoader worker; it is not picklable.
    """

    def __init__(self, group, dataset: str | None = None, mmap: bool = True):
        import numpy as np

        kind = as_str(group.attrs["kind"])
        self.dataset = dataset or FEATURE_DATASETS[kind]
        self.ds = group[self.dataset]
        wkey = "waveform_window_start" if self.dataset == "waveform" else "window_start"
        self.starts = np.asarray(group[wkey][()], dtype=np.int64)
        self.length = int(group.attrs["waveform_samples_per_window" if self.dataset == "waveform"
                                      else "samples_per_window"])
        self.window_shape = (self.length,) + tuple(self.ds.shape[1:])
        # the bounds `pipelines.shards.check` checked on open, again here: a read never leaves the data
        check_window_starts(self.starts, self.length, self.ds.shape[0] if self.ds.ndim else 0,
                            f"{group.file.filename}:{group.name}/{wkey}")
        self.mm = _memmap(self.ds) if mmap else None
        # a plain ndarray view of the map, one row per stored sample (numpy.memmap's __getitem__ is Python)
        self.flat = None if self.mm is None else np.asarray(self.mm).reshape(self.mm.shape[0], -1)

    def __len__(self) -> int:
        return len(self.starts)

    def read(self, i: int, j: int, frames=None):
        """Windows ``i..j-1`` (consecutive)."""
        import numpy as np

        return self.read_windows(np.arange(i, j), frames)

    def read_windows(self, wins, frames=None):
        """Windows ``wins`` (window indices, any order) -> ``[len(wins), T or len(frames), ...]``."""
        import numpy as np

        st = self.starts[np.asarray(wins, dtype=np.int64)]
        steps = np.arange(self.length) if frames is None else np.asarray(frames, dtype=np.int64)
        if self.mm is not None:
            return self.mm[st[:, None] + steps[None, :]]
        a, b = int(st.min()), int(st.max()) + self.length
        span = self.ds[a:b]
        return span[(st - a)[:, None] + steps[None, :]]

    def out_shape(self, frames=None) -> tuple:
        """Shape of one window as read (``frames``: the time steps kept)."""
        return ((self.length if frames is None else len(frames)),) + tuple(self.ds.shape[1:])

    def read_into(self, out, wins, frames=None) -> None:
        """Windows ``wins`` into ``out`` (a C-contiguous ``[len(wins), *out_shape(frames)]`` array of the
        dataset's dtype): through the memory map, one gather of every needed sample straight into
        ``out`` (``numpy.take``, no temporary); otherwise ``read_windows`` then one copy."""
        import numpy as np

        if self.mm is None:
            out[...] = self.read_windows(wins, frames)
            return
        st = self.starts[np.asarray(wins, dtype=np.int64)]
        steps = np.arange(self.length) if frames is None else np.asarray(frames, dtype=np.int64)
        rows = (st[:, None] + steps[None, :]).ravel()
        # indices checked on open (check_window_starts): "clip" only skips numpy's buffered bounds check
        np.take(self.flat, rows, axis=0, out=out.reshape(len(rows), -1), mode="clip")


def _memmap(ds):
    """A read-only ``numpy.memmap`` of an h5py dataset's bytes, or None when the layout does not
    allow it (chunked, compressed, external, not yet written, or not native byte order)."""
    import numpy as np

    try:
        if ds.chunks is not None or ds.compression is not None or ds.external or ds.size == 0:
            return None
        dt = np.dtype(ds.dtype)
        if dt.hasobject or not dt.isnative:
            return None
        offset = ds.id.get_offset()
        if offset is None:
            return None
        return np.memmap(ds.file.filename, dtype=dt, mode="r", offset=int(offset), shape=tuple(ds.shape))
    except (OSError, ValueError, TypeError, AttributeError):
        return None
