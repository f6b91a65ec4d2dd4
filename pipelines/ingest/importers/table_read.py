"""Reading the data files and the label table of the generic table importer (``dcat import table``).

``read_table(path, mapping)`` returns only the columns the mapping uses: numeric ones (time, sensor
channels) as float64 arrays, text ones (subject, session, label) as lists of stripped strings.
Delimited text is read line by line (one character separator or runs of whitespace, a header row or
``files.columns`` names or 1-based column numbers); rows too short or with a non-numeric cell in a
numeric column are dropped and counted (``Table.bad_rows``, first one kept for the message).
Parquet needs pyarrow (``need_parquet`` says so before anything is written).
"""

from __future__ import annotations

import csv
import math
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipelines.ingest.importers.base import DatasetImportError
from pipelines.ingest.importers.table_mapping import ColRef, Mapping

PARQUET_SUFFIXES = (".parquet", ".pq")
_NAN = {"", "nan", "NaN", "NAN", "NA", "N/A", "null", "NULL", "None"}


class TableError(Exception):
    """One data file that cannot be read (reported as a skipped recording, never raised to the user)."""


@dataclass
class Table:
    n: int
    num: dict[ColRef, np.ndarray]
    text: dict[ColRef, list[str]]
    bad_rows: int = 0
    first_bad: str = ""
    header: list[str] = field(default_factory=list)


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() in PARQUET_SUFFIXES


def need_parquet(files: list[Path]) -> None:
    """Refuse Parquet input up front when pyarrow is missing, saying what to install."""
    if any(is_parquet(p) for p in files):
        try:
            import pyarrow.parquet  # noqa: F401
        except ModuleNotFoundError:
            raise DatasetImportError("Parquet files need pyarrow, which is not installed: `pip install pyarrow` "
                                     "(or convert the files to CSV)") from None


def used_columns(m: Mapping) -> tuple[list[ColRef], list[ColRef]]:
    """(numeric columns, text columns) the mapping reads, each once, in a stable order."""
    num: list[ColRef] = [] if m.time_column is None else [m.time_column]
    for chans in m.streams.values():
        for ch in chans:
            num += [c for c in ch.columns if c not in num]
    text: list[ColRef] = []
    for c in (m.subject.column, m.session.column if m.session else None, m.label_column):
        if c is not None and c not in text:
            text.append(c)
    return num, text


def _index(ref: ColRef, header: list[str], where: str) -> int:
    if isinstance(ref, int):
        if header and ref > len(header):
            raise TableError(f"column {ref} asked for, the file has {len(header)} columns")
        return ref - 1
    if not header:
        raise TableError(f"column {ref!r} is named but the file has no header (files.header = false): name the "
                         "columns with files.columns or use column numbers")
    if ref not in header:
        raise TableError(f"no column {ref!r} in {where} (columns: {', '.join(header[:30])})")
    return header.index(ref)


def _rows(path: Path, m: Mapping):
    with open(path, encoding="utf-8-sig", newline="") as f:
        if m.sep is None:
            for line in f:
                yield line.split()
        else:
            yield from csv.reader(f, delimiter=m.sep)


def _read_text(path: Path, m: Mapping, num_refs: list[ColRef], text_refs: list[ColRef]) -> Table:
    rows = _rows(path, m)
    header: list[str] = []
    if m.header:
        for row in rows:
            if row and any(x.strip() for x in row):
                header = [x.strip().strip(m.strip) if m.strip else x.strip() for x in row]
                break
    if m.columns:
        header = list(m.columns)
    where = "the header" if m.header and not m.columns else "files.columns"
    ni = [_index(r, header, where) for r in num_refs]
    ti = [_index(r, header, where) for r in text_refs]
    need = max(ni + ti) + 1
    cols = [array("d") for _ in ni]
    texts: list[list[str]] = [[] for _ in ti]
    intern: dict[str, str] = {}
    bad, first_bad, n = 0, "", 0
    strip = m.strip
    for lineno, row in enumerate(rows, start=2 if m.header else 1):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) < need:
            bad += 1
            first_bad = first_bad or f"line {lineno}: {len(row)} fields, need {need}"
            continue
        try:
            vals = []
            for j in ni:
                c = row[j].strip()
                if strip:
                    c = c.strip(strip)
                vals.append(math.nan if c in _NAN else float(c))
        except ValueError:
            bad += 1
            first_bad = first_bad or f"line {lineno}: {row[j][:40]!r} is not a number"
            continue
        for a, v in zip(cols, vals):
            a.append(v)
        for lst, j in zip(texts, ti):
            c = row[j].strip()
            if strip:
                c = c.strip(strip)
            lst.append(intern.setdefault(c, c))
        n += 1
    return Table(n, {r: np.frombuffer(a, dtype=np.float64) if len(a) else np.zeros(0) for r, a in zip(num_refs, cols)},
                 dict(zip(text_refs, texts)), bad, first_bad, header)


def _read_parquet(path: Path, num_refs: list[ColRef], text_refs: list[ColRef]) -> Table:
    import pyarrow.parquet as pq

    names = pq.read_schema(path).names
    pick = {r: names[_index(r, names, "the Parquet schema")] for r in (*num_refs, *text_refs)}
    tab = pq.read_table(path, columns=sorted(set(pick.values())))
    num = {}
    for r in num_refs:
        try:
            num[r] = np.asarray(tab.column(pick[r]).to_numpy(zero_copy_only=False), dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise TableError(f"column {pick[r]!r} is not numeric ({e})") from None
    text = {}
    for r in text_refs:
        vals = tab.column(pick[r]).to_pylist()
        text[r] = ["" if v is None or (isinstance(v, float) and math.isnan(v))
                   else str(int(v)) if isinstance(v, float) and v.is_integer() else str(v).strip() for v in vals]
    return Table(tab.num_rows, num, text, header=list(names))


def read_table(path: Path, m: Mapping) -> Table:
    """The columns ``m`` uses from one data file; ``TableError`` if it cannot be read at all."""
    num_refs, text_refs = used_columns(m)
    try:
        if is_parquet(path):
            return _read_parquet(path, num_refs, text_refs)
        return _read_text(path, m, num_refs, text_refs)
    except UnicodeDecodeError:
        raise TableError("not UTF-8 text (a binary file, or another encoding: convert it to UTF-8)") from None
    except csv.Error as e:
        raise TableError(f"not readable as delimited text ({e})") from None
    except OSError as e:
        raise TableError(f"cannot read ({e.strerror or e})") from None


def read_label_table(path: Path, sep: str) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the label table: a header row, then one row per segment or recording."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            rows = [[c.strip() for c in r] for r in csv.reader(f, delimiter=sep) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DatasetImportError(f"{path}: label table not readable ({e})") from None
    if not rows:
        raise DatasetImportError(f"{path}: label table is empty (it needs a header row)")
    return rows[0], rows[1:]
