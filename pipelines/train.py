"""Unimodal pretraining: the training engine and ``pretrain(cfg)``.

The engine (shared with ``pipelines.transfer``) is MAE-style: :func:`train_one_epoch` and
:func:`run_inference` / :func:`evaluate_model`, driven by :func:`fit`, which owns the run folder,
the AdamW optimizer with a warm-up + cosine schedule, early stopping on validation macro-F1,
``best.pt`` / ``last.pt`` and ``metrics.jsonl``, and resuming from ``last.pt``.

A run folder (``runs/<name>/``) holds ``config.json`` (tool version, the stage's arguments, the
data it read), ``split.json``, ``metrics.jsonl`` (one JSON object per epoch), ``best.pt`` (best
validation macro-F1), ``last.pt`` (everything needed to resume) and, after ``dcat evaluate``,
``report.json``.

Resuming (``resume=True``) restores model, optimizer, schedule, early-stopping state and the
torch RNG from ``last.pt``; the data order depends only on (seed, epoch), so an interrupted and
resumed run ends with the same weights as an uninterrupted one.

On a GPU the step runs under bf16 autocast; on a CPU in float32. Imports torch, numpy, h5py and
(for metrics) scikit-learn only.

Under ``torchrun`` (several processes) training is DistributedDataParallel: see
:mod:`pipelines.distributed` for how the data, the gradient, BatchNorm, metrics and the run folder
are shared so that the result equals one process's up to floating-point order. With
``dropout > 0`` the masks differ from one process's: each rank draws its own per step, from a
generator seeded by (seed, step, rank), so the run is still reproducible and resumable.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import __version__
from . import distributed as ddp
from .checkpoint import data_settings, load_checkpoint, save_checkpoint
from .data import BlockDataset, ShardSet, estimate_stats, make_loader
from .errors import DcatError
from .models import DcatModel, ModelConfig, build_model, frame_indices
from .shards import atomic_write_text
from .splits import SplitConfig, apply_split, load_split, make_split, save_split

RUN_FILES = ("config.json", "split.json", "metrics.jsonl", "best.pt", "last.pt", "report.json")


class TrainingError(DcatError):
    """Training cannot go on (non-finite loss, empty split, bad settings)."""


class RunDirError(DcatError):
    """The run folder exists, or is not a dcat run."""


@dataclass
class TrainConfig:
    """Settings of ``dcat pretrain`` (and the shared part of ``dcat transfer``).

    Data: ``data`` shards directory; ``modality`` the stream to train on; ``runs`` parent folder of
    runs; ``out`` run folder (default ``<runs>/<modality>-<split tag>``).
    Split: see :class:`pipelines.splits.SplitConfig`; its seed is ``split_seed`` (default: ``seed``),
    so several initialisations (``seed``) can share one split.
    Model: ``d`` attention width, ``heads``, ``depth`` attention blocks, ``dropout``,
    ``video_frames`` frames kept per video window (evenly spaced; 0 = all),
    ``standardize``: imu/audio input statistics from the ``train`` windows, the ``manifest``
    (imu only), or ``none``.
    Optimisation: AdamW (``lr``, ``weight_decay``), ``warmup_epochs`` of linear warm-up then cosine
    decay to 0 at ``epochs``; early stopping after ``patience`` epochs without a better validation
    macro-F1 (ties broken by validation loss); ``grad_clip`` max gradient norm (0 = off);
    ``augment``: light input augmentation (video horizontal flip, imu/audio scaling + noise).
    Runtime: ``device`` (``auto``: CUDA if present), ``threads`` CPU threads (0: auto, see
    :func:`configure_threads`), ``workers`` DataLoader processes (-1: 0 on CPU, 4 on GPU),
    ``block_mb`` MiB per block read, ``compile`` (torch.compile, GPU), ``resume``, ``overwrite``.
    """

    data: str = "shards"
    modality: str = "imu"
    runs: str = "runs"
    out: str | None = None
    split: str | None = "id"
    seed: int = 0
    split_seed: int | None = None
    val_frac: float | None = 0.15
    test_frac: float | None = 0.2
    block_s: float | None = 10.0
    guard_s: float | None = 0.0
    test_subjects: list | None = None
    fold: int | None = None
    folds: int | None = None
    d: int | None = 64
    heads: int = 4
    depth: int = 1
    dropout: float = 0.1
    video_frames: int = 8
    standardize: str = "train"
    epochs: int = 20
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    patience: int = 6
    grad_clip: float = 1.0
    augment: bool = False
    device: str = "auto"
    threads: int = 0
    workers: int = -1
    block_mb: float = 32.0
    compile: bool = False
    resume: bool = False
    overwrite: bool = False

    def split_config(self) -> SplitConfig:
        d = SplitConfig()
        return SplitConfig(split=self.split or d.split, seed=self.seed if self.split_seed is None else self.split_seed,
                           val_frac=d.val_frac if self.val_frac is None else self.val_frac,
                           test_frac=d.test_frac if self.test_frac is None else self.test_frac,
                           block_s=d.block_s if self.block_s is None else self.block_s,
                           guard_s=d.guard_s if self.guard_s is None else self.guard_s,
                           test_subjects=list(self.test_subjects or []), fold=self.fold, folds=self.folds)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class Hooks:
    """Progress callbacks (the CLI renders them with rich; the library prints nothing)."""

    def message(self, text: str) -> None: ...
    def on_epoch_start(self, epoch: int, epochs: int, n_batches: int) -> None: ...
    def on_step(self, epoch: int, step: int, loss: float) -> None: ...
    def on_epoch_end(self, epoch: int, metrics: dict) -> None: ...


# ---------------------------------------------------------------------------------------------
# device, numerics

def resolve_device(name: str = "auto") -> torch.device:
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return dev


def configure_threads(threads: int, device: torch.device) -> int:
    """Set torch's CPU threads; returns the number in use.

    ``threads > 0``: that many. ``0`` (auto): on a CPU, one per core that is not already busy
    (cores minus the 1-minute load average, at least 1, at most torch's default). On a shared
    2-core machine the difference is large: with another process busy, a 2-thread step measured
    5x slower than a 1-thread one (OpenMP threads wait on each other), while on an idle machine
    2 threads gain well under 2x. The thread count changes float summation order, so a run
    resumed with another count is not bit-identical.
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


# ---------------------------------------------------------------------------------------------
# engine

StepFn = Callable[[torch.nn.Module, dict], tuple]


def ce_step(stream: str) -> StepFn:
    """The pretraining step: cross-entropy on ``stream``."""

    def step(model, batch):
        out = model(batch[stream])
        loss = F.cross_entropy(out["logits"].float(), batch["y"])
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
    n = correct = 0
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
        correct += int((logits.argmax(1) == batch["y"]).sum())
        lv = float(loss.detach())
        sums["loss"] = sums.get("loss", 0.0) + lv * b
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + float(v) * b
        step += 1
        hooks.on_step(epoch, step, lv)
    dt = time.perf_counter() - t0
    if multi:
        tot = ddp.all_reduce_sum({**{f"sum_{k}": v for k, v in sums.items()}, "n": n, "correct": correct}, device)
        sums = {k[4:]: v for k, v in tot.items() if k.startswith("sum_")}
        n, correct = int(round(tot["n"])), int(round(tot["correct"]))
    m = {f"train_{k}": v / max(n, 1) for k, v in sums.items()}
    m.update({"train_acc": correct / max(n, 1), "train_windows": n, "train_windows_per_s": n / max(dt, 1e-9),
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
    """Loss, accuracy and macro-F1 of ``model`` over ``loader`` (keys prefixed ``<prefix>_``).
    Several processes: each reads its share of the windows; the predictions are gathered first."""
    from .evaluate import classification_metrics

    r = gather_inference(run_inference(model, loader, device, stream))
    if len(r["y"]) == 0:
        return {f"{prefix}_loss": float("nan"), f"{prefix}_acc": float("nan"), f"{prefix}_macro_f1": float("nan"),
                f"{prefix}_windows": 0}
    loss = float(F.cross_entropy(torch.from_numpy(r["logits"]), torch.from_numpy(r["y"])))
    met = classification_metrics(r["y"], r["logits"].argmax(1), classes)
    return {f"{prefix}_loss": loss, f"{prefix}_acc": met["accuracy"], f"{prefix}_macro_f1": met["macro_f1"],
            f"{prefix}_windows": int(len(r["y"]))}


# ---------------------------------------------------------------------------------------------
# run folders

def prepare_run_dir(out: Path, resume: bool, overwrite: bool) -> bool:
    """Create ``out``; returns True when resuming from ``out/last.pt``."""
    out = Path(out)
    if resume:
        if (out / "last.pt").is_file():
            return True
        if out.exists() and any(out.iterdir()):
            raise RunDirError(f"{out}: --resume, but there is no last.pt to resume from; "
                              "start again with --overwrite")
    elif out.exists() and any(out.iterdir()):
        if not overwrite:
            raise RunDirError(f"{out}: the run folder exists; continue it with --resume, replace it with "
                              "--overwrite, or choose another --out")
        ours = [p for p in out.iterdir() if p.name in RUN_FILES or p.name.startswith(".")
                or (p.name.startswith("confusion-") and p.suffix == ".png")]
        others = sorted(p.name for p in out.iterdir() if p not in ours)
        if others:
            raise RunDirError(f"{out}: holds files dcat did not write ({', '.join(others[:5])}); refusing to "
                              "overwrite it: choose another --out")
        for p in ours:
            if p.is_file():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return False


def write_config(out: Path, stage: str, cfg, extra: dict) -> dict:
    rec = {"stage": stage, "tool_version": __version__, "created_utc": datetime.now(timezone.utc).isoformat(),
           "argv": list(sys.argv), "args": cfg.to_dict(), "torch_version": torch.__version__, **extra}
    atomic_write_text(Path(out) / "config.json", json.dumps(rec, indent=1))
    return rec


def read_config(run_dir: Path) -> dict:
    p = Path(run_dir) / "config.json"
    if not p.is_file():
        raise RunDirError(f"{run_dir}: not a dcat run folder (no config.json); pass a folder under runs/ "
                          "made by `dcat pretrain` or `dcat transfer`")
    return json.loads(p.read_text())


def _truncate_metrics(path: Path, last_epoch: int) -> None:
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("epoch", 0) <= last_epoch:
                keep.append(line)
        except json.JSONDecodeError:
            break
    atomic_write_text(path, "".join(k + "\n" for k in keep))


def _rng_state() -> dict:
    st = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _jsonable(m: dict) -> dict:
    out = {}
    for k, v in m.items():
        if isinstance(v, float) and not math.isfinite(v):
            out[k] = None
        elif isinstance(v, (np.floating, np.integer)):
            out[k] = v.item()
        else:
            out[k] = v
    return out


@dataclass
class FitState:
    epoch: int = -1  # last finished epoch
    step: int = 0
    best_f1: float = -1.0
    best_loss: float = float("inf")
    best_epoch: int = -1
    bad_epochs: int = 0
    stopped_early: bool = False


def fit(*, out: Path, cfg: TrainConfig, model: DcatModel, train_ds: BlockDataset, val_loader, device,
        step_fn: StepFn, stream: str, classes: list[str], ckpt_base: dict, resuming: bool,
        hooks: Hooks | None = None, augment_kinds: dict | None = None,
        aux: torch.nn.Module | None = None) -> FitState:
    """The epoch loop: train, validate, log, checkpoint, stop early. Returns the final state.

    ``aux``: extra trainable parameters the step uses beside ``model`` (the feature-KD projections
    of ``pipelines.transfer``): optimised with the model, saved in both checkpoints under ``aux``
    (not in ``model``, so inference never needs them) and restored on resume.

    Several processes (:mod:`pipelines.distributed`): ``model``'s BatchNorm layers are made
    synchronous (in place; the state-dict keys stay the same) and it is trained through
    DistributedDataParallel; ``train_ds`` must be built with this rank (``rank``/``world``) and
    ``val_loader`` read this rank's share of the validation windows. Only rank 0 reads and writes
    the run folder (``last.pt`` on resume is read there and sent to the others).
    """
    hooks = hooks or Hooks()
    out = Path(out)
    multi = ddp.is_distributed()
    main = ddp.is_main()
    if multi:
        model = ddp.sync_batchnorm(model, device)
    workers = default_workers(cfg.workers, device)
    loader = make_loader(train_ds, workers, pin_memory=device.type == "cuda", seed=cfg.seed)
    steps_per_epoch = len(train_ds)
    if steps_per_epoch == 0:
        raise TrainingError(f"the training part of the split has no windows ({out / 'split.json'})")
    groups = param_groups(model, cfg.weight_decay)
    if aux is not None:
        for g, ga in zip(groups, param_groups(aux, cfg.weight_decay)):
            g["params"] = g["params"] + ga["params"]
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
    scheduler = make_schedule(optimizer, cfg.epochs * steps_per_epoch, int(round(cfg.warmup_epochs * steps_per_epoch)))
    st = FitState()
    metrics_path = out / "metrics.jsonl"
    if resuming:
        ck = (ddp.on_main(load_checkpoint, out / "last.pt", map_location="cpu") if multi
              else load_checkpoint(out / "last.pt", map_location=device))
        model.load_state_dict(ck["model"])
        if aux is not None:
            aux.load_state_dict(ck["aux"])
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        st = FitState(**ck["fit_state"])
        _set_rng_state({k: (v.cpu() if isinstance(v, torch.Tensor) else [t.cpu() for t in v])
                        for k, v in ck["rng"].items()})
        if main:
            _truncate_metrics(metrics_path, st.epoch)
        hooks.message(f"resuming {out} after epoch {st.epoch + 1} (step {st.step})")
    elif main:
        metrics_path.write_text("")
    train_model = ddp.wrap_ddp(model, device) if multi else model
    fwd_model = torch.compile(train_model) if (cfg.compile and device.type == "cuda") else train_model
    for epoch in range(st.epoch + 1, cfg.epochs):
        if st.stopped_early:
            break
        t0 = time.perf_counter()
        train_ds.set_epoch(epoch)
        hooks.on_epoch_start(epoch, cfg.epochs, steps_per_epoch)
        tm, st.step = train_one_epoch(fwd_model, loader, optimizer, scheduler, device, step_fn, epoch=epoch,
                                      step=st.step, grad_clip=cfg.grad_clip, hooks=hooks,
                                      augment_kinds=augment_kinds, aux=aux, seed=cfg.seed)
        vm = evaluate_model(model, val_loader, device, stream, classes, "val")
        f1, vloss = vm["val_macro_f1"], vm["val_loss"]
        improved = (not math.isnan(f1)) and (f1 > st.best_f1 + 1e-12 or (abs(f1 - st.best_f1) <= 1e-12 and vloss < st.best_loss))
        if math.isnan(f1):
            improved = True  # no validation windows (--val-frac 0): the latest epoch is the best
        if improved:
            st.best_f1, st.best_loss, st.best_epoch, st.bad_epochs = f1, vloss, epoch, 0
        else:
            st.bad_epochs += 1
        st.epoch = epoch
        if cfg.patience and st.bad_epochs >= cfg.patience:
            st.stopped_early = True
        row = {"epoch": epoch, "step": st.step, "lr": optimizer.param_groups[0]["lr"], **tm, **vm,
               "best_epoch": st.best_epoch, "best_val_macro_f1": st.best_f1,
               "epoch_seconds": time.perf_counter() - t0}
        base = {**ckpt_base, "model": model.state_dict(), "epoch": epoch, "step": st.step,
                "best": {"val_macro_f1": st.best_f1, "epoch": st.best_epoch}}
        if aux is not None:
            base["aux"] = aux.state_dict()
        if main:
            if improved:
                save_checkpoint(out / "best.pt", base)
            save_checkpoint(out / "last.pt", {**base, "optimizer": optimizer.state_dict(),
                                              "scheduler": scheduler.state_dict(), "rng": _rng_state(),
                                              "fit_state": asdict(st)})
            with open(metrics_path, "a") as f:
                f.write(json.dumps(_jsonable(row)) + "\n")
        hooks.on_epoch_end(epoch, row)
    train_ds.close()
    ddp.barrier()
    return st


# ---------------------------------------------------------------------------------------------
# pretrain

def default_out(cfg: TrainConfig, name: str) -> Path:
    return Path(cfg.out) if cfg.out else Path(cfg.runs) / f"{name}-{cfg.split_config().tag()}"


def set_input_stats(model: DcatModel, shards: ShardSet, stream: str, train_ids, how: str, seed: int) -> str:
    """Fill the model's input standardization buffers; returns a note saying where they came from."""
    kind = shards.kind(stream)
    if kind == "video" or how == "none":
        return "fixed" if kind == "video" else "none"
    info = shards.stream_info[stream]
    if how == "manifest" and info.get("mean") is not None and info.get("std") is not None:
        model.norm_in.set_stats(info["mean"], info["std"])
        return "manifest"
    mean, std = estimate_stats(shards, train_ids, stream, seed=seed)
    model.norm_in.set_stats(mean, std)
    return "train"


def model_config_for(cfg: TrainConfig, shards: ShardSet, stream: str, d: int) -> tuple[ModelConfig, int | None]:
    kind = shards.kind(stream)
    shape = shards.shape(stream)
    frames = None
    if kind == "video" and cfg.video_frames:
        idx = frame_indices(shape[0], cfg.video_frames)
        if idx is not None:
            frames = int(len(idx))
            shape = [frames, *shape[1:]]
    mc = ModelConfig(kind=kind, in_shape=list(shape), n_classes=len(shards.classes), d=int(d), heads=cfg.heads,
                     depth=cfg.depth, dropout=cfg.dropout)
    return mc, frames


def prepare_split(out: Path, shards: ShardSet, scfg: SplitConfig, resuming: bool) -> dict:
    if resuming and (out / "split.json").is_file():
        return load_split(out / "split.json")
    split = make_split(shards, scfg)
    save_split(out / "split.json", split)
    return split


def pretrain(cfg: TrainConfig, hooks: Hooks | None = None) -> dict:
    """Train one stream's pipeline alone (cross-entropy). Returns an info record:
    ``run_dir``, ``best_epoch``, ``best_val_macro_f1``, ``epochs_run``, ``stopped_early``,
    ``n_windows`` per part, ``device``, ``world_size``, ``seconds``.

    Under ``torchrun`` every process calls this; see :mod:`pipelines.distributed`."""
    device, dinfo = ddp.setup(cfg.device)
    try:
        return _pretrain(cfg, hooks, device)
    finally:
        ddp.teardown(dinfo)


def _pretrain(cfg: TrainConfig, hooks: Hooks | None, device: torch.device) -> dict:
    hooks = (hooks or Hooks()) if ddp.is_main() else Hooks()
    t0 = time.perf_counter()
    out = default_out(cfg, cfg.modality)
    resuming = ddp.on_main(prepare_run_dir, out, cfg.resume, cfg.overwrite)
    if resuming:
        saved = ddp.on_main(read_config, out)
        keep = {"device": cfg.device, "workers": cfg.workers, "threads": cfg.threads, "resume": True}
        cfg = TrainConfig.from_dict({**saved["args"], **keep})
    threads = configure_threads(cfg.threads, device)
    if cfg.d is None:
        cfg.d = 64
    shards = ShardSet(cfg.data, [cfg.modality])
    split = ddp.on_main(prepare_split, out, shards, cfg.split_config(), resuming)
    ids = apply_split(shards, split)
    torch.manual_seed(cfg.seed)
    mc, frames = model_config_for(cfg, shards, cfg.modality, cfg.d)
    model = build_model(mc)
    stats = set_input_stats(model, shards, cfg.modality, ids["train"], cfg.standardize, cfg.seed)
    model.to(device)
    world = ddp.world_size()
    if not resuming and ddp.is_main():
        write_config(out, "pretrain", cfg, {"data": _data_record(shards), "model_config": mc.to_dict(),
                                            "input_stats": stats, "device": str(device), "threads": threads,
                                            "world_size": world})
    fr = {cfg.modality: frames}
    rw = {"rank": ddp.rank(), "world": world}
    train_ds = BlockDataset(shards, ids["train"], [cfg.modality], cfg.batch_size, shuffle=True, seed=cfg.seed,
                            frames=fr, block_mb=cfg.block_mb, **rw)
    val_ds = BlockDataset(shards, ids["val"], [cfg.modality], max(cfg.batch_size, 64), frames=fr, block_mb=cfg.block_mb,
                          shard="block", **rw)
    ckpt_base = {"stage": "pretrain", "model_config": mc.to_dict(), "classes": list(shards.classes),
                 "stream": cfg.modality, "kind": mc.kind, "data": data_settings(shards, cfg.modality, frames),
                 "train_config": cfg.to_dict()}
    hooks.message(f"pretrain {cfg.modality} ({mc.kind}) -> {out}: {len(ids['train'])} train / {len(ids['val'])} val / "
                  f"{len(ids['test'])} test windows, device {device}"
                  + (f", {world} processes (global batch {cfg.batch_size})" if world > 1 else ""))
    st = fit(out=out, cfg=cfg, model=model, train_ds=train_ds, val_loader=make_loader(val_ds, 0), device=device,
             step_fn=ce_step(cfg.modality), stream=cfg.modality, classes=shards.classes, ckpt_base=ckpt_base,
             resuming=resuming, hooks=hooks,
             augment_kinds={cfg.modality: mc.kind} if cfg.augment else None)
    val_ds.close()
    return {"run_dir": str(out), "stage": "pretrain", "stream": cfg.modality, "best_epoch": st.best_epoch,
            "best_val_macro_f1": st.best_f1, "epochs_run": st.epoch + 1, "stopped_early": st.stopped_early,
            "n_windows": {k: int(len(v)) for k, v in ids.items()}, "device": str(device), "threads": threads,
            "world_size": world, "seconds": time.perf_counter() - t0}


def _data_record(shards: ShardSet) -> dict:
    m = shards.manifest
    return {"path": str(shards.data_dir), "tool_version": m.get("tool_version"), "n_windows": m.get("n_windows"),
            "classes": list(shards.classes), "settings": m.get("settings", {}),
            "recordings": len(shards.recordings)}


def find_runs(runs_dir: Path, stage: str | None = None, stream: str | None = None) -> list[Path]:
    """Run folders under ``runs_dir`` with a best.pt, optionally of one stage and stream."""
    out = []
    for p in sorted(Path(runs_dir).glob("*/config.json")):
        try:
            c = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if stage and c.get("stage") != stage:
            continue
        a = c.get("args", {})
        s = a.get("modality") if c.get("stage") == "pretrain" else a.get("tgt")
        if stream and s != stream:
            continue
        if (p.parent / "best.pt").is_file():
            out.append(p.parent)
    return out


__all__ = ["TrainConfig", "Hooks", "TrainingError", "RunDirError", "pretrain", "fit", "train_one_epoch",
           "run_inference", "evaluate_model", "resolve_device", "configure_threads", "autocast", "find_runs",
           "read_config"]
