"""The ``--mapping`` TOML of the generic table importer (``dcat import table``), read and checked strictly.

``load_mapping(path)`` returns a ``Mapping``: which files, how to parse them, where subject and
session come from, the time column and its unit, the sensor columns grouped into IMU streams with
their units (and the factor to SI), the labels (a per-row label column, or a separate label table),
an optional video per recording and optional protocols. Every key is checked: an unknown key, a
wrong type or a missing required key fails with a ``DatasetImportError`` naming the file, the
table and the key. The keys are documented in the README (``dcat import table``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.core.bounded import load_toml_file
from pipelines.ingest.importers.base import DEG, G, DatasetImportError

ColRef = str | int  # a column name (header or files.columns) or a 1-based column number

# unit name -> factor to the SI unit dcat stores (mag: microtesla, the unit every IMU reports)
UNIT_FACTORS: dict[str, tuple[str, dict[str, float]]] = {
    "acc": ("m/s^2", {"m/s^2": 1.0, "m/s2": 1.0, "g": G, "mg": G / 1000.0}),
    "gyr": ("rad/s", {"rad/s": 1.0, "mrad/s": 1e-3, "deg/s": float(DEG), "dps": float(DEG)}),
    "mag": ("uT", {"uT": 1.0, "nT": 1e-3, "mT": 1e3, "T": 1e6, "gauss": 100.0}),
}
ROLES = ("acc", "gyr", "mag", "other")
TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}  # plus "index" (needs rate_hz)
STREAM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*$")
RESERVED_STREAMS = {"video", "audio"}

_SECTIONS = {"files", "subject", "session", "time", "streams", "labels", "label_table", "video", "protocols"}
_KEYS = {
    "files": {"glob", "sep", "header", "columns", "strip"},
    "subject": {"column", "pattern", "value"},
    "time": {"column", "unit", "rate_hz", "split_gap_s", "sort", "min_duration_s"},
    "channels": {"columns", "unit", "names", "scale"},
    "labels": {"column", "ignore", "names"},
    "label_table": {"file", "sep", "recording", "label", "start", "end", "unit", "clock"},
    "video": {"file", "offset_s", "audio", "required"},
    "protocol": {"train", "val", "test"},
}


@dataclass
class Channels:
    role: str
    columns: list[ColRef]
    names: list[str]
    unit: str  # as the dataset stores it
    si_unit: str
    factor: float  # value_si = raw * factor (scale included)


@dataclass
class Source:
    """Where subject or session come from: exactly one of a column, a regex on the path, a value."""

    column: ColRef | None = None
    pattern: re.Pattern | None = None
    value: str | None = None


@dataclass
class LabelTable:
    file: str
    sep: str
    recording: str
    label: str
    start: str | None
    end: str | None
    unit_s: float
    clock: str  # "file": seconds from the data file's first row; "source": on the time column's clock


@dataclass
class Video:
    file: str  # template relative to SRC: {dir} {stem} {name} {subject} {session}
    offset_s: float
    audio: str  # "auto" | "yes" | "no"
    required: bool


@dataclass
class Mapping:
    source: str
    globs: list[str]
    sep: str | None  # None: runs of whitespace
    header: bool
    columns: list[str] | None
    strip: str
    subject: Source
    session: Source | None
    time_column: ColRef | None
    time_unit: str
    rate_hz: float | None
    split_gap_s: float | None
    sort: bool
    min_duration_s: float
    streams: dict[str, list[Channels]]
    label_column: ColRef | None
    ignore: set[str]
    names: dict[str, str]
    label_table: LabelTable | None
    video: Video | None
    protocols: dict[str, dict[str, list[str]]] = field(default_factory=dict)


class _Checker:
    def __init__(self, source: str):
        self.source = source

    def fail(self, where: str, problem: str) -> DatasetImportError:
        return DatasetImportError(f"{self.source}: [{where}]: {problem}")

    def table(self, doc: dict, where: str, allowed: set[str], required: tuple[str, ...] = ()) -> dict:
        if not isinstance(doc, dict):
            raise self.fail(where, f"must be a table, got {type(doc).__name__}")
        for k in doc:
            if k not in allowed:
                raise self.fail(where, f"unknown key {k!r} (allowed: {', '.join(sorted(allowed))})")
        for k in required:
            if k not in doc:
                raise self.fail(where, f"missing key {k!r}")
        return doc

    def typed(self, doc: dict, where: str, key: str, types: tuple, default: Any = None) -> Any:
        if key not in doc:
            return default
        v = doc[key]
        if isinstance(v, bool) and bool not in types:
            raise self.fail(where, f"{key} must be {'/'.join(t.__name__ for t in types)}, got a boolean")
        if not isinstance(v, types):
            raise self.fail(where, f"{key} must be {'/'.join(t.__name__ for t in types)}, got {type(v).__name__}")
        return v

    def number(self, doc: dict, where: str, key: str, default: float | None, positive: bool = False) -> float | None:
        v = self.typed(doc, where, key, (int, float), default)
        if v is None:
            return None
        v = float(v)
        if v != v or v in (float("inf"), float("-inf")) or (positive and v <= 0) or abs(v) > 1e12:
            raise self.fail(where, f"{key} must be a finite{' positive' if positive else ''} number, got {v}")
        return v

    def colref(self, v: Any, where: str, key: str) -> ColRef:
        if isinstance(v, bool) or not isinstance(v, (str, int)) or (isinstance(v, int) and v < 1) or v == "":
            raise self.fail(where, f"{key}: a column is a name or a number counted from 1, got {v!r}")
        return v

    def strings(self, doc: dict, where: str, key: str) -> list[str] | None:
        v = self.typed(doc, where, key, (str, list))
        if v is None:
            return None
        v = [v] if isinstance(v, str) else v
        if not v or not all(isinstance(x, str) and x for x in v):
            raise self.fail(where, f"{key} must be a non-empty string or list of non-empty strings")
        return list(v)

    def regex(self, doc: dict, where: str, key: str) -> re.Pattern | None:
        v = self.typed(doc, where, key, (str,))
        if v is None:
            return None
        try:
            return re.compile(v)
        except re.error as e:
            raise self.fail(where, f"{key}: not a regular expression ({e})") from None

    def sep(self, doc: dict, where: str, default: str | None) -> str | None:
        v = self.typed(doc, where, "sep", (str,), default)
        if v in (None, "whitespace"):
            return None
        v = {"\\t": "\t", "tab": "\t"}.get(v, v)
        if len(v) != 1 or v in "\"\r\n":
            raise self.fail(where, f"sep must be one character or 'whitespace', got {v!r}")
        return v


def _source(c: _Checker, doc: dict, where: str) -> Source:
    c.table(doc, where, _KEYS["subject"])
    given = [k for k in ("column", "pattern", "value") if k in doc]
    if len(given) != 1:
        raise c.fail(where, f"give exactly one of column, pattern, value (got {', '.join(given) or 'none'})")
    if "column" in doc:
        return Source(column=c.colref(doc["column"], where, "column"))
    if "pattern" in doc:
        return Source(pattern=c.regex(doc, where, "pattern"))
    return Source(value=str(c.typed(doc, where, "value", (str, int))))


def _channels(c: _Checker, doc: dict, where: str, role: str) -> Channels:
    c.table(doc, where, _KEYS["channels"], ("columns",))
    cols = doc["columns"]
    if not isinstance(cols, list) or not cols:
        raise c.fail(where, "columns must be a non-empty list of column names or numbers")
    cols = [c.colref(x, where, "columns") for x in cols]
    default_unit = {"acc": None, "gyr": None, "mag": None, "other": ""}[role]
    unit = c.typed(doc, where, "unit", (str,), default_unit)
    if unit is None:
        raise c.fail(where, f"missing key 'unit' (one of {', '.join(UNIT_FACTORS[role][1])})")
    scale = c.number(doc, where, "scale", 1.0)
    if role == "other":
        si, factor = unit, 1.0
    else:
        si, table = UNIT_FACTORS[role]
        unit = {"m/s²": "m/s^2", "°/s": "deg/s", "µT": "uT", "μT": "uT"}.get(unit, unit)
        if unit not in table:
            raise c.fail(where, f"unit {unit!r} is not one dcat converts for {role} (use one of {', '.join(table)}, "
                         "with 'scale' for raw counts)")
        factor = table[unit]
    names = c.strings(doc, where, "names")
    if names is None:
        names = ([f"{role}_{a}" for a in "xyz"] if len(cols) == 3 else [f"{role}_{i + 1}" for i in range(len(cols))])
    if len(names) != len(cols):
        raise c.fail(where, f"{len(names)} names for {len(cols)} columns")
    return Channels(role, cols, names, unit, si, factor * float(scale))


def _streams(c: _Checker, doc: Any) -> dict[str, list[Channels]]:
    if not isinstance(doc, dict) or not doc:
        raise c.fail("streams", "give at least one stream, e.g. [streams.imu] acc = {columns = [...], unit = \"g\"}")
    out: dict[str, list[Channels]] = {}
    for name, sdoc in doc.items():
        where = f"streams.{name}"
        if not STREAM_NAME.match(name) or name in RESERVED_STREAMS:
            raise c.fail(where, "a stream name is a letter then letters, digits or _, not video or audio")
        c.table(sdoc, where, set(ROLES))
        if not sdoc:
            raise c.fail(where, f"no channels: give one or more of {', '.join(ROLES)}")
        out[name] = [_channels(c, sdoc[r], f"{where}.{r}", r) for r in ROLES if r in sdoc]
        names = [n for ch in out[name] for n in ch.names]
        if len(set(names)) != len(names) or "t" in names:
            raise c.fail(where, f"channel names must be unique and not 't': {names}")
    return out


def _label_table(c: _Checker, doc: dict) -> LabelTable:
    w = "label_table"
    c.table(doc, w, _KEYS[w], ("file", "recording", "label"))
    start, end = c.typed(doc, w, "start", (str,)), c.typed(doc, w, "end", (str,))
    if (start is None) != (end is None):
        raise c.fail(w, "give both start and end (segments) or neither (one label per recording)")
    unit = c.typed(doc, w, "unit", (str,), "s")
    if unit not in TIME_UNITS:
        raise c.fail(w, f"unit must be one of {', '.join(TIME_UNITS)}, got {unit!r}")
    clock = c.typed(doc, w, "clock", (str,), "file")
    if clock not in ("file", "source"):
        raise c.fail(w, f"clock must be 'file' or 'source', got {clock!r}")
    return LabelTable(c.typed(doc, w, "file", (str,)), c.sep(doc, w, ",") or ",", c.typed(doc, w, "recording", (str,)),
                      c.typed(doc, w, "label", (str,)), start, end, TIME_UNITS[unit], clock)


def _video(c: _Checker, doc: dict) -> Video:
    c.table(doc, "video", _KEYS["video"], ("file",))
    audio = c.typed(doc, "video", "audio", (bool, str), "auto")
    if audio not in (True, False, "auto"):
        raise c.fail("video", f"audio must be true, false or \"auto\", got {audio!r}")
    return Video(c.typed(doc, "video", "file", (str,)), c.number(doc, "video", "offset_s", 0.0),
                 {True: "yes", False: "no"}.get(audio, "auto"), c.typed(doc, "video", "required", (bool,), False))


def _protocols(c: _Checker, doc: Any) -> dict[str, dict[str, list[str]]]:
    if not isinstance(doc, dict):
        raise c.fail("protocols", "must be a table of protocols, e.g. [protocols.xsub] train = [...] test = [...]")
    out = {}
    for name, pdoc in doc.items():
        where = f"protocols.{name}"
        c.table(pdoc, where, _KEYS["protocol"], ("train", "test"))
        out[name] = {k: [str(s) for s in c.strings(pdoc, where, k) or []]
                     for k in ("train", "val", "test") if k in pdoc}
    return out


def _time(c: _Checker, doc: dict) -> tuple:
    c.table(doc, "time", _KEYS["time"])
    col = c.colref(doc["column"], "time", "column") if "column" in doc else None
    unit = c.typed(doc, "time", "unit", (str,), "s" if col is not None else "index")
    if unit not in (*TIME_UNITS, "index"):
        raise c.fail("time", f"unit must be one of {', '.join(TIME_UNITS)}, index; got {unit!r}")
    rate = c.number(doc, "time", "rate_hz", None, positive=True)
    if unit == "index" and rate is None:
        raise c.fail("time", "rate_hz is needed when there is no time column or its unit is 'index'")
    if col is None and unit != "index":
        raise c.fail("time", f"unit {unit!r} without a time column: give column, or rate_hz alone")
    gap = c.number(doc, "time", "split_gap_s", None, positive=True)
    return (col, unit, rate, gap, c.typed(doc, "time", "sort", (bool,), False),
            c.number(doc, "time", "min_duration_s", 0.0))


def load_mapping(path: str | Path) -> Mapping:
    """Read and check the mapping TOML at ``path`` (strict: unknown keys fail, naming the key)."""
    src = str(path)
    doc = load_toml_file(path, source=src)
    c = _Checker(src)
    for k in doc:
        if k not in _SECTIONS:
            raise DatasetImportError(f"{src}: unknown table or key {k!r} (allowed: {', '.join(sorted(_SECTIONS))})")
    for k in ("files", "subject", "streams"):
        if k not in doc:
            raise DatasetImportError(f"{src}: missing table [{k}]")
    f = c.table(doc["files"], "files", _KEYS["files"], ("glob",))
    columns = c.strings(f, "files", "columns")
    header = c.typed(f, "files", "header", (bool,), True)
    time = _time(c, doc.get("time", {}))
    lab = c.table(doc.get("labels", {}), "labels", _KEYS["labels"])
    label_col = c.colref(lab["column"], "labels", "column") if "column" in lab else None
    ignore = c.typed(lab, "labels", "ignore", (list,), [""])
    if not all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in ignore):
        raise c.fail("labels", "ignore must be a list of label values (strings or integers)")
    names = c.typed(lab, "labels", "names", (dict,), {})
    if not all(isinstance(v, str) and v for v in names.values()):
        raise c.fail("labels", "names maps a label value to a non-empty class name (\"1\" = \"lying\")")
    table = _label_table(c, doc["label_table"]) if "label_table" in doc else None
    if (label_col is None) == (table is None):
        raise DatasetImportError(f"{src}: give labels.column (a label per row) or a [label_table], exactly one")
    return Mapping(
        source=src, globs=c.strings(f, "files", "glob"),
        sep=c.sep(f, "files", ","), header=header, columns=columns, strip=c.typed(f, "files", "strip", (str,), ""),
        subject=_source(c, doc["subject"], "subject"),
        session=_source(c, doc["session"], "session") if "session" in doc else None,
        time_column=time[0], time_unit=time[1], rate_hz=time[2], split_gap_s=time[3], sort=time[4],
        min_duration_s=time[5], streams=_streams(c, doc["streams"]), label_column=label_col,
        ignore={str(x) for x in ignore} | {""}, names={str(k): v for k, v in names.items()}, label_table=table,
        video=_video(c, doc["video"]) if "video" in doc else None,
        protocols=_protocols(c, doc["protocols"]) if "protocols" in doc else {})
