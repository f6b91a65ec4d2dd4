"""Evaluation of a run's model on one part of its split: macro-F1 (the paper's metric), accuracy,
per-class precision / recall / F1, confusion matrix; ``report.json`` and a confusion-matrix PNG.

Evaluation reads only the model's own stream (the target stream after transfer): it works on
shards that hold no source stream at all (unimodal deployment). Windows are matched to the run's
``split.json`` by recording id and time, so any shards of the same recordings can be used;
``split="all"`` evaluates every window of the shards (e.g. a new dataset).

Macro-F1 averages the F1 of the classes that occur in the true labels of the evaluated windows
(:mod:`pipelines.learn.metrics`): a set fixed by the test set, the same for every model evaluated
on it; a class only predicted is not averaged, but its windows count as misses of their true
classes. Per subject: the classes in that subject's true labels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipelines.core.errors import DcatError
from pipelines.core.io import atomic_path, atomic_write_text, to_json
from pipelines.learn.checkpoint import check_data, load_checkpoint, model_from_checkpoint
from pipelines.learn.data import BlockDataset, ShardSet, make_loader
from pipelines.learn.device import configure_threads, resolve_device
from pipelines.learn.engine import run_inference
from pipelines.learn.metrics import classification_metrics
from pipelines.learn.runs import read_config
from pipelines.learn.splits import PARTS, apply_split, load_split

EVAL_PARTS = PARTS + ("all",)


class EvaluationError(DcatError):
    """Nothing to evaluate, or a run that cannot be evaluated."""


def plot_confusion(cm, classes: list[str], path: Path, title: str = "") -> None:
    """Row-normalised confusion matrix with counts, as a PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm, dtype=np.float64)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * n, 0.8 + 0.6 * n), dpi=100)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp)
    plt.close(fig)


def evaluate_run(run_dir: str | Path, data: str | Path | None = None, split: str = "test", device: str = "auto",
                 batch_size: int = 64, write: bool = True, checkpoint: str = "best.pt", threads: int = 1) -> dict:
    """Evaluate ``run_dir/<checkpoint>`` on part ``split`` of the run's split, reading only its stream.

    ``data``: shards directory (default: the one the run was trained on, recorded in config.json).
    Returns the report for this part; with ``write``, merges it into ``run_dir/report.json`` under
    the part's name and writes ``confusion-<part>.png``.
    """
    run_dir = Path(run_dir)
    if split not in EVAL_PARTS:
        raise EvaluationError(f"--split {split}: choose one of {', '.join(EVAL_PARTS)}")
    cfg = read_config(run_dir)
    if data is None:
        data = cfg.get("args", {}).get("data", "shards")
    ck = load_checkpoint(run_dir / checkpoint)
    stream = ck["stream"]
    shards = ShardSet(data, [stream], classes=ck["classes"])
    check_data(ck, shards.manifest, str(data), stream)
    if split == "all":
        ids = np.arange(len(shards), dtype=np.int64)
    else:
        ids = apply_split(shards, load_split(run_dir / "split.json"))[split]
    if len(ids) == 0:
        raise EvaluationError(f"{data}: no windows of the '{split}' part of {run_dir / 'split.json'} "
                              "(are these shards of other recordings?); use --split all to evaluate every window")
    dev = resolve_device(device)
    n_threads = configure_threads(threads, dev)
    model = model_from_checkpoint(ck).to(dev)
    frames = ck["data"].get("frames")
    ds = BlockDataset(shards, ids, [stream], batch_size, frames={stream: frames})
    r = run_inference(model, make_loader(ds, 0), dev, stream)
    ds.close()
    pred = r["logits"].argmax(1)
    met = classification_metrics(r["y"], pred, ck["classes"])
    g = ids[r["idx"]]
    subjects = shards.subject_of(g)
    per_subject = {}
    for s in sorted(set(subjects.tolist())):
        m = subjects == s
        ms = classification_metrics(r["y"][m], pred[m], ck["classes"])
        per_subject[s] = {"macro_f1": ms["macro_f1"], "accuracy": ms["accuracy"], "n_windows": ms["n_windows"]}
    report = {"run_dir": str(run_dir), "stage": cfg.get("stage"), "stream": stream, "split": split,
              "split_mode": cfg.get("split_mode") or load_split(run_dir / "split.json").get("mode"),
              "data": str(data), "checkpoint": checkpoint, "epoch": ck.get("epoch"), "threads": n_threads, **met,
              "per_subject": per_subject, "subjects": sorted(per_subject)}
    if write:
        rp = run_dir / "report.json"
        allrep = {}
        if rp.is_file():
            try:
                allrep = json.loads(rp.read_text())
            except json.JSONDecodeError:
                allrep = {}
        allrep[split] = report
        atomic_write_text(rp, to_json(allrep, indent=1))
        png = run_dir / f"confusion-{split}.png"
        plot_confusion(met["confusion"], ck["classes"], png,
                       f"{run_dir.name} {stream} {split}: macro-F1 {met['macro_f1']:.3f}")
        report["confusion_png"] = str(png)
    return report


def summarize_runs(runs_dir: str | Path, split: str = "test") -> list[dict]:
    """One row per run folder under ``runs_dir`` that has a ``report.json`` entry for ``split``:
    ``run, stage, stream, source (transfer only), split_mode, seed, macro_f1, accuracy, n_windows``
    (for a results table such as video alone / IMU alone / IMU with D-CAT, ID and OOD)."""
    rows = []
    for rp in sorted(Path(runs_dir).glob("*/report.json")):
        try:
            rep = json.loads(rp.read_text()).get(split)
            cfg = json.loads((rp.parent / "config.json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if not rep:
            continue
        args = cfg.get("args", {})
        rows.append({"run": rp.parent.name, "stage": cfg.get("stage"), "stream": rep.get("stream"),
                     "source": args.get("src") if cfg.get("stage") == "transfer" else None,
                     "split_mode": rep.get("split_mode"), "seed": args.get("seed"),
                     "macro_f1": rep.get("macro_f1"), "accuracy": rep.get("accuracy"),
                     "n_windows": rep.get("n_windows")})
    return rows
