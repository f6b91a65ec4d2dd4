"""`dcat experiment`: the paper's study as one resumable grid of ordinary runs.

A *unit* is one (split, fold, seed): ``id`` fold k of ``id_folds`` time-block folds or ``ood``
fold k of ``folds`` subject groups. Every split is drawn with the grid's ``split_seed``, so the
seeds of a fold train and test on the same windows: a fold is one test set (the unit of
replication of the report), its seeds repeated trainings on it. In every unit the grid trains:

- each stream alone, once (``dcat pretrain``): a target's run is its uni-modal ``baseline`` (and the
  source of a transfer from that stream), a stream that is only a source is a ``source`` cell;
  a source read by an MCMA transfer also gets its out-of-fold correctness here;
- the ``null``: each target's baseline again with seed + 1000 on the same split, so the report shows
  how far two baselines differ with no transfer at all;
- the ``reference``: the classical model (``features-rf``: window statistics + a random forest) on
  each target, when ``methods`` names it;
- ``transfer`` cells: per pair, D-CAT at every lambda with MCMA on and off, the baselines
  (logit KD, feature KD) at ``baseline_lambda``, and the misalignment study: D-CAT at
  ``shift_lambda`` with MCMA on and the ``shift_stream`` shifted by each of ``+-shifts`` seconds.

Every cell is an ordinary run folder (``<out>/runs/<unit>/<cell>``; ``dcat evaluate`` works on it)
plus ``cell.json`` (its settings and its result row), written last and atomically: a cell with a
``cell.json`` is finished and is skipped when the experiment runs again; one whose training was cut
off resumes from its ``last.pt`` (same result as uninterrupted). A cell whose ``cell.json`` holds
other settings is refused (change ``out`` or pass ``overwrite``). Each stream is trained once per unit
and reused by every transfer of that unit; a transfer starts when its unit's sources are done.

Cells run ``jobs`` at a time in worker processes (``threads`` torch threads each; 1 by default, so a
cell's numbers do not depend on how many run beside it); with one job they run in this process, in
the grid's order. A failed cell is reported and skipped with the cells that need it; the others go
on; the exit status says so.

Outputs in ``out``: ``experiment.json`` (the resolved settings), ``results.csv`` (one row per
finished cell: every setting and metric; rewritten after each cell), ``results.md`` and
``plots/*.png`` (:mod:`pipelines.study.report`).

This module is the driver (data, resume, scheduling, report); the settings are
:mod:`pipelines.study.spec`, the cells :mod:`pipelines.study.grid`, one cell's run
:mod:`pipelines.study.cells`. Their public names are exported here too.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import time
import traceback
from pathlib import Path
from typing import Callable

from pipelines import __version__
from pipelines.core.errors import DcatError
from pipelines.core.io import atomic_write_text, to_json
from pipelines.study.cells import cell_state, fill_source_f1, run_cell
from pipelines.study.grid import build_cells, oof_folds, uses_mcma
from pipelines.study.spec import (DEFAULT_METHODS, NULL_SEED_OFFSET, SPLITS, TRAIN_KEYS, ExperimentConfig, ExperimentError,
                                  check_config, load_spec, merge_config, parse_options, parse_pair, quick_config)

#: ``on_cell(cell, status, row, done, total)``: called as each cell finishes (see ``run_experiment``)
OnCell = Callable[[dict, str, "dict | None", int, int], None]


# ---------------------------------------------------------------------------------------------
# running cells: in this process (one job) or in a pool of worker processes

def _run_cell_entry(args):
    """Process-pool entry: returns ("ok", row) or ("error", message) (never raises)."""
    cell, data, run_dir, src_dirs, threads, device = args
    try:  # run_cell is looked up in this module when called, so a caller may substitute it
        return "ok", run_cell(cell, data, run_dir, src_dirs, threads, device)
    except DcatError as e:
        return "error", str(e)
    except Exception as e:  # a bug, or an out-of-memory: report it and go on with the other cells
        return "error", f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"


class _InlineExecutor:
    """The executor of one job: ``submit`` runs the call here and now and returns its finished future."""

    def __enter__(self) -> "_InlineExecutor":
        return self

    def __exit__(self, *exc) -> bool:
        return False

    def submit(self, fn, *args) -> cf.Future:
        f: cf.Future = cf.Future()
        f.set_result(fn(*args))
        return f


def _executor(jobs: int):
    """Where cells run: inline for one job, else ``jobs`` worker processes (spawned: no torch state
    is inherited)."""
    if jobs == 1:
        return _InlineExecutor()
    import multiprocessing as mp

    return cf.ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"))


class _GridRun:
    """One run of the grid: each cell's status (``skipped``, ``ok``, ``failed``, ``blocked``) and
    row, the failures, the progress reported to ``on_cell``, and the scheduling of the cells."""

    def __init__(self, cfg: ExperimentConfig, cells: list[dict], out: Path, data: Path,
                 log: Callable[[str], None], on_cell: OnCell | None):
        self.cfg, self.cells, self.out, self.data, self.log, self.on_cell = cfg, cells, out, data, log, on_cell
        self.run_dirs = {c["cell"]: out / "runs" / c["cell"] for c in cells}
        self.rows: dict[str, dict] = {}
        self.status: dict[str, str] = {}
        self.errors: dict[str, str] = {}
        self.done = 0
        self.total = len(cells)

    def _report(self, c: dict, status: str, row: dict | None) -> None:
        if self.on_cell:
            self.on_cell(c, status, row, self.done, self.total)

    def skip_finished(self) -> None:
        """Take the rows of the cells finished before (same settings); refuse ones with other settings."""
        for c in self.cells:
            st, row = cell_state(c, self.run_dirs[c["cell"]], self.cfg.overwrite)
            if st == "done":
                self.rows[c["cell"]], self.status[c["cell"]] = row, "skipped"
        self.done = len(self.rows)
        for c in self.cells:
            if c["cell"] in self.rows:
                self._report(c, "skipped", self.rows[c["cell"]])
        if self.done:
            self.log(f"{self.done} of {self.total} cells finished before: skipped")

    def write_rows(self) -> list[dict]:
        """Write ``results.csv`` (the finished cells in grid order) and return its rows."""
        from pipelines.study.report import annotate, write_csv

        ordered = annotate(fill_source_f1([dict(self.rows[c["cell"]]) for c in self.cells if c["cell"] in self.rows]))
        write_csv(ordered, self.out / "results.csv")
        return ordered

    def _args(self, c: dict) -> tuple:
        srcd = {s: str(self.run_dirs[name]) for s, name in c.get("sources", {}).items()}
        return (c, str(self.data), str(self.run_dirs[c["cell"]]), srcd, self.cfg.threads, self.cfg.device)

    def _ready(self, c: dict) -> bool:
        return all(self.status.get(d) in ("ok", "skipped") for d in c["deps"])

    def _blocked(self, c: dict) -> bool:
        return any(self.status.get(d) in ("failed", "blocked") for d in c["deps"])

    def _block(self, c: dict) -> None:
        self.status[c["cell"]] = "blocked"
        self.done += 1
        self._report(c, "blocked", None)

    def _finish(self, c: dict, kind: str, payload) -> None:
        self.done += 1
        if kind == "ok":
            self.rows[c["cell"]], self.status[c["cell"]] = payload, "ok"
            self.write_rows()
            self._report(c, "ok", payload)
        else:
            self.status[c["cell"]] = "failed"
            self.errors[c["cell"]] = payload
            self.log(f"cell {c['cell']} failed: {payload.splitlines()[0] if payload else ''}")
            self._report(c, "failed", {"error": payload})

    def _start(self, todo: list[dict], running: dict, pool, jobs: int) -> None:
        """Walk the waiting cells in grid order until ``jobs`` are running: a cell whose dependency
        failed is blocked, a cell whose dependencies are done is submitted, any other waits."""
        for c in list(todo):
            if len(running) >= jobs:
                break
            if self._blocked(c):
                todo.remove(c)
                self._block(c)
            elif self._ready(c):
                todo.remove(c)
                running[pool.submit(_run_cell_entry, self._args(c))] = c

    def run(self, jobs: int) -> None:
        """Run every cell not finished before, ``jobs`` at a time, each once its sources are done.
        With one job the cells run here, one after the other, in the grid's order (sources first)."""
        todo = [c for c in self.cells if c["cell"] not in self.status]
        running: dict = {}
        with _executor(jobs) as pool:
            try:
                while todo or running:
                    self._start(todo, running, pool, jobs)
                    if not running:
                        if todo:  # pragma: no cover - every dependency is a cell of the grid
                            raise ExperimentError("cells wait on cells that are not in the grid (bug)")
                        break
                    fin, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                    for f in fin:
                        c = running.pop(f)
                        try:
                            kind, payload = f.result()
                        except Exception as e:  # the worker process died (e.g. killed for memory)
                            kind, payload = "error", f"worker process died: {type(e).__name__}: {e}"
                        self._finish(c, kind, payload)
            except BaseException:
                for f in running:
                    f.cancel()
                raise

    def conclude(self) -> tuple[list[dict], dict | None]:
        """Write the final ``results.csv``, the report and ``failed.json`` (removed when nothing
        failed); returns (rows, the report's paths or None without rows)."""
        ordered = self.write_rows() if self.rows else []
        report = None
        if ordered:
            from pipelines.study.report import write_report

            notes = _notes(self.cfg, self.data, self.errors, self.status)
            report = write_report(ordered, self.out, title=self.cfg.title or f"dcat experiment ({self.out})",
                                  notes=notes)
        if self.errors:
            atomic_write_text(self.out / "failed.json", to_json(self.errors, indent=1))
        elif (self.out / "failed.json").exists():
            (self.out / "failed.json").unlink()
        return ordered, report


