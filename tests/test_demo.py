"""`dcat demo`: the whole chain on a tiny 3-subject set, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from dcat_cli.main import app
from tests._strict_json import check_tree, strict_loads


def test_demo_runs_the_chain_and_prints_the_table(tmp_path):
    from pipelines.synth import SynthConfig, synthesize

    raw = tmp_path / "raw"
    synthesize(raw, SynthConfig(subjects=3, recordings=2, seconds=24.0, seed=3, whole_label_every=0))
    work = tmp_path / "work"
    r = CliRunner().invoke(app, ["demo", str(raw), "--work", str(work), "--epochs", "2", "--threads", "1", "--json", "-q"])
    assert r.exit_code == 0, r.output
    res = strict_loads(r.stdout)
    assert [row["setting"] for row in res["table"]] == ["in distribution", "out of distribution"]
    assert res["ood_test_subjects"] == ["s02", "s03"]
    for row in res["table"]:
        for col in ("video alone", "imu alone", "imu with D-CAT"):
            assert 0.0 <= row[col] <= 1.0
    for name, run in res["runs"].items():
        rep = json.loads((Path(run) / "report.json").read_text())
        assert "test" in rep and rep["test"]["stream"] in ("video", "imu"), name
    assert (work / "demo.json").is_file() and (work / "shards" / "manifest.json").is_file()
    # every JSON the chain wrote (shards' manifest and info, configs, splits, metrics, reports) is strict
    assert check_tree(work) >= 10
