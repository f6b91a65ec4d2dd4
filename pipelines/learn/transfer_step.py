"""The training step of a transfer (``transfer_step``): the target's loss beside its frozen sources.

One step: the target's forward; each source's per-window outputs (looked up in its cache, or a
frozen forward); the method's per-window distance to each source
(:func:`pipelines.learn.losses.alignment_distance`, :func:`~pipelines.learn.losses.logit_kd_distance`
or :func:`~pipelines.learn.losses.feature_distance`); then
:func:`pipelines.learn.losses.transfer_objective` (CE plus the weighted, MCMA-masked terms).
"""

from __future__ import annotations

import torch

from pipelines.learn.config import MCMA_CONFIDENCE, METHOD_TERMS, METHODS
from pipelines.learn.losses import (DEFAULT_NORM, DEFAULT_TEMPERATURE, alignment_distance, feature_distance, keep_mask,
                                    kv_scores, logit_kd_distance, transfer_objective)
from pipelines.learn.source_cache import METHOD_NEEDS, PooledTap, source_outputs


def transfer_step(tgt: str, sources: list[str], models: dict | None = None, *, method: str = "dcat",
                  lam: float = 1.0, mcma: bool = True, norm: str = DEFAULT_NORM,
                  temperature: float = DEFAULT_TEMPERATURE, weights: dict | None = None, caches: dict | None = None,
                  proj=None, tgt_tap: PooledTap | None = None, src_taps: dict | None = None,
                  oof: dict | None = None, confidence: float = MCMA_CONFIDENCE):
    """The transfer step: target forward; each source's per-window outputs (cache lookup by
    ``batch["idx"]``, or a frozen forward); the method's distance per source; then
    :func:`pipelines.learn.losses.transfer_objective`. ``proj``: the feature-KD projections, one per
    source in ``sources`` order; ``tgt_tap``: a :class:`PooledTap` on the target (feature-KD).

    ``oof``: source name -> ``{"correct": [N] bool, "known": [N] bool}`` over the training windows
    (position = ``batch["idx"]``, :func:`pipelines.learn.crossfit.oof_correctness`): the MCMA
    correctness where ``known``, the source's own prediction elsewhere. A window without a label
    (``y = -1``, ``--label-fraction``) counts where the source's top-class probability (out of fold
    where known) is at least ``confidence``. The source outputs of
    windows whose term does not count are replaced by zeros before the distance, so a NaN there
    reaches neither the loss nor the gradient."""
    if method not in METHODS:
        raise ValueError(f"unknown method '{method}' (choose one of: {', '.join(METHODS)})")
    term = METHOD_TERMS[method]
    need = METHOD_NEEDS[method]
    if method == "feature-kd" and (tgt_tap is None or proj is None):
        raise ValueError("feature-kd needs the projections (proj) and a PooledTap on the target (tgt_tap)")
    models, src_taps, weights, oof = models or {}, src_taps or {}, weights or {}, oof or {}

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
                    sv = source_outputs(models[s], batch[s], batch["y"], need, norm, src_taps.get(s), confidence)
                correct[s] = sv["correct"]
                if s in oof:
                    idx = batch["idx"]
                    correct[s] = torch.where(oof[s]["known"][idx], oof[s]["correct"][idx], correct[s])
                if "valid" in sv:  # misalignment study: no shifted source window -> no transfer term
                    valid[s] = sv["valid"]
                keep = keep_mask(correct[s], valid.get(s), mcma)
                src = _kept(sv[need[0]].detach(), keep)
                if method == "dcat":
                    dists[s] = alignment_distance(s_t, src)
                elif method == "logit-kd":
                    dists[s] = logit_kd_distance(out["logits"], src, temperature)
                else:
                    dists[s] = feature_distance(proj[i](h_t), src)
        loss, terms = transfer_objective(out["logits"], batch["y"], dists, correct, weights, lam=lam, mcma=mcma,
                                         term=term or "xfer", valid=valid)
        return loss, terms, out["logits"]

    return step


def _kept(x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """``x`` [B, ...] with the rows of windows that do not count (``keep`` False) set to zero."""
    if keep is None:
        return x
    return torch.where(keep.view(-1, *([1] * (x.dim() - 1))), x, torch.zeros((), dtype=x.dtype, device=x.device))


__all__ = ["transfer_step"]
