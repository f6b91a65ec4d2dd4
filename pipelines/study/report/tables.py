"""The report's tables over rows (a list of dicts keyed by ``COLUMNS``): the main summary (mean and
std per model, the paired difference to the uni-modal baseline), the sync-robustness table of the
shifted runs, and the overfitting table; with the models' names and the order of the entries.

Shifted transfer rows (non-zero ``shift_s``) appear only in ``shift_table``, never in the summary.
"""

from __future__ import annotations

from pipelines.study.report.statistics import (baseline_index, check_rows, is_shifted, mean_std, paired_ci,
                                               pair_with_baselines, pearson, row_f1, row_gap)

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


# ------------------------------------------------------------------------------------ order, names

def split_key(s: str):
    """Sort key of a split: ``id``, ``ood``, then any other by name."""
    return (SPLIT_ORDER.index(s), "") if s in SPLIT_ORDER else (len(SPLIT_ORDER), str(s))


def num_key(v):
    """Sort key of a number that may be None (None first)."""
    return (0, 0.0) if v is None else (1, float(v))


def mcma_key(v):
    """Sort key of an MCMA setting: on, off, unset."""
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
    return (src, _method_key(method), num_key(lam), mcma_key(mcma), num_key(temp))


def pick_key(c: tuple):
    """Representative config first: lambda 1, then MCMA on, then the usual order."""
    return (c[2] is None or float(c[2]) != 1.0, mcma_key(c[3]), _config_key(c))


def split_name(s: str) -> str:
    """``in distribution`` / ``out of distribution`` (another split: its own name)."""
    return SPLIT_NAMES.get(s, str(s))


def fmt_num(v: float) -> str:
    """A setting's number as a label shows it: ``0.1``, ``1``, ``10``."""
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
            name += f" lambda {fmt_num(lam)}"
        if mcma is not None:
            name += ", MCMA" if mcma else ", no MCMA"
        if temperature is not None:
            name += f", T {fmt_num(temperature)}"
        return name
    if lam is not None and show_lam:
        name += f" lambda {fmt_num(lam)}"
    if temperature is not None:
        name += f" T {fmt_num(temperature)}"
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
    """``base`` with the mean and std of ``f1s`` and, given the pairs, the paired difference to the baseline."""
    mean, std, n = mean_std(f1s)
    e = dict(base)
    e.update(f1_mean=mean, f1_std=std, n_runs=n, diff_mean=None, diff_lo=None, diff_hi=None,
             n_pairs=None, n_improved=None, n_unpaired=None)
    if pairs is not None:
        diffs = [row_f1(t) - row_f1(b) for t, b in pairs]
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
    check_rows(rows)
    bidx = baseline_index(rows)
    base = [r for r in rows if r.get("role") == "baseline"]
    trans_all = [r for r in rows if r.get("role") == "transfer"]
    trans = [r for r in trans_all if not is_shifted(r)]
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
        splits = sorted({r.get("split") for r in sec_base + sec_trans + sec_src}, key=split_key)
        for split in splits:
            b = [r for r in sec_base if r.get("split") == split]
            if b:
                out.append(_stats_entry(
                    dict(tgt=tgt, split=split, role="baseline", model=model_label("baseline", tgt), src="",
                         method="none", lam=None, mcma=None, temperature=None), [row_f1(r) for r in b]))
            groups: dict = {}
            for r in sec_trans:
                if r.get("split") == split:
                    groups.setdefault(_config(r), []).append(r)
            for c in sorted(groups, key=_config_key):
                g = groups[c]
                pairs, unpaired = pair_with_baselines(g, bidx)
                out.append(_stats_entry(
                    dict(tgt=tgt, split=split, role="transfer", model=labels[(tgt, c)], src=c[0], method=c[1],
                         lam=c[2], mcma=c[3], temperature=c[4]),
                    [row_f1(r) for r in g], pairs, unpaired))
            for s in src_streams:
                g = [r for r in sec_src if r.get("tgt") == s and r.get("split") == split]
                if g:
                    out.append(_stats_entry(
                        dict(tgt=tgt, split=split, role="source", model=model_label("source", s), src=s,
                             method="pretrain", lam=None, mcma=None, temperature=None), [row_f1(r) for r in g]))
    return out


