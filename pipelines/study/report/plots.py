"""The report's PNG plots (matplotlib, Agg backend, imported inside the functions): D-CAT against
lambda, MCMA on against off, in against out of distribution, and the gain against a training-time shift."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pipelines.core.io import atomic_path
from pipelines.study.report.tables import (fmt_num, mcma_key, num_key, pick_key, shift_table, split_key, split_name,
                                           summary_table)

PLOT_NAMES = ("lambda.png", "mcma.png", "id_vs_ood.png", "shift.png")


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
    fig.tight_layout()
    try:
        with atomic_path(path, suffix=".png") as tmp:  # savefig picks the format from the extension
            fig.savefig(tmp)
    finally:
        plt.close(fig)
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


def _panels(plt, n: int, width: float = 5.0, height: float = 3.8):
    """A figure with ``n`` panels side by side; returns (figure, the panels)."""
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), dpi=100, squeeze=False)
    return fig, axes[0]


def _series(look: dict, keys: list, names: list, label) -> list[tuple[str, list, list]]:
    """Bar series: for each name, (label(name), means, stds) of ``look[(key, name)]`` over ``keys``."""
    series = []
    for name in names:
        got = [look.get((k, name)) for k in keys]
        series.append((label(name), [g["f1_mean"] if g else None for g in got],
                       [g["f1_std"] if g else None for g in got]))
    return series


def _plot_lambda(plt, dc: list[dict], splits: list, baselines: dict, colors: list, path: Path) -> Path:
    """D-CAT macro-F1 against lambda (log x): one line per (src->tgt, MCMA, T), the baseline dashed."""
    fig, axes = _panels(plt, len(splits))
    for ax, split in zip(axes, splits):
        lines: dict = {}
        for e in dc:
            if e["split"] == split:
                lines.setdefault((e["tgt"], e["src"], e["mcma"], e["temperature"]), []).append(e)
        keys = sorted(lines, key=lambda k: (k[0], k[1], mcma_key(k[2]), num_key(k[3])))
        for i, key in enumerate(keys):
            es = sorted(lines[key], key=lambda e: e["lam"])
            tgt, src, mcma, temp = key
            lab = f"{src}->{tgt}" + {True: ", MCMA", False: ", no MCMA"}.get(mcma, "")
            if temp is not None:
                lab += f", T {fmt_num(temp)}"
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
        ax.set_xticks(lams, [fmt_num(v) for v in lams])
        ax.minorticks_off()
        ax.set_xlabel("lambda")
        ax.set_ylabel("test macro-F1")
        ax.set_title(split_name(split), fontsize=10)
        ax.legend(fontsize=7)
    return _save(fig, path)


def _plot_mcma(plt, dc: list[dict], splits: list, path: Path) -> Path:
    """MCMA on against off at each lambda (grouped bars), one panel per split."""
    fig, axes = _panels(plt, len(splits))
    for ax, split in zip(axes, splits):
        es = [e for e in dc if e["split"] == split and e["mcma"] is not None]
        keys = sorted({(e["tgt"], e["src"], e["lam"], e["temperature"]) for e in es},
                      key=lambda k: (k[0], k[1], k[2], num_key(k[3])))
        look = {((e["tgt"], e["src"], e["lam"], e["temperature"]), e["mcma"]): e for e in es}
        groups = [f"{s}->{t}\nlambda {fmt_num(lam)}" if len({(k[0], k[1]) for k in keys}) > 1
                  else f"lambda {fmt_num(lam)}" for t, s, lam, _T in keys]
        _bars(ax, groups, _series(look, keys, [True, False], lambda flag: "MCMA on" if flag else "MCMA off"))
        ax.set_ylabel("test macro-F1")
        ax.set_title(split_name(split), fontsize=10)
        ax.legend(fontsize=7)
    return _save(fig, path)


def _id_vs_ood_models(summary: list[dict], targets: list) -> dict:
    """Per target, the summary entries to compare: every baseline and source entry, and of each
    (src, method) the representative transfer configuration (``pick_key``)."""
    picks: dict = {}
    for e in summary:
        if e["role"] == "transfer":
            c = (e["src"], e["method"], e["lam"], e["mcma"], e["temperature"])
            picks.setdefault((e["tgt"], e["src"], e["method"]), set()).add(c)
    picks = {k: min(v, key=pick_key) for k, v in picks.items()}
    return {
        tgt: [e for e in summary if e["tgt"] == tgt and (
            e["role"] != "transfer" or (e["src"], e["method"], e["lam"], e["mcma"], e["temperature"])
            == picks[(tgt, e["src"], e["method"])])]
        for tgt in targets}


def _plot_id_vs_ood(plt, summary: list[dict], path: Path) -> Path:
    """Baseline, each transfer method and the source, in against out of distribution, one panel per target."""
    targets = list(dict.fromkeys(e["tgt"] for e in summary))
    chosen_by_tgt = _id_vs_ood_models(summary, targets)
    n_models = max(len({e["model"] for e in v}) for v in chosen_by_tgt.values())
    fig, axes = _panels(plt, len(targets), width=max(5.0, 1.1 * n_models), height=4.5)
    for ax, tgt in zip(axes, targets):
        chosen = chosen_by_tgt[tgt]
        models = list(dict.fromkeys(e["model"] for e in chosen))
        sp = sorted({e["split"] for e in chosen}, key=split_key)
        look = {(e["model"], e["split"]): e for e in chosen}
        _bars(ax, models, _series(look, models, sp, split_name))
        ax.set_ylabel("test macro-F1")
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
        ax.set_title(split_name(split), fontsize=10)
        ax.legend(fontsize=7)
    return _save(fig, path)


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
    splits = sorted({e["split"] for e in dc}, key=split_key)
    if dc:
        written.append(_plot_lambda(plt, dc, splits, baselines, colors, out_dir / "lambda.png"))
    on_off = {e["mcma"] for e in dc}
    if True in on_off and False in on_off:
        written.append(_plot_mcma(plt, dc, splits, out_dir / "mcma.png"))
    if summary:
        written.append(_plot_id_vs_ood(plt, summary, out_dir / "id_vs_ood.png"))
    shifts = shift_table(rows)
    if shifts:
        written.append(_plot_shift(plt, shifts, colors, out_dir / "shift.png"))
    return written
