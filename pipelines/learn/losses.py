"""The D-CAT loss: ``CE(target) + lambda * L_CA`` with masked cross-modal alignment (MCMA).

``L_CA`` compares the self-attention "scores" ``S = norm(K^T V)`` [d, d] of the target and the
frozen source on the same, time-synchronized windows::

    L_CA = mean over windows w of  m_w * || norm(K_t^T V_t)_w - norm(K_s^T V_s)_w ||_F

``K``, ``V`` are [L, d] per window, so ``K^T V`` is [d, d] whatever the two sequence lengths
(8 video tokens vs 25 IMU tokens, say); the pipelines must share ``d``.

Normalisations (``norm=``):

- ``fro`` (default): ``K^T V / ||K^T V||_F``. Invariant to the sequence length (and to the scale of
  K and V), and each window's distance lies in [0, 2], so ``L_CA`` sits on the scale of the
  cross-entropy whatever the width ``d``: the paper's range lambda in [0.1, 1] means the same thing
  for every model size. Default because of that, and because it measured best: on the
  sample data (synth defaults; video -> IMU, in distribution, 3 seeds, one split) IMU test macro-F1 was 0.610 alone,
  0.653 with ``fro`` at lambda 1 (better on each seed), 0.566 with ``seqlen`` at lambda 1.
- ``seqlen``: ``K^T V / L``, the mean over tokens of the outer products ``k_i v_i^T``. ``K^T V`` is a
  *sum* over the L tokens, so unnormalised it grows with L and a 8-token video could never match
  a 25-token IMU sequence; dividing by L removes that while keeping the scale of K and V. The
  distance then grows with ``d`` and the activations (about 25 at d = 64 at initialisation), so
  lambda needs to be about 10-100x smaller than with ``fro``.
- ``none``: raw ``K^T V``: the distance grows with the sequence lengths; for ablations only.

MCMA: ``m_w = 1`` only where the source's prediction is correct (``m_w = 1`` everywhere without
MCMA). By default "correct" is judged out of fold: by a copy of the source that did not train on
the window (:mod:`pipelines.learn.crossfit`); the source itself, judged on its own training
windows, is right on nearly all of them. Masked windows contribute zero and the mean is over *all* windows of the batch, so
the alignment pull scales with how often the source is right and an all-wrong batch gives exactly
zero alignment loss (and zero gradient from it).

Scores (and distances) are computed in float32 even under bf16 autocast (autocast is switched off
around them). A masked window's distance is dropped by selection (``torch.where``), so a NaN or inf
there cannot reach the loss.

Baselines beside D-CAT (same split, same budget; ``method=`` of :mod:`pipelines.learn.transfer`), each a
per-window distance between target and frozen source that goes through the same MCMA mask and
batch mean as ``L_CA``:

- ``logit-kd`` (Hinton et al. 2015): ``T^2 * KL(softmax(z_s / T) || softmax(z_t / T))`` over the
  classifier logits ``z`` at temperature ``T`` (default 4); the ``T^2`` keeps the gradient's scale
  independent of ``T``. Term name ``kd``.
- ``feature-kd`` (FitNets-style): ``mean_j (P(h_t) - h_s)_j^2`` over the pooled embeddings ``h``
  (what the classifier reads), through a learned linear projection ``P`` (target width -> source
  width) that trains with the target and is not used at inference. Term name ``fkd``.
- ``none``: plain cross-entropy (the no-transfer baseline on the same split).

Several sources: each source k has its own distance ``L_k`` and its own MCMA mask (where *that*
source is right); the loss is ``CE + lambda * sum_k w_k * L_k`` (:func:`transfer_objective`).
In every case the source side is detached: gradients reach only the target (and the projection).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipelines.learn.config import DEFAULT_NORM, DEFAULT_TEMPERATURE, METHOD_TERMS, METHODS, NORMS  # noqa: F401


def kv_scores(k: torch.Tensor, v: torch.Tensor, norm: str = DEFAULT_NORM) -> torch.Tensor:
    """``norm(K^T V)`` per window: k, v [B, L, d] -> [B, d, d] float32."""
    if norm not in NORMS:
        raise ValueError(f"unknown score normalisation '{norm}' (choose one of: {', '.join(NORMS)})")
    with _float32(k):  # under bf16 autocast the einsum would otherwise run (and return) in bfloat16
        s = torch.einsum("bld,ble->bde", k.float(), v.float())
        if norm == "seqlen":
            s = s / k.shape[1]
        elif norm == "fro":
            s = s / s.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None]
    return s


def labelled_ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy averaged over the windows with a label (``y >= 0``; ``y = -1``: unlabelled,
    ``--label-fraction``); exactly 0 (with a gradient path) when the batch has none. No host sync:
    the sum over labelled windows divided by their count, which is what the mean reduction computes."""
    total = F.cross_entropy(logits.float(), y, ignore_index=-1, reduction="sum")
    return total / (y >= 0).sum().clamp_min(1)


