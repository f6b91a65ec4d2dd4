"""Baselines beside D-CAT (logit-KD, feature-KD, no transfer) and several sources at once.

Unit tests of the loss properties (pipelines.learn.losses, pipelines.learn.transfer_step), then short
end-to-end transfers on small fake shards that hold video, imu and audio streams.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from _fake_shards import write_fake_shards
from _reference_losses import dcat_loss, feature_kd_loss, logit_kd_loss
from pipelines.learn.checkpoint import load_checkpoint, model_from_checkpoint
from pipelines.learn.evaluate import evaluate_run
from pipelines.learn.losses import alignment_distance, feature_distance, kv_scores, logit_kd_distance, transfer_objective
from pipelines.learn.models import ModelConfig, build_model
from pipelines.core.errors import TrainingError
from pipelines.learn.config import TrainConfig, TransferConfig
from pipelines.learn.engine import Hooks, ce_step
from pipelines.learn.pretrain import pretrain
from pipelines.learn.source_cache import PooledTap
from pipelines.learn.transfer import check_settings, transfer
from pipelines.learn.transfer_step import transfer_step

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _kl(p_logits, q_logits, t):
    """KL(softmax(p / t) || softmax(q / t)) per row, written out."""
    p = torch.softmax(p_logits / t, 1)
    return (p * (torch.log(p) - torch.log_softmax(q_logits / t, 1))).sum(1)


# ---------------------------------------------------------------------------------------------
# logit KD

def test_logit_kd_is_zero_for_equal_logits_and_positive_otherwise():
    s = _randn(6, 4, seed=1)
    assert float(logit_kd_loss(s.clone(), s)) == pytest.approx(0.0, abs=1e-6)
    # a constant shift of the logits is the same distribution: still zero
    assert float(logit_kd_loss(s + 3.0, s)) == pytest.approx(0.0, abs=1e-5)
    t = _randn(6, 4, seed=2)
    d = logit_kd_distance(t, s)
    assert d.shape == (6,) and bool((d > 0).all())


def test_logit_kd_gradient_reaches_only_the_target():
    t = _randn(5, 3, seed=3).requires_grad_()
    s = _randn(5, 3, seed=4).requires_grad_()
    logit_kd_loss(t, s, temperature=2.0).backward()
    assert t.grad is not None and float(t.grad.abs().sum()) > 0
    assert s.grad is None


def test_logit_kd_is_t_squared_times_the_tempered_kl():
    t, s = _randn(4, 5, seed=5), _randn(4, 5, seed=6)
    for temp in (1.0, 2.0, 4.0, 8.0):
        got = logit_kd_distance(t, s, temp)
        want = temp ** 2 * _kl(s.double(), t.double(), temp)  # float64 reference
        assert torch.allclose(got.double(), want, rtol=1e-3, atol=1e-6), temp
    # T^2 keeps the term's scale: at high T, T^2 * KL -> mean squared (centred) logit gap / 2, not -> 0
    ct, cs = t - t.mean(1, keepdim=True), s - s.mean(1, keepdim=True)
    assert torch.allclose(logit_kd_distance(t, s, 100.0), ((ct - cs) ** 2).mean(1) / 2, rtol=3e-2)
    with pytest.raises(ValueError, match="temperature"):
        logit_kd_distance(t, s, 0.0)


def test_logit_kd_with_mcma_and_an_all_wrong_source_adds_nothing():
    logits = _randn(4, 3, seed=7).requires_grad_()
    s_logits = _randn(4, 3, seed=8)
    y = torch.tensor([0, 1, 2, 0])
    all_wrong = torch.zeros(4, dtype=torch.bool)
    dist = {"video": logit_kd_distance(logits, s_logits)}
    loss, terms = transfer_objective(logits, y, dist, {"video": all_wrong}, lam=1.0, mcma=True, term="kd")
    ce = F.cross_entropy(logits, y)
    assert float(terms["kd"]) == 0.0 and float(terms["keep_rate_video"]) == 0.0
    assert float(loss.detach()) == pytest.approx(float(ce.detach()), abs=1e-6)
    (g,) = torch.autograd.grad(loss, logits)
    (g_ce,) = torch.autograd.grad(ce, logits)
    assert torch.allclose(g, g_ce)  # the KD term adds no gradient
    _, terms2 = transfer_objective(logits, y, dist, {"video": all_wrong}, lam=1.0, mcma=False, term="kd")
    assert float(terms2["kd"]) > 0 and float(terms2["keep_rate"]) == 1.0


def test_mcma_averages_over_the_whole_batch():
    dist = torch.tensor([1.0, 2.0, 3.0, 4.0])
    keep = torch.tensor([True, False, True, False])
    logits, y = torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)
    _, terms = transfer_objective(logits, y, {"a": dist}, {"a": keep}, mcma=True, term="kd")
    assert float(terms["kd"]) == pytest.approx((1 + 3) / 4)
    assert float(terms["keep_rate_a"]) == pytest.approx(0.5)


# ---------------------------------------------------------------------------------------------
# feature KD

def test_feature_kd_is_zero_when_the_projection_maps_target_to_source():
    torch.manual_seed(0)
    proj = torch.nn.Linear(8, 5)
    z_t = _randn(6, 8, seed=9)
    with torch.no_grad():
        z_s = proj(z_t)  # the source embedding is exactly the projected target one
        assert float(feature_kd_loss(proj(z_t), z_s)) == pytest.approx(0.0, abs=1e-12)
        other = _randn(6, 5, seed=10)
        assert float(feature_kd_loss(proj(z_t), other)) > 0
        # without a mask it is the plain MSE over windows and features
        assert float(feature_kd_loss(proj(z_t), other)) == pytest.approx(float(F.mse_loss(proj(z_t), other)), rel=1e-6)
        assert feature_distance(proj(z_t), other).shape == (6,)


def test_feature_kd_gradient_reaches_the_projection_and_the_target_only():
    proj = torch.nn.Linear(8, 5)
    z_t = _randn(6, 8, seed=11).requires_grad_()
    z_s = _randn(6, 5, seed=12).requires_grad_()
    feature_kd_loss(proj(z_t), z_s).backward()
    assert float(z_t.grad.abs().sum()) > 0
    assert float(proj.weight.grad.abs().sum()) > 0 and float(proj.bias.grad.abs().sum()) > 0
    assert z_s.grad is None


def test_pooled_tap_reads_what_the_classifier_reads():
    torch.manual_seed(0)
    m = build_model(ModelConfig(kind="imu", in_shape=[20, 6], n_classes=3, d=16, heads=2)).eval()
    tap = PooledTap(m)
    with torch.no_grad():
        out = m(_randn(3, 20, 6, seed=13))
    assert tap.value.shape == (3, 16)
    assert torch.allclose(m.head(tap.value), out["logits"], atol=1e-6)
    tap.remove()
    assert len(m.norm._forward_hooks) == 0


# ---------------------------------------------------------------------------------------------
# several sources, no transfer

def _scores(seed, b=5, n=7, d=8):
    return kv_scores(_randn(b, n, d, seed=seed), _randn(b, n, d, seed=seed + 100))


def test_one_source_objective_equals_single_source_dcat():
    s_t, s_s = _scores(1), _scores(2, n=3)
    logits, y = _randn(5, 4, seed=3), torch.tensor([0, 1, 2, 3, 0])
    ok = torch.tensor([True, False, True, True, False])
    for mcma in (True, False):
        want, wt = dcat_loss(logits, y, s_t, s_s, ok, lam=0.3, mcma=mcma)
        got, gt = transfer_objective(logits, y, {"video": alignment_distance(s_t, s_s)}, {"video": ok}, lam=0.3,
                                     mcma=mcma, term="ca")
        assert float(got) == pytest.approx(float(want), rel=1e-6)
        for k in ("ce", "ca", "keep_rate"):
            assert float(gt[k]) == pytest.approx(float(wt[k]), rel=1e-6), k
        assert float(gt["ca_video"]) == pytest.approx(float(wt["ca"]), rel=1e-6)


def test_weights_scale_each_source_term_and_masks_are_per_source():
    s_t, s_v, s_a = _scores(4), _scores(5, n=3), _scores(6, n=2)
    logits, y = _randn(5, 3, seed=7), torch.tensor([0, 1, 2, 0, 1])
    ok_v = torch.tensor([True, True, True, False, False])
    ok_a = torch.tensor([False, True, False, False, False])
    dists = {"video": alignment_distance(s_t, s_v), "audio": alignment_distance(s_t, s_a)}
    correct = {"video": ok_v, "audio": ok_a}

    def run(w_a):
        return transfer_objective(logits, y, dists, correct, {"video": 1.0, "audio": w_a}, lam=0.5, mcma=True)

    loss1, t1 = run(0.5)
    l_v = float((dists["video"] * ok_v).mean())
    l_a = float((dists["audio"] * ok_a).mean())
    assert float(t1["ca_video"]) == pytest.approx(l_v, rel=1e-6)
    assert float(t1["ca_audio"]) == pytest.approx(l_a, rel=1e-6)
    assert float(t1["ca"]) == pytest.approx(l_v + 0.5 * l_a, rel=1e-6)
    assert float(loss1) == pytest.approx(float(t1["ce"]) + 0.5 * (l_v + 0.5 * l_a), rel=1e-6)
    assert float(t1["keep_rate_video"]) == pytest.approx(0.6) and float(t1["keep_rate_audio"]) == pytest.approx(0.2)
    assert float(t1["keep_rate"]) == pytest.approx(0.4)
    # doubling audio's weight adds exactly lam * 0.5 * L_audio; weight 0 removes its term
    loss2, _ = run(1.0)
    assert float(loss2) - float(loss1) == pytest.approx(0.5 * 0.5 * l_a, rel=1e-5)
    loss0, t0 = run(0.0)
    assert float(t0["ca"]) == pytest.approx(l_v, rel=1e-6)


def _tiny_models():
    torch.manual_seed(0)
    imu = build_model(ModelConfig(kind="imu", in_shape=[20, 6], n_classes=3, d=16, heads=2))
    audio = build_model(ModelConfig(kind="audio", in_shape=[16, 8], n_classes=3, d=16, heads=2)).eval()
    batch = {"imu": _randn(6, 20, 6, seed=20), "audio": _randn(6, 16, 8, seed=21),
             "y": torch.tensor([0, 1, 2, 0, 1, 2]), "idx": torch.arange(6)}
    return imu, audio, batch


def test_method_none_is_the_pretraining_loss():
    imu, _, batch = _tiny_models()
    imu.eval()  # no dropout: two forwards give the same logits
    loss, terms, logits = transfer_step("imu", ["audio"], {}, method="none", lam=5.0)(imu, batch)
    want, wterms, wlogits = ce_step("imu")(imu, batch)
    assert torch.equal(loss, want) and torch.equal(logits, wlogits)
    assert set(terms) == {"ce"} and float(terms["ce"]) == float(wterms["ce"])


def test_step_with_one_source_equals_dcat_loss_and_cache_equals_live():
    imu, audio, batch = _tiny_models()
    imu.eval()
    with torch.no_grad():
        so = audio(batch["audio"])
        to = imu(batch["imu"])
    ok = so["logits"].argmax(1) == batch["y"]
    want, _ = dcat_loss(to["logits"], batch["y"], kv_scores(to["k"], to["v"]), kv_scores(so["k"], so["v"]), ok, lam=0.7)
    step = transfer_step("imu", ["audio"], {"audio": audio}, method="dcat", lam=0.7)
    got, terms, _ = step(imu, batch)
    assert float(got.detach()) == pytest.approx(float(want), rel=1e-6)
    cache = {"audio": {"scores": kv_scores(so["k"], so["v"]), "correct": ok}}
    cached, _, _ = transfer_step("imu", ["audio"], method="dcat", lam=0.7, caches=cache)(imu, batch)
    assert float(cached.detach()) == pytest.approx(float(want), rel=1e-6)


def test_feature_kd_step_trains_only_target_and_projection():
    imu, audio, batch = _tiny_models()
    proj = torch.nn.ModuleList([torch.nn.Linear(16, 16)])
    step = transfer_step("imu", ["audio"], {"audio": audio}, method="feature-kd", lam=1.0, mcma=False,
                         proj=proj, tgt_tap=PooledTap(imu), src_taps={"audio": PooledTap(audio)})
    loss, terms, _ = step(imu, batch)
    assert float(terms["fkd"]) > 0 and float(loss.detach()) == pytest.approx(float(terms["ce"] + terms["fkd"]), rel=1e-6)
    loss.backward()
    assert float(proj[0].weight.grad.abs().sum()) > 0
    assert float(imu.encoder.net[0][0].weight.grad.abs().sum()) > 0
    assert all(p.grad is None for p in audio.parameters())


def test_inconsistent_settings_are_refused():
    def bad(match, **kw):
        with pytest.raises(TrainingError, match=match):
            check_settings(TransferConfig(**kw))

    bad("--method distill: choose one of dcat, logit-kd, feature-kd, none", method="distill")
    bad("2 weight.*1 source", src="video", src_weights=[1, 2])
    bad(">= 0", src="video,audio", src_weights=[1, -1])
    bad("--temperature 0", method="logit-kd", temperature=0.0)
    bad("named twice", src="video,video")
    bad("among the sources", src="video,imu", tgt="imu")
    bad("1 checkpoint", src="video,audio", src_ckpt="runs/v")
    with pytest.raises(TrainingError, match="numbers"):
        TransferConfig(src="video,audio", src_weights="1,x")
    cfg = TransferConfig(src=["video", "audio"], src_weights="1, 0.5")
    assert cfg.src == "video,audio" and cfg.sources() == ["video", "audio"] and cfg.source_weights() == [1.0, 0.5]
    assert TransferConfig(src="video,audio").source_weights() == [1.0, 1.0]


# ---------------------------------------------------------------------------------------------
# end to end on fake shards (video, imu, audio)

FAKE = dict(subjects=("s01", "s02", "s03"), recordings_per_subject=2, duration_s=24.0, seed=4, imu_snr=0.6)
SMALL = dict(d=16, heads=2, batch_size=16, block_s=6.0, video_frames=4, patience=0, threads=1)
TGT = dict(heads=2, batch_size=16, patience=0, threads=1, tgt="imu")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Fake shards and pretrained video and audio sources (2 epochs), same split."""
    root = tmp_path_factory.mktemp("baselines")
    shards = root / "shards"
    write_fake_shards(shards, streams=("video", "imu", "audio"), **FAKE)
    runs = root / "runs"
    for s in ("video", "audio"):
        pretrain(TrainConfig(data=str(shards), modality=s, runs=str(runs), epochs=2, **SMALL))
    return shards, runs


