"""`dcat validate SHARDS_DIR`: every shard against schemas/shard.md, and the manifest against the
shards present. Each problem is one line naming the file and what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipelines.core.errors import DcatError, ShardError
from pipelines.shards.format import (FEATURE_DATASETS, MANIFEST_NAME, MANIFEST_TYPE, SHARD_TYPE, STREAM_TYPE,
                                     WINDOWS_TYPE, check_encoding)
from pipelines.shards.manifest import shard_files

ROOT_ATTRS = ("recording_id", "subject", "session", "n_windows", "window_s", "stride_s", "tool_version",
              "args_json", "meta_json", "sources_json", "checks_json")
STREAM_ATTRS = ("rate_hz", "samples_per_window", "unit", "resample_method")
FEATURE_DTYPES = {"video": np.uint8, "imu": np.float32, "audio": np.float32}


def validate_shards(shards_dir: Path) -> list[str]:
    """Check every shard against schemas/shard.md and the manifest; return the problems found."""
    import h5py

    problems: list[str] = []
    try:
        files = shard_files(shards_dir)
    except DcatError as e:
        return [str(e)]
    if not files:
        return [f"{shards_dir}: no shards (*.h5)"]
    leftovers = sorted(p.name for p in Path(shards_dir).glob(".*.tmp"))
    if leftovers:
        problems.append(f"{shards_dir}: leftover temporary files {leftovers} (an interrupted run; delete them)")
    for p in files:
        try:
            with h5py.File(p, "r") as h:
                _check_shard(h, p, problems)
        except ShardError as e:
            problems.append(str(e))
        except OSError as e:
            problems.append(f"{p}: cannot read as HDF5 ({e})")
    return problems + _check_manifest(Path(shards_dir), files)


def _check_shard(h, p: Path, problems: list[str]) -> None:
    """Append the problems of one open shard to ``problems`` (in place: those found before a
    ShardError stops the check are kept)."""
    check_encoding(h, SHARD_TYPE, str(p))
    problems += [f"{p}: missing root attribute '{a}'" for a in ROOT_ATTRS if a not in h.attrs]
    n = int(h.attrs.get("n_windows", -1))
    if "windows" not in h:
        problems.append(f"{p}: no /windows group")
        return
    problems += _check_windows(h, p, n)
    if "streams" not in h or not len(h["streams"]):
        problems.append(f"{p}: no streams")
        return
    for name, gs in h["streams"].items():
        problems += _check_stream(gs, f"{p}:/streams/{name}", n)


def _check_windows(h, p: Path, n: int) -> list[str]:
    g = h["windows"]
    check_encoding(g, WINDOWS_TYPE, f"{p}:/windows")
    problems = []
    for d in ("start_s", "end_s", "label", "label_purity"):
        if d not in g:
            problems.append(f"{p}: /windows/{d} missing")
        elif g[d].shape != (n,):
            problems.append(f"{p}: /windows/{d} has shape {g[d].shape}, expected ({n},)")
    if "start_s" in g and n > 0:
        s0 = g["start_s"][()]
        if np.any(np.diff(s0) <= 0):
            problems.append(f"{p}: /windows/start_s not strictly increasing")
        if "end_s" in g and not np.allclose(g["end_s"][()] - s0, float(h.attrs["window_s"]), atol=1e-6):
            problems.append(f"{p}: /windows/end_s - start_s differs from window_s")
    return problems


def _check_stream(gs, where: str, n: int) -> list[str]:
    check_encoding(gs, STREAM_TYPE, where)
    kind = str(gs.attrs.get("kind", ""))
    if kind not in FEATURE_DATASETS:
        return [f"{where}: kind '{kind}' unknown"]
    problems = [f"{where}: missing attribute '{a}'" for a in STREAM_ATTRS if a not in gs.attrs]
    main = FEATURE_DATASETS[kind]
    if main not in gs or "window_start" not in gs:
        return problems + [f"{where}: dataset '{main}' or 'window_start' missing"]
    ds, ws = gs[main], gs["window_start"][()]
    t_win = int(gs.attrs.get("samples_per_window", -1))
    if ws.shape != (n,):
        problems.append(f"{where}/window_start: shape {ws.shape}, expected ({n},)")
    elif n and (np.any(np.diff(ws) <= 0) or ws[0] < 0 or ws[-1] + t_win > ds.shape[0]):
        problems.append(f"{where}/window_start: not increasing, or windows run past "
                        f"{main} ({ds.shape[0]} samples, {t_win} per window)")
    want = FEATURE_DTYPES[kind]
    if ds.dtype != want:
        problems.append(f"{where}/{main}: dtype {ds.dtype}, expected {np.dtype(want)}")
    if ds.chunks is not None or ds.compression is not None:
        problems.append(f"{where}/{main}: must be contiguous and uncompressed")
    if kind == "imu":
        if ds.ndim != 2 or ds.shape[1] != len(gs.attrs.get("channels", [])):
            problems.append(f"{where}/data: channel axis does not match attribute 'channels'")
        problems += [f"{where}: dataset '{d}' missing" for d in ("sum", "sumsq", "count", "mean", "std") if d not in gs]
        if not np.isfinite(ds[: min(len(ds), 100_000)]).all():
            problems.append(f"{where}/data: non-finite values (the quality gate should drop them)")
    if kind == "video" and ds.ndim != 4:
        problems.append(f"{where}/frames: expected [L, H, W, 3], got shape {ds.shape}")
    if kind == "audio" and ds.ndim != 2:
        problems.append(f"{where}/logmel: expected [L, n_mels], got shape {ds.shape}")
    return problems


def _check_manifest(shards_dir: Path, files: list[Path]) -> list[str]:
    mpath = shards_dir / MANIFEST_NAME
    if not mpath.is_file():
        return [f"{mpath}: missing (rebuild it with `dcat manifest {shards_dir}`)"]
    try:
        m = json.loads(mpath.read_text())
        check_encoding(m, MANIFEST_TYPE, str(mpath))
        listed = {s["file"] for s in m.get("shards", [])}
        present = {p.name for p in files}
        if listed != present:
            return [f"{mpath}: lists {sorted(listed - present)} that are absent and misses "
                    f"{sorted(present - listed)}; rebuild it with `dcat manifest {shards_dir}`"]
    except (json.JSONDecodeError, ShardError) as e:
        return [f"{mpath}: {e}"]
    return []
