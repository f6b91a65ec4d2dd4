"""pipelines.study.report: paired statistics over test sets, tables, CSV, Markdown and plots on a
synthetic grid whose answers are built in.

The grid (target ``imu``, source ``video``), seeds 0 and 1:
- ``id``: folds 0, 1, 2; ``ood``: folds 0..4. A fold is one test set; both seeds of a fold test it.
- baseline test macro-F1 = (0.60 id, 0.40 ood) + 0.05 * fold + 0.03 * seed: baselines differ a lot
  between folds and seeds, so pairing with the wrong one changes the numbers.
- a compared run = its own baseline + EFFECT + FOLD[fold] + SEED[seed]; SEED = -0.01, +0.01 cancels
  within a fold, FOLD has mean 0 over the folds (id: -0.02, 0, 0.02; ood: -0.02, -0.01, 0, 0.01,
  0.02), so a complete configuration's fold means are EFFECT + FOLD[fold]: mean EFFECT, sample std
  0.02 (id, n = 3) and sqrt(0.001 / 4) (ood, n = 5).
- logit KD lacks the run (ood, fold 1, seed 1): fold 1's mean is then its seed 0 alone,
  0.01 + FOLD[1] + SEED[0] = -0.01.
- D-CAT validation scores: lambda 0.1 with MCMA is best on validation in every unit (val 0.80),
  except (id, fold 0, seed 0), where lambda 0.1 and lambda 1 with MCMA tie (the smaller lambda wins);
  on test lambda 1 with MCMA is the best setting. So the row chosen on validation has the effect of
  lambda 0.1 with MCMA (0.03), not the best test row's (0.06).
- D-CAT lambda 10 with MCMA off gives the same runs as with MCMA on (same fingerprint): it is
  marked identical. MCMA rows keep 70% of the windows, the others 100%.
- the null (seed + 1000): NULL = 0 effect; the reference (features-rf): effect 0.05.
- shift rows (D-CAT lambda 1 MCMA on, ``video`` shifted): gain = 0.06 - 0.04 * |shift| + noise.
- baseline gap = 0.30 - 0.10 * seed + 0.02 * fold.
- per-subject test macro-F1 (id rows): the run's score + SUBJ[s] for transfers, the baseline's
  score for baselines: each subject's paired difference is the run's + SUBJ[s].
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pipelines.study import report

SEEDS = (0, 1)
FOLDS = {"id": (0, 1, 2), "ood": (0, 1, 2, 3, 4)}
SEED = {0: -0.01, 1: 0.01}
FOLD = {"id": {0: -0.02, 1: 0.0, 2: 0.02}, "ood": {0: -0.02, 1: -0.01, 2: 0.0, 3: 0.01, 4: 0.02}}
DCAT = {(0.1, True): 0.03, (0.1, False): 0.02, (1.0, True): 0.06, (1.0, False): 0.04,
        (10.0, True): -0.05, (10.0, False): -0.05}
VAL = {(0.1, True): 0.80, (0.1, False): 0.70, (1.0, True): 0.75, (1.0, False): 0.60,
       (10.0, True): 0.50, (10.0, False): 0.50}
LOGIT, FEATURE, REFERENCE = 0.01, 0.02, 0.05
SHIFTS = (-1.0, -0.5, 0.5, 1.0)
SUBJ = {"s1": -0.03, "s2": -0.01, "s3": 0.01, "s4": 0.03}
PNG = b"\x89PNG\r\n\x1a\n"
T975 = {2: 4.302653, 4: 2.776445}  # t_{0.975, dof}, from a t table
SD = {"id": 0.02, "ood": math.sqrt(0.001 / 4)}


def _row(**kw) -> dict:
    r = {c: None for c in report.COLUMNS}
    r.update(test_subjects="", src="", shift_stream="", shift_s=0.0, run_dir="", epochs_run=10, best_epoch=7,
             seconds=1.5, n_test=40, test_subject_f1="", fingerprint="", same_as="")
    r.update(kw)
    if r["cell"] is None:
        r["cell"] = "{split}-f{fold}-s{seed}/{role}-{tgt}-{method}-{lam}-{mcma}-{shift_s}".format(**r)
    if not r["fingerprint"]:
        r["fingerprint"] = r["cell"]
    return r


def _baseline_f1(split, fold, seed):
    return (0.60 if split == "id" else 0.40) + 0.05 * fold + 0.03 * seed


def _units(seeds=SEEDS):
    for split in ("id", "ood"):
        for fold in FOLDS[split]:
            for seed in seeds:
                yield split, fold, seed


def _subjects(f1, split, extra=True):
    if split != "id":
        return ""
    return json.dumps({s: f1 + (d if extra else 0.0) for s, d in SUBJ.items()})


def make_grid(shift=True, seeds=SEEDS) -> list[dict]:
    rows = []
    for split, fold, seed in _units(seeds):
        common = dict(split=split, fold=fold, seed=seed, test_subjects="" if split == "id" else f"s0{fold}")
        b = _baseline_f1(split, fold, seed)
        noise = FOLD[split][fold] + SEED[seed]
        rows.append(_row(role="source", tgt="video", method="pretrain",
                         test_macro_f1=(0.90 if split == "id" else 0.70) + SEED[seed], **common))
        rows.append(_row(role="baseline", tgt="imu", method="pretrain", test_macro_f1=b, train_macro_f1=0.99,
                         val_macro_f1=0.99 - (0.30 - 0.10 * seed + 0.02 * fold),
                         gap=0.30 - 0.10 * seed + 0.02 * fold, test_subject_f1=_subjects(b, split, False), **common))
        rows.append(_row(role="null", tgt="imu", method="pretrain", train_seed=seed + 1000, test_macro_f1=b + noise,
                         test_subject_f1=_subjects(b + noise, split), **common))
        rows.append(_row(role="reference", tgt="imu", method="features-rf", test_macro_f1=b + REFERENCE + noise,
                         **common))
        t = dict(role="transfer", tgt="imu", src="video", **common)
        for (lam, mcma), eff in DCAT.items():
            val = VAL[(lam, mcma)] + (0.05 if (split, fold, seed, lam, mcma) == ("id", 0, 0, 1.0, True) else 0.0)
            fp = f"{split}-{fold}-{seed}-dcat-{lam}" + ("" if lam == 10.0 else f"-{mcma}")
            rows.append(_row(method="dcat", lam=lam, mcma=mcma, test_macro_f1=b + eff + noise, val_macro_f1=val,
                             keep_rate=0.7 if mcma else 1.0, fingerprint=fp,
                             test_subject_f1=_subjects(b + eff + noise, split), **t))
        if not (split == "ood" and fold == 1 and seed == 1):
            rows.append(_row(method="logit-kd", lam=1.0, mcma=False, temperature=4.0,
                             test_macro_f1=b + LOGIT + noise, **t))
        rows.append(_row(method="feature-kd", lam=1.0, mcma=False, test_macro_f1=b + FEATURE + noise, **t))
        if shift:
            for s in SHIFTS:
                rows.append(_row(method="dcat", lam=1.0, mcma=True, shift_stream="video", shift_s=s,
                                 test_macro_f1=b + 0.06 - 0.04 * abs(s) + noise, **t))
    for r in rows:
        if r["role"] == "transfer":
            r["src_test_macro_f1"] = (0.90 if r["split"] == "id" else 0.70) + SEED[r["seed"]]
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
    models = ["imu alone", "imu alone, second seed (null)", "imu window features + random forest (classical)",
              "video->imu D-CAT, lambda and MCMA chosen on validation", *dcat, "video->imu logit KD T 4",
              "video->imu feature KD", "video alone (source)"]
    assert [(e["tgt"], e["split"], e["model"]) for e in summary] == \
        [("imu", s, m) for s in ("id", "ood") for m in models]
    base = _entry(summary, "ood", "imu alone")
    vals = [_baseline_f1("ood", f, s) for f in FOLDS["ood"] for s in SEEDS]
    assert base["n_runs"] == 10 and base["f1_mean"] == pytest.approx(np.mean(vals))
    assert base["f1_std"] == pytest.approx(np.std(vals, ddof=1))
    src = _entry(summary, "id", "video alone (source)")
    assert src["f1_mean"] == pytest.approx(0.90) and src["diff_mean"] is None and base["n_tests"] is None


@pytest.mark.parametrize("lam,mcma", sorted(DCAT))
def test_the_interval_is_over_test_sets_not_runs(summary, lam, mcma):
    """Seeds are averaged within a fold first: n = folds, and the t interval uses the folds' spread."""
    label = f"video->imu D-CAT lambda {lam:g}, {'MCMA' if mcma else 'no MCMA'}"
    eff = DCAT[(lam, mcma)]
    for split, dof in (("id", 2), ("ood", 4)):
        e = _entry(summary, split, label)
        n = len(FOLDS[split])
        assert (e["n_tests"], e["n_pairs"], e["n_unpaired"]) == (n, 2 * n, 0)
        assert e["diff_mean"] == pytest.approx(eff, abs=1e-12)
        half = T975[dof] * SD[split] / math.sqrt(n)
        assert (e["diff_lo"], e["diff_hi"]) == (pytest.approx(eff - half, abs=1e-7), pytest.approx(eff + half, abs=1e-7))
        assert e["n_improved"] == sum(eff + FOLD[split][f] > 1e-12 for f in FOLDS[split])
        # what a t interval over the 2n runs as if independent would say: narrower, with n - 1 = 2n - 1 dof
        runs = [eff + FOLD[split][f] + SEED[s] for f in FOLDS[split] for s in SEEDS]
        assert report.paired_ci(runs)["n"] == 2 * n and report.paired_ci(runs)["hi"] - eff < half


