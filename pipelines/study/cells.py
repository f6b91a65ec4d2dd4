"""One cell of the grid: train it (``pretrain``, ``transfer``, or the classical reference
``features-rf``), evaluate it on its test, validation and training parts, and write ``cell.json`` (its settings and its result row, last and atomically: a
cell with a ``cell.json`` is finished). Runs in a worker process; torch is imported by the training
functions only.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from pipelines import __version__
from pipelines.core.errors import DcatError
from pipelines.study.spec import TRAIN_KEYS, ExperimentError
from pipelines.core.io import to_json

#: split settings that ``[train]`` may hold; a source's run takes them, a transfer uses its sources' split
_SPLIT_KEYS = ("val_frac", "test_frac", "block_s", "guard_s", "protocol")


def _eval_f1(run_dir: Path, part: str, threads: int, device: str, write: bool = False) -> dict:
    from pipelines.learn.evaluate import evaluate_run

    try:
        return evaluate_run(run_dir, split=part, threads=threads, device=device, write=write)
    except DcatError:
        return {"macro_f1": None, "accuracy": None, "n_windows": 0}


def _split_settings(st: dict) -> dict:
    """The split of a cell's own run: the unit's fold (none for ``id`` with one split) drawn with the
    grid's ``split_seed``, the same for every training seed."""
    split = {"split": st["split"], "seed": st["seed"], "split_seed": st["split_seed"]}
    if st.get("folds"):
        split.update(fold=st["fold"], folds=st["folds"])
    return split


def _training(st: dict, src_dirs: dict, common: dict) -> tuple[Callable[..., dict], object]:
    """The cell's training: (``pretrain``, its TrainConfig) for a stream alone, (``transfer``, its
    TransferConfig) otherwise."""
    from pipelines.learn.config import TrainConfig, TransferConfig
    from pipelines.learn.pretrain import pretrain
    from pipelines.learn.transfer import transfer

    split = _split_settings(st)
    train = {k: v for k, v in st.items() if k in TRAIN_KEYS and k != "norm"}
    split.update({k: train.pop(k) for k in _SPLIT_KEYS if k in train})
    if st["stage"] == "pretrain":
        return pretrain, TrainConfig(modality=st["modality"], **split, **train, **common)
    kw = dict(src=",".join(st["src"]), tgt=st["tgt"], method=st["method"], lam=st["lam"], mcma=st["mcma"],
              src_ckpt=",".join(str(Path(src_dirs[s]) / "best.pt") for s in st["src"]),
              misalign=st.get("misalign"))
    if "temperature" in st:
        kw["temperature"] = st["temperature"]
    if st.get("norm"):
        kw["norm"] = st["norm"]
    # the split is the sources' (each source pretrained on this unit's split)
    return transfer, TransferConfig(**kw, seed=st["seed"], **train, **common)  # no split options: the sources


def _fingerprint(*parts: dict) -> str | None:
    """A short hash of the confusion matrices of the test, validation and training parts: two cells
    with the same fingerprint gave the same predictions' counts on every part (identical results)."""
    import hashlib

    conf = [p.get("confusion") for p in parts]
    if any(c is None for c in conf):
        return None
    return hashlib.sha256(to_json(conf).encode()).hexdigest()[:16]


def _subject_f1(test: dict) -> str:
    """The test part's macro-F1 per subject as JSON (``{"s01": 0.81, ...}``; empty when unknown):
    what the subject-level cluster bootstrap of the report resamples."""
    per = test.get("per_subject") or {}
    return to_json({s: v.get("macro_f1") for s, v in sorted(per.items())}) if per else ""


def _result_row(cell: dict, st: dict, info: dict, test: dict, val: dict, tr: dict, out: Path, t0: float) -> dict:
    """The cell's row of ``results.csv`` (``pipelines.study.report.COLUMNS``); no source F1 yet."""
    gap = (tr["macro_f1"] - val["macro_f1"]) if (tr["macro_f1"] is not None and val["macro_f1"] is not None) else None
    u = cell["unit"]
    test_subjects = ";".join(test.get("subjects", [])) if st["split"] == "ood" else ""
    is_tx = st["stage"] == "transfer"
    return {"cell": cell["cell"], "role": cell["role"], "split": st["split"], "fold": u["fold"],
            "test_subjects": test_subjects, "seed": u["seed"], "train_seed": st["seed"],
            "tgt": st.get("modality") or st["tgt"], "src": "+".join(st.get("src", [])) if is_tx else "",
            "method": st["method"] if is_tx else st["stage"],
            "lam": st["lam"] if is_tx and st["method"] != "none" else None,
            "mcma": st["mcma"] if is_tx and st["method"] != "none" else None,
            "temperature": st.get("temperature"), "shift_stream": st.get("shift_stream", ""),
            "shift_s": float(st.get("shift_s", 0.0)), "keep_rate": info.get("keep_rate") if is_tx else None,
            "test_macro_f1": test["macro_f1"], "test_acc": test.get("accuracy"), "val_macro_f1": val["macro_f1"],
            "train_macro_f1": tr["macro_f1"], "gap": gap, "src_test_macro_f1": None,
            "epochs_run": info.get("epochs_run"), "best_epoch": info.get("best_epoch"),
            "seconds": time.perf_counter() - t0, "run_dir": str(out), "n_test": test.get("n_windows"),
            "test_subject_f1": _subject_f1(test), "fingerprint": _fingerprint(test, val, tr)}


