"""Cross-modal transfer: train a target stream's pipeline from one or several frozen sources.

``transfer(cfg)``:

1. Finds each frozen source (``cfg.src`` names one stream or several, comma-separated):
   ``cfg.src_ckpt`` (one path per source), or the one ``dcat pretrain`` run for that stream under
   ``cfg.runs`` (matching the split options when given). Their classes and data settings must
   match the shards.
2. Uses the first source run's split (``split.json``) unless split options are given; then makes
   that split. Either way it refuses (:class:`pipelines.splits.SplitError`) a split where any
   source trained on a window the target validates or tests on, or on an OOD test subject.
3. Builds the target (from scratch, or ``cfg.tgt_init``) with the sources' attention width ``d``.
4. Trains the target with ``CE + lambda * sum_k w_k * L_k`` (:func:`pipelines.losses.transfer_objective`),
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
   over all windows of the batch. The sources stay in eval mode with ``requires_grad=False`` and
   run under ``torch.no_grad()``; their weights are hashed before and after and must be identical.
5. Source cache: the sources are frozen and the training windows are fixed, so without
   augmentation what the method needs of each source per training window (``K_s^T V_s`` scores,
   logits or pooled embedding, plus correctness) is computed once and looked up by window position
   each step (``cache="auto"``/``"on"``), instead of running the sources every step (``"off"``, or
   whenever ``augment`` is on).

The training loop (epochs, early stopping on the target's validation macro-F1, checkpoints,
resume) is ``pipelines.train.fit``; inference later needs only the target.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from pipelines.core.errors import TrainingError
from pipelines.core.io import parse_list
from pipelines.learn import distributed as ddp
from pipelines.learn.checkpoint import CheckpointError, check_data, data_settings, load_checkpoint, model_from_checkpoint
from pipelines.learn.config import METHOD_TERMS, METHODS, NORMS, TrainConfig, TransferConfig, parse_misalign
from pipelines.learn.data import BlockDataset, ShardSet, make_loader
from pipelines.learn.device import autocast, configure_threads, to_device
from pipelines.learn.engine import Hooks
from pipelines.learn.fit import fit
from pipelines.learn.losses import (DEFAULT_NORM, DEFAULT_TEMPERATURE, alignment_distance, feature_distance, kv_scores, logit_kd_distance,
                                    transfer_objective)
from pipelines.learn.misalign import shifted_batches, source_offsets
from pipelines.learn.models import ModelConfig, build_model
from pipelines.learn.pretrain import model_config_for, set_input_stats
from pipelines.learn.runs import data_record, find_runs, prepare_run_dir, read_config, write_config
from pipelines.learn.splits import SplitConfig, apply_split, check_transfer_split, load_split, make_split, save_split

CACHE_MAX_BYTES = 8 * 2 ** 30
#: what each method needs of a source per window (besides its correctness, always kept for MCMA)
METHOD_NEEDS = {"dcat": ("scores",), "logit-kd": ("logits",), "feature-kd": ("pooled",), "none": ()}


def check_settings(cfg: TransferConfig) -> None:
    """Refuse inconsistent transfer settings with a :class:`TrainingError` that says what to pass."""
    if cfg.method not in METHODS:
        raise TrainingError(f"--method {cfg.method}: choose one of {', '.join(METHODS)}")
    if cfg.norm not in NORMS:
        raise TrainingError(f"--norm {cfg.norm}: choose one of {', '.join(NORMS)}")
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


def find_source(cfg: TransferConfig, src: str | None = None, src_ckpt: str | None = None) -> Path:
    """The checkpoint path of source ``src`` (default: the first of ``cfg.src``, with its
    ``--src-ckpt``): ``src_ckpt`` when given, else its pretrain run under ``cfg.runs``."""
    if src is None:
        src, src_ckpt = cfg.sources()[0], cfg.source_ckpts()[0]
    if src_ckpt:
        p = Path(src_ckpt)
        p = p / "best.pt" if p.is_dir() else p
        if not p.is_file():
            raise CheckpointError(f"--src-ckpt {src_ckpt}: no such checkpoint")
        return p
    cmd = f"dcat pretrain --modality {src} --data {cfg.data}"
    runs = find_runs(Path(cfg.runs), "pretrain", src)
    if not runs:
        raise CheckpointError(f"no pretrained '{src}' model in {cfg.runs}/: run `{cmd}` first "
                              "(with the split options you want), or pass --src-ckpt PATH")
    if cfg.explicit_split():
        want = cfg.split_config()
        runs = [r for r in runs if _split_matches(read_config(r).get("args", {}), want)]
        if not runs:
            raise CheckpointError(f"no pretrained '{src}' run in {cfg.runs}/ with the split "
                                  f"'{want.tag()}' (seed {want.seed}): run `{cmd} --split {want.split} ...` with "
                                  "the same split options, or pass --src-ckpt PATH")
    if len(runs) > 1:
        raise CheckpointError(f"several pretrained '{src}' runs in {cfg.runs}/ ("
                              + ", ".join(r.name for r in runs) + "): choose one with --src-ckpt runs/NAME, or give "
                              "the split options (--split ...) of the one you mean")
    return runs[0] / "best.pt"


class PooledTap:
    """Captures a :class:`pipelines.models.DcatModel`'s pooled embedding on every forward, without
    changing the model: the token mean of its final LayerNorm's output, exactly what its
    classifier reads (``value``: [B, d]). A forward hook on ``model.norm``; ``remove()`` detaches it."""

    def __init__(self, model: torch.nn.Module):
        self.value = None
        self._handle = model.norm.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        self.value = output.mean(dim=1)

    def remove(self) -> None:
        self._handle.remove()


def source_outputs(source, x, y, need=("scores",), norm: str = DEFAULT_NORM, tap: PooledTap | None = None) -> dict:
    """One frozen source forward (no gradient): ``correct`` [B] bool, plus what ``need`` asks of
    ``scores`` (norm(K^T V) [B, d, d] float32), ``logits`` [B, C] and ``pooled`` [B, d] (needs ``tap``)."""
    with torch.no_grad():
        out = source(x)
        r = {"correct": out["logits"].argmax(1) == y}
        if "scores" in need:
            r["scores"] = kv_scores(out["k"], out["v"], norm)
        if "logits" in need:
            r["logits"] = out["logits"].float()
        if "pooled" in need:
            if tap is None:
                raise ValueError("source_outputs: 'pooled' needs a PooledTap on the source")
            r["pooled"] = tap.value.float()
    return r


@torch.no_grad()
def source_cache(source, shards: ShardSet, ids, stream: str, frames, norm: str, device, batch_size: int = 64,
                 need=("scores",), tap: PooledTap | None = None, offset_s: float = 0.0) -> dict:
    """Run the frozen source once over windows ``ids``; returns ``{"correct": [N] bool, and per
    ``need``: "scores": [N, d, d], "logits": [N, C], "pooled": [N, d]}`` (float32) on ``device``,
    row i for ``ids[i]``.

    ``offset_s`` != 0 (misalignment study): the source reads each window ``offset_s`` seconds away
    from its own span (:func:`pipelines.misalign.shifted_batches`) and the cache also holds
    ``"valid"`` [N] bool: False where no shifted window exists (the transfer term is masked there);
    ``correct`` compares the source's prediction with the (unshifted) window's label."""
    source.eval()
    n = len(ids)
    cache = {"correct": torch.zeros(n, dtype=torch.bool, device=device)}
    ds = None
    if offset_s:
        cache["valid"] = torch.zeros(n, dtype=torch.bool, device=device)
        batches = shifted_batches(shards, ids, stream, offset_s, batch_size, frames)
    else:
        ds = BlockDataset(shards, ids, [stream], batch_size, frames={stream: frames})
        batches = make_loader(ds, 0)
    for batch in batches:
        batch = to_device(batch, device)
        with autocast(device):
            r = source_outputs(source, batch[stream], batch["y"], need, norm, tap)
        if offset_s:
            r["valid"] = batch["valid"]
        for k, v in r.items():
            if k not in cache:
                cache[k] = torch.zeros((n, *v.shape[1:]), dtype=v.dtype, device=device)
            cache[k][batch["idx"]] = v
    if ds is not None:
        ds.close()
    return cache


def cache_bytes_per_window(method: str, d_source: int, n_classes: int) -> int:
    """Bytes one training window takes in a source's cache for ``method``."""
    need = METHOD_NEEDS[method]
    return (1 + 4 * (d_source * d_source * ("scores" in need) + n_classes * ("logits" in need)
                     + d_source * ("pooled" in need)))


