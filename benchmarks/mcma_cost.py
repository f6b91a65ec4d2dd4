"""MCMA's out-of-fold correctness: what it costs, and what it changes (README, ``dcat transfer``).

    python benchmarks/mcma_cost.py --work /tmp/mcma            # the README's two tables, ~5 min
    python benchmarks/mcma_cost.py --epochs 2 --ks 2 --units id,ood-fold0of5   # smoke test, ~1 min
    python benchmarks/mcma_cost.py --data shards --json

What it measures, on shards of the bundled data by default (``dcat preprocess sample_data``):

1. Cost. For each unit (the source's split): the video source's ``pretrain`` (``--epochs`` 12,
   ``--video-frames 4``, seed 0, 1 thread, ``--device`` cpu: the quick grid's source settings), then
   for each K of ``--ks`` (default 3, 5) the source's ``oof-correct.npz`` computed afresh
   (``pipelines.learn.crossfit.ensure_oof(run, data, threads=1, folds=K)``, the file removed
   first): what ``dcat pretrain --oof-folds K`` adds. Printed: training windows, CPU seconds
   (``time.process_time``; the README's table, since the machine was shared) of each, and the
   out-of-fold accuracy. Units: ``id`` (``--split id``, the default split), ``id-fold0of3``
   (``--split id --fold 0 --folds 3``), ``ood-fold0of5`` (``--split ood --fold 0 --folds 5``).
2. Effect (unit ``id`` only, skipped with ``--no-transfer`` or when ``id`` is not among
   ``--units``): video -> imu, D-CAT lambda 1, the same settings, with MCMA ``oof`` (reading the
   source's file of the last K), ``insample`` and off; ``keep_rate``, best validation macro-F1 and
   test macro-F1 (``evaluate_run`` on ``best.pt``).

Time: about 5 min on 2 busy CPU cores (3 sources, 3 x (3 + 5) source copies, 3 transfers).
The README's figures: ``python benchmarks/mcma_cost.py`` (its first row's K = 3 cell was not
measured then: "-").
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import common

UNITS = {"id": {}, "id-fold0of3": {"split": "id", "fold": 0, "folds": 3},
         "ood-fold0of5": {"split": "ood", "fold": 0, "folds": 5}}
MCMA = {"on, `oof`": {}, "on, `insample`": {"mcma_correctness": "insample"}, "off": {"mcma": False}}


log = common.log


class Clock:
    """CPU and wall seconds of a block."""

    def __enter__(self):
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.cpu_s = round(time.process_time() - self.c, 1)
        self.wall_s = round(time.perf_counter() - self.w, 1)


def cost(unit: str, data: Path, runs: Path, ks: list[int], common_kw: dict) -> dict:
    from pipelines.learn.config import TrainConfig
    from pipelines.learn.crossfit import OOF_FILE, ensure_oof, read_oof
    from pipelines.learn.pretrain import pretrain

    with Clock() as c:
        info = pretrain(TrainConfig(modality="video", out=str(runs / f"video-{unit}"), **common_kw, **UNITS[unit]))
    r = {"run_dir": info["run_dir"], "train_windows": info["n_windows"]["train"], "pretrain_cpu_s": c.cpu_s,
         "pretrain_wall_s": c.wall_s, "oof": {}}
    p = Path(info["run_dir"]) / OOF_FILE
    for k in ks:
        if p.exists():
            os.unlink(p)
        with Clock() as c:
            ensure_oof(info["run_dir"], str(data), threads=1, device=common_kw["device"], folds=k)
        r["oof"][str(k)] = {"cpu_s": c.cpu_s, "wall_s": c.wall_s, "oof_acc": read_oof(p)["accuracy"]}
    r["load"] = os.getloadavg()[0]
    log(f"{unit}: {r}")
    return r


def effect(src_run: str, runs: Path, k: int, common_kw: dict) -> dict:
    from pipelines.learn.config import TransferConfig
    from pipelines.learn.evaluate import evaluate_run
    from pipelines.learn.transfer import transfer

    res = {}
    for name, kw in MCMA.items():
        tag = name.replace(",", "").replace("`", "").replace(" ", "-")
        with Clock() as c:
            i = transfer(TransferConfig(src="video", src_ckpt=src_run, tgt="imu", out=str(runs / f"t-mcma-{tag}"),
                                        oof_folds=k,
                                        **kw, **common_kw))
        ev = evaluate_run(i["run_dir"], split="test", threads=1, device=common_kw["device"], write=False)
        res[name] = {"keep_rate": i["keep_rate"], "src_oof_acc": i["src_oof_acc"], "val_f1": i["best_val_macro_f1"],
                     "test_f1": ev["macro_f1"], "best_epoch": i["best_epoch"], "cpu_s": c.cpu_s, "wall_s": c.wall_s}
        log(f"MCMA {name}: {res[name]}")
    return res


UNIT_LABEL = {"id": "`--split id` (seed 0)", "id-fold0of3": "`--split id --fold 0 --folds 3`",
              "ood-fold0of5": "`--split ood --fold 0 --folds 5`"}


def table(res: dict) -> str:
    ks = res["ks"]
    lines = [f"video source, {res['epochs']} epochs, --video-frames 4, 1 thread, {res['device']}; CPU seconds", "",
             "| source's split | training windows | source pretrain | out-of-fold, "
             + " | ".join(f"K = {k}" for k in ks) + " | out-of-fold accuracy K = " + " / ".join(map(str, ks)) + " |",
             "|---|---|---|" + "---|" * len(ks) + "---|"]
    for unit, r in res["cost"].items():
        lines.append(f"| {UNIT_LABEL[unit]} | {r['train_windows']} | {r['pretrain_cpu_s']:.1f} s | "
                     + " | ".join(f"{r['oof'][str(k)]['cpu_s']:.1f} s" for k in ks) + " | "
                     + " / ".join(f"{r['oof'][str(k)]['oof_acc']:.3f}" for k in ks) + " |")
    if res.get("effect"):
        lines += ["", f"video -> imu, D-CAT lambda 1, `--split id`, seed 0, {res['epochs']} epochs:", "",
                  "| MCMA | keep_rate | best val macro-F1 | test macro-F1 |", "|---|---|---|---|"]
        for name, r in res["effect"].items():
            label = f"{name} (K = {ks[-1]})" if "oof" in name else name
            lines.append(f"| {label} | {r['keep_rate']:.3f} | {r['val_f1']:.3f} | {r['test_f1']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(ap)
    ap.add_argument("--units", default=",".join(UNITS), help=f"source splits, of {', '.join(UNITS)} (default all)")
    ap.add_argument("--ks", default="3,5", help="K of the out-of-fold correctness, each timed (default 3,5; "
                                                "the transfers read the last)")
    ap.add_argument("--epochs", type=int, default=12, help="epochs of the source and the transfers (default 12)")
    ap.add_argument("--device", default="cpu", help="device of every run (default cpu)")
    ap.add_argument("--no-transfer", action="store_true", help="only the cost table")
    a = ap.parse_args(argv)
    units = [u for u in a.units.split(",") if u]
    bad = [u for u in units if u not in UNITS]
    if bad:
        ap.error(f"unknown unit(s) {bad}; choose among {list(UNITS)}")
    ks = [int(k) for k in a.ks.split(",") if k]
    import torch

    torch.set_num_threads(1)
    work = common.work_dir(a.work, "dcat-mcma-")
    data = common.shards(a.data, work, log)
    runs = work / "runs"
    log(f"work folder {work}")
    kw = {"data": str(data), "runs": str(runs), "epochs": a.epochs, "video_frames": 4, "threads": 1,
          "device": a.device, "overwrite": True}
    res = {"epochs": a.epochs, "device": a.device, "ks": ks, "cost": {u: cost(u, data, runs, ks, kw) for u in units}}
    if "id" in units and not a.no_transfer:
        res["effect"] = effect(res["cost"]["id"]["run_dir"], runs, ks[-1], kw)
    common.emit(res, table(res), a.json)


if __name__ == "__main__":
    main()
