"""The shard format (schemas/shard.md): encoding constants, version checks, manifest I/O."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import ShardError

SHARD_TYPE = "dcat-shard"
WINDOWS_TYPE = "dcat-windows"
STREAM_TYPE = "dcat-stream"
MANIFEST_TYPE = "dcat-manifest"
ENCODING_VERSION = "1"
KNOWN_VERSIONS = ("1",)

MANIFEST_NAME = "manifest.json"
INFO_NAME = "preprocess-info.json"


def _s(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def check_encoding(obj, expected_type: str, where: str) -> str:
    """Check an h5py group's (or a dict's) encoding attributes; return the version.

    Raises ShardError naming ``where`` when the type is wrong or the version is unknown.
    """
    attrs = obj if isinstance(obj, dict) else obj.attrs
    if "encoding-type" not in attrs:
        raise ShardError(f"{where}: no 'encoding-type' attribute: not a dcat {expected_type} "
                         "(re-create it with `dcat preprocess`)")
    etype = _s(attrs["encoding-type"])
    if etype != expected_type:
        raise ShardError(f"{where}: encoding-type is '{etype}', expected '{expected_type}'")
    ver = _s(attrs.get("encoding-version", ""))
    if ver not in KNOWN_VERSIONS:
        raise ShardError(f"{where}: {expected_type} encoding-version '{ver}' is not one this dcat reads "
                         f"({', '.join(KNOWN_VERSIONS)}): upgrade dcat, or re-run `dcat preprocess` "
                         "with this version to rewrite the shards")
    return ver


def set_encoding(group, etype: str) -> None:
    group.attrs["encoding-type"] = etype
    group.attrs["encoding-version"] = ENCODING_VERSION


def atomic_write_text(path: Path, text: str) -> None:
    """Write text to ``path`` via a temporary file and rename (never a half-written file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