def shift_table(rows: list[dict]) -> list[dict]:
    """Sync robustness: for each shifted configuration (tgt, src, method, lam, mcma, temperature,
    shift_stream, split), the paired gain over the baseline at each training-time shift, shift 0
    being the unshifted run of the same configuration (when there is one). Sorted by configuration
    then shift. Empty when no row is shifted. Keys: ``SHIFT_KEYS``.
    """
    check_rows(rows)
    trans = [r for r in rows if r.get("role") == "transfer"]
    shifted = [r for r in trans if is_shifted(r)]
    if not shifted:
        return []
    bidx = baseline_index(rows)
    labels = _labels(trans)
    groups: dict = {}
    for r in shifted:
        key = (r.get("tgt"), _config(r), r.get("shift_stream") or "", r.get("split"))
        groups.setdefault(key, {}).setdefault(float(r["shift_s"]), []).append(r)
    for (tgt, c, _stream, split), by_shift in groups.items():
        zero = [r for r in trans if not is_shifted(r) and r.get("tgt") == tgt and _config(r) == c
                and r.get("split") == split]
        if zero:
            by_shift[0.0] = zero
    out = []
    for key in sorted(groups, key=lambda k: (k[0], _config_key(k[1]), k[2], split_key(k[3]))):
        tgt, c, stream, split = key
        for s in sorted(groups[key]):
            g = groups[key][s]
            pairs, unpaired = pair_with_baselines(g, bidx)
            e = _stats_entry(
                dict(tgt=tgt, src=c[0], method=c[1], lam=c[2], mcma=c[3], temperature=c[4], shift_stream=stream,
                     split=split, model=labels[(tgt, c)], shift_s=s), [row_f1(r) for r in g], pairs, unpaired)
            out.append({k: e[k] for k in SHIFT_KEYS})
    return out


def overfit_table(rows: list[dict]) -> list[dict]:
    """Is the target overfitted before transfer, and does that predict the gain?

    For each (split, tgt, src) with D-CAT runs: the D-CAT configuration used is lambda 1 with MCMA
    on if present (else lambda 1, else the first D-CAT configuration in table order), chosen once
    per (tgt, src) so ID and OOD show the same one. Each entry lists the pairs (fold, seed, the
    baseline's train - val macro-F1 gap, the baseline and D-CAT test macro-F1, the gain), and the
    Pearson correlation of gap and gain with its p-value when n >= 3 (None otherwise, or when either
    series is constant).
    """
    check_rows(rows)
    bidx = baseline_index(rows)
    dcat = [r for r in rows if r.get("role") == "transfer" and r.get("method") == "dcat" and not is_shifted(r)]
    labels = _labels([r for r in rows if r.get("role") == "transfer"])
    chosen: dict = {}
    for r in dcat:
        chosen.setdefault((r.get("tgt"), r.get("src") or ""), set()).add(_config(r))
    chosen = {k: min(v, key=pick_key) for k, v in chosen.items()}
    out = []
    splits = sorted({r.get("split") for r in dcat}, key=split_key)
    for split in splits:
        for (tgt, src) in sorted(chosen):
            c = chosen[(tgt, src)]
            g = [r for r in dcat if r.get("split") == split and r.get("tgt") == tgt and _config(r) == c]
            pairs, _ = pair_with_baselines(g, bidx)
            items = []
            for t, b in sorted(pairs, key=lambda p: (int(p[0].get("fold") or 0), p[0].get("seed"))):
                gap = row_gap(b)
                if gap is None:
                    continue
                items.append(dict(fold=int(t.get("fold") or 0), seed=t.get("seed"), gap=gap,
                                  baseline_f1=row_f1(b), transfer_f1=row_f1(t), gain=row_f1(t) - row_f1(b)))
            if not items:
                continue
            r_, p_ = pearson([i["gap"] for i in items], [i["gain"] for i in items])
            out.append(dict(split=split, tgt=tgt, src=src, method="dcat", lam=c[2], mcma=c[3], temperature=c[4],
                            model=labels[(tgt, c)], pairs=items, n=len(items), pearson_r=r_, pearson_p=p_))
    return out