def test_two_seeds_by_five_folds_give_n_five(summary):
    """The issue's check: a grid with 2 seeds x 5 folds gives n = 5 in the OOD interval."""
    for e in summary:
        if e["split"] == "ood" and e["role"] in ("null", "reference", "selected", "transfer") and e["method"] != "logit-kd":
            assert (e["n_tests"], e["n_pairs"]) == (5, 10), e["model"]
    pairs = [(t, b) for t, b in zip(*[[r for r in make_grid() if r["split"] == "ood" and r["role"] == role
                                       and (role != "transfer" or (r["lam"], r["mcma"], r["shift_s"]) == (1.0, True, 0.0))]
                                      for role in ("transfer", "baseline")])]
    assert len(pairs) == 10 and report.fold_ci(pairs)["n"] == 5
    assert list(report.fold_diffs(pairs).values()) == pytest.approx([0.06 + FOLD["ood"][f] for f in FOLDS["ood"]])


def test_null_and_reference_rows_are_compared_like_a_method(summary):
    for split in ("id", "ood"):
        null = _entry(summary, split, "imu alone, second seed (null)")
        assert null["role"] == "null" and null["diff_mean"] == pytest.approx(0.0, abs=1e-12)
        assert null["n_tests"] == len(FOLDS[split]) and null["diff_lo"] < 0 < null["diff_hi"]
        ref = _entry(summary, split, "imu window features + random forest (classical)")
        assert ref["role"] == "reference" and ref["diff_mean"] == pytest.approx(REFERENCE, abs=1e-12)


