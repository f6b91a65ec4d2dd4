"""`--split official`: a dataset's own protocol (splits.json from `dcat import`) decides the parts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dcat_cli.main import app
from pipelines.ingest.importers.base import write_splits
from tests._fake_shards import write_fake_shards

runner = CliRunner()
SUBJECTS = ("s01", "s02", "s03", "s04", "s05")


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("official") / "shards"
    write_fake_shards(d, subjects=SUBJECTS, recordings_per_subject=1, duration_s=12.0, streams=("imu", "audio"))
    return d


def _pretrain(shards: Path, out: Path, *extra: str):
    return runner.invoke(app, ["pretrain", "--modality", "imu", "--data", str(shards), "--out", str(out),
                               "--epochs", "1", "--d", "16", "--split", "official", *extra])


def test_the_protocol_decides_every_part(shards, tmp_path):
    ids = [f"{s}_r00" for s in SUBJECTS]
    write_splits(shards, {"xsub": {"train": ids[:3], "val": [ids[3]], "test": [ids[4]]},
                          "other": {"train": ids[1:], "test": [ids[0]]}}, source="test")
    res = _pretrain(shards, tmp_path / "r")
    assert res.exit_code == 0, res.output
    split = json.loads((tmp_path / "r" / "split.json").read_text())
    assert split["protocol"] == "xsub"  # the file's first protocol is the default
    assert split["subjects"] == {"train": ["s01", "s02", "s03"], "val": ["s04"], "test": ["s05"]}
    rec = split["recordings"]
    assert rec["s05_r00"]["test"] and not rec["s05_r00"]["train"] and not rec["s05_r00"]["val"]


def test_a_protocol_without_val_holds_out_training_subjects(shards, tmp_path):
    ids = [f"{s}_r00" for s in SUBJECTS]
    write_splits(shards, {"xsub": {"train": ids[:3], "test": ids[3:]},
                          "loso1": {"train": ids[1:], "test": [ids[0]]}}, source="test")
    res = _pretrain(shards, tmp_path / "r", "--protocol", "loso1", "--val-frac", "0.25")
    assert res.exit_code == 0, res.output
    split = json.loads((tmp_path / "r" / "split.json").read_text())
    assert split["subjects"]["test"] == ["s01"]
    assert len(split["subjects"]["val"]) == 1  # round(0.25 x 4) of the training subjects
    assert set(split["subjects"]["val"]) | set(split["subjects"]["train"]) == {"s02", "s03", "s04", "s05"}
    assert not set(split["subjects"]["val"]) & set(split["subjects"]["train"])


def test_unknown_protocol_and_missing_file_are_clean_errors(shards, tmp_path):
    ids = [f"{s}_r00" for s in SUBJECTS]
    write_splits(shards, {"xsub": {"train": ids[:3], "test": ids[3:]}}, source="test")
    res = _pretrain(shards, tmp_path / "r", "--protocol", "nope")
    assert res.exit_code == 1 and "no protocol 'nope'" in res.output and "xsub" in res.output
    assert "Traceback" not in res.output
    (shards / "splits.json").unlink()
    res = _pretrain(shards, tmp_path / "r2")
    assert res.exit_code == 1 and "splits.json" in res.output and "dcat import" in res.output


def test_preprocess_carries_the_raw_folders_splits_json(tmp_path):
    from pipelines.ingest.preprocess import carry_protocols

    raw = tmp_path / "raw"
    for rid in ("a", "b"):
        (raw / rid).mkdir(parents=True)
    write_splits(raw, {"p": {"train": ["a"], "test": ["b"]}}, source="test")
    out = tmp_path / "shards"
    out.mkdir()
    assert carry_protocols([raw / "a", raw / "b"], out) == str(raw / "splits.json")
    assert json.loads((out / "splits.json").read_text())["protocols"]["p"] == {"train": ["a"], "test": ["b"]}
    other = tmp_path / "raw2"
    (other / "c").mkdir(parents=True)
    write_splits(other, {"q": {"train": ["c"], "test": ["c"]}}, source="test")
    (out / "splits.json").unlink()
    assert carry_protocols([raw / "a", other / "c"], out) is None  # two different files: neither is right
    assert not (out / "splits.json").exists()


def test_an_experiment_on_the_official_split_runs_every_cell_on_the_protocol(shards, tmp_path):
    ids = [f"{s}_r00" for s in SUBJECTS]
    write_splits(shards, {"xsub": {"train": ids[:3], "val": [ids[3]], "test": [ids[4]]}}, source="test")
    spec = tmp_path / "spec.toml"
    spec.write_text(f'data = "{shards}"\npairs = ["audio->imu"]\nsplits = ["official"]\nseeds = [0]\n'
                    'lambdas = [1.0]\nmcma = [false]\nshifts = []\nmethods = ["dcat"]\nnull = false\n'
                    '[train]\nepochs = 1\nd = 16\nprotocol = "xsub"\n')
    res = runner.invoke(app, ["experiment", str(spec), "--out", str(tmp_path / "exp"), "--jobs", "1"])
    assert res.exit_code == 0, res.output
    runs = sorted((tmp_path / "exp" / "runs" / "official-s0").iterdir())
    assert runs, "no runs"
    for run in runs:
        if (run / "split.json").is_file():
            split = json.loads((run / "split.json").read_text())
            assert split["subjects"] == {"train": ["s01", "s02", "s03"], "val": ["s04"], "test": ["s05"]}, run