def _train_and_evaluate(st: dict, out: Path, data: str, src_dirs: dict, threads: int, device: str,
                        resume: bool) -> tuple[dict, dict, dict, dict]:
    """Train the cell's run and evaluate it: (info, test, val, train reports). A source that an MCMA
    transfer reads has ``oof_folds`` in its settings: its pretraining then computes its out-of-fold
    correctness once (:func:`pipelines.learn.crossfit.ensure_oof`), and the transfers only read it."""
    common = dict(data=data, out=str(out), threads=threads, device=device, resume=resume, overwrite=not resume)
    train, config = _training(st, src_dirs, common)
    info = train(config)
    test = _eval_f1(out, "test", threads, device, write=True)
    return info, test, _eval_f1(out, "val", threads, device), _eval_f1(out, "train", threads, device)


def _reference(st: dict, out: Path, data: str, src_dirs: dict, threads: int) -> tuple[dict, dict, dict, dict]:
    """The classical reference (``features-rf``) on the split of the target's baseline run (its
    folder in ``src_dirs``): (info, test, val, train)."""
    from pipelines.learn.classical import fit_features_rf
    from pipelines.learn.config import TrainConfig

    split = _split_settings(st)
    train = {k: v for k, v in st.items() if k in TRAIN_KEYS and k != "norm"}
    split.update({k: train.pop(k) for k in _SPLIT_KEYS if k in train})
    cfg = TrainConfig(modality=st["modality"], data=data, out=str(out), threads=threads, device="cpu",
                      overwrite=True, **split, **train)
    res = fit_features_rf(cfg, split_from=src_dirs.get(st["modality"]))
    empty = {"macro_f1": None, "accuracy": None, "n_windows": 0}
    return {}, res.get("test", empty), res.get("val", empty), res.get("train", empty)


def run_cell(cell: dict, data: str, run_dir: str, src_dirs: dict, threads: int, device: str) -> dict:
    """Train and evaluate one cell; write ``cell.json``; return its result row (without the
    source's F1, which the caller fills in). A run cut off before its end resumes from ``last.pt``."""
    from pipelines.core.io import atomic_write_text

    out = Path(run_dir)
    st = dict(cell["settings"])
    t0 = time.perf_counter()
    if st["stage"] == "features-rf":
        out.mkdir(parents=True, exist_ok=True)
        info, test, val, tr = _reference(st, out, data, src_dirs, threads)
    else:
        resume = (out / "last.pt").is_file() and (out / "config.json").is_file()
        info, test, val, tr = _train_and_evaluate(st, out, data, src_dirs, threads, device, resume)
    row = _result_row(cell, st, info, test, val, tr, out, t0)
    atomic_write_text(out / "cell.json", to_json({"tool_version": __version__, "cell": cell["cell"],
                                                    "settings": st, "row": row}, indent=1))
    return row


def cell_state(cell: dict, run_dir: Path, overwrite: bool) -> tuple[str, dict | None]:
    """("done", row) for a finished cell with the same settings, ("todo", None) otherwise; a finished
    cell with other settings is refused unless ``overwrite``."""
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


def fill_source_f1(rows: list[dict]) -> list[dict]:
    """Set each transfer row's ``src_test_macro_f1`` from its unit's pretrained run of the source
    stream (a ``source`` row, or the ``baseline`` row of a stream that is a target too; with
    ``shared_sources`` the fold's source run; one source only)."""
    alone = [r for r in rows if r["role"] in ("source", "baseline")]
    src = {(r["cell"].split("/")[0], r["tgt"]): r["test_macro_f1"] for r in alone}
    per_fold = {(r["split"], r["fold"], r["tgt"]): r["test_macro_f1"] for r in alone if r["role"] == "source"}
    for r in rows:
        if r["role"] == "transfer" and r["src"] and "+" not in r["src"]:
            # the unit's own source run, or the fold's shared one (shared_sources)
            r["src_test_macro_f1"] = src.get((r["cell"].split("/")[0], r["src"]),
                                             per_fold.get((r["split"], r["fold"], r["src"])))
    return rows
