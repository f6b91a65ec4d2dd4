"""Process-group helpers for training under ``torchrun`` (PyTorch DistributedDataParallel).

``dcat pretrain`` and ``dcat transfer`` run unchanged under ``torchrun --nproc-per-node N`` (and
``--nnodes``): :func:`setup` reads the variables torchrun sets (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``), starts the process group
(``nccl`` on CUDA, ``gloo`` otherwise) and gives each process its device (``cuda:LOCAL_RANK``).
Without those variables (a plain ``python`` / ``dcat`` run) nothing is started and every helper
here is a no-op, so a single process behaves exactly as before.

What the training code does with it (see ``pipelines.learn.fit.fit``):

- the data: every rank walks the same global batch plan (it depends only on seed, epoch and loader
  workers) and takes its own contiguous slice of each global batch (``BlockDataset(rank, world)``),
  reading only the windows of its slices;
- the gradient: DDP averages it over ranks; each rank scales its loss by
  ``world * n_rank / n_global`` so that the average equals the gradient of the global batch's mean
  loss, as in one process, also when a batch does not split evenly;
- BatchNorm: statistics over the global batch (:func:`sync_batchnorm`: ``torch.nn.SyncBatchNorm``
  on CUDA; on the CPU, where that module refuses to run, :class:`CPUSyncBatchNorm`, the same
  computation through a differentiable ``all_reduce`` over gloo);
- metrics, validation, early stopping: sums reduced over ranks, validation predictions gathered, so
  every rank decides the same; only rank 0 writes the run folder (:func:`on_main` runs a function
  on rank 0 and hands its result, or its exception, to every rank).
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from pipelines.core.errors import DcatError


class DistributedError(DcatError):
    """The torchrun environment or the requested settings do not fit together."""


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    backend: str | None = None
    started_here: bool = False  # this call started the process group


def env_world() -> int:
    """WORLD_SIZE from the environment (torchrun), 1 without it."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def world_size() -> int:
    return dist.get_world_size() if (dist.is_available() and dist.is_initialized()) else 1


def is_main() -> bool:
    """True on rank 0 (and in a single process): the one that writes files and prints."""
    return rank() == 0


def setup(device_name: str | None = "auto") -> tuple[torch.device, DistInfo]:
    """Start the process group when run under torchrun (WORLD_SIZE > 1); returns (device, info).

    ``device_name``: ``auto`` (CUDA if present), ``cpu``, ``cuda``. Under torchrun a CUDA device is
    always ``cuda:LOCAL_RANK`` (one GPU per process). A single process gets
    ``pipelines.learn.device.resolve_device(device_name)``.
    """
    from pipelines.learn.device import resolve_device

    world = env_world()
    if world <= 1:
        return resolve_device(device_name), DistInfo()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    want = resolve_device(device_name)
    if want.type == "cuda":
        n = torch.cuda.device_count()
        if local_rank >= n:
            raise DistributedError(f"torchrun started {local_world} processes on this node but it has {n} GPU(s): "
                                   f"use --nproc-per-node {n} or fewer (one GPU per process)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
    started = False
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
        # kept for the life of the process: a second init_process_group under torchrun's rendezvous
        # store hangs, and a script may call pretrain() then transfer()
        atexit.register(_destroy)
        started = True
    return device, DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, local_world,
                            dist.get_backend(), started)


def teardown(info: DistInfo) -> None:
    """End of a training call: wait for every rank (rank 0 may still be writing). The process
    group stays up for the next call and is destroyed when the process exits."""
    if is_distributed():
        dist.barrier()


def run_training(fn, cfg, hooks):
    """``fn(cfg, hooks, device)`` between :func:`setup` (on ``cfg.device``) and :func:`teardown`:
    how a training call (pretrain, transfer) runs in each process."""
    device, info = setup(cfg.device)
    try:
        return fn(cfg, hooks, device)
    finally:
        teardown(info)


def _destroy() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def _obj_device() -> torch.device | None:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None


def broadcast_object(obj=None, src: int = 0):
    """``obj`` of rank ``src`` on every rank (pickled; tensors included)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, device=_obj_device())
    return box[0]


def all_gather_object(obj) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank."""
    if not is_distributed():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def on_main(fn, *args, **kwargs):
    """Run ``fn`` on rank 0 only and return its result on every rank; an exception raised there is
    raised on every rank (so no rank waits forever for one that stopped)."""
    if not is_distributed():
        return fn(*args, **kwargs)
    res = err = None
    if is_main():
        try:
            res = fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - handed to every rank, then raised
            err = e
    res, err = broadcast_object((res, err))
    if err is not None:
        raise err
    return res


def all_reduce_sum(values: dict[str, float], device: torch.device | None = None) -> dict[str, float]:
    """Sum a dict of numbers over ranks (float64; every rank must pass the same keys)."""
    if not is_distributed() or not values:
        return dict(values)
    keys = sorted(values)
    dev = device if (device is not None and dist.get_backend() == "nccl") else torch.device("cpu")
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=dev)
    dist.all_reduce(t)
    return dict(zip(keys, t.cpu().tolist()))


