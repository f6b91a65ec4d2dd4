"""The D-CAT loss: ``CE(target) + lambda * L_CA`` with masked cross-modal alignment (MCMA).

``L_CA`` compares the self-attention "scores" ``S = norm(K^T V)`` [d, d] of the target and the
frozen source on the same, time-synchronized windows::

    L_CA = mean over windows w of  m_w * || norm(K_t^T V_t)_w - norm(K_s^T V_s)_w ||_F

``K``, ``V`` are [L, d] per window, so ``K^T V`` is [d, d] whatever the two sequence lengths
(8 video tokens vs 25 IMU tokens, say); the pipelines must share ``d``.

Normalisations (``norm=``):

- ``seqlen`` (default): ``K^T V / L``, the mean over tokens of the outer products ``k_i v_i^T``.
  ``K^T V`` is a *sum* over the L tokens, so unnormalised its size grows with L and two
  streams with different token counts could never match; dividing by L makes it independent of
  the sequence length (repeating every token twice leaves it unchanged) while keeping the scale of
  the keys and values, which carries information ``fro`` throws away. It is the closest reading
  of the reference's "normalise the scores", and the default for that reason.
- ``fro``: ``K^T V / ||K^T V||_F``: only the direction of the score matrix is aligned (scale-
  and length-invariant; each term of the distance is then at most 2).
- ``none``: raw ``K^T V``: the distance grows with the sequence lengths; kept for ablations.

MCMA: ``m_w = 1`` only where the frozen source's prediction is correct (``m_w = 1`` everywhere
without MCMA). Masked windows contribute zero and the mean is over *all* windows of the batch, so
the alignment pull scales with how often the source is right and an all-wrong batch gives exactly
zero alignment loss (and zero gradient from it).

Scores are computed in float32 even under bf16 autocast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

NORMS = ("seqlen", "fro", "none")
DEFAULT_NORM = "seqlen"


def kv_scores(k: torch.Tensor, v: torch.Tensor, norm: str = DEFAULT_NORM) -> torch.Tensor:
    """``norm(K^T V)`` per window: k, v [B, L, d] -> [B, d, d] float32."""
    if norm not in NORMS:
        raise ValueError(f"unknown score normalisation '{norm}' (choose one of: {', '.join(NORMS)})")
    s = torch.einsum("bld,ble->bde", k.float(), v.float())
    if norm == "seqlen":
        s = s / k.shape[1]
    elif norm == "fro":
        s = s / s.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None]
    return s


def alignment_distance(s_t: torch.Tensor, s_s: torch.Tensor) -> torch.Tensor:
    """Per-window Frobenius distance ``||s_t - s_s||_F``: [B, d, d] x2 -> [B]."""
    return (s_t - s_s).flatten(1).norm(dim=1)


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
