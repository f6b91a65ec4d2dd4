"""Where and how training runs: the device, CPU threads, DataLoader workers, bf16 autocast, and
moving a batch to the device. Imports only torch."""

from __future__ import annotations

import contextlib
import os

import torch

from pipelines.core.errors import TrainingError


def resolve_device(name: str = "auto") -> torch.device:
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return dev


#: the default of ``--threads`` everywhere: a fixed number, so the numbers of a run do not depend on
#: the machine or on what else runs on it
DEFAULT_THREADS = 1


def configure_threads(threads: int, device: torch.device) -> int:
    """Set torch's CPU threads; returns the number in use (runs record it in ``config.json``).

    ``threads > 0``: that many (default :data:`DEFAULT_THREADS`). The thread count changes the
    float summation order, so two runs with different counts (or a run resumed with another count)
    are not bit-identical: a fixed default keeps results independent of the machine's load.
    ``0`` (auto, opt-in): on a CPU, one per core that is not already busy (cores minus the 1-minute
    load average, at least 1, at most torch's default), so the count, and with it the numbers,
    depend on what else runs. On a shared 2-core machine with another process busy, a 2-thread step
    measured 5x slower than a 1-thread one (OpenMP threads wait on each other), while on an idle
    machine 2 threads gain well under 2x.
    """
    if threads and threads > 0:
        torch.set_num_threads(int(threads))
        return int(threads)
    if device.type == "cuda":
        return torch.get_num_threads()
    n_default = torch.get_num_threads()
    try:
        busy = os.getloadavg()[0]
    except (OSError, AttributeError):
        busy = 0.0
    procs = _local_processes()  # torchrun: the idle cores are shared by this node's processes
    n = int(max(1, min(n_default, ((os.cpu_count() or 1) - round(busy)) // procs)))
    torch.set_num_threads(n)
    return n


def autocast(device: torch.device):
    """bf16 autocast on CUDA; nothing on CPU (float32)."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _local_processes() -> int:
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def default_workers(workers: int, device: torch.device) -> int:
    """``workers >= 0``: that many. ``-1``: 0 on a CPU (the step, not the reader, is the limit), on a
    GPU 4 per process, at most the node's cores divided among its training processes."""
    if workers is not None and workers >= 0:
        return int(workers)
    return max(1, min(4, (os.cpu_count() or 1) // _local_processes())) if device.type == "cuda" else 0


def to_device(batch: dict, device: torch.device) -> dict:
    """Tensors to ``device`` as they are (video stays uint8: 4x fewer bytes to copy; the model
    converts it to float on the device); asynchronous from pinned memory on CUDA."""
    nb = device.type == "cuda"
    return {k: v.to(device, non_blocking=nb) for k, v in batch.items()}


