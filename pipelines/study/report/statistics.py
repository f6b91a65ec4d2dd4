"""The numbers behind the tables: mean and std, the paired t interval over test sets, the
subject-level cluster bootstrap, Pearson's r, and the pairing of each compared run with its baseline.

Roles: ``source`` (a stream pretrained alone that is only a source, evaluated on its own stream),
``baseline`` (the target trained alone: the uni-modal baseline), ``null`` (the baseline again with
another training seed), ``reference`` (the classical model on the target), ``transfer`` (the
target trained with a transfer method). ``null``, ``reference`` and ``transfer`` rows are
*compared* with the baseline.

Pairing: a compared row's *paired baseline* is the baseline row with the same
(``split``, ``fold``, ``seed``, ``tgt``); the paired difference is
``row.test_macro_f1 - baseline.test_macro_f1``.

Replication: the unit of replication is the *test set*, one ``(split, fold)``. The seeds of a fold
test the same windows, so they are not independent replicates: their paired differences are
averaged within the fold first, and the Student-t interval is taken over the folds' means
(n = folds, n - 1 degrees of freedom; one fold has no interval). Where folds are few, a
subject-level cluster bootstrap resamples the test subjects instead (each subject's paired
difference averaged over its folds and seeds).

A run whose ``test_macro_f1`` is missing (None or NaN) is left out of every statistic. A compared
run with no paired baseline counts for its own mean but not for the difference. Two baselines with
the same pairing key are an error (the pairing would be ambiguous).

A transfer row is *shifted* when its ``shift_s`` is non-zero (training-time misalignment of
``shift_stream``). Imports numpy; scipy inside the functions that need it.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

ROLES = ("source", "baseline", "null", "reference", "transfer")
#: roles compared with the baseline like a method
COMPARED = ("null", "reference", "transfer")
#: the subject bootstrap is reported when a comparison has fewer test sets (folds) than this
BOOTSTRAP_BELOW_FOLDS = 5
BOOTSTRAP_SAMPLES = 2000


def _finite(values) -> list[float]:
    out = []
    for v in values:
        if v is None:
            continue
        f = float(v)
        if math.isfinite(f):
            out.append(f)
    return out


def mean_std(values) -> tuple[float, float, int]:
    """(mean, sample std with ddof=1, n) of the finite values; None / NaN are left out.

    std is NaN when n < 2; mean is NaN when n == 0.
    """
    x = np.asarray(_finite(values), dtype=np.float64)
    n = int(x.size)
    mean = float(x.mean()) if n else math.nan
    std = float(x.std(ddof=1)) if n >= 2 else math.nan
    return mean, std, n


def paired_ci(diffs, level: float = 0.95) -> dict:
    """Student-t interval of the mean paired difference: ``mean +- t_{(1+level)/2, n-1} * s / sqrt(n)``.

    Returns dict(mean, lo, hi, n, level). With n < 2 the interval is undefined: lo and hi are None
    (mean is None when n == 0).
    """
    from scipy import stats

    mean, std, n = mean_std(diffs)
    if n == 0:
        return {"mean": None, "lo": None, "hi": None, "n": 0, "level": level}
    if n < 2:
        return {"mean": mean, "lo": None, "hi": None, "n": n, "level": level}
    half = float(stats.t.ppf(0.5 + level / 2.0, n - 1)) * std / math.sqrt(n)
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "n": n, "level": level}


def _fold_of(r: dict) -> tuple:
    return (r.get("split"), int(r.get("fold") or 0))


def fold_diffs(pairs: list[tuple[dict, dict]]) -> dict:
    """(split, fold) -> the seed-averaged paired difference of that test set, in fold order."""
    by: dict = {}
    for t, b in pairs:
        by.setdefault(_fold_of(t), []).append(row_f1(t) - row_f1(b))
    return {k: float(np.mean(v)) for k, v in sorted(by.items(), key=lambda kv: (str(kv[0][0]), kv[0][1]))}


def fold_ci(pairs: list[tuple[dict, dict]], level: float = 0.95) -> dict:
    """The paired difference over test sets: the seeds of each fold averaged, then
    :func:`paired_ci` over the folds. Returns dict(mean, lo, hi, n (test sets), n_pairs (runs),
    n_improved (test sets whose mean difference is positive), level)."""
    per_fold = fold_diffs(pairs)
    ci = paired_ci(list(per_fold.values()), level)
    ci.update(n_pairs=len(pairs), n_improved=sum(d > 0 for d in per_fold.values()))
    return ci


def _subject_f1(r: dict) -> dict:
    import json

    v = r.get("test_subject_f1")
    if not v:
        return {}
    try:
        d = json.loads(v) if isinstance(v, str) else dict(v)
    except ValueError:
        return {}
    return {str(k): float(x) for k, x in d.items() if x is not None and math.isfinite(float(x))}


def subject_bootstrap(pairs: list[tuple[dict, dict]], level: float = 0.95, n_boot: int = BOOTSTRAP_SAMPLES,
                      seed: int = 0) -> dict | None:
    """Subject-level cluster bootstrap of the mean paired difference: each test subject's
    difference (its macro-F1 in the compared run minus in the baseline) is averaged over the
    folds and seeds that test it; the subjects are resampled with replacement ``n_boot`` times and
    the percentile interval of the mean is returned as dict(mean, lo, hi, n_subjects, level).
    None when fewer than 3 subjects have per-subject scores in both runs."""
    by: dict = {}
    for t, b in pairs:
        ts, bs = _subject_f1(t), _subject_f1(b)
        for s in sorted(set(ts) & set(bs)):
            by.setdefault(s, []).append(ts[s] - bs[s])
    if len(by) < 3:
        return None
    x = np.asarray([np.mean(by[s]) for s in sorted(by)], dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    a = (1 - level) / 2
    return {"mean": float(x.mean()), "lo": float(np.quantile(means, a)), "hi": float(np.quantile(means, 1 - a)),
            "n_subjects": int(len(x)), "level": level}


def pearson(x: list[float], y: list[float]) -> tuple:
    """(r, p) or (None, None) when n < 3 or either series is constant (a spread below 1e-12: rounding)."""
    if len(x) < 3 or np.ptp(x) <= 1e-12 or np.ptp(y) <= 1e-12:
        return None, None
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.pearsonr(x, y)
    r, p = float(res[0]), float(res[1])
    return (r, p) if math.isfinite(r) else (None, None)


# ------------------------------------------------------------------------------------------- rows

def finite_or_none(v) -> float | None:
    """``v`` as a float, or None when it is missing or not finite."""
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def row_f1(r: dict):
    """The row's test macro-F1, or None when it is missing or not finite."""
    return finite_or_none(r.get("test_macro_f1"))


