"""Positive and negative controls (``dcat controls``): synthetic data where the answer is known, run
through the experiment grid, so a reader can see whether the D-CAT implementation transfers
anything at all, and where.

Datasets (``dcat synth`` with its knobs, :class:`pipelines.synth.SynthConfig`):

- **positive**: a strong camera (video), a faint class-specific wrist cue (``cue``: the IMU can in
  principle separate drink/eat and stir/wipe, but hardly learns it from few labels) and camera
  failures on a share ``source_errors`` of the time (errors MCMA can mask). Run at each labelled
  share of ``fractions``: D-CAT should beat the IMU alone there, more so as labels get fewer.
- **negative**: the same wrist cue, and a camera that fails all the time (``source_errors`` 1: the
  source is pure noise). Run at the smallest and largest labelled share: no gain may appear.
- **cue sweep**: datasets at each wrist cue of ``cues`` (same camera failures as the positive one),
  at the labelled share ``fraction``: where transfer helps as the IMU's own information grows.

Each (dataset, labelled share) is one ``dcat experiment`` (in-distribution time-block folds x
seeds, the IMU baseline and its null, D-CAT at each of ``lambdas`` with MCMA on and off, the row
chosen on validation, and logit KD as the reference for what the same unlabelled windows can carry;
the video source sees every training label and is trained once per fold (``shared_sources``), the
IMU runs see ``label_fraction`` of theirs, the rest pair unlabelled windows in the transfer term). :func:`summarize` turns the experiments' results into ``controls.csv``,
``controls.md`` and two PNG curves (gain against the labelled share, gain against the cue), every
gain the paired difference to the IMU baseline with its 95% interval over test sets, beside the
null's.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from pipelines.core.errors import DcatError
from pipelines.core.io import atomic_write_text, parse_list, to_json
from pipelines.core.options import check_options, opt


def _floats(v, name: str = "value") -> list[float]:
    """A list option given as a list or as comma-separated text (brackets allowed)."""
    try:
        return [float(x) for x in (parse_list(v.strip().strip("[]")) if isinstance(v, str) else v)]
    except (TypeError, ValueError):
        raise DcatError(f"--{name} {v}: give numbers, comma-separated (e.g. 0.05,0.1,1)") from None


@dataclass
class ControlsConfig:
    """Settings of ``dcat controls``; each field's help is the command line's."""

    out: str = opt("controls", "folder of the controls: data/ (raw + shards per dataset), exp/ (one experiment "
                   "per dataset and labelled share), controls.md, controls.csv, plots/")
    cue: float = opt(0.5, "wrist cue of the positive and negative controls (dcat synth --imu-cue)", ge=0, le=1)
    source_errors: float = opt(0.1, "share of the time the camera fails in the positive control and the cue "
                               "sweep (dcat synth --source-errors); the negative control uses 1", ge=0, le=1)
    fractions: list = opt(help="labelled shares of the positive control (comma-separated)", cli_type=str,
                          default_factory=lambda: [0.05, 0.1, 0.25, 1.0], items=float, gt=0, le=1)
    cues: list = opt(help="wrist cues of the cue sweep (comma-separated)", cli_type=str,
                     default_factory=lambda: [0.0, 0.5, 1.0], items=float, ge=0, le=1)
    fraction: float = opt(0.05, "labelled share of the cue sweep and of the negative control's low point", gt=0, le=1)
    lambdas: list = opt(help="D-CAT lambdas (comma-separated); the table's D-CAT row is the lambda and MCMA setting "
                        "chosen on validation in each unit, the MCMA columns are at the first lambda",
                        cli_type=str, default_factory=lambda: [1.0, 100.0], items=float, ge=0)
    seeds: list = opt(help="training seeds (comma-separated)", cli_type=str, default_factory=lambda: [0, 1], items=int, ge=0,
                     unique=True)
    id_folds: int = opt(3, "in-distribution time-block folds (test sets) per experiment", ge=1)
    subjects: int = opt(5, "subjects per synthetic dataset", ge=1)
    recordings: int = opt(3, "recordings per subject", ge=1)
    seconds: float = opt(40.0, "seconds per recording", ge=3)
    video_size: int = opt(128, "synthetic video frame size, pixels", ge=32)
    epochs: int = opt(40, "most epochs per training run (with few labels the D-CAT term needs them: see README)",
                      ge=1)
    oof_folds: int = opt(3, "folds of the sources' out-of-fold MCMA correctness", ge=0)
    synth_seed: int = opt(0, "seed of the synthetic datasets", ge=0)
    jobs: int = opt(0, "cells run at once (0: one per CPU core)", short="-j", ge=0)

    def __post_init__(self):
        self.fractions = _floats(self.fractions, "fractions")
        self.cues = _floats(self.cues, "cues")
        seeds = _floats(self.seeds, "seeds")
        if not all(x.is_integer() for x in seeds):
            raise DcatError(f"--seeds {self.seeds}: give whole numbers, comma-separated (e.g. 0,1)")
        self.seeds = [int(x) for x in seeds]
        self.lambdas = _floats(self.lambdas, "lambdas")
        check_options(self, DcatError)  # types and declared ranges; the checks below keep their messages
        if not self.lambdas or any(x < 0 for x in self.lambdas):
            raise DcatError("--lambdas: at least one lambda, none negative")
        if not self.fractions or any(not 0 < f <= 1 for f in self.fractions + [self.fraction]):
            raise DcatError("--fractions/--fraction: labelled shares in (0, 1]")
        if any(not 0 <= c <= 1 for c in self.cues + [self.cue]) or not 0 <= self.source_errors <= 1:
            raise DcatError("--cue/--cues/--source-errors: values in [0, 1]")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Dataset:
    name: str
    control: str  # "positive", "negative" or "cue sweep"
    cue: float
    source_errors: float
    fractions: list = field(default_factory=list)


def plan(cfg: ControlsConfig) -> list[Dataset]:
    """The datasets and the labelled shares each runs at."""
    pos = Dataset("positive", "positive", cfg.cue, cfg.source_errors, sorted(set(cfg.fractions)))
    neg = Dataset("negative", "negative", cfg.cue, 1.0, sorted({min(cfg.fractions + [cfg.fraction]), 1.0}))
    out = [pos, neg]
    for c in cfg.cues:
        if abs(c - cfg.cue) < 1e-9:
            if cfg.fraction not in pos.fractions:
                pos.fractions = sorted(pos.fractions + [cfg.fraction])
            continue
        out.append(Dataset(f"cue{c:g}", "cue sweep", c, cfg.source_errors, [cfg.fraction]))
    return out


def _synth_and_preprocess(cfg: ControlsConfig, ds: Dataset, root: Path, log: Callable[[str], None]) -> Path:
    """``root/data/<name>/raw`` (dcat synth) and ``.../shards`` (dcat preprocess --align estimate);
    reused when already complete with the same settings."""
    from pipelines.ingest.preprocess import PreprocessConfig, preprocess
    from pipelines.ingest.raw import discover
    from pipelines.synth import SynthConfig, synthesize

    base = root / "data" / ds.name
    raw, shards = base / "raw", base / "shards"
    scfg = SynthConfig(subjects=cfg.subjects, recordings=cfg.recordings, seconds=cfg.seconds, seed=cfg.synth_seed,
                       imu_cue=ds.cue, source_errors=ds.source_errors, video_size=cfg.video_size)
    want = asdict(scfg)
    gt = raw / "ground_truth.json"
    if not (gt.is_file() and json.loads(gt.read_text()).get("config") == json.loads(to_json(want))):
        log(f"synth {ds.name} (cue {ds.cue:g}, camera failing {ds.source_errors:.0%} of the time) -> {raw}")
        synthesize(raw, scfg)
    if not (shards / "manifest.json").is_file() or (shards / "manifest.json").stat().st_mtime < gt.stat().st_mtime:
        log(f"preprocess {raw} -> {shards} (--align estimate)")
        pre = preprocess(discover([str(raw)]), shards, PreprocessConfig(align="estimate"), overwrite=True)
        if pre["summary"]["failed"]:
            raise DcatError(f"controls: preprocessing {raw} failed: " + "; ".join(pre["summary"]["errors"]))
    return shards


def experiment_config(cfg: ControlsConfig, ds: Dataset, fraction: float, shards: Path, root: Path):
    """The ``dcat experiment`` of one dataset at one labelled share."""
    from pipelines.study.spec import ExperimentConfig

    return ExperimentConfig(
        data=str(shards), out=str(root / "exp" / f"{ds.name}-lf{fraction:g}"), pairs=["video->imu"],
        methods=["dcat", "logit-kd"], lambdas=list(cfg.lambdas), mcma=[True, False], baseline_lambda=1.0, splits=["id"], id_folds=cfg.id_folds,
        seeds=list(cfg.seeds), shifts=[], null=True, source_label_fraction=1.0, shared_sources=True, jobs=cfg.jobs,
        train={"epochs": cfg.epochs, "video_frames": 4, "label_fraction": float(fraction), "oof_folds": cfg.oof_folds},
        title=f"control {ds.control}: {ds.name}, IMU cue {ds.cue:g}, camera failing {ds.source_errors:.0%}, "
              f"{fraction:.0%} of the IMU's training windows labelled")


def run_controls(cfg: ControlsConfig, log: Callable[[str], None] = lambda s: None) -> dict:
    """Synthesize, preprocess and run every control's experiments (resumable: finished cells are
    skipped), then :func:`summarize`. Returns ``{"rows", "files", "seconds"}``."""
    from pipelines.study.experiment import run_experiment

    t0 = time.perf_counter()
    root = Path(cfg.out)
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / "controls.json", to_json({"config": cfg.to_dict()}, indent=1))
    results = []
    for ds in plan(cfg):
        shards = _synth_and_preprocess(cfg, ds, root, log)
        for f in ds.fractions:
            ecfg = experiment_config(cfg, ds, f, shards, root)
            log(f"experiment {ds.name} at {f:.0%} labelled -> {ecfg.out}")
            res = run_experiment(ecfg, log=lambda s: None)
            if res["failed"]:
                raise DcatError(f"controls: cells of {ecfg.out} failed: {', '.join(sorted(res['failed']))}")
            results.append((ds, f, Path(ecfg.out)))
    rows = summarize(results, root, cfg.lambdas[0])
    return {"rows": rows, "files": [str(root / n) for n in ("controls.md", "controls.csv")]
            + [str(p) for p in sorted((root / "plots").glob("*.png"))], "seconds": time.perf_counter() - t0}


def control_row(ds: Dataset, fraction: float, summary: list[dict], lam: float = 1.0) -> dict:
    """One line of the controls table from an experiment's summary entries (report.summary_table):
    the IMU alone and the video source (mean, SD), and as paired differences to the IMU alone with
    their intervals: the null, D-CAT chosen on validation (``dcat``), D-CAT at ``lam`` with MCMA on
    and off, and logit KD through the same unlabelled windows."""
    by = {}
    for e in summary:
        if e["role"] == "source":
            by["video"] = e
        elif e["tgt"] != "imu":
            continue
        elif e["role"] in ("baseline", "null", "selected"):
            by[{"baseline": "imu", "null": "null", "selected": "dcat"}[e["role"]]] = e
        elif e["role"] == "transfer" and e["method"] == "logit-kd":
            by["logitkd"] = e
        elif e["role"] == "transfer" and e["method"] == "dcat" and abs(float(e["lam"]) - lam) < 1e-9:
            by["dcat_mcma" if e["mcma"] else "dcat_nomcma"] = e
    row = {"control": ds.control, "dataset": ds.name, "imu_cue": ds.cue, "source_errors": ds.source_errors,
           "label_fraction": fraction}
    for key in ("imu", "video", "null", "dcat", "dcat_mcma", "dcat_nomcma", "logitkd"):
        e = by.get(key) or {}
        row[f"{key}_f1"] = e.get("f1_mean")
        row[f"{key}_sd"] = e.get("f1_std")
        if key not in ("imu", "video"):
            row[f"{key}_diff"] = e.get("diff_mean")
            row[f"{key}_lo"] = e.get("diff_lo")
            row[f"{key}_hi"] = e.get("diff_hi")
            row[f"{key}_blo"] = e.get("boot_lo")  # subject bootstrap (shown where the test sets are few)
            row[f"{key}_bhi"] = e.get("boot_hi")
        if key.startswith("dcat") or key == "logitkd":
            row[f"{key}_keep"] = e.get("keep_rate")
            row[f"{key}_improved"] = e.get("n_improved")
    row["dcat_chosen"] = "; ".join(f"{name} x{n}" for name, n in (by.get("dcat") or {}).get("chosen") or [])
    row["n_tests"] = (by.get("dcat") or by.get("null") or {}).get("n_tests")
    return row


def summarize(results: list[tuple[Dataset, float, Path]], root: Path, lam: float = 1.0) -> list[dict]:
    """controls.csv, controls.md and plots/ from the experiments' ``results.csv``."""
    from pipelines.study.report import read_csv, summary_table

    rows = [control_row(ds, f, summary_table(read_csv(out / "results.csv")), lam) for ds, f, out in results]
    _write_csv(rows, root / "controls.csv")
    atomic_write_text(root / "controls.md", render_controls(rows, lam))
    plot_controls(rows, root / "plots")
    return rows


