"""The main job on a raw dataset (by default the bundled sample_data/), as one function.

preprocess (lags estimated, reliable ones applied) -> a small ``dcat experiment``: in distribution,
``folds`` time-block folds (each one test set) x ``seeds`` training seeds, the video source, the IMU
alone, the IMU alone with a second seed (the null: the noise floor), and the IMU trained with D-CAT
from the frozen video source (trained once per fold and shared by the fold's seeds). The IMU runs see a share ``label_fraction`` of their training windows'
labels and use the other windows, unlabelled, in the D-CAT term only (the video source sees every
training label): the setting where cross-modal transfer pays, labs recording far more synchronized
video + IMU than they annotate. The table: test macro-F1 mean ± SD over folds x seeds and, for the
null and D-CAT, the paired difference to the IMU alone with its 95% interval over the test sets
(:mod:`pipelines.study.report`).

Each run is an ordinary run folder (``dcat evaluate``, ``dcat predict`` work on it), under
``<work>/exp/runs``; ``<work>/exp/results.md`` is the experiment's full report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pipelines.core.errors import DcatError
from pipelines.core.io import atomic_write_text, to_json
from pipelines.core.options import check_options, opt

#: the rows of the demo's table, in order: (summary role, D-CAT with MCMA or None, the row's name)
DEMO_ROWS = (("source", None, "video alone (source)"), ("baseline", None, "IMU alone"),
             ("null", None, "IMU alone, second seed (null)"), ("transfer", None, "IMU with D-CAT"))


@dataclass
class DemoConfig:
    """Settings of ``dcat demo``; each field's help is the command line's."""

    raw: str = opt("sample_data", "raw dataset (default: the bundled sample_data/)", argument=True)
    work: str = opt("demo", "where shards (`<work>/shards`) and the experiment (`<work>/exp`: runs, results.md) go")
    seed: int = opt(0, "first training seed (the demo trains seeds seed .. seed + seeds - 1; the null seed + 1000)",
                    ge=0)
    seeds: int = opt(3, "training seeds per fold")
    folds: int = opt(3, "in-distribution time-block folds: each subject's time blocks in that many groups, each "
                     "one test set")
    epochs: int = opt(40, "most epochs per training run (early stopping on validation macro-F1); with few labels "
                      "the D-CAT term needs them (see README: Controls)", ge=1)
    label_fraction: float = opt(0.05, "share of the IMU's training windows that keep their label; the others are "
                                "used unlabelled in the D-CAT term (1: every label)", gt=0, le=1)
    lam: float = opt(1.0, "D-CAT's lambda (fixed beforehand: the paper's default)", flag="--lambda", ge=0)
    mcma: bool = opt(False, "MCMA (each source window's term counted only where the source is right out of fold; "
                     "costs 3 extra video trainings per fold; `dcat controls` measures what it does)",
                     flag="--mcma/--no-mcma")
    threads: int = opt(1, "CPU threads per training run. 1 (default) gives the same numbers on every run of a "
                       "machine; 0: one per idle core", ge=0)
    jobs: int = opt(0, "training runs at once (0: one per CPU core)", short="-j", ge=0)
    overwrite: bool = opt(False, "re-preprocess and retrain even if `<work>` holds results")

    def __post_init__(self):
        check_options(self, DcatError)  # types and declared ranges
        if self.seeds < 1 or self.folds < 2:
            raise DcatError(f"dcat demo: --seeds {self.seeds} / --folds {self.folds}: at least 1 seed and 2 folds "
                            "(the interval needs 2 test sets or more)")


def _experiment(cfg: DemoConfig, shards: Path):
    from pipelines.study.spec import ExperimentConfig

    return ExperimentConfig(
        data=str(shards), out=str(Path(cfg.work) / "exp"), pairs=["video->imu"], methods=["dcat"], lambdas=[cfg.lam],
        mcma=[bool(cfg.mcma)], splits=["id"], id_folds=cfg.folds, seeds=list(range(cfg.seed, cfg.seed + cfg.seeds)),
        shifts=[], null=True, source_label_fraction=1.0, shared_sources=True, jobs=cfg.jobs,
        threads=max(1, cfg.threads),
        overwrite=cfg.overwrite, title=f"dcat demo ({cfg.raw})",
        train={"epochs": cfg.epochs, "video_frames": 4, "label_fraction": float(cfg.label_fraction), "oof_folds": 3})


def demo_table(summary: list[dict]) -> list[dict]:
    """The demo's rows from the experiment's summary entries (:func:`pipelines.study.report.summary_table`)."""
    rows = []
    for role, _, name in DEMO_ROWS:
        e = next((e for e in summary if e["role"] == role and (role == "source" or e["tgt"] == "imu")), None)
        if e is None:
            continue
        rows.append({"model": name, "f1_mean": e["f1_mean"], "f1_std": e["f1_std"], "n_runs": e["n_runs"],
                     "diff_mean": e["diff_mean"], "diff_lo": e["diff_lo"], "diff_hi": e["diff_hi"],
                     "n_tests": e["n_tests"], "boot_lo": e["boot_lo"], "boot_hi": e["boot_hi"],
                     "keep_rate": e["keep_rate"] if role == "transfer" else None})
    return rows


def _diff_text(r: dict) -> str:
    if r["diff_mean"] is None:
        return "-"
    ci = f" [{r['diff_lo']:+.3f}, {r['diff_hi']:+.3f}]" if r["diff_lo"] is not None else " (1 test set: no interval)"
    return f"{r['diff_mean']:+.3f}{ci}"


def render_table(res: dict) -> str:
    """The demo's table as Markdown (what ``dcat demo`` prints and the README shows)."""
    lines = [f"test macro-F1, in distribution: {res['folds']} time-block folds x seeds "
             f"{', '.join(map(str, res['seeds']))}; the IMU sees {res['label_fraction']:.0%} of its training labels",
             "", "| | macro-F1 (mean ± SD over runs) | difference to IMU alone [95% CI over test sets] | "
             "subject bootstrap [95%] | test sets (runs) |", "|---|---|---|---|---|"]
    for r in res["table"]:
        n = f"{r['n_tests']} ({r['n_runs']})" if r["n_tests"] else f"- ({r['n_runs']})"
        boot = f"[{r['boot_lo']:+.3f}, {r['boot_hi']:+.3f}]" if r.get("boot_lo") is not None else "-"
        lines.append(f"| {r['model']} | {r['f1_mean']:.3f} ± {r['f1_std']:.3f} | {_diff_text(r)} | {boot} | {n} |")
    return "\n".join(lines) + "\n"