def transfer_step(tgt: str, sources: list[str], models: dict | None = None, *, method: str = "dcat",
                  lam: float = 1.0, mcma: bool = True, norm: str = DEFAULT_NORM,
                  temperature: float = DEFAULT_TEMPERATURE, weights: dict | None = None, caches: dict | None = None,
                  proj=None, tgt_tap: PooledTap | None = None, src_taps: dict | None = None):
    """The transfer step: target forward; each source's per-window outputs (cache lookup by
    ``batch["idx"]``, or a frozen forward); the method's distance per source; then
    :func:`pipelines.losses.transfer_objective`. ``proj``: the feature-KD projections, one per
    source in ``sources`` order; ``tgt_tap``: a :class:`PooledTap` on the target (feature-KD)."""
    if method not in METHODS:
        raise ValueError(f"unknown method '{method}' (choose one of: {', '.join(METHODS)})")
    term = METHOD_TERMS[method]
    need = METHOD_NEEDS[method]
    if method == "feature-kd" and (tgt_tap is None or proj is None):
        raise ValueError("feature-kd needs the projections (proj) and a PooledTap on the target (tgt_tap)")
    models, src_taps, weights = models or {}, src_taps or {}, weights or {}

    def step(model, batch):
        out = model(batch[tgt])
        dists, correct, valid = {}, {}, {}
        if method != "none":
            s_t = kv_scores(out["k"], out["v"], norm) if method == "dcat" else None
            h_t = tgt_tap.value if method == "feature-kd" else None
            for i, s in enumerate(sources):
                if caches is not None:
                    sv = {k: v[batch["idx"]] for k, v in caches[s].items()}
                else:
                    sv = source_outputs(models[s], batch[s], batch["y"], need, norm, src_taps.get(s))
                if method == "dcat":
                    dists[s] = alignment_distance(s_t, sv["scores"].detach())
                elif method == "logit-kd":
                    dists[s] = logit_kd_distance(out["logits"], sv["logits"], temperature)
                else:
                    dists[s] = feature_distance(proj[i](h_t), sv["pooled"])
                correct[s] = sv["correct"]
                if "valid" in sv:  # misalignment study: no shifted source window -> no transfer term
                    valid[s] = sv["valid"]
        loss, terms = transfer_objective(out["logits"], batch["y"], dists, correct, weights, lam=lam, mcma=mcma,
                                         term=term or "xfer", valid=valid)
        return loss, terms, out["logits"]

    return step


