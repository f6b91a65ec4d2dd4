"""MCMA that can mask: out-of-fold source correctness (pipelines.learn.crossfit), its cache in the
source run folder, keep_rate in the transfer's record, float32 scores under autocast, NaN-safe masking.

Small fake shards (tests/_fake_shards.py) with a weak video stream: the video source is right on
more of its own training windows than its out-of-fold copies are, and the latter make errors, so
MCMA on and off must train differently.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from _fake_shards import write_fake_shards
from pipelines.core.errors import TrainingError
from pipelines.learn import crossfit
from pipelines.learn.checkpoint import load_checkpoint, model_from_checkpoint
from pipelines.learn.config import TrainConfig, TransferConfig
from pipelines.learn.crossfit import (OOF_FILE, assign_folds, ensure_oof, fold_groups, guarded_training,
                                      oof_correctness, read_oof)
from pipelines.learn.data import BlockDataset, ShardSet, make_loader
from pipelines.learn.engine import run_inference
from pipelines.learn.losses import kv_scores, transfer_objective
from pipelines.learn.models import ModelConfig, build_model
from pipelines.learn.pretrain import pretrain
from pipelines.learn.splits import apply_split, load_split
from pipelines.learn.transfer import check_settings, transfer
from pipelines.learn.transfer_step import transfer_step

FAKE = dict(subjects=("s01", "s02", "s03", "s04"), recordings_per_subject=2, duration_s=24.0, seed=3,
            imu_snr=0.6, video_snr=0.5)
SMALL = dict(d=16, heads=2, epochs=6, batch_size=16, block_s=6.0, video_frames=4, patience=0, threads=1)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("mcma_shards") / "shards"
    write_fake_shards(d, streams=("video", "imu"), **FAKE)
    return d


@pytest.fixture(scope="module")
def source(shards, tmp_path_factory):
    """A pretrained video source (no OOF file yet)."""
    r = tmp_path_factory.mktemp("mcma_runs")
    info = pretrain(TrainConfig(data=str(shards), modality="video", runs=str(r), **SMALL))
    return r, info


def _fresh_source(source, tmp_path, name="src"):
    """A copy of the source run folder without its OOF file, to count what is computed."""
    d = tmp_path / name
    shutil.copytree(source[1]["run_dir"], d, ignore=shutil.ignore_patterns(OOF_FILE, ".oof*"))
    return d


def _train_ids(shards, run_dir):
    ss = ShardSet(shards, ["video"])
    return ss, apply_split(ss, load_split(run_dir / "split.json"))


def _insample_correct(run_dir, ss, ids):
    """The full source's own judgement of windows ``ids`` (what MCMA used before)."""
    ck = load_checkpoint(run_dir / "best.pt")
    model = model_from_checkpoint(ck)
    ds = BlockDataset(ss, ids, ["video"], 64, frames={"video": ck["data"].get("frames")})
    r = run_inference(model, make_loader(ds, 0), torch.device("cpu"), "video")
    ds.close()
    pred = np.full(len(ids), -1)
    pred[r["idx"]] = r["logits"].argmax(1)
    return pred == ss.y[ids]


def _weights(run_dir):
    return load_checkpoint(run_dir / "last.pt")["model"]


