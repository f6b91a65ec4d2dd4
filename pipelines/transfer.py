"""D-CAT transfer: train a target stream's pipeline with ``CE + lambda * L_CA`` from a frozen source.

``transfer(cfg)``:

1. Finds the frozen source: ``cfg.src_ckpt``, or the one ``dcat pretrain`` run for stream
   ``cfg.src`` under ``cfg.runs`` (matching the split options when given). Its classes and data
   settings must match the shards.
2. Uses the source run's split (``split.json``) unless split options are given; then makes that
   split and refuses (:class:`pipelines.splits.SplitError`) when the source trained on any window
   the target validates or tests on, or on an OOD test subject.
3. Builds the target (from scratch, or ``cfg.tgt_init``) with the source's attention width ``d``.
4. Trains the target with :func:`pipelines.losses.dcat_loss` (normalisation ``cfg.norm``, MCMA
   mask ``cfg.mcma``). The source stays in eval mode with ``requires_grad=False`` and runs under
   ``torch.no_grad()``; its weights are hashed before and after and must be identical.
5. Source cache: the source is frozen and the training windows are fixed, so without augmentation
   its ``norm(K_s^T V_s)`` and correctness are computed once per training window and looked up by
   window position each step (``cache="auto"``/``"on"``), instead of running the source every step
   (``"off"``, or whenever ``augment`` is on).

The training loop (epochs, early stopping on the target's validation macro-F1, checkpoints,
resume) is ``pipelines.train.fit``; inference later needs only the target.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import CheckpointError, check_data, data_settings, load_checkpoint, model_from_checkpoint
from .data import BlockDataset, ShardSet, make_loader
from .losses import DEFAULT_NORM, NORMS, dcat_loss, kv_scores
from .models import ModelConfig, build_model
from .splits import SplitConfig, apply_split, check_transfer_split, load_split, make_split, save_split
from .train import (Hooks, TrainConfig, TrainingError, _data_record, autocast, configure_threads, find_runs, fit,
                    model_config_for,
                    prepare_run_dir, read_config, resolve_device, set_input_stats, to_device, write_config)

CACHE_MAX_BYTES = 8 * 2 ** 30


@dataclass
class TransferConfig(TrainConfig):
    """Settings of ``dcat transfer`` (the training settings are :class:`pipelines.train.TrainConfig`'s).

    src / tgt: stream names. src_ckpt: the frozen source's checkpoint or run folder (default: the
    pretrain run for ``src`` under ``runs``). lam: weight of the alignment loss. mcma: count the
    alignment only on windows the source classifies correctly. norm: score normalisation
    (``fro`` default, ``seqlen``, ``none``; see :mod:`pipelines.losses`). tgt_init: start the target
    from this checkpoint. cache: ``auto`` (cache the source unless augmenting), ``on``, ``off``.
    Split options left as None mean: use the source run's split.
    """

    src: str = "video"
    tgt: str = "imu"
    src_ckpt: str | None = None
    lam: float = 1.0
    mcma: bool = True
    norm: str = DEFAULT_NORM
    tgt_init: str | None = None
    cache: str = "auto"
    split: str | None = None
    val_frac: float | None = None
    test_frac: float | None = None
    block_s: float | None = None
    guard_s: float | None = None
    d: int | None = None

    def __post_init__(self):
        self.modality = self.tgt

    def explicit_split(self) -> bool:
        return any(v not in (None, [], ()) for v in (self.split, self.split_seed, self.val_frac, self.test_frac, self.block_s,
                                                     self.guard_s, self.test_subjects, self.fold, self.folds))


def state_hash(module: torch.nn.Module) -> str:
    """sha256 over every tensor of the state dict (names, dtypes, shapes, bytes)."""
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        t = v.detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _split_matches(run_args: dict, want: SplitConfig) -> bool:
    have = TrainConfig.from_dict(run_args).split_config()
    return (have.split, have.seed, sorted(have.test_subjects), have.fold, have.folds, have.val_frac, have.test_frac,
            have.block_s, have.guard_s) == (want.split, want.seed, sorted(want.test_subjects), want.fold, want.folds,
                                            want.val_frac, want.test_frac, want.block_s, want.guard_s)


def find_source(cfg: TransferConfig) -> Path:
    """The source checkpoint path (see :class:`TransferConfig`)."""
    if cfg.src_ckpt:
        p = Path(cfg.src_ckpt)
        p = p / "best.pt" if p.is_dir() else p
        if not p.is_file():
            raise CheckpointError(f"--src-ckpt {cfg.src_ckpt}: no such checkpoint")
        return p
    cmd = f"dcat pretrain --modality {cfg.src} --data {cfg.data}"
    runs = find_runs(Path(cfg.runs), "pretrain", cfg.src)
    if not runs:
        raise CheckpointError(f"no pretrained '{cfg.src}' model in {cfg.runs}/: run `{cmd}` first "
                              "(with the split options you want), or pass --src-ckpt PATH")
    if cfg.explicit_split():
        want = cfg.split_config()
        runs = [r for r in runs if _split_matches(read_config(r).get("args", {}), want)]
        if not runs:
            raise CheckpointError(f"no pretrained '{cfg.src}' run in {cfg.runs}/ with the split "
                                  f"'{want.tag()}' (seed {want.seed}): run `{cmd} --split {want.split} ...` with "
                                  "the same split options, or pass --src-ckpt PATH")
    if len(runs) > 1:
        raise CheckpointError(f"several pretrained '{cfg.src}' runs in {cfg.runs}/ ("
                              + ", ".join(r.name for r in runs) + "): choose one with --src-ckpt runs/NAME, or give "
                              "the split options (--split ...) of the one you mean")
    return runs[0] / "best.pt"


@torch.no_grad()
def source_cache(source, shards: ShardSet, ids, stream: str, frames, norm: str, device, batch_size: int = 64):
    """Run the frozen source once over windows ``ids``; returns ``(scores [N, d, d] float32,
    correct [N] bool)`` on ``device``, row i for ``ids[i]``."""
    source.eval()
    n = len(ids)
    d = source.cfg.d
    scores = torch.zeros((n, d, d), dtype=torch.float32, device=device)
    correct = torch.zeros(n, dtype=torch.bool, device=device)
    ds = BlockDataset(shards, ids, [stream], batch_size, frames={stream: frames})
    for batch in make_loader(ds, 0):
        batch = to_device(batch, device)
        with autocast(device):
            out = source(batch[stream])
        scores[batch["idx"]] = kv_scores(out["k"], out["v"], norm)
        correct[batch["idx"]] = out["logits"].argmax(1) == batch["y"]
    ds.close()
    return scores, correct


def dcat_step(tgt: str, src: str, source, lam: float, mcma: bool, norm: str, cache=None):
    """The transfer step: target forward, source scores (cache lookup or frozen forward), D-CAT loss."""

    def step(model, batch):
        out = model(batch[tgt])
        s_t = kv_scores(out["k"], out["v"], norm)
        if cache is not None:
            s_s, correct = cache[0][batch["idx"]], cache[1][batch["idx"]]
        else:
            with torch.no_grad():
                so = source(batch[src])
                s_s = kv_scores(so["k"], so["v"], norm)
                correct = so["logits"].argmax(1) == batch["y"]
        loss, terms = dcat_loss(out["logits"], batch["y"], s_t, s_s, correct, lam=lam, mcma=mcma)
        terms["src_acc"] = correct.float().mean()
        return loss, terms, out["logits"]

    return step


def _default_out(cfg: TransferConfig, tag: str) -> Path:
    return Path(cfg.out) if cfg.out else Path(cfg.runs) / f"{cfg.src}-to-{cfg.tgt}-{tag}"


def transfer(cfg: TransferConfig, hooks: Hooks | None = None) -> dict:
    """Train ``cfg.tgt`` with D-CAT from the frozen ``cfg.src``; returns an info record (run_dir,
    best epoch and validation macro-F1, cache use and its build time, source checkpoint and
    ``source_unchanged``)."""
    hooks = hooks or Hooks()
    t0 = time.perf_counter()
    if cfg.norm not in NORMS:
        raise TrainingError(f"--norm {cfg.norm}: choose one of {', '.join(NORMS)}")
    if cfg.cache not in ("auto", "on", "off"):
        raise TrainingError(f"--cache {cfg.cache}: choose auto, on or off")
    if cfg.cache == "on" and cfg.augment:
        raise TrainingError("--cache on with --augment: augmented windows change every step, so the source "
                            "cannot be cached; use --cache auto (or off)")
    if cfg.src == cfg.tgt:
        raise TrainingError(f"--src and --tgt are both '{cfg.src}': transfer needs two different streams")
    src_path = find_source(cfg)
    src_ck = load_checkpoint(src_path)
    src_run = src_path.parent
    if src_ck.get("stream") != cfg.src:
        raise CheckpointError(f"{src_path}: this checkpoint is for stream '{src_ck.get('stream')}', not --src {cfg.src}")
    # split: the source's, or an explicit one checked for leakage
    if not (src_run / "split.json").is_file():
        raise CheckpointError(f"{src_path}: no split.json beside the source checkpoint, so it cannot be checked "
                              "for leakage; use a run folder made by `dcat pretrain`")
    src_split = load_split(src_run / "split.json")
    if cfg.explicit_split():
        scfg = cfg.split_config()
        split_from = "explicit"
    else:
        src_args = read_config(src_run).get("args", {})
        scfg = TrainConfig.from_dict(src_args).split_config()
        split_from = f"source ({src_run})"
    out = _default_out(cfg, scfg.tag())
    resuming = prepare_run_dir(out, cfg.resume, cfg.overwrite)
    saved_src_hash = None
    if resuming:
        saved = read_config(out)
        cfg = TransferConfig.from_dict({**saved["args"], "device": cfg.device, "workers": cfg.workers,
                                        "threads": cfg.threads, "resume": True})
        saved_src = saved.get("source", {})
        saved_src_hash = saved_src.get("state_sha256")
        if saved_src.get("checkpoint") and Path(saved_src["checkpoint"]) != src_path:
            src_path = Path(saved_src["checkpoint"])
            src_ck = load_checkpoint(src_path)
            src_run = src_path.parent
    device = resolve_device(cfg.device)
    threads = configure_threads(cfg.threads, device)
    shards = ShardSet(cfg.data, [cfg.tgt, cfg.src])
    check_data(src_ck, shards.manifest, str(cfg.data), cfg.src)
    if list(src_ck["classes"]) != list(shards.classes):
        raise CheckpointError(f"{src_path}: the source was trained on classes {src_ck['classes']}, the shards have "
                              f"{shards.classes}; pretrain the source on these shards")
    if resuming and (out / "split.json").is_file():
        split = load_split(out / "split.json")
    elif split_from == "explicit":
        split = make_split(shards, scfg)
        check_transfer_split(src_split, split, f"source {src_path}")
    else:
        split = dict(src_split)
    if not resuming:
        save_split(out / "split.json", split)
    ids = apply_split(shards, split)
    # models
    src_model = model_from_checkpoint(src_ck).to(device)
    src_model.eval()
    src_model.requires_grad_(False)
    src_hash = state_hash(src_model)
    if saved_src_hash and saved_src_hash != src_hash:
        raise CheckpointError(f"{src_path}: the source's weights differ from those this run started with; "
                              "resuming would mix two teachers: start again with --overwrite")
    d = src_model.cfg.d
    if cfg.d is not None and cfg.d != d:
        raise TrainingError(f"--d {cfg.d}: the source has attention width d={d} and D-CAT needs both to share it; "
                            "leave --d out (it defaults to the source's)")
    cfg.d = d
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
        stats = set_input_stats(model, shards, cfg.tgt, ids["train"], cfg.standardize, cfg.seed)
    model.to(device)
    src_frames = src_ck["data"].get("frames")
    use_cache = cfg.cache == "on" or (cfg.cache == "auto" and not cfg.augment)
    n_train = len(ids["train"])
    if use_cache and n_train * d * d * 4 > CACHE_MAX_BYTES and cfg.cache == "auto":
        hooks.message(f"source cache would need {n_train * d * d * 4 / 2**30:.1f} GiB: running the source every step")
        use_cache = False
    if not resuming:
        write_config(out, "transfer", cfg, {
            "data": _data_record(shards), "model_config": mc.to_dict(), "input_stats": stats, "device": str(device),
            "threads": threads,
            "source": {"checkpoint": str(src_path), "run_dir": str(src_run), "stream": cfg.src,
                       "state_sha256": src_hash, "epoch": src_ck.get("epoch")},
            "split_from": split_from, "tgt_init": init_note})
    cache = None
    cache_s = 0.0
    if use_cache:
        tc = time.perf_counter()
        cache = source_cache(src_model, shards, ids["train"], cfg.src, src_frames, cfg.norm, device)
        cache_s = time.perf_counter() - tc
        hooks.message(f"source cache: {n_train} windows in {cache_s:.1f} s, source correct on "
                      f"{float(cache[1].float().mean()) * 100:.0f}% of them")
    streams = [cfg.tgt] if use_cache else [cfg.tgt, cfg.src]
    frames_map = {cfg.tgt: frames, cfg.src: src_frames}
    train_ds = BlockDataset(shards, ids["train"], streams, cfg.batch_size, shuffle=True, seed=cfg.seed,
                            frames=frames_map, block_mb=cfg.block_mb)
    val_ds = BlockDataset(shards, ids["val"], [cfg.tgt], max(cfg.batch_size, 64), frames=frames_map,
                          block_mb=cfg.block_mb)
    ckpt_base = {"stage": "transfer", "model_config": mc.to_dict(), "classes": list(shards.classes),
                 "stream": cfg.tgt, "kind": mc.kind, "data": data_settings(shards, cfg.tgt, frames),
                 "train_config": cfg.to_dict(), "source": {"checkpoint": str(src_path), "stream": cfg.src,
                                                           "state_sha256": src_hash}}
    hooks.message(f"transfer {cfg.src} -> {cfg.tgt} ({out}): lambda {cfg.lam}, norm {cfg.norm}, "
                  f"MCMA {'on' if cfg.mcma else 'off'}, source {'cached' if use_cache else 'run every step'}, "
                  f"split from {split_from}; {n_train} train / {len(ids['val'])} val windows, device {device}")
    step = dcat_step(cfg.tgt, cfg.src, src_model, cfg.lam, cfg.mcma, cfg.norm, cache)
    aug = {cfg.tgt: shards.kind(cfg.tgt), cfg.src: shards.kind(cfg.src)} if cfg.augment else None
    st = fit(out=out, cfg=cfg, model=model, train_ds=train_ds, val_loader=make_loader(val_ds, 0), device=device,
             step_fn=step, stream=cfg.tgt, classes=shards.classes, ckpt_base=ckpt_base, resuming=resuming,
             hooks=hooks, augment_kinds=aug)
    val_ds.close()
    unchanged = state_hash(src_model) == src_hash and not src_model.training
    if not unchanged:  # pragma: no cover - a bug, not a user error
        raise TrainingError("the frozen source's weights changed during transfer (bug): please report it")
    return {"run_dir": str(out), "stage": "transfer", "src": cfg.src, "tgt": cfg.tgt, "source_checkpoint": str(src_path),
            "split_from": split_from, "best_epoch": st.best_epoch, "best_val_macro_f1": st.best_f1,
            "epochs_run": st.epoch + 1, "stopped_early": st.stopped_early, "cache": use_cache,
            "cache_seconds": cache_s, "source_unchanged": unchanged, "lam": cfg.lam, "mcma": cfg.mcma,
            "norm": cfg.norm, "n_windows": {k: int(len(v)) for k, v in ids.items()}, "device": str(device),
            "threads": threads,
            "seconds": time.perf_counter() - t0}


__all__ = ["TransferConfig", "transfer", "find_source", "source_cache", "dcat_step", "state_hash"]
