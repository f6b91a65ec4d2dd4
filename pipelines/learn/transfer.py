"""Cross-modal transfer: train a target stream's pipeline from one or several frozen sources.

``transfer(cfg)``:

1. Finds each frozen source (``cfg.src`` names one stream or several, comma-separated):
   ``cfg.src_ckpt`` (one path per source), or the one ``dcat pretrain`` run for that stream under
   ``cfg.runs`` (matching the split options when given). Their classes and data settings must
   match the shards (:mod:`pipelines.learn.sources`).
2. Uses the first source run's split (``split.json``) unless split options are given; then makes
   that split. Either way it refuses (:class:`pipelines.learn.splits.SplitError`) a split where any
   source trained on a window the target validates or tests on, or on an OOD test subject.
3. Builds the target (from scratch, or ``cfg.tgt_init``) with the sources' attention width ``d``.
4. Trains the target with ``CE + lambda * sum_k w_k * L_k``
   (:func:`pipelines.learn.transfer_step.transfer_step`, :func:`pipelines.learn.losses.transfer_objective`),
   where ``L_k`` is, by ``cfg.method``:

   - ``dcat`` (default): the D-CAT alignment ``||norm(K_t^T V_t) - norm(K_s^T V_s)||_F``
     (normalisation ``cfg.norm``); every source must share the target's ``d``.
   - ``logit-kd``: ``T^2 * KL(softmax(z_s/T) || softmax(z_t/T))`` (``cfg.temperature``).
   - ``feature-kd``: ``MSE(P_k(h_t), h_s)`` between pooled embeddings through a learned linear
     projection ``P_k`` per source; the projections train with the target, are saved in its
     checkpoints under ``aux`` and are not used at inference.
   - ``none``: plain cross-entropy (``L`` absent): the no-transfer baseline on the same split and
     budget; the sources only provide the split and ``d`` and are never run.

   MCMA (``cfg.mcma``) masks each source's term with that source's own correctness; the mean is
   over all windows of the batch. Correctness is judged out of fold by default
   (``cfg.mcma_correctness = "oof"``: :mod:`pipelines.learn.crossfit`, ``cfg.oof_folds`` copies of the
   source, computed once per source run and cached in its folder), or by the source itself on its
   own training windows (``"insample"``). The K^T V (logits, embeddings) always come from the full
   source. The info record says ``keep_rate`` (share of training windows whose term counted, over
   the run, averaged over the sources; None for ``none``) and each source's out-of-fold accuracy.
   The sources stay in eval mode with ``requires_grad=False`` and run under ``torch.no_grad()``;
   their weights are hashed before and after and must be identical.
5. Source cache (:mod:`pipelines.learn.source_cache`): the sources are frozen and the training
   windows are fixed, so without augmentation what the method needs of each source per training
   window (``K_s^T V_s`` scores, logits or pooled embedding, plus correctness) is computed once and
   looked up by window position each step (``cache="auto"``/``"on"``), instead of running the
   sources every step (``"off"``, or whenever ``augment`` is on).

The training loop (epochs, early stopping on the target's validation macro-F1, checkpoints,
resume) is :func:`pipelines.learn.fit.fit`; inference later needs only the target.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipelines.core.errors import TrainingError
from pipelines.core.io import parse_list
from pipelines.learn import distributed as ddp
from pipelines.learn.checkpoint import CheckpointError, check_data, data_settings, load_checkpoint
from pipelines.learn.config import METHOD_TERMS, METHODS, NORMS, TrainConfig, TransferConfig, parse_misalign
from pipelines.learn.crossfit import MCMA_CORRECTNESS, mcma_masks, mcma_record, uses_oof
from pipelines.learn.data import BlockDataset, ShardSet, make_loader
from pipelines.learn.device import configure_threads
from pipelines.learn.engine import Hooks
from pipelines.learn.fit import fit
from pipelines.learn.labels import LabelPlan, check_world, label_plan, training_data
from pipelines.learn.misalign import source_offsets
from pipelines.learn.models import DcatModel, ModelConfig, build_model
from pipelines.learn.stream_model import model_config_for, set_input_stats
from pipelines.learn.runs import data_record, prepare_run_dir, read_config, write_config
from pipelines.learn.source_cache import (CACHE_MAX_BYTES, METHOD_NEEDS, PooledTap, build_caches, cache_bytes_per_window,
                                          source_cache, source_outputs)
from pipelines.learn.sources import (SourceRun, check_sources_data, find_source, frozen_models, load_sources,
                                     recorded_sources, source_paths, state_hash)
from pipelines.learn.splits import SplitConfig, apply_split, check_transfer_split, load_split, make_split, save_split
from pipelines.learn.transfer_step import transfer_step


def check_settings(cfg: TransferConfig) -> None:
    """Refuse inconsistent transfer settings with a :class:`TrainingError` that says what to pass."""
    if cfg.method not in METHODS:
        raise TrainingError(f"--method {cfg.method}: choose one of {', '.join(METHODS)}")
    if cfg.norm not in NORMS:
        raise TrainingError(f"--norm {cfg.norm}: choose one of {', '.join(NORMS)}")
    if cfg.mcma_correctness not in MCMA_CORRECTNESS:
        raise TrainingError(f"--mcma-correctness {cfg.mcma_correctness}: choose one of {', '.join(MCMA_CORRECTNESS)}")
    if uses_oof(cfg) and not (isinstance(cfg.oof_folds, int) and cfg.oof_folds >= 2):
        raise TrainingError(f"--oof-folds {cfg.oof_folds}: out-of-fold MCMA needs at least 2 folds (default 5); "
                            "or judge the source on its own training windows with --mcma-correctness insample")
    if cfg.cache not in ("auto", "on", "off"):
        raise TrainingError(f"--cache {cfg.cache}: choose auto, on or off")
    if cfg.cache == "on" and cfg.augment:
        raise TrainingError("--cache on with --augment: augmented windows change every step, so the source "
                            "cannot be cached; use --cache auto (or off)")
    if not (isinstance(cfg.temperature, (int, float)) and math.isfinite(cfg.temperature) and cfg.temperature > 0):
        raise TrainingError(f"--temperature {cfg.temperature}: must be a number > 0 (Hinton et al. use 1-20; default 4)")
    sources = cfg.sources()
    if not sources:
        raise TrainingError("--src: name at least one source stream (e.g. video, or video,audio)")
    if len(set(sources)) != len(sources):
        raise TrainingError(f"--src {cfg.src}: a stream is named twice")
    if cfg.tgt in sources:
        which = "both" if len(sources) == 1 else "among the sources and"
        raise TrainingError(f"--src and --tgt are {which} '{cfg.tgt}': transfer needs two different streams")
    w = cfg.source_weights()
    if len(w) != len(sources):
        raise TrainingError(f"--src-weights: {len(w)} weight(s) for {len(sources)} source(s) ({cfg.src}); "
                            "give one per source, in the same order")
    if any(not math.isfinite(x) or x < 0 for x in w):
        raise TrainingError(f"--src-weights {','.join(f'{x:g}' for x in w)}: weights must be finite and >= 0")
    shifts = parse_misalign(cfg.misalign)
    if shifts:
        unknown = [k for k in shifts if k != cfg.tgt and k not in sources]
        if unknown:
            raise TrainingError(f"--misalign {cfg.misalign}: {', '.join(unknown)} is neither the target ({cfg.tgt}) "
                                f"nor a source ({', '.join(sources)})")
        if cfg.method == "none":
            raise TrainingError("--misalign with --method none: without a transfer term the pairing of the streams "
                                "does not matter; leave --misalign out")
        if cfg.augment or cfg.cache == "off":
            raise TrainingError("--misalign reads the shifted source windows once, into the source cache: "
                                "use it without --augment and with --cache auto or on")
    ck = parse_list(cfg.src_ckpt)
    if ck and len(ck) != len(sources):
        raise TrainingError(f"--src-ckpt: {len(ck)} checkpoint(s) for {len(sources)} source(s) ({cfg.src}); "
                            "give one per source, comma-separated in the same order, or leave it out")


def _default_out(cfg: TransferConfig, tag: str) -> Path:
    if cfg.out:
        return Path(cfg.out)
    method = "" if cfg.method == "dcat" else f"-{cfg.method}"
    shift = "".join(f"-shift-{k}{v:+g}" for k, v in sorted(parse_misalign(cfg.misalign).items()))
    return Path(cfg.runs) / f"{'+'.join(cfg.sources())}-to-{cfg.tgt}{method}{shift}-{tag}"


def transfer(cfg: TransferConfig, hooks: Hooks | None = None) -> dict:
    """Train ``cfg.tgt`` from the frozen ``cfg.src`` source(s) with ``cfg.method``; returns an info
    record (run_dir, method, sources and weights, best epoch and validation macro-F1, cache use and
    its build time, source checkpoints and ``source_unchanged``).

    Under ``torchrun`` every process calls this (see :mod:`pipelines.learn.distributed`): the source
    cache is built once, each rank running the sources over its share of the training windows,
    and the shares are exchanged so that every rank holds the whole cache."""
    return ddp.run_training(_transfer, cfg, hooks)



def _transfer(cfg: TransferConfig, hooks: Hooks | None, device: torch.device) -> dict:
    """:func:`transfer` in this process: resolve the run and its sources, split, freeze the sources,
    build the target, plan and build the source cache, fit, and check the sources stayed frozen."""
    hooks = (hooks or Hooks()) if ddp.is_main() else Hooks()
    t0 = time.perf_counter()
    run = _resolve_run(cfg)
    cfg, sources = run.cfg, run.cfg.sources()
    threads = configure_threads(cfg.threads, device)
    shards = ShardSet(cfg.data, [cfg.tgt, *sources])
    check_sources_data(run.srcs, shards, cfg.data)
    ids = apply_split(shards, _run_split(run, shards))
    labels = label_plan(shards, ids["train"], cfg.label_fraction, run.split_cfg.seed, run.split_cfg.fold)
    check_world(labels, ddp.world_size())
    with_unl = cfg.method != "none" and len(labels.unlabelled) > 0
    # the windows the source cache and MCMA masks index: the labelled ones, then the unlabelled (LabelledEpochs)
    term_ids = np.concatenate([labels.labelled, labels.unlabelled]) if with_unl else labels.labelled
    src_models, src_hashes = frozen_models(run.srcs, device, run.saved_hashes)
    src_d = {s: m.cfg.d for s, m in src_models.items()}
    cfg.d = _target_width(cfg, src_d)
    tgt = _build_target(cfg, shards, ids["train"], device)
    proj = None
    if cfg.method == "feature-kd":  # built after the target, so the target's initialisation is the same for every method
        proj = torch.nn.ModuleList(torch.nn.Linear(cfg.d, src_d[s]) for s in sources).to(device)
    use_cache, offsets = _cache_plan(cfg, src_d, len(term_ids), len(shards.classes), hooks)
    weights = dict(zip(sources, cfg.source_weights()))
    oof, oof_recs = mcma_masks(cfg, {x.stream: x.path.parent for x in run.srcs}, shards, term_ids, offsets, threads,
                               device, hooks)
    src_recs = [{"checkpoint": str(x.path), "run_dir": str(x.path.parent), "stream": x.stream,
                 "state_sha256": src_hashes[x.stream], "epoch": x.ckpt.get("epoch"), "d": src_d[x.stream],
                 "weight": weights[x.stream], **oof_recs.get(x.stream, {})} for x in run.srcs]
    if not run.resuming and ddp.is_main():
        _write_run_config(cfg, run, shards, tgt, src_recs, device, threads)
    src_taps = {s: PooledTap(m) for s, m in src_models.items()} if cfg.method == "feature-kd" else {}
    tgt_tap = PooledTap(tgt.model) if cfg.method == "feature-kd" else None
    src_frames = {x.stream: x.ckpt["data"].get("frames") for x in run.srcs}
    caches, cache_s = None, 0.0
    if use_cache:
        tc = time.perf_counter()
        caches = build_caches(src_models, shards, term_ids, src_frames, method=cfg.method, norm=cfg.norm,
                              device=device, taps=src_taps, offsets=offsets, misalign=cfg.misalign, hooks=hooks,
                              confidence=cfg.mcma_confidence)
        cache_s = time.perf_counter() - tc
        hooks.message(f"source cache built in {cache_s:.1f} s")
    streams = [cfg.tgt] if (use_cache or cfg.method == "none") else [cfg.tgt, *sources]
    train_ds, val_ds = _datasets(cfg, shards, ids, labels, with_unl, streams, {cfg.tgt: tgt.frames, **src_frames})
    hooks.message(_describe(cfg, run, weights, use_cache, ids, device, labels))
    step = transfer_step(cfg.tgt, sources, src_models, method=cfg.method, lam=cfg.lam, mcma=cfg.mcma, norm=cfg.norm,
                         temperature=cfg.temperature, weights=weights, caches=caches, proj=proj, tgt_tap=tgt_tap,
                         src_taps=src_taps, oof=oof, confidence=cfg.mcma_confidence)
    aug = ({cfg.tgt: shards.kind(cfg.tgt), **{s: shards.kind(s) for s in sources}} if cfg.augment else None)
    try:
        st = fit(out=run.out, cfg=cfg, model=tgt.model, train_ds=train_ds, val_loader=make_loader(val_ds, 0),
                 device=device, step_fn=step, stream=cfg.tgt, classes=shards.classes,
                 ckpt_base=_checkpoint_base(cfg, shards, tgt, src_recs, proj), resuming=run.resuming, hooks=hooks,
                 augment_kinds=aug, aux=proj)
    finally:
        for tap in [*src_taps.values(), *([tgt_tap] if tgt_tap else [])]:
            tap.remove()
        val_ds.close()
    unchanged = all(state_hash(m) == src_hashes[s] and not m.training for s, m in src_models.items())
    if not unchanged:  # pragma: no cover - a bug, not a user error
        raise TrainingError("the frozen source's weights changed during transfer (bug): please report it")
    return {"run_dir": str(run.out), "stage": "transfer", "method": cfg.method, "src": cfg.src, "tgt": cfg.tgt,
            **mcma_record(cfg, run.out, oof_recs),
            "sources": sources, "src_weights": [weights[s] for s in sources],
            "source_checkpoint": str(run.srcs[0].path), "source_checkpoints": [str(x.path) for x in run.srcs],
            "split_from": run.split_from, "best_epoch": st.best_epoch, "best_val_macro_f1": st.best_f1,
            "epochs_run": st.epoch + 1, "stopped_early": st.stopped_early, "cache": use_cache,
            "cache_seconds": cache_s, "source_unchanged": unchanged, "lam": cfg.lam, "mcma": cfg.mcma,
            "norm": cfg.norm, "temperature": cfg.temperature, "loss_term": METHOD_TERMS[cfg.method],
            "misalign": cfg.misalign, "source_offsets_s": offsets,
            "n_windows": {k: int(len(v)) for k, v in ids.items()}, "labels": labels.record(),
            "unlabelled_in_term": bool(with_unl), "device": str(device),
            "threads": threads, "world_size": ddp.world_size(),
            "seconds": time.perf_counter() - t0}


@dataclass
class _Run:
    """A transfer's run folder and sources, as resolved before any data is read."""

    cfg: TransferConfig  # a resumed run's own settings (with this call's device, workers and threads)
    out: Path
    resuming: bool
    srcs: list[SourceRun]
    split_cfg: SplitConfig
    split_from: str  # "explicit", or "source (<first source's run folder>)"
    saved_hashes: dict  # stream -> the weights' hash a resumed run started with


