"""The report's tables over rows (a list of dicts keyed by ``COLUMNS``): the main summary (mean and
std per model, the paired difference to the uni-modal baseline over test sets) and the
sync-robustness table of the shifted runs. The overfitting table is :mod:`.overfit`; names and
orders :mod:`.names` (re-exported here).

Shifted transfer rows (non-zero ``shift_s``) appear only in ``shift_table``, never in the summary.
"""

from __future__ import annotations

from pipelines.study.report.names import (METHOD_NAMES, METHOD_ORDER, SELECTED_NAME, SPLIT_NAMES, SPLIT_ORDER,
                                          config_key, config_of, fmt_num, mcma_key, model_label, num_key, pick_key,
                                          row_label, split_key, split_name, transfer_labels)
from pipelines.study.report.overfit import overfit_table
from pipelines.study.report.selection import choose_on_validation, mark_identical
from pipelines.study.report.statistics import (BOOTSTRAP_BELOW_FOLDS, baseline_index, check_rows, fold_ci, is_shifted,
                                               mean_std, pair_with_baselines, row_f1, subject_bootstrap)

SUMMARY_KEYS = (
    "tgt", "split", "role", "model", "src", "method", "lam", "mcma", "temperature",
    "f1_mean", "f1_std", "n_runs", "diff_mean", "diff_lo", "diff_hi", "n_tests", "n_pairs", "n_improved",
    "n_unpaired", "boot_lo", "boot_hi", "n_subjects", "keep_rate", "same_as", "n_same", "same_to", "chosen",
)
SHIFT_KEYS = (
    "tgt", "src", "method", "lam", "mcma", "temperature", "shift_stream", "split", "model", "shift_s",
    "f1_mean", "f1_std", "n_runs", "diff_mean", "diff_lo", "diff_hi", "n_tests", "n_pairs", "n_improved",
    "n_same", "same_to",
)

__all__ = ["METHOD_NAMES", "METHOD_ORDER", "SELECTED_NAME", "SHIFT_KEYS", "SPLIT_NAMES", "SPLIT_ORDER", "SUMMARY_KEYS",
           "fmt_num", "mcma_key", "model_label", "num_key", "overfit_table", "pick_key", "shift_table", "split_key",
           "split_name", "summary_table"]


def _stats_entry(base: dict, rows: list[dict], pairs=None, unpaired=None) -> dict:
    """``base`` with the mean and std of the rows' test macro-F1 and, given the pairs, the paired
    difference to the baseline over test sets (:func:`fold_ci`), with the subject bootstrap when
    the test sets are fewer than ``BOOTSTRAP_BELOW_FOLDS``."""
    mean, std, n = mean_std([row_f1(r) for r in rows])
    keep = [float(r["keep_rate"]) for r in rows if r.get("keep_rate") is not None]
    e = dict(base)
    e.update(f1_mean=mean, f1_std=std, n_runs=n, diff_mean=None, diff_lo=None, diff_hi=None, n_tests=None,
             n_pairs=None, n_improved=None, n_unpaired=None, boot_lo=None, boot_hi=None, n_subjects=None,
             keep_rate=sum(keep) / len(keep) if keep else None, same_as=None, n_same=0, same_to=[], chosen=None)
    if pairs is not None:
        ci = fold_ci(pairs)
        e.update(diff_mean=ci["mean"], diff_lo=ci["lo"], diff_hi=ci["hi"], n_tests=ci["n"], n_pairs=ci["n_pairs"],
                 n_improved=ci["n_improved"], n_unpaired=unpaired)
        if ci["n"] and ci["n"] < BOOTSTRAP_BELOW_FOLDS:
            boot = subject_bootstrap(pairs)
            if boot is not None and boot["n_subjects"] > ci["n"]:
                e.update(boot_lo=boot["lo"], boot_hi=boot["hi"], n_subjects=boot["n_subjects"])
    return e


def _mark_same(e: dict, g: list[dict], same: dict, label_of: dict) -> None:
    """``n_same``: the entry's runs identical to another run of their unit; ``same_to``: the labels of
    those other runs' entries; ``same_as``: that label when every run is identical to a run of one
    and the same entry."""
    others = [label_of.get(same[r.get("cell")]) or "another run" for r in g if r.get("cell") in same]
    e["n_same"] = len(others)
    e["same_to"] = sorted(set(others))
    if g and len(others) == len(g) and len(set(others)) == 1:
        e["same_as"] = others[0]


