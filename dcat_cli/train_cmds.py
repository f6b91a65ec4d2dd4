"""Training commands: `dcat pretrain`, `transfer`, `evaluate`, `predict`.

Each parses options, calls one function in `pipelines` (train.pretrain, transfer.transfer,
evaluate.evaluate_run, predict.predict), renders with rich and sets the exit code. Results go to
stdout (`--json` for machines), messages and progress to stderr. torch is imported inside the
command bodies so `dcat --help` stays fast.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import typer

from dcat_cli.common import err_console, out_console, run_guarded

SPLIT_HELP = ("'id': same subjects in train/val/test, split by time blocks (--block-s) with overlapping windows "
              "dropped at the borders; 'ood': leave subjects out (--test-subjects or --fold/--folds).")
METHOD_HELP = ("What the target learns from the frozen source(s): 'dcat' (default: CE + lambda * D-CAT alignment of "
               "K^T V), 'logit-kd' (CE + lambda * T^2 * KL(source softmax(z/T) || target softmax(z/T))), "
               "'feature-kd' (CE + lambda * MSE(P(target pooled embedding), source pooled embedding), P a learned "
               "linear projection kept in the checkpoint, unused at inference), 'none' (plain CE on the same split "
               "and budget: the no-transfer baseline; the source only gives the split and d). "
               "--mcma masks every method's term per source.")
NORM_HELP = ("Normalisation of K^T V before the Frobenius distance: 'fro' (default: divide by its Frobenius norm; "
             "length- and scale-invariant, the distance is in [0, 2], on the scale of the cross-entropy, so "
             "--lambda 0.1-1 works for any --d; it measured best on the sample data), 'seqlen' (divide by the token "
             "count: keeps the scale, so the distance grows with d; use a 10-100x smaller --lambda), "
             "'none' (raw; grows with the sequence lengths).")


def _subjects(s: Optional[str]) -> list[str] | None:
    return [x.strip() for x in s.split(",") if x.strip()] if s else None


def _fmt(v, nd=3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def _main_process() -> bool:
    """False in the processes torchrun starts besides rank 0: they print nothing."""
    import os

    return os.environ.get("RANK", "0") in ("", "0")


class RichHooks:
    """Renders training progress on stderr: a bar per epoch and one line per finished epoch."""

    def __init__(self, quiet: bool = False):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.quiet = quiet = quiet or not _main_process()
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(), console=err_console,
                                 transient=True, disable=quiet)
        self.task = None

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *a):
        return self.progress.__exit__(*a)

    def message(self, text: str) -> None:
        if not self.quiet:
            err_console.print(text, highlight=False)

    def on_epoch_start(self, epoch: int, epochs: int, n_batches: int) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(f"epoch {epoch + 1}/{epochs}", total=n_batches, loss="-")

    def on_step(self, epoch: int, step: int, loss: float) -> None:
        self.progress.update(self.task, advance=1, loss=f"{loss:.3f}")

    def on_epoch_end(self, epoch: int, m: dict) -> None:
        if self.quiet:
            return
        terms = ""
        term = next((t for t in ("ca", "kd", "fkd") if f"train_{t}" in m), None)
        if term:
            terms = (f" (ce {_fmt(m.get('train_ce'))}, {term} {_fmt(m.get(f'train_{term}'))}, "
                     f"mcma keep {_fmt(m.get('train_keep_rate'), 2)})")
        best = " [green]best[/green]" if m.get("best_epoch") == epoch else ""
        err_console.print(f"epoch {epoch + 1}: loss {_fmt(m.get('train_loss'))}{terms} acc {_fmt(m.get('train_acc'))} | "
                          f"val F1 {_fmt(m.get('val_macro_f1'))} acc {_fmt(m.get('val_acc'))} "
                          f"({m.get('train_windows_per_s', 0):.0f} win/s, {m.get('epoch_seconds', 0):.1f} s){best}",
                          highlight=False)


def _print_info(info: dict, as_json: bool, title: str) -> None:
    if not _main_process():
        return
    if as_json:
        out_console.print_json(json.dumps(info))
        return
    from rich.table import Table

    t = Table(title=title, show_header=False)
    for k, v in info.items():
        t.add_row(k, _fmt(v, 4) if isinstance(v, float) else (json.dumps(v) if isinstance(v, (dict, list)) else str(v)))
    out_console.print(t)



def pretrain_cmd(
    modality: str = typer.Option(..., "--modality", "-m", help="Stream to train on (e.g. video, imu, audio, imu_wrist)."),
    data: Path = typer.Option(Path("shards"), "--data", help="Shards directory (from `dcat preprocess`)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: runs/<modality>-<split>)."),
    runs: Path = typer.Option(Path("runs"), "--runs", help="Parent folder of runs."),
    split: str = typer.Option("id", "--split", help=SPLIT_HELP),
    seed: int = typer.Option(0, "--seed", help="Seed of the split, the initialisation and the data order."),
    split_seed: Optional[int] = typer.Option(None, "--split-seed", help="Seed of the split alone (default: --seed), to train several initialisations on one split."),
    test_subjects: Optional[str] = typer.Option(None, "--test-subjects", help="OOD: comma-separated held-out subjects."),
    fold: Optional[int] = typer.Option(None, "--fold", help="OOD: which fold (0-based) of --folds subject groups is the test set."),
    folds: Optional[int] = typer.Option(None, "--folds", help="OOD: number of subject folds."),
    val_frac: float = typer.Option(0.15, "--val-frac", help="Fraction of time blocks (per subject) for validation."),
    test_frac: float = typer.Option(0.2, "--test-frac", help="ID: fraction of time blocks (per subject) for test."),
    block_s: float = typer.Option(10.0, "--block-s", help="Length of the time blocks the split assigns, seconds."),
    guard_s: float = typer.Option(0.0, "--guard-s", help="Extra gap (s) between windows of different parts."),
    epochs: int = typer.Option(20, "--epochs", help="Most epochs (the LR schedule spans them)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Windows per step."),
    lr: float = typer.Option(2e-3, "--lr", help="AdamW peak learning rate (linear warm-up, cosine decay)."),
    weight_decay: float = typer.Option(0.05, "--weight-decay", help="AdamW weight decay (weights only, not biases/norms)."),
    patience: int = typer.Option(6, "--patience", help="Stop after this many epochs without a better val macro-F1 (0: never)."),
    d: int = typer.Option(64, "--d", help="Attention width (source and target must share it for transfer)."),
    heads: int = typer.Option(4, "--heads", help="Attention heads."),
    depth: int = typer.Option(1, "--depth", help="Self-attention blocks (K, V come from the last)."),
    dropout: float = typer.Option(0.1, "--dropout", help="Dropout in the attention block and before the classifier."),
    video_frames: int = typer.Option(8, "--video-frames", help="Video frames kept per window, evenly spaced (0: all)."),
    standardize: str = typer.Option("train", "--standardize", help="IMU/audio input statistics: 'train' windows, 'manifest' (IMU), or 'none'."),
    augment: bool = typer.Option(False, "--augment/--no-augment", help="Light augmentation (video flips; IMU/audio gain + noise)."),
    device: str = typer.Option("auto", "--device", help="'auto' (CUDA with bf16 autocast when present), 'cpu', 'cuda', 'cuda:1'."),
    threads: int = typer.Option(0, "--threads", help="CPU threads for torch (0: auto, one per idle core)."),
    workers: int = typer.Option(-1, "--workers", help="DataLoader worker processes (-1: 0 on CPU, 4 on GPU)."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the model (GPU)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last.pt (same result as uninterrupted)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress on stderr."),
) -> None:
    """Train one stream's pipeline alone (encoder -> self-attention -> classifier).

    Example: `dcat pretrain --modality video` writes runs/video-id/ (config.json, split.json,
    metrics.jsonl, best.pt, last.pt).
    """

    def body():
        from pipelines.train import TrainConfig, pretrain

        cfg = TrainConfig(data=str(data), modality=modality, runs=str(runs), out=str(out) if out else None, split=split,
                          seed=seed, split_seed=split_seed, val_frac=val_frac, test_frac=test_frac, block_s=block_s, guard_s=guard_s,
                          test_subjects=_subjects(test_subjects), fold=fold, folds=folds, d=d, heads=heads, depth=depth,
                          dropout=dropout, video_frames=video_frames, standardize=standardize, epochs=epochs,
                          batch_size=batch_size, lr=lr, weight_decay=weight_decay, patience=patience, augment=augment,
                          device=device, threads=threads, workers=workers, compile=compile_, resume=resume, overwrite=overwrite)
        with RichHooks(quiet) as hooks:
            info = pretrain(cfg, hooks)
        _print_info(info, as_json, f"pretrain {modality}")

    run_guarded(body)


def transfer_cmd(
    src: str = typer.Option(..., "--src", help="Source stream (frozen teacher), e.g. video; or several, comma-separated (video,audio): the loss is then CE + lambda * sum_k w_k * L_k, MCMA per source."),
    tgt: str = typer.Option(..., "--tgt", help="Target stream (trained, deployed alone), e.g. imu."),
    data: Path = typer.Option(Path("shards"), "--data", help="Shards directory holding both streams."),
    src_ckpt: Optional[str] = typer.Option(None, "--src-ckpt", help="Source checkpoint or run folder; several sources: one per source, comma-separated in --src order (default: the pretrain run for each source under --runs)."),
    src_weights: Optional[str] = typer.Option(None, "--src-weights", help="Several sources: one weight w_k per source, comma-separated in --src order, e.g. 1,0.5 (default: 1 each)."),
    method: str = typer.Option("dcat", "--method", help=METHOD_HELP),
    lam: float = typer.Option(1.0, "--lambda", help="Weight of the transfer term (D-CAT: the paper finds 0.1-1 works, 10 degrades)."),
    temperature: float = typer.Option(4.0, "--temperature", help="logit-kd: softmax temperature T (the term is scaled by T^2)."),
    mcma: bool = typer.Option(True, "--mcma/--no-mcma", help="Masked cross-modal alignment: count each source's term only on windows that source classifies correctly (every method)."),
    norm: str = typer.Option("fro", "--norm", help=NORM_HELP),
    tgt_init: Optional[Path] = typer.Option(None, "--tgt-init", help="Start the target from this checkpoint (default: from scratch)."),
    misalign: Optional[str] = typer.Option(None, "--misalign", help="Synchronization-robustness study: STREAM=SECONDS pairs the streams as if that stream were late by that much when training (imu=0.5: each imu window is aligned with the source's window 0.5 s earlier; negative: early). Windows whose shifted partner does not exist are masked from the transfer term. Needs the source cache."),
    cache: str = typer.Option("auto", "--cache", help="Cache what the method needs of each frozen source per window (K^T V, logits or pooled embedding, and correctness): 'auto' (unless --augment), 'on', 'off'."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: runs/<src>-to-<tgt>-<split>, runs/<src>-to-<tgt>-<method>-<split> for the baselines, sources joined with '+')."),
    runs: Path = typer.Option(Path("runs"), "--runs", help="Parent folder of runs."),
    split: Optional[str] = typer.Option(None, "--split", help="Default: the source run's split. " + SPLIT_HELP),
    seed: int = typer.Option(0, "--seed", help="Seed of the initialisation and data order (and of the split when split options are given)."),
    split_seed: Optional[int] = typer.Option(None, "--split-seed", help="Seed of an explicit split (default: --seed)."),
    test_subjects: Optional[str] = typer.Option(None, "--test-subjects", help="OOD: comma-separated held-out subjects."),
    fold: Optional[int] = typer.Option(None, "--fold", help="OOD: which fold (0-based) of --folds subject groups is the test set."),
    folds: Optional[int] = typer.Option(None, "--folds", help="OOD: number of subject folds."),
    val_frac: Optional[float] = typer.Option(None, "--val-frac", help="Explicit split: fraction of time blocks for validation (default 0.15)."),
    test_frac: Optional[float] = typer.Option(None, "--test-frac", help="Explicit ID split: fraction of time blocks for test (default 0.2)."),
    block_s: Optional[float] = typer.Option(None, "--block-s", help="Explicit split: time block length, seconds (default 10)."),
    guard_s: Optional[float] = typer.Option(None, "--guard-s", help="Explicit split: extra gap (s) between parts (default 0)."),
    epochs: int = typer.Option(20, "--epochs", help="Most epochs (the LR schedule spans them)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Windows per step."),
    lr: float = typer.Option(2e-3, "--lr", help="AdamW peak learning rate (linear warm-up, cosine decay)."),
    weight_decay: float = typer.Option(0.05, "--weight-decay", help="AdamW weight decay (weights only, not biases/norms)."),
    patience: int = typer.Option(6, "--patience", help="Stop after this many epochs without a better target val macro-F1 (0: never)."),
    heads: int = typer.Option(4, "--heads", help="Attention heads."),
    depth: int = typer.Option(1, "--depth", help="Self-attention blocks of the target (K, V from the last)."),
    dropout: float = typer.Option(0.1, "--dropout", help="Dropout in the attention block and before the classifier."),
    video_frames: int = typer.Option(8, "--video-frames", help="Video frames per window when the target is video."),
    standardize: str = typer.Option("train", "--standardize", help="IMU/audio input statistics: 'train' windows, 'manifest' (IMU), or 'none'."),
    augment: bool = typer.Option(False, "--augment/--no-augment", help="Augment both streams (turns the source cache off)."),
    device: str = typer.Option("auto", "--device", help="'auto' (CUDA with bf16 autocast when present), 'cpu', 'cuda'."),
    threads: int = typer.Option(0, "--threads", help="CPU threads for torch (0: auto, one per idle core)."),
    workers: int = typer.Option(-1, "--workers", help="DataLoader worker processes (-1: 0 on CPU, 4 on GPU)."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the target (GPU)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run from its last.pt (same result as uninterrupted)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress on stderr."),
) -> None:
    """Train the target stream from frozen source(s): D-CAT (CE + lambda * ||norm(K_t^T V_t) - norm(K_s^T V_s)||_F) or a baseline.

    Example: `dcat transfer --src video --tgt imu` (after `dcat pretrain --modality video`);
    `--method logit-kd|feature-kd|none` for the baselines; `--src video,audio --src-weights 1,0.5`
    for several sources. The attention width d is the sources'.
    """

    def body():
        from pipelines.transfer import TransferConfig, transfer

        cfg = TransferConfig(data=str(data), src=src, tgt=tgt, src_ckpt=src_ckpt or None, src_weights=src_weights,
                             method=method, lam=lam, temperature=temperature, mcma=mcma, norm=norm, tgt_init=str(tgt_init) if tgt_init else None, cache=cache, misalign=misalign,
                             runs=str(runs), out=str(out) if out else None, split=split, seed=seed,
                             split_seed=split_seed, test_subjects=_subjects(test_subjects), fold=fold, folds=folds, val_frac=val_frac,
                             test_frac=test_frac, block_s=block_s, guard_s=guard_s, heads=heads, depth=depth,
                             dropout=dropout, video_frames=video_frames, standardize=standardize, epochs=epochs,
                             batch_size=batch_size, lr=lr, weight_decay=weight_decay, patience=patience,
                             augment=augment, device=device, threads=threads, workers=workers, compile=compile_, resume=resume,
                             overwrite=overwrite)
        with RichHooks(quiet) as hooks:
            info = transfer(cfg, hooks)
        _print_info(info, as_json, f"transfer {src} -> {tgt} ({method})")

    run_guarded(body)


def evaluate_cmd(
    run_dir: Path = typer.Argument(..., help="A run folder (runs/<name>)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Shards directory (default: the one the run trained on); may hold only the model's stream."),
    split: str = typer.Option("test", "--split", help="Part of the run's split: test, val, train, or 'all' (every window of --data)."),
    checkpoint: str = typer.Option("best.pt", "--checkpoint", help="Checkpoint file in the run folder."),
    device: str = typer.Option("auto", "--device"),
    threads: int = typer.Option(0, "--threads", help="CPU threads for torch (0: auto, one per idle core)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
) -> None:
    """Macro-F1 (the paper's metric), accuracy, per-class precision/recall/F1 and the confusion matrix.

    Writes report.json and confusion-<split>.png in the run folder. Reads only the model's stream.
    """

    def body():
        from pipelines.evaluate import evaluate_run

        rep = evaluate_run(run_dir, data, split=split, device=device, checkpoint=checkpoint, threads=threads)
        if as_json:
            out_console.print_json(json.dumps(rep))
            return
        from rich.table import Table

        t = Table(title=f"{run_dir} ({rep['stream']}, {split}, {rep['n_windows']} windows)")
        for c in ("class", "precision", "recall", "F1", "support"):
            t.add_column(c, justify="left" if c == "class" else "right")
        for c, m in rep["per_class"].items():
            t.add_row(c, _fmt(m["precision"]), _fmt(m["recall"]), _fmt(m["f1"]), str(m["support"]))
        t.add_section()
        t.add_row("macro-F1", "", "", f"[bold]{_fmt(rep['macro_f1'])}[/bold]", str(rep["n_windows"]))
        t.add_row("accuracy", "", "", _fmt(rep["accuracy"]), "")
        out_console.print(t)
        cm = Table(title="confusion (rows: true, columns: predicted)")
        cm.add_column("")
        for c in rep["classes"]:
            cm.add_column(c, justify="right")
        for c, row in zip(rep["classes"], rep["confusion"]):
            cm.add_row(c, *[str(v) for v in row])
        out_console.print(cm)
        err_console.print(f"wrote {Path(run_dir) / 'report.json'} and {rep.get('confusion_png')}", highlight=False)

    run_guarded(body)


def predict_cmd(
    run_dir: Path = typer.Argument(..., help="A run folder (or a .pt checkpoint)."),
    input_path: Path = typer.Argument(..., metavar="INPUT", help="Shards directory, shard file (.h5), or raw recording folder (meta.json)."),
    fmt: str = typer.Option("csv", "--format", help="csv or jsonl."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write here instead of stdout."),
    checkpoint: str = typer.Option("best.pt", "--checkpoint", help="Checkpoint file in the run folder."),
    device: str = typer.Option("auto", "--device"),
    threads: int = typer.Option(0, "--threads", help="CPU threads for torch (0: auto, one per idle core)."),
) -> None:
    """Per-window predictions from the model's stream alone (no source sensor needed).

    A raw recording folder is preprocessed on the fly with the settings stored in the checkpoint.
    """

    def body():
        from pipelines.predict import format_rows, predict

        res = predict(run_dir, input_path, device=device, checkpoint=checkpoint, threads=threads)
        text = format_rows(res["rows"], fmt)
        if out:
            from pipelines.shards import atomic_write_text

            atomic_write_text(out, text)
            err_console.print(f"wrote {len(res['rows'])} predictions to {out}", highlight=False)
        else:
            import sys

            sys.stdout.write(text)

    run_guarded(body)


def register(app: typer.Typer) -> None:
    app.command("pretrain")(pretrain_cmd)
    app.command("transfer")(transfer_cmd)
    app.command("evaluate")(evaluate_cmd)
    app.command("predict")(predict_cmd)