def _resolve_run(cfg: TransferConfig) -> _Run:
    """Check the settings, find and load the sources, choose the split and prepare the run folder;
    a resumed run takes its recorded settings and sources (found again where none is recorded)."""
    check_settings(cfg)
    srcs = load_sources(cfg.sources(), source_paths(cfg))
    if cfg.explicit_split():
        split_cfg, split_from = cfg.split_config(), "explicit"
    else:
        src_args = read_config(srcs[0].path.parent).get("args", {})
        split_cfg = TrainConfig.from_dict(src_args).split_config()
        split_from = f"source ({srcs[0].path.parent})"
    out = _default_out(cfg, split_cfg.tag())
    resuming = ddp.on_main(prepare_run_dir, out, cfg.resume, cfg.overwrite)
    saved_hashes: dict[str, str] = {}
    if resuming:
        saved = ddp.on_main(read_config, out)
        cfg = TransferConfig.from_dict({**saved["args"], "device": cfg.device, "workers": cfg.workers,
                                        "threads": cfg.threads, "resume": True})
        check_settings(cfg)
        recorded, saved_hashes = recorded_sources(saved)
        if [Path(recorded[s]) if recorded.get(s) else None for s in cfg.sources()] != [x.path for x in srcs]:
            srcs = load_sources(cfg.sources(), source_paths(cfg, recorded))
    return _Run(cfg, out, resuming, srcs, split_cfg, split_from, saved_hashes)