# ---------------------------------------------------------------------------------------------
# the driver

def _subjects_in(data: Path, cfg: ExperimentConfig) -> int:
    """The number of subjects in the shards; refuses a pair whose streams the shards lack (before
    any training starts)."""
    from pipelines.shards.format import read_manifest

    m = read_manifest(data)
    have = sorted(m.get("streams", {}))
    for p in cfg.pairs:
        srcs, tgt = parse_pair(p)
        missing = [s for s in (*srcs, tgt) if s not in have]
        if missing:
            raise ExperimentError(f"pair '{p}': stream {', '.join(missing)} is not in {data} (it holds: "
                                  f"{', '.join(have) or 'none'})")
    return len(m.get("windows_per_subject", {}))


def _prepare_data(cfg: ExperimentConfig, out: Path, log: Callable[[str], None],
                  dry_run: bool) -> tuple[Path, dict | None, int]:
    """(the shards, the preprocessing summary or None, the number of subjects): ``raw`` is
    preprocessed into ``<out>/shards`` first (a dry run only counts its subjects)."""
    pre_summary = None
    if cfg.raw:
        data = out / "shards"
        if not dry_run:
            from pipelines.ingest.preprocess import PreprocessConfig, preprocess
            from pipelines.ingest.raw import discover

            log(f"preprocess {cfg.raw} -> {data} (default settings, --align {cfg.align})")
            pre = preprocess(discover([cfg.raw]), data, PreprocessConfig(align=cfg.align))
            pre_summary = {k: pre["summary"][k] for k in ("recordings", "ok", "windows_kept", "windows_dropped")}
            if pre["summary"]["failed"]:
                raise ExperimentError("preprocess failed for: " + "; ".join(pre["summary"]["errors"]))
    else:
        data = Path(cfg.data)
    if dry_run and cfg.raw and not (data / "manifest.json").is_file():
        from pipelines.ingest.raw import discover, load_recording

        n_subj = len({load_recording(r, need_labels=False).subject for r in discover([cfg.raw])})
    else:
        n_subj = _subjects_in(data, cfg)
    return data, pre_summary, n_subj


