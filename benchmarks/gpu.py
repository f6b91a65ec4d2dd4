"""Is the accelerator kept busy? Training windows/s from memory (the ceiling) vs. from HDF5 shards.

For two workloads:

- ``video_pretrain``: the video pipeline trained alone (cross-entropy), ``--frames`` of each 60-frame
  window kept;
- ``video_to_imu_dcat_cached``: D-CAT transfer video -> IMU with the frozen video source's
  ``K^T V`` cached (what ``dcat transfer`` does without ``--augment``),

it prints windows/s of the training step (``pipelines.learn.engine.train_one_epoch``: forward, backward,
gradient clipping, AdamW, under bf16 autocast on CUDA) on batches already in device memory (the
ceiling), windows/s end to end through the trainer's own data path (``BlockDataset`` reading the
shards, the DataLoader with the trainer's worker count and pinned memory on CUDA, uint8 video
copied to the device and converted there), and their ratio, plus windows/s of the loader alone (the
same DataLoader, batches only pinned, no step). Target (issue 14): end to end >= 0.9x the ceiling.

Needs only torch, numpy and h5py (no decord, PyAV or librosa): without ``--data`` it writes fake
shards of the sample-data shape (video 112x112 at 30 fps, IMU 6 channels at 50 Hz, 2 s windows,
1 s stride) with numpy and h5py. Runs on the CPU when there is no GPU, and says so.

    python benchmarks/gpu.py                         # auto device, fake shards in a temp dir
    python benchmarks/gpu.py --device cpu --json
    python benchmarks/gpu.py --data shards --batch-size 256 --compile
    python benchmarks/gpu.py --smoke                 # seconds on a CPU: tiny shards, 1 loader worker

Reference (DESIGN.md, one H200, step from GPU memory): ~10,500 video windows/s (~16,500 with
torch.compile), ~85,000 IMU windows/s.
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
import torch  # noqa: E402

TARGET = 0.9  # end to end / in memory (issue 14)
ANCHORS_H200 = {"video_step_windows_per_s": 10500, "video_step_compiled_windows_per_s": 16500,
                "imu_step_windows_per_s": 85000}


def _fake(data: Path, windows: int, video_size: int = 112) -> None:
    from _fake_shards import write_fake_shards  # numpy + h5py only

    per_rec = 39  # 40 s recordings, 2 s windows every 1 s
    n_rec = max(2, math.ceil(windows / per_rec))
    subjects = tuple(f"s{i + 1:02d}" for i in range(min(5, n_rec)))
    write_fake_shards(data, subjects=subjects, recordings_per_subject=math.ceil(n_rec / len(subjects)),
                      duration_s=40.0, streams=("video", "imu"), video_fps=30.0, video_size=video_size, imu_hz=50.0,
                      classes=("drink", "eat", "knock", "stir", "wave", "wipe"), segment_s=8.0)


def _case(model, step_fn, ds, device, *, epochs: int, workers: int, compile_: bool, ceiling_batches: int = 8) -> dict:
    from pipelines.learn.data import make_loader
    from pipelines.learn.device import to_device
    from pipelines.learn.engine import make_schedule, param_groups, train_one_epoch

    opt = torch.optim.AdamW(param_groups(model, 0.05), lr=1e-3)
    sched = make_schedule(opt, 10 ** 9, 0)
    fwd = torch.compile(model) if compile_ else model
    loader = make_loader(ds, workers, pin_memory=device.type == "cuda", seed=0)

    def epoch(it, e):
        ds.set_epoch(e)
        m, _ = train_one_epoch(fwd, it, opt, sched, device, step_fn, epoch=e, step=0, grad_clip=1.0)
        return m["train_windows"], m["train_seconds"]

    epoch(loader, 0)  # warm-up: page cache, kernels, torch.compile, the persistent loader workers
    t0, n_loaded = time.perf_counter(), 0
    for b in loader:  # the loader alone: what it can deliver, pinned, without the step
        n_loaded += len(b["y"])
    loader_rate = n_loaded / (time.perf_counter() - t0)
    n = secs = 0.0
    for e in range(1, epochs + 1):
        a, b = epoch(loader, e)
        n, secs = n + a, secs + b
    e2e = n / secs
    # the ceiling: the same step on batches already on the device, as many steps as an epoch
    held = []
    for b in make_loader(ds, 0):
        held.append(to_device(b, device))
        if len(held) >= ceiling_batches:
            break
    steps = max(len(ds), 2 * len(held))
    batches = [held[i % len(held)] for i in range(steps)]
    epoch(batches[:len(held)], 0)  # warm-up
    best = 0.0
    for _ in range(max(1, epochs)):
        a, b = epoch(batches, 0)
        best = max(best, a / b)
    return {"step_in_memory_windows_per_s": best, "end_to_end_windows_per_s": e2e, "ratio": e2e / best,
            "target_0.9_met": e2e / best >= TARGET, "loader_alone_windows_per_s": loader_rate,
            "windows_timed": int(n), "batches_per_epoch": len(ds)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--data", help="shards directory with video and imu streams (default: write fake shards)")
    ap.add_argument("--work", help="folder for the fake shards (default: a temporary folder, removed)")
    ap.add_argument("--windows", type=int, default=0, help="about this many fake windows (default 400 CPU, 4000 CUDA)")
    ap.add_argument("--batch-size", type=int, default=0, help="default 32 on CPU, 256 on CUDA")
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs after one warm-up epoch")
    ap.add_argument("--workers", type=int, default=-1, help="DataLoader workers (-1: the trainer's default)")
    ap.add_argument("--frames", type=int, default=8, help="video frames kept per window (trainer default 8)")
    ap.add_argument("--d", type=int, default=64, help="attention width (trainer default 64)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: as training does)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the trained model (CUDA)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--smoke", action="store_true",
                    help="a few seconds on the CPU: ~80 windows of 32x32 video, batch 16, 1 epoch, 1 loader "
                         "worker, d 16 (checks the script runs; the figures mean nothing)")
    a = ap.parse_args(argv)
    video_size = 112
    if a.smoke:
        a.device, a.windows, a.batch_size, a.epochs, a.d = "cpu", a.windows or 80, a.batch_size or 16, 1, 16
        video_size = 32
        a.workers = 1 if a.workers < 0 else a.workers
    from pipelines.learn.data import BlockDataset, ShardSet
    from pipelines.learn.models import ModelConfig, build_model, frame_indices
    from pipelines.learn.device import configure_threads, default_workers, resolve_device
    from pipelines.learn.engine import ce_step
    from pipelines.learn.source_cache import source_cache
    from pipelines.learn.transfer_step import transfer_step

    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: CUDA is not available on this machine; use --device cpu or auto")
    device = resolve_device(a.device)
    cuda = device.type == "cuda"
    threads = configure_threads(a.threads, device)
    workers = default_workers(a.workers, device)
    bs = a.batch_size or (256 if cuda else 32)
    compile_ = a.compile and cuda
    tmp = None
    if a.data:
        data = Path(a.data)
    else:
        work = Path(a.work) if a.work else Path(tmp := tempfile.mkdtemp(prefix="dcat-gpu-bench-"))
        data = work / "shards"
        if not (data / "manifest.json").is_file():
            _fake(data, a.windows or (4000 if cuda else 400), video_size)
    try:
        ss = ShardSet(data, ["video", "imu"])
        ids = np.arange(len(ss))
        nc = len(ss.classes)
        vshape = ss.shape("video")
        fidx = frame_indices(vshape[0], a.frames)
        nf = len(fidx) if fidx is not None else vshape[0]
        res = {"device": str(device), "device_name": torch.cuda.get_device_name(device) if cuda else "CPU",
               "note": None if cuda else "no GPU used: these are CPU figures (the step, not the reader, is the limit)",
               "torch": torch.__version__, "threads": threads, "workers": workers, "batch_size": bs,
               "compile": compile_, "autocast": "bf16" if cuda else "none (float32)", "windows": int(len(ss)),
               "video_frames_kept": int(nf), "d": a.d, "data": str(data), "anchors_h200": ANCHORS_H200}
        torch.manual_seed(0)
        # 1. video pretraining
        video = build_model(ModelConfig("video", [nf, *vshape[1:]], nc, d=a.d)).to(device)
        ds = BlockDataset(ss, ids, ["video"], bs, shuffle=True, frames={"video": a.frames})
        res["video_pretrain"] = _case(video, ce_step("video"), ds, device, epochs=a.epochs, workers=workers,
                                      compile_=compile_)
        ds.close()
        # 2. D-CAT video -> imu, source cached (built once, timed separately)
        src = video.eval().requires_grad_(False)
        t0 = time.perf_counter()
        cache = source_cache(src, ss, ids, "video", a.frames, "fro", device, batch_size=bs)
        cache_s = time.perf_counter() - t0
        imu = build_model(ModelConfig("imu", ss.shape("imu"), nc, d=a.d)).to(device)
        step = transfer_step("imu", ["video"], {"video": src}, method="dcat", caches={"video": cache})
        ds = BlockDataset(ss, ids, ["imu"], bs, shuffle=True)
        res["video_to_imu_dcat_cached"] = {**_case(imu, step, ds, device, epochs=a.epochs, workers=workers,
                                                   compile_=compile_), "cache_build_seconds": cache_s}
        ds.close()
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    if a.json:
        from pipelines.core.io import to_json

        print(to_json(res, indent=1))
        return
    print(f"device: {res['device_name']} ({res['device']}); {res['note'] or 'bf16 autocast'}")
    print(f"torch {res['torch']}, threads {threads}, loader workers {workers}, batch {bs}, {res['windows']} windows, "
          f"video frames kept {nf}, d {a.d}, compile {compile_}")
    print(f"{'workload':28s} {'in memory win/s':>16s} {'end to end win/s':>17s} {'ratio':>6s}  "
          f"{'target >= ' + str(TARGET):14s} {'loader alone win/s':>18s}")
    for k in ("video_pretrain", "video_to_imu_dcat_cached"):
        r = res[k]
        print(f"{k:28s} {r['step_in_memory_windows_per_s']:16,.0f} {r['end_to_end_windows_per_s']:17,.0f} "
              f"{r['ratio']:6.2f}  {'met' if r['target_0.9_met'] else 'NOT met':14s} "
              f"{r['loader_alone_windows_per_s']:18,.0f}")
    print(f"source cache built once in {res['video_to_imu_dcat_cached']['cache_build_seconds']:.2f} s; "
          f"H200 anchors (DESIGN.md): video step ~10,500 win/s (~16,500 compiled), IMU step ~85,000 win/s")


if __name__ == "__main__":
    main()
