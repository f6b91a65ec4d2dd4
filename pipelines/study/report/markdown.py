"""``results.md``: the report's tables as Markdown, with the number formats they use."""

from __future__ import annotations

import math
from pathlib import Path

from pipelines.study.report.statistics import ROLES, is_shifted, row_f1
from pipelines.study.report.tables import overfit_table, shift_table, split_name, summary_table

HOW_TO_READ = (
    "Each transfer run is paired with the uni-modal baseline of the same target, split, fold and seed; "
    "the difference column is the mean of those paired differences with a 95% Student-t confidence "
    "interval, and n is the number of paired runs (seeds in distribution, folds x seeds out of "
    "distribution). An interval that excludes 0 means the seeds/folds agree on the sign of the effect; "
    "one that includes 0 means this grid cannot tell the effect from run-to-run noise. With n=1 there "
    "is no interval. \"improved\" counts the pairs in which the transfer beat its baseline. "
    "The source rows show how strong the teacher is on its own stream; it is not used at test time.")


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
    L += [f"{len(rows)} runs: {counts['source']} source, {counts['baseline']} baseline (uni-modal), "
          f"{counts['transfer']} transfer ({n_shift} of them with a training-time shift). "
          "Metric: test macro-F1 of the target stream alone.", ""]
    if missing:
        L += [f"{len(missing)} run(s) have no test macro-F1 and are left out of every number: "
              + ", ".join(f"`{c}`" for c in sorted(map(str, missing))), ""]
    return L


def _summary_sections(summary: list[dict]) -> list[str]:
    """One table per target stream (``summary_table``)."""
    L = []
    for tgt in dict.fromkeys(e["tgt"] for e in summary):
        sec = [e for e in summary if e["tgt"] == tgt]
        L += [f"## Target: {tgt}", ""]
        body = []
        for e in sec:
            if e["role"] == "transfer":
                diff = fmt_diff(e["diff_mean"], e["diff_lo"], e["diff_hi"], e["n_pairs"])
                n = str(e["n_pairs"]) + (f" (+{e['n_unpaired']} unpaired)" if e["n_unpaired"] else "")
                imp = f"{e['n_improved']}/{e['n_pairs']}" if e["n_pairs"] else "-"
            else:
                diff, n, imp = "-", str(e["n_runs"]), "-"
            body.append([split_name(e["split"]), e["model"], fmt_mean_std(e["f1_mean"], e["f1_std"], e["n_runs"]),
                         diff, n, imp])
        L += _md_table(["setting", "model", "macro-F1 (mean ± std)", f"difference to {tgt} alone [95% CI]",
                        "n", "improved"], body)
        L.append("")
    return L


def _shift_section(shifts: list[dict]) -> list[str]:
    """The sync-robustness table (``shift_table``); nothing without shifted runs."""
    if not shifts:
        return []
    L = ["## Sync robustness: training-time misalignment", "",
         "Gain of the transfer over the uni-modal baseline when the named stream was shifted by "
         "the given time during training (shift 0: the same configuration, aligned).", ""]
    body = [[split_name(e["split"]), e["model"], e["shift_stream"] or "-",
             f"{e['shift_s']:+g}" if e["shift_s"] else "0", fmt_mean_std(e["f1_mean"], e["f1_std"], e["n_runs"]),
             fmt_diff(e["diff_mean"], e["diff_lo"], e["diff_hi"], e["n_pairs"]), str(e["n_pairs"] or 0)]
            for e in shifts]
    L += _md_table(["setting", "model", "shifted stream", "shift (s)", "macro-F1 (mean ± std)",
                    "difference to uni-modal [95% CI]", "n"], body)
    L.append("")
    return L


def _overfit_section(over: list[dict]) -> list[str]:
    """The overfitting tables (``overfit_table``) with each one's correlation; nothing without them."""
    if not over:
        return []
    L = ["## Overfitting before transfer and the D-CAT gain", "",
         "Gap: the uni-modal baseline's train minus validation macro-F1 (best checkpoint); "
         "gain: D-CAT test macro-F1 minus the baseline's, on the same split, fold and seed.", ""]
    for e in over:
        L += [f"### {split_name(e['split'])}: {e['model']}", ""]
        body = [[str(i["fold"]), str(i["seed"]), fmt_f1(i["gap"]), fmt_f1(i["baseline_f1"]),
                 fmt_f1(i["transfer_f1"]), fmt_signed(i["gain"])] for i in e["pairs"]]
        L += _md_table(["fold", "seed", "baseline gap", "baseline F1", "D-CAT F1", "gain"], body)
        if e["pearson_r"] is None:
            why = "fewer than 3 pairs" if e["n"] < 3 else "a constant series"
            L += ["", f"Pearson correlation of gap and gain: not computed ({why}, n={e['n']})."]
        else:
            L += ["", f"Pearson correlation of gap and gain: r = {e['pearson_r']:+.3f} "
                  f"(p = {e['pearson_p']:.3g}, n = {e['n']})."]
        L.append("")
    return L


def render_markdown(rows: list[dict], title: str = "D-CAT experiment results", notes=None,
                    plots: list | None = None) -> str:
    """The report as Markdown: per target stream, the paper-style table (setting, model, macro-F1
    mean ± std, difference to the uni-modal baseline with its 95% CI, n, pairs improved); then the
    sync-robustness and overfitting tables when there are such rows; then how to read it.
    ``notes``: a string or list of strings shown under the title. ``plots``: image paths (relative
    to the Markdown file) to link. Deterministic for a given set of rows.
    """
    summary = summary_table(rows)
    shifts = shift_table(rows)
    over = overfit_table(rows)
    L = _intro(rows, title, notes) + _summary_sections(summary) + _shift_section(shifts) + _overfit_section(over)
    if plots:
        L += ["## Plots", ""] + [f"![{Path(p).stem}]({Path(p).as_posix()})" for p in plots] + [""]
    L += ["## How to read this", "", HOW_TO_READ, ""]
    return "\n".join(L)