def run_demo(cfg: DemoConfig, hooks=None, log: Callable[[str], None] = lambda s: None) -> dict:
    """Run the chain; return ``{"table": rows, "seconds", "out", "preprocess", ...}`` (also ``<work>/demo.json``)."""
    from pipelines.ingest.preprocess import PreprocessConfig, preprocess
    from pipelines.ingest.raw import discover
    from pipelines.study.experiment import run_experiment
    from pipelines.study.report import read_csv, summary_table

    t0 = time.perf_counter()
    work = Path(cfg.work)
    shards = work / "shards"
    log(f"preprocess {cfg.raw} -> {shards} (--align estimate)")
    pre = preprocess(discover([cfg.raw]), shards, PreprocessConfig(align="estimate"), overwrite=cfg.overwrite)
    if pre["summary"]["failed"]:
        raise DcatError("preprocess failed for: " + "; ".join(pre["summary"]["errors"]))
    ecfg = _experiment(cfg, shards)
    log(f"{cfg.folds} time-block folds x {cfg.seeds} seeds: video source, IMU alone, its null (seed + 1000), IMU with "
        f"D-CAT (lambda {cfg.lam:g}, MCMA {'on' if cfg.mcma else 'off'}), {cfg.label_fraction:.0%} of the IMU's "
        f"training windows labelled -> {ecfg.out}")
    res = run_experiment(ecfg, log=lambda s: None)
    if res["failed"]:
        raise DcatError(f"dcat demo: runs failed: {', '.join(sorted(res['failed']))} (see {ecfg.out}/failed.json)")
    table = demo_table(summary_table(read_csv(Path(ecfg.out) / "results.csv")))
    out = {"table": table, "seeds": ecfg.seeds, "folds": cfg.folds, "label_fraction": cfg.label_fraction,
           "lambda": cfg.lam, "mcma": cfg.mcma, "out": ecfg.out, "results_md": str(Path(ecfg.out) / "results.md"),
           "preprocess": {k: pre["summary"][k] for k in ("recordings", "ok", "windows_kept", "windows_dropped")},
           "seconds": time.perf_counter() - t0}
    atomic_write_text(work / "demo.json", to_json(out, indent=1))
    return out


__all__ = ["DEMO_ROWS", "DemoConfig", "demo_table", "render_table", "run_demo"]
