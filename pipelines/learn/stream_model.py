"""One stream's model for a training run: its :class:`~pipelines.learn.models.ModelConfig` from the
settings and the shards (:func:`model_config_for`) and its input standardization
(:func:`set_input_stats`). Shared by ``pretrain``, ``transfer`` (the target) and ``crossfit`` (the
source's out-of-fold copies), so the three build a stream's model the same way.
"""

from __future__ import annotations

from pipelines.learn.config import TrainConfig
from pipelines.learn.data import ShardSet, estimate_stats, manifest_stats
from pipelines.learn.models import DcatModel, ModelConfig, frame_indices


def set_input_stats(model: DcatModel, shards: ShardSet, stream: str, train_ids, how: str, seed: int) -> str:
    """Fill the model's input standardization buffers; returns a note saying where they came from."""
    kind = shards.kind(stream)
    if kind == "video" or how == "none":
        return "fixed" if kind == "video" else "none"
    stats = manifest_stats(shards, train_ids, stream) if how == "manifest" else None  # training recordings only
    if stats is not None:
        model.norm_in.set_stats(*stats)
        return "manifest (training recordings)"
    mean, std = estimate_stats(shards, train_ids, stream, seed=seed)
    model.norm_in.set_stats(mean, std)
    return "train"


def model_config_for(cfg: TrainConfig, shards: ShardSet, stream: str, d: int) -> tuple[ModelConfig, int | None]:
    """The model settings of ``stream`` (its kind and window shape, ``cfg``'s width and depth) and the
    number of video frames it reads (None: all, or not video)."""
    kind = shards.kind(stream)
    shape = shards.shape(stream)
    frames = None
    if kind == "video" and cfg.video_frames:
        idx = frame_indices(shape[0], cfg.video_frames)
        if idx is not None:
            frames = int(len(idx))
            shape = [frames, *shape[1:]]
    mc = ModelConfig(kind=kind, in_shape=list(shape), n_classes=len(shards.classes), d=int(d), heads=cfg.heads,
                     depth=cfg.depth, dropout=cfg.dropout)
    return mc, frames


__all__ = ["set_input_stats", "model_config_for"]
