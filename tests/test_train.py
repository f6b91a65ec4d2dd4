"""Pretraining, D-CAT transfer, evaluation, prediction and checkpoints on small fake shards."""

from __future__ import annotations

import hashlib
import json

import h5py
import numpy as np
import pytest
import torch

from _fake_shards import write_fake_shards
from pipelines.learn.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from pipelines.learn.evaluate import evaluate_run
from pipelines.learn.predict import predict
from pipelines.learn.splits import SplitError
from pipelines.core.errors import RunDirError, TrainingError
from pipelines.learn.config import TrainConfig, TransferConfig
from pipelines.learn.engine import Hooks
from pipelines.learn.pretrain import pretrain
from pipelines.learn.sources import state_hash
from pipelines.learn.transfer import transfer

FAKE = dict(subjects=("s01", "s02", "s03", "s04"), recordings_per_subject=2, duration_s=24.0, seed=3,
            imu_snr=0.6, video_snr=1.0)
SMALL = dict(d=16, heads=2, epochs=6, batch_size=16, block_s=6.0, video_frames=4, patience=0, threads=1)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _sha(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("train_shards") / "shards"
    write_fake_shards(d, streams=("video", "imu", "audio"), **FAKE)
    return d


@pytest.fixture(scope="module")
def runs(shards, tmp_path_factory):
    """Pretrained video (source) and imu runs shared by the tests below."""
    r = tmp_path_factory.mktemp("runs")
    video = pretrain(TrainConfig(data=str(shards), modality="video", runs=str(r), **SMALL))
    imu = pretrain(TrainConfig(data=str(shards), modality="imu", runs=str(r), **SMALL))
    return r, video, imu


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_pretrain_learns_and_writes_the_run_folder(runs):
    r, video, imu = runs
    run = r / "video-id"
    assert video["run_dir"] == str(run)
    for name in ("config.json", "split.json", "metrics.jsonl", "best.pt", "last.pt"):
        assert (run / name).is_file(), name
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["stage"] == "pretrain" and cfg["tool_version"] == "0.1.0"
    assert cfg["args"]["modality"] == "video" and cfg["args"]["d"] == 16
    rows = _metrics(run)
    assert [m["epoch"] for m in rows] == list(range(6))
    assert {"train_loss", "train_acc", "val_macro_f1", "val_loss", "lr"} <= set(rows[0])
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    rep = evaluate_run(run, threads=1)
    assert rep["macro_f1"] > 0.8, rep  # the fake video pattern is easy: chance is 0.33
    assert (run / "report.json").is_file() and (run / "confusion-test.png").is_file()
    assert json.loads((run / "report.json").read_text())["test"]["macro_f1"] == pytest.approx(rep["macro_f1"])
    assert sum(map(sum, rep["confusion"])) == rep["n_windows"] == video["n_windows"]["test"]


def test_existing_run_folder_is_not_overwritten_silently(runs, shards):
    r, _, _ = runs
    with pytest.raises(RunDirError, match="--resume.*--overwrite"):
        pretrain(TrainConfig(data=str(shards), modality="video", runs=str(r), **SMALL))


class _StopAfter(Hooks):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, epoch, metrics):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def test_resume_gives_the_same_result_as_an_uninterrupted_run(shards, tmp_path):
    kw = dict(data=str(shards), modality="imu", **{**SMALL, "epochs": 4}, dropout=0.3)
    full = pretrain(TrainConfig(out=str(tmp_path / "full"), **kw))
    with pytest.raises(KeyboardInterrupt):
        pretrain(TrainConfig(out=str(tmp_path / "cut"), **kw), _StopAfter(1))
    assert len(_metrics(tmp_path / "cut")) == 2
    resumed = pretrain(TrainConfig(out=str(tmp_path / "cut"), resume=True, **kw))
    assert resumed["best_epoch"] == full["best_epoch"]
    for name in ("best.pt", "last.pt"):
        a = load_checkpoint(tmp_path / "full" / name)["model"]
        b = load_checkpoint(tmp_path / "cut" / name)["model"]
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (name, k)
    drop = ("train_seconds", "train_windows_per_s", "epoch_seconds")
    ma = [{k: v for k, v in m.items() if k not in drop} for m in _metrics(tmp_path / "full")]
    mb = [{k: v for k, v in m.items() if k not in drop} for m in _metrics(tmp_path / "cut")]
    assert ma == mb


