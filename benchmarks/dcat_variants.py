"""Why D-CAT first transferred nothing in the positive control: variants of the D-CAT target on the
units of one experiment, sources and baselines reused (README, *Controls*).

    python benchmarks/dcat_variants.py EXP_DIR SHARDS lam1,lam100-ep40,...

EXP_DIR: a finished `dcat experiment` on the positive control's data at 5% labels with its video
sources and IMU baselines; the README's table used this spec (`dcat experiment spec.toml`), on the
shards of `dcat synth raw --imu-cue 0.5 --source-errors 0.1` (= sample_data/) preprocessed with
`--align estimate`:

    data = "SHARDS"
    out = "EXP_DIR"
    pairs = ["video->imu"]
    methods = ["dcat", "logit-kd"]
    lambdas = [0.1, 1.0, 10.0]
    mcma = [true, false]
    splits = ["id"]
    id_folds = 3
    seeds = [0, 1]
    shifts = []
    source_label_fraction = 1.0
    [train]
    epochs = 20
    video_frames = 4
    label_fraction = 0.05
    oof_folds = 3

For each variant and unit it trains the D-CAT target (MCMA off) from the unit's video source,
evaluates it on the test part and prints the fold means of (its test macro-F1 - the unit's IMU
alone) and their mean. `base-ep40` trains the IMU alone for 40 epochs instead.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

VARIANTS = {
    "lam1": dict(lam=1.0),
    "lam10": dict(lam=10.0),
    "lam30": dict(lam=30.0),
    "lam100": dict(lam=100.0),
    "seqlen-lam0.1": dict(lam=0.1, norm="seqlen"),
    "lam10-lr5e-4": dict(lam=10.0, lr=5e-4),
    "lam1-ep40": dict(lam=1.0, epochs=40),
    "lam10-ep40": dict(lam=10.0, epochs=40),
    "lam100-ep40": dict(lam=100.0, epochs=40),
    "logitkd-ep40": dict(method="logit-kd", lam=1.0, epochs=40),
    "base-ep40": "pretrain",
}


def run_variant(exp: Path, shards: str, name: str, out: Path) -> list[float]:
    from pipelines.learn.config import TrainConfig, TransferConfig
    from pipelines.learn.evaluate import evaluate_run
    from pipelines.learn.pretrain import pretrain
    from pipelines.learn.transfer import transfer

    v = VARIANTS[name]
    diffs: dict[int, list[float]] = {}
    for unit in sorted(p.name for p in (exp / "runs").iterdir()):
        fold, seed = int(unit.split("-f")[1].split("of")[0]), int(unit.split("-s")[-1])
        base = json.loads((exp / "runs" / unit / "base-imu" / "report.json").read_text())["test"]["macro_f1"]
        run = out / name / unit
        common = dict(data=shards, out=str(run), seed=seed, video_frames=4, label_fraction=0.05, threads=1,
                      overwrite=True)
        if v == "pretrain":
            pretrain(TrainConfig(modality="imu", split="id", fold=fold, folds=3, split_seed=0, epochs=40, **common))
        else:
            kw = dict(epochs=20, mcma=False, **v)
            transfer(TransferConfig(src="video", tgt="imu", src_ckpt=str(exp / "runs" / unit / "src-video" / "best.pt"),
                                    **common, **kw))
        diffs.setdefault(fold, []).append(evaluate_run(run, split="test", threads=1)["macro_f1"] - base)
    return [float(np.mean(d)) for _, d in sorted(diffs.items())]


def main(argv: list[str]) -> None:
    exp, shards, names = Path(argv[0]), argv[1], argv[2].split(",")
    out = exp.parent / (exp.name + "-variants")
    for name in names:
        t = time.perf_counter()
        per_fold = run_variant(exp, shards, name, out)
        print(f"{name}: per-fold {[round(x, 3) for x in per_fold]} mean {np.mean(per_fold):+.3f} "
              f"({time.perf_counter() - t:.0f} s)", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
