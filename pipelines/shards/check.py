"""Checking one shard file on open: the one place every reader of shards goes through.

:func:`shard_problems` lists everything wrong with one ``*.h5`` against schemas/shard.md (the
section "What is checked on open"); :func:`check_shard` raises :class:`ShardCheckError` (a
``ShardError``) with the first of them, so `dcat validate` (which prints them all) and every
command that reads shards (`pretrain`, `transfer`, `evaluate`, `predict`, `inspect`, `manifest`)
refuse the same files with the same message. Nothing is allocated from a declared size before it is
checked: every dataset read is first bounded by the file's size (uncompressed data lives in the
file), and external or virtual storage is refused. The checks are linear in the number of windows
plus one chunked pass over the float feature arrays (non-finite values); a file that passed is
remembered by (path, size, mtime, inode) so one process checks it once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipelines.core.errors import DcatError, ShardError
from pipelines.shards.checkattrs import (JSON_ATTRS, Found, Stop, check_args, check_checks, count_attr, json_attr,
                                        n_windows_attr, positive_attr, short, show)
from pipelines.shards.format import FEATURE_DATASETS, SHARD_TYPE, STREAM_TYPE, WINDOWS_TYPE, as_str, check_encoding

ROOT_ATTRS = ("recording_id", "subject", "session", "n_windows", "window_s", "stride_s", "tool_version",
              "args_json", "meta_json", "sources_json", "checks_json")
STREAM_ATTRS = ("rate_hz", "samples_per_window", "unit", "resample_method")
FEATURE_DTYPES = {"video": np.dtype(np.uint8), "imu": np.dtype(np.float32), "audio": np.dtype(np.float32)}
WINDOW_DATASETS = ("start_s", "end_s", "label", "label_purity")
# the members each stream kind may hold (schemas/shard.md); anything else is refused
STREAM_MEMBERS = {"video": {"frames", "window_start"},
                  "imu": {"data", "window_start", "sum", "sumsq", "count", "mean", "std"},
                  "audio": {"logmel", "window_start", "waveform", "waveform_window_start"}}
SCAN_ELEMENTS = 1 << 22  # elements per chunk of the non-finite scan (16 MiB of float32)
_CACHE_MAX = 4096
_passed: dict[tuple, "ShardSummary"] = {}


class ShardCheckError(ShardError):
    """A shard that fails the checks: ``path``, ``problems`` (every message, each naming the file);
    ``str()`` is the first, plus how many more there are."""

    def __init__(self, path: Path, problems: list[str]):
        self.path = Path(path)
        self.problems = list(problems)
        more = len(problems) - 1
        super().__init__(problems[0] + (f" (and {more} more problem(s): `dcat validate` on the shards "
                                        "directory lists them)" if more else ""))


@dataclass
class StreamSummary:
    """One stream of a checked shard."""

    name: str
    kind: str
    dataset: str
    rate_hz: float
    samples_per_window: int
    n_samples: int
    shape: list[int]  # per window: [T, ...]
    dtype: str


@dataclass
class ShardSummary:
    """What a checked shard holds (read from its attributes and dataset shapes)."""

    path: Path
    recording_id: str
    subject: str
    session: str
    n_windows: int
    window_s: float
    stride_s: float
    args: dict
    checks: dict
    streams: dict[str, StreamSummary] = field(default_factory=dict)


# ------------------------------------------------------------------------------ public


def check_shard(path: str | Path) -> ShardSummary:
    """The checked summary of the shard at ``path``; :class:`ShardCheckError` on any problem."""
    path = Path(path)
    key = _key(path)
    if key is not None and key in _passed:
        return _passed[key]
    summary, problems = _run(path)
    if problems:
        raise ShardCheckError(path, problems)
    if key is not None:
        if len(_passed) >= _CACHE_MAX:
            _passed.clear()
        _passed[key] = summary
    return summary


def shard_problems(path: str | Path) -> list[str]:
    """Every problem of the shard at ``path`` (empty when it passes), each naming the file."""
    return _run(Path(path))[1]


def check_window_starts(starts: np.ndarray, length: int, n_samples: int, where: str) -> None:
    """Raise ShardError unless windows ``[starts[i], starts[i] + length)`` are strictly increasing
    and lie inside an array of ``n_samples`` samples (``where`` names the dataset)."""
    msg = _starts_problem(np.asarray(starts), int(length), int(n_samples))
    if msg:
        raise ShardError(f"{where}: {msg}")


# ------------------------------------------------------------------------------ the checks


def _key(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)


def _run(path: Path) -> tuple[ShardSummary | None, list[str]]:
    import h5py

    found = Found()
    if not path.is_file():
        return None, [f"{path}: not a file"]
    size = path.stat().st_size
    if size == 0:
        return None, [f"{path}: empty file (0 bytes), not an HDF5 shard; delete it and re-run `dcat preprocess`"]
    try:
        h = h5py.File(path, "r")
    except (OSError, ValueError) as e:
        return None, [f"{path}: cannot read as HDF5 ({short(e)}); delete it and re-run `dcat preprocess`"]
    summary = None
    try:
        with h:
            summary = _check_file(h, path, size, found)
    except Stop:
        pass
    except ShardError as e:
        found.bad(str(e))
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, UnicodeDecodeError, DcatError) as e:
        found.bad(f"{path}: unreadable HDF5 content ({type(e).__name__}: {short(e)}); re-create it with "
                  "`dcat preprocess`")
    return (summary if not found.problems else None), found.problems


def _check_file(h, path: Path, size: int, found: Found) -> ShardSummary:
    _encoding(h, SHARD_TYPE, str(path), found)
    for a in ROOT_ATTRS:
        if a not in h.attrs:
            found.bad(f"{path}: missing root attribute '{a}'")
    n = n_windows_attr(h, path, found)
    window_s = positive_attr(h, "window_s", str(path), found)
    stride_s = positive_attr(h, "stride_s", str(path), found)
    for a in ("recording_id", "subject", "session", "tool_version"):
        if a in h.attrs and not isinstance(h.attrs[a], (str, bytes)):
            found.bad(f"{path}: root attribute '{a}' is a {type(h.attrs[a]).__name__}, expected a string")
    parsed = {a: json_attr(h, a, path, found) for a in JSON_ATTRS}
    if parsed["args_json"] is not None:
        check_args(parsed["args_json"], window_s, stride_s, path, found)
    if parsed["checks_json"] is not None:
        check_checks(parsed["checks_json"], path, found)
    for name in h:
        if name not in ("windows", "streams"):
            found.bad(f"{path}: unknown member '/{name}' (not in schemas/shard.md)")
    if _member(h, "windows") != "group":
        found.stop(f"{path}: no /windows group; re-create it with `dcat preprocess`")
    _check_windows(h["windows"], path, size, n, window_s, found)
    if _member(h, "streams") != "group" or not len(h["streams"]):
        found.stop(f"{path}: no streams (no /streams group, or an empty one)")
    streams = {}
    for name in h["streams"]:
        where = f"{path}:/streams/{name}"
        if _member(h["streams"], name) != "group":
            found.bad(f"{where}: not a group")
            continue
        try:
            streams[name] = _check_stream(h["streams"][name], name, where, size, n, found)
        except Stop:
            pass
    if found.problems:
        raise Stop
    return ShardSummary(path, as_str(h.attrs["recording_id"]), as_str(h.attrs["subject"]), as_str(h.attrs["session"]),
                        n, window_s, stride_s, parsed["args_json"] or {}, parsed["checks_json"] or {}, streams)


def _member(g, name: str) -> str | None:
    """What ``g[name]`` is: "group", "dataset", "link" (soft or external: refused, as it may point
    outside the file), "other", or None when absent."""
    import h5py

    if name not in g:
        return None
    if not isinstance(g.get(name, getlink=True), h5py.HardLink):
        return "link"
    cls = g.get(name, getclass=True)
    return "group" if cls is h5py.Group else "dataset" if cls is h5py.Dataset else "other"


def _encoding(obj, etype: str, where: str, found: Found) -> None:
    try:
        check_encoding(obj, etype, where)
    except ShardError as e:
        found.stop(str(e))


def _dataset(g, name: str, where: str, size: int, found: Found, fatal: bool = True):
    """Member ``name`` of ``g`` as an h5py Dataset whose declared bytes fit in the file; None (or
    Stop when ``fatal``) after recording the problem."""
    report = found.stop if fatal else found.bad
    what = _member(g, name)
    if what is None:
        report(f"{where}/{name}: missing")
        return None
    if what != "dataset":
        report(f"{where}/{name}: not a dataset stored in the file ({what})")
        return None
    ds = g[name]
    if ds.external or ds.is_virtual:
        report(f"{where}/{name}: stored outside the file (external or virtual dataset), refused")
        return None
    nbytes = math.prod(ds.shape or ()) * ds.dtype.itemsize
    if nbytes > size:
        report(f"{where}/{name}: declares shape {tuple(ds.shape)} ({nbytes:,} bytes) in a file of {size:,} bytes")
        return None
    if ds.chunks is None and ds.compression is None and ds.size and ds.id.get_storage_size() < nbytes:
        report(f"{where}/{name}: declares {nbytes:,} bytes but stores {ds.id.get_storage_size():,} (never written)")
        return None
    return ds


def _check_windows(g, path: Path, size: int, n: int, window_s: float, found: Found) -> None:
    import h5py

    where = f"{path}:/windows"
    _encoding(g, WINDOWS_TYPE, where, found)
    for name in g:
        if name not in WINDOW_DATASETS:
            found.bad(f"{where}: unknown member '{name}' (not in schemas/shard.md)")
    ds = {}
    for d in WINDOW_DATASETS:
        x = _dataset(g, d, where, size, found, fatal=False)
        if x is None:
            continue
        if x.shape != (n,):
            found.bad(f"{where}/{d}: shape {tuple(x.shape)}, expected ({n},) (n_windows = {n})")
            continue
        ds[d] = x
    for d in ("start_s", "end_s", "label_purity"):
        if d in ds and ds[d].dtype.kind != "f":
            found.bad(f"{where}/{d}: dtype {ds[d].dtype}, expected a float")
            del ds[d]
    if "label" in ds and h5py.check_string_dtype(ds["label"].dtype) is None:
        found.bad(f"{where}/label: dtype {ds['label'].dtype}, expected UTF-8 strings")
        del ds["label"]
    if "start_s" in ds:
        s0 = ds["start_s"][()].astype(np.float64)
        if not np.isfinite(s0).all():
            found.bad(f"{where}/start_s: {int((~np.isfinite(s0)).sum())} non-finite value(s)")
        elif np.any(np.diff(s0) <= 0):
            found.bad(f"{where}/start_s: not strictly increasing")
        elif "end_s" in ds and math.isfinite(window_s):
            e0 = ds["end_s"][()].astype(np.float64)
            if not np.isfinite(e0).all() or not np.allclose(e0 - s0, window_s, atol=1e-6):
                found.bad(f"{where}/end_s: end_s - start_s differs from window_s ({window_s:g})")
    if "label_purity" in ds:
        p = ds["label_purity"][()].astype(np.float64)
        if not (np.isfinite(p) & (p >= -1e-6) & (p <= 1 + 1e-6)).all():
            found.bad(f"{where}/label_purity: values outside [0, 1] or non-finite")
    if "label" in ds:
        try:
            [as_str(x) for x in ds["label"][()]]
        except UnicodeDecodeError as e:
            found.bad(f"{where}/label: not UTF-8 text ({short(e)})")


def _check_stream(gs, name: str, where: str, size: int, n: int, found: Found) -> StreamSummary:
    _encoding(gs, STREAM_TYPE, where, found)
    kind_v = gs.attrs.get("kind", "")
    kind = as_str(kind_v) if isinstance(kind_v, (str, bytes)) else ""
    if kind not in FEATURE_DATASETS:
        found.stop(f"{where}: kind {show(kind_v)} unknown (expected one of {', '.join(FEATURE_DATASETS)})")
    for a in STREAM_ATTRS:
        if a not in gs.attrs:
            found.bad(f"{where}: missing attribute '{a}'")
    rate = positive_attr(gs, "rate_hz", where, found)
    t_win = count_attr(gs, "samples_per_window", where, found)
    for m in gs:
        if m not in STREAM_MEMBERS[kind]:
            found.bad(f"{where}: unknown member '{m}' (not in schemas/shard.md for kind {kind})")
    main = FEATURE_DATASETS[kind]
    ds = _dataset(gs, main, where, size, found)
    want = FEATURE_DTYPES[kind]
    if ds.dtype != want:
        found.stop(f"{where}/{main}: dtype {ds.dtype}, expected {want}")
    if ds.chunks is not None or ds.compression is not None:
        found.bad(f"{where}/{main}: must be contiguous and uncompressed")
    _check_feature_shape(gs, ds, kind, where, found)
    _check_starts(gs, "window_start", t_win, ds.shape[0] if ds.ndim else 0, where, size, n, found)
    if kind == "imu":
        _check_imu_stats(gs, ds.shape[1] if ds.ndim == 2 else -1, where, size, found)
    if kind == "audio" and ("waveform" in gs or "waveform_window_start" in gs):
        wav = _dataset(gs, "waveform", where, size, found)
        if wav.dtype != np.float32 or wav.ndim != 1:
            found.stop(f"{where}/waveform: dtype {wav.dtype} shape {tuple(wav.shape)}, expected float32 [L]")
        s_win = count_attr(gs, "waveform_samples_per_window", where, found)
        _check_starts(gs, "waveform_window_start", s_win, wav.shape[0], where, size, n, found)
        _scan_finite(wav, where, found)
    if ds.dtype.kind == "f":
        _scan_finite(ds, where, found)
    return StreamSummary(name, kind, main, rate, t_win, int(ds.shape[0]), [t_win, *map(int, ds.shape[1:])],
                         str(ds.dtype))


def _check_feature_shape(gs, ds, kind: str, where: str, found: Found) -> None:
    main = FEATURE_DATASETS[kind]
    if ds.ndim >= 2 and min(ds.shape[1:]) < 1:
        found.stop(f"{where}/{main}: shape {tuple(ds.shape)} has an empty per-sample axis")
    if kind == "video" and (ds.ndim != 4 or ds.shape[3] != 3):
        found.stop(f"{where}/frames: expected [L, H, W, 3], got shape {tuple(ds.shape)}")
    if kind in ("imu", "audio") and ds.ndim != 2:
        found.stop(f"{where}/{main}: expected 2 dimensions, got shape {tuple(ds.shape)}")
    if kind == "imu":
        ch = gs.attrs.get("channels", None)
        try:
            names = [as_str(c) for c in ch] if ch is not None and not isinstance(ch, (str, bytes)) else None
        except (TypeError, UnicodeDecodeError):
            names = None
        if names is None or len(names) != ds.shape[1]:
            found.stop(f"{where}/data: channel axis ({ds.shape[1]}) does not match attribute 'channels' {show(ch)}")


def _starts_problem(ws: np.ndarray, t_win: int, n_samples: int) -> str:
    if ws.dtype.kind not in "iu":
        return f"dtype {ws.dtype}, expected int64"
    if len(ws) == 0:
        return ""
    w = ws.astype(np.int64)
    if np.any(np.diff(w) <= 0):
        return "not strictly increasing"
    if w[0] < 0:
        return f"negative start {int(w[0])}"
    if int(w[-1]) + t_win > n_samples:
        return (f"windows run past the data (last starts at {int(w[-1])}, {t_win} per window, "
                f"{n_samples} samples stored)")
    return ""


def _check_starts(gs, name: str, t_win: int, n_samples: int, where: str, size: int, n: int, found: Found) -> None:
    ds = _dataset(gs, name, where, size, found)
    if ds.shape != (n,):
        found.stop(f"{where}/{name}: shape {tuple(ds.shape)}, expected ({n},) (n_windows = {n})")
    msg = _starts_problem(ds[()] if ds.dtype.kind in "iu" else np.zeros(0, ds.dtype), t_win, n_samples)
    if msg:
        found.stop(f"{where}/{name}: {msg}")


def _check_imu_stats(gs, c: int, where: str, size: int, found: Found) -> None:
    for d in ("sum", "sumsq", "mean", "std"):
        ds = _dataset(gs, d, where, size, found, fatal=False)
        if ds is None:
            continue
        if ds.shape != (c,) or ds.dtype.kind != "f":
            found.bad(f"{where}/{d}: dtype {ds.dtype} shape {tuple(ds.shape)}, expected float [{c}]")
        elif not np.isfinite(ds[()]).all():
            found.bad(f"{where}/{d}: non-finite values")
    ds = _dataset(gs, "count", where, size, found, fatal=False)
    if ds is not None and (ds.shape != () or ds.dtype.kind not in "iu" or int(ds[()]) < 0):
        found.bad(f"{where}/count: dtype {ds.dtype} shape {tuple(ds.shape)}, expected a non-negative integer scalar")


def _scan_finite(ds, where: str, found: Found) -> None:
    """Non-finite values in a float array, read in chunks of about SCAN_ELEMENTS elements."""
    if not ds.size:
        return
    rows = max(1, SCAN_ELEMENTS // max(1, math.prod(ds.shape[1:])))
    bad = 0
    for a in range(0, ds.shape[0], rows):
        bad += int(np.count_nonzero(~np.isfinite(ds[a:a + rows])))
    if bad:
        name = ds.name.rsplit("/", 1)[-1]
        found.bad(f"{where}/{name}: {bad} non-finite value(s) (the quality gate should drop them)")


__all__ = ["ShardCheckError", "ShardSummary", "StreamSummary", "check_shard", "shard_problems", "check_window_starts",
           "FEATURE_DTYPES", "ROOT_ATTRS", "STREAM_ATTRS"]
