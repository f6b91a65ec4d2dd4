"""The whole grid -> rows -> report path of `dcat experiment`, fast: ``run_cell`` is replaced by a
function that makes each cell's result from its name (no training), so the grid's bookkeeping and the
report's statistics are checked on 2 seeds x 5 OOD folds with known answers."""

from __future__ import annotations

import csv
import hashlib
import math
import time
from pathlib import Path

import pytest

from _fake_shards import write_fake_shards
from pipelines.study import cells as cells_mod
from pipelines.study import experiment as ex
from pipelines.study.experiment import ExperimentConfig, run_experiment

SUBJECTS = ("s01", "s02", "s03", "s04", "s05")
EFFECT = {(0.1, True): 0.02, (0.1, False): 0.01, (1.0, True): 0.05, (1.0, False): 0.05}
VAL = {(0.1, True): 0.9, (0.1, False): 0.5, (1.0, True): 0.6, (1.0, False): 0.6}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("grid")
    write_fake_shards(root / "shards", subjects=SUBJECTS, recordings_per_subject=1, duration_s=8.0,
                      streams=("video", "imu"))
    return root / "shards"


def _noise(name: str) -> float:
    """A fixed pseudo-random number in [-0.05, 0.05) per name."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) / 2 ** 32 * 0.1 - 0.05


def _fake_run_cell(corrupt: bool = False):
    """``run_cell`` without training: baseline F1 0.5 + 0.05 * fold + noise(unit); the null the same
    + its own noise; a transfer its baseline + EFFECT (+ the fold's noise); lambda 1 with MCMA on and
    off give the same results (keep rate 1). ``corrupt``: every test score (not validation) replaced
    by a pseudo-random number."""

    def run(cell, data, run_dir, src_dirs, threads, device):
        st, u = cell["settings"], cell["unit"]
        base = 0.5 + 0.05 * u["fold"] + _noise(u["unit"])
        key = (st.get("lam"), st.get("mcma"))
        if cell["role"] == "transfer" and st["method"] == "dcat":
            f1, val, fp = base + EFFECT[key] + 0.01 * u["fold"], VAL[key], f"{u['unit']}-dcat-{st['lam']}"
            if st["lam"] == 0.1:
                fp += f"-{st['mcma']}"
        elif cell["role"] == "null":
            f1, val, fp = base + _noise(cell["cell"]), 0.5, cell["cell"]
        else:
            f1, val, fp = base + (0.03 if cell["role"] == "reference" else 0.0), 0.5, cell["cell"]
        subj = sorted(SUBJECTS)[u["fold"]]
        if corrupt:
            f1 = 0.5 + 10 * _noise(cell["cell"] + "corrupt")
        test = {"macro_f1": f1, "accuracy": f1, "n_windows": 10, "subjects": [subj],
                "per_subject": {subj: {"macro_f1": f1}}, "confusion": [[fp]]}
        info = {"epochs_run": 3, "best_epoch": 2,
                "keep_rate": (1.0 if st["lam"] == 1.0 else 0.75) if st.get("mcma") else None}
        other = {"macro_f1": val, "accuracy": val, "n_windows": 10, "confusion": [[fp]]}
        return cells_mod._result_row(cell, st, info, test, other, dict(other, macro_f1=0.99), Path(run_dir),
                                     time.perf_counter())

    return run


def _grid(shards, out, **kw):
    return ExperimentConfig(out=str(out), data=str(shards), pairs=["video->imu"], methods=["dcat", "features-rf"],
                            lambdas=[0.1, 1.0], mcma=[True, False], splits=["ood"], folds=5, seeds=[0, 1], shifts=[],
                            jobs=1, **kw)


def test_two_seeds_by_five_folds_is_n_five_with_null_selection_and_keep_rate(shards, tmp_path, monkeypatch):
    monkeypatch.setattr(ex, "run_cell", _fake_run_cell())
    res = run_experiment(_grid(shards, tmp_path / "a"))
    assert not res["failed"] and res["ran"] == 10 * (1 + 1 + 1 + 1 + 4)  # src, base, null, reference, 4 D-CAT
    md = (tmp_path / "a" / "results.md").read_text()
    lines = md.splitlines()
    row = lambda model: next(x for x in lines if x.startswith(f"| out of distribution | {model} |"))
    # the seeds of a fold share the fold's test set: n = 5 test sets, 10 runs
    for model in ("imu alone, second seed (null)", "imu window features + random forest (classical)",
                  "video->imu D-CAT, lambda and MCMA chosen on validation", "video->imu D-CAT lambda 0.1, MCMA"):
        assert "| 5 (10 runs) |" in row(model), row(model)
    # the row chosen on validation is lambda 0.1 with MCMA (val 0.9) in every unit: its effect 0.02 +
    # 0.01 * fold (mean 0.04), not the best test row's 0.05 + 0.01 * fold
    assert "| +0.040 [" in row("video->imu D-CAT, lambda and MCMA chosen on validation")
    assert "Chosen on validation (out of distribution): lambda 0.1, MCMA in 10 units." in lines
    assert "lambda and MCMA chosen on validation: +0.040 [" in next(x for x in lines if x.startswith("- **imu, out"))
    # lambda 1 MCMA on and off gave the same runs: marked, not a second result
    assert "identical to video->imu D-CAT lambda 1, MCMA (every run)" in row("video->imu D-CAT lambda 1, no MCMA")
    # keep rates: in the table and per cell in results.csv
    assert row("video->imu D-CAT lambda 0.1, MCMA").endswith("| 0.750 |")
    assert row("video->imu D-CAT lambda 1, MCMA").endswith("| 1.000 |")
    with open(tmp_path / "a" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    keep = {r["cell"]: r["keep_rate"] for r in rows}
    assert keep["ood-f2of5-s1/video-to-imu-dcat-lam0.1-mcma"] == "0.75"
    assert keep["ood-f2of5-s1/video-to-imu-dcat-lam0.1-nomcma"] == "" and keep["ood-f2of5-s1/base-imu"] == ""
    same = {r["cell"]: r["same_as"] for r in rows if r["same_as"]}
    assert same == {f"ood-f{f}of5-s{s}/video-to-imu-dcat-lam1-nomcma": f"ood-f{f}of5-s{s}/video-to-imu-dcat-lam1-mcma"
                    for f in range(5) for s in (0, 1)}
    # the null is in every unit, with seed + 1000, paired by the unit's seed
    nulls = [r for r in rows if r["role"] == "null"]
    assert len(nulls) == 10 and all(int(r["train_seed"]) == int(r["seed"]) + 1000 for r in nulls)
    chosen = {r["cell"] for r in rows if r["val_chosen"] == "true"}

    # every test score replaced by noise: the same cells are chosen (the choice reads validation only),
    # although choosing by test would now pick other cells
    monkeypatch.setattr(ex, "run_cell", _fake_run_cell(corrupt=True))
    run_experiment(_grid(shards, tmp_path / "b"))
    with open(tmp_path / "b" / "results.csv") as f:
        rows_b = list(csv.DictReader(f))
    assert {r["cell"] for r in rows_b if r["val_chosen"] == "true"} == chosen and len(chosen) == 10
    best_test = {}
    for r in rows_b:
        if r["val_chosen"] in ("true", "false"):
            unit = r["cell"].split("/")[0]
            if unit not in best_test or float(r["test_macro_f1"]) > float(best_test[unit]["test_macro_f1"]):
                best_test[unit] = r
    assert {r["cell"] for r in best_test.values()} != chosen
    assert any(not math.isclose(float(a["test_macro_f1"]), float(b["test_macro_f1"])) for a, b in zip(rows, rows_b))
