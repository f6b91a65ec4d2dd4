"""pipelines.study.report: paired statistics, tables, CSV, Markdown and plots on a synthetic grid whose
answers are built in.

The grid (target ``imu``, source ``video``):
- ``id``: fold 0, seeds 0, 1, 2; ``ood``: folds 0, 1, seeds 0, 1, 2.
- baseline test macro-F1 = 0.60 + 0.05 * seed (id), 0.40 + 0.10 * fold + 0.05 * seed (ood): the
  baselines differ a lot between seeds and folds, so pairing with the wrong one changes the numbers.
- a transfer run = its own baseline + EFFECT[config] + NOISE[seed]; NOISE = -0.01, 0, +0.01 has mean 0,
  so the mean paired difference of a complete configuration is EFFECT, with sample std 0.01 over the
  3 id seeds and sqrt(4e-4 / 5) over the 6 ood pairs.
- logit KD lacks the run (ood, fold 1, seed 2): its ood mean difference is 0.01 + (-0.01 + 0 + 0.01
  - 0.01 + 0) / 5 = 0.008 over 5 pairs, while mean(transfer) - mean(baseline) would be 0.008 - 0.02.
- shift rows (D-CAT lambda 1 MCMA on, ``video`` shifted): gain = 0.06 - 0.04 * |shift| + NOISE.
- baseline gap = 0.30 - 0.10 * seed + 0.02 * fold.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipelines.study import report

SEEDS = (0, 1, 2)
NOISE = {0: -0.01, 1: 0.0, 2: 0.01}
DCAT = {(0.1, True): 0.03, (0.1, False): 0.02, (1.0, True): 0.06, (1.0, False): 0.04,
        (10.0, True): -0.05, (10.0, False): -0.06}
LOGIT, FEATURE = 0.01, 0.02
SHIFTS = (-1.0, -0.5, 0.5, 1.0)
PNG = b"\x89PNG\r\n\x1a\n"
T975 = {2: 4.302653, 5: 2.570582}  # t_{0.975, dof}, from a t table


def _row(**kw) -> dict:
    r = {c: None for c in report.COLUMNS}
    r.update(test_subjects="", src="", shift_stream="", shift_s=0.0, run_dir="", epochs_run=10, best_epoch=7,
             seconds=1.5, n_test=40)
    r.update(kw)
    if r["cell"] is None:
        r["cell"] = "{split}-f{fold}-s{seed}/{tgt}-{method}-{lam}-{mcma}-{shift_s}".format(**r)
    return r


def _baseline_f1(split, fold, seed):
    return (0.60 if split == "id" else 0.40 + 0.10 * fold) + 0.05 * seed


def _pairs():
    for split, folds in (("id", (0,)), ("ood", (0, 1))):
        for fold in folds:
            for seed in SEEDS:
                yield split, fold, seed


def make_grid(shift=True, seeds=SEEDS) -> list[dict]:
    rows = []
    for split, fold, seed in _pairs():
        if seed not in seeds:
            continue
        common = dict(split=split, fold=fold, seed=seed, test_subjects="" if split == "id" else f"s0{fold}")
        b = _baseline_f1(split, fold, seed)
        rows.append(_row(role="source", tgt="video", method="pretrain",
                         test_macro_f1=(0.90 if split == "id" else 0.70) + NOISE[seed], **common))
        rows.append(_row(role="baseline", tgt="imu", method="none", test_macro_f1=b, train_macro_f1=0.99,
                         val_macro_f1=0.99 - (0.30 - 0.10 * seed + 0.02 * fold),
                         gap=0.30 - 0.10 * seed + 0.02 * fold, **common))
        t = dict(role="transfer", tgt="imu", src="video", **common)
        for (lam, mcma), eff in DCAT.items():
            rows.append(_row(method="dcat", lam=lam, mcma=mcma, test_macro_f1=b + eff + NOISE[seed], **t))
        if not (split == "ood" and fold == 1 and seed == 2):
            rows.append(_row(method="logit-kd", lam=1.0, mcma=False, temperature=4.0,
                             test_macro_f1=b + LOGIT + NOISE[seed], **t))
        rows.append(_row(method="feature-kd", lam=1.0, mcma=False, test_macro_f1=b + FEATURE + NOISE[seed], **t))
        if shift:
            for s in SHIFTS:
                rows.append(_row(method="dcat", lam=1.0, mcma=True, shift_stream="video", shift_s=s,
                                 test_macro_f1=b + 0.06 - 0.04 * abs(s) + NOISE[seed], **t))
    for r in rows:
        if r["role"] == "transfer":
            r["src_test_macro_f1"] = (0.90 if r["split"] == "id" else 0.70) + NOISE[r["seed"]]
            r["test_acc"] = r["test_macro_f1"] + 0.05
    return rows


@pytest.fixture(scope="module")
def grid():
    return make_grid()


@pytest.fixture(scope="module")
def summary(grid):
    return report.summary_table(grid)


def _entry(summary, split, model):
    hits = [e for e in summary if e["split"] == split and e["model"] == model]
    assert len(hits) == 1, (split, model, [e["model"] for e in summary])
    return hits[0]


# --------------------------------------------------------------------------------------- statistics

def test_paired_ci_matches_hand_computed_t_interval():
    ci = report.paired_ci([0.1, 0.2, 0.3])
    half = 4.302653 * 0.1 / math.sqrt(3)  # t_{0.975,2} (from a t table) * s / sqrt(n) = 0.2484
    assert ci["n"] == 3
    assert ci["mean"] == pytest.approx(0.2)
    assert ci["lo"] == pytest.approx(0.2 - half, abs=1e-7)
    assert ci["hi"] == pytest.approx(0.2 + half, abs=1e-7)
    assert half == pytest.approx(0.2484, abs=1e-4)
    ci90 = report.paired_ci([0.1, 0.2, 0.3], level=0.90)
    assert ci90["hi"] - ci90["mean"] == pytest.approx(2.919986 * 0.1 / math.sqrt(3), abs=1e-7)


def test_paired_ci_small_n_and_missing_values():
    one = report.paired_ci([0.05])
    assert one == {"mean": 0.05, "lo": None, "hi": None, "n": 1, "level": 0.95}
    assert report.paired_ci([])["mean"] is None
    assert report.paired_ci([0.1, None, float("nan"), 0.3])["n"] == 2
    assert report.fmt_diff(0.05, None, None, 1) == "+0.050 (n=1, no CI)"
    assert report.fmt_diff(0.021, -0.0104, 0.0521, 3) == "+0.021 [-0.010, +0.052]"
    assert report.fmt_signed(-0.0001) == "+0.000"


def test_mean_std():
    m, s, n = report.mean_std([0.5, 0.7, None])
    assert (m, n) == (pytest.approx(0.6), 2) and s == pytest.approx(math.sqrt(0.02))
    m, s, n = report.mean_std([0.5])
    assert m == 0.5 and n == 1 and math.isnan(s)


# ------------------------------------------------------------------------------------------ summary

def test_summary_rows_and_columns(summary):
    assert all(tuple(e) == report.SUMMARY_KEYS for e in summary)
    dcat = [f"video->imu D-CAT lambda {lam}, {m}" for lam in ("0.1", "1", "10") for m in ("MCMA", "no MCMA")]
    models = ["imu alone", *dcat, "video->imu logit KD T 4", "video->imu feature KD", "video alone (source)"]
    assert [(e["tgt"], e["split"], e["model"]) for e in summary] == \
        [("imu", s, m) for s in ("id", "ood") for m in models]
    base = _entry(summary, "ood", "imu alone")
    vals = [_baseline_f1("ood", f, s) for f in (0, 1) for s in SEEDS]
    assert base["n_runs"] == 6 and base["f1_mean"] == pytest.approx(np.mean(vals))
    assert base["f1_std"] == pytest.approx(np.std(vals, ddof=1))
    src = _entry(summary, "id", "video alone (source)")
    assert src["f1_mean"] == pytest.approx(0.90) and src["f1_std"] == pytest.approx(0.01)
    assert src["diff_mean"] is None and base["n_pairs"] is None


@pytest.mark.parametrize("lam,mcma", sorted(DCAT))
def test_summary_paired_difference_is_the_built_in_effect(summary, lam, mcma):
    label = f"video->imu D-CAT lambda {lam:g}, {'MCMA' if mcma else 'no MCMA'}"
    eff = DCAT[(lam, mcma)]
    e = _entry(summary, "id", label)
    half = T975[2] * 0.01 / math.sqrt(3)
    assert e["n_pairs"] == 3 and e["n_unpaired"] == 0
    assert e["diff_mean"] == pytest.approx(eff, abs=1e-12)
    assert (e["diff_lo"], e["diff_hi"]) == (pytest.approx(eff - half, abs=1e-7), pytest.approx(eff + half, abs=1e-7))
    assert e["n_improved"] == sum(eff + NOISE[s] > 1e-12 for s in SEEDS)
    o = _entry(summary, "ood", label)
    half = T975[5] * math.sqrt(4e-4 / 5) / math.sqrt(6)
    assert o["n_pairs"] == 6
    assert o["diff_mean"] == pytest.approx(eff, abs=1e-12)
    assert o["diff_hi"] - o["diff_mean"] == pytest.approx(half, abs=1e-7)


def test_summary_pairs_by_split_fold_seed_with_missing_run(summary, grid):
    e = _entry(summary, "ood", "video->imu logit KD T 4")
    assert e["n_pairs"] == 5 and e["n_runs"] == 5
    assert e["diff_mean"] == pytest.approx(0.008, abs=1e-12)
    assert e["n_improved"] == 3  # diffs 0, .01, .02, 0, .01
    base = _entry(summary, "ood", "imu alone")
    assert e["f1_mean"] - base["f1_mean"] == pytest.approx(0.008 - 0.02)  # what unpaired means would say


def test_pairing_uses_split_fold_seed_and_target():
    rows = [
        _row(role="baseline", split="ood", fold=0, seed=0, tgt="imu", method="none", test_macro_f1=0.5),
        _row(role="baseline", split="ood", fold=1, seed=0, tgt="imu", method="none", test_macro_f1=0.8),
        _row(role="baseline", split="ood", fold=0, seed=1, tgt="imu", method="none", test_macro_f1=0.1),
        _row(role="baseline", split="id", fold=0, seed=0, tgt="imu", method="none", test_macro_f1=0.3),
        _row(role="baseline", split="ood", fold=1, seed=0, tgt="audio", method="none", test_macro_f1=0.0),
        _row(role="transfer", split="ood", fold=1, seed=0, tgt="imu", src="video", method="dcat", lam=1.0,
             mcma=True, test_macro_f1=0.85),
    ]
    e = _entry(report.summary_table(rows), "ood", "video->imu D-CAT lambda 1, MCMA")
    assert e["n_pairs"] == 1 and e["diff_mean"] == pytest.approx(0.05) and e["diff_lo"] is None
    assert "| out of distribution | video->imu D-CAT lambda 1, MCMA | 0.850 (n=1, no std) | " \
           "+0.050 (n=1, no CI) | 1 | 1/1 |" in report.render_markdown(rows)
    # an unpaired transfer run counts for its mean, not for the difference
    rows.append(_row(role="transfer", split="ood", fold=5, seed=0, tgt="imu", src="video", method="dcat",
                     lam=1.0, mcma=True, test_macro_f1=0.95))
    e = _entry(report.summary_table(rows), "ood", "video->imu D-CAT lambda 1, MCMA")
    assert (e["n_runs"], e["n_pairs"], e["n_unpaired"]) == (2, 1, 1) and e["diff_mean"] == pytest.approx(0.05)


def test_duplicate_baseline_and_unknown_role_are_errors():
    b = _row(role="baseline", split="id", fold=0, seed=0, tgt="imu", method="none", test_macro_f1=0.5)
    with pytest.raises(ValueError, match="ambiguous"):
        report.summary_table([b, dict(b, cell="other")])
    with pytest.raises(ValueError, match="role"):
        report.summary_table([dict(b, role="teacher")])


# ------------------------------------------------------------------------------- shift and overfit

def test_shift_table(grid):
    tab = report.shift_table(grid)
    assert all(tuple(e) == report.SHIFT_KEYS for e in tab)
    assert [(e["split"], e["shift_s"]) for e in tab] == \
        [(s, x) for s in ("id", "ood") for x in (-1.0, -0.5, 0.0, 0.5, 1.0)]
    for e in tab:
        assert e["diff_mean"] == pytest.approx(0.06 - 0.04 * abs(e["shift_s"]), abs=1e-12)
        assert e["n_pairs"] == (3 if e["split"] == "id" else 6)
        assert e["model"] == "video->imu D-CAT lambda 1, MCMA" and e["shift_stream"] == "video"
    assert report.shift_table(make_grid(shift=False)) == []


def test_overfit_table(grid):
    tab = report.overfit_table(grid)
    assert [(e["split"], e["model"], e["n"]) for e in tab] == \
        [("id", "video->imu D-CAT lambda 1, MCMA", 3), ("ood", "video->imu D-CAT lambda 1, MCMA", 6)]
    for e in tab:
        gap = [p["gap"] for p in e["pairs"]]
        gain = [p["gain"] for p in e["pairs"]]
        assert gap == pytest.approx([0.30 - 0.10 * p["seed"] + 0.02 * p["fold"] for p in e["pairs"]])
        assert gain == pytest.approx([0.06 + NOISE[p["seed"]] for p in e["pairs"]])
        assert e["pearson_r"] == pytest.approx(np.corrcoef(gap, gain)[0, 1])
        assert 0.0 <= e["pearson_p"] <= 1.0
    assert tab[0]["pearson_r"] == pytest.approx(-1.0)


# -------------------------------------------------------------------------------------- CSV, markdown

def test_csv_round_trip_is_exact(grid, tmp_path):
    rows = [dict(r) for r in grid]
    rows[0]["test_macro_f1"] = 0.1 + 0.2  # 0.30000000000000004
    rows[1]["seconds"] = np.float64(1 / 3)
    rows[2]["extra_note"] = "a, \"quoted\" note"
    path = report.write_csv(rows, tmp_path / "sub" / "results.csv")
    back = report.read_csv(path)
    assert len(back) == len(rows)
    assert back[0]["test_macro_f1"] == 0.1 + 0.2 and back[1]["seconds"] == 1 / 3
    assert back[2]["extra_note"] == "a, \"quoted\" note" and back[3]["extra_note"] is None
    for r, b in zip(rows, back):
        assert {c: b[c] for c in report.COLUMNS} == {c: r[c] for c in report.COLUMNS}
        assert type(b["mcma"]) is type(r["mcma"]) and type(b["seed"]) is int
    assert path.read_text().splitlines()[0].split(",")[:3] == ["cell", "role", "split"]
    assert not [p for p in path.parent.iterdir() if p.name != "results.csv"]  # no temp file left


def test_markdown(grid):
    md = report.render_markdown(grid, title="Synthetic grid", notes="built-in answers")
    assert md == report.render_markdown(list(reversed(grid)), title="Synthetic grid", notes="built-in answers")
    lines = md.splitlines()
    expected = [
        "# Synthetic grid",
        "built-in answers",
        "## Target: imu",
        "| setting | model | macro-F1 (mean ± std) | difference to imu alone [95% CI] | n | improved |",
        "| in distribution | imu alone | 0.650 ± 0.050 | - | 3 | - |",
        "| in distribution | video->imu D-CAT lambda 1, MCMA | 0.710 ± 0.060 | +0.060 [+0.035, +0.085] | 3 | 3/3 |",
        "| in distribution | video->imu D-CAT lambda 10, no MCMA | 0.590 ± 0.060 | -0.060 [-0.085, -0.035] | 3 | 0/3 |",
        "| in distribution | video alone (source) | 0.900 ± 0.010 | - | 3 | - |",
        "| out of distribution | video->imu logit KD T 4 | 0.488 ± 0.061 | +0.008 [-0.002, +0.018] | 5 | 3/5 |",
        "| out of distribution | video->imu feature KD | 0.520 ± 0.077 | +0.020 [+0.011, +0.029] | 6 | 6/6 |",
        "## Sync robustness: training-time misalignment",
        "| in distribution | video->imu D-CAT lambda 1, MCMA | video | -1 | 0.670 ± 0.060 | +0.020 [-0.005, +0.045] | 3 |",
        "| out of distribution | video->imu D-CAT lambda 1, MCMA | video | 0 | 0.560 ± 0.077 | +0.060 [+0.051, +0.069] | 6 |",
        "## Overfitting before transfer and the D-CAT gain",
        "### in distribution: video->imu D-CAT lambda 1, MCMA",
        "| 0 | 2 | 0.100 | 0.700 | 0.770 | +0.070 |",
        "Pearson correlation of gap and gain: r = -1.000 (p = 0, n = 3).",
        "## How to read this",
    ]
    for line in expected:
        assert line in lines, line
    pos = [lines.index(x) for x in ("# Synthetic grid", "## Target: imu", "## Sync robustness: training-time misalignment",
                                    "## Overfitting before transfer and the D-CAT gain", "## How to read this")]
    assert pos == sorted(pos)
    # lambdas numerically, MCMA on before off
    order = [x.split(" | ")[1] for x in lines if x.startswith("| in distribution | video->imu D-CAT")]
    assert order[:6] == [f"video->imu D-CAT lambda {lam}, {m}" for lam in ("0.1", "1", "10") for m in ("MCMA", "no MCMA")]
    assert "excludes 0" in md

    plain = report.render_markdown(make_grid(shift=False))
    assert "Sync robustness" not in plain and "## Target: imu" in plain


def test_markdown_single_seed_says_no_ci():
    md = report.render_markdown(make_grid(shift=False, seeds=(1,)))
    assert "| in distribution | video->imu D-CAT lambda 1, MCMA | 0.710 (n=1, no std) | +0.060 (n=1, no CI) | 1 | 1/1 |" \
        in md.splitlines()
    assert "not computed (fewer than 3 pairs, n=1)" in md


# ------------------------------------------------------------------------------------------- plots

def test_write_report_files_and_plots(grid, tmp_path):
    out = report.write_report(grid, tmp_path, title="Synthetic grid")
    names = sorted(p.name for p in out["plots"])
    assert names == ["id_vs_ood.png", "lambda.png", "mcma.png", "shift.png"]
    for p in out["plots"]:
        assert p.parent == tmp_path / "plots" and p.read_bytes()[:8] == PNG and p.stat().st_size > 1000
    assert report.read_csv(out["csv"])[5]["cell"] == grid[5]["cell"]
    md = out["markdown"].read_text()
    assert "![shift](plots/shift.png)" in md and md.startswith("# Synthetic grid")

    # one seed (no std: no error bars, no failure), no shift rows, MCMA on only: no shift.png, no
    # mcma.png, and the stale ones from the run above are removed
    rows = [r for r in make_grid(shift=False, seeds=(0,)) if r["mcma"] is not False]
    out = report.write_report(rows, tmp_path)
    assert sorted(p.name for p in out["plots"]) == ["id_vs_ood.png", "lambda.png"]
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["id_vs_ood.png", "lambda.png"]
    assert all(p.read_bytes()[:8] == PNG for p in out["plots"])
    assert "mcma.png" not in out["markdown"].read_text()


def test_plots_skipped_without_their_rows(tmp_path):
    assert report.plot_all([], tmp_path) == []
    assert not list(tmp_path.iterdir())


def test_sources_no_transfer_refers_to_get_their_own_section():
    rows = [r for r in make_grid(shift=False, seeds=(0,)) if r["role"] != "transfer" or r["method"] == "feature-kd"]
    rows.append(_row(role="source", split="id", fold=0, seed=0, tgt="audio", method="pretrain", test_macro_f1=0.3))
    assert [(e["tgt"], e["split"], e["model"]) for e in report.summary_table(rows)] == [
        ("imu", "id", "imu alone"), ("imu", "id", "video->imu feature KD"), ("imu", "id", "video alone (source)"),
        ("imu", "ood", "imu alone"), ("imu", "ood", "video->imu feature KD"), ("imu", "ood", "video alone (source)"),
        ("audio", "id", "audio alone (source)")]


def test_model_labels():
    assert report.model_label("transfer", "imu", "video+audio", "dcat", 0.1, False) == \
        "video+audio->imu D-CAT lambda 0.1, no MCMA"
    assert report.model_label("transfer", "imu", "video", "logit-kd", 1.0, True, 4.0, show_lam=False) == \
        "video->imu logit KD T 4, MCMA"
    rows = [_row(role="transfer", split="id", fold=0, seed=0, tgt="imu", src="video", method="feature-kd", lam=lam,
                 mcma=False, test_macro_f1=0.5) for lam in (10.0, 0.5)]
    assert [e["model"] for e in report.summary_table(rows)] == \
        ["video->imu feature KD lambda 0.5", "video->imu feature KD lambda 10"]
