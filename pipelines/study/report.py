"""Experiment report: one row per run in, ``results.csv``, ``results.md`` and PNG plots out.

Pure functions over rows (a list of dicts, one per run; the keys are ``COLUMNS``, a missing value is
``None``). Imports numpy and scipy only; matplotlib (Agg backend) is imported inside the plotting
functions. No torch.

Roles: ``source`` (a pretrained source model, evaluated on its own stream), ``baseline`` (the target
trained alone: the uni-modal baseline), ``transfer`` (the target trained with a transfer method).

Pairing: a transfer row's *paired baseline* is the baseline row with the same
(``split``, ``fold``, ``seed``, ``tgt``); the paired difference is
``transfer.test_macro_f1 - baseline.test_macro_f1``. Differences are summarised by their mean and a
Student-t confidence interval over the pairs (n - 1 degrees of freedom); a single pair has no interval.
A run whose ``test_macro_f1`` is missing (None or NaN) is left out of every statistic and counted
in the report. A transfer run with no paired baseline counts for its own mean but not for the
difference. Two baselines with the same pairing key are an error (the pairing would be ambiguous).

A transfer row is *shifted* when its ``shift_s`` is non-zero (training-time misalignment of
``shift_stream``); shifted rows appear only in the sync-robustness table (``shift_table``), never in
the main summary.
"""

from __future__ import annotations

import csv
import io
import math
import os
import warnings
from pathlib import Path

import numpy as np

from pipelines.core.io import atomic_write_text

COLUMNS = (
    "cell", "role", "split", "fold", "test_subjects", "seed", "tgt", "src", "method",
    "lam", "mcma", "temperature", "shift_stream", "shift_s",
    "test_macro_f1", "test_acc", "val_macro_f1", "train_macro_f1", "gap", "src_test_macro_f1",
    "epochs_run", "best_epoch", "seconds", "run_dir", "n_test",
)
STR_COLUMNS = frozenset({"cell", "role", "split", "test_subjects", "tgt", "src", "method", "shift_stream", "run_dir"})
INT_COLUMNS = frozenset({"fold", "seed", "epochs_run", "best_epoch", "n_test"})
BOOL_COLUMNS = frozenset({"mcma"})
FLOAT_COLUMNS = frozenset(COLUMNS) - STR_COLUMNS - INT_COLUMNS - BOOL_COLUMNS

ROLES = ("source", "baseline", "transfer")
SPLIT_ORDER = ("id", "ood")
SPLIT_NAMES = {"id": "in distribution", "ood": "out of distribution"}
METHOD_ORDER = ("dcat", "logit-kd", "feature-kd")
METHOD_NAMES = {"dcat": "D-CAT", "logit-kd": "logit KD", "feature-kd": "feature KD"}
SUMMARY_KEYS = (
    "tgt", "split", "role", "model", "src", "method", "lam", "mcma", "temperature",
    "f1_mean", "f1_std", "n_runs", "diff_mean", "diff_lo", "diff_hi", "n_pairs", "n_improved", "n_unpaired",
)
SHIFT_KEYS = (
    "tgt", "src", "method", "lam", "mcma", "temperature", "shift_stream", "split", "model", "shift_s",
    "f1_mean", "f1_std", "n_runs", "diff_mean", "diff_lo", "diff_hi", "n_pairs", "n_improved",
)
PLOT_NAMES = ("lambda.png", "mcma.png", "id_vs_ood.png", "shift.png")


# ---------------------------------------------------------------------------------------------- CSV

def _cell_text(col: str, v) -> str:
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if col in INT_COLUMNS and f.is_integer():
            return str(int(f))
        return repr(f)  # shortest exact round-trip text
    return str(v)