def _selected_entry(tgt: str, split: str, src: str, chosen: list[dict], bidx: dict, labels: dict) -> dict:
    """The D-CAT row chosen on validation in each unit, compared like a method; ``chosen``: how
    often each configuration was the choice."""
    pairs, unpaired = pair_with_baselines(chosen, bidx)
    e = _stats_entry(dict(tgt=tgt, split=split, role="selected", model=model_label("selected", tgt, src), src=src,
                          method="dcat", lam=None, mcma=None, temperature=None), chosen, pairs, unpaired)
    counts: dict = {}
    for r in sorted(chosen, key=lambda r: config_key(config_of(r))):
        lab = labels[(tgt, config_of(r))]
        counts[lab] = counts.get(lab, 0) + 1
    e["chosen"] = sorted(counts.items(), key=lambda kv: -kv[1])
    return e


def _sources_of(rows: list[dict]) -> dict:
    """tgt -> the source streams its transfers use."""
    referenced: dict = {}
    for r in rows:
        if r.get("role") == "transfer":
            for s in (r.get("src") or "").split("+"):
                if s:
                    referenced.setdefault(r.get("tgt"), set()).add(s)
    return referenced


def _split_entries(tgt: str, split: str, rows: list[dict], ctx: dict) -> list[dict]:
    """The entries of one target and split, in table order (see :func:`summary_table`)."""
    bidx, same, label_of, labels = ctx["bidx"], ctx["same"], ctx["label_of"], ctx["labels"]
    here = [r for r in rows if r.get("split") == split]
    out = []
    b = [r for r in here if r.get("role") == "baseline" and r.get("tgt") == tgt]
    if b:
        out.append(_stats_entry(dict(tgt=tgt, split=split, role="baseline", model=model_label("baseline", tgt), src="",
                                     method="pretrain", lam=None, mcma=None, temperature=None), b))
    for role in ("null", "reference"):
        by_method: dict = {}
        for r in here:
            if r.get("role") == role and r.get("tgt") == tgt:
                by_method.setdefault(r.get("method") or "", []).append(r)
        for m in sorted(by_method):
            g = by_method[m]
            pairs, unpaired = pair_with_baselines(g, bidx)
            e = _stats_entry(dict(tgt=tgt, split=split, role=role, model=model_label(role, tgt, method=m), src="",
                                  method=m, lam=None, mcma=None, temperature=None), g, pairs, unpaired)
            _mark_same(e, g, same, label_of)
            out.append(e)
    for (t, sp, src), chosen in sorted(ctx["selected"].items()):
        if t == tgt and sp == split:
            out.append(_selected_entry(tgt, split, src, chosen, bidx, labels))
    groups: dict = {}
    for r in here:
        if r.get("role") == "transfer" and r.get("tgt") == tgt and not is_shifted(r):
            groups.setdefault(config_of(r), []).append(r)
    for c in sorted(groups, key=config_key):
        g = groups[c]
        pairs, unpaired = pair_with_baselines(g, bidx)
        e = _stats_entry(dict(tgt=tgt, split=split, role="transfer", model=labels[(tgt, c)], src=c[0], method=c[1],
                              lam=c[2], mcma=c[3], temperature=c[4]), g, pairs, unpaired)
        _mark_same(e, g, same, label_of)
        out.append(e)
    for s in ctx["src_streams"]:
        g = [r for r in here if r.get("role") in ("source", "baseline") and r.get("tgt") == s and s != tgt]
        if g:
            out.append(_stats_entry(dict(tgt=tgt, split=split, role="source", model=model_label("source", s), src=s,
                                         method="pretrain", lam=None, mcma=None, temperature=None), g))
    return out


