"""Few labels among many paired windows (pipelines.learn.labels, --label-fraction): which labels are
hidden, the epochs built around them, the cross-entropy over labelled windows only, and MCMA's
confidence rule on unlabelled windows (cache and out of fold)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from _fake_shards import write_fake_shards
from pipelines.core.errors import TrainingError
from pipelines.learn.config import TrainConfig, TransferConfig
from pipelines.learn.crossfit import oof_correctness, read_oof
from pipelines.learn.data import BlockDataset, ShardSet
from pipelines.learn.labels import LabelledEpochs, hide_labels, label_plan, training_data
from pipelines.learn.losses import labelled_ce
from pipelines.learn.pretrain import pretrain
from pipelines.learn.source_cache import source_outputs
from pipelines.learn.splits import apply_split, load_split
from pipelines.learn.transfer import transfer

FAKE = dict(subjects=("s01", "s02", "s03"), recordings_per_subject=2, duration_s=30.0, seed=5, imu_snr=0.8,
            video_snr=2.0)
SMALL = dict(d=16, heads=2, epochs=3, batch_size=16, block_s=6.0, video_frames=4, patience=0, threads=1)

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("labels_shards") / "shards"
    write_fake_shards(d, streams=("video", "imu"), **FAKE)
    return d


def _train(shards):
    ss = ShardSet(shards, ["imu"])
    n = len(ss)
    ids = np.arange(0, n, 2)  # every other window "trains"
    return ss, ids


def test_hidden_labels_keep_a_share_of_each_class_and_follow_the_seed(shards):
    ss, ids = _train(shards)
    y0 = ss.y.copy()
    keep = hide_labels(ss, ids, 0.25, seed=0, fold=1)
    for c in np.unique(y0[ids]):
        n_c = int((y0[ids] == c).sum())
        assert int((keep & (y0[ids] == c)).sum()) == max(1, round(0.25 * n_c))
    assert np.all(ss.y[ids[~keep]] == -1) and np.all(ss.y[ids[keep]] == y0[ids[keep]])
    others = np.setdiff1d(np.arange(len(ss)), ids)
    assert np.array_equal(ss.y[others], y0[others])  # windows outside the training part keep their labels
    again = hide_labels(ShardSet(shards, ["imu"]), ids, 0.25, seed=0, fold=1)
    other = hide_labels(ShardSet(shards, ["imu"]), ids, 0.25, seed=1, fold=1)
    assert np.array_equal(keep, again) and not np.array_equal(keep, other)
    assert hide_labels(ShardSet(shards, ["imu"]), ids, 1.0, seed=0).all()
    with pytest.raises(TrainingError, match="label-fraction"):
        hide_labels(ss, ids, 0.0, seed=0)
    with pytest.raises(TrainingError, match="label-fraction"):
        TrainConfig(modality="imu", label_fraction=1.5)


def test_labelled_epochs_repeat_the_labelled_windows_and_join_unlabelled_ones(shards):
    ss, ids = _train(shards)
    plan = label_plan(ss, ids, 0.25, seed=0)
    assert plan.repeats == round(len(ids) / len(plan.labelled)) and plan.repeats >= 3
    make = lambda t: BlockDataset(ss, t, ["imu"], 8, shuffle=True, seed=0)  # noqa: E731
    assert isinstance(training_data(label_plan(ShardSet(shards, ["imu"]), ids, 1.0, 0), make, True), BlockDataset)
    ds = training_data(plan, make, with_unlabelled=True)
    assert isinstance(ds, LabelledEpochs)
    seen_lab, seen_unl, n_batches = [], [], 0
    for b in ds:
        n_batches += 1
        lab = b["y"] >= 0
        k = int(lab.sum())
        assert lab[:k].all() and not lab[k:].any()  # labelled first, then as many unlabelled (or fewer)
        assert len(b["y"]) - k <= k
        seen_lab += b["idx"][:k].tolist()
        seen_unl += (b["idx"][k:] - len(plan.labelled)).tolist()
        assert np.array_equal(b["y"][:k].numpy(), ss.y[plan.labelled[b["idx"][:k].numpy()]])
    assert n_batches == len(ds)
    counts = np.bincount(seen_lab, minlength=len(plan.labelled))
    assert np.all(counts == plan.repeats)  # every labelled window once per pass
    assert min(seen_unl) >= 0 and max(seen_unl) < len(plan.unlabelled)
    # the unlabelled windows are cycled in shuffled passes (a pass's last, shorter batch may be cut to the labelled one)
    assert len(set(seen_unl)) >= min(len(plan.unlabelled), len(seen_unl)) - 8
    plain = training_data(plan, make, with_unlabelled=False)
    assert all(bool((b["y"] >= 0).all()) for b in plain)


def test_cross_entropy_counts_labelled_windows_only():
    torch.manual_seed(0)
    logits = torch.randn(6, 3, requires_grad=True)
    y = torch.tensor([0, -1, 2, -1, 1, -1])
    lab = y >= 0
    assert torch.allclose(labelled_ce(logits, y), F.cross_entropy(logits[lab], y[lab]))
    none = labelled_ce(logits, torch.full((6,), -1))
    none.backward()
    assert float(none.detach()) == 0.0 and torch.all(logits.grad == 0)


def test_unlabelled_windows_are_kept_by_the_source_confidence():
    class Fixed(torch.nn.Module):
        def forward(self, x):
            return {"logits": x, "k": x[:, None, :], "v": x[:, None, :]}

    x = torch.log(torch.tensor([[0.9, 0.05, 0.05], [0.4, 0.3, 0.3], [0.2, 0.7, 0.1], [0.2, 0.7, 0.1]]))
    y = torch.tensor([-1, -1, 0, 1])
    r = source_outputs(Fixed(), x, y, need=(), confidence=0.5)
    assert r["correct"].tolist() == [True, False, False, True]  # 0.9 >= 0.5; 0.4 < 0.5; labelled: argmax == y


def test_label_fraction_trains_the_term_on_unlabelled_windows_with_out_of_fold_confidence(shards, tmp_path):
    runs = tmp_path / "runs"
    common = dict(data=str(shards), runs=str(runs), label_fraction=0.25, **SMALL)
    src = pretrain(TrainConfig(modality="video", **common))
    assert src["labels"]["labelled"] < src["labels"]["unlabelled"] and src["labels"]["labelled_passes_per_epoch"] >= 3
    info = transfer(TransferConfig(src="video", tgt="imu", lam=1.0, oof_folds=2, **common))
    base = transfer(TransferConfig(src="video", tgt="imu", method="none", **common))
    assert info["labels"] == src["labels"] and info["unlabelled_in_term"] and not base["unlabelled_in_term"]
    rows = [json.loads(x) for x in (runs / "video-to-imu-id" / "metrics.jsonl").read_text().splitlines()]
    n_lab, n_unl, rep = info["labels"]["labelled"], info["labels"]["unlabelled"], src["labels"]["labelled_passes_per_epoch"]
    # each labelled batch is joined by (up to) as many unlabelled windows, cycled
    assert rep * n_lab + min(n_unl, rep * n_lab) - 16 * rep <= rows[0]["train_windows"] <= 2 * rep * n_lab
    brow = json.loads((runs / "video-to-imu-none-id" / "metrics.jsonl").read_text().splitlines()[0])
    assert brow["train_windows"] == rep * n_lab  # the baseline never reads the unlabelled windows
    z = read_oof(runs / "video-id" / "oof-correct.npz")
    hidden = z["label"] < 0
    assert hidden.sum() == n_unl and np.all(~z["correct"][hidden]) and np.all((z["conf"] > 0) & (z["conf"] <= 1))
    ss = ShardSet(shards, ["video"])
    ids = apply_split(ss, load_split(runs / "video-id" / "split.json"))["train"]
    label_plan(ss, ids, 0.25, 0, None)
    for tau in (0.4, 0.8):
        correct, known = oof_correctness(z, ss, ids, confidence=tau)
        unl = ss.y[ids] < 0
        assert known.all()
        order = {k: i for i, k in enumerate(z["key"].tolist())}
        from pipelines.learn.crossfit import window_keys
        pos = np.array([order[k] for k in window_keys(ss, ids)])
        assert np.array_equal(correct[unl], z["conf"][pos][unl] >= tau)
        assert np.array_equal(correct[~unl], z["pred"][pos][~unl] == ss.y[ids][~unl])


def test_unlabelled_shards_in_the_directory_train_the_term_only(tmp_path):
    """Recordings preprocessed with --labels ignore (label "") beside labelled ones: no class "",
    never validated or tested on, unlabelled windows of the transfer term."""
    import h5py

    from pipelines.shards.manifest import write_manifest

    d = tmp_path / "shards"
    write_fake_shards(d, streams=("video", "imu"), **FAKE)
    unl = sorted(d.glob("s03_*.h5"))
    for p in unl:
        with h5py.File(p, "r+") as f:
            lab = f["windows"]["label"]
            lab[...] = [b""] * len(lab)
    write_manifest(d)
    m = json.loads((d / "manifest.json").read_text())
    assert "" not in m["classes"] and len(m["classes"]) == 3
    ss = ShardSet(d, ["imu"])
    rec_unl = [i for i, r in enumerate(ss.recordings) if r.recording_id.startswith("s03")]
    assert all((ss.y[ss.ids_of_recording(i)] == -1).all() for i in rec_unl)
    runs = tmp_path / "runs"
    common = dict(data=str(d), runs=str(runs), **SMALL)
    pretrain(TrainConfig(modality="video", **common))
    info = transfer(TransferConfig(src="video", tgt="imu", mcma=False, **common))
    ids = apply_split(ss, load_split(runs / "video-to-imu-id" / "split.json"))
    for part in ("val", "test"):
        assert len(ids[part]) and (ss.y[ids[part]] >= 0).all()
    n_unl_train = int((ss.y[ids["train"]] < 0).sum())
    assert n_unl_train > 0 and info["labels"]["unlabelled"] == n_unl_train and info["unlabelled_in_term"]