def _parse_cell(col: str, s: str):
    if s == "":
        return "" if col in STR_COLUMNS else None
    if col in STR_COLUMNS:
        return s
    if col in INT_COLUMNS:
        try:
            return int(s)
        except ValueError:
            return int(float(s))
    if col in FLOAT_COLUMNS:
        return float(s)
    if col in BOOL_COLUMNS:
        low = s.strip().lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise ValueError(f"column {col!r}: {s!r} is not a boolean (true/false)")
    # a column outside the schema: best effort, int, float, bool, else the text
    for conv in (int, float):
        try:
            return conv(s)
        except ValueError:
            pass
    if s.lower() in ("true", "false"):
        return s.lower() == "true"
    return s


def write_csv(rows: list[dict], path: str | Path) -> Path:
    """Write rows as CSV, ``COLUMNS`` first then any extra keys (sorted); atomic (temp file + rename).

    None is written as an empty field, floats with ``repr`` (exact round trip), booleans as true/false.
    """
    extra = sorted({k for r in rows for k in r} - set(COLUMNS))
    cols = list(COLUMNS) + extra
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow([_cell_text(c, r.get(c)) for c in cols])
    path = Path(path)
    atomic_write_text(path, buf.getvalue())
    return path


def read_csv(path: str | Path) -> list[dict]:
    """Read a ``write_csv`` file back with types restored (int, float, bool; None for an empty field;
    an empty text column stays ``""``)."""
    with open(path, newline="") as f:
        rd = csv.reader(f)
        header = next(rd, None)
        if header is None:
            return []
        out = []
        for line in rd:
            if not line:
                continue
            row = {c: _parse_cell(c, s) for c, s in zip(header, line)}
            for c in COLUMNS:
                row.setdefault(c, "" if c in STR_COLUMNS else None)
            out.append(row)
    return out


# ------------------------------------------------------------------------------------- statistics

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


# ----------------------------------------------------------------------------------------- helpers

def _f1(r: dict):
    v = r.get("test_macro_f1")
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _is_shifted(r: dict) -> bool:
    s = r.get("shift_s")
    return s is not None and float(s) != 0.0


def _split_key(s: str):
    return (SPLIT_ORDER.index(s), "") if s in SPLIT_ORDER else (len(SPLIT_ORDER), str(s))


def _num_key(v):
    return (0, 0.0) if v is None else (1, float(v))


def _mcma_key(v):
    return {True: 0, False: 1}.get(v, 2)


def _method_key(m: str):
    return (METHOD_ORDER.index(m), "") if m in METHOD_ORDER else (len(METHOD_ORDER), str(m))


def _config(r: dict) -> tuple:
    """(src, method, lam, mcma, temperature) of a transfer row."""
    lam = None if r.get("lam") is None else float(r["lam"])
    temp = None if r.get("temperature") is None else float(r["temperature"])
    mcma = None if r.get("mcma") is None else bool(r["mcma"])
    return (r.get("src") or "", r.get("method") or "", lam, mcma, temp)


def _config_key(c: tuple):
    src, method, lam, mcma, temp = c
    return (src, _method_key(method), _num_key(lam), _mcma_key(mcma), _num_key(temp))


def _pick_key(c: tuple):
    """Representative config first: lambda 1, then MCMA on, then the usual order."""
    return (c[2] is None or float(c[2]) != 1.0, _mcma_key(c[3]), _config_key(c))


def _check_rows(rows: list[dict]) -> None:
    for r in rows:
        if r.get("role") not in ROLES:
            raise ValueError(f"run {r.get('cell')!r}: role {r.get('role')!r} is not one of {', '.join(ROLES)}")


def _pair_key(r: dict) -> tuple:
    return (r.get("split"), int(r.get("fold") or 0), r.get("seed"), r.get("tgt"))


def _baseline_index(rows: list[dict]) -> dict:
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


def _pairs(transfers: list[dict], bidx: dict) -> tuple[list[tuple[dict, dict]], int]:
    """(transfer, baseline) pairs with both F1 present, and the number of transfer runs left unpaired."""
    pairs, unpaired = [], 0
    for t in transfers:
        if _f1(t) is None:
            continue
        b = bidx.get(_pair_key(t))
        if b is None or _f1(b) is None:
            unpaired += 1
            continue
        pairs.append((t, b))
    return pairs, unpaired