def test_non_finite_loss_stops_with_the_step(tmp_path):
    d = tmp_path / "nan"
    write_fake_shards(d, subjects=("s01", "s02"), recordings_per_subject=2, duration_s=24.0, streams=("imu",))
    for p in d.glob("*.h5"):
        with h5py.File(p, "a") as f:
            x = f["streams/imu/data"]
            # finite (NaN data is refused on open: pipelines.shards.check), but overflows in the model
            x[...] = np.full(x.shape, 3e38, np.float32)
    with pytest.raises(TrainingError, match=r"step 0 \(epoch 0\): the loss is nan \(ce=nan\)"):
        pretrain(TrainConfig(data=str(d), modality="imu", out=str(tmp_path / "run"), standardize="none", **SMALL))


def test_checkpoint_round_trip(runs, shards):
    r, _, _ = runs
    path = r / "imu-id" / "best.pt"
    raw = torch.load(path, map_location="cpu", weights_only=True)  # plain data only
    assert raw["format"] == "dcat-checkpoint" and raw["classes"] == ["drink", "eat", "walk"]
    assert raw["stream"] == "imu" and raw["data"]["rate_hz"] == 10.0 and raw["data"]["shape"] == [20, 6]
    assert raw["data"]["window_s"] == 2.0 and raw["model_config"]["d"] == 16
    model = model_from_checkpoint(raw).eval()
    with h5py.File(shards / "s01_r00.h5", "r") as f:
        g = f["streams/imu"]
        x = torch.from_numpy(np.stack([g["data"][a:a + 20] for a in g["window_start"][:5]]))
    with torch.no_grad():
        logits = model(x)["logits"]
    rows = predict(r / "imu-id", shards / "s01_r00.h5", threads=1)["rows"][:5]
    probs = torch.softmax(logits, 1)
    assert [row["pred"] for row in rows] == [raw["classes"][i] for i in probs.argmax(1).tolist()]
    assert np.allclose([row["prob"] for row in rows], probs.max(1).values.numpy(), atol=1e-5)
    last = torch.load(r / "imu-id" / "last.pt", map_location="cpu", weights_only=True)
    assert {"optimizer", "scheduler", "rng", "fit_state"} <= set(last)


def test_checkpoint_that_does_not_fit_the_shards_is_refused(runs, tmp_path):
    r, _, _ = runs
    d = tmp_path / "imu20"
    write_fake_shards(d, streams=("imu",), imu_hz=20.0, **FAKE)
    with pytest.raises(CheckpointError, match=r"rate 20.0 Hz \(model: 10.0 Hz\).*per-window shape.*dcat preprocess"):
        evaluate_run(r / "imu-id", d)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(bad)


def test_transfer_keeps_the_source_frozen_and_logs_both_terms(runs, shards, tmp_path, monkeypatch):
    r, _, _ = runs
    src_file = r / "video-id" / "best.pt"
    before = _sha(src_file)
    src_state = load_checkpoint(src_file)["model"]
    seen = {"calls": 0}
    import pipelines.learn.sources as sources_mod

    orig = sources_mod.model_from_checkpoint

    def spy(ck):
        m = orig(ck)

        def check(module, inp, out):
            seen["calls"] += 1
            assert not module.training and not torch.is_grad_enabled()

        m.register_forward_hook(check)
        seen["model"] = m
        return m

    monkeypatch.setattr(sources_mod, "model_from_checkpoint", spy)
    info = transfer(TransferConfig(threads=1, data=str(shards), src="video", tgt="imu", runs=str(r), out=str(tmp_path / "t"),
                                   cache="off", epochs=2, batch_size=16))
    assert seen["calls"] > 0  # the source ran every step (no cache), always in eval mode without grad
    assert info["source_unchanged"] and not info["cache"]
    assert _sha(src_file) == before
    after = seen["model"].state_dict()
    for k, v in src_state.items():
        assert torch.equal(v, after[k]), k
    assert all(p.grad is None for p in seen["model"].parameters())
    rows = _metrics(tmp_path / "t")
    for m in rows:
        assert m["train_loss"] == pytest.approx(m["train_ce"] + 1.0 * m["train_ca"], rel=1e-5)
        assert 0.0 <= m["train_keep_rate"] <= 1.0 and m["train_ca"] > 0
    cfg = json.loads((tmp_path / "t" / "config.json").read_text())
    assert cfg["stage"] == "transfer" and cfg["source"]["state_sha256"] == state_hash(seen["model"])