def alignment_distance(s_t: torch.Tensor, s_s: torch.Tensor) -> torch.Tensor:
    """Per-window Frobenius distance ``||s_t - s_s||_F``: [B, d, d] x2 -> [B] float32."""
    with _float32(s_t):
        return (s_t.float() - s_s.float()).flatten(1).norm(dim=1)


def _float32(t: torch.Tensor):
    """Autocast off on ``t``'s device for the block (its ops run in the dtype of their inputs)."""
    return torch.autocast(device_type=t.device.type, enabled=False)


# ---------------------------------------------------------------------------------------------
# baselines and several sources

def masked_mean(dist: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """``mean_w keep_w * dist_w`` over *all* windows of the batch (MCMA semantics: a masked window
    counts as zero, not as absent; ``keep`` None: every window counts). Masked by selection
    (``torch.where``), not multiplication, so a NaN or inf in a masked-out window stays out."""
    if keep is not None:
        dist = torch.where(keep.to(torch.bool), dist, torch.zeros((), dtype=dist.dtype, device=dist.device))
    return dist.mean()


def keep_mask(correct: torch.Tensor | None, valid: torch.Tensor | None, mcma: bool) -> torch.Tensor | None:
    """The windows whose transfer term counts: where the source is right (``mcma``) and that have a
    source window at all (``valid``, the misalignment study); None: every window."""
    keep = correct if mcma else None
    if valid is not None:
        keep = valid if keep is None else (keep & valid)
    return keep


def logit_kd_distance(t_logits: torch.Tensor, s_logits: torch.Tensor,
                      temperature: float = DEFAULT_TEMPERATURE) -> torch.Tensor:
    """Per-window ``T^2 * KL(softmax(s / T) || softmax(t / T))``: [B, C] x2 -> [B] float32.

    ``s_logits`` is detached: the gradient reaches only the target.
    """
    if not temperature > 0:
        raise ValueError(f"temperature {temperature}: must be > 0")
    log_q = F.log_softmax(t_logits.float() / temperature, dim=1)
    log_p = F.log_softmax(s_logits.detach().float() / temperature, dim=1)
    return F.kl_div(log_q, log_p, reduction="none", log_target=True).sum(dim=1) * temperature ** 2


def feature_distance(z_t: torch.Tensor, z_s: torch.Tensor) -> torch.Tensor:
    """Per-window mean squared error over the features: [B, D] x2 -> [B] float32.

    ``z_t`` is the *projected* target embedding; ``z_s`` is detached.
    """
    return (z_t.float() - z_s.detach().float()).pow(2).mean(dim=1)


def transfer_objective(logits: torch.Tensor, y: torch.Tensor, dists: dict, correct: dict,
                       weights: dict | None = None, lam: float = 1.0, mcma: bool = True, term: str = "ca",
                       valid: dict | None = None):
    """``CE + lam * sum_k w_k * L_k`` with ``L_k = mean_w m_kw * dists[k]_w`` (MCMA per source).

    ``dists``: source name -> per-window distance [B] (from :func:`alignment_distance`,
    :func:`logit_kd_distance` or :func:`feature_distance`); ``correct``: source name -> [B] bool,
    where that source predicts ``y`` (its own MCMA mask when ``mcma``); ``weights``: source name ->
    w_k (default 1 each). Empty ``dists``: plain cross-entropy. ``valid``: source name -> [B] bool,
    windows that have a source window at all (the misalignment study); the others never count.

    Returns ``(loss, terms)``: ``ce``; ``<term>`` = ``sum_k w_k L_k``; per source ``<term>_<k>``
    (``L_k``, unweighted), ``keep_rate_<k>`` (share of windows that count; 1 without MCMA) and
    ``src_acc_<k>``; ``keep_rate`` and ``src_acc`` averaged over the sources.
    """
    ce = labelled_ce(logits, y)
    terms = {"ce": ce.detach()}
    if not dists:
        return ce, terms
    weights = weights or {}
    total = 0
    keep_rates, accs = [], []
    one = torch.ones((), device=logits.device)
    for k, dist in dists.items():
        ok = correct.get(k)
        keep = keep_mask(ok, (valid or {}).get(k), mcma)
        lk = masked_mean(dist, keep)
        total = total + float(weights.get(k, 1.0)) * lk
        kr = keep.float().mean() if keep is not None else one
        acc = ok.float().mean() if ok is not None else one * float("nan")
        terms[f"{term}_{k}"] = lk.detach()
        terms[f"keep_rate_{k}"] = kr.detach()
        terms[f"src_acc_{k}"] = acc.detach()
        keep_rates.append(kr)
        accs.append(acc)
    terms[term] = total.detach()
    terms["keep_rate"] = torch.stack(keep_rates).mean().detach()
    terms["src_acc"] = torch.stack(accs).mean().detach()
    return ce + lam * total, terms