def _fmt_num(v: float) -> str:
    return f"{float(v):g}"


def model_label(role: str, tgt: str, src: str = "", method: str = "", lam=None, mcma=None, temperature=None,
                show_lam: bool = True) -> str:
    """Human name of a model: ``imu alone``, ``video->imu D-CAT lambda 1, MCMA``, ``video alone (source)``."""
    if role == "baseline":
        return f"{tgt} alone"
    if role == "source":
        return f"{tgt} alone (source)"
    name = f"{src}->{tgt} {METHOD_NAMES.get(method, method)}"
    if method == "dcat":
        if lam is not None:
            name += f" lambda {_fmt_num(lam)}"
        if mcma is not None:
            name += ", MCMA" if mcma else ", no MCMA"
        if temperature is not None:
            name += f", T {_fmt_num(temperature)}"
        return name
    if lam is not None and show_lam:
        name += f" lambda {_fmt_num(lam)}"
    if temperature is not None:
        name += f" T {_fmt_num(temperature)}"
    if mcma:  # a KD run says MCMA only when the mask was on (off is the plain method)
        name += ", MCMA"
    return name


def _labels(transfer_rows: list[dict]) -> dict:
    """config -> label; a KD method shows its lambda only when it was run with several lambdas."""
    lams: dict = {}
    for r in transfer_rows:
        c = _config(r)
        lams.setdefault((r.get("tgt"), c[0], c[1]), set()).add(c[2])
    out = {}
    for r in transfer_rows:
        c = _config(r)
        key = (r.get("tgt"), c)
        if key not in out:
            out[key] = model_label("transfer", r.get("tgt"), *c, show_lam=len(lams[(r.get("tgt"), c[0], c[1])]) > 1)
    return out


# ------------------------------------------------------------------------------------------ tables

def _stats_entry(base: dict, f1s: list, pairs=None, unpaired=None) -> dict:
    mean, std, n = mean_std(f1s)
    e = dict(base)
    e.update(f1_mean=mean, f1_std=std, n_runs=n, diff_mean=None, diff_lo=None, diff_hi=None,
             n_pairs=None, n_improved=None, n_unpaired=None)
    if pairs is not None:
        diffs = [_f1(t) - _f1(b) for t, b in pairs]
        ci = paired_ci(diffs)
        e.update(diff_mean=ci["mean"], diff_lo=ci["lo"], diff_hi=ci["hi"], n_pairs=ci["n"],
                 n_improved=sum(d > 0 for d in diffs), n_unpaired=unpaired)
    return e


