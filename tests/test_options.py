"""Every training option is declared once (pipelines/learn/config.py): the typer options of
`dcat pretrain` / `dcat transfer`, the experiment's `[train]` keys and the README's tables are
derived from the dataclass fields, and this file fails when any of them disagrees."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dcat_cli import options as cli_options
from dcat_cli.main import app
from dcat_cli.train_cmds import pretrain_cmd, transfer_cmd
from pipelines.core.options import cli_fields, experiment_keys, option_table
from pipelines.learn.config import EXPERIMENT_TRAIN_KEYS, TrainConfig, TransferConfig
from pipelines.study.experiment import TRAIN_KEYS

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_option_tables_are_the_generated_ones():
    text = README.read_text()
    assert cli_options.update_readme(text) == text, (
        "README.md's option tables differ from pipelines/learn/config.py: run `python -m dcat_cli.options README.md`")


def test_a_changed_readme_row_is_detected():
    text = README.read_text()
    row = "| `--lr` | `0.002` |"
    assert row in text
    edited = text.replace(row, "| `--lr` | `0.01` |")
    assert cli_options.update_readme(edited) == text


def test_table_rows_follow_the_fields():
    table = option_table(TrainConfig)
    assert table.count("\n") == 2 + len(cli_fields(TrainConfig))
    assert "| `--modality, -m` | required |" in table
    assert "| `--augment/--no-augment` | off |" in table
    t = option_table(TransferConfig, only=["lam", "mcma"])
    assert t.splitlines()[2].startswith("| `--lambda` | `1` |") and "--mcma/--no-mcma" in t.splitlines()[3]


def test_commands_take_exactly_the_config_fields():
    for cmd, cls in ((pretrain_cmd, TrainConfig), (transfer_cmd, TransferConfig)):
        params = list(cmd.__signature__.parameters)
        assert params == [f.name for f in cli_fields(cls)] + ["as_json", "quiet"]
    assert "modality" not in transfer_cmd.__signature__.parameters  # the target is --tgt


def test_experiment_train_keys_are_derived():
    assert TRAIN_KEYS == EXPERIMENT_TRAIN_KEYS == experiment_keys(TransferConfig)
    names = {f.name for f in dataclasses.fields(TransferConfig)}
    assert set(TRAIN_KEYS) <= names
    assert {"epochs", "d", "lr", "norm", "batch_size", "val_frac"} <= set(TRAIN_KEYS)
    assert not {"seed", "src", "tgt", "out", "device", "resume"} & set(TRAIN_KEYS)


@pytest.fixture
def captured(monkeypatch):
    got = {}

    def fake(cfg, hooks=None):
        got["cfg"] = cfg
        return {"run_dir": "x"}

    import pipelines.learn.pretrain
    import pipelines.learn.transfer

    monkeypatch.setattr(pipelines.learn.pretrain, "pretrain", fake)
    monkeypatch.setattr(pipelines.learn.transfer, "transfer", fake)
    return got


def test_pretrain_options_reach_the_config(captured):
    r = CliRunner().invoke(app, ["pretrain", "-m", "video", "--d", "7", "--test-subjects", "s1, s2", "--lr", "0.1",
                                 "--augment", "--warmup-epochs", "2", "--split", "ood", "--json", "-q"])
    assert r.exit_code == 0, r.output
    assert captured["cfg"] == TrainConfig(modality="video", d=7, test_subjects=["s1", "s2"], lr=0.1, augment=True,
                                          warmup_epochs=2.0, split="ood")


def test_transfer_options_reach_the_config(captured):
    r = CliRunner().invoke(app, ["transfer", "--src", "video,audio", "--tgt", "imu", "--lambda", "0.5", "--no-mcma",
                                 "--d", "16", "--src-weights", "1,0.5", "--method", "logit-kd", "-q"])
    assert r.exit_code == 0, r.output
    cfg = captured["cfg"]
    assert cfg == TransferConfig(src="video,audio", tgt="imu", lam=0.5, mcma=False, d=16, src_weights=[1.0, 0.5],
                                 method="logit-kd")
    assert (cfg.modality, cfg.sources(), cfg.split, cfg.val_frac) == ("imu", ["video", "audio"], None, None)


def test_preprocess_options_reach_the_config(monkeypatch, tmp_path):
    from dcat_cli.data_cmds import PREPROCESS_RUN_OPTIONS, preprocess_cmd
    from pipelines.ingest.config import PreprocessConfig

    names = list(preprocess_cmd.__signature__.parameters)
    assert names == ["inputs"] + [f.name for f in cli_fields(PreprocessConfig)] + [p.name for p in PREPROCESS_RUN_OPTIONS[1:]]
    got = {}

    def fake(recs, out, cfg, **kw):
        got.update(cfg=cfg, out=out, **kw)
        return {"summary": {"failed": 0}, "results": []}

    import pipelines.ingest.preprocess

    monkeypatch.setattr(pipelines.ingest.preprocess, "preprocess", fake)
    r = CliRunner().invoke(app, ["preprocess", "sample_data/s01_r01", "--video-size", "96x128", "--streams", "video,imu",
                                 "--window", "3", "--max-lag", "1.5", "-j", "2", "--json", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert got["cfg"] == PreprocessConfig(video_size=(96, 128), streams=("video", "imu"), window_s=3.0, max_lag_s=1.5)
    assert got["cfg"].as_dict()["video_size"] == [96, 128] and got["workers"] == 2 and got["out"] == tmp_path


@pytest.mark.parametrize("argv, message", [
    (["preprocess", "sample_data/s01_r01", "--video-size", "9x"], "--video-size '9x' is not a size"),
    (["preprocess", "sample_data/s01_r01", "--fps", "0"], "--fps must be > 0"),
    (["transfer", "--src", "video", "--tgt", "imu", "--src-weights", "a,b"], "--src-weights a,b: give numbers"),
])
def test_a_bad_option_value_is_a_message_not_a_traceback(argv, message):
    r = CliRunner().invoke(app, argv)
    assert r.exit_code == 1, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert message in r.output and "Traceback" not in r.output


def test_demo_and_experiment_options_come_from_their_configs(monkeypatch, tmp_path):
    from dcat_cli.demo_cmds import DEMO_RUN_OPTIONS, demo_cmd
    from dcat_cli.experiment_cmds import EXPERIMENT_RUN_OPTIONS, experiment_cmd
    from pipelines.study.demo import DemoConfig
    from pipelines.study.spec import ExperimentConfig

    assert list(demo_cmd.__signature__.parameters) == [f.name for f in cli_fields(DemoConfig)] + [
        p.name for p in DEMO_RUN_OPTIONS]
    params = experiment_cmd.__signature__.parameters
    assert set(params) == {f.name for f in cli_fields(ExperimentConfig)} | {p.name for p in EXPERIMENT_RUN_OPTIONS}
    assert all(params[f.name].default is None for f in cli_fields(ExperimentConfig))  # not given: the spec's value
    got = {}

    def fake(cfg, log=None, on_cell=None, dry_run=False):
        got["cfg"] = cfg
        return {"out": cfg.out, "cells": [], "total": 0}

    import pipelines.study.experiment

    monkeypatch.setattr(pipelines.study.experiment, "run_experiment", fake)
    spec = tmp_path / "spec.toml"
    spec.write_text('data = "shards"\nlambdas = [0.1]\nseeds = [7]\n[train]\nepochs = 3\n')
    r = CliRunner().invoke(app, ["experiment", str(spec), "--mcma", "on", "--seeds", "1,2", "--shifts", "", "-j", "2",
                                 "--d", "16", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert got["cfg"] == ExperimentConfig(data="shards", lambdas=[0.1], mcma=[True], seeds=[1, 2], shifts=[], jobs=2,
                                          train={"epochs": 3, "d": 16})
    r = CliRunner().invoke(app, ["experiment", str(spec), "--lambdas", "a", "--dry-run"])
    assert r.exit_code == 1 and "'a': expected a comma-separated list of numbers" in r.output


def test_the_command_line_starts_without_numpy_or_torch():
    """`dcat --help` answers at once: building every command from the config classes imports no numpy, torch,
    h5py or media library."""
    import subprocess
    import sys

    code = ("import sys, dcat_cli.main\n"
            "print(sorted(m for m in ('numpy', 'torch', 'h5py', 'scipy', 'decord', 'av', 'librosa') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]", out.stdout