class _StopAfter(Hooks):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, epoch, metrics):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _config(run_dir):
    return json.loads((run_dir / "config.json").read_text())


@pytest.mark.parametrize("method,term", [("logit-kd", "kd"), ("feature-kd", "fkd")])
def test_baseline_transfer_end_to_end(env, tmp_path, method, term):
    shards, runs = env
    kw = dict(data=str(shards), src="video", runs=str(runs), method=method, lam=0.5, epochs=2, **TGT)
    info = transfer(TransferConfig(**kw))
    run = runs / f"video-to-imu-{method}-id"  # the baselines get their own default folder
    assert info["run_dir"] == str(run) and info["method"] == method and info["cache"] and info["source_unchanged"]
    cfg = _config(run)
    assert cfg["method"] == method and cfg["args"]["method"] == method and cfg["loss_term"] == term
    assert [s["stream"] for s in cfg["sources"]] == ["video"] and cfg["source"]["stream"] == "video"
    rows = _metrics(run)
    assert len(rows) == 2
    for m in rows:
        assert m["train_loss"] == pytest.approx(m["train_ce"] + 0.5 * m[f"train_{term}"], rel=1e-5)
        assert m[f"train_{term}"] > 0 and m[f"train_{term}_video"] == pytest.approx(m[f"train_{term}"])
        assert 0.0 < m["train_keep_rate_video"] <= 1.0
    best = load_checkpoint(run / "best.pt")
    assert best["method"] == method
    if method == "feature-kd":  # the projection is saved beside the target, not inside it
        assert set(best["aux"]) == {"0.weight", "0.bias"} and list(best["aux"]["0.weight"].shape) == [16, 16]
        assert not any(k.startswith("0.") for k in best["model"])
        # an interrupted run resumes with it (from last.pt) and ends where the uninterrupted one did
        with pytest.raises(KeyboardInterrupt):
            transfer(TransferConfig(**kw, out=str(tmp_path / "cut")), _StopAfter(0))
        transfer(TransferConfig(**kw, out=str(tmp_path / "cut"), resume=True))
        full, cut = load_checkpoint(run / "last.pt"), load_checkpoint(tmp_path / "cut" / "last.pt")
        for part in ("model", "aux"):
            for k in full[part]:
                assert torch.equal(full[part][k], cut[part][k]), (part, k)
    model_from_checkpoint(best)  # inference needs the target alone
    rep = evaluate_run(run, threads=1, write=False)
    assert 0.0 <= rep["macro_f1"] <= 1.0