def _run_split(run: _Run, shards: ShardSet) -> dict:
    """The run's split: the saved one when resuming, else the explicit split or the first source's,
    checked for leakage against every (other) source; a new run saves it in its folder."""
    path = run.out / "split.json"
    saved_split = ddp.on_main(lambda: load_split(path) if path.is_file() else None)
    if run.resuming and saved_split is not None:
        split = saved_split
    else:
        if run.split_from == "explicit":
            split = make_split(shards, run.split_cfg)
            others = run.srcs
        else:
            split = dict(run.srcs[0].split)
            others = run.srcs[1:]
        for src in others:
            check_transfer_split(src.split, split, f"source {src.path}")
    if not run.resuming and ddp.is_main():
        save_split(path, split)
    return split


def _target_width(cfg: TransferConfig, src_d: dict[str, int]) -> int:
    """The target's attention width ``d``: the sources' (D-CAT needs all to share it), or ``--d``."""
    sources = cfg.sources()
    if cfg.method != "dcat":
        return cfg.d if cfg.d is not None else src_d[sources[0]]
    if len(set(src_d.values())) > 1:
        raise TrainingError("D-CAT compares d x d scores, so every source must share the attention width d; "
                            "the sources have " + ", ".join(f"{s}: d={v}" for s, v in src_d.items())
                            + ": pretrain them with the same --d")
    d = src_d[sources[0]]
    if cfg.d is not None and cfg.d != d:
        raise TrainingError(f"--d {cfg.d}: the source has attention width d={d} and D-CAT needs both to share it; "
                            "leave --d out (it defaults to the source's)")
    return d