def _write_csv(rows: list[dict], path: Path) -> None:
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["control"], lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else (f"{v:.6g}" if isinstance(v, float) else v)) for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())


def _d(row: dict, key: str, boot: bool = False) -> str:
    m, lo, hi = row.get(f"{key}_diff"), row.get(f"{key}_lo"), row.get(f"{key}_hi")
    if m is None:
        return "-"
    ci = f" [{lo:+.3f}, {hi:+.3f}]" if lo is not None and hi is not None else ""
    k, n = row.get(f"{key}_improved"), row.get("n_tests")
    if boot and k is not None and n:
        ci += f", {k}/{n} up"
    blo, bhi = row.get(f"{key}_blo"), row.get(f"{key}_bhi")
    if boot and blo is not None and bhi is not None:
        ci += f" (subjects [{blo:+.3f}, {bhi:+.3f}])"
    return f"{m:+.3f}{ci}"


def _f(row: dict, key: str) -> str:
    m, sd = row.get(f"{key}_f1"), row.get(f"{key}_sd")
    return "-" if m is None else (f"{m:.3f} ± {sd:.3f}" if sd is not None else f"{m:.3f}")


def verdict(row: dict, key: str = "dcat") -> str:
    """What a line's difference (``key``: D-CAT chosen on validation by default) says against the null:
    ``gain`` (t interval over test sets above 0 and mean above the null's interval), ``loss`` (the
    mirror), else ``within noise``. Only the t interval counts: its n is the independent test sets;
    the subject bootstrap is shown beside it but is optimistic (the null's own bootstrap interval
    often excludes 0)."""
    lo, hi = row.get(f"{key}_lo"), row.get(f"{key}_hi")
    nlo, nhi = row.get("null_lo"), row.get("null_hi")
    if lo is None or hi is None:
        return "-"
    m = row[f"{key}_diff"]
    if lo > 0 and (nhi is None or m > nhi):
        return "gain"
    if hi < 0 and (nlo is None or m < nlo):
        return "loss"
    return "within noise"


