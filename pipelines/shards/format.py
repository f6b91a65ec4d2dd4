"""The shard format (schemas/shard.md): encoding constants, version checks, manifest reading, window packing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipelines.core.errors import ShardError

SHARD_TYPE = "dcat-shard"
WINDOWS_TYPE = "dcat-windows"
STREAM_TYPE = "dcat-stream"
MANIFEST_TYPE = "dcat-manifest"
ENCODING_VERSION = "1"
KNOWN_VERSIONS = ("1",)

# the per-window feature array of each stream kind (audio may also carry "waveform")
FEATURE_DATASETS = {"video": "frames", "imu": "data", "audio": "logmel"}

MANIFEST_NAME = "manifest.json"
INFO_NAME = "preprocess-info.json"


def as_str(x: Any) -> str:
    """An HDF5 string attribute or element (bytes or str) as str."""
    return x.decode() if isinstance(x, bytes) else str(x)


def check_encoding(obj, expected_type: str, where: str) -> str:
    """Check an h5py group's (or a dict's) encoding attributes; return the version.

    Raises ShardError naming ``where`` when the type is wrong or the version is unknown.
    """
    attrs = obj if isinstance(obj, dict) else obj.attrs
    if "encoding-type" not in attrs:
        raise ShardError(f"{where}: no 'encoding-type' attribute: not a dcat {expected_type} "
                         "(re-create it with `dcat preprocess`)")
    etype = as_str(attrs["encoding-type"])
    if etype != expected_type:
        raise ShardError(f"{where}: encoding-type is '{etype}', expected '{expected_type}'")
    ver = as_str(attrs.get("encoding-version", ""))
    if ver not in KNOWN_VERSIONS:
        raise ShardError(f"{where}: {expected_type} encoding-version '{ver}' is not one this dcat reads "
                         f"({', '.join(KNOWN_VERSIONS)}): upgrade dcat, or re-run `dcat preprocess` "
                         "with this version to rewrite the shards")
    return ver


def set_encoding(group, etype: str) -> None:
    group.attrs["encoding-type"] = etype
    group.attrs["encoding-version"] = ENCODING_VERSION


def read_manifest(shards_dir: Path) -> dict:
    """Load and version-check ``manifest.json`` of a shards directory."""
    p = Path(shards_dir) / MANIFEST_NAME
    if not p.is_file():
        raise ShardError(f"{p}: no manifest: is '{shards_dir}' a shards directory? "
                         f"Create it with `dcat preprocess RAW --out {shards_dir}`, "
                         f"or rebuild it with `dcat manifest {shards_dir}`")
    try:
        m = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ShardError(f"{p}: not valid JSON ({e}); rebuild it with `dcat manifest {shards_dir}`") from e
    check_encoding(m, MANIFEST_TYPE, str(p))
    return m


# ------------------------------------------------------------------ window packing


def pack_windows(first: "np.ndarray", length: int):
    """Windows ``[first[i], first[i] + length)`` on a sample grid (sorted) -> stored runs + starts.

    Returns ``(runs, window_start)``: ``runs`` is a list of ``(a, b)`` grid intervals, the union of the
    windows, merged where windows overlap or touch; they are stored one after another, each sample
    once. ``window_start[i]`` is window i's first sample in that stored array.
    """
    import numpy as np

    first = np.asarray(first, dtype=np.int64)
    runs: list[tuple[int, int]] = []
    starts = np.empty(len(first), np.int64)
    pos = 0
    for i, a in enumerate(first):
        a = int(a)
        if runs and a <= runs[-1][1]:
            r0, r1 = runs[-1]
            runs[-1] = (r0, max(r1, a + length))
            starts[i] = pos - (r1 - r0) + (a - r0)
            pos += runs[-1][1] - r1
        else:
            runs.append((a, a + length))
            starts[i] = pos
            pos += length
    return runs, starts
