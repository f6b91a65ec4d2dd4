"""`dcat demo`: the whole chain on a tiny 3-subject set, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from dcat_cli.main import app
from tests._strict_json import check_tree, strict_loads


def test_demo_runs_the_chain_and_prints_the_table_with_the_null_and_intervals(tmp_path):
    from pipelines.synth import SynthConfig, synthesize

    raw = tmp_path / "raw"
    synthesize(raw, SynthConfig(subjects=3, recordings=2, seconds=24.0, seed=3, whole_label_every=0, imu_cue=0.3,
                                source_errors=0.2, video_size=64))
    work = tmp_path / "work"
    args = ["demo", str(raw), "--work", str(work), "--epochs", "2", "--seeds", "2", "--folds", "2", "--jobs", "1",
            "--label-fraction", "0.25"]
    r = CliRunner().invoke(app, [*args, "--json", "-q"])
    assert r.exit_code == 0, r.output
    res = strict_loads(r.stdout)
    rows = {row["model"]: row for row in res["table"]}
    assert list(rows) == ["video alone (source)", "IMU alone", "IMU alone, second seed (null)", "IMU with D-CAT"]
    assert res["seeds"] == [0, 1] and res["folds"] == 2
    for name, row in rows.items():  # 2 folds x 2 seeds; the video source is trained once per fold
        assert 0.0 <= row["f1_mean"] <= 1.0 and row["n_runs"] == (2 if name.startswith("video") else 4), name
    for name in ("IMU alone, second seed (null)", "IMU with D-CAT"):  # the paired difference and its interval
        row = rows[name]
        assert row["n_tests"] == 2 and row["diff_lo"] <= row["diff_mean"] <= row["diff_hi"], row
    assert rows["IMU alone"]["diff_mean"] is None
    # the IMU runs saw a quarter of their training labels, the video source all of them
    runs = Path(res["out"]) / "runs"
    base = json.loads(next(runs.glob("id-f0of2-s0/base-imu/config.json")).read_text())
    src = json.loads(next(runs.glob("id-f0of2-s0/src-video/config.json")).read_text())
    assert base["args"]["label_fraction"] == 0.25 and src["args"]["label_fraction"] == 1.0
    assert base["labels"]["labelled_fraction"] < 0.35
    assert (work / "demo.json").is_file() and (work / "shards" / "manifest.json").is_file()
    # every JSON the chain wrote (shards' manifest and info, configs, splits, metrics, reports) is strict
    assert check_tree(work) >= 10
    # the printed table names the null and shows the intervals; a second call reuses every finished run
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "second seed (null)" in r.stdout and "95% CI" in r.stdout and "[" in r.stdout
