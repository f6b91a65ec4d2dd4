"""The video data path for a GPU (issue 14): batches gathered straight from the memory maps equal the
block-read-and-copy path's, persistent loader workers follow each epoch's plan, and
``benchmarks/gpu.py`` runs in smoke mode without decord, PyAV or librosa."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from _fake_shards import write_fake_shards
from pipelines.learn.data import BlockDataset, ShardSet, make_loader

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("perf_loader_shards")
    # 30 fps video (60-frame windows), windows 6 and 7 dropped: two stored runs per recording
    write_fake_shards(d, subjects=("s01", "s02", "s03"), recordings_per_subject=2, duration_s=12.0,
                      streams=("video", "imu", "audio"), video_fps=30.0, video_size=8, drop_windows=(6, 7))
    return d


def _batches(ds, gather: bool, workers: int = 0) -> list[dict]:
    ds.gather = gather
    return [{k: v.clone() for k, v in b.items()} for b in make_loader(ds, workers)]


def _same(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b) and len(a) > 0
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            assert x[k].dtype == y[k].dtype and torch.equal(x[k], y[k]), k


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("block_windows", [None, 1, 4])
def test_gathered_batches_equal_the_copied_ones(shard_dir, shuffle, block_windows):
    ss = ShardSet(shard_dir, ["video", "imu", "audio"])
    ids = np.random.default_rng(1).permutation(len(ss))[: len(ss) - 5]  # unsorted, some windows left out
    ds = BlockDataset(ss, ids, ["video", "imu", "audio"], 7, shuffle=shuffle, seed=3, frames={"video": 8},
                      block_windows=block_windows)
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        new, old = _batches(ds, True), _batches(ds, False)
        _same(new, old)
        assert new[0]["video"].shape[1:] == (8, 8, 8, 3) and new[0]["video"].dtype == torch.uint8
        assert new[0]["video"].is_contiguous()
    if shuffle:  # batches mix recordings, so the gather really crosses memory maps
        assert any(len(set(ss.rec[ids[b["idx"].numpy()]].tolist())) > 1 for b in new)
    ds.close()


def test_gather_equals_copy_across_ranks_and_without_memory_maps(shard_dir):
    ss = ShardSet(shard_dir, ["video", "imu"])
    ids = np.arange(len(ss))
    for rank in (0, 1):
        ds = BlockDataset(ss, ids, ["video", "imu"], 9, shuffle=True, seed=5, frames={"video": 4}, rank=rank, world=2)
        _same(_batches(ds, True), _batches(ds, False))
        ds.close()
    ds = BlockDataset(ss, ids, ["video", "imu"], 9, shuffle=True, seed=5, frames={"video": 4})
    mm = _batches(ds, True)
    ds.close()
    ds.mmap = False  # h5py reads (another layout): the gather falls back to read-then-copy
    _same(_batches(ds, True), mm)
    ds.close()


def test_persistent_workers_follow_each_epochs_plan(shard_dir):
    ss = ShardSet(shard_dir, ["video"])
    ids = np.arange(len(ss))

    def dataset():
        return BlockDataset(ss, ids, ["video"], 6, shuffle=True, seed=2, frames={"video": 8}, block_windows=3)

    ds = dataset()
    loader = make_loader(ds, 2)
    assert loader.persistent_workers
    got = []
    for epoch in (0, 1, 2):
        ds.set_epoch(epoch)
        bs = [{k: v.clone() for k, v in b.items()} for b in loader]
        got.append(bs)
        if epoch == 0:
            workers = loader._iterator._workers  # the same processes serve every epoch
        assert loader._iterator._workers is workers
    # reference: workers started afresh for each epoch, as before issue 14
    for epoch in (0, 1, 2):
        ref = dataset()
        ref.set_epoch(epoch)
        ref.num_workers = 2
        fresh = torch.utils.data.DataLoader(ref, batch_size=None, num_workers=2, persistent_workers=False)
        _same(got[epoch], [{k: v.clone() for k, v in b.items()} for b in fresh])
        ref.close()
    order = [np.concatenate([b["idx"].numpy() for b in bs]).tolist() for bs in got]
    assert order[0] != order[1] != order[2]  # each epoch its own plan
    assert sorted(order[1]) == list(range(len(ids)))
    ds.close()


def test_worker_batches_arrive_in_shared_memory(shard_dir):
    ss = ShardSet(shard_dir, ["video"])
    ds = BlockDataset(ss, np.arange(len(ss)), ["video"], 8, frames={"video": 8})
    b = next(iter(make_loader(ds, 1)))
    assert b["video"].is_shared()  # allocated shared in the worker: not copied again on the way
    assert not next(iter(make_loader(ds, 0)))["video"].is_shared()
    ds.close()


def test_gpu_benchmark_smoke_runs_without_media_decoders(tmp_path):
    # decord, av and librosa made unimportable, as on the GPU machine
    code = ("import sys; sys.modules.update(dict.fromkeys(['decord', 'av', 'librosa'])); "
            "sys.argv = ['gpu.py', '--smoke', '--json', '--work', sys.argv[1]]; "
            "import runpy; runpy.run_path(%r, run_name='__main__')"
            % str(ROOT / "benchmarks" / "gpu.py"))
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=300,
                       cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout)
    assert res["device"] == "cpu" and res["workers"] == 1
    assert res["windows"] == len(ShardSet(tmp_path / "shards", ["video", "imu"]))
    for k in ("video_pretrain", "video_to_imu_dcat_cached"):
        c = res[k]
        assert c["end_to_end_windows_per_s"] > 0 and c["step_in_memory_windows_per_s"] > 0
        assert c["ratio"] == pytest.approx(c["end_to_end_windows_per_s"] / c["step_in_memory_windows_per_s"])
        assert c["windows_timed"] == res["windows"]  # one timed epoch over every window


def test_default_gathers_memory_mapped_video_and_reads_blocks_otherwise(shard_dir, monkeypatch):
    ss = ShardSet(shard_dir, ["video", "imu"])
    calls = []
    orig = BlockDataset.read_block

    def spy(self, rec, i, j):
        calls.append((rec, i, j))
        return orig(self, rec, i, j)

    monkeypatch.setattr(BlockDataset, "read_block", spy)
    ds = BlockDataset(ss, np.arange(len(ss)), ["video", "imu"], 8, frames={"video": 8})
    assert ds.gather is None and sum(len(b["y"]) for b in make_loader(ds, 0)) == len(ss)
    assert calls == []  # memory-mapped video: gathered, no block read
    ds.close()
    ds.mmap = False  # h5py reads: whole blocks, one read each
    assert sum(len(b["y"]) for b in make_loader(ds, 0)) == len(ss)
    assert len(calls) == len(ds.blocks)
    ds.close()
