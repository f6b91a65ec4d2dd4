"""Epoch selection: the former rule against the default, on the imu baseline (README, *Epoch selection*).

    python benchmarks/selection.py --seeds 10 --epochs 20 --work /tmp/sel    # the README's table
    python benchmarks/selection.py --seeds 2 --epochs 4 --subjects s01,s02   # smoke test, ~15 s
    python benchmarks/selection.py --traces /tmp/sel/traces.json --json      # re-analyse saved traces
    python benchmarks/selection.py --seeds 10 --work /tmp/sel --verify s01/0,s03/7   # + real runs

What it measures: how much the test macro-F1 of one baseline varies with the seed under each rule.
For every held-out subject S (default: all subjects of the shards) and seed N it trains the imu
baseline out of distribution, the equivalent of

    dcat pretrain -m imu --split ood --test-subjects S --split-seed 0 --seed N --val-frac 0.15 \\
        --block-s 10 --guard-s 0.25 --ood-val subjects --epochs E --patience 0 --threads 1

all ``E`` epochs (``--patience 0``: an early stop only truncates a run, because the learning-rate
schedule spans ``--epochs`` and the data order depends on (seed, epoch)), and after every epoch it
evaluates that epoch's weights (``last.pt``) on the test part (``evaluate_run``, torch RNG forked so
the run trains exactly as a plain ``dcat pretrain``). The trace (validation macro-F1 and loss, test
macro-F1 per epoch) is saved in ``WORK/traces.json``; a run already there is not trained again.
Then each rule is applied to the validation curves with the library's own rule
(``pipelines.learn.selection.judge_epoch``, what ``fit.py`` runs), which gives the epoch it keeps
and the epochs it runs; the test macro-F1 of the kept epoch is the run's score. The test part never
enters a selection. ``--verify S/N,...`` then trains those runs for real with each rule (plain
``pretrain``, patience 6) and checks that their kept epoch, epochs run and test macro-F1 equal the
trace's.

Rules: former (``--val-smooth 1 --min-epochs 0 --patience 6``) and default (``--val-smooth 3
--min-epochs`` 3/4 of ``E``, i.e. 15 of 20, ``--patience 6``). Printed per rule: the SD of test
macro-F1 across seeds (per subject, ddof 1, then the mean over subjects), the mean absolute
difference of two seeds of one subject (and its max), the mean test macro-F1 (mean over subjects of
the mean over seeds), epochs run; then the change (default - former) of the SD and of the mean with
a 95% paired bootstrap over seeds (2000 resamples, seeds drawn per subject, numpy seed 0), for the
first half of the seeds, the second half, and all (in that order, from one generator).

Time: 10 seeds x 5 subjects x 20 epochs are 50 runs, about 10 min on 2 busy CPU cores
(``--verify`` adds two plain runs per key).
The README's figures: ``python benchmarks/selection.py --seeds 10 --epochs 20`` on the bundled data.
Their 50 traces were recorded by the same procedure except that the per-epoch test evaluation did
not yet fork the torch RNG (dropout masks after the first epoch differed from plain runs), and the
rules were then applied by a copy of the rule that broke ties of the score on the epoch's own
validation loss instead of the mean over the same epochs; on those traces this changes one of the
100 selections (s03 seed 1, default rule: epoch 19 vs 18, 1-based), and ``--traces`` on them gives the
README's figures except the SD change's lower bound (-0.0244 here, -0.0246 there); the former
rule's mean seed difference is 0.0585 in both (printed 0.058 here).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np

import common

BOOT = 2000


log = common.log


def rules(epochs: int) -> dict:
    from pipelines.learn.selection import SelectionRule, default_min_epochs

    return {"former (--val-smooth 1 --min-epochs 0)": SelectionRule(smooth=1, min_epochs=0, patience=6),
            f"default (--val-smooth 3 --min-epochs {default_min_epochs(epochs)})":
                SelectionRule(smooth=3, min_epochs=default_min_epochs(epochs), patience=6)}


def select(rows: list[dict], rule) -> tuple[int, int]:
    """(kept epoch, epochs run) of a run whose validation curve is ``rows`` under ``rule``."""
    from pipelines.learn.selection import FitState, judge_epoch

    st = FitState()
    for r in rows:
        judge_epoch(st, r["epoch"], r["val_f1"], r["val_loss"], rule, len(rows))
        if st.stopped_early:
            break
    return st.best_epoch, st.epoch + 1


def trace_run(data: Path, runs: Path, subject: str, seed: int, epochs: int) -> list[dict]:
    """Train one baseline all ``epochs`` epochs; validation and test macro-F1 of every epoch."""
    import torch

    from pipelines.learn.config import TrainConfig
    from pipelines.learn.engine import Hooks
    from pipelines.learn.evaluate import evaluate_run
    from pipelines.learn.pretrain import pretrain

    run = runs / f"tr-{subject}-{seed}"
    rows: list[dict] = []

    class Trace(Hooks):
        def on_epoch_end(self, epoch: int, m: dict) -> None:
            with torch.random.fork_rng():  # evaluating must not move the training RNG
                t = evaluate_run(run, split="test", checkpoint="last.pt", write=False, threads=1)
            rows.append({"epoch": epoch, "val_f1": m["val_macro_f1"], "val_loss": m["val_loss"],
                         "test_f1": t["macro_f1"], "train_loss": m["train_loss"]})

    pretrain(TrainConfig(data=str(data), modality="imu", runs=str(runs), out=str(run), split="ood",
                         test_subjects=[subject], seed=seed, split_seed=0, val_frac=0.15, block_s=10.0,
                         guard_s=0.25, ood_val="subjects", epochs=epochs, patience=0, threads=1,
                         overwrite=True), Trace())
    return rows


def record(traces_path: Path, data: Path, runs: Path, subjects: list[str], seeds: list[int], epochs: int) -> dict:
    traces = json.loads(traces_path.read_text()) if traces_path.is_file() else {}
    from pipelines.core.io import atomic_write_text

    t0 = time.perf_counter()
    for subj in subjects:
        for seed in seeds:
            key = f"{subj}/{seed}"
            if key in traces and len(traces[key]) == epochs:
                continue
            traces[key] = trace_run(data, runs, subj, seed, epochs)
            atomic_write_text(traces_path, common.dumps(traces))
            log(f"{key} {time.perf_counter() - t0:.0f} s  val/test per epoch: "
                + " ".join(f"{r['val_f1']:.2f}/{r['test_f1']:.2f}" for r in traces[key]))
    return {f"{s}/{n}": traces[f"{s}/{n}"] for s in subjects for n in seeds}


def analyse(traces: dict, boot: int = BOOT) -> dict:
    """The figures of the module docstring from ``{"<subject>/<seed>": [per-epoch rows]}``."""
    subjects = sorted({k.split("/")[0] for k in traces})
    seeds = sorted({int(k.split("/")[1]) for k in traces})
    epochs = min(len(v) for v in traces.values())
    out: dict = {"subjects": subjects, "seeds": seeds, "epochs": epochs, "rules": {}}
    sel = {}
    for name, rule in rules(epochs).items():
        X, ran = {}, []
        for s in subjects:
            xs = []
            for n in seeds:
                rows = traces[f"{s}/{n}"][:epochs]
                e, n_run = select(rows, rule)
                xs.append(rows[e]["test_f1"])
                ran.append(n_run)
            X[s] = np.array(xs)
        sel[name] = X
        pd = [abs(a - b) for s in subjects for a, b in itertools.combinations(X[s], 2)]
        out["rules"][name] = {
            "rule": rule.to_dict(), "sd_test_f1": float(np.mean([np.std(X[s], ddof=1) for s in subjects])),
            "mean_abs_seed_diff": float(np.mean(pd)), "max_abs_seed_diff": float(np.max(pd)),
            "mean_test_f1": float(np.mean([X[s].mean() for s in subjects])), "mean_epochs_run": float(np.mean(ran)),
            "per_subject_sd": {s: float(np.std(X[s], ddof=1)) for s in subjects}}
    a, b = sel.values()
    rng = np.random.default_rng(0)

    def stat(idx: dict) -> tuple[float, float]:
        return (float(np.mean([np.std(b[s][idx[s]], ddof=1) - np.std(a[s][idx[s]], ddof=1) for s in subjects])),
                float(np.mean([b[s][idx[s]].mean() - a[s][idx[s]].mean() for s in subjects])))

    pos = np.arange(len(seeds))  # positions of the seeds in X[s]
    half = len(seeds) // 2
    out["change"] = {}
    for part in (pos[:half], pos[half:], pos):
        if len(part) < 2:
            continue
        full = stat({s: part for s in subjects})
        bs = np.array([stat({s: rng.choice(part, len(part)) for s in subjects}) for _ in range(boot)])
        lo, hi = np.percentile(bs, [2.5, 97.5], axis=0)
        label = f"seeds {seeds[part[0]]}-{seeds[part[-1]]}"
        out["change"][label] = {"sd": full[0], "sd_ci": [float(lo[0]), float(hi[0])],
                                "mean": full[1], "mean_ci": [float(lo[1]), float(hi[1])]}
    return out


def verify(traces: dict, keys: list[str], data: Path, runs: Path) -> list[dict]:
    """Real ``pretrain`` runs with each rule (``--val-smooth``, ``--min-epochs``, ``--patience 6``):
    their kept epoch, epochs run and test macro-F1 must equal what :func:`analyse` derives from the trace."""
    from pipelines.learn.config import TrainConfig
    from pipelines.learn.evaluate import evaluate_run
    from pipelines.learn.pretrain import pretrain

    out = []
    for key in keys:
        subj, seed = key.split("/")
        rows = traces[key]
        for name, rule in rules(len(rows)).items():
            run = runs / f"verify-{rule.smooth}-{rule.min_epochs}-{subj}-{seed}"
            info = pretrain(TrainConfig(data=str(data), modality="imu", runs=str(runs), out=str(run), split="ood",
                                        test_subjects=[subj], seed=int(seed), split_seed=0, val_frac=0.15,
                                        block_s=10.0, guard_s=0.25, ood_val="subjects", epochs=len(rows),
                                        patience=rule.patience, val_smooth=rule.smooth, min_epochs=rule.min_epochs,
                                        threads=1, overwrite=True))
            test_f1 = evaluate_run(run, split="test", write=False, threads=1)["macro_f1"]
            e, n_run = select(rows, rule)
            real = (info["best_epoch"], info["epochs_run"], round(test_f1, 6))
            trace = (e, n_run, round(rows[e]["test_f1"], 6))
            out.append({"run": key, "rule": name, "real": real, "trace": trace, "equal": real == trace})
            log(f"verify {key} {name}: real (kept epoch, epochs run, test F1) {real}, from the trace {trace}")
    return out


def table(res: dict) -> str:
    lines = [f"imu baseline, out of distribution: {len(res['subjects'])} held-out subjects x {len(res['seeds'])} "
             f"seeds, {res['epochs']} epochs", "",
             "| rule | SD of test macro-F1 across seeds (mean over subjects) | mean abs. difference of two seeds (max)"
             " | mean test macro-F1 | epochs run (mean) |", "|---|---|---|---|---|"]
    for name, r in res["rules"].items():
        lines.append(f"| {name} | {r['sd_test_f1']:.3f} | {r['mean_abs_seed_diff']:.3f} ({r['max_abs_seed_diff']:.3f})"
                     f" | {r['mean_test_f1']:.3f} | {r['mean_epochs_run']:.1f} |")
    lines.append("")
    for label, c in res["change"].items():
        lines.append(f"Change (default - former), {label}, 95% paired bootstrap over seeds: "
                     f"SD {c['sd']:+.3f} [{c['sd_ci'][0]:+.3f}, {c['sd_ci'][1]:+.3f}], "
                     f"mean {c['mean']:+.3f} [{c['mean_ci'][0]:+.3f}, {c['mean_ci'][1]:+.3f}]")
    for v in res.get("verify", []):
        lines.append(f"verify {v['run']} {v['rule']}: real run {v['real']}, trace {v['trace']}: "
                     + ("equal" if v["equal"] else "DIFFERENT"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(ap)
    ap.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 per subject (default 10)")
    ap.add_argument("--epochs", type=int, default=20, help="epochs per run (default 20)")
    ap.add_argument("--subjects", help="held-out subjects, comma-separated (default: every subject of the shards)")
    ap.add_argument("--traces", help="only analyse this traces JSON (no training)")
    ap.add_argument("--verify", help="also train these runs (SUBJECT/SEED, comma-separated) with each rule for "
                                     "real and compare with the trace (needs the training mode)")
    ap.add_argument("--boot", type=int, default=BOOT, help=f"bootstrap resamples (default {BOOT})")
    a = ap.parse_args(argv)
    if a.traces:
        traces = json.loads(Path(a.traces).read_text())
    else:
        work = common.work_dir(a.work, "dcat-selection-")
        data = common.shards(a.data, work, log)
        if a.subjects:
            subjects = a.subjects.split(",")
        else:
            from pipelines.shards.format import read_manifest

            subjects = sorted(read_manifest(data)["windows_per_subject"])
        log(f"work folder {work}; {len(subjects)} subjects x {a.seeds} seeds x {a.epochs} epochs")
        traces = record(work / "traces.json", data, work / "runs", subjects, list(range(a.seeds)), a.epochs)
    res = analyse(traces, a.boot)
    if a.verify and not a.traces:
        res["verify"] = verify(traces, a.verify.split(","), data, work / "runs")
    common.emit(res, table(res), a.json)


if __name__ == "__main__":
    main()