def test_cached_source_gives_the_same_training_as_running_it(runs, shards, tmp_path):
    r, _, _ = runs
    kw = dict(threads=1, data=str(shards), src="video", tgt="imu", runs=str(r), epochs=3, batch_size=16)
    a = transfer(TransferConfig(out=str(tmp_path / "cached"), cache="on", **kw))
    b = transfer(TransferConfig(out=str(tmp_path / "live"), cache="off", **kw))
    assert a["cache"] and not b["cache"]
    for ma, mb in zip(_metrics(tmp_path / "cached"), _metrics(tmp_path / "live")):
        for k in ("train_loss", "train_ce", "train_ca", "train_keep_rate", "val_macro_f1"):
            assert ma[k] == pytest.approx(mb[k], rel=1e-4, abs=1e-6), k
    wa = load_checkpoint(tmp_path / "cached" / "last.pt")["model"]
    wb = load_checkpoint(tmp_path / "live" / "last.pt")["model"]
    for k in wa:
        assert torch.allclose(wa[k].float(), wb[k].float(), atol=1e-4), k


def test_no_mcma_keeps_every_window_and_lambda_zero_is_plain_ce(runs, shards, tmp_path):
    r, _, _ = runs
    kw = dict(threads=1, data=str(shards), src="video", tgt="imu", runs=str(r), epochs=1, batch_size=16)
    transfer(TransferConfig(out=str(tmp_path / "nomcma"), mcma=False, **kw))
    assert _metrics(tmp_path / "nomcma")[0]["train_keep_rate"] == 1.0
    transfer(TransferConfig(out=str(tmp_path / "lam0"), lam=0.0, **kw))
    m = _metrics(tmp_path / "lam0")[0]
    assert m["train_loss"] == pytest.approx(m["train_ce"], rel=1e-6)


def test_transfer_refuses_a_split_that_leaks_into_the_source_training_set(runs, shards, tmp_path):
    r, _, _ = runs
    with pytest.raises(SplitError, match="overlaps source training time"):
        transfer(TransferConfig(threads=1, data=str(shards), src="video", tgt="imu", runs=str(r), out=str(tmp_path / "leak"),
                                src_ckpt=str(r / "video-id"), split="id", split_seed=1, block_s=6.0, epochs=1))
    with pytest.raises(SplitError, match="test subject"):
        transfer(TransferConfig(threads=1, data=str(shards), src="video", tgt="imu", runs=str(r), out=str(tmp_path / "leak2"),
                                src_ckpt=str(r / "video-id"), split="ood", test_subjects=["s02"], epochs=1))


def test_transfer_without_a_pretrained_source_names_the_command(runs, shards, tmp_path):
    r, _, _ = runs
    with pytest.raises(CheckpointError, match="dcat pretrain --modality audio"):
        transfer(TransferConfig(threads=1, data=str(shards), src="audio", tgt="imu", runs=str(r), epochs=1))
    with pytest.raises(TrainingError, match="d=16"):
        transfer(TransferConfig(threads=1, data=str(shards), src="video", tgt="imu", runs=str(r), d=32, epochs=1,
                                out=str(tmp_path / "d32")))


