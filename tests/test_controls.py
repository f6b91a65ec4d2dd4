"""`dcat controls` (pipelines.study.controls): the plan of datasets and labelled shares, a controls
line from an experiment's summary, the verdict against the null, and a tiny end-to-end run."""

from __future__ import annotations

import csv
import math

import pytest

from pipelines.core.errors import DcatError
from pipelines.study.controls import ControlsConfig, Dataset, control_row, plan, plot_controls, render_controls, verdict


def test_plan_runs_the_positive_at_every_share_the_negative_at_both_ends_and_the_cue_sweep_at_one():
    cfg = ControlsConfig(fractions=[0.05, 0.25, 1.0], cues=[0.0, 0.3, 1.0], cue=0.3, fraction=0.1, source_errors=0.2)
    ds = {d.name: d for d in plan(cfg)}
    assert list(ds) == ["positive", "negative", "cue0", "cue1"]
    assert ds["positive"].fractions == [0.05, 0.1, 0.25, 1.0]  # the sweep's share added (cue 0.3 is the positive)
    assert (ds["negative"].cue, ds["negative"].source_errors, ds["negative"].fractions) == (0.3, 1.0, [0.05, 1.0])
    assert (ds["cue0"].cue, ds["cue0"].source_errors, ds["cue0"].fractions) == (0.0, 0.2, [0.1])
    assert ControlsConfig(fractions="0.1,1", cues="0.5", seeds="0,1,2").seeds == [0, 1, 2]
    with pytest.raises(DcatError):
        ControlsConfig(fractions=[0.0])
    with pytest.raises(DcatError):
        ControlsConfig(cues=[1.5])


def _entry(role, mean, diff=None, lo=None, hi=None, mcma=None, tgt="imu", keep=None, method="dcat", lam=1.0, chosen=None):
    return {"tgt": tgt, "role": role, "mcma": mcma, "f1_mean": mean, "f1_std": 0.01, "diff_mean": diff,
            "diff_lo": lo, "diff_hi": hi, "keep_rate": keep, "n_tests": 3 if diff is not None else None,
            "method": method, "lam": lam, "chosen": chosen}


SUMMARY = [_entry("baseline", 0.50), _entry("null", 0.51, 0.01, -0.02, 0.04),
           _entry("selected", 0.62, 0.12, 0.06, 0.18, chosen=[("D-CAT lambda 10, no MCMA", 2), ("D-CAT lambda 1, MCMA", 1)]),
           _entry("transfer", 0.60, 0.10, 0.05, 0.15, mcma=True, keep=0.7),
           _entry("transfer", 0.55, 0.05, -0.01, 0.11, mcma=False, keep=1.0),
           _entry("transfer", 0.62, 0.12, 0.06, 0.18, mcma=False, keep=1.0, lam=10.0),
           _entry("transfer", 0.70, 0.20, 0.10, 0.30, mcma=False, method="logit-kd"), _entry("source", 0.9, tgt="video")]


def test_a_control_line_takes_the_baseline_null_and_both_dcat_rows_and_says_gain_only_above_the_null():
    row = control_row(Dataset("positive", "positive", 0.3, 0.2), 0.1, SUMMARY)
    assert (row["imu_f1"], row["video_f1"], row["null_diff"]) == (0.50, 0.9, 0.01)
    assert (row["dcat_mcma_diff"], row["dcat_mcma_lo"], row["dcat_mcma_keep"]) == (0.10, 0.05, 0.7)
    assert (row["dcat_nomcma_diff"], row["dcat_nomcma_hi"], row["n_tests"]) == (0.05, 0.11, 3)
    assert (row["dcat_diff"], row["logitkd_diff"]) == (0.12, 0.20)  # the lambda-10 row is only in the chosen one
    assert row["dcat_chosen"] == "D-CAT lambda 10, no MCMA x2; D-CAT lambda 1, MCMA x1"
    assert verdict(row) == "gain" and verdict(row, "dcat_nomcma") == "within noise"
    assert verdict({**row, "dcat_diff": 0.03, "dcat_lo": 0.01}) == "within noise"  # inside the null's interval
    assert verdict({**row, "dcat_diff": -0.1, "dcat_lo": -0.15, "dcat_hi": -0.05}) == "loss"
    wide = {**row, "dcat_lo": -0.01, "dcat_blo": 0.08, "dcat_bhi": 0.15, "null_blo": -0.02, "null_bhi": 0.03}
    assert verdict(wide) == "within noise"  # only the t interval over test sets counts, not the subject bootstrap
    md = render_controls([row])
    assert "+0.120 [+0.060, +0.180]" in md and "| positive | 0.3 | 20% | 10% |" in md
    assert "| 3 | gain | gain |" in md and "positive 10%: D-CAT lambda 10, no MCMA x2" in md


def test_the_curves_are_drawn(tmp_path):
    rows = [control_row(Dataset("positive", "positive", 0.3, 0.2), f, SUMMARY) for f in (0.05, 0.1, 1.0)]
    rows.append(control_row(Dataset("cue0", "cue sweep", 0.0, 0.2), 0.1, SUMMARY))
    rows.append(control_row(Dataset("negative", "negative", 0.3, 1.0), 0.1, SUMMARY))
    paths = plot_controls(rows, tmp_path)
    assert [p.name for p in paths] == ["gain_vs_label_fraction.png", "gain_vs_cue.png"]
    assert all(p.stat().st_size > 5000 and p.read_bytes()[:4] == b"\x89PNG" for p in paths)


@pytest.mark.usefixtures("one_thread")
def test_controls_run_end_to_end_and_write_a_strict_table(tmp_path):
    from pipelines.study.controls import run_controls
    from tests._strict_json import check_tree

    cfg = ControlsConfig(out=str(tmp_path / "c"), fractions=[0.5], fraction=0.5, cues=[0.3], cue=0.3, seeds=[0], id_folds=2,
                         subjects=2, recordings=2, seconds=16.0, epochs=1, oof_folds=2, video_size=64, jobs=1,
                         lambdas=[1.0])
    res = run_controls(cfg)
    rows = list(csv.DictReader(open(tmp_path / "c" / "controls.csv")))
    assert [(r["dataset"], float(r["label_fraction"])) for r in rows] == [("positive", 0.5), ("negative", 0.5),
                                                                         ("negative", 1.0)]
    for r in rows:
        assert 0 <= float(r["imu_f1"]) <= 1 and r["n_tests"] == "2"
        assert all(math.isfinite(float(r[f"{k}_diff"])) for k in ("null", "dcat", "dcat_mcma", "dcat_nomcma", "logitkd"))
    assert "| negative | 0.3 | 100% |" in (tmp_path / "c" / "controls.md").read_text()
    assert any(p.endswith("gain_vs_label_fraction.png") for p in res["files"])
    assert check_tree(tmp_path / "c") >= 5
