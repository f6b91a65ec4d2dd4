"""What a transfer needs of a frozen source per window, computed live or once into a cache.

The sources are frozen and, without augmentation, the training windows are fixed, so what the
method needs of each source per training window (``K_s^T V_s`` scores, logits or pooled embedding,
plus correctness for MCMA) can be computed once (:func:`source_cache`, :func:`build_caches`) and
looked up by window position each step, instead of running the sources every step
(:func:`source_outputs`). :class:`PooledTap` reads a model's pooled embedding (feature KD).
"""

from __future__ import annotations

import torch

from pipelines.learn import distributed as ddp
from pipelines.learn.config import MCMA_CONFIDENCE
from pipelines.learn.data import BlockDataset, ShardSet, make_loader
from pipelines.learn.device import autocast, to_device
from pipelines.learn.engine import Hooks
from pipelines.learn.losses import DEFAULT_NORM, kv_scores
from pipelines.learn.misalign import shifted_batches

#: a larger cache (``cache="auto"``) is not built: the sources then run every step
CACHE_MAX_BYTES = 8 * 2 ** 30
#: what each method needs of a source per window (besides its correctness, always kept for MCMA)
METHOD_NEEDS = {"dcat": ("scores",), "logit-kd": ("logits",), "feature-kd": ("pooled",), "none": ()}


class PooledTap:
    """Captures a :class:`pipelines.learn.models.DcatModel`'s pooled embedding on every forward, without
    changing the model: the token mean of its final LayerNorm's output, exactly what its
    classifier reads (``value``: [B, d]). A forward hook on ``model.norm``; ``remove()`` detaches it."""

    def __init__(self, model: torch.nn.Module):
        self.value = None
        self._handle = model.norm.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        self.value = output.mean(dim=1)

    def remove(self) -> None:
        self._handle.remove()


def source_outputs(source, x, y, need=("scores",), norm: str = DEFAULT_NORM, tap: PooledTap | None = None,
                   confidence: float = MCMA_CONFIDENCE) -> dict:
    """One frozen source forward (no gradient): ``correct`` [B] bool (its prediction equals ``y``; on a
    window without a label, ``y = -1``: its top-class probability is at least ``confidence``), plus
    what ``need`` asks of ``scores`` (norm(K^T V) [B, d, d] float32), ``logits`` [B, C] and ``pooled``
    [B, d] (needs ``tap``)."""
    with torch.no_grad():
        out = source(x)
        conf = torch.softmax(out["logits"].float(), dim=1).amax(dim=1)
        r = {"correct": torch.where(y >= 0, out["logits"].argmax(1) == y, conf >= confidence)}
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
                 need=("scores",), tap: PooledTap | None = None, offset_s: float = 0.0, within=None,
                 confidence: float = MCMA_CONFIDENCE) -> dict:
    """Run the frozen source once over windows ``ids``; returns ``{"correct": [N] bool, and per
    ``need``: "scores": [N, d, d], "logits": [N, C], "pooled": [N, d]}`` (float32) on ``device``,
    row i for ``ids[i]``.

    ``offset_s`` != 0 (misalignment study): the source reads each window ``offset_s`` seconds away
    from its own span (:func:`pipelines.learn.misalign.shifted_batches`) and the cache also holds
    ``"valid"`` [N] bool: False where no shifted window exists (the transfer term is masked there);
    ``correct`` compares the source's prediction with the (unshifted) window's label; ``within``: the
    windows whose time a shifted read may use (the whole training part), see ``shifted_batches``."""
    source.eval()
    n = len(ids)
    cache = {"correct": torch.zeros(n, dtype=torch.bool, device=device)}
    ds = None
    if offset_s:
        cache["valid"] = torch.zeros(n, dtype=torch.bool, device=device)
        batches = shifted_batches(shards, ids, stream, offset_s, batch_size, frames, within=within)
    else:
        ds = BlockDataset(shards, ids, [stream], batch_size, frames={stream: frames})
        batches = make_loader(ds, 0)
    for batch in batches:
        batch = to_device(batch, device)
        with autocast(device):
            r = source_outputs(source, batch[stream], batch["y"], need, norm, tap, confidence)
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


def build_caches(models: dict, shards: ShardSet, train_ids, frames: dict, *, method: str, norm: str, device,
                 taps: dict, offsets: dict, misalign: str | None, hooks: Hooks,
                 confidence: float = MCMA_CONFIDENCE) -> dict:
    """:func:`source_cache` of every source (stream -> cache) over the training windows
    ``train_ids``, each rank running the sources over its share, then exchanged, so that every rank
    holds the whole cache; says per source how often it is right (and its shifted windows' share)."""
    n_train = len(train_ids)
    caches = {}
    for s, model in models.items():
        mine = ddp.part_of(n_train)  # one process: all; several: this rank's share, then exchanged
        caches[s] = ddp.gather_rows(
            source_cache(model, shards, train_ids[mine], s, frames[s], norm, device,
                         need=METHOD_NEEDS[method], tap=taps.get(s), offset_s=offsets[s], within=train_ids,
                         confidence=confidence),
            mine, n_train)
        shifted = (f", read {offsets[s]:+g} s off (--misalign {misalign}), shifted window inside its run and the training time for "
                   f"{float(caches[s]['valid'].float().mean()) * 100:.0f}%" if offsets[s] else "")
        hooks.message(f"source cache ({s}): {n_train} windows, source correct on "
                      f"{float(caches[s]['correct'].float().mean()) * 100:.0f}% of them by its own judgement{shifted}")
    return caches


__all__ = ["CACHE_MAX_BYTES", "METHOD_NEEDS", "PooledTap", "source_outputs", "source_cache", "cache_bytes_per_window",
           "build_caches"]
