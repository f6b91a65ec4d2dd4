"""Training throughput benchmark: one run, figures as JSON on stdout (and --out FILE).

Measures, on shards of the sample-data shape (video 60x112x112x3 @ 30 fps, IMU 100x6 @ 50 Hz,
2 s windows) or on ``--data SHARDS``:

1. the data loader alone (windows/s, warm page cache, no workers): IMU, video (8 of 60 frames
   kept), and the same with single-window reads (``block_windows=1``) to show what block reads buy,
   and with h5py reads of each block's whole span instead of memory-mapped reads of only the
   samples kept (``*_h5py_span_reads``: the reader before memory maps);
2. the training step alone on in-memory tensors (windows/s, best of 3 timings): IMU target-only,
   D-CAT with the frozen video source run every step, D-CAT with the source cached, video pretraining;
3. time per epoch through the real training loop (``pipelines.learn.fit.fit``): IMU target-only,
   D-CAT transfer with the source every step, and with the cache (plus the one-off cache build).

Target from the issue: cached transfer at most 1.25x target-only per epoch.

    python benchmarks/train.py                      # fake shards of the sample shape (written to a temp dir)
    python benchmarks/train.py --data shards --out bench-train.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def _loader_rate(ss, ids, streams, frames, block_windows=None, batch_size=32, repeats=1, mmap=True):
    from pipelines.learn.data import BlockDataset, make_loader

    ds = BlockDataset(ss, ids, streams, batch_size, shuffle=True, frames=frames, block_windows=block_windows)
    ds.mmap = mmap  # False: h5py reads of the span a block covers (the reader before memory maps)
    for _ in make_loader(ds, 0):  # one untimed pass: the page cache holds the shards for every variant
        pass
    n = 0
    t0 = time.perf_counter()
    for e in range(repeats):
        ds.set_epoch(e)
        for b in make_loader(ds, 0):
            n += len(b["y"])
    dt = time.perf_counter() - t0
    ds.close()
    return n / dt


def _step_rate(model, step, batch, steps=5, warmup=2, rounds=3):
    """Windows/s of a full training step (forward, backward, AdamW) on one in-memory batch: the
    best of ``rounds`` timings of ``steps`` steps (the least disturbed by other processes)."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()

    def one():
        loss = step(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        one()
    best = 0.0
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(steps):
            one()
        best = max(best, steps * len(batch["y"]) / (time.perf_counter() - t0))
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="shards directory with video and imu streams (default: write fake shards)")
    ap.add_argument("--work", help="folder for fake shards and runs (default: a temporary folder)")
    ap.add_argument("--windows", type=int, default=300, help="about this many fake windows (default 300)")
    ap.add_argument("--epochs", type=int, default=2, help="epochs per timed training run (median epoch time)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: auto, as training does)")
    ap.add_argument("--out", help="also write the figures here (JSON)")
    a = ap.parse_args(argv)
    from pipelines.learn.data import ShardSet
    from pipelines.learn.device import configure_threads, resolve_device

    threads = configure_threads(a.threads, resolve_device("auto"))
    from pipelines.learn.losses import alignment_distance, kv_scores, transfer_objective
    from pipelines.learn.models import ModelConfig, build_model
    from pipelines.learn.config import TrainConfig, TransferConfig
    from pipelines.learn.pretrain import pretrain
    from pipelines.learn.transfer import transfer

    tmp = None
    work = Path(a.work) if a.work else Path(tmp := tempfile.mkdtemp(prefix="dcat-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if a.data:
        data = Path(a.data)
    else:
        from _fake_shards import write_fake_shards

        data = work / "shards"
        if not (data / "manifest.json").is_file():
            per_rec = 39  # 40 s recordings, 2 s windows every 1 s
            n_rec = max(2, round(a.windows / per_rec))
            subjects = tuple(f"s{i + 1:02d}" for i in range(5))
            write_fake_shards(data, subjects=subjects, recordings_per_subject=max(1, n_rec // 5), duration_s=40.0,
                              streams=("video", "imu"), video_fps=30.0, video_size=112, imu_hz=50.0,
                              classes=("drink", "eat", "knock", "stir", "wave", "wipe"), segment_s=8.0)
    res = {"device": "cuda" if torch.cuda.is_available() else "cpu", "torch": torch.__version__,
           "threads": threads, "data": str(data)}
    ss = ShardSet(data, ["imu", "video"])
    ids = np.arange(len(ss))
    res["windows"] = int(len(ss))
    res["shapes"] = {s: ss.shape(s) for s in ("imu", "video")}

    # 1. data loader alone
    res["loader_windows_per_s"] = {
        "imu": _loader_rate(ss, ids, ["imu"], None, repeats=3),  # warm page cache, one process
        "imu_single_window_reads": _loader_rate(ss, ids, ["imu"], None, block_windows=1),
        "video_8_frames": _loader_rate(ss, ids, ["video"], {"video": 8}),
        "video_8_frames_single_window_reads": _loader_rate(ss, ids, ["video"], {"video": 8}, block_windows=1),
        "video_8_frames_h5py_span_reads": _loader_rate(ss, ids, ["video"], {"video": 8}, mmap=False),
        "imu_h5py_span_reads": _loader_rate(ss, ids, ["imu"], None, repeats=3, mmap=False),
        "imu_and_video_8_frames": _loader_rate(ss, ids, ["imu", "video"], {"video": 8}),
    }

    # 2. training step alone, in memory
    torch.manual_seed(0)
    nc = len(ss.classes)
    bs = a.batch_size
    tgt = build_model(ModelConfig("imu", ss.shape("imu"), nc))
    src = build_model(ModelConfig("video", [8, *ss.shape("video")[1:]], nc)).eval().requires_grad_(False)
    batch = {"imu": torch.randn(bs, *ss.shape("imu")),
             "video": torch.randint(0, 255, (bs, 8, *ss.shape("video")[1:]), dtype=torch.uint8),
             "y": torch.randint(0, nc, (bs,))}
    with torch.no_grad():
        so = src(batch["video"])
        cache = (kv_scores(so["k"], so["v"]), so["logits"].argmax(1) == batch["y"])

    def ce(m, b):
        return F.cross_entropy(m(b["imu"])["logits"], b["y"])

    def dcat_live(m, b):
        o = m(b["imu"])
        with torch.no_grad():
            s = src(b["video"])
            ss_, ok = kv_scores(s["k"], s["v"]), s["logits"].argmax(1) == b["y"]
        return transfer_objective(o["logits"], b["y"], {"video": alignment_distance(kv_scores(o["k"], o["v"]), ss_)},
                                  {"video": ok})[0]

    def dcat_cached(m, b):
        o = m(b["imu"])
        return transfer_objective(o["logits"], b["y"], {"video": alignment_distance(kv_scores(o["k"], o["v"]), cache[0])},
                                  {"video": cache[1]})[0]

    st = {"imu_target_only": _step_rate(tgt, ce, batch), "dcat_source_every_step": _step_rate(tgt, dcat_live, batch),
          "dcat_cached": _step_rate(tgt, dcat_cached, batch)}
    st["video_pretrain"] = _step_rate(build_model(ModelConfig("video", [8, *ss.shape("video")[1:]], nc)),
                                      lambda m, b: F.cross_entropy(m(b["video"])["logits"], b["y"]), batch)
    res["step_windows_per_s_in_memory"] = st
    res["step_cost_vs_target_only"] = {"dcat_source_every_step": st["imu_target_only"] / st["dcat_source_every_step"],
                                       "dcat_cached": st["imu_target_only"] / st["dcat_cached"]}

    # 3. epochs through the real loop
    runs = work / "runs"
    common = dict(data=str(data), runs=str(runs), epochs=a.epochs, batch_size=bs, patience=0, overwrite=True,
                  threads=threads)
    pretrain(TrainConfig(modality="video", out=str(runs / "video"), **{**common, "epochs": 1}))

    def epoch_s(run):
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        return float(np.median([r["train_seconds"] for r in rows]))

    pretrain(TrainConfig(modality="imu", out=str(runs / "imu"), **common))
    live = transfer(TransferConfig(src="video", tgt="imu", src_ckpt=str(runs / "video"), out=str(runs / "live"),
                                   cache="off", **common))
    cached = transfer(TransferConfig(src="video", tgt="imu", src_ckpt=str(runs / "video"), out=str(runs / "cached"),
                                     cache="on", **common))
    ep = {"imu_target_only": epoch_s(runs / "imu"), "dcat_source_every_step": epoch_s(runs / "live"),
          "dcat_cached": epoch_s(runs / "cached"), "cache_build_once": cached["cache_seconds"]}
    res["train_epoch_seconds"] = ep
    res["epoch_cost_vs_target_only"] = {"dcat_source_every_step": ep["dcat_source_every_step"] / ep["imu_target_only"],
                                        "dcat_cached": ep["dcat_cached"] / ep["imu_target_only"]}
    res["target_cached_at_most_1.25x"] = res["epoch_cost_vs_target_only"]["dcat_cached"] <= 1.25
    res["train_windows"] = live["n_windows"]["train"]
    text = json.dumps(res, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    if tmp:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