def _rows(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------------------------------------
# folds

def test_folds_hold_every_training_window_out_once_and_keep_time_blocks_whole(shards, source):
    ss, ids = _train_ids(shards, source[0] / "video-id")
    train = ids["train"]
    groups = fold_groups(ss, train, 6.0)
    fold = assign_folds(groups, 5, 0)
    assert set(fold.tolist()) == set(range(5))
    for g in np.unique(groups):  # a time block of a recording never straddles two folds
        assert len(set(fold[groups == g].tolist())) == 1
    # groups really are (recording, 6 s block of the window centre)
    first = {r: ss.recordings[r].start_s[0] for r in set(ss.rec[train].tolist())}
    key = [(int(ss.rec[g]), int(((ss.start_s[g] + ss.end_s[g]) / 2 - first[int(ss.rec[g])]) // 6.0)) for g in train]
    for a in range(len(train)):
        for b in range(len(train)):
            assert (groups[a] == groups[b]) == (key[a] == key[b])
    sizes = np.bincount(fold, minlength=5)
    assert sizes.max() - sizes.min() <= np.bincount(groups).max()
    with pytest.raises(TrainingError, match="time blocks"):
        assign_folds(groups, int(groups.max()) + 2, 0)


def test_fold_training_windows_keep_the_guard_from_held_out_windows(shards, source):
    ss, ids = _train_ids(shards, source[0] / "video-id")
    train = ids["train"]
    fold = assign_folds(fold_groups(ss, train, 6.0), 5, 0)
    for guard in (0.0, 0.25, 1.5):
        dropped = 0
        for k in range(5):
            held = fold == k
            use = guarded_training(ss, train, held, guard)
            assert not (use & held).any()
            for i in np.flatnonzero(~held):  # brute force: the rule, window by window
                near = any(ss.rec[train[i]] == ss.rec[train[j]]
                           and ss.start_s[train[i]] < ss.end_s[train[j]] + guard - 1e-6
                           and ss.start_s[train[j]] - guard < ss.end_s[train[i]] - 1e-6
                           for j in np.flatnonzero(held))
                assert use[i] == (not near)
                dropped += near
        assert dropped > 0  # 2 s windows every 1 s: neighbours of a held-out block always overlap it


# ---------------------------------------------------------------------------------------------
# the mask in a transfer

def test_oof_mask_keeps_fewer_windows_and_mcma_on_off_train_differently(shards, source, tmp_path):
    r, info = source
    src_dir = r / "video-id"
    kw = dict(threads=1, data=str(shards), src="video", tgt="imu", runs=str(r), epochs=3, batch_size=16)
    on = transfer(TransferConfig(out=str(tmp_path / "oof"), **kw))
    ins = transfer(TransferConfig(out=str(tmp_path / "ins"), mcma_correctness="insample", **kw))
    off = transfer(TransferConfig(out=str(tmp_path / "off"), mcma=False, **kw))
    ss, ids = _train_ids(shards, src_dir)
    z = read_oof(src_dir / OOF_FILE)
    # the OOF file holds one verdict per source training window, each judged by the fold that held it out
    assert sorted(z["key"].tolist()) == sorted(crossfit.window_keys(ss, ids["train"]).tolist())
    oof_share = float(z["correct"].mean())
    ins_share = float(_insample_correct(src_dir, ss, ids["train"]).mean())
    assert oof_share < ins_share and oof_share < 0.95
    # the cached mask is fixed, so the keep rate over the run is exactly the share kept
    assert on["keep_rate"] == pytest.approx(oof_share, abs=1e-6)
    assert ins["keep_rate"] == pytest.approx(ins_share, abs=1e-6)
    assert off["keep_rate"] == 1.0
    assert (on["mcma_correctness"], ins["mcma_correctness"], off["mcma_correctness"]) == ("oof", "insample", None)
    assert on["src_oof_acc"] == pytest.approx(z["accuracy"]) and ins["src_oof_acc"] is None
    assert on["oof_coverage"] == {"video": 1.0}
    wa, wb = _weights(tmp_path / "oof"), _weights(tmp_path / "off")
    assert any(not torch.equal(wa[k], wb[k]) for k in wa)
    assert [m["train_ca"] for m in _rows(tmp_path / "oof")] != [m["train_ca"] for m in _rows(tmp_path / "off")]
    src_rec = json.loads((tmp_path / "oof" / "config.json").read_text())["sources"][0]
    assert src_rec["oof_file"] == str(src_dir / OOF_FILE) and src_rec["oof_sha256"] == z["hash"]


def _count_fold_fits(monkeypatch) -> list:
    """A list that grows by one each time a fold copy of the source is trained."""
    calls = []
    real = crossfit._fit_and_predict

    def counted(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(crossfit, "_fit_and_predict", counted)
    return calls


def test_oof_is_computed_once_reused_and_recomputed_when_settings_change(shards, source, tmp_path, monkeypatch):
    calls = _count_fold_fits(monkeypatch)
    src = _fresh_source(source, tmp_path)
    kw = dict(threads=1, data=str(shards), src="video", tgt="imu", src_ckpt=str(src), epochs=2, batch_size=16,
              oof_folds=3)
    a = transfer(TransferConfig(out=str(tmp_path / "a"), **kw))
    assert len(calls) == 3
    stamp = (src / OOF_FILE).stat().st_mtime_ns
    b = transfer(TransferConfig(out=str(tmp_path / "b"), **kw))
    assert len(calls) == 3 and (src / OOF_FILE).stat().st_mtime_ns == stamp  # read, not retrained
    assert a["keep_rate"] == b["keep_rate"]
    # the same transfer gives the same weights whether it computed the OOF file or read it
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    h3 = read_oof(src / OOF_FILE)["hash"]
    ensure_oof(src, shards, threads=1, device="cpu", folds=4)  # other settings: recomputed
    assert len(calls) == 7 and read_oof(src / OOF_FILE)["hash"] != h3
    assert read_oof(src / OOF_FILE)["settings"]["folds"] == 4
    assert not [p.name for p in src.iterdir() if p.name.endswith(".tmp.npz")]  # written atomically


def test_insample_correctness_computes_no_oof(shards, source, tmp_path):
    src = _fresh_source(source, tmp_path)
    info = transfer(TransferConfig(threads=1, data=str(shards), src="video", tgt="imu", src_ckpt=str(src),
                                   out=str(tmp_path / "t"), epochs=1, batch_size=16, mcma_correctness="insample"))
    assert not (src / OOF_FILE).exists() and info["mcma_correctness"] == "insample"
    none = transfer(TransferConfig(threads=1, data=str(shards), src="video", tgt="imu", src_ckpt=str(src),
                                   out=str(tmp_path / "n"), epochs=1, batch_size=16, method="none"))
    assert not (src / OOF_FILE).exists() and none["keep_rate"] is None and none["mcma_correctness"] is None


def test_pretrain_oof_folds_writes_the_file_and_bad_settings_are_refused(shards, tmp_path):
    info = pretrain(TrainConfig(data=str(shards), modality="video", out=str(tmp_path / "v"), oof_folds=2,
                                **{**SMALL, "epochs": 2}))
    z = read_oof(tmp_path / "v" / OOF_FILE)
    assert info["oof_file"] == str(tmp_path / "v" / OOF_FILE) and z["settings"]["folds"] == 2
    assert info["oof_accuracy"] == pytest.approx(float(z["correct"].mean()))
    assert set(z["fold"].tolist()) == {0, 1}
    with pytest.raises(TrainingError, match="--mcma-correctness"):
        check_settings(TransferConfig(src="video", tgt="imu", mcma_correctness="best"))
    with pytest.raises(TrainingError, match="--oof-folds 1"):
        check_settings(TransferConfig(src="video", tgt="imu", oof_folds=1))
    check_settings(TransferConfig(src="video", tgt="imu", oof_folds=1, mcma=False))  # unused: fine


def test_oof_correctness_is_unknown_where_the_source_never_trained(shards, source):
    src_dir = source[0] / "video-id"
    path = ensure_oof(src_dir, shards, threads=1, device="cpu", folds=5)
    ss, ids = _train_ids(shards, src_dir)
    both = np.concatenate([ids["train"], ids["val"]])
    correct, known = oof_correctness(path, ss, both)
    assert known.tolist() == [True] * len(ids["train"]) + [False] * len(ids["val"])
    z = read_oof(path)
    pos = {k: i for i, k in enumerate(z["key"].tolist())}
    keys = crossfit.window_keys(ss, ids["train"]).tolist()
    assert correct[:len(keys)].tolist() == [bool(z["pred"][pos[k]] == ss.y[g]) for k, g in zip(keys, ids["train"])]
    # shifted by one stride (the misalignment study): the OOF prediction of the window 1 s later, own label
    c1, k1 = oof_correctness(path, ss, ids["train"], offset_s=1.0)
    for i, g in enumerate(ids["train"]):
        k = f"{ss.recordings[ss.rec[g]].recording_id}@{int(round((ss.start_s[g] + 1.0) * 1000))}"
        assert k1[i] == (k in pos)
        if k1[i]:
            assert c1[i] == bool(z["pred"][pos[k]] == ss.y[g])
    assert 0 < k1.sum() < len(k1)


# ---------------------------------------------------------------------------------------------
# autocast and NaN

def test_scores_are_float32_under_bf16_autocast():
    g = torch.Generator().manual_seed(0)
    k, v = torch.randn(3, 7, 8, generator=g), torch.randn(3, 7, 8, generator=g)
    want = torch.einsum("bld,ble->bde", k.double(), v.double())
    want = want / want.flatten(1).norm(dim=1)[:, None, None]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = kv_scores(k.to(torch.bfloat16), v.to(torch.bfloat16), "fro")
        got32 = kv_scores(k, v, "fro")
    assert got.dtype == torch.float32 and got32.dtype == torch.float32
    # float32 arithmetic: far closer than bfloat16's ~3 significant digits
    assert torch.allclose(got32.double(), want, atol=1e-6)


def test_nan_in_a_masked_out_window_leaves_the_loss_and_gradient_finite():
    logits = torch.randn(4, 3, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0])
    dist = torch.tensor([0.5, float("nan"), 0.3, float("inf")], requires_grad=True)
    ok = torch.tensor([True, False, True, False])
    loss, terms = transfer_objective(logits, y, {"video": dist}, {"video": ok}, lam=1.0, mcma=True)
    assert torch.isfinite(loss)
    assert float(terms["ca"]) == pytest.approx((0.5 + 0.3) / 4)
    # a whole step: the source's cached scores of a window it gets wrong are NaN
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="imu", in_shape=[20, 6], n_classes=3, d=8, heads=2, depth=1, dropout=0.0))
    with torch.no_grad():
        out = model(torch.zeros(1, 20, 6))
    scores = kv_scores(out["k"], out["v"]).repeat(4, 1, 1)
    scores[1] = float("nan")
    caches = {"video": {"scores": scores, "correct": ok}}
    step = transfer_step("imu", ["video"], method="dcat", mcma=True, caches=caches)
    batch = {"imu": torch.randn(4, 20, 6), "y": y, "idx": torch.arange(4)}
    loss, terms, _ = step(model, batch)
    loss.backward()
    assert torch.isfinite(loss) and float(terms["keep_rate"]) == 0.5
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    # an out-of-fold verdict overrides the cached one: window 1 now counts, and its NaN shows
    oof = {"video": {"correct": torch.tensor([True, True, True, False]), "known": torch.ones(4, dtype=torch.bool)}}
    loss2, terms2, _ = transfer_step("imu", ["video"], method="dcat", mcma=True, caches=caches, oof=oof)(model, batch)
    assert float(terms2["keep_rate"]) == 0.75 and not torch.isfinite(loss2)


def test_computing_oof_leaves_the_callers_rng_as_it_was(shards, source, tmp_path):
    """The fold models seed torch; the caller (a transfer about to train) must not notice."""
    src = _fresh_source(source, tmp_path)
    torch.manual_seed(123)
    want = torch.rand(3)
    torch.manual_seed(123)
    ensure_oof(src, shards, threads=1, device="cpu", folds=2)
    assert (src / OOF_FILE).is_file() and torch.equal(torch.rand(3), want)


def test_two_transfers_starting_together_compute_the_oof_file_once(shards, source, tmp_path, monkeypatch):
    import threading

    calls = _count_fold_fits(monkeypatch)
    src = _fresh_source(source, tmp_path)
    paths, errors = [], []

    def run():
        try:
            paths.append(ensure_oof(src, shards, threads=1, device="cpu", folds=2))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(paths) == 2 and paths[0] == paths[1]
    assert len(calls) == 2  # K = 2 copies trained once: the second caller waited on the lock, then read the file
    assert read_oof(paths[0])["settings"]["folds"] == 2
