"""The row schema (``COLUMNS`` and the type of each column) and ``results.csv``: typed write and read.

A row is a dict keyed by ``COLUMNS`` (a missing value is ``None``). ``seed`` is the unit's seed (the
pairing key); ``train_seed`` the seed the run trained with (the null row's differs); ``keep_rate``
the fraction of training windows an MCMA transfer kept; ``test_subject_f1`` the test macro-F1 per
subject (JSON); ``fingerprint`` a hash of the run's confusion matrices; ``same_as`` the cell of the
same unit with identical results (``fingerprint``), if any; ``val_chosen`` whether the D-CAT cell
was chosen on validation for its unit (the last two set by ``report.selection.annotate``). The CSV round trip is exact:
floats are written with ``repr``, booleans as true/false, None as an empty field, and read back as
the column's type.
"""

from __future__ import annotations

import csv
from io import StringIO
from pathlib import Path

import numpy as np

from pipelines.core.io import atomic_write_text

COLUMNS = (
    "cell", "role", "split", "fold", "test_subjects", "seed", "train_seed", "tgt", "src", "method",
    "lam", "mcma", "temperature", "shift_stream", "shift_s", "keep_rate",
    "test_macro_f1", "test_acc", "val_macro_f1", "train_macro_f1", "gap", "src_test_macro_f1",
    "epochs_run", "best_epoch", "seconds", "run_dir", "n_test",
    "test_subject_f1", "fingerprint", "same_as", "val_chosen",
)
STR_COLUMNS = frozenset({"cell", "role", "split", "test_subjects", "tgt", "src", "method", "shift_stream", "run_dir",
                         "test_subject_f1", "fingerprint", "same_as"})
INT_COLUMNS = frozenset({"fold", "seed", "train_seed", "epochs_run", "best_epoch", "n_test"})
BOOL_COLUMNS = frozenset({"mcma", "val_chosen"})
FLOAT_COLUMNS = frozenset(COLUMNS) - STR_COLUMNS - INT_COLUMNS - BOOL_COLUMNS


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
    buf = StringIO()
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