def summary_table(rows: list[dict]) -> list[dict]:
    """The main table: per target stream (sorted) and split (``id``, then ``ood``):

    - the baseline (``role="baseline"``): mean +- std of test macro-F1 over its runs (seeds; folds x
      seeds out of distribution);
    - one entry per unshifted transfer configuration (src, method, lam, mcma, temperature), sorted by
      src, method (dcat, logit-kd, feature-kd), lambda numerically, MCMA on before off, temperature:
      mean +- std, the paired difference to the baseline with its 95% t interval, ``n_pairs`` and
      ``n_improved`` (pairs with a positive difference);
    - the source models used by those transfers (their own stream, same split).

    Source runs that no transfer refers to are shown under their own stream (a section of their own
    when that stream is no target). Keys: ``SUMMARY_KEYS``.
    """
    _check_rows(rows)
    bidx = _baseline_index(rows)
    base = [r for r in rows if r.get("role") == "baseline"]
    trans_all = [r for r in rows if r.get("role") == "transfer"]
    trans = [r for r in trans_all if not _is_shifted(r)]
    sources = [r for r in rows if r.get("role") == "source"]
    labels = _labels(trans_all)

    targets = sorted({r.get("tgt") for r in base + trans_all})
    referenced: dict = {}
    for r in trans_all:
        for s in (r.get("src") or "").split("+"):
            if s:
                referenced.setdefault(r.get("tgt"), set()).add(s)
    all_ref = set().union(*referenced.values()) if referenced else set()
    unreferenced = {r.get("tgt") for r in sources} - all_ref  # shown under their own stream
    orphans = sorted(unreferenced - set(targets))

    out = []
    for tgt in targets + orphans:
        src_streams = sorted(referenced.get(tgt, set()) | ({tgt} & unreferenced))
        sec_src = [r for r in sources if r.get("tgt") in src_streams]
        sec_base = [r for r in base if r.get("tgt") == tgt] if tgt in targets else []
        sec_trans = [r for r in trans if r.get("tgt") == tgt] if tgt in targets else []
        splits = sorted({r.get("split") for r in sec_base + sec_trans + sec_src}, key=_split_key)
        for split in splits:
            b = [r for r in sec_base if r.get("split") == split]
            if b:
                out.append(_stats_entry(
                    dict(tgt=tgt, split=split, role="baseline", model=model_label("baseline", tgt), src="",
                         method="none", lam=None, mcma=None, temperature=None), [_f1(r) for r in b]))
            groups: dict = {}
            for r in sec_trans:
                if r.get("split") == split:
                    groups.setdefault(_config(r), []).append(r)
            for c in sorted(groups, key=_config_key):
                g = groups[c]
                pairs, unpaired = _pairs(g, bidx)
                out.append(_stats_entry(
                    dict(tgt=tgt, split=split, role="transfer", model=labels[(tgt, c)], src=c[0], method=c[1],
                         lam=c[2], mcma=c[3], temperature=c[4]),
                    [_f1(r) for r in g], pairs, unpaired))
            for s in src_streams:
                g = [r for r in sec_src if r.get("tgt") == s and r.get("split") == split]
                if g:
                    out.append(_stats_entry(
                        dict(tgt=tgt, split=split, role="source", model=model_label("source", s), src=s,
                             method="pretrain", lam=None, mcma=None, temperature=None), [_f1(r) for r in g]))
    return out


def shift_table(rows: list[dict]) -> list[dict]:
    """Sync robustness: for each shifted configuration (tgt, src, method, lam, mcma, temperature,
    shift_stream, split), the paired gain over the baseline at each training-time shift, shift 0
    being the unshifted run of the same configuration (when there is one). Sorted by configuration
    then shift. Empty when no row is shifted. Keys: ``SHIFT_KEYS``.
    """
    _check_rows(rows)
    trans = [r for r in rows if r.get("role") == "transfer"]
    shifted = [r for r in trans if _is_shifted(r)]
    if not shifted:
        return []
    bidx = _baseline_index(rows)
    labels = _labels(trans)
    groups: dict = {}
    for r in shifted:
        key = (r.get("tgt"), _config(r), r.get("shift_stream") or "", r.get("split"))
        groups.setdefault(key, {}).setdefault(float(r["shift_s"]), []).append(r)
    for (tgt, c, _stream, split), by_shift in groups.items():
        zero = [r for r in trans if not _is_shifted(r) and r.get("tgt") == tgt and _config(r) == c
                and r.get("split") == split]
        if zero:
            by_shift[0.0] = zero
    out = []
    for key in sorted(groups, key=lambda k: (k[0], _config_key(k[1]), k[2], _split_key(k[3]))):
        tgt, c, stream, split = key
        for s in sorted(groups[key]):
            g = groups[key][s]
            pairs, unpaired = _pairs(g, bidx)
            e = _stats_entry(
                dict(tgt=tgt, src=c[0], method=c[1], lam=c[2], mcma=c[3], temperature=c[4], shift_stream=stream,
                     split=split, model=labels[(tgt, c)], shift_s=s), [_f1(r) for r in g], pairs, unpaired)
            out.append({k: e[k] for k in SHIFT_KEYS})
    return out


