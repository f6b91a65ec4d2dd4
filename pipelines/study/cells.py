"""One cell of the grid: train it (``pretrain`` or ``transfer``), evaluate it on its test, validation
and training parts, and write ``cell.json`` (its settings and its result row, last and atomically: a
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
_SPLIT_KEYS = ("val_frac", "test_frac", "block_s", "guard_s")


def _eval_f1(run_dir: Path, part: str, threads: int, device: str, write: bool = False) -> dict:
    from pipelines.learn.evaluate import evaluate_run

    try:
        return evaluate_run(run_dir, split=part, threads=threads, device=device, write=write)
    except DcatError:
        return {"macro_f1": None, "accuracy": None, "n_windows": 0}


def _training(st: dict, src_dirs: dict, common: dict) -> tuple[Callable[..., dict], object]:
    """The cell's training: (``pretrain``, its TrainConfig) for a source, (``transfer``, its
    TransferConfig) otherwise."""
    from pipelines.learn.config import TrainConfig, TransferConfig
    from pipelines.learn.pretrain import pretrain
    from pipelines.learn.transfer import transfer

    split = {"split": st["split"], "seed": st["seed"], "split_seed": st["seed"]}
    if st["split"] == "ood":
        split.update(fold=st["fold"], folds=st["folds"])
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


def _result_row(cell: dict, st: dict, info: dict, test: dict, val: dict, tr: dict, out: Path, t0: float) -> dict:
    """The cell's row of ``results.csv`` (``pipelines.study.report.COLUMNS``); no source F1 yet."""
    gap = (tr["macro_f1"] - val["macro_f1"]) if (tr["macro_f1"] is not None and val["macro_f1"] is not None) else None
    u = cell["unit"]
    test_subjects = ";".join(test.get("subjects", [])) if st["split"] == "ood" else ""
    return {"cell": cell["cell"], "role": cell["role"], "split": st["split"], "fold": u["fold"],
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


def run_cell(cell: dict, data: str, run_dir: str, src_dirs: dict, threads: int, device: str) -> dict:
    """Train and evaluate one cell; write ``cell.json``; return its result row (without the
    source's F1, which the caller fills in). A run cut off before its end resumes from ``last.pt``."""
    from pipelines.core.io import atomic_write_text

    out = Path(run_dir)
    st = dict(cell["settings"])
    resume = (out / "last.pt").is_file() and (out / "config.json").is_file()
    common = dict(data=data, out=str(out), threads=threads, device=device, resume=resume, overwrite=not resume)
    train, config = _training(st, src_dirs, common)
    t0 = time.perf_counter()
    info = train(config)
    test = _eval_f1(out, "test", threads, device, write=True)
    val = _eval_f1(out, "val", threads, device)
    tr = _eval_f1(out, "train", threads, device)
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
    """Set each transfer row's ``src_test_macro_f1`` from its unit's source row (one source only)."""
    src = {(r["cell"].split("/")[0], r["tgt"]): r["test_macro_f1"] for r in rows if r["role"] == "source"}
    for r in rows:
        if r["role"] == "transfer" and r["src"] and "+" not in r["src"]:
            r["src_test_macro_f1"] = src.get((r["cell"].split("/")[0], r["src"]))
    return rows
