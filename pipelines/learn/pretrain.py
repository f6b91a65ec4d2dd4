"""Unimodal pretraining: ``pretrain(cfg)`` trains one stream's pipeline alone with cross-entropy.

The run folder, the epoch loop and the engine are shared with ``transfer``
(:mod:`pipelines.learn.runs`, :mod:`pipelines.learn.fit`, :mod:`pipelines.learn.engine`). Imports
torch, numpy, h5py and (for metrics) scikit-learn only. Under ``torchrun`` every process calls
``pretrain``; see :mod:`pipelines.learn.distributed`.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from pipelines.learn import distributed as ddp
from pipelines.learn.checkpoint import data_settings
from pipelines.learn.config import TrainConfig
from pipelines.learn.crossfit import ensure_oof, read_oof
from pipelines.learn.data import BlockDataset, ShardSet, make_loader
from pipelines.learn.device import configure_threads
from pipelines.learn.engine import Hooks, ce_step
from pipelines.learn.fit import fit
from pipelines.learn.labels import check_world, label_plan, training_data
from pipelines.learn.models import build_model
from pipelines.learn.runs import data_record, prepare_run_dir, read_config, write_config
from pipelines.learn.splits import SplitConfig, apply_split, load_split, make_split, save_split
from pipelines.learn.stream_model import model_config_for, set_input_stats  # noqa: F401 - also imported from here


def default_out(cfg: TrainConfig, name: str) -> Path:
    return Path(cfg.out) if cfg.out else Path(cfg.runs) / f"{name}-{cfg.split_config().tag()}"


def prepare_split(out: Path, shards: ShardSet, scfg: SplitConfig, resuming: bool) -> dict:
    if resuming and (out / "split.json").is_file():
        return load_split(out / "split.json")
    split = make_split(shards, scfg)
    save_split(out / "split.json", split)
    return split


def pretrain(cfg: TrainConfig, hooks: Hooks | None = None) -> dict:
    """Train one stream's pipeline alone (cross-entropy). Returns an info record:
    ``run_dir``, ``best_epoch``, ``best_val_macro_f1``, ``epochs_run``, ``stopped_early``,
    ``n_windows`` per part, ``device``, ``world_size``, ``seconds``; with ``cfg.oof_folds`` also the
    out-of-fold correctness file MCMA uses (``oof_file``, ``oof_accuracy``, ``oof_seconds``).

    Under ``torchrun`` every process calls this; see :mod:`pipelines.learn.distributed`."""
    return ddp.run_training(_pretrain, cfg, hooks)


def _pretrain(cfg: TrainConfig, hooks: Hooks | None, device: torch.device) -> dict:
    hooks = (hooks or Hooks()) if ddp.is_main() else Hooks()
    t0 = time.perf_counter()
    out = default_out(cfg, cfg.modality)
    resuming = ddp.on_main(prepare_run_dir, out, cfg.resume, cfg.overwrite)
    if resuming:
        saved = ddp.on_main(read_config, out)
        keep = {"device": cfg.device, "workers": cfg.workers, "threads": cfg.threads, "resume": True,
                "oof_folds": cfg.oof_folds}
        cfg = TrainConfig.from_dict({**saved["args"], **keep})
    threads = configure_threads(cfg.threads, device)
    if cfg.d is None:
        cfg.d = 64
    shards = ShardSet(cfg.data, [cfg.modality])
    scfg = cfg.split_config()
    split = ddp.on_main(prepare_split, out, shards, scfg, resuming)
    ids = apply_split(shards, split)
    labels = label_plan(shards, ids["train"], cfg.label_fraction, scfg.seed, scfg.fold)
    check_world(labels, world=ddp.world_size())
    torch.manual_seed(cfg.seed)
    mc, frames = model_config_for(cfg, shards, cfg.modality, cfg.d)
    model = build_model(mc)
    stats = set_input_stats(model, shards, cfg.modality, ids["train"], cfg.standardize, cfg.seed)
    model.to(device)
    world = ddp.world_size()
    if not resuming and ddp.is_main():
        write_config(out, "pretrain", cfg, {"data": data_record(shards), "model_config": mc.to_dict(),
                                            "input_stats": stats, "device": str(device), "threads": threads,
                                            "world_size": world, "labels": labels.record()})
    fr = {cfg.modality: frames}
    rw = {"rank": ddp.rank(), "world": world}
    train_ds = training_data(labels, lambda ids_: BlockDataset(shards, ids_, [cfg.modality], cfg.batch_size,
                                                               shuffle=True, seed=cfg.seed, frames=fr,
                                                               block_mb=cfg.block_mb, **rw), with_unlabelled=False)
    val_ds = BlockDataset(shards, ids["val"], [cfg.modality], max(cfg.batch_size, 64), frames=fr, block_mb=cfg.block_mb,
                          shard="block", **rw)
    ckpt_base = {"stage": "pretrain", "model_config": mc.to_dict(), "classes": list(shards.classes),
                 "stream": cfg.modality, "kind": mc.kind, "data": data_settings(shards, cfg.modality, frames),
                 "train_config": cfg.to_dict()}
    hooks.message(f"pretrain {cfg.modality} ({mc.kind}) -> {out}: {len(ids['train'])} train / {len(ids['val'])} val / "
                  f"{len(ids['test'])} test windows, device {device}"
                  + (f", {len(labels.labelled)} training windows labelled (--label-fraction {cfg.label_fraction:g}; "
                     f"{labels.repeats} passes per epoch)" if len(labels.unlabelled) else "")
                  + (f", {world} processes (global batch {cfg.batch_size})" if world > 1 else ""))
    st = fit(out=out, cfg=cfg, model=model, train_ds=train_ds, val_loader=make_loader(val_ds, 0), device=device,
             step_fn=ce_step(cfg.modality), stream=cfg.modality, classes=shards.classes, ckpt_base=ckpt_base,
             resuming=resuming, hooks=hooks,
             augment_kinds={cfg.modality: mc.kind} if cfg.augment else None)
    val_ds.close()
    oof = _oof(cfg, out, threads, device, hooks)
    return {"run_dir": str(out), "stage": "pretrain", "stream": cfg.modality, "best_epoch": st.best_epoch,
            "best_val_macro_f1": st.best_f1, "epochs_run": st.epoch + 1, "stopped_early": st.stopped_early,
            "n_windows": {k: int(len(v)) for k, v in ids.items()}, "labels": labels.record(),
            "device": str(device), "threads": threads,
            "world_size": world, **oof, "seconds": time.perf_counter() - t0}


def _oof(cfg: TrainConfig, out: Path, threads: int, device, hooks: Hooks) -> dict:
    """``--oof-folds K``: the run's out-of-fold correctness for MCMA, computed now
    (:func:`pipelines.learn.crossfit.ensure_oof`); under torchrun it is left to one process."""
    if not cfg.oof_folds:
        return {}
    if ddp.is_distributed():
        hooks.message(f"--oof-folds {cfg.oof_folds}: not under torchrun; compute it in one process with `dcat pretrain "
                      f"--out {out} --resume --oof-folds {cfg.oof_folds}`")
        return {"oof_file": None}
    path = ensure_oof(out, cfg.data, threads, device, cfg.oof_folds, hooks)
    z = read_oof(path)
    return {"oof_file": str(path), "oof_folds": cfg.oof_folds, "oof_accuracy": z["accuracy"],
            "oof_seconds": z["seconds"]}