def _gap(r: dict):
    g = r.get("gap")
    if g is None and r.get("train_macro_f1") is not None and r.get("val_macro_f1") is not None:
        g = float(r["train_macro_f1"]) - float(r["val_macro_f1"])
    if g is None or not math.isfinite(float(g)):
        return None
    return float(g)


def _pearson(x: list[float], y: list[float]) -> tuple:
    """(r, p) or (None, None) when n < 3 or either series is constant."""
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None, None
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.pearsonr(x, y)
    r, p = float(res[0]), float(res[1])
    return (r, p) if math.isfinite(r) else (None, None)


def overfit_table(rows: list[dict]) -> list[dict]:
    """Is the target overfitted before transfer, and does that predict the gain?

    For each (split, tgt, src) with D-CAT runs: the D-CAT configuration used is lambda 1 with MCMA
    on if present (else lambda 1, else the first D-CAT configuration in table order), chosen once
    per (tgt, src) so ID and OOD show the same one. Each entry lists the pairs (fold, seed, the
    baseline's train - val macro-F1 gap, the baseline and D-CAT test macro-F1, the gain), and the
    Pearson correlation of gap and gain with its p-value when n >= 3 (None otherwise, or when either
    series is constant).
    """
    _check_rows(rows)
    bidx = _baseline_index(rows)
    dcat = [r for r in rows if r.get("role") == "transfer" and r.get("method") == "dcat" and not _is_shifted(r)]
    labels = _labels([r for r in rows if r.get("role") == "transfer"])
    chosen: dict = {}
    for r in dcat:
        chosen.setdefault((r.get("tgt"), r.get("src") or ""), set()).add(_config(r))
    chosen = {k: min(v, key=_pick_key) for k, v in chosen.items()}
    out = []
    splits = sorted({r.get("split") for r in dcat}, key=_split_key)
    for split in splits:
        for (tgt, src) in sorted(chosen):
            c = chosen[(tgt, src)]
            g = [r for r in dcat if r.get("split") == split and r.get("tgt") == tgt and _config(r) == c]
            pairs, _ = _pairs(g, bidx)
            items = []
            for t, b in sorted(pairs, key=lambda p: (int(p[0].get("fold") or 0), p[0].get("seed"))):
                gap = _gap(b)
                if gap is None:
                    continue
                items.append(dict(fold=int(t.get("fold") or 0), seed=t.get("seed"), gap=gap,
                                  baseline_f1=_f1(b), transfer_f1=_f1(t), gain=_f1(t) - _f1(b)))
            if not items:
                continue
            r_, p_ = _pearson([i["gap"] for i in items], [i["gain"] for i in items])
            out.append(dict(split=split, tgt=tgt, src=src, method="dcat", lam=c[2], mcma=c[3], temperature=c[4],
                            model=labels[(tgt, c)], pairs=items, n=len(items), pearson_r=r_, pearson_p=p_))
    return out


# ---------------------------------------------------------------------------------------- markdown

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