@dataclass
class _Target:
    """The target model on its device, with its config, the video frames it reads, its input
    statistics' note and where its initial weights came from."""

    model: DcatModel
    mc: ModelConfig
    frames: int | None
    stats: object
    init_note: str


def _build_target(cfg: TransferConfig, shards: ShardSet, train_ids, device) -> _Target:
    """The target of width ``cfg.d``: from ``--tgt-init`` (checked against the shards), or new with
    its input statistics from the training windows; seeded with ``cfg.seed`` first."""
    d = cfg.d
    torch.manual_seed(cfg.seed)
    init_note = "scratch"
    if cfg.tgt_init:
        ick = load_checkpoint(cfg.tgt_init)
        mc = ModelConfig.from_dict(ick["model_config"])
        if ick.get("stream") != cfg.tgt or mc.d != d or list(ick["classes"]) != list(shards.classes):
            raise CheckpointError(f"--tgt-init {cfg.tgt_init}: a model of stream '{ick.get('stream')}' with d={mc.d} "
                                  f"and classes {ick['classes']}; the target needs stream '{cfg.tgt}', d={d}, "
                                  f"classes {shards.classes}")
        check_data(ick, shards.manifest, str(cfg.data), cfg.tgt)
        model = build_model(mc)
        model.load_state_dict(ick["model"])
        frames = ick["data"].get("frames")
        stats = "from --tgt-init"
        init_note = str(cfg.tgt_init)
    else:
        mc, frames = model_config_for(cfg, shards, cfg.tgt, d)
        model = build_model(mc)
        stats = set_input_stats(model, shards, cfg.tgt, train_ids, cfg.standardize, cfg.seed)
    model.to(device)
    return _Target(model, mc, frames, stats, init_note)


