"""Distributed training: the data split over ranks, and 2 CPU processes (gloo) against one.

The end-to-end test starts `dcat pretrain` and `dcat transfer` (the typer app, unchanged) in two
processes with ``python -m torch.distributed.run --standalone --nproc-per-node 2`` (a free port),
and compares them with the same commands in this process. With dropout 0 the two must agree up to
floating-point order: the global batches are the same and split over the ranks, the loss is
weighed by each rank's share (the batches here do not split evenly), BatchNorm statistics are
the global batch's (gloo: ``CPUSyncBatchNorm``), augmentation draws for the global batch, and the
D-CAT source cache is built half by each rank.

Tolerances: the per-epoch losses and validation metrics agree to 1e-4 relative (measured: 4e-6 at
worst; with each rank's own BatchNorm statistics instead of the global batch's, the training loss
of the first epoch already differs by 0.3% and by 4% in the third). The weights agree to 5e-3
absolute only: AdamW divides each gradient element by its running RMS, so floating-point noise in
directions the loss does not depend on (the attention key bias: softmax ignores a constant added to
every key's score; the scale of a convolution followed by BatchNorm) becomes steps of up to the learning rate (2e-3) in either process; those
weights change no output, and the validation loss (every weight's effect) agrees to 1e-4.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from _fake_shards import write_fake_shards
from pipelines.learn import distributed as ddp
from pipelines.learn.checkpoint import load_checkpoint
from pipelines.learn.data import BlockDataset, ShardSet, make_loader
from pipelines.shards.reader import WindowReader

ROOT = Path(__file__).resolve().parents[1]


def test_part_of_known_values():
    assert [ddp.part_of(10, r, 3) for r in range(3)] == [slice(0, 4), slice(4, 7), slice(7, 10)]
    assert [ddp.part_of(2, r, 3) for r in range(3)] == [slice(0, 1), slice(1, 2), slice(2, 2)]
    assert ddp.part_of(5) == slice(0, 5)  # one process: everything
    assert not ddp.is_distributed() and ddp.is_main() and ddp.world_size() == 1


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("ddp_shards") / "shards"
    write_fake_shards(d, subjects=("s01", "s02", "s03"), recordings_per_subject=1, duration_s=24.0, seed=3,
                      streams=("video", "imu"), drop_windows=(6,))
    return d


def test_ranks_take_contiguous_slices_of_the_same_global_batches(shards):
    ss = ShardSet(shards, ["imu", "video"])
    ids = np.arange(0, len(ss), 2)  # 33 windows
    kw = dict(batch_size=8, shuffle=True, seed=5, frames={"video": 4}, block_windows=4)
    one = BlockDataset(ss, ids, ["imu", "video"], **kw)
    one.set_epoch(1)
    glob = [b["idx"].numpy() for b in make_loader(one, 0)]
    assert [len(b) for b in glob] == [8, 8, 8, 8, 1]
    for world in (2, 3):
        per_rank = []
        for r in range(world):
            ds = BlockDataset(ss, ids, ["imu", "video"], rank=r, world=world, **kw)
            ds.set_epoch(1)
            bs = list(make_loader(ds, 0))
            assert len(bs) == len(ds) == 4  # the last global batch (1 window) is smaller than world: left out
            for b in bs:
                for k in range(len(b["y"])):  # each rank reads exactly its windows' contents
                    g = ids[int(b["idx"][k])]
                    assert int(b["y"][k]) == ss.y[g]
                    with h5py.File(ss.recordings[ss.rec[g]].path, "r") as f:
                        st = f["streams/imu/window_start"][ss.win[g]]
                        assert np.array_equal(b["imu"][k].numpy(), f["streams/imu/data"][st:st + 20])
            per_rank.append(bs)
        for i in range(4):
            parts = [bs[i] for bs in per_rank]
            assert np.array_equal(np.concatenate([p["idx"].numpy() for p in parts]), glob[i])
            assert [p["part"].tolist() for p in parts] == [[ddp.part_of(8, r, world).start, 8] for r in range(world)]


def test_inference_split_by_blocks_covers_every_window_once(shards):
    ss = ShardSet(shards, ["imu"])
    ids = np.arange(len(ss))
    got = []
    for r in range(3):
        ds = BlockDataset(ss, ids, ["imu"], 16, block_windows=5, rank=r, world=3, shard="block")
        got.append(np.concatenate([b["idx"].numpy() for b in make_loader(ds, 0)]))
    assert all(len(g) for g in got)
    assert sorted(np.concatenate(got).tolist()) == list(range(len(ids)))


def test_memory_mapped_reads_equal_h5py_reads(shards):
    ss = ShardSet(shards, ["video"])
    with h5py.File(ss.recordings[0].path, "r") as f:
        fast = WindowReader(f["streams"]["video"])
        slow = WindowReader(f["streams"]["video"], mmap=False)
        assert fast.mm is not None and slow.mm is None
        wins = np.array([9, 2, 3, 14])
        for frames in (None, [0, 3, 7]):
            a, b = fast.read_windows(wins, frames), slow.read_windows(wins, frames)
            assert a.dtype == np.uint8 and a.shape == (4, 8 if frames is None else 3, 16, 16, 3)
            assert np.array_equal(a, b)
        assert np.array_equal(fast.read(4, 9, [1, 5]), slow.read(4, 9, [1, 5]))


def _rows(run):
    return [json.loads(x) for x in (Path(run) / "metrics.jsonl").read_text().splitlines()]


def _same_run(a, b):
    ra, rb = _rows(a), _rows(b)
    assert [r["epoch"] for r in ra] == [r["epoch"] for r in rb]  # one line per epoch: only rank 0 wrote
    for x, y in zip(ra, rb):
        assert x["train_windows"] == y["train_windows"]
        for k in x:
            if k.startswith(("train_", "val_")) and k not in ("train_seconds", "train_windows_per_s"):
                assert y[k] == pytest.approx(x[k], rel=1e-4, abs=1e-7), k
    for name in ("best.pt", "last.pt"):
        ma, mb = load_checkpoint(Path(a) / name)["model"], load_checkpoint(Path(b) / name)["model"]
        assert ma.keys() == mb.keys()
        for k in ma:
            assert torch.allclose(ma[k].double(), mb[k].double(), rtol=0, atol=5e-3), (name, k)


def test_two_gloo_processes_train_like_one(shards, tmp_path):
    from dcat_cli.main import app
    from pipelines.learn.config import TrainConfig
    from pipelines.learn.engine import Hooks
    from pipelines.learn.pretrain import pretrain
    from typer.testing import CliRunner

    common = ["--data", str(shards), "--heads", "2", "--batch-size", "15", "--video-frames", "4", "--patience", "0",
              "--threads", "1", "--dropout", "0", "--quiet", "--json"]
    r = tmp_path / "runs"
    pre = ["--d", "16", "--block-s", "6"]
    src = ["pretrain", "--modality", "video", "--epochs", "2", "--out", str(r / "video"), *pre, *common]
    imu = ["pretrain", "--modality", "imu", "--epochs", "3", "--augment", *pre, *common]
    xfer = ["transfer", "--src", "video", "--tgt", "imu", "--src-ckpt", str(r / "video"), "--epochs", "3", *common]
    runner = CliRunner()
    for args in (src, imu + ["--out", str(r / "imu-1")], xfer + ["--out", str(r / "xfer-1")]):
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output

    class Stop(Hooks):
        def on_epoch_end(self, epoch, metrics):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # interrupted after epoch 1 of 3, in one process
        pretrain(TrainConfig(data=str(shards), modality="imu", out=str(r / "imu-cut"), epochs=3, augment=True, d=16,
                             heads=2, batch_size=15, block_s=6.0, video_frames=4, patience=0, threads=1, dropout=0.0),
                 Stop())
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps([imu + ["--out", str(r / "imu-2")], xfer + ["--out", str(r / "xfer-2")],
                                ["pretrain", "--modality", "imu", "--out", str(r / "imu-cut"), "--resume", "--quiet",
                                 "--json", "--threads", "1"]]))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]), "OMP_NUM_THREADS": "1"}
    # own process group: on a timeout (or a failing test) the launcher *and* its workers are killed,
    # never left running
    p = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          str(ROOT / "tests" / "_ddp_job.py"), str(jobs)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = p.communicate(timeout=240)
    finally:
        try:  # the workers too, even if the launcher has exited
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert p.returncode == 0, stdout[-3000:] + stderr[-3000:]
    infos = [json.loads(x) for x in stdout.replace("}\n{", "}\n\x00{").split("\x00") if x.strip()]
    assert [i["world_size"] for i in infos] == [2, 2, 2]  # printed by rank 0 only, once per command
    assert infos[1]["cache"] is True and infos[1]["source_unchanged"] is True
    _same_run(r / "imu-1", r / "imu-2")
    _same_run(r / "xfer-1", r / "xfer-2")
    _same_run(r / "imu-1", r / "imu-cut")  # one process interrupted, resumed by two = uninterrupted
    assert json.loads((r / "imu-2" / "config.json").read_text())["world_size"] == 2
