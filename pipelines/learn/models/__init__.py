"""Models: one encoder per stream kind -> tokens of width ``d`` -> self-attention exposing K, V -> pool -> linear.

``build_model(ModelConfig)`` gives a :class:`DcatModel`; its ``forward(x)`` returns a dict with
``logits`` [B, n_classes], ``k`` and ``v`` [B, L, d] (the last attention block's keys and values,
all heads concatenated), which the D-CAT loss (``pipelines.learn.losses``) turns into ``K^T V`` [B, d, d].

Inputs are the arrays exactly as a shard stores them (video uint8 [B, T, H, W, 3], imu float32
[B, T, C] raw units, audio log-mel float32 [B, F, M]); the model scales / standardizes them itself
(buffers ``in_mean``/``in_std`` saved in the state dict), so the data path ships compact raw arrays
and the checkpoint carries everything inference needs. Imports only torch.
"""

from __future__ import annotations

from pipelines.learn.models.model import KINDS, DcatModel, ModelConfig, build_model, frame_indices

__all__ = ["KINDS", "DcatModel", "ModelConfig", "build_model", "frame_indices"]
