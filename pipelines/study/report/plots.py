"""The report's PNG plots (matplotlib, Agg backend, imported inside the functions). Every plot shows
the *paired* difference to the uni-modal baseline with its 95% interval over test sets (the
summary's ``diff_*``), never unpaired means with std bars: D-CAT against lambda, MCMA on against
off, each model in against out of distribution, and the gain against a training-time shift. The
null row's interval is drawn as a grey band where it applies: the noise floor."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines.core.io import atomic_path
from pipelines.study.report.tables import (fmt_num, mcma_key, num_key, pick_key, shift_table, split_key, split_name,
                                           summary_table)

PLOT_NAMES = ("lambda.png", "mcma.png", "id_vs_ood.png", "shift.png")
DIFF_LABEL = "paired difference to uni-modal\n(test macro-F1, 95% CI over test sets)"


def _arr(vals) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in vals], float)


def _yerr(es: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(means, lower and upper error lengths) of entries' paired differences (NaN: no interval)."""
    m = _arr([e["diff_mean"] for e in es])
    lo, hi = _arr([e["diff_lo"] for e in es]), _arr([e["diff_hi"] for e in es])
    return m, m - lo, hi - m


def _errorbar(ax, x, es: list[dict], color, **kw) -> None:
    """The entries' mean differences as a line with markers, their intervals as error bars."""
    x = np.asarray(x, float)
    m, dlo, dhi = _yerr(es)
    ax.plot(x, m, marker="o", color=color, **kw)
    ok = np.isfinite(dlo) & np.isfinite(m)
    if ok.any():
        ax.errorbar(x[ok], m[ok], yerr=[dlo[ok], dhi[ok]], fmt="none", ecolor=color, capsize=3)


def _null_band(ax, null: dict | None) -> None:
    """The zero line and, given the null entry, its interval as a grey band (the noise floor)."""
    ax.axhline(0.0, ls="--", color="gray", lw=1)
    if null is not None and null["diff_lo"] is not None:
        ax.axhspan(null["diff_lo"], null["diff_hi"], color="gray", alpha=0.2, label="null (second seed) 95% CI")


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    fig.tight_layout()
    try:
        with atomic_path(path, suffix=".png") as tmp:  # savefig picks the format from the extension
            fig.savefig(tmp)
    finally:
        plt.close(fig)
    return path


def _bars(ax, groups: list[str], series: list[tuple[str, list]]):
    """Grouped bars of paired differences: ``series`` = [(label, entries or None per group)], one
    bar per series in each group, the interval as an error bar."""
    k = max(len(series), 1)
    width = 0.8 / k
    x = np.arange(len(groups))
    for i, (label, es) in enumerate(series):
        filled = [e or {"diff_mean": None, "diff_lo": None, "diff_hi": None} for e in es]
        m, dlo, dhi = _yerr(filled)
        pos = x - 0.4 + width * (i + 0.5)
        ax.bar(pos, np.nan_to_num(m), width, label=label)
        ok = np.isfinite(dlo) & np.isfinite(m)
        if ok.any():
            ax.errorbar(pos[ok], m[ok], yerr=[dlo[ok], dhi[ok]], fmt="none", ecolor="black", capsize=3)
    ax.set_xticks(x, groups, rotation=20, ha="right", fontsize=8)
    ax.axhline(0.0, color="gray", lw=1)


def _panels(plt, n: int, width: float = 5.0, height: float = 3.8):
    """A figure with ``n`` panels side by side; returns (figure, the panels)."""
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), dpi=100, squeeze=False)
    return fig, axes[0]


