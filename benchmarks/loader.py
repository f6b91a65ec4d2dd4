"""The training data loader alone: windows/s of ``BlockDataset`` batches, one process, warm page cache.

Video windows of the sample-data shape (60 frames of 112x112x3 at 30 fps, 2 s windows every 1 s), 8
of the 60 frames kept (the trainer's default), batch 32, read through the memory map, for every
combination of:

- order: ``shuffled`` (blocks in a random order, windows shuffled in a buffer: what training does) or
  ``in-order``;
- reads: ``blocks`` (the default block size) or ``single`` (``block_windows=1``);
- path: ``gather`` (each batch gathered from the memory map straight into the batch array, the
  default) or ``copy`` (each block read, then each window copied into the batch in a Python loop:
  the loader before issue 14).

Each variant: one untimed pass (page cache, memory maps), then the best of ``--reps`` timed epochs
(epoch 1, 2, ..., interleaved over the variants; the least disturbed by other processes), as
windows per second of wall time and per second of this process's CPU time (``time.process_time``:
on a shared machine the wall figure also counts time spent waiting for a core). Needs only numpy, h5py and torch.

    python benchmarks/loader.py                          # fake shards in a temporary folder
    python benchmarks/loader.py --work /tmp/lb --json    # keep the shards, print JSON
    python benchmarks/loader.py --workers 2              # + 2 loader workers, persistent vs restarted
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402


def fake_video_shards(data: Path, windows: int) -> None:
    """About ``windows`` windows of video (and IMU) shards of the sample-data shape."""
    from _fake_shards import write_fake_shards  # numpy + h5py only

    n_rec = max(2, math.ceil(windows / 39))  # 40 s recordings: 39 windows each
    subjects = tuple(f"s{i + 1:02d}" for i in range(min(5, n_rec)))
    write_fake_shards(data, subjects=subjects, recordings_per_subject=math.ceil(n_rec / len(subjects)),
                      duration_s=40.0, streams=("video", "imu"), video_fps=30.0, video_size=112, imu_hz=50.0,
                      classes=("drink", "eat", "knock", "stir", "wave", "wipe"), segment_s=8.0)


def rates(ss, ids, variants: dict, *, reps: int, frames: int = 8, batch_size: int = 32) -> dict:
    """Best windows/s of each variant (``name -> (shuffle, block_windows, gather)``) over ``reps``
    epochs, interleaved (epoch e of every variant, then e + 1), after one untimed pass of each."""
    from pipelines.learn.data import BlockDataset, make_loader

    dss = {}
    for name, (shuffle, bw, gather) in variants.items():
        ds = BlockDataset(ss, ids, ["video"], batch_size, shuffle=shuffle, frames={"video": frames},
                          block_windows=bw)
        ds.gather = gather
        for _ in make_loader(ds, 0):  # page cache, memory maps
            pass
        dss[name] = ds
    best = {name: {"wall": 0.0, "cpu": 0.0} for name in variants}
    for e in range(1, reps + 1):
        for name, ds in dss.items():
            ds.set_epoch(e)
            n = 0
            t0, c0 = time.perf_counter(), time.process_time()
            for b in make_loader(ds, 0):
                n += len(b["y"])
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            best[name] = {"wall": max(best[name]["wall"], n / wall), "cpu": max(best[name]["cpu"], n / cpu)}
    for ds in dss.values():
        ds.close()
    return best


def worker_rates(ss, ids, workers: int, *, reps: int, frames: int = 8, batch_size: int = 32) -> dict:
    """Windows/s (wall) of shuffled gathered batches through ``workers`` DataLoader workers, epochs
    1..reps each timed from the start of the epoch's iteration: ``persistent`` (``make_loader``:
    started once, warm files and maps) vs ``restarted`` (workers started every epoch, as before
    issue 14). Best epoch of each, interleaved."""
    import torch

    from pipelines.learn.data import BlockDataset, make_loader

    dss = {k: BlockDataset(ss, ids, ["video"], batch_size, shuffle=True, frames={"video": frames})
           for k in ("persistent", "restarted")}
    loaders = {"persistent": make_loader(dss["persistent"], workers)}
    for _ in loaders["persistent"]:  # workers started, maps warm; the restarted loader gets no such help
        pass
    dss["restarted"].num_workers = workers
    best = dict.fromkeys(dss, 0.0)
    for e in range(1, reps + 1):
        for k, ds in dss.items():
            ds.set_epoch(e)
            t0 = time.perf_counter()
            loader = loaders.get(k) or torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers,
                                                                   persistent_workers=False, prefetch_factor=2)
            n = sum(len(b["y"]) for b in loader)
            best[k] = max(best[k], n / (time.perf_counter() - t0))
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="shards directory with a video stream (default: write fake shards)")
    ap.add_argument("--work", help="folder for the fake shards (default: a temporary folder, removed)")
    ap.add_argument("--windows", type=int, default=400, help="about this many fake windows (default 400)")
    ap.add_argument("--reps", type=int, default=3, help="timed epochs per variant (best reported)")
    ap.add_argument("--paths", default="copy,gather", help="comma-separated: copy, gather")
    ap.add_argument("--workers", type=int, default=0,
                    help="also time N loader workers, persistent vs restarted every epoch (default 0: skip)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    from pipelines.learn.data import ShardSet

    tmp = None
    if a.data:
        data = Path(a.data)
    else:
        work = Path(a.work) if a.work else Path(tmp := tempfile.mkdtemp(prefix="dcat-loader-bench-"))
        data = work / "shards"
        if not (data / "manifest.json").is_file():
            fake_video_shards(data, a.windows)
    try:
        ss = ShardSet(data, ["video"])
        ids = np.arange(len(ss))
        res = {"windows": int(len(ss)), "video_shape": list(ss.shape("video")), "frames_kept": 8, "batch_size": 32,
               "windows_per_s": {}}
        variants = {f"{order}/{reads}/{path}": (order == "shuffled", bw, path == "gather")
                    for order in ("shuffled", "in-order") for reads, bw in (("blocks", None), ("single", 1))
                    for path in a.paths.split(",")}
        res["windows_per_s"] = rates(ss, ids, variants, reps=a.reps)
        for key, v in res["windows_per_s"].items():
            print(f"{key:28s} {v['wall']:10,.0f} windows/s   {v['cpu']:10,.0f} per CPU second", file=sys.stderr,
                  flush=True)
        if a.workers > 0:
            res["workers"] = a.workers
            res["workers_windows_per_s"] = worker_rates(ss, ids, a.workers, reps=a.reps)
            for key, v in res["workers_windows_per_s"].items():
                print(f"{a.workers} workers, {key:16s} {v:10,.0f} windows/s", file=sys.stderr, flush=True)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    if a.json:
        from pipelines.core.io import to_json

        print(to_json(res, indent=1))


if __name__ == "__main__":
    main()
