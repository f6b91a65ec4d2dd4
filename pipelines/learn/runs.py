"""Run folders (``runs/<name>/``): creating, resuming or replacing one, its ``config.json``, its
``metrics.jsonl``, and finding runs by stage and stream.

A run folder holds ``config.json`` (tool version, the stage's arguments, the data it read),
``split.json``, ``metrics.jsonl`` (one JSON object per epoch; each row is written before that
epoch's ``last.pt``, so a kill never loses one: ``--resume`` cuts rows past ``last.pt``), ``best.pt`` (the epoch the
validation selection rule keeps: :mod:`pipelines.learn.selection`), ``last.pt`` (everything needed to resume), for a source used with MCMA
``oof-correct.npz`` (:mod:`pipelines.learn.crossfit`) and, after ``dcat evaluate``, ``report.json``
and ``confusion-<part>.png`` (schemas/run.md).

One run at a time trains in a folder: ``.dcat.lock`` (:func:`lock_run_dir`), taken when the folder
is prepared and released when the epoch loop ends; a second run into it fails at once.
"""

from __future__ import annotations

import atexit
import json
import sys
from datetime import datetime, timezone
from pathlib import Path


from pipelines import __version__
from pipelines.core.errors import RunDirError
from pipelines.core.io import atomic_write_text, to_json
from pipelines.core.lock import FileLock, LockBusy

RUN_FILES = ("config.json", "split.json", "metrics.jsonl", "best.pt", "last.pt", "report.json", "oof-correct.npz")


#: the run folder's lock file (:func:`lock_run_dir`)
RUN_LOCK = ".dcat.lock"
_HELD: dict[str, FileLock] = {}  # run folders this process trains in (one at a time)


def lock_run_dir(out: Path) -> None:
    """Take ``out``'s lock (``out/.dcat.lock``), held until this process starts another run or
    ends (the kernel releases it then, also after kill -9). Another process training into ``out``
    makes this fail at once with RunDirError naming the folder and that process; in this process
    it is taken once (a run resumed in the same process keeps it)."""
    out = Path(out)
    key = str(out.resolve())
    if key in _HELD:
        return
    release_run_dirs()
    out.mkdir(parents=True, exist_ok=True)
    atexit.unregister(release_run_dirs)
    atexit.register(release_run_dirs)  # at a normal exit the lock file goes too (once, however many runs)
    try:
        _HELD[key] = FileLock(out / RUN_LOCK, what=f"run folder {out}").acquire(blocking=False)
    except LockBusy as e:
        raise RunDirError(f"{out}: another dcat run is training into this run folder ({e.holder_text}); "
                          "wait for it to finish, or choose another --out") from None


def release_run_dirs() -> None:
    """Release the run-folder locks this process holds."""
    while _HELD:
        _HELD.popitem()[1].release()


def release_run_dir(out: Path) -> None:
    """Release ``out``'s lock if this process holds it (the run in it is over)."""
    lock = _HELD.pop(str(Path(out).resolve()), None)
    if lock is not None:
        lock.release()


def prepare_run_dir(out: Path, resume: bool, overwrite: bool) -> bool:
    """Lock ``out`` (:func:`lock_run_dir`) and create it; returns True when resuming from
    ``out/last.pt``."""
    out = Path(out)
    lock_run_dir(out)
    try:
        return _prepare(out, resume, overwrite)
    except BaseException:
        release_run_dirs()
        raise


def _prepare(out: Path, resume: bool, overwrite: bool) -> bool:
    content = [p for p in out.iterdir() if p.name != RUN_LOCK]
    if resume:
        if (out / "last.pt").is_file():
            return True
        if content:
            raise RunDirError(f"{out}: --resume, but there is no last.pt to resume from; "
                              "start again with --overwrite")
    elif content:
        if not overwrite:
            raise RunDirError(f"{out}: the run folder exists; continue it with --resume, replace it with "
                              "--overwrite, or choose another --out")
        ours = [p for p in content if p.name in RUN_FILES or p.name.startswith(".")
                or (p.name.startswith("confusion-") and p.suffix == ".png")]
        others = sorted(p.name for p in content if p not in ours)
        if others:
            raise RunDirError(f"{out}: holds files dcat did not write ({', '.join(others[:5])}); refusing to "
                              "overwrite it: choose another --out")
        for p in ours:
            if p.is_file():
                p.unlink()
    return False


def write_config(out: Path, stage: str, cfg, extra: dict) -> dict:
    rec = {"stage": stage, "tool_version": __version__, "created_utc": datetime.now(timezone.utc).isoformat(),
           "argv": list(sys.argv), "args": cfg.to_dict(), "torch_version": _torch_version(), **extra}
    atomic_write_text(Path(out) / "config.json", to_json(rec, indent=1))
    return rec


def read_config(run_dir: Path) -> dict:
    p = Path(run_dir) / "config.json"
    if not p.is_file():
        raise RunDirError(f"{run_dir}: not a dcat run folder (no config.json); pass a folder under runs/ "
                          "made by `dcat pretrain` or `dcat transfer`")
    return json.loads(p.read_text())


def truncate_metrics(path: Path, last_epoch: int) -> None:
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("epoch", 0) <= last_epoch:
                keep.append(line)
        except json.JSONDecodeError:
            break
    atomic_write_text(path, "".join(k + "\n" for k in keep))


def data_record(shards) -> dict:
    """What a run records of the shards it read (a :class:`pipelines.learn.data.ShardSet`)."""
    m = shards.manifest
    return {"path": str(shards.data_dir), "tool_version": m.get("tool_version"), "n_windows": m.get("n_windows"),
            "classes": list(shards.classes), "settings": m.get("settings", {}),
            "recordings": len(shards.recordings)}


def find_runs(runs_dir: Path, stage: str | None = None, stream: str | None = None) -> list[Path]:
    """Run folders under ``runs_dir`` with a best.pt, optionally of one stage and stream."""
    out = []
    for p in sorted(Path(runs_dir).glob("*/config.json")):
        try:
            c = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if stage and c.get("stage") != stage:
            continue
        a = c.get("args", {})
        s = a.get("modality") if c.get("stage") == "pretrain" else a.get("tgt")
        if stream and s != stream:
            continue
        if (p.parent / "best.pt").is_file():
            out.append(p.parent)
    return out


def _torch_version() -> str:
    import torch

    return torch.__version__
