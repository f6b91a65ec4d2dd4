"""Splits with folds (pipelines.learn.splits): the blocked K-fold in distribution, one split per fold
for every training seed, subject-level validation out of distribution, the guard's default and the
transfer check of the source's validation part."""

from __future__ import annotations

import numpy as np
import pytest

from _fake_shards import write_fake_shards
from pipelines.learn.config import DEFAULT_GUARD_S, TrainConfig, TransferConfig
from pipelines.learn.data import ShardSet
from pipelines.learn.splits import EPS_S, SplitConfig, SplitError, apply_split, check_transfer_split, make_split

SUBJECTS = ("s01", "s02", "s03", "s04", "s05")
K = 4


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("fold_shards")
    # 5 subjects x 2 recordings x 30 s (29 windows of 2 s every 1 s); blocks of 6 s: 5 per recording
    write_fake_shards(d, subjects=SUBJECTS, recordings_per_subject=2, duration_s=30.0, streams=("imu",))
    return ShardSet(d, ["imu"])


def _block_of(ss, g, block_s=6.0):
    """(recording, block) of window g: the block holding its centre, counted from the first window."""
    r = ss.recordings[int(ss.rec[g])]
    centre = (ss.start_s[g] + ss.end_s[g]) / 2
    return int(ss.rec[g]), int(np.floor((centre - r.start_s[0]) / block_s + 1e-6))


def _near_pairs(ss, a, b, gap):
    """Windows of ids ``a`` and ``b`` in one recording closer than ``gap`` (or overlapping)."""
    n = 0
    for i in a:
        same = b[ss.rec[b] == ss.rec[i]]
        n += int(((ss.start_s[same] < ss.end_s[i] + gap - 1e-9) & (ss.start_s[i] < ss.end_s[same] + gap - 1e-9)).sum())
    return n


def test_id_kfold_tests_every_block_exactly_once(shards):
    tested: dict[tuple[int, int], list[int]] = {}
    all_blocks = {_block_of(shards, g) for g in range(len(shards))}
    for k in range(K):
        split = make_split(shards, SplitConfig(split="id", fold=k, folds=K, block_s=6.0))
        ids = apply_split(shards, split)
        assert split["subjects"]["test"] == list(SUBJECTS)  # every subject is tested in every fold (5 blocks >= 4)
        for blk in {_block_of(shards, g) for g in ids["test"]}:
            tested.setdefault(blk, []).append(k)
        # the test part of a fold is whole blocks: every window of a test block is a test window
        test_blocks = {_block_of(shards, g) for g in ids["test"]}
        in_test_blocks = [g for g in range(len(shards)) if _block_of(shards, g) in test_blocks]
        assert sorted(ids["test"].tolist()) == in_test_blocks
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            assert _near_pairs(shards, ids[a], ids[b], DEFAULT_GUARD_S) == 0, (k, a, b)
        assert len(ids["val"]) > 0 and not {_block_of(shards, g) for g in ids["val"]} & test_blocks
    assert set(tested) == all_blocks
    assert all(len(v) == 1 for v in tested.values())
    # 10 recordings x 5 blocks dealt to 4 folds in turn: fold sizes differ by at most one block
    sizes = np.bincount([v[0] for v in tested.values()], minlength=K)
    assert sizes.max() - sizes.min() <= 1 and sizes.sum() == 50


def test_id_without_folds_is_one_random_split_as_before(shards):
    split = make_split(shards, SplitConfig(split="id", seed=0, block_s=6.0))
    assert split["config"]["folds"] is None
    ids = apply_split(shards, split)
    kept = sum(len(v) for v in ids.values())
    assert 0.1 < len(ids["test"]) / kept < 0.35
    assert SplitConfig(split="id").tag() == "id"
    assert SplitConfig(split="id", fold=1, folds=5).tag() == "id-fold1of5"