def _split_name(s: str) -> str:
    return SPLIT_NAMES.get(s, str(s))


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
    counts = {role: sum(r.get("role") == role for r in rows) for role in ROLES}
    n_shift = sum(r.get("role") == "transfer" and _is_shifted(r) for r in rows)
    missing = [r.get("cell") for r in rows if _f1(r) is None]

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
            body.append([_split_name(e["split"]), e["model"], fmt_mean_std(e["f1_mean"], e["f1_std"], e["n_runs"]),
                         diff, n, imp])
        L += _md_table(["setting", "model", "macro-F1 (mean ± std)", f"difference to {tgt} alone [95% CI]",
                        "n", "improved"], body)
        L.append("")

    if shifts:
        L += ["## Sync robustness: training-time misalignment", "",
              "Gain of the transfer over the uni-modal baseline when the named stream was shifted by "
              "the given time during training (shift 0: the same configuration, aligned).", ""]
        body = [[_split_name(e["split"]), e["model"], e["shift_stream"] or "-",
                 f"{e['shift_s']:+g}" if e["shift_s"] else "0", fmt_mean_std(e["f1_mean"], e["f1_std"], e["n_runs"]),
                 fmt_diff(e["diff_mean"], e["diff_lo"], e["diff_hi"], e["n_pairs"]), str(e["n_pairs"] or 0)]
                for e in shifts]
        L += _md_table(["setting", "model", "shifted stream", "shift (s)", "macro-F1 (mean ± std)",
                        "difference to uni-modal [95% CI]", "n"], body)
        L.append("")

    if over:
        L += ["## Overfitting before transfer and the D-CAT gain", "",
              "Gap: the uni-modal baseline's train minus validation macro-F1 (best checkpoint); "
              "gain: D-CAT test macro-F1 minus the baseline's, on the same split, fold and seed.", ""]
        for e in over:
            L += [f"### {_split_name(e['split'])}: {e['model']}", ""]
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

    if plots:
        L += ["## Plots", ""] + [f"![{Path(p).stem}]({Path(p).as_posix()})" for p in plots] + [""]

    L += ["## How to read this", "",
          "Each transfer run is paired with the uni-modal baseline of the same target, split, fold and seed; "
          "the difference column is the mean of those paired differences with a 95% Student-t confidence "
          "interval, and n is the number of paired runs (seeds in distribution, folds x seeds out of "
          "distribution). An interval that excludes 0 means the seeds/folds agree on the sign of the effect; "
          "one that includes 0 means this grid cannot tell the effect from run-to-run noise. With n=1 there "
          "is no interval. \"improved\" counts the pairs in which the transfer beat its baseline. "
          "The source rows show how strong the teacher is on its own stream; it is not used at test time.", ""]
    return "\n".join(L)


# ------------------------------------------------------------------------------------------- plots

def _errorbar(ax, x, y, std, color, **kw):
    """Line with markers; error bars only where the std is finite (a single run has none)."""
    x, y, std = np.asarray(x, float), np.asarray(y, float), np.asarray(std, float)
    ax.plot(x, y, marker="o", color=color, **kw)
    ok = np.isfinite(std) & np.isfinite(y)
    if ok.any():
        ax.errorbar(x[ok], y[ok], yerr=std[ok], fmt="none", ecolor=color, capsize=3)


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.tight_layout()
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def _bars(ax, groups: list[str], series: list[tuple[str, list, list]]):
    """Grouped bars: ``series`` = [(label, means, stds)], one bar per series in each group."""
    k = max(len(series), 1)
    width = 0.8 / k
    x = np.arange(len(groups))
    for i, (label, means, stds) in enumerate(series):
        m = np.asarray([np.nan if v is None else v for v in means], float)
        s = np.asarray([np.nan if v is None else v for v in stds], float)
        pos = x - 0.4 + width * (i + 0.5)
        ax.bar(pos, np.nan_to_num(m), width, label=label)
        ok = np.isfinite(s) & np.isfinite(m)
        if ok.any():
            ax.errorbar(pos[ok], m[ok], yerr=s[ok], fmt="none", ecolor="black", capsize=3)
    ax.set_xticks(x, groups, rotation=20, ha="right", fontsize=8)