def test_row_chosen_on_validation(summary, grid):
    for split in ("id", "ood"):
        e = _entry(summary, split, "video->imu D-CAT, lambda and MCMA chosen on validation")
        assert e["role"] == "selected" and e["n_tests"] == len(FOLDS[split])
        assert e["diff_mean"] == pytest.approx(DCAT[(0.1, True)], abs=1e-12)  # not the best test row's 0.06
        assert e["chosen"] == [("video->imu D-CAT lambda 0.1, MCMA", 2 * len(FOLDS[split]))]
    chosen = report.choose_on_validation(grid)
    assert len(chosen) == 16 and {(r["lam"], r["mcma"]) for r in chosen.values()} == {(0.1, True)}
    assert chosen[("id", 0, 0, "imu", "video")]["lam"] == 0.1  # a tie on validation: the smaller lambda


def test_choice_on_validation_reads_no_test_number(grid):
    """Corrupting every test score (and the per-subject scores) leaves the choice unchanged."""
    rng = np.random.default_rng(0)
    bad = [dict(r, test_macro_f1=float(rng.uniform()), test_acc=float(rng.uniform()), test_subject_f1="",
                n_test=0) for r in grid]
    pick = lambda rows: {k: r["cell"] for k, r in report.choose_on_validation(rows).items()}
    assert pick(bad) == pick(grid)
    # and it does follow validation: make lambda 1 (no MCMA) best on validation in one unit
    moved = [dict(r, val_macro_f1=0.99) if (r["split"], r["fold"], r["seed"], r["method"], r["lam"], r["mcma"],
                                            r["shift_s"]) == ("ood", 3, 1, "dcat", 1.0, False, 0.0) else r
             for r in grid]
    assert pick(moved)[("ood", 3, 1, "imu", "video")].endswith("-1.0-False-0.0")