def test_evaluation_needs_only_the_target_stream(runs, shards, tmp_path):
    r, _, _ = runs
    info = transfer(TransferConfig(threads=1, data=str(shards), src="video", tgt="imu", runs=str(r), out=str(tmp_path / "t"),
                                   epochs=3, batch_size=16))
    imu_only = tmp_path / "imu_only"
    write_fake_shards(imu_only, streams=("imu",), **FAKE)  # same recordings, no video, no audio
    with h5py.File(next(imu_only.glob("*.h5")), "r") as f:
        assert list(f["streams"]) == ["imu"]
    full = evaluate_run(info["run_dir"], shards, write=False, threads=1)
    alone = evaluate_run(info["run_dir"], imu_only, threads=1)
    assert alone["n_windows"] == full["n_windows"] > 0
    assert alone["macro_f1"] == pytest.approx(full["macro_f1"])
    assert alone["confusion"] == full["confusion"]


def test_transfer_resume_matches_uninterrupted(runs, shards, tmp_path):
    r, _, _ = runs
    kw = dict(threads=1, data=str(shards), src="video", tgt="imu", runs=str(r), epochs=3, batch_size=16, dropout=0.3)
    transfer(TransferConfig(out=str(tmp_path / "full"), **kw))
    with pytest.raises(KeyboardInterrupt):
        transfer(TransferConfig(out=str(tmp_path / "cut"), **kw), _StopAfter(0))
    transfer(TransferConfig(out=str(tmp_path / "cut"), resume=True, **kw))
    a = load_checkpoint(tmp_path / "full" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "cut" / "last.pt")["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_tgt_init_starts_the_target_from_a_checkpoint(runs, shards, tmp_path):
    r, _, _ = runs
    init = load_checkpoint(r / "imu-id" / "best.pt")
    info = transfer(TransferConfig(threads=1, data=str(shards), src="video", tgt="imu", runs=str(r),
                                   out=str(tmp_path / "t"), tgt_init=str(r / "imu-id" / "best.pt"), lr=0.0,
                                   weight_decay=0.0, epochs=1, batch_size=16))
    got = load_checkpoint(tmp_path / "t" / "best.pt")
    model = model_from_checkpoint(got)
    for name, _ in model.named_parameters():  # lr 0: the parameters are exactly the initial ones
        assert torch.equal(got["model"][name], init["model"][name]), name
    assert json.loads((tmp_path / "t" / "config.json").read_text())["tgt_init"].endswith("best.pt")
    assert info["best_epoch"] == 0


def test_augmentation_runs_the_source_every_step(runs, shards, tmp_path):
    r, _, _ = runs
    kw = dict(threads=1, data=str(shards), src="video", tgt="imu", runs=str(r), epochs=1, batch_size=16, augment=True)
    info = transfer(TransferConfig(out=str(tmp_path / "aug"), **kw))
    assert info["cache"] is False and info["source_unchanged"]
    with pytest.raises(TrainingError, match="--cache on with --augment"):
        transfer(TransferConfig(out=str(tmp_path / "aug2"), cache="on", **kw))
    p = pretrain(TrainConfig(data=str(shards), modality="video", out=str(tmp_path / "v"), augment=True,
                             **{**SMALL, "epochs": 1}))
    assert p["epochs_run"] == 1


def test_training_imports_no_media_libraries():
    """Training runs on a GPU machine without decord / PyAV / librosa (DESIGN.md, Scale)."""
    import subprocess
    import sys

    code = ("import sys, pipelines.learn.pretrain, pipelines.learn.transfer, pipelines.learn.evaluate, pipelines.learn.predict, pipelines.learn.data, "
            "pipelines.learn.splits, pipelines.learn.checkpoint, dcat_cli.train_cmds\n"
            "print(sorted(m for m in ('decord', 'av', 'librosa', 'soundfile', 'soxr', 'scipy') if m in sys.modules))")
    from pathlib import Path

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]", out.stdout
