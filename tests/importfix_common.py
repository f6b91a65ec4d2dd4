"""What the importer tests share: a small generated video, the CLI's success check, an IMU CSV read back."""

from __future__ import annotations

import csv
import json
from fractions import Fraction
from pathlib import Path

import numpy as np


def write_video(path: Path, seconds: float, fps: int, seed: int = 0, size: int = 32, audio: bool = False) -> None:
    """A few seconds of a moving square (mpeg4 for ``.avi``, else H.264), frame i at pts i / fps, with
    a mono 16 kHz AAC tone when ``audio``."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with av.open(str(path), mode="w") as c:
        s = c.add_stream("mpeg4" if path.suffix.lower() == ".avi" else "libx264", rate=Fraction(fps))
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        s.codec_context.thread_count = 1
        a = c.add_stream("aac", rate=16000) if audio else None
        if a is not None:
            a.layout = "mono"
        base = rng.integers(0, 255, 3)
        for i in range(round(seconds * fps)):
            img = np.zeros((size, size, 3), np.uint8)
            img[:] = base // 3
            x = (i * 2) % (size - 8)
            img[8:16, x:x + 8] = 255
            for pk in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pk)
        for pk in s.encode():
            c.mux(pk)
        if a is not None:
            n = int(seconds * 16000)
            wave = (0.2 * np.sin(2 * np.pi * 440 * np.arange(n) / 16000)).astype(np.float32)
            for k in range(0, n, 1024):
                fr = av.AudioFrame.from_ndarray(wave[None, k:k + 1024], format="fltp", layout="mono")
                fr.sample_rate = 16000
                fr.pts = k
                for pk in a.encode(fr):
                    c.mux(pk)
            for pk in a.encode():
                c.mux(pk)


def ok(res):
    """A CliRunner result that must have succeeded (its output in the failure message)."""
    assert res.exit_code == 0, res.output + (res.stderr or "")
    return res


def pretrain_and_evaluate(runner, app, shards: Path, modality: str = "imu") -> tuple[dict, dict]:
    """``dcat pretrain --split official`` for one epoch (a tiny model, one thread) on ``shards``, then
    ``dcat evaluate`` of the run; returns their JSON (run, report)."""
    run = json.loads(ok(runner.invoke(app, [
        "pretrain", "--data", str(shards), "--modality", modality, "--split", "official", "--d", "16", "--epochs", "1",
        "--batch-size", "8", "--threads", "1", "--json", "--quiet"])).stdout)
    rep = json.loads(ok(runner.invoke(app, ["evaluate", run["run_dir"], "--json", "--threads", "1"])).stdout)
    return run, rep


def read_imu(path: Path) -> tuple[list[str], np.ndarray]:
    """An imu.csv the importer wrote: its header and the values (empty cells NaN)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], np.array([[float(v) if v else np.nan for v in r] for r in rows[1:]])
