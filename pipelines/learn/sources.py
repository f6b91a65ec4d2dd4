"""The frozen sources of a transfer: finding each one's checkpoint, loading it with its split,
checking it against the shards, and loading it frozen (weights hashed, to prove they never change).

A source is found the same way for a new run and for a resumed one (:func:`source_paths`): the
checkpoint a resumed run recorded, else ``--src-ckpt``, else the one ``dcat pretrain`` run for that
stream under ``cfg.runs`` (:func:`find_source`, matching the split options when given).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from pipelines.learn.checkpoint import CheckpointError, check_data, load_checkpoint, model_from_checkpoint
from pipelines.learn.config import TrainConfig, TransferConfig
from pipelines.learn.shardset import ShardSet
from pipelines.learn.runs import find_runs, read_config
from pipelines.learn.splits import SplitConfig, load_split


@dataclass
class SourceRun:
    """One source's pretrain run: its stream, checkpoint path, loaded checkpoint and ``split.json``."""

    stream: str
    path: Path
    ckpt: dict
    split: dict


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
    return TrainConfig.from_dict(run_args).split_config().key() == want.key()


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


def source_paths(cfg: TransferConfig, recorded: dict | None = None) -> list[Path]:
    """Each source's checkpoint path, in ``cfg.sources()`` order: the one ``recorded`` names
    (stream -> path: what a resumed run's config.json holds), else :func:`find_source`."""
    recorded = recorded or {}
    return [Path(recorded[s]) if recorded.get(s) else find_source(cfg, s, c)
            for s, c in zip(cfg.sources(), cfg.source_ckpts())]


def load_sources(streams: list[str], paths: list[Path]) -> list[SourceRun]:
    """Load each source's checkpoint and the ``split.json`` beside it; refuse a checkpoint of
    another stream, or one without a split (it could not be checked for leakage)."""
    cks = [load_checkpoint(p) for p in paths]
    for s, p, ck in zip(streams, paths, cks):
        if ck.get("stream") != s:
            raise CheckpointError(f"{p}: this checkpoint is for stream '{ck.get('stream')}', not --src {s}")
        if not (p.parent / "split.json").is_file():
            raise CheckpointError(f"{p}: no split.json beside the source checkpoint, so it cannot be checked "
                                  "for leakage; use a run folder made by `dcat pretrain`")
    splits = [load_split(p.parent / "split.json") for p in paths]
    return [SourceRun(s, p, ck, sp) for s, p, ck, sp in zip(streams, paths, cks, splits)]


def recorded_sources(saved: dict) -> tuple[dict[str, str], dict[str, str]]:
    """From a run's config.json: per source stream, the checkpoint path and the weights' hash it
    started with (older runs record one ``source``, newer ones a ``sources`` list)."""
    recs = saved.get("sources") or ([saved["source"]] if saved.get("source") else [])
    paths = {r.get("stream"): r.get("checkpoint") for r in recs}
    hashes = {r.get("stream"): r.get("state_sha256") for r in recs if r.get("state_sha256")}
    return paths, hashes


def check_sources_data(srcs: list[SourceRun], shards: ShardSet, data: str) -> None:
    """Refuse a source trained on other data settings or classes than ``shards`` hold."""
    for src in srcs:
        check_data(src.ckpt, shards.manifest, str(data), src.stream)
        if list(src.ckpt["classes"]) != list(shards.classes):
            raise CheckpointError(f"{src.path}: the source was trained on classes {src.ckpt['classes']}, the shards "
                                  f"have {shards.classes}; pretrain the source on these shards")


def frozen_models(srcs: list[SourceRun], device, saved_hashes: dict) -> tuple[dict, dict]:
    """Each source's model on ``device`` in eval mode without gradients, and its :func:`state_hash`
    (stream -> model, stream -> hash); refuses weights that differ from ``saved_hashes`` (resume)."""
    models, hashes = {}, {}
    for src in srcs:
        s = src.stream
        m = model_from_checkpoint(src.ckpt).to(device)
        m.eval()
        m.requires_grad_(False)
        models[s], hashes[s] = m, state_hash(m)
        if saved_hashes.get(s) and saved_hashes[s] != hashes[s]:
            raise CheckpointError(f"{src.path}: the source's weights differ from those this run started with; "
                                  "resuming would mix two teachers: start again with --overwrite")
    return models, hashes


__all__ = ["SourceRun", "state_hash", "find_source", "source_paths", "load_sources", "recorded_sources",
           "check_sources_data", "frozen_models"]
