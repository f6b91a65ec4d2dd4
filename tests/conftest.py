"""Shared fixtures: a tiny synthetic raw dataset and its shards, made once per test session."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest


def pytest_addoption(parser):
    parser.addoption("--fuzz-full", action="store_true", default=False,
                     help="tests/test_fuzz.py: run the full fuzz set (default: the smaller CI set; or env DCAT_FUZZ=full)")


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``): tiny
    models run faster on one, and immune to other processes on a shared 2-core machine."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_raw(tmp_path_factory) -> Path:
    """2 subjects x 1 recording x 12 s, AAC audio in the mp4, seed 7 (ground_truth.json beside)."""
    from pipelines.synth import SynthConfig, synthesize

    out = tmp_path_factory.mktemp("raw") / "raw"
    synthesize(out, SynthConfig(subjects=2, recordings=1, seconds=12.0, seed=7, whole_label_every=0))
    return out


@pytest.fixture(scope="session")
def tiny_shards(tiny_raw, tmp_path_factory) -> tuple[Path, dict]:
    """``tiny_raw`` preprocessed with the defaults; returns (shards dir, preprocess result)."""
    from pipelines.ingest.preprocess import PreprocessConfig, preprocess
    from pipelines.ingest.raw import discover

    out = tmp_path_factory.mktemp("shards") / "shards"
    res = preprocess(discover([tiny_raw]), out, PreprocessConfig())
    assert res["summary"]["failed"] == 0, res["summary"]["errors"]
    return out, res


@pytest.fixture(scope="session")
def tiny_run(tiny_shards, tmp_path_factory):
    """``tiny_run("imu")``: a 1-epoch pretrain of that stream on ``tiny_shards`` (d 16, 2 heads), made
    once per session; returns the run folder. Tests must not write into it."""
    runs: dict[str, Path] = {}

    def make(modality: str) -> Path:
        if modality not in runs:
            import torch

            from pipelines.learn.config import TrainConfig
            from pipelines.learn.pretrain import pretrain

            out = tmp_path_factory.mktemp(f"tiny_run_{modality}") / modality
            n = torch.get_num_threads()
            try:
                pretrain(TrainConfig(data=str(tiny_shards[0]), modality=modality, out=str(out), epochs=1, d=16,
                                     heads=2, batch_size=16, block_s=2.0))
            finally:
                torch.set_num_threads(n)
            runs[modality] = out
        return runs[modality]

    return make


@pytest.fixture()
def raw_copy(tiny_raw, tmp_path) -> Path:
    """A private copy of ``tiny_raw`` that a test may damage."""
    dst = tmp_path / "raw"
    shutil.copytree(tiny_raw, dst)
    return dst


def ground_truth(raw: Path) -> dict:
    return json.loads((raw / "ground_truth.json").read_text())