def _cache_plan(cfg: TransferConfig, src_d: dict[str, int], n_train: int, n_classes: int,
                hooks: Hooks) -> tuple[bool, dict[str, float]]:
    """Whether the sources are cached (``--cache``; ``auto`` drops a cache over ``CACHE_MAX_BYTES``)
    and each source's ``--misalign`` offset in seconds (which needs the cache)."""
    sources = cfg.sources()
    use_cache = cfg.method != "none" and (cfg.cache == "on" or (cfg.cache == "auto" and not cfg.augment))
    need_bytes = n_train * sum(cache_bytes_per_window(cfg.method, src_d[s], n_classes) for s in sources)
    if use_cache and need_bytes > CACHE_MAX_BYTES and cfg.cache == "auto":
        hooks.message(f"source cache would need {need_bytes / 2**30:.1f} GiB: running the sources every step")
        use_cache = False
    offsets = source_offsets(parse_misalign(cfg.misalign), cfg.tgt, sources)
    if any(offsets.values()) and not use_cache:
        raise TrainingError(f"--misalign {cfg.misalign}: the shifted source windows are read into the source cache, "
                            f"which would need {need_bytes / 2**30:.1f} GiB here; use a smaller training set")
    return use_cache, offsets


def _write_run_config(cfg: TransferConfig, run: _Run, shards: ShardSet, tgt: _Target, src_recs: list[dict],
                      device, threads: int) -> None:
    """A new run's ``config.json``: its settings, data, target, sources and where its split came from."""
    write_config(run.out, "transfer", cfg, {
        "data": data_record(shards), "model_config": tgt.mc.to_dict(), "input_stats": tgt.stats,
        "device": str(device), "threads": threads, "world_size": ddp.world_size(), "method": cfg.method,
        "loss_term": METHOD_TERMS[cfg.method], "source": src_recs[0], "sources": src_recs,
        "split_from": run.split_from, "tgt_init": tgt.init_note})


