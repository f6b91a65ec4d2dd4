"""`dcat export`: the target alone as TorchScript / ONNX gives the checkpoint's logits on the shard's
windows (IMU target of a transfer; audio target as waveform and as log-mel), with a correct sidecar,
no source weights inside, and clean errors."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from pipelines.deploy import export as export_mod
from pipelines.deploy.export import ExportError, export_run
from pipelines.deploy.frontend import LogMel, mel_basis
from pipelines.deploy.runtime import load_exported
from pipelines.learn.checkpoint import load_checkpoint, model_from_checkpoint
from pipelines.learn.config import TrainConfig, TransferConfig
from pipelines.learn.pretrain import pretrain
from pipelines.learn.transfer import transfer

sys.path.insert(0, str(Path(__file__).parent))
from _fake_shards import write_fake_shards  # noqa: E402
from _strict_json import strict_loads  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

#: exported vs eager logits on the same windows (float32; measured ~1e-7)
TOL = 1e-4
SMALL = dict(d=16, heads=2, epochs=1, batch_size=16, block_s=2.0, threads=1)


def _windows(shard: Path, stream: str, dataset: str, starts: str = "window_start",
             per_window: str = "samples_per_window") -> np.ndarray:
    with h5py.File(shard, "r") as f:
        g = f[f"streams/{stream}"]
        t = int(g.attrs[per_window])
        return np.stack([g[dataset][a: a + t] for a in g[starts][:]])


def _eager(run: Path, x: np.ndarray) -> np.ndarray:
    model = model_from_checkpoint(load_checkpoint(run / "best.pt")).eval()
    with torch.no_grad():
        return model(torch.from_numpy(x))["logits"].numpy()


@pytest.fixture(scope="module")
def fake_runs(tmp_path_factory):
    """Fake shards (imu + audio log-mel); an audio source run and an audio -> imu transfer (IMU target)."""
    root = tmp_path_factory.mktemp("export")
    shards = root / "shards"
    write_fake_shards(shards, streams=("imu", "audio"), subjects=("s01", "s02", "s03"), recordings_per_subject=1,
                      duration_s=12.0, seed=5)
    src = root / "runs" / "audio-src"
    pretrain(TrainConfig(data=str(shards), modality="audio", out=str(src), **SMALL))
    tgt = root / "runs" / "imu-tgt"
    transfer(TransferConfig(data=str(shards), src="audio", tgt="imu", runs=str(root / "runs"), out=str(tgt),
                            src_ckpt=str(src), mcma=False, **{k: v for k, v in SMALL.items() if k not in ("d", "heads")}))
    return shards, src, tgt


@pytest.fixture(scope="module")
def audio_run(tiny_raw, tmp_path_factory):
    """Real preprocessing (synthetic recordings) of the audio stream with its waveform; an audio model on it."""
    from pipelines.ingest.preprocess import PreprocessConfig, preprocess
    from pipelines.ingest.raw import discover

    root = tmp_path_factory.mktemp("export_audio")
    res = preprocess(discover([tiny_raw]), root / "shards", PreprocessConfig(streams=("audio",), audio_waveform=True))
    assert res["summary"]["failed"] == 0
    run = root / "audio"
    pretrain(TrainConfig(data=str(root / "shards"), modality="audio", out=str(run), **SMALL))
    return root / "shards", run


def test_mel_basis_is_librosas():
    librosa = pytest.importorskip("librosa")
    for sr, n_fft, n_mels in ((16000, 400, 64), (8000, 256, 40), (22050, 1024, 128)):
        ours = mel_basis(sr, n_fft, n_mels)
        ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)
        assert ours.shape == ref.shape
        assert np.abs(ours - ref).max() <= 1e-6 * np.abs(ref).max()


def test_torch_log_mel_matches_the_shards(audio_run):
    shards, _ = audio_run
    shard = sorted(shards.glob("*.h5"))[0]
    wav = _windows(shard, "audio", "waveform", "waveform_window_start", "waveform_samples_per_window")
    mel = _windows(shard, "audio", "logmel")
    got = LogMel(16000, 400, 160, 64)(torch.from_numpy(wav)).numpy()
    assert got.shape == mel.shape and len(mel) > 0
    assert np.abs(got - mel).max() < 1e-3  # log units; measured 3e-5


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_imu_target_round_trip_and_sidecar(fake_runs, fmt, tmp_path):
    shards, _, tgt = fake_runs
    out = tmp_path / ("imu.pt" if fmt == "torchscript" else "imu.onnx")
    side = export_run(tgt, fmt, out=out)
    x = np.concatenate([_windows(p, "imu", "data") for p in sorted(shards.glob("*.h5"))])
    want = _eager(tgt, x)
    run = load_exported(out)
    got = run(x)
    assert got.shape == want.shape == (len(x), 3)
    assert np.abs(got - want).max() <= TOL
    assert (got.argmax(1) == want.argmax(1)).all()
    assert np.abs(run(x[:1]) - want[:1]).max() <= TOL  # the batch size is free
    on_disk = strict_loads(out.with_suffix(".json").read_text())
    assert on_disk == strict_loads(json.dumps(side))
    man = json.loads((shards / "manifest.json").read_text())
    assert on_disk["model_file"] == out.name and on_disk["model_format"] == fmt
    assert on_disk["stream"] == {"name": "imu", "kind": "imu"}
    assert on_disk["channels"] == man["streams"]["imu"]["channels"]
    with h5py.File(shards / man["shards"][0]["file"], "r") as f:
        assert on_disk["units"] == json.loads(f["streams/imu"].attrs["units"])
    assert on_disk["rate_hz"] == man["streams"]["imu"]["rate_hz"] == 10.0
    assert (on_disk["window_s"], on_disk["stride_s"]) == (2.0, 1.0)
    assert on_disk["input"]["shape"] == [None, 20, 6] and on_disk["input"]["dtype"] == "float32"
    assert on_disk["classes"] == man["classes"]
    assert on_disk["source_run"]["checkpoint_sha256"] == hashlib.sha256((tgt / "best.pt").read_bytes()).hexdigest()
    assert on_disk["source_run"]["stage"] == "transfer"
    assert on_disk["dcat_version"] == __import__("pipelines").__version__
    assert on_disk["file_bytes"] == out.stat().st_size
    assert 0 <= on_disk["tolerance"]["max_abs_logit_diff"] <= on_disk["tolerance"]["limit"] == TOL


def _tensors(obj, where=""):
    """Every tensor in a nested checkpoint dict, with its path."""
    if isinstance(obj, torch.Tensor):
        yield where, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(v, f"{where}/{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{where}/{i}")


@pytest.mark.filterwarnings("ignore:.*torch.jit.load.*deprecated:DeprecationWarning")
def test_no_source_weights_inside(fake_runs, tmp_path):
    _, src, tgt = fake_runs
    ck = load_checkpoint(tgt / "best.pt")
    # the transfer's checkpoint names its source by path and hash; its only tensors are the target's
    assert {p.split("/")[1] for p, _ in _tensors(ck)} == {"model"}
    assert ck["source"]["checkpoint"].endswith("best.pt") and len(ck["source"]["state_sha256"]) == 64
    src_tensors = [t for _, t in _tensors(load_checkpoint(src / "best.pt")["model"])
                   if t.numel() >= 8 and t.is_floating_point() and t.std() > 0]
    own = ck["model"]
    assert len(src_tensors) > 10
    for fmt, name in (("torchscript", "m.pt"), ("onnx", "m.onnx")):
        export_run(tgt, fmt, out=tmp_path / name)
        blob = (tmp_path / name).read_bytes()
        assert not [t.shape for t in src_tensors if t.numpy().tobytes() in blob]
        # the same search finds the target's own (unfused) tensors: it can fail
        assert own["head.bias"].numpy().tobytes() in blob and own["norm.weight"].numpy().tobytes() in blob
    ts = torch.jit.load(str(tmp_path / "m.pt"))
    sd = {k.removeprefix("model."): v for k, v in ts.state_dict().items()}
    assert sd.keys() == own.keys() | {"pos"}  # exactly the target's tensors, plus its fixed position codes
    assert all(torch.equal(sd[k], own[k]) for k in own)
    assert torch.equal(sd["pos"], model_from_checkpoint(ck).pos)
    import onnx

    init = onnx.load(str(tmp_path / "m.onnx")).graph.initializer
    n_init = sum(int(np.prod(i.dims)) for i in init)
    model = model_from_checkpoint(ck)
    n_own = sum(t.numel() for t in own.values()) + model.pos.numel()  # pos: fixed codes, not saved
    bn = sum(t.numel() for name, m in model.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
             for t in m.state_dict().values())
    assert n_own - bn <= n_init <= n_own  # no more than the target's own; batch norms folded into convolutions


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_audio_waveform_round_trip(audio_run, fmt, tmp_path):
    shards, run = audio_run
    out = tmp_path / ("a.pt" if fmt == "torchscript" else "a.onnx")
    side = export_run(run, fmt, out=out)
    assert side["input"]["shape"] == [None, 32000] and side["input"]["audio"]["sample_rate_hz"] == 16000
    assert side["rate_hz"] == 16000 and side["units"] == "mono waveform, float32 in [-1, 1]"
    shard = sorted(shards.glob("*.h5"))[0]
    wav = _windows(shard, "audio", "waveform", "waveform_window_start", "waveform_samples_per_window")
    want = _eager(run, _windows(shard, "audio", "logmel"))
    got = load_exported(out)(wav)
    assert np.abs(got - want).max() <= export_mod.WAVEFORM_TOLERANCE
    assert (got.argmax(1) == want.argmax(1)).all()


def test_audio_log_mel_input(fake_runs, tmp_path):
    shards, src, _ = fake_runs
    out = tmp_path / "a.pt"
    side = export_run(src, "torchscript", out=out, audio_input="logmel")
    assert side["input"]["shape"] == [None, 16, 8] and "audio" not in side["input"]
    assert side["units"] == "log(mel power + 1e-6)" and side["rate_hz"] == 8.0
    x = np.concatenate([_windows(p, "audio", "logmel") for p in sorted(shards.glob("*.h5"))])
    assert np.abs(load_exported(out)(x) - _eager(src, x)).max() <= TOL
    with pytest.raises(ExportError, match="audio preprocessing settings"):  # fake shards: no audio_sr recorded
        export_run(src, "torchscript", out=tmp_path / "w.pt")


def test_export_that_does_not_reproduce_the_model_is_refused(fake_runs, tmp_path, monkeypatch):
    _, _, tgt = fake_runs
    monkeypatch.setattr(export_mod, "TOLERANCE", -1.0)
    with pytest.raises(ExportError, match="differ from the checkpoint"):
        export_run(tgt, "torchscript", out=tmp_path / "m.pt")
    assert list(tmp_path.iterdir()) == []


def test_cli_exports_and_refuses_cleanly(fake_runs, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from dcat_cli.main import app

    _, _, tgt = fake_runs
    cli = CliRunner()
    r = cli.invoke(app, ["export", str(tgt), "--format", "torchscript", "--out", str(tmp_path / "x.pt"), "--json"])
    assert r.exit_code == 0, r.output
    assert strict_loads(r.stdout)["model_file"] == "x.pt" and (tmp_path / "x.json").is_file()
    cases = [([str(tmp_path / "nope")], "no such run folder"),
             ([str(tmp_path)], "not a run folder (no best.pt)"),
             ([str(tgt), "--format", "tflite"], "choose torchscript or onnx"),
             ([str(tgt), "--out", str(tmp_path / "m.json")], "the sidecar takes the .json name")]
    for args, msg in cases:
        r = cli.invoke(app, ["export", *args])
        assert r.exit_code == 1 and msg in r.output and "Traceback" not in r.output, (args, r.output)
    monkeypatch.setattr(export_mod, "missing_onnx_packages", lambda: ["onnxscript"])
    r = cli.invoke(app, ["export", str(tgt), "--format", "onnx"])
    assert r.exit_code == 1 and "pip install 'dcat[deploy]'" in r.output
    assert not (tgt / "model.onnx").exists()


def test_video_target_keeps_its_frame_subset(tmp_path):
    """A video model takes every stored frame; the checkpoint's subset (--video-frames) is inside."""
    from pipelines.learn.models.model import frame_indices

    shards = tmp_path / "shards"
    write_fake_shards(shards, streams=("video",), subjects=("s01", "s02", "s03"), recordings_per_subject=1,
                      duration_s=12.0, seed=5)
    run = tmp_path / "video"
    pretrain(TrainConfig(data=str(shards), modality="video", out=str(run), video_frames=4, **SMALL))
    side = export_run(run, "torchscript", out=tmp_path / "v.pt")
    x = np.concatenate([_windows(p, "video", "frames") for p in sorted(shards.glob("*.h5"))])
    assert side["input"]["shape"] == [None, *x.shape[1:]] and side["input"]["dtype"] == "uint8" == str(x.dtype)
    idx = frame_indices(x.shape[1], 4)
    assert side["input"]["frames_used"] == idx.tolist() == [0, 2, 5, 7]
    got = load_exported(tmp_path / "v.pt")(x)
    assert np.abs(got - _eager(run, x[:, idx])).max() <= TOL
    assert np.abs(got - _eager(run, x[:, :4])).max() > TOL  # another subset gives other logits: the check can fail


def test_export_and_running_need_no_media_library(audio_run, tmp_path):
    """The waveform front end is built and run without librosa, soundfile, decord or PyAV."""
    import subprocess

    _, run = audio_run
    code = ("import sys, numpy as np\n"
            "from pipelines.deploy.export import export_run\n"
            "from pipelines.deploy.runtime import load_exported\n"
            f"export_run({str(run)!r}, 'torchscript', out={str(tmp_path / 'a.pt')!r})\n"
            f"load_exported({str(tmp_path / 'a.pt')!r})(np.zeros((1, 32000), np.float32))\n"
            "print(sorted(m for m in ('librosa', 'soundfile', 'decord', 'av', 'soxr') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "[]"
