"""``results.md``: the report's tables as Markdown, with the number formats they use."""

from __future__ import annotations

import math
from pathlib import Path

from pipelines.study.report.statistics import BOOTSTRAP_BELOW_FOLDS, BOOTSTRAP_SAMPLES, ROLES, is_shifted, row_f1
from pipelines.study.report.tables import overfit_table, shift_table, split_key, split_name, summary_table

HOW_TO_READ = (
    "Every compared run (a transfer, the null, the classical reference) is paired with the uni-modal "
    "baseline of the same target, split, fold and seed, and the paired difference of test macro-F1 is "
    "taken. The unit of replication is the test set (a fold): the seeds of one fold are trained and tested "
    "on the same windows, so their differences are averaged first, and the 95% Student-t interval is over "
    "the folds' means; n counts those test sets (ID: time-block folds, OOD: subject folds), the runs behind "
    "them are given beside it. An interval that excludes 0 says that the mean difference over test sets "
    "like these differs from 0 at the 5% level; it does not say that every fold or seed agreed on the "
    "sign (\"improved\" counts the test sets whose mean difference is positive). One that includes 0 "
    "means this grid cannot tell the effect from noise; with n=1 there is no interval. The folds share "
    "training data, so the interval is if anything too narrow. Where folds are few, a subject-level "
    "cluster bootstrap (test subjects resampled, each one's difference averaged over its folds and seeds) "
    "is shown too. The null row is the same baseline trained with another seed: its difference is pure "
    "run-to-run noise, the floor any gain must clear. The row \"chosen on validation\" picks, in each "
    "unit, the D-CAT lambda and MCMA setting with the best validation macro-F1 (no test number is read); "
    "the other D-CAT rows show every setting, and picking the best of them by its test score would "
    "overstate the gain. Keep rate: the fraction of training windows whose transfer term MCMA counted "
    "(the source judged correct there). A row identical to another run of its unit (the same predictions on every part, e.g. "
    "MCMA on and off when it kept every window) is marked and not counted as a second result. The "
    "source rows show how strong the teacher is on its own stream; it is not used at test time.")


# ------------------------------------------------------------------------------------------ formats

def fmt_f1(v) -> str:
    return "n/a" if v is None or not math.isfinite(float(v)) else f"{float(v):.3f}"


def fmt_signed(v) -> str:
    if v is None or not math.isfinite(float(v)):
        return "n/a"
    v = float(v)
    if round(v, 3) == 0:
        v = 0.0  # no "-0.000"
    return f"{v:+.3f}"


def fmt_mean_std(mean, std, n) -> str:
    if not n:
        return "n/a"
    if n < 2 or std is None or not math.isfinite(std):
        return f"{fmt_f1(mean)} (n=1, no std)"
    return f"{fmt_f1(mean)} ± {fmt_f1(std)}"


def fmt_diff(mean, lo, hi, n) -> str:
    """``+0.021 [-0.010, +0.052]``; ``+0.021 (n=1, no CI)``; ``no paired baseline``."""
    if not n:
        return "no paired baseline"
    if lo is None or hi is None:
        return f"{fmt_signed(mean)} (n={n}, no CI)"
    return f"{fmt_signed(mean)} [{fmt_signed(lo)}, {fmt_signed(hi)}]"


