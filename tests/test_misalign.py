"""Training-time misalignment (--misalign): which window a shifted read returns, and the transfer
that uses it."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from _fake_shards import write_fake_shards
from pipelines.learn.data import ShardSet
from pipelines.learn.misalign import (MisalignError, ShiftedReader, parse_misalign, run_ids, shifted_batches,
                                shifted_starts, source_offsets)
from pipelines.shards.reader import WindowReader
from pipelines.core.errors import TrainingError
from pipelines.learn.config import TrainConfig, TransferConfig
from pipelines.learn.pretrain import pretrain
from pipelines.learn.transfer import check_settings, transfer


def test_parse_and_offsets():
    assert parse_misalign("imu=0.5") == {"imu": 0.5}
    assert parse_misalign(" imu=-1, audio=0.25 ") == {"imu": -1.0, "audio": 0.25}
    assert parse_misalign(None) == {} and parse_misalign("") == {}
    for bad in ("imu", "imu=x", "=0.5", "imu=nan"):
        with pytest.raises(MisalignError):
            parse_misalign(bad)
    # imu late by 0.5 s: the imu window [t, t+L) pairs with the video window 0.5 s earlier
    assert source_offsets({"imu": 0.5}, "imu", ["video"]) == {"video": 0.5}
    assert source_offsets({"video": 0.5}, "imu", ["video", "audio"]) == {"video": -0.5, "audio": 0.0}


def test_shifted_starts_stay_inside_their_run():
    # 50 Hz, 2 s windows (T=100) every 1 s: windows at 0,1,2,3 s stored at 0,50,100,150 (one run),
    # then (windows 4..9 dropped) windows at 10, 11 s stored right behind, at 250, 300
    rate, T = 50.0, 100
    start_s = np.array([0.0, 1.0, 2.0, 3.0, 10.0, 11.0])
    stored = np.array([0, 50, 100, 150, 250, 300])
    assert run_ids(stored, start_s, rate, T).tolist() == [0, 0, 0, 0, 1, 1]
    new, ok = shifted_starts(stored, start_s, rate, T, 0.5)
    assert ok.tolist() == [True, True, True, False, True, False]
    assert new[ok].tolist() == [25, 75, 125, 275]
    new, ok = shifted_starts(stored, start_s, rate, T, -1.0)
    assert ok.tolist() == [False, True, True, True, False, True]
    assert new[ok].tolist() == [0, 50, 100, 250]
    new, ok = shifted_starts(stored, start_s, rate, T, 0.0)
    assert ok.all() and new.tolist() == stored.tolist()


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    root = tmp_path_factory.mktemp("misalign")
    shards = root / "shards"
    write_fake_shards(shards, subjects=("s01", "s02", "s03"), recordings_per_subject=2, duration_s=24.0, seed=4,
                      drop_windows=(9, 10, 11))
    return shards


def test_a_shift_by_one_stride_reads_the_next_window(fake):
    """The fake signals are continuous in time, so window i read 1 s (one stride) late is window
    i+1, wherever both lie in one run; at a run's end there is no shifted window."""
    path = sorted(fake.glob("*.h5"))[0]
    with h5py.File(path, "r") as f:
        plain = WindowReader(f["streams"]["imu"], "data")
        n = len(plain)
        start_s = f["windows"]["start_s"][()]
        sh = ShiftedReader(f, "imu", "data", 1.0)
        x, valid = sh.read(np.arange(n))
        ref = plain.read(0, n)
        for i in range(n):
            nxt = i + 1 < n and abs(start_s[i + 1] - start_s[i] - 1.0) < 1e-9
            assert valid[i] == nxt, i
            if nxt:
                assert np.array_equal(x[i], ref[i + 1]), i
        assert 0 < (~valid).sum() <= 3  # the last window of each of the two runs (plus none else)
        # video too, with frame subsampling
        vplain = WindowReader(f["streams"]["video"], "frames")
        vx, vvalid = ShiftedReader(f, "video", "frames", -1.0).read(np.arange(n), frames=[0, 3, 5])
        vref = vplain.read(0, n, frames=[0, 3, 5])
        for i in np.flatnonzero(vvalid):
            assert np.array_equal(vx[i], vref[i - 1]), i


def test_shifted_batches_cover_ids_in_any_order(fake):
    ss = ShardSet(fake, ["imu"])
    ids = np.random.default_rng(0).permutation(len(ss))[:40]
    seen = np.zeros(len(ids), int)
    for b in shifted_batches(ss, ids, "imu", 0.0, batch_size=7):
        seen[b["idx"].numpy()] += 1
        assert bool(b["valid"].all())  # no shift: every window is its own
        assert torch.equal(b["y"], torch.from_numpy(ss.y[ids[b["idx"].numpy()]]))
    assert (seen == 1).all()


SMALL = dict(d=16, heads=2, batch_size=16, block_s=6.0, video_frames=4, patience=0, threads=1)


def test_misaligned_transfer_masks_the_term_where_no_shifted_window_exists(fake, tmp_path):
    runs = tmp_path / "runs"
    pretrain(TrainConfig(data=str(fake), modality="video", runs=str(runs), epochs=1, **SMALL))
    kw = dict(data=str(fake), src="video", tgt="imu", runs=str(runs), epochs=2, heads=2, batch_size=16, patience=0,
              threads=1, mcma=False)
    info = transfer(TransferConfig(misalign="imu=1", **kw))
    assert info["misalign"] == "imu=1" and info["source_offsets_s"] == {"video": 1.0}
    run = runs / "video-to-imu-shift-imu+1-id"
    assert info["run_dir"] == str(run)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["args"]["misalign"] == "imu=1"
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    # without MCMA the keep rate is the share of windows that have a shifted source window: below 1
    # (run ends) but most of them
    for m in rows:
        assert 0.6 < m["train_keep_rate_video"] < 1.0
    plain = transfer(TransferConfig(**kw))
    rows0 = [json.loads(x) for x in (runs / "video-to-imu-id" / "metrics.jsonl").read_text().splitlines()]
    assert all(m["train_keep_rate_video"] == 1.0 for m in rows0)
    assert plain["misalign"] is None
    # same target init and data order; only the source windows differ: the alignment term differs
    assert rows[0]["train_ca"] != pytest.approx(rows0[0]["train_ca"], rel=1e-6)


def test_misalign_settings_are_checked():
    def bad(match, **kw):
        with pytest.raises(TrainingError, match=match):
            check_settings(TransferConfig(**{"src": "video", "tgt": "imu", **kw}))

    bad("neither the target", misalign="audio=0.5")
    bad("method none", misalign="imu=0.5", method="none")
    bad("source cache", misalign="imu=0.5", cache="off")
    bad("source cache", misalign="imu=0.5", augment=True)
    with pytest.raises(MisalignError):
        check_settings(TransferConfig(src="video", tgt="imu", misalign="imu:0.5"))
