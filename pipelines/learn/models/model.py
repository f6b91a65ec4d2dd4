"""The per-stream pipeline: InputNorm -> encoder -> (+ positions) -> attention block(s) -> mean pool -> linear."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch
from torch import nn

from pipelines.learn.models.attention import AttentionBlock, sinusoidal_positions
from pipelines.learn.models.encoders import ENCODERS, InputNorm

KINDS = tuple(ENCODERS)


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model (stored in every checkpoint).

    kind: stream kind (``video``/``audio``/``imu``), picks the encoder.
    in_shape: per-window input shape as fed to the model (video: after frame subsampling,
      [T, H, W, 3]; imu: [T, C]; audio: [F, M]).
    d: attention width (source and target must share it for D-CAT). heads: attention heads.
    depth: attention blocks; K and V come from the last one. mlp_ratio, dropout: block settings.
    widths: encoder convolution widths (None: per-kind default). temporal_kernel: video only.
    """

    kind: str
    in_shape: list
    n_classes: int
    d: int = 64
    heads: int = 4
    depth: int = 1
    mlp_ratio: float = 2.0
    dropout: float = 0.1
    widths: list | None = None
    temporal_kernel: int = 3
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class DcatModel(nn.Module):
    """``forward(x) -> {"logits": [B, n_classes], "k": [B, L, d], "v": [B, L, d]}``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.kind not in ENCODERS:
            raise ValueError(f"unknown stream kind '{cfg.kind}' (known: {', '.join(KINDS)})")
        self.cfg = cfg
        self.norm_in = InputNorm(cfg.kind, cfg.in_shape)
        enc_kw = {"temporal_kernel": cfg.temporal_kernel} if cfg.kind == "video" else {}
        self.encoder = ENCODERS[cfg.kind](cfg.in_shape, cfg.d, cfg.widths, **enc_kw)
        self.blocks = nn.ModuleList(AttentionBlock(cfg.d, cfg.heads, cfg.mlp_ratio, cfg.dropout)
                                    for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.d)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.d, cfg.n_classes)
        self.n_tokens = self._count_tokens()
        self.register_buffer("pos", sinusoidal_positions(self.n_tokens, cfg.d), persistent=False)

    @torch.no_grad()
    def _count_tokens(self) -> int:
        was = self.training
        self.eval()
        dtype = torch.uint8 if self.cfg.kind == "video" else torch.float32
        x = torch.zeros((1, *self.cfg.in_shape), dtype=dtype)
        n = self.encoder(self.norm_in(x)).shape[1]
        self.train(was)
        return int(n)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        tok = self.encoder(self.norm_in(x))
        return tok + self.pos[: tok.shape[1]].to(tok.dtype)

    def forward(self, x: torch.Tensor) -> dict:
        h = self.tokens(x)
        k = v = None
        for blk in self.blocks:
            h, k, v = blk(h)
        pooled = self.norm(h).mean(dim=1)
        return {"logits": self.head(self.drop(pooled)), "k": k, "v": v}


def build_model(cfg: ModelConfig | dict) -> DcatModel:
    if isinstance(cfg, dict):
        cfg = ModelConfig.from_dict(cfg)
    return DcatModel(cfg)


def frame_indices(n_stored: int, n_frames: int | None) -> np.ndarray | None:
    """Evenly spaced frame indices to keep ``n_frames`` of ``n_stored`` (None: keep all).

    ``frame_indices(60, 8) == [0, 8, 17, 25, 34, 42, 51, 59]``: first and last frame kept,
    the rest rounded (half up) from a uniform grid, so the kept frames span the whole window.
    """
    if not n_frames or n_frames >= n_stored:
        return None
    if n_frames == 1:
        return np.array([n_stored // 2])
    grid = np.arange(n_frames) * (n_stored - 1) / (n_frames - 1)
    return np.floor(grid + 0.5).astype(np.int64)
