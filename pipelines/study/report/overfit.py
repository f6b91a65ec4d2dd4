"""Is the target overfitted before transfer, and does that predict D-CAT's gain? Without the confound.

Measured naively (gap = baseline train - val, gain = D-CAT test - the *same* baseline's test) the
two share the baseline run: a baseline that overfits by chance tends to test low, which raises the
gain, so r comes out non-zero with no D-CAT effect at all (regression to the mean). Here:

- gap: the baseline's (seed s) train minus validation macro-F1;
- gain: D-CAT (chosen on validation in the unit, seed s) test macro-F1 minus the *null* baseline's
  (seed s + 1000, same split), an independent run;
- null gain: the baseline's (seed s) test minus the same null's: what the gain would be if D-CAT
  changed nothing. Its r with the gap (``r_null``) is shown beside the gain's, so a reader sees
  what correlation arises without D-CAT.

The pairs of one fold share their test set, so they are not independent: no p-value is given.
"""

from __future__ import annotations

from pipelines.study.report.names import model_label
from pipelines.study.report.names import split_key
from pipelines.study.report.selection import choose_on_validation
from pipelines.study.report.statistics import baseline_index, check_rows, pearson, row_f1, row_gap

OVERFIT_KEYS = ("split", "tgt", "src", "model", "pairs", "n", "n_tests", "pearson_r", "null_r")


def _null_index(rows: list[dict]) -> dict:
    return {(r.get("split"), int(r.get("fold") or 0), r.get("seed"), r.get("tgt")): r
            for r in rows if r.get("role") == "null" and row_f1(r) is not None}


def overfit_table(rows: list[dict]) -> list[dict]:
    """One entry per (split, tgt, src) with D-CAT runs chosen on validation, a baseline and a null in
    the same units: ``pairs`` (fold, seed, gap, baseline_f1, null_f1, transfer_f1, gain, null_gain),
    ``n`` pairs over ``n_tests`` folds, ``pearson_r`` (gap vs gain) and ``null_r`` (gap vs null
    gain); an r is None with fewer than 3 pairs or a constant series. Empty without null runs.
    Keys: ``OVERFIT_KEYS``."""
    check_rows(rows)
    bidx = baseline_index(rows)
    nidx = _null_index(rows)
    groups: dict = {}
    for (split, fold, seed, tgt, src), d in choose_on_validation(rows).items():
        b = bidx.get((split, fold, seed, tgt))
        n = nidx.get((split, fold, seed, tgt))
        if b is None or n is None or row_f1(d) is None or row_f1(b) is None or row_gap(b) is None:
            continue
        groups.setdefault((split, tgt, src), []).append(dict(
            fold=fold, seed=seed, gap=row_gap(b), baseline_f1=row_f1(b), null_f1=row_f1(n), transfer_f1=row_f1(d),
            gain=row_f1(d) - row_f1(n), null_gain=row_f1(b) - row_f1(n)))
    out = []
    for (split, tgt, src) in sorted(groups, key=lambda k: (split_key(k[0]), k[1], k[2])):
        items = sorted(groups[(split, tgt, src)], key=lambda i: (i["fold"], i["seed"]))
        gap = [i["gap"] for i in items]
        r_, _ = pearson(gap, [i["gain"] for i in items])
        r0, _ = pearson(gap, [i["null_gain"] for i in items])
        out.append(dict(split=split, tgt=tgt, src=src, model=model_label("selected", tgt, src), pairs=items,
                        n=len(items), n_tests=len({i["fold"] for i in items}), pearson_r=r_, null_r=r0))
    return out