def summary_table(rows: list[dict]) -> list[dict]:
    """The main table: per target stream (sorted) and split (``id``, then ``ood``):

    - the baseline (``role="baseline"``): mean +- std of test macro-F1 over its runs;
    - the null (the baseline with a second seed) and the classical reference, compared with the
      baseline like a method;
    - per source, D-CAT with lambda and MCMA chosen on validation in each unit (``role="selected"``;
      ``chosen``: [(configuration, units)]);
    - one entry per unshifted transfer configuration (src, method, lam, mcma, temperature), sorted by
      src, method (dcat, logit-kd, feature-kd), lambda numerically, MCMA on before off, temperature;
    - the source models used by those transfers (their own stream, same split).

    A compared entry has the paired difference to the baseline over test sets (``n_tests`` folds,
    ``n_pairs`` runs, ``n_improved`` test sets with a positive mean difference), the subject
    bootstrap when the folds are few, the mean ``keep_rate``, and ``n_same`` / ``same_as`` for runs
    identical to another run of their unit. Source runs that no transfer refers to are shown under
    their own stream (a section of their own when that stream is no target). Keys: ``SUMMARY_KEYS``.
    """
    check_rows(rows)
    bidx = baseline_index(rows)
    trans_all = [r for r in rows if r.get("role") == "transfer"]
    labels = transfer_labels(trans_all)
    referenced = _sources_of(rows)
    label_of = {r.get("cell"): row_label(r, labels) for r in rows}
    selected: dict = {}
    for (split, _f, _s, tgt, src), r in choose_on_validation(rows).items():
        if row_f1(r) is not None:
            selected.setdefault((tgt, split, src), []).append(r)
    ctx = dict(bidx=bidx, same=mark_identical(rows), label_of=label_of, labels=labels, selected=selected)

    targets = sorted({r.get("tgt") for r in rows if r.get("role") in ("baseline", "null", "reference", "transfer")})
    all_ref = set().union(*referenced.values()) if referenced else set()
    orphans = sorted({r.get("tgt") for r in rows if r.get("role") == "source"} - all_ref - set(targets))
    out = []
    for tgt in targets:
        ctx["src_streams"] = sorted(referenced.get(tgt, set()))
        sec = [r for r in rows if r.get("tgt") == tgt or r.get("tgt") in ctx["src_streams"]]
        for split in sorted({r.get("split") for r in sec}, key=split_key):
            out += _split_entries(tgt, split, sec, ctx)
    for tgt in orphans:  # sources no transfer refers to: a section of their own
        sec = [r for r in rows if r.get("tgt") == tgt and r.get("role") == "source"]
        for split in sorted({r.get("split") for r in sec}, key=split_key):
            out.append(_stats_entry(dict(tgt=tgt, split=split, role="source", model=model_label("source", tgt),
                                         src=tgt, method="pretrain", lam=None, mcma=None, temperature=None),
                                    [r for r in sec if r.get("split") == split]))
    return out


def shift_table(rows: list[dict]) -> list[dict]:
    """Sync robustness: for each shifted configuration (tgt, src, method, lam, mcma, temperature,
    shift_stream, split), the paired gain over the baseline at each training-time shift (over test
    sets), shift 0 being the unshifted run of the same configuration (when there is one). Sorted by
    configuration then shift. Empty when no row is shifted. Keys: ``SHIFT_KEYS``.
    """
    check_rows(rows)
    trans = [r for r in rows if r.get("role") == "transfer"]
    shifted = [r for r in trans if is_shifted(r)]
    if not shifted:
        return []
    bidx = baseline_index(rows)
    labels = transfer_labels(trans)
    same = mark_identical(rows)
    label_of = {r.get("cell"): row_label(r, labels) for r in rows}
    for r in shifted:
        label_of[r.get("cell")] = f"{row_label(r, labels)}, shift {float(r['shift_s']):+g} s"
    groups: dict = {}
    for r in shifted:
        key = (r.get("tgt"), config_of(r), r.get("shift_stream") or "", r.get("split"))
        groups.setdefault(key, {}).setdefault(float(r["shift_s"]), []).append(r)
    for (tgt, c, _stream, split), by_shift in groups.items():
        zero = [r for r in trans if not is_shifted(r) and r.get("tgt") == tgt and config_of(r) == c
                and r.get("split") == split]
        if zero:
            by_shift[0.0] = zero
    out = []
    for key in sorted(groups, key=lambda k: (k[0], config_key(k[1]), k[2], split_key(k[3]))):
        tgt, c, stream, split = key
        for s in sorted(groups[key]):
            g = groups[key][s]
            pairs, unpaired = pair_with_baselines(g, bidx)
            e = _stats_entry(
                dict(tgt=tgt, src=c[0], method=c[1], lam=c[2], mcma=c[3], temperature=c[4], shift_stream=stream,
                     split=split, model=labels[(tgt, c)], shift_s=s), g, pairs, unpaired)
            _mark_same(e, g, same, label_of)
            out.append({k: e[k] for k in SHIFT_KEYS})
    return out
