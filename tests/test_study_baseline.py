"""The grid's baseline is the target's own ``pretrain`` run: it equals ``transfer --method none`` with the
same seed (so one run serves as baseline and as source), and the seeds of a fold share its split."""

from __future__ import annotations

import json

import pytest
import torch

from _fake_shards import write_fake_shards
from pipelines.learn.config import TrainConfig, TransferConfig
from pipelines.learn.evaluate import evaluate_run
from pipelines.learn.pretrain import pretrain
from pipelines.learn.transfer import transfer

FAKE = dict(subjects=("s01", "s02", "s03", "s04"), recordings_per_subject=1, duration_s=24.0, seed=4, imu_snr=0.6)
TRAIN = dict(epochs=2, d=16, heads=2, batch_size=16, video_frames=4, patience=0, threads=1, device="cpu")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("base")
    write_fake_shards(root / "shards", streams=("video", "imu"), **FAKE)
    return root / "shards"


def _split(seed: int) -> dict:
    return dict(split="ood", fold=1, folds=2, seed=seed, split_seed=0, block_s=6.0)


def test_pretrain_equals_transfer_with_method_none(shards, tmp_path):
    """Same seed, same split: the target pretrained alone and ``transfer --method none`` give the same
    weights and the same test metrics, so the grid trains the target once per unit."""
    src = tmp_path / "src-video"
    pretrain(TrainConfig(data=str(shards), modality="video", out=str(src), **_split(0), **TRAIN))
    base = tmp_path / "base-imu"
    pretrain(TrainConfig(data=str(shards), modality="imu", out=str(base), **_split(0), **TRAIN))
    none = tmp_path / "none-imu"
    transfer(TransferConfig(data=str(shards), src="video", tgt="imu", method="none", mcma=False, lam=0.0,
                            src_ckpt=str(src / "best.pt"), out=str(none), seed=0, **TRAIN))  # the source's split
    a, b = torch.load(base / "best.pt", weights_only=False), torch.load(none / "best.pt", weights_only=False)
    assert a["epoch"] == b["epoch"]
    sa, sb = a["model"], b["model"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    ea = evaluate_run(base, split="test", device="cpu", write=False, threads=1)
    eb = evaluate_run(none, split="test", device="cpu", write=False, threads=1)
    assert (ea["macro_f1"], ea["accuracy"], ea["confusion"]) == (eb["macro_f1"], eb["accuracy"], eb["confusion"])
    # another seed trains another model on the same split (what the null row measures)
    other = tmp_path / "null-imu"
    pretrain(TrainConfig(data=str(shards), modality="imu", out=str(other), **_split(1000), **TRAIN))
    sc = torch.load(other / "best.pt", weights_only=False)["model"]
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    split = lambda d: json.loads((d / "split.json").read_text())["recordings"]
    assert split(other) == split(base) == split(src)
