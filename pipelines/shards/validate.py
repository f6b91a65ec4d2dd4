"""`dcat validate SHARDS_DIR`: every shard against schemas/shard.md, and the manifest against the
shards present. Each problem is one line naming the file and what is wrong.

A shard's checks are :func:`pipelines.shards.check.shard_problems`, the same ones every command that
reads shards runs on open (:func:`pipelines.shards.check.check_shard`), so a shard this rejects
is rejected by `dcat pretrain`, `predict`, `evaluate`, ... with the first of these messages."""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.core.errors import DcatError, ShardError
from pipelines.shards.check import FEATURE_DTYPES, ROOT_ATTRS, STREAM_ATTRS, shard_problems
from pipelines.shards.format import MANIFEST_NAME, MANIFEST_TYPE, check_encoding
from pipelines.shards.manifest import shard_files


def validate_shards(shards_dir: Path) -> list[str]:
    """Check every shard against schemas/shard.md and the manifest; return the problems found.
    ``shards_dir`` may also be one shard file (then only its own checks run)."""
    if Path(shards_dir).is_file():
        return shard_problems(shards_dir)
    try:
        files = shard_files(shards_dir)
    except DcatError as e:
        return [str(e)]
    if not files:
        return [f"{shards_dir}: no shards (*.h5)"]
    problems: list[str] = []
    leftovers = sorted(p.name for p in Path(shards_dir).glob(".*.tmp"))
    if leftovers:
        problems.append(f"{shards_dir}: leftover temporary files {leftovers} (an interrupted run; delete them)")
    for p in files:
        problems += shard_problems(p)
    return problems + _check_manifest(Path(shards_dir), files)


def stale_manifest(shards_dir: Path, listed: set[str], present: set[str]) -> str | None:
    """The problem when ``manifest.json`` lists other shards than the ``*.h5`` present (None if not)."""
    if listed == present:
        return None
    return (f"{Path(shards_dir) / MANIFEST_NAME}: lists {sorted(listed - present)} that are absent and misses "
            f"{sorted(present - listed)}; rebuild it with `dcat manifest {shards_dir}`")


def _check_manifest(shards_dir: Path, files: list[Path]) -> list[str]:
    mpath = shards_dir / MANIFEST_NAME
    if not mpath.is_file():
        return [f"{mpath}: missing (rebuild it with `dcat manifest {shards_dir}`)"]
    try:
        m = json.loads(mpath.read_text())
        check_encoding(m, MANIFEST_TYPE, str(mpath))
        msg = stale_manifest(shards_dir, {s["file"] for s in m.get("shards", [])}, {p.name for p in files})
        if msg:
            return [msg]
    except (ValueError, TypeError, AttributeError, KeyError, RecursionError, ShardError) as e:  # not a manifest's shape
        return [f"{mpath}: {e}"]
    return []


__all__ = ["validate_shards", "stale_manifest", "FEATURE_DTYPES", "ROOT_ATTRS", "STREAM_ATTRS"]
