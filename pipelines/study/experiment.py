"""`dcat experiment`: the paper's study as one resumable grid of ordinary runs.

A *unit* is one (split, fold, seed): ``id`` (same subjects, time blocks; fold 0) or ``ood`` fold k
of ``folds`` subject groups. The split's seed is the unit's seed, so each seed also draws its own
split (and, out of distribution, its own grouping of subjects into folds: each (fold, seed) is one
paired comparison). In every unit the grid trains:

- ``source`` cells: each source stream pretrained alone (``dcat pretrain``);
- ``baseline`` cells: each target with no transfer (``dcat transfer --method none``: the same split,
  initialisation, data order and budget as the transfers, so the paired difference isolates the
  transfer term);
- ``transfer`` cells: per pair, D-CAT at every lambda with MCMA on and off, the baselines
  (logit KD, feature KD) at ``baseline_lambda``, and the misalignment study: D-CAT at
  ``shift_lambda`` with MCMA on and the ``shift_stream`` shifted by each of ``+-shifts`` seconds.

Every cell is an ordinary run folder (``<out>/runs/<unit>/<cell>``; ``dcat evaluate`` works on it)
plus ``cell.json`` (its settings and its result row), written last and atomically: a cell with a
``cell.json`` is finished and is skipped when the experiment runs again; one whose training was cut
off resumes from its ``last.pt`` (same result as uninterrupted). A cell whose ``cell.json`` holds
other settings is refused (change ``out`` or pass ``overwrite``). Sources are trained once per unit
and reused by every transfer of that unit; a transfer starts when its unit's sources are done.

Cells run ``jobs`` at a time in worker processes (``threads`` torch threads each; 1 by default, so a
cell's numbers do not depend on how many run beside it). A failed cell is reported and skipped with
the cells that need it; the others go on; the exit status says so.

Outputs in ``out``: ``experiment.json`` (the resolved settings), ``results.csv`` (one row per
finished cell: every setting and metric; rewritten after each cell), ``results.md`` and
``plots/*.png`` (:mod:`pipelines.study.report`).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

from pipelines import __version__
from pipelines.core.errors import DcatError
from pipelines.learn.config import EXPERIMENT_TRAIN_KEYS

SPLITS = ("id", "ood")
DEFAULT_METHODS = ("dcat", "logit-kd", "feature-kd")
#: training settings an experiment may set (``[train]`` in the spec); the rest are per cell
TRAIN_KEYS = EXPERIMENT_TRAIN_KEYS


class ExperimentError(DcatError):
    """An experiment spec or grid that cannot run."""


@dataclass
class ExperimentConfig:
    """Settings of ``dcat experiment`` (a SPEC.toml sets the same names; ``[train]`` holds training
    settings passed to every run, e.g. ``epochs``, ``d``, ``lr``).

    data: shards directory, or raw: a raw dataset preprocessed into ``<out>/shards`` (lag estimate
    applied). pairs: ``"video->imu"``, several sources ``"video+audio->imu"``. methods: transfer
    methods besides the no-transfer baseline (always run). lambdas, mcma: D-CAT's grid. splits:
    ``id``, ``ood``. folds: OOD subject folds (default: one per subject, at most 5). seeds.
    shifts: misalignment magnitudes in seconds (each run at + and -) of ``shift_stream`` (default:
    the pair's target), D-CAT at ``shift_lambda`` with MCMA on; empty: no misalignment study.
    baseline_lambda: weight of the logit-/feature-KD term; temperature: logit KD's T.
    jobs: cells at once (0: one per CPU core / threads, 1 on a GPU); threads per cell; device.
    """

    out: str = "experiments/exp"
    data: str | None = None
    raw: str | None = None
    pairs: list = field(default_factory=lambda: ["video->imu"])
    methods: list = field(default_factory=lambda: list(DEFAULT_METHODS))
    lambdas: list = field(default_factory=lambda: [0.1, 1.0, 10.0])
    mcma: list = field(default_factory=lambda: [True, False])
    splits: list = field(default_factory=lambda: list(SPLITS))
    folds: int | None = None
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    shifts: list = field(default_factory=lambda: [0.5, 1.0])
    shift_stream: str | None = None
    shift_lambda: float = 1.0
    baseline_lambda: float = 1.0
    temperature: float = 4.0
    train: dict = field(default_factory=dict)
    jobs: int = 0
    threads: int = 1
    device: str = "cpu"
    title: str | None = None
    overwrite: bool = False

    @classmethod
    def from_dict(cls, d: dict, where: str = "spec"):
        names = {f.name for f in fields(cls)}
        unknown = sorted(k for k in d if k not in names)
        if unknown:
            raise ExperimentError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


def quick_config(**over) -> ExperimentConfig:
    """``dcat experiment --quick``: a reduced grid on the bundled sample data (see README)."""
    base = dict(out="experiments/quick", raw="sample_data", pairs=["video->imu"], methods=list(DEFAULT_METHODS),
                lambdas=[0.1, 1.0, 10.0], mcma=[True, False], splits=["id", "ood"], folds=5, seeds=[0, 1],
                shifts=[0.5, 1.0], train={"epochs": 12, "video_frames": 4},
                title="dcat experiment --quick (sample_data)")
    base.update(over)
    return ExperimentConfig(**base)


def load_spec(path: str | Path) -> dict:
    """Read a SPEC.toml into a dict of :class:`ExperimentConfig` fields."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    p = Path(path)
    if not p.is_file():
        raise ExperimentError(f"{p}: no such spec file")
    try:
        d = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ExperimentError(f"{p}: not valid TOML ({e})") from e
    if "experiment" in d and isinstance(d["experiment"], dict):  # an [experiment] table is accepted too
        d = {**{k: v for k, v in d.items() if k != "experiment"}, **d["experiment"]}
    ExperimentConfig.from_dict(d, str(p))  # names checked here, values in check_config
    return d


# ---------------------------------------------------------------------------------------------
# the grid

def parse_pair(p: str) -> tuple[list[str], str]:
    if "->" not in str(p):
        raise ExperimentError(f"pair '{p}': write SOURCE->TARGET, e.g. video->imu (several sources: video+audio->imu)")
    a, b = str(p).split("->", 1)
    srcs = [s.strip() for s in a.split("+") if s.strip()]
    tgt = b.strip()
    if not srcs or not tgt or tgt in srcs:
        raise ExperimentError(f"pair '{p}': needs at least one source and a different target")
    return srcs, tgt


def _num(x: float) -> str:
    return f"{x:g}"


def check_config(cfg: ExperimentConfig) -> None:
    from pipelines.learn.config import METHODS

    if not (cfg.data or cfg.raw) or (cfg.data and cfg.raw):
        raise ExperimentError("give the data: either data = SHARDS_DIR or raw = RAW_DIR (preprocessed into <out>/shards)")
    if not cfg.pairs:
        raise ExperimentError("pairs: name at least one SOURCE->TARGET pair, e.g. video->imu")
    for p in cfg.pairs:
        parse_pair(p)
    bad = [m for m in cfg.methods if m not in METHODS or m == "none"]
    if bad:
        raise ExperimentError(f"methods {bad}: choose among dcat, logit-kd, feature-kd (the no-transfer baseline always runs)")
    bad = [s for s in cfg.splits if s not in SPLITS]
    if bad or not cfg.splits:
        raise ExperimentError(f"splits {cfg.splits}: use id and/or ood")
    if not cfg.seeds:
        raise ExperimentError("seeds: give at least one seed")
    for name, vals in (("lambdas", cfg.lambdas), ("shifts", cfg.shifts)):
        for v in vals:
            if not isinstance(v, (int, float)) or not math.isfinite(v) or (name == "lambdas" and v < 0):
                raise ExperimentError(f"{name}: {v!r} is not a {'non-negative ' if name == 'lambdas' else ''}number")
    if "dcat" in cfg.methods and (not cfg.lambdas or not cfg.mcma):
        raise ExperimentError("D-CAT needs at least one lambda and one MCMA setting (mcma = [true, false])")
    unknown = sorted(k for k in cfg.train if k not in TRAIN_KEYS)
    if unknown:
        raise ExperimentError(f"[train] {', '.join(unknown)}: not a training setting an experiment can set "
                              f"(known: {', '.join(TRAIN_KEYS)})")
    if cfg.threads < 1:
        raise ExperimentError("threads: at least 1 per cell")


def _units(cfg: ExperimentConfig, n_subjects: int) -> list[dict]:
    folds = cfg.folds if cfg.folds is not None else min(n_subjects, 5)
    if "ood" in cfg.splits and not 2 <= folds <= n_subjects:
        raise ExperimentError(f"folds {folds}: out of distribution needs 2..{n_subjects} subject folds "
                              f"({n_subjects} subjects in the data)")
    units = []
    for split in cfg.splits:
        for fold in ([0] if split == "id" else range(folds)):
            for seed in cfg.seeds:
                name = f"id-s{seed}" if split == "id" else f"ood-f{fold}of{folds}-s{seed}"
                units.append({"unit": name, "split": split, "fold": int(fold), "folds": int(folds) if split == "ood" else None,
                              "seed": int(seed)})
    return units


def build_cells(cfg: ExperimentConfig, n_subjects: int) -> list[dict]:
    """Every cell of the grid, sources first; each ``{"cell", "role", "unit", "deps", "settings"}``."""
    check_config(cfg)
    train = dict(cfg.train)
    norm = train.pop("norm", None)
    cells = []
    pairs = [parse_pair(p) for p in cfg.pairs]
    sources = sorted({s for srcs, _ in pairs for s in srcs}, key=lambda s: [x for ss, _ in pairs for x in ss].index(s))
    targets = list(dict.fromkeys(t for _, t in pairs))
    for u in _units(cfg, n_subjects):
        base = {"split": u["split"], "fold": u["fold"], "folds": u["folds"], "seed": u["seed"], **train}
        src_cell = {}
        for s in sources:
            name = f"{u['unit']}/src-{s}"
            src_cell[s] = name
            cells.append({"cell": name, "role": "source", "unit": u, "deps": [],
                          "settings": {"stage": "pretrain", "modality": s, **base}})
        tx = {"stage": "transfer", **base, **({"norm": norm} if norm else {})}
        for t in targets:
            srcs = next(ss for ss, tt in pairs if tt == t)
            cells.append({"cell": f"{u['unit']}/base-{t}", "role": "baseline", "unit": u,
                          "deps": [src_cell[s] for s in srcs],
                          "settings": {**tx, "src": srcs, "tgt": t, "method": "none", "lam": 0.0, "mcma": False}})
        for srcs, t in pairs:
            deps = [src_cell[s] for s in srcs]
            tag = f"{'+'.join(srcs)}-to-{t}"
            if "dcat" in cfg.methods:
                for lam in cfg.lambdas:
                    for m in cfg.mcma:
                        cells.append({"cell": f"{u['unit']}/{tag}-dcat-lam{_num(lam)}-{'mcma' if m else 'nomcma'}",
                                      "role": "transfer", "unit": u, "deps": deps,
                                      "settings": {**tx, "src": srcs, "tgt": t, "method": "dcat", "lam": float(lam),
                                                   "mcma": bool(m)}})
            for method in cfg.methods:
                if method == "dcat":
                    continue
                extra = {"temperature": float(cfg.temperature)} if method == "logit-kd" else {}
                cells.append({"cell": f"{u['unit']}/{tag}-{method}-lam{_num(cfg.baseline_lambda)}", "role": "transfer",
                              "unit": u, "deps": deps,
                              "settings": {**tx, "src": srcs, "tgt": t, "method": method,
                                           "lam": float(cfg.baseline_lambda), "mcma": False, **extra}})
            if cfg.shifts and len(srcs) == 1:
                stream = cfg.shift_stream or t
                if stream not in (t, *srcs):
                    raise ExperimentError(f"shift_stream {stream}: not a stream of the pair {'+'.join(srcs)}->{t}")
                mags = sorted({abs(float(x)) for x in cfg.shifts if float(x) != 0.0})
                for x in [-m for m in reversed(mags)] + mags:
                    cells.append({"cell": f"{u['unit']}/{tag}-dcat-lam{_num(cfg.shift_lambda)}-mcma-shift-{stream}{x:+g}",
                                  "role": "transfer", "unit": u, "deps": deps,
                                  "settings": {**tx, "src": srcs, "tgt": t, "method": "dcat",
                                               "lam": float(cfg.shift_lambda), "mcma": True,
                                               "misalign": f"{stream}={x:g}", "shift_stream": stream,
                                               "shift_s": float(x)}})
    names = [c["cell"] for c in cells]
    if len(set(names)) != len(names):  # pragma: no cover - a bug
        raise ExperimentError("two cells share a name")
    return cells


# ---------------------------------------------------------------------------------------------
# one cell (runs in a worker process)

def _eval_f1(run_dir: Path, part: str, threads: int, device: str, write: bool = False) -> dict:
    from pipelines.learn.evaluate import evaluate_run

    try:
        return evaluate_run(run_dir, split=part, threads=threads, device=device, write=write)
    except DcatError:
        return {"macro_f1": None, "accuracy": None, "n_windows": 0}


def run_cell(cell: dict, data: str, run_dir: str, src_dirs: dict, threads: int, device: str) -> dict:
    """Train and evaluate one cell; write ``cell.json``; return its result row (without the
    source's F1, which the caller fills in)."""
    from pipelines.core.io import atomic_write_text
    from pipelines.learn.config import TrainConfig, TransferConfig
    from pipelines.learn.pretrain import pretrain
    from pipelines.learn.transfer import transfer

    out = Path(run_dir)
    st = dict(cell["settings"])
    resume = (out / "last.pt").is_file() and (out / "config.json").is_file()
    common = dict(data=data, out=str(out), threads=threads, device=device, resume=resume, overwrite=not resume)
    split = {"split": st["split"], "seed": st["seed"], "split_seed": st["seed"]}
    if st["split"] == "ood":
        split.update(fold=st["fold"], folds=st["folds"])
    train = {k: v for k, v in st.items() if k in TRAIN_KEYS and k != "norm"}
    split_keys = ("val_frac", "test_frac", "block_s", "guard_s")
    split.update({k: train.pop(k) for k in split_keys if k in train})
    t0 = time.perf_counter()
    if st["stage"] == "pretrain":
        info = pretrain(TrainConfig(modality=st["modality"], **split, **train, **common))
    else:
        kw = dict(src=",".join(st["src"]), tgt=st["tgt"], method=st["method"], lam=st["lam"], mcma=st["mcma"],
                  src_ckpt=",".join(str(Path(src_dirs[s]) / "best.pt") for s in st["src"]),
                  misalign=st.get("misalign"))
        if "temperature" in st:
            kw["temperature"] = st["temperature"]
        if st.get("norm"):
            kw["norm"] = st["norm"]
        # the split is the sources' (each source pretrained on this unit's split)
        info = transfer(TransferConfig(**kw, seed=st["seed"], **train, **common))  # no split options: the sources
    test = _eval_f1(out, "test", threads, device, write=True)
    val = _eval_f1(out, "val", threads, device)
    tr = _eval_f1(out, "train", threads, device)
    gap = (tr["macro_f1"] - val["macro_f1"]) if (tr["macro_f1"] is not None and val["macro_f1"] is not None) else None
    u = cell["unit"]
    test_subjects = ";".join(test.get("subjects", [])) if st["split"] == "ood" else ""
    row = {"cell": cell["cell"], "role": cell["role"], "split": st["split"], "fold": u["fold"],
           "test_subjects": test_subjects, "seed": st["seed"],
           "tgt": st.get("modality") or st["tgt"], "src": "+".join(st.get("src", [])) if st["stage"] == "transfer" else "",
           "method": "pretrain" if st["stage"] == "pretrain" else st["method"],
           "lam": st["lam"] if st["stage"] == "transfer" and st["method"] != "none" else None,
           "mcma": st["mcma"] if st["stage"] == "transfer" and st["method"] != "none" else None,
           "temperature": st.get("temperature"), "shift_stream": st.get("shift_stream", ""),
           "shift_s": float(st.get("shift_s", 0.0)),
           "test_macro_f1": test["macro_f1"], "test_acc": test.get("accuracy"), "val_macro_f1": val["macro_f1"],
           "train_macro_f1": tr["macro_f1"], "gap": gap, "src_test_macro_f1": None,
           "epochs_run": info.get("epochs_run"), "best_epoch": info.get("best_epoch"),
           "seconds": time.perf_counter() - t0, "run_dir": str(out), "n_test": test.get("n_windows")}
    atomic_write_text(out / "cell.json", json.dumps({"tool_version": __version__, "cell": cell["cell"],
                                                    "settings": st, "row": row}, indent=1))
    return row


def _run_cell_entry(args):
    """Process-pool entry: returns ("ok", row) or ("error", message) (never raises)."""
    cell, data, run_dir, src_dirs, threads, device = args
    try:
        return "ok", run_cell(cell, data, run_dir, src_dirs, threads, device)
    except DcatError as e:
        return "error", str(e)
    except Exception as e:  # a bug, or an out-of-memory: report it and go on with the other cells
        return "error", f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"


# ---------------------------------------------------------------------------------------------
# the driver

def _cell_state(cell: dict, run_dir: Path, overwrite: bool) -> tuple[str, dict | None]:
    """("done", row) for a finished cell with the same settings, ("todo", None) otherwise."""
    p = run_dir / "cell.json"
    if not p.is_file():
        return "todo", None
    try:
        saved = json.loads(p.read_text())
    except json.JSONDecodeError:
        return "todo", None
    if saved.get("settings") != json.loads(json.dumps(cell["settings"])):
        if overwrite:
            return "todo", None
        diff = sorted(k for k in set(saved.get("settings", {})) | set(cell["settings"])
                      if saved.get("settings", {}).get(k) != json.loads(json.dumps(cell["settings"])).get(k))
        raise ExperimentError(f"{p}: this cell was run with other settings ({', '.join(diff)} differ); "
                              "use another --out, or --overwrite to retrain such cells")
    return "done", saved["row"]


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


def _default_jobs(cfg: ExperimentConfig) -> int:
    if cfg.jobs and cfg.jobs > 0:
        return int(cfg.jobs)
    if cfg.device != "cpu":
        import torch

        if torch.cuda.is_available():  # one GPU: the cells take turns on it
            return 1
    return max(1, (os.cpu_count() or 1) // max(1, cfg.threads))


def fill_source_f1(rows: list[dict]) -> list[dict]:
    """Set each transfer row's ``src_test_macro_f1`` from its unit's source row (one source only)."""
    src = {(r["cell"].split("/")[0], r["tgt"]): r["test_macro_f1"] for r in rows if r["role"] == "source"}
    for r in rows:
        if r["role"] == "transfer" and r["src"] and "+" not in r["src"]:
            r["src_test_macro_f1"] = src.get((r["cell"].split("/")[0], r["src"]))
    return rows


def run_experiment(cfg: ExperimentConfig, log: Callable[[str], None] = lambda s: None,
                   on_cell: Callable[[dict, str, dict | None, int, int], None] | None = None,
                   dry_run: bool = False) -> dict:
    """Run (or resume) the grid; returns ``{"out", "cells", "ran", "skipped", "failed", "rows",
    "report", "seconds"}``. ``on_cell(cell, status, row, done, total)`` is called as cells finish
    (status ``ok``, ``skipped`` (finished before), ``failed``, ``blocked``)."""
    t0 = time.perf_counter()
    check_config(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    pre_summary = None
    if cfg.raw:
        data = out / "shards"
        if not dry_run:
            from pipelines.ingest.preprocess import PreprocessConfig, preprocess
            from pipelines.ingest.raw import discover

            log(f"preprocess {cfg.raw} -> {data} (--align estimate)")
            pre = preprocess(discover([cfg.raw]), data, PreprocessConfig(align="estimate"))
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
    cells = build_cells(cfg, n_subj)
    run_dirs = {c["cell"]: out / "runs" / c["cell"] for c in cells}
    total = len(cells)
    if dry_run:
        return {"out": str(out), "cells": cells, "total": total, "seconds": time.perf_counter() - t0}
    from pipelines.core.io import atomic_write_text

    atomic_write_text(out / "experiment.json", json.dumps({"tool_version": __version__, "config": cfg.to_dict(),
                                                          "data": str(data), "n_cells": total,
                                                          "preprocess": pre_summary}, indent=1))
    rows: dict[str, dict] = {}
    status: dict[str, str] = {}
    for c in cells:
        st, row = _cell_state(c, run_dirs[c["cell"]], cfg.overwrite)
        if st == "done":
            rows[c["cell"]], status[c["cell"]] = row, "skipped"
    done = len(rows)
    for c in cells:
        if c["cell"] in rows and on_cell:
            on_cell(c, "skipped", rows[c["cell"]], done, total)
    if done:
        log(f"{done} of {total} cells finished before: skipped")
    jobs = min(_default_jobs(cfg), max(1, total - done))
    errors: dict[str, str] = {}

    def write_rows():
        from pipelines.study.report import write_csv

        ordered = fill_source_f1([dict(rows[c["cell"]]) for c in cells if c["cell"] in rows])
        write_csv(ordered, out / "results.csv")
        return ordered

    def args_of(c):
        srcd = {s: str(run_dirs[f"{c['unit']['unit']}/src-{s}"]) for s in c["settings"].get("src", [])}
        return (c, str(data), str(run_dirs[c["cell"]]), srcd, cfg.threads, cfg.device)

    def finish(c, kind, payload):
        nonlocal done
        done += 1
        if kind == "ok":
            rows[c["cell"]], status[c["cell"]] = payload, "ok"
            write_rows()
            if on_cell:
                on_cell(c, "ok", payload, done, total)
        else:
            status[c["cell"]] = "failed"
            errors[c["cell"]] = payload
            log(f"cell {c['cell']} failed: {payload.splitlines()[0] if payload else ''}")
            if on_cell:
                on_cell(c, "failed", {"error": payload}, done, total)

    pending = [c for c in cells if c["cell"] not in status]
    log(f"{len(pending)} cells to run, {jobs} at a time ({cfg.threads} thread{'s' if cfg.threads > 1 else ''} each), "
        f"data {data}")

    def ready(c):
        return all(status.get(d) in ("ok", "skipped") for d in c["deps"])

    def blocked(c):
        return any(status.get(d) in ("failed", "blocked") for d in c["deps"])

    if jobs == 1:
        for c in pending:
            if blocked(c):
                status[c["cell"]] = "blocked"
                done += 1
                if on_cell:
                    on_cell(c, "blocked", None, done, total)
                continue
            finish(c, *_run_cell_entry(args_of(c)))
    else:
        import concurrent.futures as cf
        import multiprocessing as mp

        todo = list(pending)
        running: dict = {}
        with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
            try:
                while todo or running:
                    for c in list(todo):
                        if blocked(c):
                            todo.remove(c)
                            status[c["cell"]] = "blocked"
                            done += 1
                            if on_cell:
                                on_cell(c, "blocked", None, done, total)
                        elif ready(c) and len(running) < jobs:
                            todo.remove(c)
                            running[pool.submit(_run_cell_entry, args_of(c))] = c
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
                        finish(c, kind, payload)
            except BaseException:
                for f in running:
                    f.cancel()
                raise
    ordered = write_rows() if rows else []
    report = None
    if ordered:
        from pipelines.study.report import write_report

        notes = _notes(cfg, data, errors, status)
        report = write_report(ordered, out, title=cfg.title or f"dcat experiment ({out})", notes=notes)
    n_blocked = sum(1 for v in status.values() if v == "blocked")
    if errors:
        atomic_write_text(out / "failed.json", json.dumps(errors, indent=1))
    elif (out / "failed.json").exists():
        (out / "failed.json").unlink()
    return {"out": str(out), "total": total, "ran": sum(1 for v in status.values() if v == "ok"),
            "skipped": sum(1 for v in status.values() if v == "skipped"), "failed": errors, "blocked": n_blocked,
            "rows": ordered, "report": {k: ([str(x) for x in v] if isinstance(v, list) else str(v)) for k, v in (report or {}).items()},
            "seconds": time.perf_counter() - t0}


def _notes(cfg: ExperimentConfig, data: Path, errors: dict, status: dict) -> str:
    t = {k: v for k, v in cfg.train.items()}
    lines = [f"Data: `{data}`; pairs {', '.join(cfg.pairs)}; seeds {', '.join(map(str, cfg.seeds))}; "
             f"splits {', '.join(cfg.splits)}" + (f" ({cfg.folds} OOD folds)" if cfg.folds and "ood" in cfg.splits else "")
             + (f"; training {', '.join(f'{k} {v}' for k, v in sorted(t.items()))}" if t else "") + "."]
    if errors:
        lines.append(f"{len(errors)} cell(s) failed and are missing from the tables: {', '.join(sorted(errors))} "
                     f"(messages in failed.json).")
    nb = sorted(k for k, v in status.items() if v == "blocked")
    if nb:
        lines.append(f"{len(nb)} cell(s) not run because a cell they need failed.")
    return "\n".join(lines)


__all__ = ["ExperimentConfig", "ExperimentError", "run_experiment", "build_cells", "load_spec", "quick_config",
           "run_cell", "parse_pair", "check_config", "fill_source_f1"]
