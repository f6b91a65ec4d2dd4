"""Output sizes decord's scaler gets wrong (widths 32, 48, 96 from 128 px) are resized by dcat instead."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
from typer.testing import CliRunner

from dcat_cli.main import app
from pipelines.ingest.readers import resize_frames

ROOT = Path(__file__).resolve().parents[1]


def test_resize_frames_averages_whole_blocks_and_keeps_constants():
    x = np.zeros((1, 4, 4, 3), np.uint8)
    x[0, :2, :2] = 200  # top-left 2x2 block
    x[0, 2:, 2:] = 100
    y = resize_frames(x, (2, 2))
    assert y.shape == (1, 2, 2, 3)
    assert y[0, :, :, 0].tolist() == [[200, 0], [0, 100]]
    flat = np.full((2, 128, 128, 3), 77, np.uint8)
    for size in ((48, 48), (32, 64), (72, 96), (100, 60)):
        out = resize_frames(flat, size)
        assert out.shape == (2, *size, 3) and np.all(out == 77)


def test_preprocess_at_a_size_decord_cannot_scale_to(tmp_path):
    rec = tmp_path / "raw" / "s01_r01"
    shutil.copytree(ROOT / "sample_data" / "s01_r01", rec)
    out = tmp_path / "shards"
    res = CliRunner().invoke(app, ["preprocess", str(rec), "--out", str(out), "--video-size", "48", "--json"])
    assert res.exit_code == 0, res.output
    with h5py.File(out / "s01_r01.h5") as h:
        frames = h["streams/video/frames"]
        assert frames.shape[1:] == (48, 48, 3)
        assert 20 < float(np.mean(frames[:50])) < 235  # a picture, not zeros