def test_feature_kd_cached_equals_running_the_source(env, tmp_path):
    shards, runs = env
    kw = dict(data=str(shards), src="video", runs=str(runs), method="feature-kd", epochs=1, **TGT)
    transfer(TransferConfig(out=str(tmp_path / "cached"), cache="on", **kw))
    transfer(TransferConfig(out=str(tmp_path / "live"), cache="off", **kw))
    for a, b in zip(_metrics(tmp_path / "cached"), _metrics(tmp_path / "live")):
        for k in ("train_loss", "train_fkd", "train_keep_rate", "val_macro_f1"):
            assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-6), k


def test_method_none_trains_exactly_like_pretraining(env, tmp_path):
    shards, runs = env
    info = transfer(TransferConfig(data=str(shards), src="video", runs=str(runs), out=str(tmp_path / "none"),
                                   method="none", epochs=2, **TGT))
    assert not info["cache"] and info["loss_term"] is None
    assert _config(tmp_path / "none")["method"] == "none"
    pretrain(TrainConfig(data=str(shards), modality="imu", out=str(tmp_path / "pre"), epochs=2, **SMALL))
    assert (tmp_path / "none" / "split.json").read_text() == (tmp_path / "pre" / "split.json").read_text()
    for a, b in zip(_metrics(tmp_path / "none"), _metrics(tmp_path / "pre")):
        assert set(k for k in a if k.startswith("train_")) == set(k for k in b if k.startswith("train_"))
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
    wa = load_checkpoint(tmp_path / "none" / "last.pt")["model"]
    wb = load_checkpoint(tmp_path / "pre" / "last.pt")["model"]
    for k in wa:
        assert torch.allclose(wa[k].float(), wb[k].float(), atol=1e-6), k


