"""Reference losses the tests compare the library with: single-source D-CAT and the masked means of
one baseline distance, written as the method papers state them (the library itself computes every
method through :func:`pipelines.learn.losses.transfer_objective`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipelines.learn.config import DEFAULT_TEMPERATURE
from pipelines.learn.losses import alignment_distance, feature_distance, logit_kd_distance, masked_mean


def alignment_loss(s_t: torch.Tensor, s_s: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """``mean_w keep_w * ||s_t - s_s||_F`` (``keep`` None: every window counts).

    ``s_s`` is detached: the gradient reaches only the target.
    """
    dist = alignment_distance(s_t, s_s.detach())
    if keep is not None:
        dist = dist * keep.to(dist.dtype)
    return dist.mean()


def dcat_loss(logits: torch.Tensor, y: torch.Tensor, s_t: torch.Tensor, s_s: torch.Tensor,
              src_correct: torch.Tensor | None, lam: float = 1.0, mcma: bool = True):
    """``CE(logits, y) + lam * L_CA``; returns ``(loss, {"ce", "ca", "keep_rate"})`` (terms as floats-in-tensors).

    ``src_correct`` [B] bool: where the frozen source predicts ``y``; used as the mask when ``mcma``.
    """
    ce = F.cross_entropy(logits.float(), y)
    keep = src_correct if mcma else None
    ca = alignment_loss(s_t, s_s, keep)
    keep_rate = (src_correct.float().mean() if (mcma and src_correct is not None)
                 else torch.ones((), device=logits.device))
    return ce + lam * ca, {"ce": ce.detach(), "ca": ca.detach(), "keep_rate": keep_rate.detach()}


def logit_kd_loss(t_logits: torch.Tensor, s_logits: torch.Tensor, temperature: float = DEFAULT_TEMPERATURE,
                  keep: torch.Tensor | None = None) -> torch.Tensor:
    """``mean_w keep_w * T^2 KL_w`` (``keep`` None: every window counts)."""
    return masked_mean(logit_kd_distance(t_logits, s_logits, temperature), keep)


def feature_kd_loss(z_t: torch.Tensor, z_s: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """``mean_w keep_w * MSE_w`` (``keep`` None: every window counts; then equal to ``F.mse_loss``)."""
    return masked_mean(feature_distance(z_t, z_s), keep)
