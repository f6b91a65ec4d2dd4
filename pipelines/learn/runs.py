"""Run folders (``runs/<name>/``): creating, resuming or replacing one, its ``config.json``, its
``metrics.jsonl``, and finding runs by stage and stream.

A run folder holds ``config.json`` (tool version, the stage's arguments, the data it read),
``split.json``, ``metrics.jsonl`` (one JSON object per epoch), ``best.pt`` (the epoch the
validation selection rule keeps: :mod:`pipelines.learn.selection`), ``last.pt`` (everything needed to resume), for a source used with MCMA
``oof-correct.npz`` (:mod:`pipelines.learn.crossfit`) and, after ``dcat evaluate``, ``report.json``
and ``confusion-<part>.png`` (schemas/run.md).
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path


from pipelines import __version__
from pipelines.core.errors import RunDirError
from pipelines.core.io import atomic_write_text, to_json

RUN_FILES = ("config.json", "split.json", "metrics.jsonl", "best.pt", "last.pt", "report.json", "oof-correct.npz")


def prepare_run_dir(out: Path, resume: bool, overwrite: bool) -> bool:
    """Create ``out``; returns True when resuming from ``out/last.pt``."""
    out = Path(out)
    if resume:
        if (out / "last.pt").is_file():
            return True
        if out.exists() and any(out.iterdir()):
            raise RunDirError(f"{out}: --resume, but there is no last.pt to resume from; "
                              "start again with --overwrite")
    elif out.exists() and any(out.iterdir()):
        if not overwrite:
            raise RunDirError(f"{out}: the run folder exists; continue it with --resume, replace it with "
                              "--overwrite, or choose another --out")
        ours = [p for p in out.iterdir() if p.name in RUN_FILES or p.name.startswith(".")
                or (p.name.startswith("confusion-") and p.suffix == ".png")]
        others = sorted(p.name for p in out.iterdir() if p not in ours)
        if others:
            raise RunDirError(f"{out}: holds files dcat did not write ({', '.join(others[:5])}); refusing to "
                              "overwrite it: choose another --out")
        for p in ours:
            if p.is_file():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)
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
