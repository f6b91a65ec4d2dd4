"""Out-of-fold (OOF) correctness of a source, for MCMA: K-fold cross-fitting over its training part.

MCMA counts a source's transfer term only on windows the source classifies correctly. Judged by the
source itself on the windows it was fitted on, that is nearly every window (training macro-F1 is
about 1), so the mask would keep everything. Here each training window is judged by a copy of the
source that never saw it:

1. The source run's training windows (its ``split.json``) are grouped by recording and time block
   (the run's ``block_s``: a window belongs to the block holding its centre, as in
   :mod:`pipelines.learn.splits`), and the groups are dealt to ``K`` folds (in an order shuffled
   with the run's seed, largest first, each to the fold that keeps every class's share most even:
   a stratified group K-fold, :func:`assign_folds`).
2. For each fold, a copy of the source (same architecture, settings, seed, selection on the
   source's own validation part, and the source's number of optimizer steps: its epochs scaled
   by how many fewer windows the copy has, :func:`fold_epochs`) trains on the other folds'
   windows, minus those that overlap, or come within the run's ``guard_s`` of, a held-out window
   (the split's guard), and predicts the held-out fold with its best-validation weights.
3. A training window's correctness = its out-of-fold prediction == its label. A training window
   without a label (``--label-fraction``: the source run's hidden labels, the same windows for every
   run of the split) never trains a copy; it is judged by the confidence rule: right when the
   out-of-fold copy's top-class probability is at least ``--mcma-confidence`` (default 0.5).

The result is cached in the source run folder as ``oof-correct.npz`` (:data:`OOF_FILE`), keyed by
window identity (recording id, window start), with the settings it was computed with and their
hash (:func:`oof_settings`); :func:`ensure_oof` reuses it while the hash matches and recomputes it
otherwise. Writes are atomic and serialised by a lock file, so two transfers starting together
compute it once. The K^T V (or logits, embedding) a transfer aligns to still come from the full
source model; only the mask comes from here (:func:`oof_correctness`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from pipelines.core.errors import TrainingError
from pipelines.core.io import atomic_path, to_json
from pipelines.learn import distributed as ddp
from pipelines.learn.config import DEFAULT_OOF_FOLDS, MCMA_CONFIDENCE, TrainConfig, TransferConfig
from pipelines.learn.data import BlockDataset, ShardSet, make_loader
from pipelines.learn.device import configure_threads, resolve_device
from pipelines.learn.checkpoint import load_checkpoint
from pipelines.learn.engine import Hooks, ce_step, run_inference
from pipelines.learn.fit import fit
from pipelines.learn.labels import LabelledEpochs, label_plan
from pipelines.learn.models import build_model
from pipelines.learn.runs import read_config
from pipelines.learn.splits import apply_split, load_split
from pipelines.learn.stream_model import model_config_for, set_input_stats

#: how ``dcat transfer --mcma-correctness`` judges a source right on a training window
MCMA_CORRECTNESS = ("oof", "insample")
OOF_FILE = "oof-correct.npz"
OOF_VERSION = "2"  # 2: with each window's out-of-fold top-class probability ("conf")
LOCK_FILE = ".oof-correct.lock"
#: settings of a run that do not change what it learns (where it runs and how it is stored)
_MECHANICS = ("data", "runs", "out", "device", "threads", "workers", "compile", "resume", "overwrite", "oof_folds")
EPS_S = 1e-6


def window_keys(shards: ShardSet, ids, offset_s: float = 0.0) -> np.ndarray:
    """Window identity ``"<recording id>@<start in ms>"`` for global window ids ``ids`` (with
    ``offset_s``: of the window starting that much later in the same recording)."""
    ids = np.asarray(ids, np.int64)
    rids = np.array([r.recording_id for r in shards.recordings], dtype=object)
    ms = np.round((shards.start_s[ids] + offset_s) * 1000).astype(np.int64)
    return np.array([f"{r}@{m}" for r, m in zip(rids[shards.rec[ids]], ms)], dtype=str)


def fold_groups(shards: ShardSet, ids, block_s: float) -> np.ndarray:
    """Group number of each window in ``ids``: windows of one recording's time block of ``block_s``
    seconds (block of the window's centre, counted from the recording's first window) share one."""
    ids = np.asarray(ids, np.int64)
    rec = shards.rec[ids]
    first = np.array([r.start_s[0] if len(r.start_s) else 0.0 for r in shards.recordings])[rec]
    centre = (shards.start_s[ids] + shards.end_s[ids]) / 2
    blk = np.floor((centre - first) / block_s + EPS_S).astype(np.int64)
    _, group = np.unique(np.stack([rec, blk], axis=1), axis=0, return_inverse=True)
    return group.reshape(-1).astype(np.int64)


def assign_folds(groups: np.ndarray, k: int, seed: int, labels: np.ndarray | None = None) -> np.ndarray:
    """Fold (0..k-1) of each window; every group stays whole. Groups are taken in an order shuffled
    with ``seed`` (the largest first) and each goes to the fold where, after adding it, the folds'
    shares of each class (``labels``, class index per window) are most even, then the fold with the
    fewest windows (stratified group K-fold: with few windows, a fold that took most of a class's
    blocks would leave its copy of the source too few of them to learn that class)."""
    uniq, inv = np.unique(groups, return_inverse=True)
    inv = inv.reshape(-1)
    if len(uniq) < k:
        raise TrainingError(f"out-of-fold MCMA with {k} folds needs at least {k} time blocks in the source's "
                            f"training part, it has {len(uniq)}: use fewer --oof-folds, a smaller --block-s, or "
                            "--mcma-correctness insample")
    lab = np.zeros(len(groups), np.int64) if labels is None else np.maximum(np.asarray(labels, np.int64), 0)
    per = np.zeros((len(uniq), int(lab.max()) + 1), np.int64)  # windows per (group, class)
    np.add.at(per, (inv, lab), 1)
    total = np.maximum(per.sum(axis=0), 1)
    shuffled = np.random.default_rng([int(seed), 0x00F0]).permutation(len(uniq))
    order = shuffled[np.argsort(-per[shuffled].sum(axis=1), kind="stable")]
    counts = np.zeros((k, per.shape[1]), np.int64)
    fold_of = np.zeros(len(uniq), np.int64)
    for g in order:
        best = None
        for f in range(k):
            trial = counts.copy()
            trial[f] += per[g]
            key = (round(float((trial / total).std(axis=0).sum()), 12), int(trial[f].sum()), f)
            best = key if best is None or key < best else best
        fold_of[g] = best[2]
        counts[best[2]] += per[g]
    return fold_of[inv]


def guarded_training(shards: ShardSet, ids, held: np.ndarray, guard_s: float) -> np.ndarray:
    """Which windows of ``ids`` a fold model may train on: not held out, and neither overlapping nor
    closer than ``guard_s`` to a held-out window of the same recording (the split's guard rule)."""
    ids = np.asarray(ids, np.int64)
    ok = ~held
    rec, st, en = shards.rec[ids], shards.start_s[ids], shards.end_s[ids]
    for r in np.unique(rec[held]):
        h = held & (rec == r)
        cand = np.flatnonzero(ok & (rec == r))
        if len(cand) == 0:
            continue
        hs, he = st[h], en[h]
        near = ((st[cand, None] < he[None, :] + guard_s - EPS_S) & (hs[None, :] - guard_s < en[cand, None] - EPS_S))
        ok[cand[near.any(axis=1)]] = False
    return ok


def _train_config(run_dir: Path) -> tuple[TrainConfig, dict]:
    saved = read_config(run_dir)
    if saved.get("stage") != "pretrain":
        raise TrainingError(f"{run_dir}: out-of-fold correctness needs a `dcat pretrain` run folder (this one is "
                            f"'{saved.get('stage')}')")
    return TrainConfig.from_dict(saved.get("args", {})), saved


def oof_settings(run_dir: Path, shards: ShardSet, train_ids, folds: int) -> dict:
    """What the OOF correctness of the source run ``run_dir`` depends on: the folds, the run's
    training settings (not where it ran), its training windows and the shards' classes and settings."""
    cfg, _ = _train_config(run_dir)
    args = {k: v for k, v in cfg.to_dict().items() if k not in _MECHANICS}
    keys = window_keys(shards, train_ids)
    return {"version": OOF_VERSION, "folds": int(folds), "fold_budget": "the source's optimizer steps",
            "fold_assignment": "stratified group k-fold",
            "stream": cfg.modality, "train_config": args,
            "train_windows": int(len(keys)),
            "train_windows_sha256": hashlib.sha256("\n".join(keys.tolist()).encode()).hexdigest(),
            "classes": list(shards.classes), "data_settings": shards.settings}


def settings_hash(settings: dict) -> str:
    return hashlib.sha256(to_json(settings, sort_keys=True).encode()).hexdigest()


def read_oof(path: Path) -> dict:
    """An ``oof-correct.npz``: ``key``, ``label`` (-1: hidden), ``pred``, ``conf`` (top-class probability),
    ``fold``, ``correct`` per window, plus
    ``settings`` (dict), ``hash``, ``accuracy`` and ``seconds``."""
    with np.load(Path(path), allow_pickle=False) as z:
        out = {k: z[k] for k in ("key", "label", "pred", "conf", "fold", "correct")}
        out["settings"] = json.loads(str(z["settings_json"]))
        out["hash"] = str(z["hash"])
        out["accuracy"] = float(z["accuracy"])
        out["seconds"] = float(z["seconds"])
    return out


def _valid_cache(path: Path, want_hash: str) -> bool:
    if not path.is_file():
        return False
    try:
        return read_oof(path)["hash"] == want_hash
    except (OSError, ValueError, KeyError):
        return False  # unreadable or of an older layout: recompute


@contextlib.contextmanager
def _locked(run_dir: Path):
    """An exclusive lock on ``<run_dir>/.oof-correct.lock`` (POSIX; elsewhere no lock: the atomic
    write still keeps the file whole, and the last writer wins)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(Path(run_dir) / LOCK_FILE, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_oof(src_run_dir, data=None, threads: int = 1, device="auto", folds: int = DEFAULT_OOF_FOLDS,
               hooks: Hooks | None = None) -> Path:
    """The path of the source run's ``oof-correct.npz``, computed first (K = ``folds`` copies of the
    source trained and each evaluated on its held-out fold) unless a file with the same settings
    hash is there. ``data``: the shards directory (default: the one the run recorded).

    For the experiment grid (as part of the source cell) and ``dcat transfer``/``dcat pretrain``; one
    process only (under torchrun compute it first, e.g. with ``dcat pretrain --oof-folds K``)."""
    run_dir = Path(src_run_dir)
    hooks = hooks or Hooks()
    cfg, _ = _train_config(run_dir)
    if folds < 2:
        raise TrainingError(f"--oof-folds {folds}: out-of-fold correctness needs at least 2 folds")
    shards = ShardSet(data or cfg.data, [cfg.modality])
    ids = apply_split(shards, load_split(run_dir / "split.json"))
    scfg = cfg.split_config()
    labels = label_plan(shards, ids["train"], cfg.label_fraction, scfg.seed, scfg.fold)  # the run's hidden labels
    settings = oof_settings(run_dir, shards, ids["train"], folds)
    want = settings_hash(settings)
    path = run_dir / OOF_FILE
    if _valid_cache(path, want):
        return path
    with _locked(run_dir):
        if _valid_cache(path, want):  # another process finished it while this one waited
            return path
        if ddp.is_distributed():
            raise TrainingError(f"{run_dir}: the source's out-of-fold correctness ({OOF_FILE}) is missing or stale, "
                                "and it cannot be computed under torchrun: compute it first in one process "
                                f"(`dcat pretrain ... --oof-folds {folds} --resume` on that run), or use "
                                "--mcma-correctness insample")
        dev = resolve_device(device) if isinstance(device, str) else device
        configure_threads(threads, dev)
        hooks.message(f"out-of-fold correctness of {run_dir} ({cfg.modality}): {folds} folds over "
                      f"{len(ids['train'])} training windows, one source copy per fold")
        with torch.random.fork_rng(devices=_cuda_devices(dev)):
            rec = _crossfit(cfg, shards, ids, folds, dev, hooks, labels.repeats)  # the caller's RNG state stays as it was
        rec["settings_json"] = np.array(to_json(settings, sort_keys=True))
        rec["hash"] = np.array(want)
        with atomic_path(path, suffix=".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **rec)
        hooks.message(f"out-of-fold correctness: source right on {float(rec['accuracy']) * 100:.1f}% of its "
                      f"training windows out of fold ({float(rec['seconds']):.0f} s) -> {path}")
    return path


def _cuda_devices(dev: torch.device) -> list[int]:
    if dev.type != "cuda":
        return []
    return [torch.cuda.current_device() if dev.index is None else dev.index]


def _crossfit(cfg: TrainConfig, shards: ShardSet, ids: dict, folds: int, device, hooks: Hooks,
              repeats: int = 1) -> dict:
    """Train one source copy per fold and predict its held-out windows; the npz arrays."""
    t0 = time.perf_counter()
    train = np.asarray(ids["train"], np.int64)
    scfg = cfg.split_config()
    fold = assign_folds(fold_groups(shards, train, scfg.block_s), folds, scfg.seed, shards.y[train])
    pred = np.full(len(train), -1, np.int64)
    conf = np.zeros(len(train), np.float32)
    labelled = shards.y[train] >= 0
    quiet = Hooks()
    with tempfile.TemporaryDirectory(prefix="dcat-oof-") as tmp:
        for k in range(folds):
            held = fold == k
            use = guarded_training(shards, train, held, max(0.0, scfg.guard_s)) & labelled
            if not use.any():
                raise TrainingError(f"out-of-fold fold {k}: no training windows left after the guard; use fewer "
                                    "--oof-folds or --mcma-correctness insample")
            tk = time.perf_counter()
            ep = fold_epochs(cfg.epochs, int(labelled.sum()), int(use.sum()), cfg.batch_size)
            pred[held], conf[held] = _fit_and_predict(replace(cfg, epochs=ep), shards, train[use], ids["val"],
                                                      train[held], device, Path(tmp) / f"fold{k}", quiet, repeats)
            hl = held & labelled
            hooks.message(f"  fold {k + 1}/{folds}: trained on {int(use.sum())} windows ({ep} epochs), held out "
                          f"{int(held.sum())}, "
                          f"right on {float((pred[hl] == shards.y[train[hl]]).mean()) * 100 if hl.any() else 0:.0f}% "
                          f"({time.perf_counter() - tk:.0f} s)")
    label = shards.y[train]
    correct = (pred == label) & labelled
    return {"key": window_keys(shards, train), "label": label, "pred": pred, "conf": conf, "fold": fold,
            "correct": correct,
            "accuracy": np.array(float(correct[labelled].mean()) if labelled.any() else float("nan")),
            "seconds": np.array(time.perf_counter() - t0)}


def fold_epochs(epochs: int, n_source: int, n_fold: int, batch_size: int) -> int:
    """Epochs that give a fold model (``n_fold`` training windows) the optimizer steps the source had
    (``epochs`` over ``n_source``): a fold copy trained for the source's epochs on (K-1)/K of its
    windows takes fewer steps, and where training is still improving at the last epoch (it is on the
    sample data) it judges the windows worse than the source would."""
    per = lambda n: max(1, math.ceil(n / max(1, batch_size)))  # noqa: E731
    return max(int(epochs), math.ceil(int(epochs) * per(n_source) / per(n_fold)))


def _fit_and_predict(cfg: TrainConfig, shards: ShardSet, train_ids, val_ids, held_ids, device, out: Path,
                     hooks: Hooks, repeats: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """One source copy: trained like the source run (:func:`pipelines.learn.pretrain.pretrain`'s
    model, statistics from its own training windows, :func:`pipelines.learn.fit.fit`, ``repeats``
    passes over its labelled windows per epoch), then its best-validation weights predict
    ``held_ids``: (class indices, top-class probabilities), in order."""
    stream = cfg.modality
    out.mkdir(parents=True)
    torch.manual_seed(cfg.seed)
    mc, frames = model_config_for(cfg, shards, stream, cfg.d or 64)
    model = build_model(mc)
    set_input_stats(model, shards, stream, train_ids, cfg.standardize, cfg.seed)
    model.to(device)
    fr = {stream: frames}
    train_ds = BlockDataset(shards, train_ids, [stream], cfg.batch_size, shuffle=True, seed=cfg.seed, frames=fr,
                            block_mb=cfg.block_mb)
    if repeats > 1:
        train_ds = LabelledEpochs(train_ds, repeats)
    val_ds = BlockDataset(shards, val_ids, [stream], max(cfg.batch_size, 64), frames=fr, block_mb=cfg.block_mb)
    try:
        fit(out=out, cfg=cfg, model=model, train_ds=train_ds, val_loader=make_loader(val_ds, 0), device=device,
            step_fn=ce_step(stream), stream=stream, classes=shards.classes,
            ckpt_base={"stage": "oof", "model_config": mc.to_dict(), "stream": stream}, resuming=False, hooks=hooks,
            augment_kinds={stream: mc.kind} if cfg.augment else None)
    finally:
        val_ds.close()
    best = out / "best.pt"
    if best.is_file():
        model.load_state_dict(load_checkpoint(best, map_location=device)["model"])
    held_ds = BlockDataset(shards, held_ids, [stream], max(cfg.batch_size, 64), frames=fr, block_mb=cfg.block_mb)
    try:
        r = run_inference(model, make_loader(held_ds, 0), device, stream)
    finally:
        held_ds.close()
    pred = np.full(len(held_ids), -1, np.int64)
    conf = np.zeros(len(held_ids), np.float32)
    pred[r["idx"]] = r["logits"].argmax(1)
    conf[r["idx"]] = torch.softmax(torch.from_numpy(r["logits"]).float(), dim=1).amax(dim=1).numpy()
    return pred, conf


def oof_correctness(oof: Path | dict, shards: ShardSet, ids, offset_s: float = 0.0,
                    confidence: float = MCMA_CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """MCMA correctness of the windows ``ids`` from an ``oof-correct.npz`` (its path, or its content
    as :func:`read_oof` returns it): ``(correct, known)``, both
    [len(ids)] bool. ``known`` is False for a window the source did not train on (the full source
    never saw it, so its own prediction is already out of sample: the caller uses that). With
    ``offset_s`` (the misalignment study) the out-of-fold prediction of the source window starting
    ``offset_s`` later is compared with the window's own label (unknown where no such window was).
    A window without a label (``shards.y`` -1) is right where the out-of-fold top-class probability
    is at least ``confidence``."""
    oof = oof if isinstance(oof, dict) else read_oof(oof)
    index = {k: i for i, k in enumerate(oof["key"].tolist())}
    ids = np.asarray(ids, np.int64)
    keys = window_keys(shards, ids, offset_s).tolist()
    pos = np.array([index.get(k, -1) for k in keys], np.int64)
    known = pos >= 0
    correct = np.zeros(len(ids), bool)
    y = shards.y[ids[known]]
    correct[known] = np.where(y >= 0, oof["pred"][pos[known]] == y, oof["conf"][pos[known]] >= confidence)
    return correct, known


def uses_oof(cfg: TransferConfig) -> bool:
    """Whether the transfer ``cfg`` masks with out-of-fold correctness."""
    return bool(cfg.mcma) and cfg.method != "none" and cfg.mcma_correctness == "oof"


def mcma_masks(cfg: TransferConfig, src_dirs: dict, shards: ShardSet, train_ids, offsets: dict, threads: int,
               device, hooks: Hooks) -> tuple[dict, dict]:
    """Out-of-fold MCMA for a transfer: per source (stream -> its run folder in ``src_dirs``), its
    ``oof-correct.npz`` (computed first when missing or stale, :func:`ensure_oof`) looked up for the
    training windows ``train_ids`` (:func:`oof_correctness`), as tensors on ``device`` for
    :func:`pipelines.learn.transfer_step.transfer_step` (``oof``), and what the run records of it
    (file, hash, folds, the source's out-of-fold accuracy, the share of windows covered). Nothing
    when ``cfg`` does not use out-of-fold correctness."""
    if not uses_oof(cfg):
        return {}, {}
    oof, recs = {}, {}
    for s, run_dir in src_dirs.items():
        path = ensure_oof(run_dir, cfg.data, threads, device, cfg.oof_folds, hooks)
        z = read_oof(path)
        correct, known = oof_correctness(z, shards, train_ids, offsets.get(s, 0.0), cfg.mcma_confidence)
        oof[s] = {"correct": torch.from_numpy(correct).to(device), "known": torch.from_numpy(known).to(device)}
        recs[s] = {"oof_file": str(path), "oof_sha256": z["hash"], "oof_folds": int(z["settings"]["folds"]),
                   "oof_accuracy": z["accuracy"], "oof_coverage": float(known.mean()) if len(known) else 0.0}
        right = f"{float(correct[known].mean()) * 100:.0f}%" if known.any() else "-"
        rest = ("" if known.all() else "; elsewhere the source's own prediction (it never trained there, or no "
                "window starts at the shifted time)")
        hooks.message(f"MCMA ({s}): out-of-fold correctness ({recs[s]['oof_folds']} folds) for "
                      f"{recs[s]['oof_coverage'] * 100:.0f}% of the training windows, source right on {right} of "
                      f"those{rest}")
    return oof, recs


def mcma_record(cfg: TransferConfig, out: Path, oof_recs: dict) -> dict:
    """What a transfer's info record says of MCMA: ``keep_rate`` (mean over the epochs run of the
    share of training windows whose transfer term counted, averaged over the sources, from
    ``out/metrics.jsonl``; 1.0 without MCMA and misalignment; None for ``--method none``),
    ``mcma_correctness`` (``oof``/``insample``; None when MCMA is off or unused), the sources'
    out-of-fold accuracy (``src_oof_acc``: their mean; ``src_oof_accs``: per source) and
    ``oof_coverage`` per source."""
    keep = None
    if cfg.method != "none":
        rows = ddp.on_main(_metric_rows, out)
        vals = [r["train_keep_rate"] for r in rows if isinstance(r.get("train_keep_rate"), (int, float))]
        keep = float(sum(vals) / len(vals)) if vals else None
    accs = {s: r["oof_accuracy"] for s, r in oof_recs.items()}
    return {"keep_rate": keep,
            "mcma_correctness": cfg.mcma_correctness if (cfg.mcma and cfg.method != "none") else None,
            "src_oof_acc": float(sum(accs.values()) / len(accs)) if accs else None, "src_oof_accs": accs or None,
            "oof_coverage": {s: r["oof_coverage"] for s, r in oof_recs.items()} or None}


def _metric_rows(out: Path) -> list[dict]:
    p = Path(out) / "metrics.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()] if p.is_file() else []


__all__ = ["DEFAULT_OOF_FOLDS", "OOF_FILE", "ensure_oof", "read_oof", "oof_correctness", "oof_settings", "settings_hash", "window_keys",
           "fold_groups", "assign_folds", "guarded_training", "MCMA_CORRECTNESS", "uses_oof", "mcma_masks", "mcma_record"]