@pytest.mark.parametrize("split, extra", [("id", {"block_s": 6.0}), ("ood", {})])
def test_training_seeds_of_one_fold_share_the_split(shards, split, extra):
    """With --folds, the split's seed defaults to 0, not --seed: every seed of fold k trains,
    validates and tests on the same windows (and another --split-seed deals other folds)."""
    def parts(**kw):
        cfg = TrainConfig(split=split, fold=1, folds=K, **extra, **kw).split_config()
        return {k: v.tolist() for k, v in apply_split(shards, make_split(shards, cfg)).items()}

    a, b, c = parts(seed=0), parts(seed=1), parts(seed=7)
    assert a == b == c
    assert parts(seed=1, split_seed=3)["test"] != a["test"]
    # without folds the split seed stays --seed (as before)
    assert TrainConfig(split="id", seed=4).split_config().seed == 4
    assert TrainConfig(split="id", seed=4, fold=0, folds=3).split_config().seed == 0


def test_ood_folds_same_subjects_for_every_seed_and_cover_all(shards):
    seen = []
    for k in range(5):
        tests = {tuple(make_split(shards, TrainConfig(split="ood", fold=k, folds=5, seed=s).split_config())
                       ["subjects"]["test"]) for s in (0, 1, 2)}
        assert len(tests) == 1
        seen += list(tests.pop())
    assert sorted(seen) == list(SUBJECTS)


def test_ood_validation_subjects_are_held_out(shards):
    for k in range(5):
        split = make_split(shards, SplitConfig(split="ood", fold=k, folds=5))
        sub = split["subjects"]
        assert len(sub["val"]) == 1 and len(sub["train"]) == 3
        assert not set(sub["val"]) & set(sub["train"]) and not set(sub["val"]) & set(sub["test"])
        assert not set(sub["train"]) & set(sub["test"])
        assert split["n_windows"]["dropped_by_guard"] == 0  # whole subjects: no border to guard
        assert any(n.startswith("validation subjects: ") for n in split["notes"])
    # more validation subjects with a larger fraction (round(0.5 x 4) = 2), never all of them
    split = make_split(shards, SplitConfig(split="ood", test_subjects=["s01"], val_frac=0.5))
    assert len(split["subjects"]["val"]) == 2 and len(split["subjects"]["train"]) == 2
    split = make_split(shards, SplitConfig(split="ood", test_subjects=["s01"], val_frac=0.9))
    assert len(split["subjects"]["train"]) == 1


def test_ood_time_validation_keeps_the_old_behaviour(shards):
    split = make_split(shards, SplitConfig(split="ood", test_subjects=["s02"], ood_val="time", block_s=6.0))
    sub = split["subjects"]
    assert sub["val"] == sub["train"] == ["s01", "s03", "s04", "s05"]
    assert split["n_windows"]["dropped_by_guard"] > 0


def test_ood_with_two_or_one_training_subjects(tmp_path):
    write_fake_shards(tmp_path, subjects=("a", "b", "c"), recordings_per_subject=1, duration_s=12.0, streams=("imu",))
    ss = ShardSet(tmp_path, ["imu"])
    split = make_split(ss, SplitConfig(split="ood", test_subjects=["a"]))  # 2 left: one trains, one validates
    assert split["subjects"]["test"] == ["a"] and len(split["subjects"]["train"]) == 1
    assert sorted(split["subjects"]["train"] + split["subjects"]["val"]) == ["b", "c"]
    with pytest.raises(SplitError, match="at least 2 subjects outside the test set.*--ood-val time"):
        make_split(ss, SplitConfig(split="ood", test_subjects=["a", "b"]))
    # without validation, or validating on time, one training subject is enough
    assert make_split(ss, SplitConfig(split="ood", test_subjects=["a", "b"], val_frac=0.0))["subjects"]["val"] == []
    tv = make_split(ss, SplitConfig(split="ood", test_subjects=["a", "b"], ood_val="time", block_s=2.0))
    assert tv["subjects"]["val"] == ["c"] == tv["subjects"]["train"]