def _md_table(header: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
    return lines


# ----------------------------------------------------------------------------------------- sections

def _intro(rows: list[dict], title: str, notes) -> list[str]:
    """Title, notes, the run counts and the runs left out for want of a test macro-F1."""
    counts = {role: sum(r.get("role") == role for r in rows) for role in ROLES}
    n_shift = sum(r.get("role") == "transfer" and is_shifted(r) for r in rows)
    missing = [r.get("cell") for r in rows if row_f1(r) is None]

    L = [f"# {title}", ""]
    if notes:
        for n in [notes] if isinstance(notes, str) else list(notes):
            L += [str(n), ""]
    L += [f"{len(rows)} runs: {counts['baseline']} baseline (uni-modal), {counts['source']} source, "
          f"{counts['null']} null (baseline, second seed), {counts['reference']} classical reference, "
          f"{counts['transfer']} transfer ({n_shift} of them with a training-time shift). "
          "Metric: test macro-F1 of the target stream alone.", ""]
    L += _replication(rows)
    if missing:
        L += [f"{len(missing)} run(s) have no test macro-F1 and are left out of every number: "
              + ", ".join(f"`{c}`" for c in sorted(map(str, missing))), ""]
    return L


def _replication(rows: list[dict]) -> list[str]:
    """What n counts: per split, the test sets (folds; out of distribution with their held-out
    subjects) and the training seeds on each."""
    out = []
    for split in sorted({r.get("split") for r in rows}, key=split_key):
        here = [r for r in rows if r.get("split") == split and r.get("role") in ("baseline", "source")]
        folds = sorted({int(r.get("fold") or 0) for r in here})
        seeds = sorted({r.get("seed") for r in here}, key=str)
        if not folds:
            continue
        what = "time-block folds" if split == "id" else "subject folds" if split == "ood" else "folds"
        held = {}
        for r in here:
            if r.get("test_subjects"):
                held.setdefault(int(r.get("fold") or 0), r["test_subjects"].replace(";", "+"))
        names = ("; held out: " + ", ".join(f"fold {f}: {held[f]}" for f in folds if f in held)) if held else ""
        out.append(f"{split_name(split)}: {len(folds)} test set{'s' if len(folds) != 1 else ''} ({what}{names}), "
                   f"{len(seeds)} training seed{'s' if len(seeds) != 1 else ''} on each ({', '.join(map(str, seeds))})")
    return ["Replication: n counts test sets. " + "; ".join(out) + ".", ""] if out else []


def _ci_words(e: dict) -> str:
    d = fmt_diff(e["diff_mean"], e["diff_lo"], e["diff_hi"], e["n_tests"])
    return f"{d} (n = {e['n_tests']} test set{'s' if e['n_tests'] != 1 else ''}, {e['n_pairs']} runs)"


def _headline(summary: list[dict]) -> list[str]:
    """Per target and split: the row chosen on validation against the baseline, beside the null
    and the classical reference (never the best test row)."""
    L = []
    for e in summary:
        if e["role"] != "selected" or not e["n_tests"]:
            continue
        same = [x for x in summary if x["tgt"] == e["tgt"] and x["split"] == e["split"]]
        line = (f"- **{e['tgt']}, {split_name(e['split'])}**: {e['model']}: {_ci_words(e)} macro-F1 "
                f"against {e['tgt']} alone")
        if e["diff_lo"] is not None:
            line += (" (the interval excludes 0)" if e["diff_lo"] > 0 or e["diff_hi"] < 0
                     else " (the interval includes 0: not told apart from noise)")
        extra = [f"{x['model']}: {_ci_words(x)}" for x in same if x["role"] == "null" and x["n_tests"]]
        extra += [f"{x['model']}: {_ci_words(x)}" for x in same if x["role"] == "reference" and x["n_tests"]]
        L.append(line + ("; " + "; ".join(extra) if extra else "") + ".")
    return (["## Headline", "", *L, ""]) if L else []


def _diff_cell(e: dict) -> str:
    if e.get("same_as"):
        return f"identical to {e['same_as']} (every run): not a second result"
    return fmt_diff(e["diff_mean"], e["diff_lo"], e["diff_hi"], e["n_tests"])


def _n_cell(e: dict) -> str:
    if e["role"] in ("baseline", "source"):
        return f"{e['n_runs']} runs"
    if not e["n_tests"]:
        return f"0 ({e['n_runs']} runs unpaired)"
    n = f"{e['n_tests']} ({e['n_pairs']} runs"
    if e["n_unpaired"]:
        n += f", +{e['n_unpaired']} unpaired"
    if e["n_same"] and not e.get("same_as"):
        n += f", {e['n_same']} identical to {' or '.join(e['same_to'])}"
    return n + ")"


def _summary_sections(summary: list[dict]) -> list[str]:
    """One table per target stream (``summary_table``), with the choices made on validation below."""
    L = []
    for tgt in dict.fromkeys(e["tgt"] for e in summary):
        sec = [e for e in summary if e["tgt"] == tgt]
        boot = any(e["boot_lo"] is not None for e in sec)
        L += [f"## Target: {tgt}", ""]
        body = []
        for e in sec:
            compared = e["role"] not in ("baseline", "source")
            row = [split_name(e["split"]), e["model"], fmt_mean_std(e["f1_mean"], e["f1_std"], e["n_runs"]),
                   _diff_cell(e) if compared else "-"]
            if boot:
                row.append(f"[{fmt_signed(e['boot_lo'])}, {fmt_signed(e['boot_hi'])}] ({e['n_subjects']} subjects)"
                           if e["boot_lo"] is not None else "-")
            row += [_n_cell(e), f"{e['n_improved']}/{e['n_tests']}" if compared and e["n_tests"] and not e.get("same_as")
                    else "-", fmt_f1(e["keep_rate"]) if e["keep_rate"] is not None else "-"]
            body.append(row)
        head = ["setting", "model", "macro-F1 (mean ± std over runs)", f"difference to {tgt} alone [95% CI over test sets]"]
        head += ["subject bootstrap [95%]"] if boot else []
        L += _md_table(head + ["n test sets (runs)", "improved (test sets)", "keep rate"], body)
        L.append("")
        notes = []
        for e in sec:
            if e["role"] == "selected" and e["chosen"]:
                notes.append(f"Chosen on validation ({split_name(e['split'])}): "
                             + ", ".join(f"{lab.split(' D-CAT ', 1)[-1]} in {k} unit{'s' if k > 1 else ''}"
                                         for lab, k in e["chosen"]) + ".")
        if boot:
            notes.append(f"Subject bootstrap: shown where a comparison has fewer than {BOOTSTRAP_BELOW_FOLDS} test "
                         f"sets; resamples the test subjects ({BOOTSTRAP_SAMPLES} draws, percentile interval).")
        L += notes + ([""] if notes else [])
    return L


def _shift_section(shifts: list[dict]) -> list[str]:
    """The sync-robustness table (``shift_table``); nothing without shifted runs."""
    if not shifts:
        return []
    L = ["## Sync robustness: training-time misalignment", "",
         "Gain of the transfer over the uni-modal baseline when the named stream was shifted by "
         "the given time during training (shift 0: the same configuration, aligned); interval over test sets.", ""]
    body = [[split_name(e["split"]), e["model"], e["shift_stream"] or "-",
             f"{e['shift_s']:+g}" if e["shift_s"] else "0", fmt_mean_std(e["f1_mean"], e["f1_std"], e["n_runs"]),
             fmt_diff(e["diff_mean"], e["diff_lo"], e["diff_hi"], e["n_tests"]),
             f"{e['n_tests'] or 0} ({e['n_pairs'] or 0} runs"
             + (f", {e['n_same']} identical to {' or '.join(e['same_to'])})" if e["n_same"] else ")")]
            for e in shifts]
    L += _md_table(["setting", "model", "shifted stream", "shift (s)", "macro-F1 (mean ± std)",
                    "difference to uni-modal [95% CI]", "n test sets (runs)"], body)
    L.append("")
    return L


def _r_text(r, n: int) -> str:
    return "not computed (fewer than 3 pairs or a constant series)" if r is None else f"r = {r:+.3f}"


def _overfit_section(over: list[dict]) -> list[str]:
    """The overfitting tables (``overfit_table``) with the gain's and the null's r; nothing without them."""
    if not over:
        return []
    L = ["## Overfitting before transfer and the D-CAT gain", "",
         "Gap: the uni-modal baseline's train minus validation macro-F1 (seed s). Gain: D-CAT (chosen on "
         "validation) test macro-F1 minus that of the null, an independent baseline (seed s + 1000, same "
         "split), so gap and gain share no run. Null gain: the baseline's test macro-F1 minus the null's, "
         "i.e. the gain if D-CAT changed nothing; its r is what this measurement shows with no D-CAT effect. "
         "The pairs of one fold share their test set, so no p-value is given.", ""]
    for e in over:
        L += [f"### {split_name(e['split'])}: {e['model']}", ""]
        body = [[str(i["fold"]), str(i["seed"]), fmt_f1(i["gap"]), fmt_f1(i["baseline_f1"]), fmt_f1(i["null_f1"]),
                 fmt_f1(i["transfer_f1"]), fmt_signed(i["gain"]), fmt_signed(i["null_gain"])] for i in e["pairs"]]
        L += _md_table(["fold", "seed", "baseline gap", "baseline F1", "null F1", "D-CAT F1", "gain (vs null)",
                        "null gain (baseline vs null)"], body)
        L += ["", f"Correlation of gap and gain: {_r_text(e['pearson_r'], e['n'])}; of gap and null gain: "
              f"{_r_text(e['null_r'], e['n'])} ({e['n']} pairs over {e['n_tests']} test sets).", ""]
    return L


def render_markdown(rows: list[dict], title: str = "D-CAT experiment results", notes=None,
                    plots: list | None = None) -> str:
    """The report as Markdown: the headline (D-CAT chosen on validation, the null, the classical
    reference); per target stream, the paper-style table (setting, model, macro-F1 mean ± std, the
    paired difference to the uni-modal baseline with its 95% CI over test sets, n, test sets
    improved, keep rate); then the sync-robustness and overfitting tables when there are such rows;
    then how to read it. ``notes``: a string or list of strings shown under the title. ``plots``:
    image paths (relative to the Markdown file) to link. Deterministic for a given set of rows.
    """
    summary = summary_table(rows)
    shifts = shift_table(rows)
    over = overfit_table(rows)
    L = (_intro(rows, title, notes) + _headline(summary) + _summary_sections(summary) + _shift_section(shifts)
         + _overfit_section(over))
    if plots:
        L += ["## Plots", ""] + [f"![{Path(p).stem}]({Path(p).as_posix()})" for p in plots] + [""]
    L += ["## How to read this", "", HOW_TO_READ, ""]
    return "\n".join(L)