def _default_jobs(cfg: ExperimentConfig) -> int:
    if cfg.jobs and cfg.jobs > 0:
        return int(cfg.jobs)
    if cfg.device != "cpu":
        import torch

        if torch.cuda.is_available():  # one GPU: the cells take turns on it
            return 1
    return max(1, (os.cpu_count() or 1) // max(1, cfg.threads))


def run_experiment(cfg: ExperimentConfig, log: Callable[[str], None] = lambda s: None,
                   on_cell: OnCell | None = None, dry_run: bool = False) -> dict:
    """Run (or resume) the grid; returns ``{"out", "cells", "ran", "skipped", "failed", "rows",
    "report", "seconds"}``. ``on_cell(cell, status, row, done, total)`` is called as cells finish
    (status ``ok``, ``skipped`` (finished before), ``failed``, ``blocked``)."""
    t0 = time.perf_counter()
    check_config(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    data, pre_summary, n_subj = _prepare_data(cfg, out, log, dry_run)
    cells = build_cells(cfg, n_subj)
    total = len(cells)
    if dry_run:
        return {"out": str(out), "cells": cells, "total": total, "seconds": time.perf_counter() - t0}
    atomic_write_text(out / "experiment.json", to_json({"tool_version": __version__, "config": cfg.to_dict(),
                                                          "data": str(data), "n_cells": total,
                                                          "preprocess": pre_summary}, indent=1))
    run = _GridRun(cfg, cells, out, data, log, on_cell)
    run.skip_finished()
    jobs = min(_default_jobs(cfg), max(1, total - run.done))
    n_pending = sum(1 for c in cells if c["cell"] not in run.status)
    log(f"{n_pending} cells to run, {jobs} at a time ({cfg.threads} thread{'s' if cfg.threads > 1 else ''} each), "
        f"data {data}")
    run.run(jobs)
    ordered, report = run.conclude()
    status = run.status
    return {"out": str(out), "total": total, "ran": sum(1 for v in status.values() if v == "ok"),
            "skipped": sum(1 for v in status.values() if v == "skipped"), "failed": run.errors,
            "blocked": sum(1 for v in status.values() if v == "blocked"), "rows": ordered,
            "report": {k: ([str(x) for x in v] if isinstance(v, list) else str(v)) for k, v in (report or {}).items()},
            "seconds": time.perf_counter() - t0}


def _notes(cfg: ExperimentConfig, data: Path, errors: dict, status: dict) -> str:
    """The notes under the report's title: the data and the grid, the cells that failed or were blocked."""
    t = {k: v for k, v in cfg.train.items()}
    folds = []
    if "id" in cfg.splits:
        folds.append(f"{cfg.id_folds} ID time-block fold{'s' if cfg.id_folds > 1 else ''}")
    if "ood" in cfg.splits:
        folds.append(f"{cfg.folds} OOD subject folds" if cfg.folds else "OOD subject folds: one per subject (at most 5)")
    lines = [f"Data: `{data}`; pairs {', '.join(cfg.pairs)}; splits {', '.join(cfg.splits)} ({'; '.join(folds)}), "
             f"split seed {cfg.split_seed}; training seeds {', '.join(map(str, cfg.seeds))}"
             + (f" (null row: seed + {NULL_SEED_OFFSET})" if cfg.null else "")
             + (f"; training {', '.join(f'{k} {v}' for k, v in sorted(t.items()))}" if t else "") + "."]
    if uses_mcma(cfg):
        lines.append(f"MCMA judges a source correct on a training window by its {oof_folds(cfg)}-fold out-of-fold "
                     "prediction (a copy of the source that never trained on that window).")
    if errors:
        lines.append(f"{len(errors)} cell(s) failed and are missing from the tables: {', '.join(sorted(errors))} "
                     f"(messages in failed.json).")
    nb = sorted(k for k, v in status.items() if v == "blocked")
    if nb:
        lines.append(f"{len(nb)} cell(s) not run because a cell they need failed.")
    return "\n".join(lines)


__all__ = ["DEFAULT_METHODS", "SPLITS", "TRAIN_KEYS", "ExperimentConfig", "ExperimentError", "build_cells",
           "check_config", "fill_source_f1", "load_spec", "merge_config", "parse_options", "parse_pair", "quick_config", "run_cell",
           "run_experiment"]
