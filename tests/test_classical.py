"""The classical reference (features-rf): window statistics with known values, a forest that learns a
separable signal and not shuffled labels, on exactly the windows of dcat's own split."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from _fake_shards import write_fake_shards

from pipelines.core.errors import RunDirError
from pipelines.learn.classical import (
    RESULT_FILE,
    STATS,
    fit_features_rf,
    series_stats,
    window_features,
)
from pipelines.learn.config import TrainConfig
from pipelines.learn.data import ShardSet
from pipelines.learn.splits import apply_split, load_split

FAKE = dict(subjects=("s01", "s02", "s03", "s04"), recordings_per_subject=2, duration_s=30.0, seed=5)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("classical") / "shards"
    write_fake_shards(d, streams=("imu", "audio"), imu_snr=2.0, **FAKE)
    return d


@pytest.fixture(scope="module")
def shuffled(tmp_path_factory):
    """The same kind of shards with every window's label replaced by a random class."""
    d = tmp_path_factory.mktemp("classical_shuffled") / "shards"
    man = write_fake_shards(d, streams=("imu",), imu_snr=2.0, **FAKE)
    rng = np.random.default_rng(0)
    for e in man["shards"]:
        with h5py.File(d / e["file"], "r+") as f:
            n = len(f["windows/label"])
            f["windows/label"][...] = np.array(rng.choice(man["classes"], size=n), dtype=object)
    return d


def test_stats_of_a_ramp_have_known_values():
    x = np.arange(11, dtype=np.float32).reshape(1, 11, 1)  # 0, 1, ..., 10
    got = dict(zip(STATS, series_stats(x)[0, 0]))
    want = {"mean": 5.0, "std": np.sqrt(10.0), "min": 0.0, "max": 10.0, "p10": 1.0, "p25": 2.5, "p50": 5.0,
            "p75": 7.5, "p90": 9.0, "energy": 385.0 / 11, "mad": 1.0}
    assert got == pytest.approx(want)
    # a second channel, the ramp reversed and shifted: order-free stats move with the shift, mad stays 1
    x2 = np.concatenate([x, 20 - x], axis=2)
    f, names = window_features("imu", x2, ["acc_x", "acc_y"])
    assert f.shape == (1, 2 * len(STATS)) and names[0] == "acc_x:mean" and names[len(STATS)] == "acc_y:mean"
    by = dict(zip(names, f[0]))
    assert by["acc_y:mean"] == pytest.approx(15.0) and by["acc_y:min"] == pytest.approx(10.0)
    assert by["acc_y:p10"] == pytest.approx(11.0) and by["acc_y:mad"] == pytest.approx(1.0)


def test_audio_and_video_features_have_known_values():
    mel = np.zeros((1, 4, 3), np.float32)
    mel[0, :, 1] = [1, 3, 1, 3]  # band 1: mean 2, std 1; band mean over time: 1/3, 1, 1/3, 1
    f, names = window_features("audio", mel)
    by = dict(zip(names, f[0]))
    assert by["mel1:mean"] == pytest.approx(2.0) and by["mel1:std"] == pytest.approx(1.0)
    assert by["mel0:mean"] == 0.0 and by["mel_mean:mad"] == pytest.approx(2 / 3)
    vid = np.zeros((2, 2, 8, 8, 3), np.uint8)
    vid[1, 1] = 200  # window 1: the second frame turns bright: motion energy 200 in every channel
    vid[0, :, :2, :2, 0] = 160  # window 0: red in the top-left grid cell only, static
    f, names = window_features("video", vid)
    by = [dict(zip(names, row)) for row in f]
    assert by[1]["video_r:mad"] == pytest.approx(200.0) and by[0]["video_r:mad"] == 0.0
    assert by[0]["cell00_r:mean"] == pytest.approx(160.0) and by[0]["cell01_r:mean"] == 0.0
    assert by[0]["video_r:mean"] == pytest.approx(10.0) and by[0]["video_g:max"] == 0.0


def test_forest_learns_a_separable_signal_on_dcat_s_test_windows(shards, tmp_path):
    from pipelines.learn.pretrain import pretrain

    split = dict(split="ood", fold=1, folds=4, seed=2)
    run = tmp_path / "imu-dcat"
    pretrain(TrainConfig(data=str(shards), modality="imu", out=str(run), d=16, heads=2, epochs=1, batch_size=32,
                         threads=1, **split))
    res = fit_features_rf(TrainConfig(data=str(shards), modality="imu", out=str(tmp_path / "rf"), **split),
                          n_estimators=50)
    ss = ShardSet(shards, ["imu"])
    ours = apply_split(ss, load_split(tmp_path / "rf" / "split.json"))
    theirs = apply_split(ss, load_split(run / "split.json"))
    for part in ("train", "val", "test"):
        assert np.array_equal(ours[part], theirs[part]), part
        assert res[part]["n_windows"] == len(theirs[part]) > 0
    assert res["test"]["subjects"] == sorted(set(ss.subject_of(theirs["test"]).tolist())) != res["train"]["subjects"]
    assert res["test"]["macro_f1"] > 0.8, res["test"]  # 3 classes: chance is about 0.33
    assert set(res["test"]["per_subject"]) == set(res["test"]["subjects"])
    saved = json.loads((tmp_path / "rf" / RESULT_FILE).read_text())
    assert saved["test"]["macro_f1"] == res["test"]["macro_f1"]
    assert saved["settings"]["n_estimators"] == 50 and saved["settings"]["n_features"] == 6 * len(STATS)
    # an existing split (the dcat run's) is reused as is
    again = fit_features_rf(TrainConfig(data=str(shards), modality="imu", out=str(tmp_path / "rf2"), seed=2),
                            n_estimators=50, split_from=run)
    assert again["test"] == res["test"]


def test_shuffled_labels_score_near_chance(shuffled, tmp_path):
    scores = [fit_features_rf(TrainConfig(data=str(shuffled), modality="imu", out=str(tmp_path / f"rf{k}"),
                                          split="ood", fold=k, folds=4, seed=0), n_estimators=50)["test"]["macro_f1"]
              for k in range(4)]
    assert np.mean(scores) < 0.5, scores  # chance 0.33; the same forest on true labels scores > 0.8


def test_same_seed_same_result_and_no_silent_overwrite(shards, tmp_path):
    kw = dict(data=str(shards), modality="audio", split="id", seed=1, block_s=6.0, val_frac=0.0)
    a = fit_features_rf(TrainConfig(out=str(tmp_path / "a"), **kw), n_estimators=20)
    b = fit_features_rf(TrainConfig(out=str(tmp_path / "b"), **kw), n_estimators=20)
    for part in ("test", "val", "train"):
        assert a[part] == b[part]
    assert a["val"] == {"macro_f1": None, "accuracy": None, "n_windows": 0, "subjects": []}
    assert a["test"]["macro_f1"] > 0.8  # the fake audio pattern (one loud mel band per class) is easy
    text = (tmp_path / "a" / RESULT_FILE).read_text()
    assert "NaN" not in text and json.loads(text)["val"]["macro_f1"] is None
    with pytest.raises(RunDirError, match="--overwrite"):
        fit_features_rf(TrainConfig(out=str(tmp_path / "a"), **kw), n_estimators=20)
    c = fit_features_rf(TrainConfig(out=str(tmp_path / "a"), overwrite=True, **{**kw, "seed": 2}), n_estimators=20)
    assert c["settings"]["seed"] == 2
