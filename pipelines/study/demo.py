"""The main job on a raw dataset (by default the bundled sample_data/), as one function:

preprocess (with the lag estimate applied) -> pretrain video -> pretrain IMU -> transfer video->imu
(D-CAT with MCMA) -> evaluate, once in distribution (same subjects, split by time blocks) and once out
of distribution (the last two subjects held out), and a table of test macro-F1.

Each step is the same library call the corresponding `dcat` command makes; the run folders are
ordinary runs (`dcat evaluate`, `dcat predict` work on them).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pipelines.core.errors import DcatError
from pipelines.core.io import parse_list, to_json
from pipelines.core.options import opt


@dataclass
class DemoConfig:
    """Settings of ``dcat demo``; each field's help is the command line's."""

    raw: str = opt("sample_data", "raw dataset (default: the bundled sample_data/)", argument=True)
    work: str = opt("demo", "where shards (`<work>/shards`) and runs (`<work>/runs`) go")
    seed: int = opt(0, "seed of the splits and of every model")
    epochs: int = opt(20, "most epochs per training run (early stopping on validation macro-F1)")
    ood_subjects: tuple[str, ...] | None = opt(None, "comma-separated test subjects out of distribution (default: "
                                               "the last two)", cli_type=str)
    src: str = opt("video", "the source stream", cli=False)
    tgt: str = opt("imu", "the target stream", cli=False)
    lam: float = opt(1.0, "D-CAT's lambda", cli=False)
    threads: int = opt(1, "CPU threads for torch. 1 (default) gives the same numbers on every run of a machine; 0: "
                       "one per idle core (faster, but float order then depends on the load)")
    overwrite: bool = opt(False, "re-preprocess even if `<work>/shards` exists")

    def __post_init__(self):
        if isinstance(self.ood_subjects, str):
            self.ood_subjects = tuple(parse_list(self.ood_subjects)) or None


def run_demo(cfg: DemoConfig, hooks=None, log: Callable[[str], None] = lambda s: None) -> dict:
    """Run the chain; return ``{"table": rows, "seconds", "runs": {...}, "preprocess": summary}``."""
    from pipelines.learn.evaluate import evaluate_run
    from pipelines.ingest.preprocess import PreprocessConfig, preprocess
    from pipelines.ingest.raw import discover
    from pipelines.learn.config import TrainConfig, TransferConfig
    from pipelines.learn.pretrain import pretrain
    from pipelines.learn.transfer import transfer

    t0 = time.perf_counter()
    work = Path(cfg.work)
    shards, runs = work / "shards", work / "runs"
    log(f"preprocess {cfg.raw} -> {shards} (--align estimate)")
    pre = preprocess(discover([cfg.raw]), shards, PreprocessConfig(align="estimate"), overwrite=cfg.overwrite)
    if pre["summary"]["failed"]:
        raise DcatError("preprocess failed for: " + "; ".join(pre["summary"]["errors"]))
    subjects = sorted(json.loads((shards / "manifest.json").read_text())["windows_per_subject"])
    ood = list(cfg.ood_subjects or subjects[-2:])
    if len(subjects) < 3:
        raise DcatError(f"{cfg.raw}: the demo needs at least 3 subjects (has {subjects})")
    # the demo's own runs are always retrained (shards are reused unless --overwrite)
    common = dict(data=str(shards), runs=str(runs), seed=cfg.seed, epochs=cfg.epochs, threads=cfg.threads,
                  overwrite=True)
    ood_split = dict(split="ood", test_subjects=ood)
    if len(subjects) - len(ood) < 2:  # too few subjects to validate on held-out ones: time blocks of the training ones
        ood_split["ood_val"] = "time"
    splits = {"in distribution": dict(split="id"), "out of distribution": ood_split}
    table, run_dirs = [], {}
    for name, sp in splits.items():
        row = {"setting": name}
        for stream in (cfg.src, cfg.tgt):
            log(f"({name}) pretrain {stream}")
            r = pretrain(TrainConfig(modality=stream, **common, **sp), hooks)
            rep = evaluate_run(r["run_dir"], split="test", threads=cfg.threads)
            row[f"{stream} alone"] = rep["macro_f1"]
            run_dirs[f"{name}: {stream}"] = r["run_dir"]
        log(f"({name}) transfer {cfg.src} -> {cfg.tgt} (D-CAT, MCMA, lambda {cfg.lam:g})")
        r = transfer(TransferConfig(src=cfg.src, tgt=cfg.tgt, lam=cfg.lam, **common, **sp), hooks)
        rep = evaluate_run(r["run_dir"], split="test", threads=cfg.threads)
        row[f"{cfg.tgt} with D-CAT"] = rep["macro_f1"]
        row["test windows"] = rep["n_windows"]
        run_dirs[f"{name}: {cfg.src}->{cfg.tgt}"] = r["run_dir"]
        table.append(row)
    out = {"table": table, "seed": cfg.seed, "ood_test_subjects": ood, "runs": run_dirs,
           "preprocess": {k: pre["summary"][k] for k in ("recordings", "ok", "windows_kept", "windows_dropped")},
           "seconds": time.perf_counter() - t0}
    (work / "demo.json").write_text(to_json(out, indent=1))
    return out