def _plot_lambda(plt, dc: list[dict], splits: list, nulls: dict, colors: list, path: Path) -> Path:
    """D-CAT's paired difference against lambda (log x): one line per (src->tgt, MCMA, T), the null band."""
    fig, axes = _panels(plt, len(splits))
    for ax, split in zip(axes, splits):
        lines: dict = {}
        for e in dc:
            if e["split"] == split:
                lines.setdefault((e["tgt"], e["src"], e["mcma"], e["temperature"]), []).append(e)
        keys = sorted(lines, key=lambda k: (k[0], k[1], mcma_key(k[2]), num_key(k[3])))
        targets = sorted({k[0] for k in keys})
        _null_band(ax, nulls.get((targets[0], split)) if len(targets) == 1 else None)
        for i, key in enumerate(keys):
            es = sorted(lines[key], key=lambda e: e["lam"])
            tgt, src, mcma, temp = key
            lab = f"{src}->{tgt}" + {True: ", MCMA", False: ", no MCMA"}.get(mcma, "")
            if temp is not None:
                lab += f", T {fmt_num(temp)}"
            dodge = 10 ** (0.015 * (i - (len(keys) - 1) / 2))  # so error bars do not hide each other
            _errorbar(ax, [e["lam"] * dodge for e in es], es, colors[i % len(colors)], label=lab)
        ax.set_xscale("log")
        lams = sorted({e["lam"] for e in dc if e["split"] == split})
        ax.set_xticks(lams, [fmt_num(v) for v in lams])
        ax.minorticks_off()
        ax.set_xlabel("lambda")
        ax.set_ylabel(DIFF_LABEL)
        ax.set_title(split_name(split), fontsize=10)
        ax.legend(fontsize=7)
    return _save(fig, path)


def _plot_mcma(plt, dc: list[dict], splits: list, path: Path) -> Path:
    """MCMA on against off at each lambda (grouped bars of paired differences), one panel per split."""
    fig, axes = _panels(plt, len(splits))
    for ax, split in zip(axes, splits):
        es = [e for e in dc if e["split"] == split and e["mcma"] is not None]
        keys = sorted({(e["tgt"], e["src"], e["lam"], e["temperature"]) for e in es},
                      key=lambda k: (k[0], k[1], k[2], num_key(k[3])))
        look = {((e["tgt"], e["src"], e["lam"], e["temperature"]), e["mcma"]): e for e in es}
        groups = [f"{s}->{t}\nlambda {fmt_num(lam)}" if len({(k[0], k[1]) for k in keys}) > 1
                  else f"lambda {fmt_num(lam)}" for t, s, lam, _T in keys]
        series = [("MCMA on" if flag else "MCMA off", [look.get((k, flag)) for k in keys]) for flag in (True, False)]
        _bars(ax, groups, series)
        same = sum(1 for k in keys if (look.get((k, False)) or {}).get("same_as"))
        ax.set_ylabel(DIFF_LABEL)
        ax.set_title(split_name(split) + (f" ({same} on/off pair(s) identical)" if same else ""), fontsize=10)
        ax.legend(fontsize=7)
    return _save(fig, path)


def _id_vs_ood_models(summary: list[dict], targets: list) -> dict:
    """Per target, the compared entries: the null, the reference, the row chosen on validation and,
    of each (src, method), the representative transfer configuration (``pick_key``)."""
    picks: dict = {}
    for e in summary:
        if e["role"] == "transfer":
            c = (e["src"], e["method"], e["lam"], e["mcma"], e["temperature"])
            picks.setdefault((e["tgt"], e["src"], e["method"]), set()).add(c)
    picks = {k: min(v, key=pick_key) for k, v in picks.items()}
    return {
        tgt: [e for e in summary if e["tgt"] == tgt and e["role"] in ("null", "reference", "selected", "transfer") and (
            e["role"] != "transfer" or (e["src"], e["method"], e["lam"], e["mcma"], e["temperature"])
            == picks[(tgt, e["src"], e["method"])])]
        for tgt in targets}


