"""The numbers behind the tables: mean and std, the paired t interval, Pearson's r, and the pairing
of each transfer run with its baseline.

Roles: ``source`` (a pretrained source model, evaluated on its own stream), ``baseline`` (the target
trained alone: the uni-modal baseline), ``transfer`` (the target trained with a transfer method).

Pairing: a transfer row's *paired baseline* is the baseline row with the same
(``split``, ``fold``, ``seed``, ``tgt``); the paired difference is
``transfer.test_macro_f1 - baseline.test_macro_f1``. Differences are summarised by their mean and a
Student-t confidence interval over the pairs (n - 1 degrees of freedom); a single pair has no interval.
A run whose ``test_macro_f1`` is missing (None or NaN) is left out of every statistic. A transfer run
with no paired baseline counts for its own mean but not for the difference. Two baselines with the
same pairing key are an error (the pairing would be ambiguous).

A transfer row is *shifted* when its ``shift_s`` is non-zero (training-time misalignment of
``shift_stream``). Imports numpy; scipy inside the functions that need it.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

ROLES = ("source", "baseline", "transfer")


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


def pearson(x: list[float], y: list[float]) -> tuple:
    """(r, p) or (None, None) when n < 3 or either series is constant."""
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None, None
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.pearsonr(x, y)
    r, p = float(res[0]), float(res[1])
    return (r, p) if math.isfinite(r) else (None, None)


# ------------------------------------------------------------------------------------------- rows

def row_f1(r: dict):
    """The row's test macro-F1, or None when it is missing or not finite."""
    v = r.get("test_macro_f1")
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


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
    """(transfer, baseline) pairs with both F1 present, and the number of transfer runs left unpaired."""
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
