"""Experiment specs and training settings are parsed into typed, bounded values before any work
(issue 13, items 14 and 11): every hostile spec of ``tests/hostile_spec_cases.py`` is refused by
``dcat experiment SPEC --dry-run`` with a message naming the spec and the key, never a traceback;
the good specs still list their cells; and the command line, a spec's ``[train]`` table and the
library refuse the same training value with the same words."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dcat_cli.main import app
from pipelines.core.errors import TrainingError
from pipelines.learn.config import TrainConfig, TransferConfig
from pipelines.study.spec import ExperimentConfig, ExperimentError, load_spec, merge_config
from tests._fake_shards import write_fake_shards
from tests.hostile_spec_cases import GOOD_SPECS, HOSTILE_SPECS, spec_text


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    write_fake_shards(root / "shards", streams=("video", "imu"), subjects=("s01", "s02", "s03"),
                      recordings_per_subject=1, duration_s=24.0, seed=1)
    return root / "shards"


def _write(tmp_path, text, shards, name="spec.toml"):
    p = tmp_path / name
    t = spec_text(text, str(shards))
    p.write_bytes(t) if isinstance(t, bytes) else p.write_text(t)
    return p


def _clean_failure(r) -> None:
    assert r.exit_code != 0, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output


@pytest.mark.parametrize("case_id, text, key", HOSTILE_SPECS, ids=[c[0] for c in HOSTILE_SPECS])
def test_a_hostile_spec_is_refused_naming_the_file_and_key(case_id, text, key, shards, tmp_path):
    spec = _write(tmp_path, text, shards, name=f"{case_id}.toml")
    r = CliRunner().invoke(app, ["experiment", str(spec), "--dry-run", "--out", str(tmp_path / "e")])
    _clean_failure(r)
    flat = " ".join(r.output.split())  # the console wraps long lines
    assert f"{case_id}.toml" in flat and key in flat, r.output
    assert not (tmp_path / "e").exists()  # refused before any work
    with pytest.raises(ExperimentError, match=case_id):  # the library says the same
        merge_config(load_spec(spec), {}, where=str(spec))


@pytest.mark.parametrize("case_id, text", GOOD_SPECS, ids=[c[0] for c in GOOD_SPECS])
def test_good_specs_still_list_their_cells(case_id, text, shards, tmp_path):
    spec = _write(tmp_path, text, shards)
    r = CliRunner().invoke(app, ["experiment", str(spec), "--dry-run", "--json", "--out", str(tmp_path / "e")])
    assert r.exit_code == 0, r.output
    cells = json.loads(r.output)
    assert cells and all(c["role"] in ("source", "baseline", "null", "reference", "transfer") for c in cells)


def test_the_known_messages(shards, tmp_path):
    """The exact words for the cases the issue names: key, value, what is allowed."""
    def msg(text):
        with pytest.raises(ExperimentError) as e:
            load_spec(_write(tmp_path, text, shards))
        return str(e.value)

    base = f'data = "{shards}"\n'
    spec = str(tmp_path / "spec.toml")
    assert msg(base + "folds = 2.5\n") == f"{spec}: folds = 2.5: give a whole number >= 2 (or leave it unset)"
    assert msg(base + "seeds = [1.5]\n") == f"{spec}: seeds = [1.5]: give a list of whole numbers >= 0, each once"
    assert msg(base + "temperature = 0\n") == f"{spec}: temperature = 0: give a finite number > 0"
    assert msg(base + "baseline_lambda = nan\n") == f"{spec}: baseline_lambda = nan: give a finite number >= 0"
    assert msg(base + "jobs = true\n") == f"{spec}: jobs = true: give a whole number >= 0"
    assert msg(base + '[train]\nlr = "fast"\n') == f"{spec}: train.lr = 'fast': give a finite number >= 0"
    assert msg(base + "[train]\nepochs = -1\n") == f"{spec}: train.epochs = -1: train at least 1 epoch"
    assert msg(base + "lambdas = " + "[" * 40 + "]" * 40 + "\n") == f"{spec}: nested 40 levels deep; at most 32 are allowed"
    assert "did you mean lambdas (not lambda)?" in msg(base + "lambda = [1]\n")


@pytest.mark.parametrize("flag, value, words", [
    ("--epochs", "-1", "--epochs -1: train at least 1 epoch"),
    ("--epochs", "0", "--epochs 0: train at least 1 epoch"),
    ("--lr", "nan", "--lr nan: give a finite number >= 0"),
    ("--lr", "-0.1", "--lr -0.1: give a finite number >= 0"),
    ("--batch-size", "0", "--batch-size 0: give a whole number >= 1"),
    ("--dropout", "1.5", "--dropout 1.5: give a finite number in [0, 1)"),
    ("--val-frac", "inf", "--val-frac inf: give a finite number in [0, 1)"),
])
def test_pretrain_refuses_a_bad_value_before_any_run_folder(flag, value, words, shards, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["pretrain", "--modality", "imu", "--data", str(shards), flag, value, "--out", "runs/x"])
    _clean_failure(r)
    assert words in " ".join(r.output.split()), r.output
    assert not (tmp_path / "runs").exists()


def test_cli_spec_and_library_refuse_a_training_value_with_the_same_words(shards, tmp_path):
    with pytest.raises(TrainingError) as lib:
        TrainConfig(epochs=-1)
    with pytest.raises(TrainingError) as lib2:
        TransferConfig(epochs=-1)
    assert str(lib.value) == str(lib2.value) == "--epochs -1: train at least 1 epoch"
    spec = _write(tmp_path, f'data = "{shards}"\n[train]\nepochs = -1\n', shards)
    by_spec = CliRunner().invoke(app, ["experiment", str(spec), "--dry-run"])
    by_flag = CliRunner().invoke(app, ["experiment", "--data", str(shards), "--epochs", "-1", "--dry-run"])
    _clean_failure(by_spec)
    _clean_failure(by_flag)
    assert "train.epochs = -1: train at least 1 epoch" in " ".join(by_spec.output.split())
    assert str(lib.value) in " ".join(by_flag.output.split())
    # the library: an ExperimentConfig made in code refuses it too, naming the key
    with pytest.raises(ExperimentError, match=r"^train.epochs = -1: train at least 1 epoch$"):
        ExperimentConfig(data=str(shards), train={"epochs": -1})


@pytest.mark.parametrize("kw, words", [
    ({"seeds": [True]}, "seeds = [True]"),
    ({"lambdas": "1,10"}, "lambdas = '1,10'"),
    ({"jobs": 2 ** 70}, "jobs = <an integer of about 22 digits>"),
    ({"train": {"epochs": True}}, "train.epochs = true: give a whole number (train at least 1 epoch)"),
    ({"train": {"heads": 0}}, "train.heads = 0: give a whole number >= 1"),
])
def test_experiment_config_in_code_checks_types_and_ranges(kw, words):
    with pytest.raises(ExperimentError) as e:
        ExperimentConfig(data="x", **kw)
    assert words in str(e.value)