def test_guard_default_is_the_filter_reach(shards):
    assert DEFAULT_GUARD_S == 0.25
    assert SplitConfig().guard_s == 0.25 and TrainConfig().split_config().guard_s == 0.25
    assert TransferConfig(src="video", tgt="imu", split="id").split_config().guard_s == 0.25
    split = make_split(shards, SplitConfig(split="id", block_s=6.0))
    ids = apply_split(shards, split)
    # windows of different parts never touch: the nearest pair is a stride (1 s) apart, not 0 s
    gaps = []
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        for i in ids[a]:
            same = ids[b][shards.rec[ids[b]] == shards.rec[i]]
            if len(same):
                gaps.append(np.min(np.maximum(shards.start_s[same] - shards.end_s[i], shards.start_s[i] - shards.end_s[same])))
    assert min(gaps) >= 0.25 - EPS_S
    zero = apply_split(shards, make_split(shards, SplitConfig(split="id", block_s=6.0, guard_s=0.0)))
    assert sum(map(len, zero.values())) > sum(map(len, ids.values()))  # guard 0 keeps touching windows


@pytest.mark.parametrize("cfg, msg", [
    (SplitConfig(split="id", fold=1), "--fold and --folds go together"),
    (SplitConfig(split="id", fold=3, folds=3), "--fold 3"),
    (SplitConfig(split="id", fold=0, folds=1), "--folds 1"),
    (SplitConfig(split="ood", fold=0, folds=6), "--folds 6"),
    (SplitConfig(split="ood", test_subjects=["s01"], ood_val="random"), "--ood-val random"),
    (SplitConfig(split="id", guard_s=-1.0), "guard_s=-1"),
])
def test_bad_fold_options_are_refused(shards, cfg, msg):
    with pytest.raises(SplitError, match=msg):
        make_split(shards, cfg)


def test_transfer_check_covers_the_source_validation_part(shards):
    """The source chose its best epoch on its validation part: the target's test time must not be
    there either (time of the source's val in the target's train is fine)."""
    src = make_split(shards, SplitConfig(split="id", fold=0, folds=K, block_s=6.0))
    check_transfer_split(src, src)
    tgt = {**src, "recordings": {rid: dict(r) for rid, r in src["recordings"].items()}}
    rid = next(r for r, v in src["recordings"].items() if v["val"])
    tgt["recordings"][rid] = {**src["recordings"][rid], "test": src["recordings"][rid]["test"] + [src["recordings"][rid]["val"][0]],
                              "val": src["recordings"][rid]["val"][1:]}
    with pytest.raises(SplitError, match="target test time .* overlaps source validation time"):
        check_transfer_split(src, tgt)
    # val -> train on the target side is no leak
    tgt["recordings"][rid] = {**src["recordings"][rid], "train": src["recordings"][rid]["train"] + src["recordings"][rid]["val"],
                              "val": []}
    check_transfer_split(src, tgt)
    # OOD: a target test subject among the source's validation subjects
    s_ood = make_split(shards, SplitConfig(split="ood", test_subjects=["s01"]))
    val_subject = s_ood["subjects"]["val"][0]
    t_ood = make_split(shards, SplitConfig(split="ood", test_subjects=[val_subject], val_frac=0.0))
    with pytest.raises(SplitError, match=f"test subject\\(s\\) {val_subject} are in the source's validation part"):
        check_transfer_split(s_ood, t_ood)


def test_transfer_check_counts_time_within_the_guard(shards):
    """Source and target made with the same seed but the source without a guard: its training
    windows touch the target's test windows (a 0.25 s filter reach apart), which the target's guard refuses."""
    tgt = make_split(shards, SplitConfig(split="id", block_s=6.0))
    src = make_split(shards, SplitConfig(split="id", block_s=6.0, guard_s=0.0))
    with pytest.raises(SplitError, match="comes within 0.25 s \\(the guard\\) of source training time"):
        check_transfer_split(src, tgt)
    check_transfer_split(tgt, src)  # the other way round the guard is 0 and nothing overlaps