def test_identical_runs_are_marked_not_counted_twice(summary, grid):
    same = report.mark_identical(grid)
    on_off = {c: o for c, o in same.items() if "-10.0-False-" in c}
    assert len(on_off) == 16 and all("-10.0-True-" in o for o in on_off.values())
    assert len(same) == 16  # nothing else is identical
    e = _entry(summary, "ood", "video->imu D-CAT lambda 10, no MCMA")
    assert e["same_as"] == "video->imu D-CAT lambda 10, MCMA" and e["n_same"] == 10
    assert _entry(summary, "ood", "video->imu D-CAT lambda 10, MCMA")["same_as"] is None
    md = report.render_markdown(grid)
    line = next(x for x in md.splitlines() if x.startswith("| out of distribution | video->imu D-CAT lambda 10, no MCMA |"))
    assert "identical to video->imu D-CAT lambda 10, MCMA (every run): not a second result" in line
    assert "-0.050 [" not in line
    rows = report.annotate(grid)
    assert sum(bool(r["same_as"]) for r in rows) == 16 and sum(r["val_chosen"] is True for r in rows) == 16


def test_keep_rate_is_in_the_tables(summary):
    assert _entry(summary, "id", "video->imu D-CAT lambda 1, MCMA")["keep_rate"] == pytest.approx(0.7)
    assert _entry(summary, "id", "video->imu D-CAT lambda 1, no MCMA")["keep_rate"] == pytest.approx(1.0)
    assert _entry(summary, "id", "video->imu feature KD")["keep_rate"] is None
    assert "keep_rate" in report.COLUMNS


def test_subject_bootstrap_where_folds_are_few(summary, grid):
    e = _entry(summary, "id", "video->imu D-CAT lambda 1, MCMA")  # 3 folds < 5, 4 subjects
    assert e["n_subjects"] == 4
    # each subject's difference averaged over its folds and seeds: 0.06 + SUBJ[s]; the bootstrap mean
    # of 4 values lies between their smallest and largest, and the interval holds their mean
    assert 0.06 - 0.03 - 1e-9 <= e["boot_lo"] < 0.06 < e["boot_hi"] <= 0.06 + 0.03 + 1e-9
    o = _entry(summary, "ood", "video->imu D-CAT lambda 1, MCMA")  # 5 folds: no bootstrap
    assert o["boot_lo"] is None and o["n_subjects"] is None
    assert "subject bootstrap [95%]" in report.render_markdown(grid)


def test_summary_pairs_by_split_fold_seed_with_missing_run(summary, grid):
    e = _entry(summary, "ood", "video->imu logit KD T 4")
    assert (e["n_tests"], e["n_pairs"], e["n_runs"]) == (5, 9, 9)
    # fold means: 0.01 + FOLD[f], but fold 1 only has seed 0: 0.01 - 0.01 - 0.01
    means = [0.01 + FOLD["ood"][f] for f in FOLDS["ood"]]
    means[1] = 0.01 + FOLD["ood"][1] + SEED[0]
    assert e["diff_mean"] == pytest.approx(np.mean(means), abs=1e-12)
    assert e["n_improved"] == sum(m > 1e-12 for m in means)


