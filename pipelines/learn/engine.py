"""The training engine (MAE-style): :func:`train_one_epoch` and :func:`run_inference` /
:func:`evaluate_model`, with the pieces a step needs (augmentation, weight-decay groups, the
warm-up + cosine schedule, the cross-entropy step). :mod:`pipelines.learn.fit` drives them epoch by
epoch; ``pretrain`` and ``transfer`` differ only in the step function they pass.

On a GPU the step runs under bf16 autocast; on a CPU in float32. Under ``torchrun`` (several
processes) see :mod:`pipelines.learn.distributed`: with ``dropout > 0`` each rank draws its own
masks per step from a generator seeded by (seed, step, rank), so the run is still reproducible.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from pipelines.core.errors import TrainingError
from pipelines.learn import distributed as ddp
from pipelines.learn.device import autocast, to_device
from pipelines.learn.losses import labelled_ce
from pipelines.learn.metrics import classification_metrics


class Hooks:
    """Progress callbacks (the CLI renders them with rich; the library prints nothing)."""

    def message(self, text: str) -> None: ...
    def on_epoch_start(self, epoch: int, epochs: int, n_batches: int) -> None: ...
    def on_step(self, epoch: int, step: int, loss: float) -> None: ...
    def on_epoch_end(self, epoch: int, metrics: dict) -> None: ...


def augment_batch(batch: dict, kinds: dict, part: tuple[int, int] | None = None) -> dict:
    """Light, label-preserving augmentation (uses the torch RNG): video horizontal flip per window;
    imu / audio: per-window gain in [0.9, 1.1] plus Gaussian noise at 5% of the window's std.

    ``part = (offset, n_global)``: the batch is rows ``offset..`` of a global batch of ``n_global``
    split over processes; the random numbers are drawn for the whole global batch and sliced, so
    each window gets what it would get in one process (and every process's RNG stays in step)."""
    out = dict(batch)
    for s, kind in kinds.items():
        if s not in batch:
            continue
        x = batch[s]
        b = x.shape[0]
        off, n = part if part is not None else (0, b)
        if kind == "video":
            flip = (torch.rand(n, device=x.device) < 0.5)[off:off + b]
            out[s] = torch.where(flip.view(b, 1, 1, 1, 1), x.flip(3), x)
        else:
            gain = 0.9 + 0.2 * torch.rand((n,) + (1,) * (x.dim() - 1), device=x.device)[off:off + b]
            std = x.flatten(1).std(dim=1).view((b,) + (1,) * (x.dim() - 1))
            noise = (torch.randn_like(x) if part is None
                     else torch.randn((n, *x.shape[1:]), dtype=x.dtype, device=x.device)[off:off + b])
            out[s] = x * gain + 0.05 * std * noise
    return out


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices / kernels only (not biases, norms)."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_schedule(optimizer, total_steps: int, warmup_steps: int):
    """Linear warm-up to the base LR over ``warmup_steps``, then cosine decay to 0 at ``total_steps``."""
    total_steps = max(1, total_steps)
    warmup_steps = max(0, min(warmup_steps, total_steps - 1))

    def f(step):
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        p = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, p)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, f)


StepFn = Callable[[torch.nn.Module, dict], tuple]


def ce_step(stream: str) -> StepFn:
    """The pretraining step: cross-entropy on ``stream``."""

    def step(model, batch):
        out = model(batch[stream])
        loss = labelled_ce(out["logits"], batch["y"])
        return loss, {"ce": loss.detach()}, out["logits"]

    return step


@contextlib.contextmanager
def _rank_rng(seed: int, step: int, device: torch.device):
    """Several processes: the step's own random numbers (dropout) come from a generator seeded by
    (seed, step, rank), restored afterwards, so the shared torch RNG stays the same on every rank
    (augmentation draws from it for the global batch) and resuming needs no per-rank RNG state."""
    devs = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devs):
        torch.manual_seed(int(np.random.SeedSequence([int(seed), int(step), ddp.rank(), 0xD0]).generate_state(1)[0]))
        yield