def _datasets(cfg: TransferConfig, shards: ShardSet, ids: dict, labels: LabelPlan, with_unl: bool, streams: list[str],
              frames: dict) -> tuple[BlockDataset, BlockDataset]:
    """This rank's training windows (of ``streams``, shuffled; with ``with_unl`` the unlabelled ones
    joined to each batch, :class:`pipelines.learn.labels.LabelledEpochs`) and validation windows
    (target only)."""
    rw = {"rank": ddp.rank(), "world": ddp.world_size()}
    train_ds = training_data(labels, lambda t: BlockDataset(shards, t, streams, cfg.batch_size, shuffle=True,
                                                            seed=cfg.seed, frames=frames, block_mb=cfg.block_mb, **rw),
                             with_unl)
    val_ds = BlockDataset(shards, ids["val"], [cfg.tgt], max(cfg.batch_size, 64), frames=frames,
                          block_mb=cfg.block_mb, shard="block", **rw)
    return train_ds, val_ds


def _checkpoint_base(cfg: TransferConfig, shards: ShardSet, tgt: _Target, src_recs: list[dict],
                     proj: torch.nn.Module | None) -> dict:
    """What every checkpoint of the target holds besides its weights (schemas/run.md)."""
    ckpt_src = [{k: r[k] for k in ("checkpoint", "stream", "state_sha256", "weight")} for r in src_recs]
    base = {"stage": "transfer", "model_config": tgt.mc.to_dict(), "classes": list(shards.classes),
            "stream": cfg.tgt, "kind": tgt.mc.kind, "data": data_settings(shards, cfg.tgt, tgt.frames),
            "train_config": cfg.to_dict(), "method": cfg.method, "source": ckpt_src[0], "sources": ckpt_src}
    if proj is not None:
        base["aux_note"] = ("aux: feature-KD projections (Linear target d -> source d), one per source in "
                            "'sources' order; used in training only")
    return base


def _describe(cfg: TransferConfig, run: _Run, weights: dict, use_cache: bool, ids: dict, device,
              labels: LabelPlan) -> str:
    """The one-line summary of a transfer, said before training."""
    sources = cfg.sources()
    what = {"dcat": f"D-CAT, norm {cfg.norm}", "logit-kd": f"logit KD, T {cfg.temperature:g}",
            "feature-kd": "feature KD", "none": "no transfer (plain cross-entropy)"}[cfg.method]
    src_note = ("sources unused" if cfg.method == "none" else
                f"MCMA {'on (' + cfg.mcma_correctness + ')' if cfg.mcma else 'off'}, source{'s' if len(sources) > 1 else ''} "
                f"{'cached' if use_cache else 'run every step'}")
    wnote = f" (weights {', '.join(f'{s} {w:g}' for s, w in weights.items())})" if len(sources) > 1 else ""
    return (f"transfer {'+'.join(sources)} -> {cfg.tgt} ({run.out}): {what}, lambda {cfg.lam}{wnote}, {src_note}, "
            f"split from {run.split_from}; {len(ids['train'])} train / {len(ids['val'])} val windows, device {device}"
            + (f"; {len(labels.labelled)} training windows labelled (--label-fraction {cfg.label_fraction:g}), "
               f"{len(labels.unlabelled)} "
               + ("in the transfer term only" if cfg.method != "none" else "unused (no transfer term)")
               if len(labels.unlabelled) else ""))


__all__ = ["TransferConfig", "transfer", "check_settings", "find_source", "state_hash", "PooledTap", "METHOD_NEEDS",
           "source_outputs", "source_cache", "transfer_step"]