def test_pairing_uses_split_fold_seed_and_target():
    rows = [
        _row(role="baseline", split="ood", fold=0, seed=0, tgt="imu", method="pretrain", test_macro_f1=0.5),
        _row(role="baseline", split="ood", fold=1, seed=0, tgt="imu", method="pretrain", test_macro_f1=0.8),
        _row(role="baseline", split="ood", fold=0, seed=1, tgt="imu", method="pretrain", test_macro_f1=0.1),
        _row(role="baseline", split="id", fold=0, seed=0, tgt="imu", method="pretrain", test_macro_f1=0.3),
        _row(role="baseline", split="ood", fold=1, seed=0, tgt="audio", method="pretrain", test_macro_f1=0.0),
        _row(role="transfer", split="ood", fold=1, seed=0, tgt="imu", src="video", method="dcat", lam=1.0,
             mcma=True, test_macro_f1=0.85),
    ]
    e = _entry(report.summary_table(rows), "ood", "video->imu D-CAT lambda 1, MCMA")
    assert e["n_tests"] == 1 and e["diff_mean"] == pytest.approx(0.05) and e["diff_lo"] is None
    assert "| out of distribution | video->imu D-CAT lambda 1, MCMA | 0.850 (n=1, no std) | " \
           "+0.050 (n=1, no CI) | 1 (1 runs) | 1/1 | - |" in report.render_markdown(rows)
    # an unpaired transfer run counts for its mean, not for the difference
    rows.append(_row(role="transfer", split="ood", fold=5, seed=0, tgt="imu", src="video", method="dcat",
                     lam=1.0, mcma=True, test_macro_f1=0.95))
    e = _entry(report.summary_table(rows), "ood", "video->imu D-CAT lambda 1, MCMA")
    assert (e["n_runs"], e["n_tests"], e["n_unpaired"]) == (2, 1, 1) and e["diff_mean"] == pytest.approx(0.05)


def test_duplicate_baseline_and_unknown_role_are_errors():
    b = _row(role="baseline", split="id", fold=0, seed=0, tgt="imu", method="pretrain", test_macro_f1=0.5)
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
        assert (e["n_tests"], e["n_pairs"]) == (len(FOLDS[e["split"]]), 2 * len(FOLDS[e["split"]]))
        assert e["model"] == "video->imu D-CAT lambda 1, MCMA" and e["shift_stream"] == "video"
    assert report.shift_table(make_grid(shift=False)) == []


