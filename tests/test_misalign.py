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
from pipelines.learn.misalign import (MisalignError, ShiftedReader, covered, parse_misalign, run_ids,
                                      shifted_batches, shifted_starts, source_offsets)
from pipelines.learn.splits import SplitConfig, apply_split, make_split
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
    # imu late by 0.5 s: the imu window [t, t+L) pairs with the video window [t+0.5, t+0.5+L)
    # (read 0.5 s later; test_the_sign_of_a_shift pins it on the samples)
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


def test_the_sign_of_a_shift(fake):
    """--misalign imu=+0.5 with target imu pairs the imu window [t, t+2) with the video samples of
    [t+0.5, t+2.5) (and imu=-0.5 with [t-0.5, t+1.5)), as the docs say: the sample stored for time
    t + 0.5 is ``window_start[i] + 0.5 x rate`` (schemas/shard.md)."""
    ss = ShardSet(fake, ["video"])
    rid0 = ss.ids_of_recording(0)
    with h5py.File(ss.recordings[0].path, "r") as f:
        frames = f["streams/video/frames"][()]
        ws = f["streams/video/window_start"][()]
        rate = float(f["streams/video"].attrs["rate_hz"])
        start_s = f["windows/start_s"][()]
    assert rate == 4.0 and start_s[3] == 3.0
    for spec, sign in (("imu=0.5", 1), ("imu=-0.5", -1), ("video=-0.5", 1)):
        off = source_offsets(parse_misalign(spec), "imu", ["video"])["video"]
        assert off == sign * 0.5
        got = {}
        for b in shifted_batches(ss, rid0, "video", off, batch_size=64):
            for k, pos in enumerate(b["idx"].tolist()):
                if b["valid"][k]:
                    got[pos] = b["video"][k].numpy()
        assert 3 in got  # window 3, [3, 5): paired with video [3.5, 5.5) (or [2.5, 4.5))
        a0 = ws[3] + sign * 2  # 0.5 s at 4 frames/s
        assert np.array_equal(got[3], frames[a0:a0 + 8])
        assert not np.array_equal(got[3], frames[ws[3] - sign * 2:ws[3] - sign * 2 + 8])


@pytest.mark.parametrize("kfold", [False, True])
def test_shifted_reads_never_cross_a_split_border(fake, kfold):
    """Property over every training window of the fake shards at +-0.5 and +-1 s: a shifted read
    used for the transfer term (valid) lies inside the training part's time, so it never overlaps,
    nor comes within the guard of, a validation or test window; without the border mask some do."""
    ss = ShardSet(fake, ["imu", "video"])
    cfg = SplitConfig(split="id", block_s=4.0, **({"fold": 1, "folds": 3} if kfold else {}))
    split = make_split(ss, cfg)
    ids = apply_split(ss, split)
    tr, other = ids["train"], np.concatenate([ids["val"], ids["test"]])
    crossing_unmasked = 0
    for stream in ("imu", "video"):
        for off in (-1.0, -0.5, 0.5, 1.0):
            n_valid = 0
            for masked, within in ((True, None), (False, np.arange(len(ss)))):
                for b in shifted_batches(ss, tr, stream, off, batch_size=32, within=within):
                    g = tr[b["idx"].numpy()[b["valid"].numpy()]]
                    for s0, e0, r in zip(ss.start_s[g] + off, ss.end_s[g] + off, ss.rec[g]):
                        o = other[ss.rec[other] == r]
                        near = (ss.start_s[o] < e0 + cfg.guard_s - 1e-9) & (s0 < ss.end_s[o] + cfg.guard_s - 1e-9)
                        if masked:
                            n_valid += 1
                            assert not near.any(), (stream, off, r, s0)
                            iv = split["recordings"][ss.recordings[int(r)].recording_id]["train"]
                            assert any(a - 1e-9 <= s0 and e0 <= b_ + 1e-9 for a, b_ in iv)
                        else:
                            crossing_unmasked += int(near.any())
            assert n_valid > len(tr) // 3  # most windows keep their transfer term
    assert crossing_unmasked > 0


def test_the_mask_does_not_depend_on_a_share_of_the_ids(fake):
    """Under torchrun each rank caches a share of the training windows: with ``within`` = the whole
    training part the mask of a window is the same as in one process."""
    ss = ShardSet(fake, ["imu"])
    tr = apply_split(ss, make_split(ss, SplitConfig(split="id", block_s=4.0)))["train"]

    def mask(ids):
        out = {}
        for b in shifted_batches(ss, ids, "imu", 0.5, within=tr):
            out.update(zip(ids[b["idx"].numpy()].tolist(), b["valid"].tolist()))
        return out

    whole = mask(tr)
    half = {**mask(tr[: len(tr) // 2]), **mask(tr[len(tr) // 2:])}
    assert whole == half and not all(whole.values())


def test_covered_known_values():
    # spans [0, 2], [1, 3] merge into [0, 3]; [5, 7] apart
    st, en = np.array([0.0, 1.0, 5.0]), np.array([2.0, 3.0, 7.0])
    got = covered(np.array([0.5, 1.0, 2.5, 4.9, 5.0, 5.5]), np.array([2.5, 3.0, 3.5, 6.9, 7.0, 7.5]), st, en)
    assert got.tolist() == [True, True, False, False, True, False]
    assert covered(np.array([0.0]), np.array([1.0]), np.zeros(0), np.zeros(0)).tolist() == [False]


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
