"""dcat's uni-modal model against the classical reference ``features-rf`` on the same splits
(README, *The classical reference*).

    python benchmarks/classical.py --work /tmp/rf             # the README's six IMU rows, ~7 min
    python benchmarks/classical.py --channels all --seeds 0 --folds 2 --id-seeds 0 --id-folds 2 --epochs 2   # smoke
    python benchmarks/classical.py --streams audio --channels all --seeds 0 --id-seeds ""   # audio, OOD only

What it measures: for each split (a job), ``pretrain`` of the stream at default settings
(``TrainConfig`` defaults, ``--threads 1``; ``--epochs`` only when given) and its test and
validation macro-F1 (``evaluate_run`` on ``best.pt``), and ``fit_features_rf`` (200 trees, seed =
the job's seed) on the same split, with a check that both scored the same test subjects and
number of windows. Jobs: out of distribution ``--split ood --fold F --folds K`` for every seed of
``--seeds`` and F < ``--folds`` (5: one held-out subject per fold); in distribution ``--split id
--fold F --folds K`` (blocked K-fold, ``--id-folds``; 0: one random split per seed of ``--id-seeds``).
The unit of replication is the test set: the seeds of a fold (OOD: of a held-out subject set) are
averaged, then the mean +- SD over the units and the paired 95% t-interval of dcat - RF
(``pipelines.study.report.statistics.paired_ci``).

``--channels`` runs it all on IMU channel subsets: ``all`` (the shards as they are), ``acc`` and
``gyr`` (copies of the shards, in ``WORK/shards-acc`` / ``WORK/shards-gyr``, whose IMU stream keeps
only the channels named ``acc*`` / ``gyr*``, with their statistics; the copy holds the windows and
the IMU stream only, and its manifest is rebuilt with ``pipelines.shards.manifest.write_manifest``).

Time: per run dcat took 5-7 s and the forest about 1 s on a busy 2-core machine: the default (3
channel sets x (2 seeds x 5 OOD folds + 2 seeds x 5 ID folds) = 60 pairs) about 7 min (the
README's run: 111 + 143 + 152 s).
The README's figures: ``python benchmarks/classical.py`` on the bundled data (it then ran as three
calls, one per channel set, with the same jobs).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import common

SUBSETS = ("acc", "gyr")


log = common.log


def subset_shards(src: Path, dst: Path, prefix: str) -> list[str]:
    """Copy ``src``'s shards to ``dst`` keeping the windows and only the IMU channels named
    ``prefix*``; rebuild the manifest. Returns the channels kept."""
    import h5py

    from pipelines.shards.manifest import shard_files, write_manifest

    dst.mkdir(parents=True, exist_ok=True)
    kept: list[str] = []
    for p in shard_files(src):
        with h5py.File(p, "r") as f, h5py.File(dst / p.name, "w") as g:
            for k, v in f.attrs.items():
                g.attrs[k] = v
            f.copy("windows", g)
            sg = g.create_group("streams")
            for k, v in f["streams"].attrs.items():
                sg.attrs[k] = v
            si, o = f["streams/imu"], sg.create_group("imu")
            for k, v in si.attrs.items():
                o.attrs[k] = v
            chans = [str(c) for c in si.attrs["channels"]]
            ch = [i for i, c in enumerate(chans) if c.startswith(prefix)]
            if not ch:
                raise SystemExit(f"{p}: no IMU channel named {prefix}* among {chans}")
            kept = [chans[i] for i in ch]
            o.attrs["channels"] = kept
            units = json.loads(si.attrs["units"])
            o.attrs["units"] = json.dumps({c: units[c] for c in kept})
            for k in si:
                a = si[k][()]
                if k == "data":
                    a = a[:, ch]
                elif k in ("mean", "std", "sum", "sumsq"):
                    a = a[ch]
                o.create_dataset(k, data=a)
    write_manifest(dst)
    return kept


def jobs(seeds: list[int], folds: int, id_seeds: list[int], id_folds: int) -> list[dict]:
    out = [dict(split="ood", fold=f, folds=folds, seed=s) for s in seeds for f in range(folds)]
    for s in id_seeds:
        if id_folds:
            out += [dict(split="id", fold=f, folds=id_folds, seed=s) for f in range(id_folds)]
        else:
            out.append(dict(split="id", seed=s))
    return out


def run_pair(data: Path, out: Path, stream: str, j: dict, extra: dict) -> dict:
    """dcat and features-rf on the split of job ``j``."""
    from pipelines.learn.classical import fit_features_rf
    from pipelines.learn.config import TrainConfig
    from pipelines.learn.evaluate import evaluate_run
    from pipelines.learn.pretrain import pretrain

    name = f"{stream}-{j['split']}-f{j.get('fold', 'x')}-s{j['seed']}"
    t0 = time.time()
    cfg = TrainConfig(data=str(data), modality=stream, out=str(out / "dcat" / name), threads=1, overwrite=True,
                      **j, **extra)
    info = pretrain(cfg)
    te = evaluate_run(cfg.out, split="test", threads=1, write=False)
    va = evaluate_run(cfg.out, split="val", threads=1, write=False)
    row = dict(stream=stream, **j, test_subjects=te["subjects"], dcat_test=te["macro_f1"], dcat_val=va["macro_f1"],
               best_epoch=info["best_epoch"], epochs_run=info["epochs_run"], dcat_s=time.time() - t0)
    t1 = time.time()
    r = fit_features_rf(TrainConfig(data=str(data), modality=stream, out=str(out / "rf" / name), overwrite=True, **j))
    if r["test"]["subjects"] != te["subjects"] or r["test"]["n_windows"] != te["n_windows"]:
        raise SystemExit(f"{name}: features-rf and dcat scored different test sets "
                         f"({r['test']['subjects']}, {r['test']['n_windows']} vs {te['subjects']}, {te['n_windows']})")
    row.update(rf_test=r["test"]["macro_f1"], rf_val=r["val"]["macro_f1"], rf_s=time.time() - t1)
    log(json.dumps(row))
    return row


def units_of(rs: list[dict], split: str) -> list[tuple[str, list[dict]]]:
    """The test sets: OOD the held-out subjects, ID the fold (a random split: the seed)."""
    by: dict = {}
    for r in rs:
        if split == "ood":
            key = "+".join(r["test_subjects"])
        elif "folds" in r:
            key = f"fold{r['fold']}"
        else:
            key = f"seed{r['seed']}"
        by.setdefault(key, []).append(r)
    return sorted(by.items())


def summarize(rows: list[dict], labels: dict) -> list[dict]:
    from pipelines.study.report.statistics import paired_ci

    out = []
    for stream in sorted({r["stream"] for r in rows}):
        for split in ("ood", "id"):
            rs = [r for r in rows if r["stream"] == stream and r["split"] == split]
            if not rs:
                continue
            units = units_of(rs, split)
            d = np.array([np.mean([r["dcat_test"] for r in v]) for _, v in units])
            f = np.array([np.mean([r["rf_test"] for r in v]) for _, v in units])
            n_seeds = len({r["seed"] for r in rs})
            label = labels.get(stream, "")
            if split == "ood":
                held = "subject sets" if any("+" in k for k, _ in units) else "subjects"
                what = f"OOD, {len(units)} {held} x {n_seeds} seeds"
            elif "folds" in rs[0]:
                what = f"ID, {len(units)} folds x {n_seeds} seeds"
            else:
                what = f"ID, {len(units)} random splits"
            sd = (lambda x: float(x.std(ddof=1)) if len(x) > 1 else None)
            out.append({"stream": f"{stream} ({label})" if label else stream, "split": what, "runs": len(rs),
                        "dcat": float(d.mean()), "dcat_sd": sd(d), "rf": float(f.mean()), "rf_sd": sd(f),
                        "diff": paired_ci(d - f),
                        "units": {k: {"dcat": float(np.mean([r["dcat_test"] for r in v])),
                                      "rf": float(np.mean([r["rf_test"] for r in v]))} for k, v in units}})
    return out


def table(summary: list[dict]) -> str:
    def ms(m, s):
        return f"{m:.3f} ± {s:.3f}" if s is not None else f"{m:.3f}"

    lines = ["| stream (channels) | split | dcat | features-rf | dcat - RF [95% CI] |", "|---|---|---|---|---|"]
    for s in summary:
        c = s["diff"]
        ci = f"[{c['lo']:+.3f}, {c['hi']:+.3f}]" if c["lo"] is not None else "[n < 2]"
        lines.append(f"| {s['stream']} | {s['split']} | {ms(s['dcat'], s['dcat_sd'])} | {ms(s['rf'], s['rf_sd'])} | "
                     f"{c['mean']:+.3f} {ci} |")
    return "\n".join(lines)


def channel_label(data: Path, stream: str, subset: str) -> str:
    if stream != "imu":
        return ""
    from pipelines.shards.format import read_manifest

    chans = [str(c) for c in read_manifest(data)["streams"]["imu"].get("channels", [])]
    groups = list(dict.fromkeys(c.split("_")[0] for c in chans))
    return f"{' + '.join(groups)}{' only' if subset != 'all' else ''}, {len(chans)}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(ap)
    ap.add_argument("--streams", default="imu", help="target streams, comma-separated (default imu)")
    ap.add_argument("--channels", default="all,acc,gyr", help="IMU channel sets: all, acc, gyr (default all three)")
    ap.add_argument("--seeds", default="0,1", help="OOD seeds (default 0,1; empty: no OOD jobs)")
    ap.add_argument("--folds", type=int, default=5, help="OOD folds (default 5: one subject each)")
    ap.add_argument("--id-seeds", default="0,1", help="ID seeds (default 0,1; empty: no ID jobs)")
    ap.add_argument("--id-folds", type=int, default=5,
                    help="ID blocked K-fold (default 5; 0: one random split per seed)")
    ap.add_argument("--epochs", type=int, help="dcat's epochs (default: TrainConfig's, 20)")
    a = ap.parse_args(argv)
    sets = [c for c in a.channels.split(",") if c]
    bad = [c for c in sets if c not in ("all", *SUBSETS)]
    if bad:
        ap.error(f"unknown channel set(s) {bad}: choose among all, {', '.join(SUBSETS)}")
    import torch

    torch.set_num_threads(1)
    work = common.work_dir(a.work, "dcat-classical-")
    data = common.shards(a.data, work, log)
    log(f"work folder {work}")
    js = jobs([int(x) for x in a.seeds.split(",") if x], a.folds, [int(x) for x in a.id_seeds.split(",") if x],
              a.id_folds)
    extra = {"epochs": a.epochs} if a.epochs else {}
    t0, rows, summary = time.time(), {}, []
    for cs in sets:
        d = data if cs == "all" else work / f"shards-{cs}"
        if cs != "all":
            log(f"{cs}: IMU channels {subset_shards(data, d, cs)} -> {d}")
        rows[cs] = [run_pair(d, work / cs, stream, j, extra) for stream in a.streams.split(",") for j in js]
        summary += summarize(rows[cs], {s: channel_label(d, s, cs) for s in a.streams.split(",")})
    res = {"summary": summary, "rows": rows, "seconds": time.time() - t0}
    from pipelines.core.io import atomic_write_text

    atomic_write_text(work / "classical.json", common.dumps(res))
    common.emit(res, table(summary), a.json)
    if not a.json:
        print(f"total {res['seconds']:.0f} s; rows in {work / 'classical.json'}")


if __name__ == "__main__":
    main()