def any_true(flag: bool, device: torch.device | None = None) -> bool:
    """True on every rank if ``flag`` is True on any rank."""
    if not is_distributed():
        return bool(flag)
    return all_reduce_sum({"f": 1.0 if flag else 0.0}, device)["f"] > 0


def part_of(n: int, rank_: int | None = None, world: int | None = None) -> slice:
    """Rank ``rank_``'s contiguous share of ``n`` items (sizes differ by at most 1, larger first)."""
    r = rank() if rank_ is None else rank_
    w = world_size() if world is None else world
    q, m = divmod(int(n), int(w))
    a = r * q + min(r, m)
    return slice(a, a + q + (1 if r < m else 0))


def gather_rows(local: dict, part: slice, n: int) -> dict:
    """Tensors of rows ``part`` of ``n`` (one dict per rank, same keys and row shapes) -> the full
    tensors on every rank: each rank writes its rows into zeros, then one sum over ranks (exact:
    every element is one rank's value plus zeros). Bool tensors stay bool."""
    if not is_distributed():
        return local
    out = {}
    for k in sorted(local):
        v = local[k]
        dt = torch.uint8 if v.dtype == torch.bool else v.dtype
        full = torch.zeros((n, *v.shape[1:]), dtype=dt, device=v.device)
        full[part] = v.to(dt)
        dist.all_reduce(full)
        out[k] = full.bool() if v.dtype == torch.bool else full
    return out


def all_reduce_grads(module: torch.nn.Module) -> None:
    """Average the gradients of ``module`` over ranks (parameters DDP does not own)."""
    if not is_distributed():
        return
    w = dist.get_world_size()
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(w)


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks, differentiable: the gradient of each rank's input is the sum over ranks of
    the output's gradient."""

    @staticmethod
    def forward(ctx, x):
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, g):
        g = g.clone()
        dist.all_reduce(g)
        return g


class CPUSyncBatchNorm(torch.nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch over all ranks, for the
    CPU / gloo (``torch.nn.SyncBatchNorm`` accepts only accelerator tensors). Per channel, the sum
    and sum of squares (float64) and the count are summed over ranks with a differentiable
    ``all_reduce``; the gradient therefore flows through the global statistics as in one process.
    Outside training, or in a single process, it is plain ``batch_norm``. Same parameters and
    buffers (and state-dict keys) as the BatchNorm it replaces."""

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input (got {x.dim()}-D)")

    def forward(self, x):
        if not (self.training and is_distributed()):
            use_batch = self.training or not self.track_running_stats
            return torch.nn.functional.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                                  use_batch, self.momentum if self.momentum is not None else 0.0,
                                                  self.eps)
        c = x.shape[1]
        dims = [0, *range(2, x.dim())]
        xd = x.double()
        cnt = torch.full((1,), x.numel() / max(c, 1), dtype=torch.float64, device=x.device)
        stats = _AllReduceSum.apply(torch.cat([xd.sum(dims), (xd * xd).sum(dims), cnt]))
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0.0)
        shape = (1, c) + (1,) * (x.dim() - 2)
        inv = torch.rsqrt(var + self.eps)
        y = ((xd - mean.view(shape)) * inv.view(shape)).to(x.dtype)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var * (n / (n - 1)) if float(n) > 1 else var
                self.running_mean.mul_(1 - m).add_(mean.to(self.running_mean.dtype), alpha=m)
                self.running_var.mul_(1 - m).add_(unbiased.to(self.running_var.dtype), alpha=m)
        return y


def _convert_cpu(module: torch.nn.Module) -> torch.nn.Module:
    out = module
    if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and not isinstance(
            module, (CPUSyncBatchNorm, torch.nn.SyncBatchNorm)):
        out = CPUSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                               module.track_running_stats)
        if module.affine:
            out.weight = module.weight
            out.bias = module.bias
        out.running_mean = module.running_mean
        out.running_var = module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _convert_cpu(child))
    return out


def sync_batchnorm(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` with every BatchNorm computing global-batch statistics (in place where possible;
    use the returned module). No change in a single process."""
    if not is_distributed():
        return model
    if device.type == "cuda":
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _convert_cpu(model)


def wrap_ddp(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``DistributedDataParallel(model)`` when distributed, else ``model``. Buffers are not
    re-broadcast every step: with synchronized BatchNorm they are the same on every rank."""
    if not is_distributed():
        return model
    import inspect

    from torch.nn.parallel import DistributedDataParallel as DDP

    params = inspect.signature(DDP.__init__).parameters  # the flag was renamed in recent torch
    kw = {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}
    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None, **kw)


__all__ = ["DistInfo", "DistributedError", "setup", "teardown", "run_training", "is_distributed", "rank", "world_size",
           "is_main", "barrier", "broadcast_object", "all_gather_object", "on_main", "all_reduce_sum", "any_true", "part_of",
           "gather_rows", "all_reduce_grads", "CPUSyncBatchNorm", "sync_batchnorm", "wrap_ddp", "env_world"]
