"""Hostile shards: each case damages one valid shard file in place, as a careless or hostile user
(or a crashed copy) would.

``CASES`` maps a case name to ``(tamper, expect)``: ``tamper(path)`` damages the shard at ``path``
(a valid shard with an ``imu`` stream, as ``tests/_fake_shards.py`` or `dcat preprocess` writes
it), ``expect`` is a piece of the message every command must refuse the file with
(``pipelines.shards.check``). Used by tests/test_hostile_shards.py and the fuzz suite.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

IMU = "streams/imu"


def _replace(h, name: str, data=None, **kw) -> None:
    """Replace dataset ``name`` of open file ``h`` with a new one (``data`` or ``shape``/``dtype``)."""
    del h[name]
    h.create_dataset(name, data=data, **kw)


def _edit(fn: Callable[[h5py.File], None]) -> Callable[[Path], None]:
    def tamper(path: Path) -> None:
        with h5py.File(path, "r+") as h:
            fn(h)
    tamper.__doc__ = fn.__doc__
    return tamper


# ------------------------------------------------------------------ values a reader trusted (issue 13, item 11)
@_edit
def window_start_negative(h):
    """The first window starts before the data."""
    ws = h[f"{IMU}/window_start"][()]
    ws[0] = -1
    h[f"{IMU}/window_start"][...] = ws


@_edit
def window_start_decreasing(h):
    """Two window starts swapped."""
    ws = h[f"{IMU}/window_start"][()]
    ws[[1, 2]] = ws[[2, 1]]
    h[f"{IMU}/window_start"][...] = ws


@_edit
def window_s_negative(h):
    """window_s = -2 (in the attributes and in args_json alike)."""
    h.attrs["window_s"] = -2.0
    args = json.loads(h.attrs["args_json"])
    args["window_s"] = -2.0
    h.attrs["args_json"] = json.dumps(args)


@_edit
def start_s_nan(h):
    """One window's start time is NaN."""
    s = h["windows/start_s"][()]
    s[3] = np.nan
    h["windows/start_s"][...] = s


@_edit
def data_int8(h):
    """The IMU data stored as int8."""
    x = h[f"{IMU}/data"][()]
    _replace(h, f"{IMU}/data", np.clip(x, -127, 127).astype(np.int8))


# ------------------------------------------------------------------ tampered declarations (item 13)
@_edit
def n_windows_abc(h):
    """n_windows is the string "abc"."""
    h.attrs["n_windows"] = "abc"


@_edit
def n_windows_negative(h):
    """n_windows = -5."""
    h.attrs["n_windows"] = -5


@_edit
def start_s_declared_huge(h):
    """/windows/start_s declared 10**10 long (80 GB) but never written: the file stays small."""
    _replace(h, "windows/start_s", shape=(10 ** 10,), dtype=np.float64)


@_edit
def data_declared_huge(h):
    """The IMU data declared 10**9 x 6 but never written."""
    c = h[f"{IMU}/data"].shape[1]
    _replace(h, f"{IMU}/data", shape=(10 ** 9, c), dtype=np.float32)


@_edit
def window_start_past_end(h):
    """The last window starts where the data ends."""
    ws = h[f"{IMU}/window_start"][()]
    ws[-1] = h[f"{IMU}/data"].shape[0]
    h[f"{IMU}/window_start"][...] = ws


@_edit
def empty_data(h):
    """The IMU data has no samples."""
    c = h[f"{IMU}/data"].shape[1]
    _replace(h, f"{IMU}/data", np.zeros((0, c), np.float32))


@_edit
def short_labels(h):
    """The label dataset has one entry fewer than the windows."""
    lab = h["windows/label"][()][:-1]
    _replace(h, "windows/label", lab, dtype=h5py.string_dtype())


@_edit
def args_json_not_json(h):
    """args_json is not JSON."""
    h.attrs["args_json"] = "{window_s: 2"


@_edit
def args_json_a_list(h):
    """args_json is a JSON list."""
    h.attrs["args_json"] = "[1, 2]"


@_edit
def checks_json_nan(h):
    """checks_json holds a NaN."""
    h.attrs["checks_json"] = '{"max_abs_lag_ms": NaN}'


@_edit
def checks_json_wrong_types(h):
    """checks_json's per-stream entry is a number, not an object."""
    h.attrs["checks_json"] = json.dumps({"streams": {"imu": 5}})


@_edit
def checks_json_deep(h):
    """checks_json nested 100,000 deep."""
    h.attrs["checks_json"] = "[" * 100_000 + "]" * 100_000


