"""The data commands through typer's CliRunner: exit codes, stdout JSON, stdin input."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from dcat_cli.main import app

runner = CliRunner()


def test_help_lists_commands():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for cmd in ("preprocess", "inspect", "validate", "manifest", "synth"):
        assert cmd in r.stdout


def test_preprocess_from_stdin_json_then_inspect_validate_manifest(tiny_raw, tmp_path):
    out = tmp_path / "sh"
    recs = "\n".join(str(p) for p in sorted(tiny_raw.iterdir()) if (p / "meta.json").exists()) + "\n"
    r = runner.invoke(app, ["preprocess", "-", "--out", str(out), "--json"], input=recs)
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["ok"] == 2 and s["failed"] == 0 and s["windows_kept"] > 0
    assert set(s["windows_dropped"]) == {"coverage", "length", "gap", "nan", "label_purity"}

    r = runner.invoke(app, ["inspect", str(out), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["recordings"] == 2 and info["subjects"] == ["s01", "s02"]
    assert sum(info["windows_per_class"].values()) == s["windows_kept"]
    assert info["streams"]["imu"]["rate_hz"] == 50

    r = runner.invoke(app, ["inspect", str(out)])
    assert r.exit_code == 0 and "windows per class and subject" in r.stdout

    r = runner.invoke(app, ["validate", str(out)])
    assert r.exit_code == 0 and "valid" in r.stdout
    r = runner.invoke(app, ["validate", str(tiny_raw), "--deep"])
    assert r.exit_code == 0, r.output

    (out / "manifest.json").unlink()
    r = runner.invoke(app, ["validate", str(out)])
    assert r.exit_code == 1 and "manifest.json" in r.stdout
    r = runner.invoke(app, ["manifest", str(out), "--expect", str(tiny_raw), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["missing"] == []


def test_job_array_then_manifest_merge(tiny_raw, tmp_path):
    out = tmp_path / "sh"
    for i in range(2):
        r = runner.invoke(app, ["preprocess", str(tiny_raw), "--out", str(out), "--shard-index", str(i), "--num-shards", "2"])
        assert r.exit_code == 0, r.output
    assert (out / "preprocess-info.0-of-2.json").is_file() and (out / "preprocess-info.1-of-2.json").is_file()
    r = runner.invoke(app, ["manifest", str(out), "--expect", str(tiny_raw), "--json"])
    assert r.exit_code == 0
    assert json.loads(r.stdout)["shards"] == 2
    (out / "s01_r01.h5").unlink()
    r = runner.invoke(app, ["manifest", str(out), "--expect", str(tiny_raw), "--json"])
    assert r.exit_code == 1 and json.loads(r.stdout)["missing"] == ["s01_r01"]


def test_validate_raw_reports_problems_and_exits_1(raw_copy):
    (raw_copy / "s01_r01" / "meta.json").write_text('{"streams": {}}')
    r = runner.invoke(app, ["validate", str(raw_copy), "--json"])
    assert r.exit_code == 1
    probs = json.loads(r.stdout)["problems"]
    assert len(probs) == 1 and probs[0].startswith("s01_r01: meta.json:") and "subject" in probs[0]


def test_bad_option_values_are_refused(tiny_raw, tmp_path):
    r = runner.invoke(app, ["preprocess", str(tiny_raw), "--out", str(tmp_path), "--align", "sometimes"])
    assert r.exit_code == 1 and "--align" in r.output
    r = runner.invoke(app, ["preprocess", str(tmp_path / "nope"), "--out", str(tmp_path)])
    assert r.exit_code == 1 and "no such file" in r.output
