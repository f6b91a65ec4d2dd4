"""Experiment report: one row per run in, ``results.csv``, ``results.md`` and PNG plots out.

Pure functions over rows (a list of dicts, one per run; the keys are ``COLUMNS``, a missing value is
``None``). Imports numpy and scipy only; matplotlib (Agg backend) is imported inside the plotting
functions. No torch.

Modules: ``io`` (the columns, ``results.csv`` written and read with types), ``statistics`` (mean and
std, the paired t interval over test sets, the subject bootstrap, Pearson's r; roles and how a
compared run is paired with its baseline), ``selection`` (D-CAT chosen on validation per unit; runs
with identical results), ``names`` (model names, orders), ``tables`` (the summary and
sync-robustness tables), ``overfit`` (gap against gain, measured against the null), ``markdown``
(``results.md``), ``plots`` (the PNGs of paired differences), ``write`` (``write_report``: all of
them into one folder).
A run whose ``test_macro_f1`` is missing is left out of every statistic and counted in the report.
"""

from pipelines.study.report.io import (BOOL_COLUMNS, COLUMNS, FLOAT_COLUMNS, INT_COLUMNS, STR_COLUMNS, read_csv,
                                       write_csv)
from pipelines.study.report.markdown import fmt_diff, fmt_f1, fmt_mean_std, fmt_signed, render_markdown
from pipelines.study.report.plots import PLOT_NAMES, plot_all
from pipelines.study.report.overfit import OVERFIT_KEYS, overfit_table
from pipelines.study.report.selection import annotate, choose_on_validation, mark_identical
from pipelines.study.report.statistics import (BOOTSTRAP_BELOW_FOLDS, COMPARED, ROLES, fold_ci, fold_diffs, mean_std,
                                               paired_ci, pearson, subject_bootstrap)
from pipelines.study.report.tables import (METHOD_NAMES, METHOD_ORDER, SELECTED_NAME, SHIFT_KEYS, SPLIT_NAMES,
                                           SPLIT_ORDER, SUMMARY_KEYS, model_label, shift_table, summary_table)
from pipelines.study.report.write import write_report

__all__ = ["BOOL_COLUMNS", "BOOTSTRAP_BELOW_FOLDS", "COLUMNS", "COMPARED", "FLOAT_COLUMNS", "INT_COLUMNS", "METHOD_NAMES",
           "METHOD_ORDER", "OVERFIT_KEYS", "PLOT_NAMES", "ROLES", "SELECTED_NAME", "SHIFT_KEYS", "SPLIT_NAMES",
           "SPLIT_ORDER", "STR_COLUMNS", "SUMMARY_KEYS", "annotate", "choose_on_validation", "fmt_diff", "fmt_f1",
           "fmt_mean_std", "fmt_signed", "fold_ci", "fold_diffs", "mark_identical", "mean_std", "model_label",
           "overfit_table", "paired_ci", "pearson", "plot_all", "read_csv", "render_markdown", "shift_table",
           "subject_bootstrap", "summary_table", "write_csv", "write_report"]
