"""A shards directory that several runs may write at once: one lock per shard, the leftovers of
killed runs, and the quarantine of unreadable shards.

- Ownership: a run holds ``.<id>.h5.lock`` (:class:`pipelines.core.lock.FileLock`) while it checks,
  makes or skips shard ``<id>.h5``, so two runs never write one shard; a second run into the same
  directory waits for the shard the first is writing, then finds it done and skips it. Runs of a
  job array (``--shard-index``) write different shards and never wait for each other. The
  manifest (``manifest.json``, :func:`pipelines.shards.manifest.write_manifest`) and
  ``preprocess-info*.json`` are written under their own locks.
- Leftovers: a kill leaves ``.scratch-<id>-<pid>/`` folders and ``.<name>.<random>.tmp`` files.
  They belong to the file they were making (``<id>.h5``, ``<name>``); whoever can take that file's
  lock knows that no live run is making it and removes them (:func:`sweep_leftovers` at the start
  of a run, :func:`clear_leftovers` for one shard once its lock is held). A live run's leftovers are
  never touched, wherever it runs (the lock, not a pid, decides).
- Quarantine: a finished ``<id>.h5`` that does not open as a shard is moved to
  ``quarantine/<id>.<UTC time>.h5`` (never deleted) and the recording is made again.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

from pipelines.core.lock import FileLock, guarded_name, lock_path_for, try_lock

SCRATCH_PREFIX = ".scratch-"
QUARANTINE_DIR = "quarantine"


def shard_lock(shard: Path) -> FileLock:
    """The (not yet taken) lock of shard file ``shard``."""
    return FileLock(lock_path_for(shard), what=f"shard {shard}")


def _owner(p: Path) -> str | None:
    """The file in the shards directory that leftover ``p`` was part of making, or None when ``p``
    is no leftover."""
    n = p.name
    if n.startswith(SCRATCH_PREFIX) and p.is_dir():
        rid, dash, pid = n[len(SCRATCH_PREFIX):].rpartition("-")
        return f"{rid}.h5" if dash and rid and pid.isdigit() else None
    if n.endswith(".lock") or not p.is_file():
        return None
    return guarded_name(n)


def _remove(p: Path) -> None:
    if p.is_dir():
        shutil.rmtree(p, ignore_errors=True)
    else:
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def _leftovers(out_dir: Path) -> dict[str, list[Path]]:
    groups: dict[str, list[Path]] = {}
    try:
        entries = list(Path(out_dir).iterdir())
    except FileNotFoundError:
        return groups
    for p in entries:
        owner = _owner(p)
        if owner:
            groups.setdefault(owner, []).append(p)
    return groups


def clear_leftovers(out_dir: Path, name: str) -> list[str]:
    """Remove the leftovers of ``name`` (a shard or a JSON file of ``out_dir``). The caller holds
    ``name``'s lock. Returns the names removed."""
    paths = _leftovers(out_dir).get(name, [])
    for p in paths:
        _remove(p)
    return sorted(p.name for p in paths)


def sweep_leftovers(out_dir: Path) -> list[str]:
    """Remove every leftover in ``out_dir`` whose file no live run is making (its lock is free),
    and the lock files killed runs left (taking and releasing a free lock removes its file).
    Returns the names removed (lock files not counted)."""
    removed: list[str] = []
    groups = _leftovers(out_dir)
    for p in Path(out_dir).glob(".*.lock"):
        groups.setdefault(p.name[1:-len(".lock")], [])
    for name, paths in sorted(groups.items()):
        lock = try_lock(lock_path_for(Path(out_dir) / name))
        if lock is None:
            continue  # a live run is making it: its scratch and temporary files are in use
        try:
            for p in paths:
                _remove(p)
                removed.append(p.name)
        finally:
            lock.release()
    return sorted(removed)


def quarantine(path: Path) -> Path:
    """Move ``path`` to ``<its folder>/quarantine/<stem>.<UTC time>[.<n>]<suffix>``; returns where."""
    path = Path(path)
    qdir = path.parent / QUARANTINE_DIR
    qdir.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    dst = qdir / f"{path.stem}.{stamp}{path.suffix}"
    n = 1
    while dst.exists():
        dst = qdir / f"{path.stem}.{stamp}.{n}{path.suffix}"
        n += 1
    os.replace(path, dst)
    return dst