def row_gap(r: dict):
    """The row's train - val macro-F1 (computed when the ``gap`` column is empty), or None."""
    g = r.get("gap")
    if g is None and r.get("train_macro_f1") is not None and r.get("val_macro_f1") is not None:
        g = float(r["train_macro_f1"]) - float(r["val_macro_f1"])
    if g is None or not math.isfinite(float(g)):
        return None
    return float(g)


def is_shifted(r: dict) -> bool:
    s = r.get("shift_s")
    return s is not None and float(s) != 0.0


def check_rows(rows: list[dict]) -> None:
    for r in rows:
        if r.get("role") not in ROLES:
            raise ValueError(f"run {r.get('cell')!r}: role {r.get('role')!r} is not one of {', '.join(ROLES)}")


# ---------------------------------------------------------------------------------------- pairing

def _pair_key(r: dict) -> tuple:
    return (r.get("split"), int(r.get("fold") or 0), r.get("seed"), r.get("tgt"))


def baseline_index(rows: list[dict]) -> dict:
    """(split, fold, seed, tgt) -> the baseline row; two baselines with one key are an error."""
    idx: dict = {}
    for r in rows:
        if r.get("role") != "baseline":
            continue
        k = _pair_key(r)
        if k in idx:
            raise ValueError(
                f"two baseline runs share split/fold/seed/tgt {k}: {idx[k].get('cell')!r} and {r.get('cell')!r}; "
                "the pairing would be ambiguous: give each baseline a distinct seed or drop one")
        idx[k] = r
    return idx


def pair_with_baselines(transfers: list[dict], bidx: dict) -> tuple[list[tuple[dict, dict]], int]:
    """(compared run, baseline) pairs with both F1 present, and the number of compared runs left unpaired."""
    pairs, unpaired = [], 0
    for t in transfers:
        if row_f1(t) is None:
            continue
        b = bidx.get(_pair_key(t))
        if b is None or row_f1(b) is None:
            unpaired += 1
            continue
        pairs.append((t, b))
    return pairs, unpaired