def test_two_sources_end_to_end(env):
    shards, runs = env
    info = transfer(TransferConfig(data=str(shards), src="video,audio", src_weights=[1.0, 0.5], runs=str(runs),
                                   epochs=2, **TGT))
    run = runs / "video+audio-to-imu-id"
    assert info["run_dir"] == str(run) and info["sources"] == ["video", "audio"] and info["src_weights"] == [1.0, 0.5]
    assert info["source_unchanged"] and info["cache"]
    cfg = _config(run)
    assert cfg["method"] == "dcat" and cfg["args"]["src"] == "video,audio"
    assert [(s["stream"], s["weight"]) for s in cfg["sources"]] == [("video", 1.0), ("audio", 0.5)]
    assert all(len(s["state_sha256"]) == 64 for s in cfg["sources"])
    for m in _metrics(run):
        assert m["train_ca"] == pytest.approx(m["train_ca_video"] + 0.5 * m["train_ca_audio"], rel=1e-5)
        assert m["train_loss"] == pytest.approx(m["train_ce"] + m["train_ca"], rel=1e-5)
        for s in ("video", "audio"):
            assert 0.0 <= m[f"train_keep_rate_{s}"] <= 1.0 and m[f"train_ca_{s}"] > 0
        assert m["train_keep_rate"] == pytest.approx((m["train_keep_rate_video"] + m["train_keep_rate_audio"]) / 2)


