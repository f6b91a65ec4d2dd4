"""Splits (pipelines.learn.splits): no time overlap across parts, OOD subjects held out, seeds, leakage checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from _fake_shards import write_fake_shards
from pipelines.learn.data import ShardSet
from pipelines.learn.splits import (SplitConfig, SplitError, apply_split, check_transfer_split, load_split, make_split,
                              save_split)

SUBJECTS = ("s01", "s02", "s03", "s04", "s05")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("split_shards")
    # 5 subjects x 2 recordings x 30 s, windows 2 s every 1 s: 29 windows per recording
    write_fake_shards(d, subjects=SUBJECTS, recordings_per_subject=2, duration_s=30.0, streams=("imu",))
    return ShardSet(d, ["imu"])


def _parts(ss, split):
    ids = apply_split(ss, split)
    return ids, {k: set(v.tolist()) for k, v in ids.items()}


def _assert_no_time_overlap(ss, ids, guard_s=0.0):
    names = list(ids)
    for a in names:
        for b in names:
            if a >= b:
                continue
            for i in ids[a]:
                same = ids[b][ss.rec[ids[b]] == ss.rec[i]]
                # windows on both sides never overlap (nor come closer than guard_s)
                near = (ss.start_s[same] < ss.end_s[i] + guard_s - 1e-9) & (ss.start_s[i] < ss.end_s[same] + guard_s - 1e-9)
                assert not near.any(), (a, b, i)


def test_id_split_parts_disjoint_in_time_and_share_subjects(shards):
    split = make_split(shards, SplitConfig(split="id", seed=0, block_s=6.0))
    ids, sets = _parts(shards, split)
    assert all(len(v) for v in ids.values())
    assert not (sets["train"] & sets["val"] or sets["train"] & sets["test"] or sets["val"] & sets["test"])
    _assert_no_time_overlap(shards, ids)
    for part in ("train", "val", "test"):
        assert split["subjects"][part] == list(SUBJECTS)
    # the guard dropped the windows straddling part borders, and says how many
    kept = sum(len(v) for v in ids.values())
    assert kept + split["n_windows"]["dropped_by_guard"] == len(shards)
    assert split["n_windows"]["dropped_by_guard"] > 0
    # fractions roughly as asked (per subject: 10 blocks of 6 s -> 2 test, 2 val)
    assert 0.1 < len(ids["test"]) / kept < 0.35
    assert 0.1 < len(ids["val"]) / kept < 0.35


def test_guard_gap_is_respected(shards):
    split = make_split(shards, SplitConfig(split="id", seed=3, block_s=6.0, guard_s=2.0))
    ids, _ = _parts(shards, split)
    _assert_no_time_overlap(shards, ids, guard_s=2.0)


def test_split_is_reproducible_from_seed(shards, tmp_path):
    a = make_split(shards, SplitConfig(seed=5, block_s=6.0))
    b = make_split(shards, SplitConfig(seed=5, block_s=6.0))
    c = make_split(shards, SplitConfig(seed=6, block_s=6.0))
    assert a["recordings"] == b["recordings"]
    assert a["recordings"] != c["recordings"]
    save_split(tmp_path / "split.json", a)
    again = load_split(tmp_path / "split.json")
    assert json.dumps(again["recordings"]) == json.dumps(a["recordings"])
    for k, v in apply_split(shards, again).items():
        assert np.array_equal(v, apply_split(shards, a)[k])


def test_ood_named_subjects_never_in_training(shards):
    split = make_split(shards, SplitConfig(split="ood", test_subjects=["s02", "s04"]))
    ids, _ = _parts(shards, split)
    assert split["subjects"]["test"] == ["s02", "s04"]
    # validation: one held-out training subject (round(0.15 x 3) -> at least 1), the other two train
    train, val = set(shards.subject_of(ids["train"])), set(shards.subject_of(ids["val"]))
    assert len(val) == 1 and len(train) == 2 and train | val == {"s01", "s03", "s05"} and not train & val
    # every window of a test subject is in test
    n_test_subject = int(np.isin(shards.subject_of(np.arange(len(shards))), ["s02", "s04"]).sum())
    assert len(ids["test"]) == n_test_subject
    _assert_no_time_overlap(shards, ids)


def test_ood_folds_cover_every_subject_once(shards):
    seen = []
    for k in range(5):
        split = make_split(shards, SplitConfig(split="ood", fold=k, folds=5, seed=1))
        test = split["subjects"]["test"]
        assert not set(test) & set(split["subjects"]["train"])
        seen += test
    assert sorted(seen) == list(SUBJECTS)


@pytest.mark.parametrize("cfg, msg", [
    (SplitConfig(split="ood", test_subjects=["s99"]), "s99"),
    (SplitConfig(split="ood"), "--test-subjects"),
    (SplitConfig(split="ood", fold=5, folds=5), "--fold 5"),
    (SplitConfig(split="ood", test_subjects=list(SUBJECTS)), "all subjects"),
    (SplitConfig(split="random"), "unknown split"),
])
def test_bad_split_options_say_what_to_do(shards, cfg, msg):
    with pytest.raises(SplitError, match=msg):
        make_split(shards, cfg)


def test_transfer_split_check_refuses_leaks(shards):
    src = make_split(shards, SplitConfig(seed=0, block_s=6.0))
    check_transfer_split(src, src)  # the source's own split: fine
    other = make_split(shards, SplitConfig(seed=1, block_s=6.0))
    with pytest.raises(SplitError, match="overlaps source training time"):
        check_transfer_split(src, other)
    src_ood = make_split(shards, SplitConfig(split="ood", test_subjects=["s01"]))
    tgt_ood = make_split(shards, SplitConfig(split="ood", test_subjects=["s02"]))
    with pytest.raises(SplitError, match="test subject"):
        check_transfer_split(src_ood, tgt_ood)
    check_transfer_split(src_ood, make_split(shards, SplitConfig(split="ood", test_subjects=["s01"])))


def test_split_applies_to_shards_of_the_same_recordings_with_other_streams(shards, tmp_path):
    d = tmp_path / "video_only"
    write_fake_shards(d, subjects=SUBJECTS, recordings_per_subject=2, duration_s=30.0, streams=("video",))
    other = ShardSet(d, ["video"])
    split = make_split(shards, SplitConfig(seed=2, block_s=6.0))
    a, b = apply_split(shards, split), apply_split(other, split)
    for k in a:
        assert np.array_equal(a[k], b[k])