def _plot_id_vs_ood(plt, summary: list[dict], path: Path) -> Path | None:
    """Each compared model's paired difference, in against out of distribution, one panel per target."""
    targets = list(dict.fromkeys(e["tgt"] for e in summary))
    chosen_by_tgt = {t: v for t, v in _id_vs_ood_models(summary, targets).items() if v}
    if not chosen_by_tgt:
        return None
    n_models = max(len({e["model"] for e in v}) for v in chosen_by_tgt.values())
    fig, axes = _panels(plt, len(chosen_by_tgt), width=max(5.0, 1.1 * n_models), height=4.8)
    for ax, (tgt, chosen) in zip(axes, chosen_by_tgt.items()):
        models = list(dict.fromkeys(e["model"] for e in chosen))
        sp = sorted({e["split"] for e in chosen}, key=split_key)
        look = {(e["model"], e["split"]): e for e in chosen}
        _bars(ax, models, [(split_name(s), [look.get((m, s)) for m in models]) for s in sp])
        ax.set_ylabel(DIFF_LABEL)
        ax.set_title(f"target: {tgt}", fontsize=10)
        ax.legend(fontsize=7)
    return _save(fig, path)


def _plot_shift(plt, shifts: list[dict], colors: list, path: Path) -> Path:
    """The paired gain against the training-time shift with its 95% CI, one panel per split."""
    sp = sorted({e["split"] for e in shifts}, key=split_key)
    fig, axes = _panels(plt, len(sp))
    for ax, split in zip(axes, sp):
        lines: dict = {}
        for e in shifts:
            if e["split"] == split and e["diff_mean"] is not None:
                lines.setdefault((e["model"], e["shift_stream"]), []).append(e)
        for i, key in enumerate(sorted(lines)):
            es = sorted(lines[key], key=lambda e: e["shift_s"])
            _errorbar(ax, [e["shift_s"] for e in es], es, colors[i % len(colors)], label=f"{key[0]} ({key[1]} shifted)")
        ax.axhline(0.0, ls="--", color="gray")
        ax.set_xlabel("training-time shift (s)")
        ax.set_ylabel(DIFF_LABEL)
        ax.set_title(split_name(split), fontsize=10)
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_all(rows: list[dict], out_dir: str | Path) -> list[Path]:
    """Write the PNGs that the rows support into ``out_dir`` and return their paths:

    - ``lambda.png``: D-CAT's paired difference vs lambda (log x), one line per (src->tgt, MCMA),
      95% CI error bars, the null's interval as a grey band; one panel per split;
    - ``mcma.png``: MCMA on vs off at each lambda (grouped bars of paired differences), per split;
      needs both settings;
    - ``id_vs_ood.png``: the null, the reference, D-CAT chosen on validation and each transfer method
      (D-CAT at lambda 1, MCMA on if present), ID vs OOD bars of paired differences, one panel per target;
    - ``shift.png``: paired gain vs training-time shift with 95% CI error bars; only with shift rows.

    A plot whose rows are absent is skipped. An entry without an interval (one test set) draws no error bar.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summary_table(rows)
    written: list[Path] = []
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    dc = [e for e in summary if e["role"] == "transfer" and e["method"] == "dcat" and e["lam"] is not None
          and e["lam"] > 0 and e["diff_mean"] is not None]
    nulls = {(e["tgt"], e["split"]): e for e in summary if e["role"] == "null"}
    splits = sorted({e["split"] for e in dc}, key=split_key)
    if dc:
        written.append(_plot_lambda(plt, dc, splits, nulls, colors, out_dir / "lambda.png"))
    on_off = {e["mcma"] for e in dc}
    if True in on_off and False in on_off:
        written.append(_plot_mcma(plt, dc, splits, out_dir / "mcma.png"))
    if summary:
        p = _plot_id_vs_ood(plt, summary, out_dir / "id_vs_ood.png")
        if p is not None:
            written.append(p)
    shifts = shift_table(rows)
    if shifts:
        written.append(_plot_shift(plt, shifts, colors, out_dir / "shift.png"))
    return written