def test_a_second_source_at_weight_zero_changes_nothing(env, tmp_path):
    shards, runs = env
    kw = dict(data=str(shards), runs=str(runs), epochs=1, **TGT)
    transfer(TransferConfig(src="video", out=str(tmp_path / "one"), **kw))
    transfer(TransferConfig(src="video,audio", src_weights=[1.0, 0.0], out=str(tmp_path / "two"), **kw))
    a, b = _metrics(tmp_path / "one")[0], _metrics(tmp_path / "two")[0]
    assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
    assert b["train_ca_audio"] > 0  # the audio term is computed and logged, only weighted 0
    wa = load_checkpoint(tmp_path / "one" / "last.pt")["model"]
    wb = load_checkpoint(tmp_path / "two" / "last.pt")["model"]
    for k in wa:
        assert torch.allclose(wa[k].float(), wb[k].float(), atol=1e-6), k


def test_dcat_refuses_sources_of_different_widths(env, tmp_path):
    shards, runs = env
    other = pretrain(TrainConfig(data=str(shards), modality="audio", out=str(tmp_path / "audio32"), epochs=1,
                                 **{**SMALL, "d": 32}))
    kw = dict(data=str(shards), src="video,audio", src_ckpt=f"{runs / 'video-id'},{other['run_dir']}",
              runs=str(runs), epochs=1, **TGT)
    with pytest.raises(TrainingError, match="video: d=16, audio: d=32"):
        transfer(TransferConfig(out=str(tmp_path / "x"), **kw))
    # logit KD compares class probabilities only, so widths may differ
    info = transfer(TransferConfig(out=str(tmp_path / "kd"), method="logit-kd", **kw))
    assert info["sources"] == ["video", "audio"]


def test_cli_method_and_several_sources(env, tmp_path):
    from dcat_cli.main import app

    shards, runs = env
    base = ["transfer", "--tgt", "imu", "--data", str(shards), "--runs", str(runs), "--epochs", "1",
            "--batch-size", "16", "--threads", "1", "--heads", "2", "--quiet"]
    res = CliRunner().invoke(app, [*base, "--src", "video,audio", "--src-weights", "1,0.5", "--method", "logit-kd",
                                   "--temperature", "2", "--no-mcma", "--out", str(tmp_path / "cli"), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["method"] == "logit-kd" and info["temperature"] == 2.0 and info["src_weights"] == [1.0, 0.5]
    assert _metrics(tmp_path / "cli")[0]["train_keep_rate"] == 1.0
    res = CliRunner().invoke(app, [*base, "--src", "video,audio", "--src-weights", "1", "--out", str(tmp_path / "bad")])
    assert res.exit_code == 1 and "1 weight(s) for 2 source(s)" in res.stderr
