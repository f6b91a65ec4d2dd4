"""The epoch loop: train, validate, log, checkpoint, stop early, resume (``fit``).

Which epoch is kept and when a run stops: :mod:`pipelines.learn.selection` (``--val-smooth``,
``--min-epochs``, ``--patience``; validation only).

Resuming restores model, optimizer, schedule, early-stopping state and the torch RNG from
``last.pt``; the data order depends only on (seed, epoch), so an interrupted and resumed run ends
with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path

import torch

from pipelines.core.errors import TrainingError
from pipelines.learn import distributed as ddp
from pipelines.learn.checkpoint import load_checkpoint, save_checkpoint
from pipelines.learn.config import TrainConfig
from pipelines.learn.data import BlockDataset, make_loader
from pipelines.learn.device import default_workers
from pipelines.learn.engine import Hooks, StepFn, evaluate_model, make_schedule, param_groups, train_one_epoch
from pipelines.learn.models import DcatModel
from pipelines.learn.runs import release_run_dir, truncate_metrics
from pipelines.learn.selection import FitState, SelectionRule, default_min_epochs, judge_epoch, val_score
from pipelines.core.io import to_json


def _rng_state() -> dict:
    st = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def selection_rule(cfg: TrainConfig) -> SelectionRule:
    """The run's epoch-selection rule from its settings."""
    m = default_min_epochs(cfg.epochs) if cfg.min_epochs is None else max(0, int(cfg.min_epochs))
    return SelectionRule(smooth=max(1, int(cfg.val_smooth or 1)), min_epochs=m, patience=max(0, int(cfg.patience or 0)))


def fit(**kwargs) -> FitState:
    """:func:`_fit` (the arguments are its own), then the run folder's lock is released
    (:func:`pipelines.learn.runs.lock_run_dir`, taken when the folder was prepared), also when the
    loop is interrupted: another process may then resume the run."""
    try:
        return _fit(**kwargs)
    finally:
        release_run_dir(kwargs["out"])


def _fit(*, out: Path, cfg: TrainConfig, model: DcatModel, train_ds: BlockDataset, val_loader, device,
         step_fn: StepFn, stream: str, classes: list[str], ckpt_base: dict, resuming: bool,
         hooks: Hooks | None = None, augment_kinds: dict | None = None,
         aux: torch.nn.Module | None = None) -> FitState:
    """The epoch loop: train, validate, log, checkpoint, stop early (:mod:`pipelines.learn.selection`).
    Returns the final state.

    ``aux``: extra trainable parameters the step uses beside ``model`` (the feature-KD projections
    of ``pipelines.learn.transfer``): optimised with the model, saved in both checkpoints under ``aux``
    (not in ``model``, so inference never needs them) and restored on resume.

    Several processes (:mod:`pipelines.learn.distributed`): ``model``'s BatchNorm layers are made
    synchronous (in place; the state-dict keys stay the same) and it is trained through
    DistributedDataParallel; ``train_ds`` must be built with this rank (``rank``/``world``) and
    ``val_loader`` read this rank's share of the validation windows. Only rank 0 reads and writes
    the run folder (``last.pt`` on resume is read there and sent to the others).
    """
    hooks = hooks or Hooks()
    out = Path(out)
    if cfg.epochs < 1:
        raise TrainingError(f"--epochs {cfg.epochs}: train at least 1 epoch")
    rule = selection_rule(cfg)
    multi = ddp.is_distributed()
    if multi:
        model = ddp.sync_batchnorm(model, device)
    workers = default_workers(cfg.workers, device)
    loader = make_loader(train_ds, workers, pin_memory=device.type == "cuda", seed=cfg.seed)
    steps_per_epoch = len(train_ds)
    if steps_per_epoch == 0:
        raise TrainingError(f"the training part of the split has no windows ({out / 'split.json'})")
    optimizer, scheduler = _optimizer(cfg, model, aux, steps_per_epoch)
    if resuming:
        st = _restore(out, model, aux, optimizer, scheduler, device, hooks)
    else:
        st = FitState()
        if ddp.is_main():
            (out / "metrics.jsonl").write_text("")
    train_model = ddp.wrap_ddp(model, device) if multi else model
    fwd_model = torch.compile(train_model) if (cfg.compile and device.type == "cuda") else train_model
    for epoch in range(st.epoch + 1, cfg.epochs):
        if st.stopped_early:
            break
        t0 = time.perf_counter()
        train_ds.set_epoch(epoch)
        hooks.on_epoch_start(epoch, cfg.epochs, steps_per_epoch)
        tm, st.step = train_one_epoch(fwd_model, loader, optimizer, scheduler, device, step_fn, epoch=epoch,
                                      step=st.step, grad_clip=cfg.grad_clip, hooks=hooks,
                                      augment_kinds=augment_kinds, aux=aux, seed=cfg.seed)
        vm = evaluate_model(model, val_loader, device, stream, classes, "val")
        improved = judge_epoch(st, epoch, vm["val_macro_f1"], vm["val_loss"], rule, cfg.epochs)
        row = {"epoch": epoch, "step": st.step, "lr": optimizer.param_groups[0]["lr"], **tm, **vm,
               "val_score": val_score(st, rule), "best_epoch": st.best_epoch, "best_val_macro_f1": st.best_f1,
               "best_val_score": st.best_score, "epoch_seconds": time.perf_counter() - t0}
        base = {**ckpt_base, "model": model.state_dict(), "epoch": epoch, "step": st.step,
                "best": {"val_macro_f1": st.best_f1, "val_score": st.best_score, "epoch": st.best_epoch,
                         "selection": rule.to_dict()}}
        if aux is not None:
            base["aux"] = aux.state_dict()
        if ddp.is_main():
            _save_epoch(out, base, improved, optimizer, scheduler, st, row)
        hooks.on_epoch_end(epoch, row)
    train_ds.close()
    ddp.barrier()
    return st


