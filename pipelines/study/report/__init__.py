"""Experiment report: one row per run in, ``results.csv``, ``results.md`` and PNG plots out.

Pure functions over rows (a list of dicts, one per run; the keys are ``COLUMNS``, a missing value is
``None``). Imports numpy and scipy only; matplotlib (Agg backend) is imported inside the plotting
functions. No torch.

Modules: ``io`` (the columns, ``results.csv`` written and read with types), ``statistics`` (mean and
std, the paired t interval, Pearson's r; roles and how a transfer run is paired with its baseline),
``tables`` (the summary, sync-robustness and overfitting tables; model names), ``markdown``
(``results.md``), ``plots`` (the PNGs), ``write`` (``write_report``: all of them into one folder).
A run whose ``test_macro_f1`` is missing is left out of every statistic and counted in the report.
"""

from pipelines.study.report.io import (BOOL_COLUMNS, COLUMNS, FLOAT_COLUMNS, INT_COLUMNS, STR_COLUMNS, read_csv,
                                       write_csv)
from pipelines.study.report.markdown import fmt_diff, fmt_f1, fmt_mean_std, fmt_signed, render_markdown
from pipelines.study.report.plots import PLOT_NAMES, plot_all
from pipelines.study.report.statistics import ROLES, mean_std, paired_ci, pearson
from pipelines.study.report.tables import (METHOD_NAMES, METHOD_ORDER, SHIFT_KEYS, SPLIT_NAMES, SPLIT_ORDER,
                                           SUMMARY_KEYS, model_label, overfit_table, shift_table, summary_table)
from pipelines.study.report.write import write_report

__all__ = ["BOOL_COLUMNS", "COLUMNS", "FLOAT_COLUMNS", "INT_COLUMNS", "METHOD_NAMES", "METHOD_ORDER", "PLOT_NAMES",
           "ROLES", "SHIFT_KEYS", "SPLIT_NAMES", "SPLIT_ORDER", "STR_COLUMNS", "SUMMARY_KEYS", "fmt_diff", "fmt_f1",
           "fmt_mean_std", "fmt_signed", "mean_std", "model_label", "overfit_table", "paired_ci", "pearson",
           "plot_all", "read_csv", "render_markdown", "shift_table", "summary_table", "write_csv", "write_report"]
