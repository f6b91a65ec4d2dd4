"""The training step of a transfer (``transfer_step``): the target's loss beside its frozen sources.

One step: the target's forward; each source's per-window outputs (looked up in its cache, or a
frozen forward); the method's per-window distance to each source
(:func:`pipelines.learn.losses.alignment_distance`, :func:`~pipelines.learn.losses.logit_kd_distance`
or :func:`~pipelines.learn.losses.feature_distance`); then
:func:`pipelines.learn.losses.transfer_objective` (CE plus the weighted, MCMA-masked terms).
"""

from __future__ import annotations

from pipelines.learn.config import METHOD_TERMS, METHODS
from pipelines.learn.losses import (DEFAULT_NORM, DEFAULT_TEMPERATURE, alignment_distance, feature_distance, kv_scores,
                                    logit_kd_distance, transfer_objective)
from pipelines.learn.source_cache import METHOD_NEEDS, PooledTap, source_outputs


def transfer_step(tgt: str, sources: list[str], models: dict | None = None, *, method: str = "dcat",
                  lam: float = 1.0, mcma: bool = True, norm: str = DEFAULT_NORM,
                  temperature: float = DEFAULT_TEMPERATURE, weights: dict | None = None, caches: dict | None = None,
                  proj=None, tgt_tap: PooledTap | None = None, src_taps: dict | None = None):
    """The transfer step: target forward; each source's per-window outputs (cache lookup by
    ``batch["idx"]``, or a frozen forward); the method's distance per source; then
    :func:`pipelines.learn.losses.transfer_objective`. ``proj``: the feature-KD projections, one per
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


__all__ = ["transfer_step"]