def train_one_epoch(model, loader, optimizer, scheduler, device, step_fn: StepFn, *, epoch: int, step: int,
                    grad_clip: float = 1.0, hooks: Hooks | None = None, augment_kinds: dict | None = None,
                    aux: torch.nn.Module | None = None, seed: int = 0):
    """One pass over ``loader``; returns ``(metrics, step)``.

    ``metrics``: ``train_loss`` and the mean of each term ``step_fn`` reports (``train_<term>``),
    ``train_acc``, ``train_windows``, ``train_windows_per_s``. Stops with :class:`TrainingError`
    naming the step and the loss terms on a non-finite loss.

    Several processes (``model`` wrapped in DDP, batches carrying ``part``): each rank's loss is
    scaled by ``world * n_rank / n_global`` before the backward pass, so DDP's gradient average is
    the gradient of the global batch's mean loss; ``aux`` gradients are averaged likewise; the
    metrics are summed over ranks; a non-finite loss on any rank stops every rank.
    """
    model.train()
    hooks = hooks or Hooks()
    sums: dict[str, float] = {}
    n = n_lab = correct = 0
    multi = ddp.is_distributed()
    world = ddp.world_size()
    t0 = time.perf_counter()
    for batch in loader:
        part = batch.pop("part", None)
        part = (int(part[0]), int(part[1])) if part is not None else None
        batch = to_device(batch, device)
        if augment_kinds:
            batch = augment_batch(batch, augment_kinds, part)
        b = int(batch["y"].shape[0])
        with (_rank_rng(seed, step, device) if multi else contextlib.nullcontext()):
            with autocast(device):
                loss, terms, logits = step_fn(model, batch)
            bad = not bool(torch.isfinite(loss))
            if (ddp.any_true(bad, device) if multi else bad):
                detail = ", ".join(f"{k}={float(v):.4g}" for k, v in terms.items())
                what = (f"the loss is {float(loss.detach())} ({detail})" if bad
                        else "the loss of another process is not finite")
                raise TrainingError(f"step {step} (epoch {epoch}): {what}; "
                                    "lower --lr, check the input shards with `dcat validate`, or try --device cpu")
            optimizer.zero_grad(set_to_none=True)
            scale = b * world / part[1] if (multi and part is not None) else 1.0
            (loss * scale if scale != 1.0 else loss).backward()
        if multi and aux is not None:
            ddp.all_reduce_grads(aux)
        if grad_clip and grad_clip > 0:
            torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], grad_clip)
        optimizer.step()
        scheduler.step()
        n += b
        lab = batch["y"] >= 0  # windows without a label (--label-fraction) have no accuracy
        c, nl = torch.stack([((logits.argmax(1) == batch["y"]) & lab).sum(), lab.sum()]).tolist()  # one sync
        correct, n_lab = correct + int(c), n_lab + int(nl)
        lv = float(loss.detach())
        sums["loss"] = sums.get("loss", 0.0) + lv * b
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + float(v) * b
        step += 1
        hooks.on_step(epoch, step, lv)
    dt = time.perf_counter() - t0
    if multi:
        tot = ddp.all_reduce_sum({**{f"sum_{k}": v for k, v in sums.items()}, "n": n, "n_lab": n_lab,
                                  "correct": correct}, device)
        sums = {k[4:]: v for k, v in tot.items() if k.startswith("sum_")}
        n, n_lab, correct = int(round(tot["n"])), int(round(tot["n_lab"])), int(round(tot["correct"]))
    m = {f"train_{k}": v / max(n, 1) for k, v in sums.items()}
    m.update({"train_acc": correct / max(n_lab, 1), "train_windows": n, "train_windows_per_s": n / max(dt, 1e-9),
              "train_seconds": dt})
    return m, step


@torch.no_grad()
def run_inference(model, loader, device, stream: str) -> dict:
    """Predictions over a loader: ``{"logits": [N, C] float32, "y": [N], "idx": [N]}`` (numpy),
    in the loader's order."""
    model.eval()
    logits, ys, idx = [], [], []
    for batch in loader:
        batch = to_device(batch, device)
        with autocast(device):
            out = model(batch[stream])
        logits.append(out["logits"].float().cpu())
        ys.append(batch["y"].cpu())
        idx.append(batch["idx"].cpu())
    if not logits:
        return {"logits": np.zeros((0, 0), np.float32), "y": np.zeros(0, np.int64), "idx": np.zeros(0, np.int64)}
    return {"logits": torch.cat(logits).numpy(), "y": torch.cat(ys).numpy(), "idx": torch.cat(idx).numpy()}


def gather_inference(r: dict) -> dict:
    """Several processes: every rank's :func:`run_inference` result joined, in ``idx`` order, on
    every rank (so every rank computes the same metrics). One process: ``r`` unchanged."""
    if not ddp.is_distributed():
        return r
    parts = [p for p in ddp.all_gather_object(r) if len(p["y"])]
    if not parts:
        return r
    out = {k: np.concatenate([p[k] for p in parts]) for k in ("logits", "y", "idx")}
    order = np.argsort(out["idx"], kind="stable")
    return {k: v[order] for k, v in out.items()}


def evaluate_model(model, loader, device, stream: str, classes: list[str], prefix: str = "val") -> dict:
    """Loss, accuracy and macro-F1 of ``model`` over ``loader`` (keys prefixed ``<prefix>_``; macro-F1
    over the classes in these windows' true labels, so every epoch of a run averages over the same
    classes: :mod:`pipelines.learn.metrics`). Several processes: each reads its share of the
    windows; the predictions are gathered first."""
    r = gather_inference(run_inference(model, loader, device, stream))
    if len(r["y"]) == 0:
        return {f"{prefix}_loss": float("nan"), f"{prefix}_acc": float("nan"), f"{prefix}_macro_f1": float("nan"),
                f"{prefix}_windows": 0}
    loss = float(F.cross_entropy(torch.from_numpy(r["logits"]), torch.from_numpy(r["y"])))
    met = classification_metrics(r["y"], r["logits"].argmax(1), classes)
    return {f"{prefix}_loss": loss, f"{prefix}_acc": met["accuracy"], f"{prefix}_macro_f1": met["macro_f1"],
            f"{prefix}_windows": int(len(r["y"]))}