@_edit
def missing_windows(h):
    """No /windows group."""
    del h["windows"]


@_edit
def extra_dataset(h):
    """An unknown dataset at the root."""
    h.create_dataset("junk", data=np.arange(10))


@_edit
def extra_stream_member(h):
    """An unknown dataset inside the IMU stream."""
    h[IMU].create_dataset("extra", data=np.arange(10))


@_edit
def external_link(h):
    """/windows is a link to another file."""
    del h["windows"]
    h["windows"] = h5py.ExternalLink("/etc/hostname", "/windows")


@_edit
def start_s_int(h):
    """start_s stored as integers."""
    _replace(h, "windows/start_s", h["windows/start_s"][()].astype(np.int32))


@_edit
def window_start_float(h):
    """window_start stored as floats."""
    _replace(h, f"{IMU}/window_start", h[f"{IMU}/window_start"][()].astype(np.float64))


@_edit
def data_nonfinite(h):
    """An inf in the IMU data."""
    x = h[f"{IMU}/data"][()]
    x[5, 0] = np.inf
    h[f"{IMU}/data"][...] = x


@_edit
def samples_per_window_zero(h):
    """samples_per_window = 0."""
    h[IMU].attrs["samples_per_window"] = 0


@_edit
def rate_nan(h):
    """rate_hz = NaN."""
    h[IMU].attrs["rate_hz"] = float("nan")


@_edit
def stream_kind_unknown(h):
    """The stream's kind is "eeg"."""
    h[IMU].attrs["kind"] = "eeg"


def not_hdf5(path: Path) -> None:
    """A text file named *.h5."""
    Path(path).write_text("recording_id,start\nnot,hdf5\n")


def zero_bytes(path: Path) -> None:
    """An empty file."""
    Path(path).write_bytes(b"")


def truncated(path: Path) -> None:
    """The first 2 KB of the file only (a copy cut short)."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:2048])


CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "window_start_negative": (window_start_negative, "window_start: negative start -1"),
    "window_start_decreasing": (window_start_decreasing, "window_start: not strictly increasing"),
    "window_s_negative": (window_s_negative, "attribute 'window_s' is -2.0, expected a finite number > 0"),
    "start_s_nan": (start_s_nan, "/windows/start_s: 1 non-finite value(s)"),
    "data_int8": (data_int8, "/data: dtype int8, expected float32"),
    "n_windows_abc": (n_windows_abc, "'n_windows' is 'abc', expected a non-negative integer"),
    "n_windows_negative": (n_windows_negative, "'n_windows' is -5, expected a non-negative integer"),
    "start_s_declared_huge": (start_s_declared_huge, "/windows/start_s: declares shape (10000000000,)"),
    "data_declared_huge": (data_declared_huge, "/data: declares shape (1000000000, 6)"),
    "window_start_past_end": (window_start_past_end, "window_start: windows run past the data"),
    "empty_data": (empty_data, "window_start: windows run past the data"),
    "short_labels": (short_labels, "/windows/label: shape"),
    "args_json_not_json": (args_json_not_json, "root attribute 'args_json': not valid JSON"),
    "args_json_a_list": (args_json_a_list, "'args_json' holds a JSON list, expected a JSON object"),
    "checks_json_nan": (checks_json_nan, "root attribute 'checks_json': 'NaN' is not a JSON number"),
    "checks_json_wrong_types": (checks_json_wrong_types, "checks_json 'streams' is"),
    "checks_json_deep": (checks_json_deep, "root attribute 'checks_json':"),
    "missing_windows": (missing_windows, "no /windows group"),
    "extra_dataset": (extra_dataset, "unknown member '/junk'"),
    "extra_stream_member": (extra_stream_member, "unknown member 'extra'"),
    "external_link": (external_link, "no /windows group"),
    "start_s_int": (start_s_int, "/windows/start_s: dtype int32, expected a float"),
    "window_start_float": (window_start_float, "window_start: dtype float64, expected int64"),
    "data_nonfinite": (data_nonfinite, "/data: 1 non-finite value(s)"),
    "samples_per_window_zero": (samples_per_window_zero, "'samples_per_window' is 0, expected an integer >= 1"),
    "rate_nan": (rate_nan, "attribute 'rate_hz' is NaN, expected a finite number > 0"),
    "stream_kind_unknown": (stream_kind_unknown, "kind 'eeg' unknown"),
    "not_hdf5": (not_hdf5, "cannot read as HDF5"),
    "zero_bytes": (zero_bytes, "empty file (0 bytes)"),
    "truncated": (truncated, "cannot read as HDF5"),
}

__all__ = ["CASES"]