def plot_all(rows: list[dict], out_dir: str | Path) -> list[Path]:
    """Write the PNGs that the rows support into ``out_dir`` and return their paths:

    - ``lambda.png``: D-CAT macro-F1 vs lambda (log x), one line per (src->tgt, MCMA), std error bars,
      dashed line at the uni-modal baseline mean; one panel per split;
    - ``mcma.png``: MCMA on vs off at each lambda (grouped bars, std), per split; needs both settings;
    - ``id_vs_ood.png``: baseline, each transfer method (D-CAT at lambda 1, MCMA on if present) and the
      source, ID vs OOD bars, one panel per target;
    - ``shift.png``: paired gain vs training-time shift with 95% CI error bars; only with shift rows.

    A plot whose rows are absent is skipped. A single run (no std) draws no error bar.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summary_table(rows)
    written: list[Path] = []
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    dc = [e for e in summary if e["method"] == "dcat" and e["lam"] is not None and e["lam"] > 0]
    baselines = {(e["tgt"], e["split"]): e for e in summary if e["role"] == "baseline"}
    splits = sorted({e["split"] for e in dc}, key=_split_key)

    # lambda.png
    if dc:
        fig, axes = plt.subplots(1, len(splits), figsize=(5.0 * len(splits), 3.8), dpi=100, squeeze=False)
        for ax, split in zip(axes[0], splits):
            lines: dict = {}
            for e in dc:
                if e["split"] == split:
                    lines.setdefault((e["tgt"], e["src"], e["mcma"], e["temperature"]), []).append(e)
            keys = sorted(lines, key=lambda k: (k[0], k[1], _mcma_key(k[2]), _num_key(k[3])))
            for i, key in enumerate(keys):
                es = sorted(lines[key], key=lambda e: e["lam"])
                tgt, src, mcma, temp = key
                lab = f"{src}->{tgt}" + {True: ", MCMA", False: ", no MCMA"}.get(mcma, "")
                if temp is not None:
                    lab += f", T {_fmt_num(temp)}"
                dodge = 10 ** (0.015 * (i - (len(keys) - 1) / 2))  # so error bars do not hide each other
                _errorbar(ax, [e["lam"] * dodge for e in es], [e["f1_mean"] for e in es],
                          [e["f1_std"] for e in es], colors[i % len(colors)], label=lab)
            for j, tgt in enumerate(sorted({k[0] for k in lines})):
                b = baselines.get((tgt, split))
                if b is not None and math.isfinite(b["f1_mean"]):
                    ax.axhline(b["f1_mean"], ls="--", color="gray" if j == 0 else colors[-1 - j],
                               label=f"{tgt} alone")
            ax.set_xscale("log")
            lams = sorted({e["lam"] for e in dc if e["split"] == split})
            ax.set_xticks(lams, [_fmt_num(v) for v in lams])
            ax.minorticks_off()
            ax.set_xlabel("lambda")
            ax.set_ylabel("test macro-F1")
            ax.set_title(_split_name(split), fontsize=10)
            ax.legend(fontsize=7)
        written.append(_save(fig, out_dir / "lambda.png"))

    # mcma.png
    on_off = {e["mcma"] for e in dc}
    if True in on_off and False in on_off:
        fig, axes = plt.subplots(1, len(splits), figsize=(5.0 * len(splits), 3.8), dpi=100, squeeze=False)
        for ax, split in zip(axes[0], splits):
            es = [e for e in dc if e["split"] == split and e["mcma"] is not None]
            keys = sorted({(e["tgt"], e["src"], e["lam"], e["temperature"]) for e in es},
                          key=lambda k: (k[0], k[1], k[2], _num_key(k[3])))
            look = {(e["tgt"], e["src"], e["lam"], e["temperature"], e["mcma"]): e for e in es}
            groups = [f"{s}->{t}\nlambda {_fmt_num(lam)}" if len({(k[0], k[1]) for k in keys}) > 1
                      else f"lambda {_fmt_num(lam)}" for t, s, lam, _T in keys]
            series = []
            for flag, lab in ((True, "MCMA on"), (False, "MCMA off")):
                got = [look.get(k + (flag,)) for k in keys]
                series.append((lab, [g["f1_mean"] if g else None for g in got],
                               [g["f1_std"] if g else None for g in got]))
            _bars(ax, groups, series)
            ax.set_ylabel("test macro-F1")
            ax.set_title(_split_name(split), fontsize=10)
            ax.legend(fontsize=7)
        written.append(_save(fig, out_dir / "mcma.png"))

    # id_vs_ood.png
    targets = list(dict.fromkeys(e["tgt"] for e in summary))
    if summary:
        picks: dict = {}
        for e in summary:
            if e["role"] == "transfer":
                c = (e["src"], e["method"], e["lam"], e["mcma"], e["temperature"])
                picks.setdefault((e["tgt"], e["src"], e["method"]), set()).add(c)
        picks = {k: min(v, key=_pick_key) for k, v in picks.items()}
        chosen_by_tgt = {
            tgt: [e for e in summary if e["tgt"] == tgt and (
                e["role"] != "transfer" or (e["src"], e["method"], e["lam"], e["mcma"], e["temperature"])
                == picks[(tgt, e["src"], e["method"])])]
            for tgt in targets}
        n_models = max(len({e["model"] for e in v}) for v in chosen_by_tgt.values())
        fig, axes = plt.subplots(1, len(targets), figsize=(max(5.0, 1.1 * n_models) * len(targets), 4.5),
                                 dpi=100, squeeze=False)
        for ax, tgt in zip(axes[0], targets):
            chosen = chosen_by_tgt[tgt]
            models = list(dict.fromkeys(e["model"] for e in chosen))
            sp = sorted({e["split"] for e in chosen}, key=_split_key)
            look = {(e["model"], e["split"]): e for e in chosen}
            series = []
            for s in sp:
                got = [look.get((m, s)) for m in models]
                series.append((_split_name(s), [g["f1_mean"] if g else None for g in got],
                               [g["f1_std"] if g else None for g in got]))
            _bars(ax, models, series)
            ax.set_ylabel("test macro-F1")
            ax.set_title(f"target: {tgt}", fontsize=10)
            ax.legend(fontsize=7)
        written.append(_save(fig, out_dir / "id_vs_ood.png"))

    # shift.png
    shifts = shift_table(rows)
    if shifts:
        sp = sorted({e["split"] for e in shifts}, key=_split_key)
        fig, axes = plt.subplots(1, len(sp), figsize=(5.0 * len(sp), 3.8), dpi=100, squeeze=False)
        for ax, split in zip(axes[0], sp):
            lines: dict = {}
            for e in shifts:
                if e["split"] == split and e["diff_mean"] is not None:
                    lines.setdefault((e["model"], e["shift_stream"]), []).append(e)
            for i, key in enumerate(sorted(lines)):
                es = sorted(lines[key], key=lambda e: e["shift_s"])
                x = np.asarray([e["shift_s"] for e in es], float)
                y = np.asarray([e["diff_mean"] for e in es], float)
                half = np.asarray([np.nan if e["diff_lo"] is None else e["diff_mean"] - e["diff_lo"] for e in es])
                color = colors[i % len(colors)]
                ax.plot(x, y, marker="o", color=color, label=f"{key[0]} ({key[1]} shifted)")
                ok = np.isfinite(half)
                if ok.any():
                    ax.errorbar(x[ok], y[ok], yerr=half[ok], fmt="none", ecolor=color, capsize=3)
            ax.axhline(0.0, ls="--", color="gray")
            ax.set_xlabel("training-time shift (s)")
            ax.set_ylabel("macro-F1 gain over uni-modal (95% CI)")
            ax.set_title(_split_name(split), fontsize=10)
            ax.legend(fontsize=7)
        written.append(_save(fig, out_dir / "shift.png"))
    return written


# ------------------------------------------------------------------------------------------ report

def write_report(rows: list[dict], out_dir: str | Path, title: str = "D-CAT experiment results",
                 notes=None) -> dict:
    """Write ``results.csv``, the plots under ``plots/`` and ``results.md`` (linking the plots) into
    ``out_dir``. A plot from an earlier report that these rows no longer support is removed.
    Returns dict(csv=Path, markdown=Path, plots=[Path, ...]).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = write_csv(rows, out_dir / "results.csv")
    plot_dir = out_dir / "plots"
    plots = plot_all(rows, plot_dir)
    for name in PLOT_NAMES:
        p = plot_dir / name
        if p not in plots and p.exists():
            p.unlink()
    md = render_markdown(rows, title=title, notes=notes, plots=[p.relative_to(out_dir) for p in plots])
    md_path = out_dir / "results.md"
    atomic_write_text(md_path, md)
    return {"csv": csv_path, "markdown": md_path, "plots": plots}
