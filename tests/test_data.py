"""The shard reader (pipelines.learn.data): exact contents, block reads, shuffling, workers, errors."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
import torch

from _fake_shards import write_fake_shards
from pipelines.learn.data import BlockDataset, ShardSet, estimate_stats, make_blocks, make_loader
from pipelines.core.errors import ShardError
from pipelines.learn.models import frame_indices


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data_shards")
    # 15 windows per recording minus windows 6 and 7 (as a quality gate would drop them): 2 stored runs
    write_fake_shards(d, subjects=("s01", "s02", "s03"), recordings_per_subject=2, duration_s=16.0,
                      streams=("video", "imu", "audio"), video_fps=4.0, drop_windows=(6, 7))
    return d


def _direct(ss, stream, arr, g, fidx=None):
    """Window g read the plain way: ``<array>[window_start[i] : window_start[i] + T]``."""
    rec = ss.recordings[int(ss.rec[g])]
    with h5py.File(rec.path, "r") as f:
        grp = f["streams"][stream]
        a0 = int(grp["window_start"][int(ss.win[g])])
        a = grp[arr][a0:a0 + int(grp.attrs["samples_per_window"])]
    return a if fidx is None else a[fidx]


def test_index_matches_manifest_and_labels(shard_dir):
    ss = ShardSet(shard_dir, ["imu"])
    assert ss.classes == ["drink", "eat", "walk"]
    assert len(ss) == 6 * 13
    with h5py.File(ss.recordings[1].path, "r") as f:
        labels = [x.decode() for x in f["windows/label"][:]]
        start = f["windows/start_s"][:]
    g = ss.ids_of_recording(1)
    assert [ss.classes[i] for i in ss.y[g]] == labels
    assert np.array_equal(ss.start_s[g], start)
    assert ss.kind("imu") == "imu" and ss.shape("imu") == [20, 6]


def test_every_window_once_with_exact_contents(shard_dir):
    ss = ShardSet(shard_dir, ["imu", "video"])
    ids = np.arange(0, len(ss), 3)  # a subset with gaps: blocks must follow it
    fidx = frame_indices(8, 4)
    ds = BlockDataset(ss, ids, ["imu", "video"], batch_size=7, shuffle=True, seed=1, frames={"video": 4})
    seen = []
    for b in make_loader(ds, 0):
        assert b["video"].dtype == torch.uint8 and b["video"].shape[1:] == (4, 16, 16, 3)
        for k in range(len(b["y"])):
            pos = int(b["idx"][k])
            g = ids[pos]
            seen.append(pos)
            assert int(b["y"][k]) == ss.y[g]
            assert np.array_equal(b["imu"][k].numpy(), _direct(ss, "imu", "data", g))
            assert np.array_equal(b["video"][k].numpy(), _direct(ss, "video", "frames", g, fidx))
    assert sorted(seen) == list(range(len(ids)))
    assert len(list(make_loader(ds, 0))) == len(ds) == int(np.ceil(len(ids) / 7))


def test_reads_whole_blocks_not_single_windows(shard_dir, monkeypatch):
    ss = ShardSet(shard_dir, ["imu"])
    ids = np.arange(len(ss))
    ds = BlockDataset(ss, ids, ["imu"], batch_size=8, shuffle=True, block_windows=10)
    calls = []
    orig = BlockDataset.read_block

    def spy(self, rec, i, j):
        calls.append(j - i)
        return orig(self, rec, i, j)

    monkeypatch.setattr(BlockDataset, "read_block", spy)
    n = sum(len(b["y"]) for b in make_loader(ds, 0))
    assert n == len(ids)
    assert len(calls) == len(make_blocks(ss, ids, 10)) == 6 * 2  # 13 windows per recording -> blocks of 10 + 3
    assert sorted(calls) == sorted([10, 3] * 6)


def test_shuffle_is_deterministic_per_epoch_and_mixes_recordings(shard_dir):
    ss = ShardSet(shard_dir, ["imu"])
    ids = np.arange(len(ss))

    def order(epoch, seed=0):
        ds = BlockDataset(ss, ids, ["imu"], batch_size=16, shuffle=True, seed=seed)
        ds.set_epoch(epoch)
        return np.concatenate([b["idx"].numpy() for b in make_loader(ds, 0)])

    assert np.array_equal(order(0), order(0))
    assert not np.array_equal(order(0), order(1))
    assert not np.array_equal(order(0), order(0, seed=1))
    first = order(0)[:16]
    assert len(set(ss.rec[ids[first]].tolist())) > 1  # a batch mixes recordings
    plain = BlockDataset(ss, ids, ["imu"], batch_size=16)
    assert np.array_equal(np.concatenate([b["idx"].numpy() for b in make_loader(plain, 0)]), np.arange(len(ids)))


def test_workers_open_files_lazily_and_cover_everything(shard_dir):
    ss = ShardSet(shard_dir, ["imu"])
    ids = np.arange(len(ss))
    ds = BlockDataset(ss, ids, ["imu"], batch_size=8, shuffle=True, block_windows=5)
    next(iter(make_loader(ds, 0)))  # opens handles in this process
    assert ds._files
    pickle.dumps(ds)  # handles are never pickled to workers
    loader = make_loader(ds, 2)
    got = np.concatenate([b["idx"].numpy() for b in loader])
    assert sorted(got.tolist()) == list(range(len(ids)))
    assert len(list(loader)) == len(ds)
    ds.close()


def test_only_asked_streams_are_needed(tmp_path):
    write_fake_shards(tmp_path, subjects=("s01",), recordings_per_subject=1, duration_s=8.0, streams=("imu",))
    ss = ShardSet(tmp_path, ["imu"])
    assert len(ss) == 7
    with pytest.raises(ShardError, match="stream 'video' is not in these shards"):
        ShardSet(tmp_path, ["video"])


def test_unknown_encoding_version_is_refused(tmp_path):
    write_fake_shards(tmp_path, subjects=("s01",), recordings_per_subject=1, duration_s=8.0, streams=("imu",))
    with h5py.File(tmp_path / "s01_r00.h5", "a") as f:
        f["streams/imu"].attrs["encoding-version"] = "9"
    with pytest.raises(ShardError, match="encoding-version '9'.*upgrade dcat"):
        ShardSet(tmp_path, ["imu"])


def test_shape_that_differs_from_manifest_is_refused(tmp_path):
    write_fake_shards(tmp_path, subjects=("s01",), recordings_per_subject=1, duration_s=8.0, streams=("imu",))
    with h5py.File(tmp_path / "s01_r00.h5", "a") as f:
        f["streams/imu"].attrs["samples_per_window"] = 10
    with pytest.raises(ShardError, match=r"per-window shape \[10, 6\] differs from the manifest's \[20, 6\]"):
        ShardSet(tmp_path, ["imu"])


def test_estimate_stats_matches_numpy(shard_dir):
    ss = ShardSet(shard_dir, ["imu"])
    ids = ss.ids_of_recording(0)
    mean, std = estimate_stats(ss, ids, "imu", max_windows=10_000)
    a = np.concatenate([_direct(ss, "imu", "data", g) for g in ids]).astype(np.float64)  # per window, as trained
    assert np.allclose(mean, a.mean(0)) and np.allclose(std, a.std(0))


def test_manifest_standardization_uses_the_training_part_only(shard_dir):
    """--standardize manifest: the stored sums of the training recordings (out of distribution with
    validation subjects), never the manifest's statistics over every shard; refused in distribution."""
    from pipelines.core.errors import TrainingError
    from pipelines.learn.data import manifest_stats
    from pipelines.learn.splits import SplitConfig, apply_split, make_split
    from pipelines.learn.stream_model import set_input_stats
    from pipelines.learn.models import ModelConfig, build_model

    ss = ShardSet(shard_dir, ["imu"])
    ids = apply_split(ss, make_split(ss, SplitConfig(split="ood", test_subjects=["s03"], val_frac=0.5)))
    train_subjects = sorted(set(ss.subject_of(ids["train"])))
    assert len(train_subjects) == 1 and "s03" not in train_subjects
    mean, std = manifest_stats(ss, ids["train"], "imu")
    stored = []
    for r in ss.recordings:
        if r.subject in train_subjects:
            with h5py.File(r.path, "r") as f:
                stored.append(f["streams/imu/data"][()].astype(np.float64))  # every stored sample once
    a = np.concatenate(stored)
    assert np.allclose(mean, a.mean(0)) and np.allclose(std, a.std(0))
    # the fake subjects differ by a constant offset: the manifest's all-subject mean is another number
    assert not np.allclose(mean, ss.stream_info["imu"]["mean"], atol=0.05)
    model = build_model(ModelConfig(kind="imu", in_shape=[20, 6], n_classes=3, d=8, heads=2, depth=1, dropout=0.0))
    assert set_input_stats(model, ss, "imu", ids["train"], "manifest", 0).startswith("manifest")
    assert np.allclose(model.norm_in.in_mean.numpy(), mean, atol=1e-6)
    idx = apply_split(ss, make_split(ss, SplitConfig(split="id", block_s=4.0)))
    with pytest.raises(TrainingError, match="--standardize manifest.*also hold windows outside it.*--standardize train"):
        set_input_stats(model, ss, "imu", idx["train"], "manifest", 0)
    tv = apply_split(ss, make_split(ss, SplitConfig(split="ood", test_subjects=["s03"], ood_val="time", block_s=4.0)))
    with pytest.raises(TrainingError, match="--ood-val subjects"):
        manifest_stats(ss, tv["train"], "imu")


def test_windows_are_read_across_stored_runs(shard_dir):
    ss = ShardSet(shard_dir, ["imu"])
    rec = ss.recordings[0]
    assert rec.start_s.tolist() == [0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14]  # 6 and 7 dropped
    with h5py.File(rec.path, "r") as f:
        ws = f["streams/imu/window_start"][:]
        assert len(f["streams/imu/data"]) == 70 + 80  # runs 0-7 s and 8-16 s at 10 Hz, each sample once
    assert ws[5] + 20 == ws[6]  # a new run starts after the gap
    ds = BlockDataset(ss, ss.ids_of_recording(0), ["imu"], batch_size=13, block_windows=13)
    b = next(iter(make_loader(ds, 0)))
    for k, g in enumerate(ss.ids_of_recording(0)):
        assert np.array_equal(b["imu"][k].numpy(), _direct(ss, "imu", "data", g))


def test_frame_indices_known_values():
    assert frame_indices(60, 8).tolist() == [0, 8, 17, 25, 34, 42, 51, 59]
    assert frame_indices(8, 4).tolist() == [0, 2, 5, 7]
    assert frame_indices(8, 8) is None and frame_indices(8, 0) is None