def test_overfit_gain_is_measured_against_the_null(grid):
    tab = report.overfit_table(grid)
    assert [(e["split"], e["model"], e["n"], e["n_tests"]) for e in tab] == \
        [("id", "video->imu D-CAT, lambda and MCMA chosen on validation", 6, 3),
         ("ood", "video->imu D-CAT, lambda and MCMA chosen on validation", 10, 5)]
    for e in tab:
        assert set(e) == set(report.OVERFIT_KEYS)
        gap = [p["gap"] for p in e["pairs"]]
        gain = [p["gain"] for p in e["pairs"]]
        null_gain = [p["null_gain"] for p in e["pairs"]]
        assert gap == pytest.approx([0.30 - 0.10 * p["seed"] + 0.02 * p["fold"] for p in e["pairs"]])
        # D-CAT (chosen: lambda 0.1 MCMA, effect 0.03) and the null share the fold/seed noise: the gain
        # against the null is the effect alone; the baseline's own gain against the null is minus the noise
        assert gain == pytest.approx([0.03] * e["n"])
        assert null_gain == pytest.approx([-(FOLD[e["split"]][p["fold"]] + SEED[p["seed"]]) for p in e["pairs"]])
        assert e["pearson_r"] is None  # a constant gain
        assert e["null_r"] == pytest.approx(np.corrcoef(gap, null_gain)[0, 1])
    assert report.overfit_table([r for r in grid if r["role"] != "null"]) == []


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
    half_id = T975[2] * 0.02 / math.sqrt(3)
    base_id = [_baseline_f1("id", f, s) for f in FOLDS["id"] for s in SEEDS]
    dcat_id = [_baseline_f1("id", f, s) + 0.06 + FOLD["id"][f] + SEED[s] for f in FOLDS["id"] for s in SEEDS]
    expected = [
        "# Synthetic grid",
        "built-in answers",
        "Replication: n counts test sets. in distribution: 3 test sets (time-block folds), 2 training seeds on each "
        "(0, 1); out of distribution: 5 test sets (subject folds; held out: fold 0: s00, fold 1: s01, fold 2: s02, "
        "fold 3: s03, fold 4: s04), 2 training seeds on each (0, 1).",
        "## Headline",
        "## Target: imu",
        "| setting | model | macro-F1 (mean ± std over runs) | difference to imu alone [95% CI over test sets] | "
        "subject bootstrap [95%] | n test sets (runs) | improved (test sets) | keep rate |",
        f"| in distribution | imu alone | 0.665 ± {np.std(base_id, ddof=1):.3f} | - | - | 6 runs | - | - |",
        f"| in distribution | video->imu D-CAT lambda 1, MCMA | 0.725 ± {np.std(dcat_id, ddof=1):.3f} | "
        f"+0.060 [{0.06 - half_id:+.3f}, "
        f"{0.06 + half_id:+.3f}] | " + next(x for x in lines if "| in distribution | video->imu D-CAT lambda 1, MCMA |"
                                              in x).split(" | ")[4] + " | 3 (6 runs) | 3/3 | 0.700 |",
        "| in distribution | video alone (source) | 0.900 ± 0.011 | - | - | 6 runs | - | - |",
        "Chosen on validation (in distribution): lambda 0.1, MCMA in 6 units.",
        "## Sync robustness: training-time misalignment",
        "## Overfitting before transfer and the D-CAT gain",
        "### in distribution: video->imu D-CAT, lambda and MCMA chosen on validation",
        "| 0 | 1 | 0.200 | 0.630 | 0.620 | 0.650 | +0.030 | +0.010 |",  # null 0.63 - 0.02 + 0.01
        "## How to read this",
    ]
    for line in expected:
        assert line in lines, line
    pos = [lines.index(x) for x in ("# Synthetic grid", "## Headline", "## Target: imu",
                                    "## Sync robustness: training-time misalignment",
                                    "## Overfitting before transfer and the D-CAT gain", "## How to read this")]
    assert pos == sorted(pos)
    # the headline compares the row chosen on validation (+0.030), not the best test row (+0.060), beside the null
    head = next(x for x in lines if x.startswith("- **imu, out of distribution**"))
    assert "chosen on validation: +0.030 [" in head and "n = 5 test sets, 10 runs" in head and "null" in head
    assert "+0.060" not in head and "window features + random forest" in head
    # lambdas numerically, MCMA on before off
    order = [x.split(" | ")[1] for x in lines if x.startswith("| in distribution | video->imu D-CAT lambda")]
    assert order[:6] == [f"video->imu D-CAT lambda {lam}, {m}" for lam in ("0.1", "1", "10") for m in ("MCMA", "no MCMA")]
    assert "excludes 0" in md and "agree on the sign" not in md
    assert "r = " in md and "p = " not in md  # no p-value over dependent pairs

    plain = report.render_markdown(make_grid(shift=False))
    assert "Sync robustness" not in plain and "## Target: imu" in plain


def test_markdown_single_seed_says_no_ci():
    rows = [r for r in make_grid(shift=False, seeds=(1,)) if r["split"] == "ood" and r["fold"] == 2]
    md = report.render_markdown(rows)
    assert "| out of distribution | video->imu D-CAT lambda 1, MCMA | 0.600 (n=1, no std) | +0.070 (n=1, no CI) | " \
           "1 (1 runs) | 1/1 | 0.700 |" in md.splitlines()
    assert "not computed (fewer than 3 pairs or a constant series)" in md


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

    # one test set (no interval: no error bars, no failure), no shift rows, MCMA on only: no shift.png,
    # no mcma.png, and the stale ones from the run above are removed
    rows = [r for r in make_grid(shift=False, seeds=(0,)) if r["mcma"] is not False and r["fold"] == 0]
    out = report.write_report(rows, tmp_path)
    assert sorted(p.name for p in out["plots"]) == ["id_vs_ood.png", "lambda.png"]
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["id_vs_ood.png", "lambda.png"]
    assert all(p.read_bytes()[:8] == PNG for p in out["plots"])
    assert "mcma.png" not in out["markdown"].read_text()


def test_plots_skipped_without_their_rows(tmp_path):
    assert report.plot_all([], tmp_path) == []
    assert not list(tmp_path.iterdir())


def test_sources_no_transfer_refers_to_get_their_own_section():
    rows = [r for r in make_grid(shift=False, seeds=(0,)) if r["role"] in ("source", "baseline") or r["method"] == "feature-kd"]
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
