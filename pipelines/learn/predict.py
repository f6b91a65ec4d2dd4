"""Per-window predictions from a run's model, reading its stream alone (no source sensor, no source weights).

``predict(run_dir, input)`` accepts

- a shards directory (``manifest.json``) or a single shard file (``*.h5``): every window;
- a raw recording folder (``meta.json``): it is preprocessed on the fly, into a temporary folder,
  with the preprocessing settings stored in the checkpoint and only the model's stream. Every window
  is predicted (no label gate); when the recording is labelled (meta.json's ``label`` or its labels
  file), each window's ``label`` is its majority label if that covers at least the checkpoint's
  ``--min-purity`` of the window (the rule training windows pass), else "".

Rows: ``recording_id, subject, start_s, end_s, pred, prob`` (softmax probability of ``pred``),
``label`` (the window's label: from the shard, or for a raw folder as above; "" when unknown), and
``prob_<class>`` per class.
"""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import numpy as np

from pipelines.learn.checkpoint import check_data, load_checkpoint, model_from_checkpoint
from pipelines.learn.data import BlockDataset, ShardSet, make_loader
from pipelines.core.errors import DcatError
from pipelines.core.io import to_json

FORMATS = ("csv", "jsonl")


def _preprocess_recording(rec_dir: Path, out_dir: Path, ck: dict) -> Path:
    """Run the project's preprocessing on one recording with the checkpoint's settings; return the shard."""
    try:
        from pipelines.ingest.preprocess import PreprocessConfig, process_recording
    except ImportError as e:  # pragma: no cover - preprocessing not installed
        raise DcatError(f"{rec_dir}: cannot preprocess a raw recording here ({e}); run `dcat preprocess` "
                        "elsewhere and predict on the shards") from e
    import dataclasses

    pre = dict(ck.get("data", {}).get("preprocess") or {})
    names = {f.name for f in dataclasses.fields(PreprocessConfig)}
    kw = {k: v for k, v in pre.items() if k in names}
    if "video_size" in kw and isinstance(kw["video_size"], list):
        kw["video_size"] = tuple(kw["video_size"])
    kw["streams"] = (ck["stream"],)
    kw["labels"] = "ignore"  # deployment: the recording need not be labelled
    cfg = PreprocessConfig(**kw)
    process_recording(Path(rec_dir), Path(out_dir), cfg)
    shards = sorted(p for p in Path(out_dir).glob("*.h5") if not p.name.startswith("."))
    if not shards:
        raise DcatError(f"{rec_dir}: preprocessing produced no shard (no window passed the quality gate?)")
    return shards[0]


def _raw_labels(rec_dir: Path, starts: np.ndarray, ck: dict) -> list[str]:
    """The label of each window starting at ``starts`` (recording clock) of a raw recording, from its
    meta.json ``label`` or labels file: the majority label where it covers at least ``min_purity``
    of the window, else ""; all "" when the recording has no labels."""
    from pipelines.ingest.config import PreprocessConfig
    from pipelines.ingest.raw import load_recording, read_segments
    from pipelines.ingest.windows import label_windows

    pre = {**{k: v for k, v in vars(PreprocessConfig()).items() if k in ("window_s", "min_purity")},
           **(ck.get("data", {}).get("preprocess") or {})}
    rec = load_recording(Path(rec_dir), need_labels=False)
    if not rec.label and rec.labels_file is None:
        return [""] * len(starts)
    segs = read_segments(rec)
    labels, purity = label_windows(np.asarray(starts, np.float64), float(pre["window_s"]), rec, segs)
    min_purity = float(pre["min_purity"])
    return [str(lab) if pur >= min_purity - 1e-6 else "" for lab, pur in zip(labels, purity)]


def predict(run_dir: str | Path, input_path: str | Path, *, device: str = "auto", batch_size: int = 64,
            checkpoint: str = "best.pt", threads: int = 1) -> dict:
    """Predict every window of ``input_path``; returns ``{"rows": [...], "classes", "stream", "input"}``."""
    from pipelines.learn.device import configure_threads, resolve_device
    from pipelines.learn.engine import run_inference

    run_dir = Path(run_dir)
    ck_path = run_dir if run_dir.suffix == ".pt" else run_dir / checkpoint
    ck = load_checkpoint(ck_path)
    stream = ck["stream"]
    inp = Path(input_path)
    tmp = None
    raw = inp.is_dir() and (inp / "meta.json").is_file()
    try:
        if raw:
            tmp = tempfile.TemporaryDirectory(prefix="dcat-predict-")
            source = _preprocess_recording(inp, Path(tmp.name), ck)
        elif (inp.is_dir() and (inp / "manifest.json").is_file()) or (inp.is_file() and inp.suffix == ".h5"):
            source = inp
        else:
            raise DcatError(f"{inp}: not a shards directory (manifest.json), a shard file (*.h5) or a raw recording "
                            "folder (meta.json)")
        shards = ShardSet(source, [stream], classes=ck["classes"], unknown_labels="ignore")
        check_data(ck, shards.manifest, str(inp), stream)
        ids = np.arange(len(shards), dtype=np.int64)
        dev = resolve_device(device)
        configure_threads(threads, dev)
        model = model_from_checkpoint(ck).to(dev)
        ds = BlockDataset(shards, ids, [stream], batch_size, frames={stream: ck["data"].get("frames")})
        r = run_inference(model, make_loader(ds, 0), dev, stream)
        ds.close()
    finally:
        if tmp is not None:
            tmp.cleanup()
    import torch

    logits = torch.from_numpy(r["logits"])
    prob = torch.softmax(logits, dim=1).numpy() if len(logits) else np.zeros((0, len(ck["classes"])))
    order = np.argsort(r["idx"], kind="stable")
    rows = []
    classes = ck["classes"]
    for k in order:
        g = int(ids[r["idx"][k]])
        rec = shards.recordings[int(shards.rec[g])]
        w = int(shards.win[g])
        p = int(prob[k].argmax())
        row = {"recording_id": rec.recording_id, "subject": rec.subject, "start_s": round(float(rec.start_s[w]), 6),
               "end_s": round(float(rec.end_s[w]), 6), "pred": classes[p], "prob": float(prob[k, p]),
               "label": str(rec.labels[w])}
        row.update({f"prob_{c}": float(prob[k, i]) for i, c in enumerate(classes)})
        rows.append(row)
    if raw:
        for row, lab in zip(rows, _raw_labels(inp, np.array([r["start_s"] for r in rows]), ck)):
            row["label"] = lab
    return {"rows": rows, "classes": classes, "stream": stream, "input": str(inp), "checkpoint": str(ck_path)}


def format_rows(rows: list[dict], fmt: str = "csv") -> str:
    """CSV (header row) or JSON lines."""
    if fmt not in FORMATS:
        raise DcatError(f"--format {fmt}: choose csv or jsonl")
    if fmt == "jsonl":
        return "".join(to_json(r) + "\n" for r in rows)
    if not rows:
        return ""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if k.startswith("prob") else v) for k, v in r.items()})
    return buf.getvalue()


__all__ = ["predict", "format_rows", "FORMATS"]
