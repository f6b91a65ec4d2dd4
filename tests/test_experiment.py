"""`dcat experiment`: a tiny grid end to end, its tables, resuming, failures, and the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from _fake_shards import write_fake_shards
from dcat_cli.main import app
from pipelines.study import experiment as ex
from pipelines.study.experiment import ExperimentConfig, ExperimentError, build_cells, run_experiment
from pipelines.study.report import COLUMNS
from tests._strict_json import check_tree

FAKE = dict(subjects=("s01", "s02", "s03", "s04"), recordings_per_subject=1, duration_s=24.0, seed=4, imu_snr=0.6)
TRAIN = dict(epochs=2, d=16, heads=2, batch_size=16, block_s=6.0, video_frames=4, patience=0, oof_folds=2)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("exp")
    write_fake_shards(root / "shards", streams=("video", "imu", "audio"), **FAKE)
    return root / "shards"


def _cfg(shards, out, **kw):
    base = dict(out=str(out), data=str(shards), pairs=["video->imu"], methods=["dcat", "logit-kd", "features-rf"],
                lambdas=[1.0], mcma=[True, False], splits=["id", "ood"], folds=2, id_folds=2, seeds=[0], shifts=[1.0],
                train=dict(TRAIN), jobs=1, threads=1)
    base.update(kw)
    return ExperimentConfig(**base)


def _rows(out):
    with open(Path(out) / "results.csv") as f:
        return list(csv.DictReader(f))


def test_the_grid_has_every_cell_once():
    cfg = ExperimentConfig(data="x", pairs=["video->imu", "audio->imu"], lambdas=[0.1, 1, 10], mcma=[True, False],
                           splits=["id", "ood"], folds=5, id_folds=4, seeds=[0, 1, 2], shifts=[0.5, 1.0])
    cells = build_cells(cfg, n_subjects=5)
    units = 4 * 3 + 5 * 3  # (ID folds + OOD folds) x seeds
    per_unit = (2 + 1  # video, audio pretrained alone (sources); imu pretrained alone (the baseline)
                + 1 + 1  # the null (imu, second seed), the classical reference (features-rf on imu)
                + 2 * (3 * 2 + 2 + 4))  # per pair: dcat 3 lambdas x MCMA, logit/feature KD, 4 shifts
    assert len(cells) == units * per_unit
    assert len({c["cell"] for c in cells}) == len(cells)
    roles = {c["cell"].split("/")[1]: c["role"] for c in cells if c["cell"].startswith("id-f0of4-s0/")}
    assert [k for k, v in roles.items() if v != "transfer"] == ["src-video", "src-audio", "base-imu", "null-imu",
                                                                "features-rf-imu"]
    assert (roles["base-imu"], roles["null-imu"], roles["features-rf-imu"]) == ("baseline", "null", "reference")
    # a transfer depends on its own unit's sources only; the reference on its unit's baseline (its split)
    for c in cells:
        for d in c["deps"]:
            assert d.split("/")[0] == c["cell"].split("/")[0]
            assert ("/src-" in d) if c["role"] == "transfer" else d.endswith("/base-imu")
    shifts = sorted({c["settings"].get("shift_s") for c in cells if "shift_s" in c["settings"]})
    assert shifts == [-1.0, -0.5, 0.5, 1.0]
    # one split per fold: every seed of a fold has the same split seed and fold; the null trains seed + 1000
    for c in cells:
        st = c["settings"]
        assert st["split_seed"] == 0 and st["fold"] == c["unit"]["fold"]
        assert st["folds"] == (4 if st["split"] == "id" else 5)
        assert st["seed"] == c["unit"]["seed"] + (1000 if c["role"] == "null" else 0)
        # only the sources (read by MCMA transfers) cross-fit their out-of-fold correctness
        assert ("oof_folds" in st) == (c["role"] in ("source", "transfer")), c["cell"]
    # several sources at once: one cell that needs both sources; no shift study (one source only)
    multi = build_cells(ExperimentConfig(data="x", pairs=["video+audio->imu"], lambdas=[1], mcma=[True],
                                         methods=["dcat"], splits=["id"], id_folds=1, seeds=[0], null=False),
                        n_subjects=5)
    assert [(c["cell"], c["deps"]) for c in multi if c["role"] == "transfer"] == [
        ("id-s0/video+audio-to-imu-dcat-lam1-mcma", ["id-s0/src-video", "id-s0/src-audio"])]
    assert [c["cell"] for c in multi if c["role"] != "transfer"] == ["id-s0/src-video", "id-s0/src-audio",
                                                                     "id-s0/base-imu"]
    # a stream that is a source and a target is pretrained once: that run is the baseline and the source
    both = build_cells(ExperimentConfig(data="x", pairs=["video->imu", "imu->video"], lambdas=[1], mcma=[False],
                                        methods=["dcat"], splits=["id"], id_folds=1, seeds=[0], shifts=[], null=False),
                       n_subjects=5)
    assert [(c["role"], c["cell"]) for c in both if c["role"] != "transfer"] == [
        ("baseline", "id-s0/base-video"), ("baseline", "id-s0/base-imu")]
    assert {c["cell"]: c["sources"] for c in both if c["role"] == "transfer"} == {
        "id-s0/video-to-imu-dcat-lam1-nomcma": {"video": "id-s0/base-video"},
        "id-s0/imu-to-video-dcat-lam1-nomcma": {"imu": "id-s0/base-imu"}}
    assert not any("oof_folds" in c["settings"] for c in both)  # no MCMA: no cross-fitting
    with pytest.raises(ExperimentError, match="folds 6"):
        build_cells(ExperimentConfig(data="x", folds=6), n_subjects=5)
    with pytest.raises(ExperimentError, match="SOURCE->TARGET"):
        build_cells(ExperimentConfig(data="x", pairs=["video-imu"]), n_subjects=5)
    with pytest.raises(ExperimentError, match="unknown setting"):
        ExperimentConfig.from_dict({"data": "x", "lambda": [1]})
    with pytest.raises(ExperimentError, match="learning_rate"):
        build_cells(ExperimentConfig(data="x", train={"learning_rate": 1}), n_subjects=5)
    with pytest.raises(ExperimentError, match="null row trains seed 0 \\+ 1000"):
        build_cells(ExperimentConfig(data="x", seeds=[0, 1000]), n_subjects=5)
    assert build_cells(ExperimentConfig(data="x", seeds=[0, 1000], null=False), n_subjects=5)
    with pytest.raises(ExperimentError, match="features-rf"):
        build_cells(ExperimentConfig(data="x", methods=["rf"]), n_subjects=5)


def test_shared_sources_train_each_source_once_per_fold_and_sources_may_see_every_label():
    cfg = ExperimentConfig(data="x", pairs=["video->imu"], lambdas=[1], mcma=[True], methods=["dcat"], splits=["id"],
                           id_folds=3, seeds=[4, 5, 6], shifts=[], shared_sources=True, source_label_fraction=1.0,
                           train={"label_fraction": 0.1})
    cells = build_cells(cfg, n_subjects=5)
    src = [c["cell"] for c in cells if c["role"] == "source"]
    assert src == [f"id-f{k}of3-s4/src-video" for k in range(3)]  # one per fold, with the first seed
    for c in cells:
        if c["role"] == "transfer":  # every seed of fold k reads fold k's source
            assert c["deps"] == [f"id-f{c['unit']['fold']}of3-s4/src-video"], c["cell"]
            assert c["settings"]["seed"] == c["unit"]["seed"] and c["settings"]["label_fraction"] == 0.1
        elif c["role"] == "source":
            assert c["settings"]["label_fraction"] == 1.0
        else:
            assert c["settings"]["label_fraction"] == 0.1
    assert len([c for c in build_cells(ExperimentConfig(**{**cfg.to_dict(), "shared_sources": False}), 5)
                if c["role"] == "source"]) == 9
    with pytest.raises(ExperimentError, match="source_label_fraction"):
        build_cells(ExperimentConfig(data="x", source_label_fraction=0.0), n_subjects=5)


def test_tiny_grid_end_to_end_then_resume(shards, tmp_path):
    out = tmp_path / "exp"
    cfg = _cfg(shards, out)
    res = run_experiment(cfg)
    n_units = 2 + 2  # ID folds 0, 1; OOD folds 0, 1 (one seed)
    per_unit = 1 + 1 + 1 + 1 + 2 + 1 + 2  # source, baseline, null, features-rf, dcat MCMA on/off, logit KD, shift -1/+1
    assert res["total"] == n_units * per_unit and res["ran"] == res["total"] and not res["failed"]
    rows = _rows(out)
    assert len(rows) == res["total"] and list(rows[0]) == list(COLUMNS)
    by = {r["cell"]: r for r in rows}
    for r in rows:
        assert 0.0 <= float(r["test_macro_f1"]) <= 1.0 and r["run_dir"]
    # each stream is pretrained once per unit (video: the source; imu: the baseline), plus the null
    pretrain_runs = [p.parent for p in out.glob("runs/*/*/config.json")
                     if json.loads(p.read_text())["stage"] == "pretrain"]
    assert len(pretrain_runs) == 3 * n_units
    assert not [p for p in out.glob("runs/*/*/config.json") if json.loads(p.read_text()).get("args", {}).get("method")
                == "none"]  # no transfer --method none baseline any more
    for p in out.glob("runs/*/*/config.json"):
        c = json.loads(p.read_text())
        unit = p.parent.parent.name
        src_split = json.loads((out / "runs" / unit / "src-video" / "split.json").read_text())
        if c["stage"] == "transfer":
            assert Path(c["source"]["run_dir"]) == out / "runs" / unit / "src-video"
        # the transfers, the baseline and the null use the source's split: the source never saw the
        # target's test part, and the paired difference compares runs on the same windows
        assert json.loads((p.parent / "split.json").read_text())["recordings"] == src_split["recordings"], p
    # the source cross-fitted its out-of-fold correctness (2 folds here) for the MCMA transfers; the
    # baseline did not
    assert all((out / "runs" / u.name / "src-video" / "oof-correct.npz").is_file() for u in (out / "runs").iterdir())
    assert not list(out.glob("runs/*/base-imu/oof-correct.npz"))
    # out of distribution: the two folds hold out different subjects, and each source trained without them
    tests = {by[f"ood-f{k}of2-s0/src-video"]["test_subjects"] for k in (0, 1)}
    assert len(tests) == 2 and set(";".join(tests).split(";")) == {"s01", "s02", "s03", "s04"}
    # in distribution: the two folds test different time blocks of every subject
    id_tests = [json.loads((out / "runs" / f"id-f{k}of2-s0" / "base-imu" / "split.json").read_text()) for k in (0, 1)]
    assert id_tests[0]["recordings"] != id_tests[1]["recordings"]
    # rows carry the settings; the transfer's source F1 is its unit's source row
    r = by["id-f0of2-s0/video-to-imu-dcat-lam1-mcma"]
    assert (r["role"], r["method"], r["lam"], r["mcma"], r["src"], r["tgt"]) == ("transfer", "dcat", "1.0", "true",
                                                                                 "video", "imu")
    assert float(r["src_test_macro_f1"]) == pytest.approx(float(by["id-f0of2-s0/src-video"]["test_macro_f1"]))
    assert 0.0 <= float(r["keep_rate"]) <= 1.0
    assert by["id-f0of2-s0/video-to-imu-dcat-lam1-mcma-shift-imu+1"]["shift_s"] == "1.0"
    null = by["id-f0of2-s0/null-imu"]
    assert (null["role"], null["seed"], null["train_seed"]) == ("null", "0", "1000")
    ref = by["ood-f1of2-s0/features-rf-imu"]
    assert ref["role"] == "reference" and ref["method"] == "features-rf" and ref["test_subjects"] == \
        by["ood-f1of2-s0/base-imu"]["test_subjects"]
    base = by["id-f0of2-s0/base-imu"]
    assert float(base["gap"]) == pytest.approx(float(base["train_macro_f1"]) - float(base["val_macro_f1"]))
    assert base["method"] == "pretrain" and base["fingerprint"] and json.loads(base["test_subject_f1"])
    # exactly one D-CAT cell per unit is chosen on validation, the one with the best validation macro-F1
    for u in ("id-f0of2-s0", "id-f1of2-s0", "ood-f0of2-s0", "ood-f1of2-s0"):
        dc = [by[f"{u}/video-to-imu-dcat-lam1-{m}"] for m in ("mcma", "nomcma")]
        chosen = [x for x in dc if x["val_chosen"] == "true"]
        assert len(chosen) == 1 and float(chosen[0]["val_macro_f1"]) == max(float(x["val_macro_f1"]) for x in dc)
    # the table: the paired difference of D-CAT (MCMA) to the baseline over the 2 OOD test sets
    md = (out / "results.md").read_text()
    diffs = [float(by[f"{u}/video-to-imu-dcat-lam1-mcma"]["test_macro_f1"]) - float(by[f"{u}/base-imu"]["test_macro_f1"])
             for u in ("ood-f0of2-s0", "ood-f1of2-s0")]
    want = f"{np.mean(diffs):+.3f}"
    line = next(x for x in md.splitlines() if x.startswith("| out of distribution | video->imu D-CAT lambda 1, MCMA |"))
    assert want in line and "| 2 (2 runs" in line, (want, line)
    for name in ("imu alone, second seed (null)", "imu window features + random forest (classical)",
                 "video->imu D-CAT, lambda and MCMA chosen on validation"):
        assert f"| out of distribution | {name} |" in md
    assert "| in distribution | imu alone" in md and "logit KD" in md and "no MCMA" in md and "## Headline" in md
    assert "Sync robustness" in md and "Overfitting" in md and "keep rate" in md
    for png in ("lambda.png", "mcma.png", "id_vs_ood.png", "shift.png"):
        assert (out / "plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # every JSON the grid wrote (experiment.json, cell.json, configs, splits, metrics, reports) is strict
    assert check_tree(out) >= 20
    # resume: nothing is retrained
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/best.pt")}
    res2 = run_experiment(cfg)
    assert res2["ran"] == 0 and res2["skipped"] == res["total"]
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/best.pt")} == mtimes
    assert _rows(out) == rows
    # a cell cut off before it finished (no cell.json) is the only one run again
    cut = out / "runs" / "ood-f1of2-s0" / "video-to-imu-logit-kd-lam1"
    (cut / "cell.json").unlink()
    res3 = run_experiment(cfg)
    assert res3["ran"] == 1 and res3["skipped"] == res["total"] - 1
    nosec = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]
    assert nosec(_rows(out)) == nosec(rows)  # it resumed from last.pt at the end of training: same numbers
    # other settings for the same cells are refused, not mixed in
    with pytest.raises(ExperimentError, match="other settings.*epochs"):
        run_experiment(_cfg(shards, out, train={**TRAIN, "epochs": 3}))


def test_a_failed_cell_blocks_only_what_needs_it(shards, tmp_path, monkeypatch):
    real = ex.run_cell

    def flaky(cell, *a, **k):
        if cell["cell"] == "id-s0/src-video":
            raise ex.ExperimentError("disk full (simulated)")
        return real(cell, *a, **k)

    monkeypatch.setattr(ex, "run_cell", flaky)
    out = tmp_path / "exp"
    cfg = _cfg(shards, out, splits=["id"], id_folds=1, seeds=[0, 1], methods=["dcat"], mcma=[True], shifts=[],
               null=False)
    res = run_experiment(cfg)
    assert list(res["failed"]) == ["id-s0/src-video"] and "disk full" in res["failed"]["id-s0/src-video"]
    assert res["blocked"] == 1  # that unit's transfer (its baseline needs no source)
    assert res["ran"] == 4  # seed 1's unit is complete
    assert {r["cell"] for r in _rows(out)} == {"id-s0/base-imu", "id-s1/src-video", "id-s1/base-imu",
                                               "id-s1/video-to-imu-dcat-lam1-mcma"}
    assert "disk full" in (out / "failed.json").read_text()
    monkeypatch.setattr(ex, "run_cell", real)
    res = run_experiment(cfg)  # fixed: the same command finishes the grid
    assert res["ran"] == 2 and res["skipped"] == 4 and not res["failed"] and not (out / "failed.json").exists()


def test_parallel_cells_give_the_same_numbers(shards, tmp_path):
    kw = dict(splits=["id"], id_folds=1, seeds=[0], methods=["dcat"], mcma=[True], shifts=[], null=False)
    one = run_experiment(_cfg(shards, tmp_path / "one", **kw))
    two = run_experiment(_cfg(shards, tmp_path / "two", jobs=2, **kw))
    assert one["ran"] == two["ran"] == 3
    f1 = lambda res: {r["cell"]: (r["test_macro_f1"], r["val_macro_f1"], r["train_macro_f1"]) for r in res["rows"]}
    assert f1(one) == f1(two)


def test_cli_spec_options_and_errors(shards, tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(f'data = "{shards}"\npairs = ["video->imu", "audio->imu"]\nlambdas = [0.1, 1]\nseeds = [0]\n'
                    'splits = ["id"]\nid_folds = 1\nshifts = []\n[train]\nepochs = 1\n')
    r = CliRunner().invoke(app, ["experiment", str(spec), "--dry-run", "--out", str(tmp_path / "e")])
    assert r.exit_code == 0, r.output
    lines = [x for x in r.output.splitlines() if x.startswith(("source", "baseline", "null", "reference", "transfer"))]
    # sources video, audio; baseline imu, its null, the classical reference; per pair 2 lambdas x 2 MCMA + logit
    # KD + feature KD
    assert len(lines) == 2 + 1 + 1 + 1 + 2 * (4 + 2)
    assert sum(x.startswith(("null", "reference")) for x in lines) == 2
    # an option overrides the spec
    r = CliRunner().invoke(app, ["experiment", str(spec), "--dry-run", "--lambdas", "1", "--mcma", "on",
                                 "--methods", "dcat", "--json"])
    assert r.exit_code == 0, r.output
    cells = json.loads(r.output)
    assert [c["cell"] for c in cells if c["role"] == "transfer"] == ["id-s0/video-to-imu-dcat-lam1-mcma",
                                                                      "id-s0/audio-to-imu-dcat-lam1-mcma"]
    assert all(c["settings"]["epochs"] == 1 for c in cells)
    r = CliRunner().invoke(app, ["experiment", "--data", str(shards), "--pairs", "video->gyro", "--out",
                                 str(tmp_path / "g")])
    assert r.exit_code == 1 and "gyro is not in" in r.output and not (tmp_path / "g" / "runs").exists()
    bad = tmp_path / "bad.toml"
    bad.write_text('data = "x"\nlambda = [1]\n')
    r = CliRunner().invoke(app, ["experiment", str(bad)])
    assert r.exit_code == 1 and "bad.toml" in r.output and "lambda" in r.output
    r = CliRunner().invoke(app, ["experiment", "--quick", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "experiments/quick" in r.output.splitlines()[-1]
