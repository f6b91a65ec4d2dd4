"""The attribute checks of one shard (:mod:`pipelines.shards.check` runs them): types, ranges,
strict JSON within bounds; and the collector of problems the checks share (:class:`Found`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.shards.format import as_str

JSON_ATTRS = {"args_json": dict, "meta_json": dict, "sources_json": list, "checks_json": dict}


class Stop(Exception):
    """Ends the checks of one scope (the shard, or one stream) after a problem that makes the rest
    unreadable."""


class Found:
    """The problems found so far: ``bad`` records one, ``stop`` records one and ends the scope."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def bad(self, msg: str) -> None:
        self.problems.append(msg)

    def stop(self, msg: str) -> None:
        self.problems.append(msg)
        raise Stop


def n_windows_attr(h, path: Path, found: Found) -> int:
    if "n_windows" not in h.attrs:
        raise Stop
    v = h.attrs["n_windows"]
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or int(v) < 0:
        found.stop(f"{path}: root attribute 'n_windows' is {show(v)}, expected a non-negative integer")
    return int(v)


def positive_attr(g, name: str, where: str, found: Found) -> float:
    """A finite number > 0 (NaN when absent or bad; the problem is recorded)."""
    if name not in g.attrs:
        return math.nan
    v = g.attrs[name]
    ok = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
    if not ok or not math.isfinite(float(v)) or float(v) <= 0:
        found.bad(f"{where}: attribute '{name}' is {show(v)}, expected a finite number > 0")
        return math.nan
    return float(v)


def json_attr(h, name: str, path: Path, found: Found) -> Any:
    """The parsed JSON attribute ``name`` (None when absent or bad; the problem is recorded)."""
    from pipelines.core.bounded import BoundedInputError, loads_json_bounded

    want = JSON_ATTRS[name]
    if name not in h.attrs:
        return None
    v = h.attrs[name]
    if not isinstance(v, (str, bytes)):
        found.bad(f"{path}: root attribute '{name}' is a {type(v).__name__}, expected a JSON string")
        return None
    try:
        obj = loads_json_bounded(as_str(v))
    except (BoundedInputError, UnicodeDecodeError) as e:
        found.bad(f"{path}: root attribute '{name}': {getattr(e, 'problem', None) or short(e)}")
        return None
    if not isinstance(obj, want):
        found.bad(f"{path}: root attribute '{name}' holds a JSON {type(obj).__name__}, expected a JSON "
                  f"{'object' if want is dict else 'array'}")
        return None
    return obj


def is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def check_args(args: dict, window_s: float, stride_s: float, path: Path, found: Found) -> None:
    """args_json's window_s and stride_s: present and equal to the root attributes (the manifest
    and `dcat inspect` read the settings from here)."""
    for k, attr in (("window_s", window_s), ("stride_s", stride_s)):
        v = args.get(k)
        if not is_num(v) or (math.isfinite(attr) and abs(v - attr) > 1e-9 * max(1.0, abs(attr))):
            found.bad(f"{path}: args_json '{k}' is {show(v)}, expected the root attribute's value {attr:g}")


def check_checks(ch: dict, path: Path, found: Found) -> None:
    """The keys of checks_json that readers use (schemas/glossary.md), where present."""
    def bad(key: str, want: str) -> None:
        found.bad(f"{path}: checks_json '{key}' is {show(ch[key])}, expected {want}")

    for k in ("sync_ok", "rate_ok"):
        if k in ch and ch[k] is not None and not isinstance(ch[k], bool):
            bad(k, "true, false or null")
    if "max_abs_lag_ms" in ch and ch["max_abs_lag_ms"] is not None and not is_num(ch["max_abs_lag_ms"]):
        bad("max_abs_lag_ms", "a number or null")
    if "reference_stream" in ch and ch["reference_stream"] is not None and not isinstance(ch["reference_stream"], str):
        bad("reference_stream", "a string or null")
    if "rejected" in ch and not (isinstance(ch["rejected"], dict) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in ch["rejected"].values())):
        bad("rejected", "an object of window counts")
    if "warnings" in ch and not (isinstance(ch["warnings"], list) and all(isinstance(w, str) for w in ch["warnings"])):
        bad("warnings", "a list of strings")
    if "streams" in ch:
        st = ch["streams"]
        if not (isinstance(st, dict) and all(isinstance(v, dict) and (v.get("lag_s") is None or is_num(v["lag_s"]))
                                             for v in st.values())):
            bad("streams", "an object of per-stream objects (lag_s a number or null)")


def count_attr(g, name: str, where: str, found: Found) -> int:
    """An integer attribute >= 1 (a failure stops the stream's checks)."""
    if name not in g.attrs:
        found.stop(f"{where}: missing attribute '{name}'")
    v = g.attrs[name]
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or int(v) < 1:
        found.stop(f"{where}: attribute '{name}' is {show(v)}, expected an integer >= 1")
    return int(v)


def show(v: Any) -> str:
    """A short printable form of an attribute value for a message."""
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    if isinstance(v, (np.ndarray, np.generic)):
        v = v.tolist()
    s = json.dumps(v, default=str) if not isinstance(v, str) else repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def short(e: BaseException) -> str:
    s = str(e).replace("\n", " ")
    return s if len(s) <= 200 else s[:197] + "..."