def render_controls(rows: list[dict], lam: float = 1.0) -> str:
    head = ["control", "IMU cue", "camera fails", "labelled", "video alone", "IMU alone", "null (2nd seed)",
            "D-CAT (chosen on validation)", f"D-CAT λ {lam:g}, MCMA", f"D-CAT λ {lam:g}, no MCMA", "MCMA keep rate",
            "logit KD (reference)", "test sets", "D-CAT verdict", "logit KD verdict"]
    lines = ["# dcat controls", "",
             "Test macro-F1 of the video source and the IMU alone (mean ± SD over folds x seeds), and every other "
             "column the paired difference to the IMU alone with its 95% interval over test sets (time-block "
             "folds; the seeds of a fold averaged first). The null is the IMU alone trained with a second seed: "
             "the noise floor. `k/n up`: the test sets whose mean difference is positive. With 3 test sets "
             "the t interval is wide (t = 4.30); the subject-level bootstrap (test subjects resampled) is given "
             "beside it, (subjects [lo, hi]), but it is optimistic: the null's own often excludes 0. Verdict, on "
             "the t interval only: `gain` when it lies above 0 and the mean above the null's interval, `loss` "
             "the mirror, else `within noise`. Logit KD (the source's softened class "
             "probabilities, the same unlabelled windows) is the reference for what a transfer through those "
             "windows can give here.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        keep = r.get("dcat_mcma_keep")
        lines.append("| " + " | ".join([
            r["control"], f"{r['imu_cue']:g}", f"{r['source_errors']:.0%}", f"{r['label_fraction']:.0%}",
            _f(r, "video"), _f(r, "imu"), _d(r, "null", True), _d(r, "dcat", True), _d(r, "dcat_mcma"),
            _d(r, "dcat_nomcma"), "-" if keep is None else f"{keep:.2f}", _d(r, "logitkd", True),
            str(r.get("n_tests") or "-"), verdict(r),
            verdict(r, "logitkd")]) + " |")
    chosen = [f"{r['dataset']} {r['label_fraction']:.0%}: {r['dcat_chosen']}" for r in rows if r.get("dcat_chosen")]
    if chosen:
        lines += ["", "D-CAT settings chosen on validation (units): " + " | ".join(chosen) + "."]
    return "\n".join(lines) + "\n"


def plot_controls(rows: list[dict], out_dir: Path) -> list[Path]:
    """``gain_vs_label_fraction.png`` (positive and negative controls) and ``gain_vs_cue.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []

    def series(ax, rs, x, key, label, color, dx=0.0):
        rs = [r for r in rs if r.get(f"{key}_diff") is not None]
        if not rs:
            return
        xs = [r[x] * (1 + dx) if x == "label_fraction" else r[x] + dx for r in rs]
        m = [r[f"{key}_diff"] for r in rs]
        lo = [r[f"{key}_diff"] - (r[f"{key}_lo"] if r[f"{key}_lo"] is not None else r[f"{key}_diff"]) for r in rs]
        hi = [(r[f"{key}_hi"] if r[f"{key}_hi"] is not None else r[f"{key}_diff"]) - r[f"{key}_diff"] for r in rs]
        ax.errorbar(xs, m, yerr=[lo, hi], marker="o", capsize=3, label=label, color=color)

    def finish(fig, ax, xlabel: str, name: str) -> Path:
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test macro-F1 minus IMU alone (95% CI)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=110)
        plt.close(fig)
        return out_dir / name

    fig, ax = plt.subplots(figsize=(6, 4))
    pos = sorted([r for r in rows if r["dataset"] == "positive"], key=lambda r: r["label_fraction"])
    neg = sorted([r for r in rows if r["dataset"] == "negative"], key=lambda r: r["label_fraction"])
    series(ax, pos, "label_fraction", "dcat", "positive: D-CAT (chosen on validation)", "C0")
    series(ax, pos, "label_fraction", "logitkd", "positive: logit KD (reference)", "C2", 0.06)
    series(ax, pos, "label_fraction", "null", "positive: null (2nd seed)", "0.5", -0.06)
    series(ax, neg, "label_fraction", "dcat", "negative (noise source): D-CAT", "C3", 0.12)
    series(ax, neg, "label_fraction", "logitkd", "negative (noise source): logit KD", "C1", 0.18)
    ax.set_xscale("log")
    paths.append(finish(fig, ax, "share of the IMU's training windows labelled", "gain_vs_label_fraction.png"))

    sweep_fractions = {r["label_fraction"] for r in rows if r["control"] == "cue sweep"}
    sweep = sorted([r for r in rows if r["control"] == "cue sweep"
                    or (r["dataset"] == "positive" and r["label_fraction"] in sweep_fractions)],
                   key=lambda r: r["imu_cue"])  # the positive control is the sweep's point at its own cue
    if sweep:
        fig, ax = plt.subplots(figsize=(6, 4))
        series(ax, sweep, "imu_cue", "dcat", "D-CAT (chosen on validation)", "C0")
        series(ax, sweep, "imu_cue", "logitkd", "logit KD (reference)", "C2", 0.01)
        series(ax, sweep, "imu_cue", "null", "null (2nd seed)", "0.5", -0.01)
        paths.append(finish(fig, ax, f"wrist cue (dcat synth --imu-cue), {sweep[0]['label_fraction']:.0%} labelled",
                            "gain_vs_cue.png"))
    return paths


__all__ = ["ControlsConfig", "Dataset", "plan", "experiment_config", "run_controls", "control_row", "summarize",
           "render_controls", "plot_controls", "verdict"]
