"""`dcat predict RUN - --stream` with an audio model: raw float32 PCM at the model's audio rate on stdin
(what preprocessing's audio reader makes of the recording) gives the windows, labels and
probabilities of `dcat predict RUN <recording folder>`; NaN samples skip their windows; input that
ends inside a sample is an error."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from _strict_json import strict_loads
from dcat_cli.main import app
from pipelines.core.errors import RecordingError
from pipelines.deploy.predictor import Predictor
from pipelines.deploy.stream_audio import stream_pcm
from pipelines.ingest.config import PreprocessConfig
from pipelines.ingest.raw import load_recording
from pipelines.ingest.streams.audio import AudioStream
from pipelines.learn.predict import predict

PROB_TOL = 1e-5  # one window at a time vs a batch: measured differences are ~1e-7


@pytest.fixture(scope="module")
def audio_run(tiny_run):
    return tiny_run("audio")


@pytest.fixture(scope="module")
def pcm(tiny_raw, tmp_path_factory) -> tuple[np.ndarray, float]:
    """s01_r01's audio as preprocessing decodes and resamples it (float32 at 16 kHz), and its start on
    the recording clock."""
    rec = load_recording(tiny_raw / "s01_r01", need_labels=False)
    s = AudioStream.read(rec.streams["audio"], rec, PreprocessConfig(), tmp_path_factory.mktemp("pcm"))
    return np.array(s.samples(0, s.n)), s.t0_s + s.offset_s


def _stream(predictor, x: np.ndarray) -> list[dict]:
    out = io.StringIO()
    stream_pcm(predictor, io.BytesIO(x.astype("<f4").tobytes()), out)
    return [strict_loads(line) for line in out.getvalue().splitlines()]


def test_audio_stream_matches_predict_on_the_recording(audio_run, tiny_raw, pcm):
    x, t0 = pcm
    rows = _stream(Predictor(audio_run, device="cpu"), x)
    ref = predict(audio_run, tiny_raw / "s01_r01", device="cpu")["rows"]
    assert len(ref) >= 8
    assert [round(r["start_s"] + t0, 4) for r in rows] == [round(r["start_s"], 4) for r in ref]
    for r, b in zip(rows, ref):
        assert r["pred"] == b["pred"] and r["end_s"] - r["start_s"] == pytest.approx(2.0)
        assert max(abs(r[k] - b[k]) for k in r if k.startswith("prob")) < PROB_TOL


def test_nan_samples_skip_their_windows_and_a_cut_sample_is_an_error(audio_run, pcm):
    x = pcm[0][:16000 * 6].copy()  # 6 s: windows at 0, 1, 2, 3, 4 s
    x[20000] = np.nan  # t = 1.25 s: in the windows starting at 0 and 1 s
    pr = Predictor(audio_run, device="cpu")
    rows = _stream(pr, x)
    assert [(r["start_s"], r.get("skipped")) for r in rows] == [(0.0, "nan"), (1.0, "nan"), (2.0, None), (3.0, None),
                                                                (4.0, None)]
    out = io.StringIO()
    with pytest.raises(RecordingError, match="ends 2 bytes into a float32 sample"):
        stream_pcm(pr, io.BytesIO(x.astype("<f4").tobytes() + b"\x00\x01"), out)
    assert len(out.getvalue().splitlines()) == 5  # the complete windows came out first


def test_cli_reads_pcm_from_stdin(audio_run, pcm):
    x = pcm[0][:16000 * 5]
    res = CliRunner().invoke(app, ["predict", str(audio_run), "-", "--stream", "--device", "cpu"],
                             input=x.astype("<f4").tobytes())
    assert res.exit_code == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert rows == _stream(Predictor(audio_run, device="cpu"), x) and len(rows) == 4
    res = CliRunner().invoke(app, ["predict", str(audio_run), "-", "--stream", "--device", "cpu"],
                             input="t,acc_x,acc_y\n0.0,1.0,2.0\n")  # an IMU CSV fed to an audio model
    assert res.exit_code == 1 and "sample 0 is" in res.stderr and "not float32 PCM" in res.stderr