def _optimizer(cfg: TrainConfig, model: torch.nn.Module, aux: torch.nn.Module | None, steps_per_epoch: int):
    """AdamW over the model's (and ``aux``'s) parameter groups, and its warmup + cosine schedule."""
    groups = param_groups(model, cfg.weight_decay)
    if aux is not None:
        for g, ga in zip(groups, param_groups(aux, cfg.weight_decay)):
            g["params"] = g["params"] + ga["params"]
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
    scheduler = make_schedule(optimizer, cfg.epochs * steps_per_epoch, int(round(cfg.warmup_epochs * steps_per_epoch)))
    return optimizer, scheduler


def _restore(out: Path, model: torch.nn.Module, aux: torch.nn.Module | None, optimizer, scheduler, device,
             hooks: Hooks) -> FitState:
    """Load ``out/last.pt`` into model, ``aux``, optimizer, schedule and the torch RNG (rank 0 reads
    it and sends it to the others); cut ``metrics.jsonl`` back to the epochs it holds."""
    if ddp.is_distributed():
        ck = ddp.on_main(load_checkpoint, out / "last.pt", map_location="cpu")
    else:
        ck = load_checkpoint(out / "last.pt", map_location=device)
    model.load_state_dict(ck["model"])
    if aux is not None:
        aux.load_state_dict(ck["aux"])
    optimizer.load_state_dict(ck["optimizer"])
    scheduler.load_state_dict(ck["scheduler"])
    st = FitState(**ck["fit_state"])
    _set_rng_state({k: (v.cpu() if isinstance(v, torch.Tensor) else [t.cpu() for t in v])
                    for k, v in ck["rng"].items()})
    if ddp.is_main():
        truncate_metrics(out / "metrics.jsonl", st.epoch)
    hooks.message(f"resuming {out} after epoch {st.epoch + 1} (step {st.step})")
    return st


def _save_epoch(out: Path, base: dict, improved: bool, optimizer, scheduler, st: FitState, row: dict) -> None:
    """Rank 0 after an epoch: its ``metrics.jsonl`` line first (flushed to disk), then ``best.pt``
    when it improved, then ``last.pt`` (with what resuming needs). A kill anywhere in between
    leaves a row for an epoch ``last.pt`` does not hold yet; ``--resume`` cuts it and trains the
    epoch again, so the rows are every epoch once (never a gap)."""
    with open(out / "metrics.jsonl", "a") as f:
        f.write(to_json(row) + "\n")
        f.flush()
        os.fsync(f.fileno())
    if improved:
        save_checkpoint(out / "best.pt", base)
    save_checkpoint(out / "last.pt", {**base, "optimizer": optimizer.state_dict(),
                                      "scheduler": scheduler.state_dict(), "rng": _rng_state(),
                                      "fit_state": asdict(st)})
