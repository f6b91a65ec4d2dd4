"""Epoch selection on a smoothed validation score, a minimum number of epochs, --epochs < 1 refused,
the deterministic thread default recorded in config.json."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from _fake_shards import write_fake_shards
from pipelines.core.errors import TrainingError
from pipelines.learn.checkpoint import load_checkpoint
from pipelines.learn.config import TrainConfig
from pipelines.learn.pretrain import pretrain
from pipelines.learn.selection import FitState, SelectionRule, judge_epoch


def _run(f1s, rule, losses=None, epochs=None):
    st = FitState()
    best = []
    for e, f in enumerate(f1s):
        if judge_epoch(st, e, f, (losses or [1.0] * len(f1s))[e], rule, epochs or len(f1s)):
            best.append(e)
        if st.stopped_early:
            break
    return st, best


def test_raw_rule_is_the_old_one_and_a_spike_wins_it():
    f1s = [0.5, 0.9, 0.5, 0.6, 0.7, 0.72, 0.74, 0.7]  # epoch 1 is a spike
    st, best = _run(f1s, SelectionRule(smooth=1, patience=3))
    assert best == [0, 1] and st.best_epoch == 1 and st.stopped_early and st.epoch == 4


def test_smoothed_score_skips_a_spike_and_picks_the_stable_stretch():
    f1s = [0.5, 0.9, 0.5, 0.6, 0.7, 0.72, 0.74, 0.7]
    st, _ = _run(f1s, SelectionRule(smooth=3, patience=0))
    means = [np.mean(f1s[max(0, e - 2):e + 1]) for e in range(len(f1s))]
    assert st.best_epoch == int(np.argmax(means)) == 6
    assert st.best_score == pytest.approx(means[6]) and st.best_f1 == 0.74  # the epoch's own F1 is kept too


def test_min_epochs_blocks_early_selection_and_early_stopping():
    f1s = [0.9, 0.1, 0.1, 0.1, 0.2, 0.3, 0.25, 0.2, 0.2, 0.2]
    st, best = _run(f1s, SelectionRule(smooth=1, min_epochs=5, patience=2))
    assert best == [4, 5] and st.best_epoch == 5  # epochs 1-4 are not eligible, epoch 0's 0.9 neither
    assert st.stopped_early and st.epoch == 7  # patience counts from epoch 5 on
    # min_epochs beyond --epochs: the last epoch is still eligible
    st, _ = _run([0.9, 0.1, 0.2], SelectionRule(min_epochs=10), epochs=3)
    assert st.best_epoch == 2


def test_ties_broken_by_the_smoothed_loss_and_nan_means_latest():
    st, _ = _run([0.5, 0.5, 0.5], SelectionRule(smooth=1), losses=[1.0, 0.5, 0.7])
    assert st.best_epoch == 1
    st, best = _run([float("nan")] * 3, SelectionRule(smooth=3, patience=1))
    assert best == [0, 1, 2] and not st.stopped_early and math.isnan(st.best_f1)


def test_the_default_rule_resolves_min_epochs_from_epochs():
    from pipelines.learn.fit import selection_rule
    from pipelines.learn.selection import default_min_epochs

    assert [default_min_epochs(e) for e in (1, 4, 6, 20, 21)] == [1, 3, 5, 15, 16]
    r = selection_rule(TrainConfig(epochs=20))
    assert (r.smooth, r.min_epochs, r.patience) == (3, 15, 6)
    assert selection_rule(TrainConfig(epochs=20, min_epochs=0, val_smooth=1)) == SelectionRule(1, 0, 6)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("sel_shards") / "shards"
    write_fake_shards(d, streams=("imu",), subjects=("s01", "s02", "s03"), recordings_per_subject=1,
                      duration_s=24.0, seed=5, imu_snr=0.5)
    return d


SMALL = dict(d=16, heads=2, batch_size=16, block_s=6.0)


def test_a_run_keeps_the_epoch_of_the_best_smoothed_score(shards, tmp_path):
    n = torch.get_num_threads()
    try:
        info = pretrain(TrainConfig(data=str(shards), modality="imu", out=str(tmp_path / "r"), epochs=6,
                                    val_smooth=2, min_epochs=3, patience=0, **SMALL))
    finally:
        torch.set_num_threads(n)
    rows = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    f1 = [r["val_macro_f1"] for r in rows]
    score = [np.mean(f1[max(0, e - 1):e + 1]) for e in range(6)]
    assert [r["val_score"] for r in rows] == pytest.approx(score)
    want = 2 + int(np.argmax(score[2:]))  # eligible from epoch 3 (1-based)
    assert info["best_epoch"] == rows[-1]["best_epoch"] == want
    ck = load_checkpoint(tmp_path / "r" / "best.pt")
    assert ck["epoch"] == want and ck["best"]["selection"]["val_smooth"] == 2
    assert ck["best"]["selection"]["min_epochs"] == 3 and "mean validation macro-F1" in ck["best"]["selection"]["rule"]
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["args"]["val_smooth"] == 2 and cfg["args"]["min_epochs"] == 3
    assert cfg["threads"] == cfg["args"]["threads"] == 1 and info["threads"] == 1


def test_epochs_below_one_are_refused(shards, tmp_path, monkeypatch):
    with pytest.raises(TrainingError, match="--epochs 0: train at least 1 epoch"):
        TrainConfig(epochs=0)
    with pytest.raises(TrainingError, match="--val-smooth 0"):
        TrainConfig(val_smooth=0)
    from dcat_cli.main import app

    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["pretrain", "--modality", "imu", "--data", str(shards), "--epochs", "0",
                                   "--out", "runs/x"])
    assert res.exit_code == 1 and "--epochs 0: train at least 1 epoch" in res.stderr
    assert not (tmp_path / "runs" / "x").exists()


def test_the_thread_default_is_fixed_whatever_the_load(monkeypatch):
    from pipelines.learn import device as dev

    n = torch.get_num_threads()
    try:
        monkeypatch.setattr(dev.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
        assert TrainConfig().threads == dev.DEFAULT_THREADS == 1
        assert dev.configure_threads(TrainConfig().threads, torch.device("cpu")) == 1 == torch.get_num_threads()
        monkeypatch.setattr(dev.os, "getloadavg", lambda: (50.0, 50.0, 50.0))
        assert dev.configure_threads(TrainConfig().threads, torch.device("cpu")) == 1
    finally:
        torch.set_num_threads(n)