def dcat_step(tgt: str, src: str, source, lam: float, mcma: bool, norm: str, cache=None):
    """The single-source D-CAT step (``cache``: :func:`source_cache`'s dict); see :func:`transfer_step`."""
    return transfer_step(tgt, [src], {src: source}, method="dcat", lam=lam, mcma=mcma, norm=norm,
                         caches={src: cache} if cache is not None else None)


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
    device, dinfo = ddp.setup(cfg.device)
    try:
        return _transfer(cfg, hooks, device)
    finally:
        ddp.teardown(dinfo)


def _transfer(cfg: TransferConfig, hooks: Hooks | None, device: torch.device) -> dict:
    hooks = (hooks or Hooks()) if ddp.is_main() else Hooks()
    t0 = time.perf_counter()
    check_settings(cfg)
    sources = cfg.sources()
    src_paths = [find_source(cfg, s, c) for s, c in zip(sources, cfg.source_ckpts())]
    src_cks = [load_checkpoint(p) for p in src_paths]
    for s, p, ck in zip(sources, src_paths, src_cks):
        if ck.get("stream") != s:
            raise CheckpointError(f"{p}: this checkpoint is for stream '{ck.get('stream')}', not --src {s}")
        # split: the source's, or an explicit one checked for leakage
        if not (p.parent / "split.json").is_file():
            raise CheckpointError(f"{p}: no split.json beside the source checkpoint, so it cannot be checked "
                                  "for leakage; use a run folder made by `dcat pretrain`")
    src_splits = [load_split(p.parent / "split.json") for p in src_paths]
    if cfg.explicit_split():
        scfg = cfg.split_config()
        split_from = "explicit"
    else:
        src_args = read_config(src_paths[0].parent).get("args", {})
        scfg = TrainConfig.from_dict(src_args).split_config()
        split_from = f"source ({src_paths[0].parent})"
    out = _default_out(cfg, scfg.tag())
    resuming = ddp.on_main(prepare_run_dir, out, cfg.resume, cfg.overwrite)
    saved_hashes: dict[str, str] = {}
    if resuming:
        saved = ddp.on_main(read_config, out)
        cfg = TransferConfig.from_dict({**saved["args"], "device": cfg.device, "workers": cfg.workers,
                                        "threads": cfg.threads, "resume": True})
        check_settings(cfg)
        sources = cfg.sources()
        recs = saved.get("sources") or ([saved["source"]] if saved.get("source") else [])
        saved_paths = {r.get("stream"): r.get("checkpoint") for r in recs}
        saved_hashes = {r.get("stream"): r.get("state_sha256") for r in recs if r.get("state_sha256")}
        if [Path(saved_paths[s]) if saved_paths.get(s) else None for s in sources] != src_paths:
            src_paths = [Path(saved_paths[s]) if saved_paths.get(s) else find_source(cfg, s, c)
                         for s, c in zip(sources, cfg.source_ckpts())]
            src_cks = [load_checkpoint(p) for p in src_paths]
            src_splits = [load_split(p.parent / "split.json") for p in src_paths]
    threads = configure_threads(cfg.threads, device)
    shards = ShardSet(cfg.data, [cfg.tgt, *sources])
    for s, p, ck in zip(sources, src_paths, src_cks):
        check_data(ck, shards.manifest, str(cfg.data), s)
        if list(ck["classes"]) != list(shards.classes):
            raise CheckpointError(f"{p}: the source was trained on classes {ck['classes']}, the shards have "
                                  f"{shards.classes}; pretrain the source on these shards")
    saved_split = ddp.on_main(lambda: load_split(out / "split.json") if (out / "split.json").is_file() else None)
    if resuming and saved_split is not None:
        split = saved_split
    else:
        if split_from == "explicit":
            split = make_split(shards, scfg)
            others = range(len(sources))
        else:
            split = dict(src_splits[0])
            others = range(1, len(sources))
        for i in others:
            check_transfer_split(src_splits[i], split, f"source {src_paths[i]}")
    if not resuming and ddp.is_main():
        save_split(out / "split.json", split)
    ids = apply_split(shards, split)
    # models
    src_models, src_hashes = {}, {}
    for s, p, ck in zip(sources, src_paths, src_cks):
        m = model_from_checkpoint(ck).to(device)
        m.eval()
        m.requires_grad_(False)
        src_models[s], src_hashes[s] = m, state_hash(m)
        if saved_hashes.get(s) and saved_hashes[s] != src_hashes[s]:
            raise CheckpointError(f"{p}: the source's weights differ from those this run started with; "
                                  "resuming would mix two teachers: start again with --overwrite")
    src_d = {s: m.cfg.d for s, m in src_models.items()}
    if cfg.method == "dcat":
        if len(set(src_d.values())) > 1:
            raise TrainingError("D-CAT compares d x d scores, so every source must share the attention width d; "
                                "the sources have " + ", ".join(f"{s}: d={v}" for s, v in src_d.items())
                                + ": pretrain them with the same --d")
        d = src_d[sources[0]]
        if cfg.d is not None and cfg.d != d:
            raise TrainingError(f"--d {cfg.d}: the source has attention width d={d} and D-CAT needs both to share it; "
                                "leave --d out (it defaults to the source's)")
    else:
        d = cfg.d if cfg.d is not None else src_d[sources[0]]
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
    proj = None
    if cfg.method == "feature-kd":  # built after the target, so the target's initialisation is the same for every method
        proj = torch.nn.ModuleList(torch.nn.Linear(d, src_d[s]) for s in sources).to(device)
    src_frames = {s: ck["data"].get("frames") for s, ck in zip(sources, src_cks)}
    uses_sources = cfg.method != "none"
    use_cache = uses_sources and (cfg.cache == "on" or (cfg.cache == "auto" and not cfg.augment))
    n_train = len(ids["train"])
    need_bytes = n_train * sum(cache_bytes_per_window(cfg.method, src_d[s], len(shards.classes)) for s in sources)
    if use_cache and need_bytes > CACHE_MAX_BYTES and cfg.cache == "auto":
        hooks.message(f"source cache would need {need_bytes / 2**30:.1f} GiB: running the sources every step")
        use_cache = False
    offsets = source_offsets(parse_misalign(cfg.misalign), cfg.tgt, sources)
    if any(offsets.values()) and not use_cache:
        raise TrainingError(f"--misalign {cfg.misalign}: the shifted source windows are read into the source cache, "
                            f"which would need {need_bytes / 2**30:.1f} GiB here; use a smaller training set")
    weights = dict(zip(sources, cfg.source_weights()))
    term = METHOD_TERMS[cfg.method]
    src_recs = [{"checkpoint": str(p), "run_dir": str(p.parent), "stream": s, "state_sha256": src_hashes[s],
                 "epoch": ck.get("epoch"), "d": src_d[s], "weight": weights[s]}
                for s, p, ck in zip(sources, src_paths, src_cks)]
    world = ddp.world_size()
    if not resuming and ddp.is_main():
        write_config(out, "transfer", cfg, {
            "data": data_record(shards), "model_config": mc.to_dict(), "input_stats": stats, "device": str(device),
            "threads": threads, "world_size": world, "method": cfg.method, "loss_term": term,
            "source": src_recs[0], "sources": src_recs, "split_from": split_from, "tgt_init": init_note})
    src_taps = {s: PooledTap(m) for s, m in src_models.items()} if cfg.method == "feature-kd" else {}
    tgt_tap = PooledTap(model) if cfg.method == "feature-kd" else None
    caches = None
    cache_s = 0.0
    if use_cache:
        tc = time.perf_counter()
        caches = {}
        for s in sources:
            mine = ddp.part_of(n_train)  # one process: all; several: this rank's share, then exchanged
            caches[s] = ddp.gather_rows(
                source_cache(src_models[s], shards, ids["train"][mine], s, src_frames[s], cfg.norm, device,
                             need=METHOD_NEEDS[cfg.method], tap=src_taps.get(s), offset_s=offsets[s]),
                mine, n_train)
            shifted = (f", read {offsets[s]:+g} s off (--misalign {cfg.misalign}), shifted window inside its run for "
                       f"{float(caches[s]['valid'].float().mean()) * 100:.0f}%" if offsets[s] else "")
            hooks.message(f"source cache ({s}): {n_train} windows, source correct on "
                          f"{float(caches[s]['correct'].float().mean()) * 100:.0f}% of them{shifted}")
        cache_s = time.perf_counter() - tc
        hooks.message(f"source cache built in {cache_s:.1f} s")
    streams = [cfg.tgt] if (use_cache or not uses_sources) else [cfg.tgt, *sources]
    frames_map = {cfg.tgt: frames, **src_frames}
    rw = {"rank": ddp.rank(), "world": world}
    train_ds = BlockDataset(shards, ids["train"], streams, cfg.batch_size, shuffle=True, seed=cfg.seed,
                            frames=frames_map, block_mb=cfg.block_mb, **rw)
    val_ds = BlockDataset(shards, ids["val"], [cfg.tgt], max(cfg.batch_size, 64), frames=frames_map,
                          block_mb=cfg.block_mb, shard="block", **rw)
    ckpt_src = [{k: r[k] for k in ("checkpoint", "stream", "state_sha256", "weight")} for r in src_recs]
    ckpt_base = {"stage": "transfer", "model_config": mc.to_dict(), "classes": list(shards.classes),
                 "stream": cfg.tgt, "kind": mc.kind, "data": data_settings(shards, cfg.tgt, frames),
                 "train_config": cfg.to_dict(), "method": cfg.method, "source": ckpt_src[0], "sources": ckpt_src}
    if proj is not None:
        ckpt_base["aux_note"] = ("aux: feature-KD projections (Linear target d -> source d), one per source in "
                                 "'sources' order; used in training only")
    what = {"dcat": f"D-CAT, norm {cfg.norm}", "logit-kd": f"logit KD, T {cfg.temperature:g}",
            "feature-kd": "feature KD", "none": "no transfer (plain cross-entropy)"}[cfg.method]
    src_note = ("sources unused" if not uses_sources else
                f"MCMA {'on' if cfg.mcma else 'off'}, source{'s' if len(sources) > 1 else ''} "
                f"{'cached' if use_cache else 'run every step'}")
    wnote = f" (weights {', '.join(f'{s} {w:g}' for s, w in weights.items())})" if len(sources) > 1 else ""
    hooks.message(f"transfer {'+'.join(sources)} -> {cfg.tgt} ({out}): {what}, lambda {cfg.lam}{wnote}, {src_note}, "
                  f"split from {split_from}; {n_train} train / {len(ids['val'])} val windows, device {device}")
    step = transfer_step(cfg.tgt, sources, src_models, method=cfg.method, lam=cfg.lam, mcma=cfg.mcma, norm=cfg.norm,
                         temperature=cfg.temperature, weights=weights, caches=caches, proj=proj, tgt_tap=tgt_tap,
                         src_taps=src_taps)
    aug = ({cfg.tgt: shards.kind(cfg.tgt), **{s: shards.kind(s) for s in sources}} if cfg.augment else None)
    try:
        st = fit(out=out, cfg=cfg, model=model, train_ds=train_ds, val_loader=make_loader(val_ds, 0), device=device,
                 step_fn=step, stream=cfg.tgt, classes=shards.classes, ckpt_base=ckpt_base, resuming=resuming,
                 hooks=hooks, augment_kinds=aug, aux=proj)
    finally:
        for tap in [*src_taps.values(), *([tgt_tap] if tgt_tap else [])]:
            tap.remove()
        val_ds.close()
    unchanged = all(state_hash(m) == src_hashes[s] and not m.training for s, m in src_models.items())
    if not unchanged:  # pragma: no cover - a bug, not a user error
        raise TrainingError("the frozen source's weights changed during transfer (bug): please report it")
    return {"run_dir": str(out), "stage": "transfer", "method": cfg.method, "src": cfg.src, "tgt": cfg.tgt,
            "sources": sources, "src_weights": [weights[s] for s in sources],
            "source_checkpoint": str(src_paths[0]), "source_checkpoints": [str(p) for p in src_paths],
            "split_from": split_from, "best_epoch": st.best_epoch, "best_val_macro_f1": st.best_f1,
            "epochs_run": st.epoch + 1, "stopped_early": st.stopped_early, "cache": use_cache,
            "cache_seconds": cache_s, "source_unchanged": unchanged, "lam": cfg.lam, "mcma": cfg.mcma,
            "norm": cfg.norm, "temperature": cfg.temperature, "loss_term": term, "misalign": cfg.misalign,
            "source_offsets_s": offsets,
            "n_windows": {k: int(len(v)) for k, v in ids.items()}, "device": str(device),
            "threads": threads, "world_size": world,
            "seconds": time.perf_counter() - t0}


__all__ = ["TransferConfig", "transfer", "find_source", "source_cache", "source_outputs", "transfer_step",
           "dcat_step", "state_hash", "check_settings", "PooledTap", "METHOD_NEEDS"]
