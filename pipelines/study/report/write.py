"""``write_report``: the report's files in one folder (``results.csv``, ``plots/*.png``, ``results.md``)."""

from __future__ import annotations

from pathlib import Path

from pipelines.core.io import atomic_write_text
from pipelines.study.report.io import write_csv
from pipelines.study.report.markdown import render_markdown
from pipelines.study.report.plots import PLOT_NAMES, plot_all
from pipelines.study.report.selection import annotate


def write_report(rows: list[dict], out_dir: str | Path, title: str = "D-CAT experiment results",
                 notes=None) -> dict:
    """Write ``results.csv`` (the rows with ``same_as`` and ``val_chosen`` set:
    :func:`pipelines.study.report.selection.annotate`), the plots under ``plots/`` and ``results.md``
    (linking the plots) into ``out_dir``. A plot from an earlier report that these rows no longer
    support is removed.
    Returns dict(csv=Path, markdown=Path, plots=[Path, ...]).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = annotate(rows)
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
