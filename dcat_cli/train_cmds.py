"""Training commands: `dcat pretrain`, `transfer`, `evaluate`, `predict`.

Each parses options, calls one function in `pipelines` (train.pretrain, transfer.transfer,
evaluate.evaluate_run, predict.predict), renders with rich and sets the exit code. Results go to
stdout (`--json` for machines), messages and progress to stderr. torch is imported inside the
command bodies so `dcat --help` stays fast.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from dcat_cli.common import err_console, out_console, run_guarded
from dcat_cli.options import config_command, option
from pipelines.learn.config import TrainConfig, TransferConfig
from pipelines.core.io import to_json

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
        out_console.print_json(to_json(info))
        return
    from rich.table import Table

    t = Table(title=title, show_header=False)
    for k, v in info.items():
        t.add_row(k, _fmt(v, 4) if isinstance(v, float) else (to_json(v) if isinstance(v, (dict, list)) else str(v)))
    out_console.print(t)



def _json_quiet() -> list:
    return [option("as_json", "--json", help="Print the result as JSON on stdout."),
            option("quiet", "--quiet", "-q", help="No progress on stderr.")]


def _training_body(stage: str) -> Callable:
    """The body of `dcat pretrain` / `dcat transfer`: run the stage with progress on stderr, print
    its info record."""

    def run(cfg, as_json: bool, quiet: bool) -> None:
        def body():
            if stage == "pretrain":
                from pipelines.learn.pretrain import pretrain as train
                title = f"pretrain {cfg.modality}"
            else:
                from pipelines.learn.transfer import transfer as train
                title = f"transfer {cfg.src} -> {cfg.tgt} ({cfg.method})"
            with RichHooks(quiet) as hooks:
                info = train(cfg, hooks)
            _print_info(info, as_json, title)

        run_guarded(body)

    return run


pretrain_cmd = config_command(TrainConfig, _training_body("pretrain"), extra=_json_quiet(), name="pretrain_cmd", doc="""\
Train one stream's pipeline alone (encoder -> self-attention -> classifier).

Example: `dcat pretrain --modality video` writes runs/video-id/ (config.json, split.json,
metrics.jsonl, best.pt, last.pt).
""")

transfer_cmd = config_command(TransferConfig, _training_body("transfer"), extra=_json_quiet(), name="transfer_cmd", doc="""\
Train the target stream from frozen source(s): D-CAT (CE + lambda * ||norm(K_t^T V_t) - norm(K_s^T V_s)||_F) or a baseline.

Example: `dcat transfer --src video --tgt imu` (after `dcat pretrain --modality video`);
`--method logit-kd|feature-kd|none` for the baselines; `--src video,audio --src-weights 1,0.5`
for several sources. The attention width d is the sources'. Takes every option of `dcat pretrain`.
""")


def evaluate_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (runs/<name>).")],
    data: Annotated[Optional[Path], typer.Option("--data", help="Shards directory (default: the one the run trained on); may hold only the model's stream.")] = None,
    split: Annotated[str, typer.Option("--split", help="Part of the run's split: test, val, train, or 'all' (every window of --data).")] = "test",
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="Checkpoint file in the run folder.")] = "best.pt",
    device: Annotated[str, typer.Option("--device")] = "auto",
    threads: Annotated[int, typer.Option("--threads", help="CPU threads for torch (default 1: the same numbers on any machine and load; 0: one per idle core).")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
) -> None:
    """Macro-F1 (the paper's metric), accuracy, per-class precision/recall/F1 and the confusion matrix.

    Writes report.json and confusion-<split>.png in the run folder. Reads only the model's stream.
    """

    def body():
        from pipelines.learn.evaluate import evaluate_run

        rep = evaluate_run(run_dir, data, split=split, device=device, checkpoint=checkpoint, threads=threads)
        if as_json:
            out_console.print_json(to_json(rep))
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
    run_dir: Annotated[Path, typer.Argument(help="A run folder (or a .pt checkpoint; with --stream also a `dcat export` model).")],
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="Shards directory, shard file (.h5), raw recording folder (meta.json), or `-` (stdin, with --stream).")],
    fmt: Annotated[str, typer.Option("--format", help="csv or jsonl.")] = "csv",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write here instead of stdout.")] = None,
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="Checkpoint file in the run folder.")] = "best.pt",
    device: Annotated[str, typer.Option("--device")] = "auto",
    threads: Annotated[int, typer.Option("--threads", help="CPU threads for torch (default 1: the same numbers on any machine and load; 0: one per idle core).")] = 1,
    stream: Annotated[bool, typer.Option("--stream", help="INPUT `-`: IMU samples as CSV lines `t,<channels>` on stdin; one JSON line per window on stdout as soon as it is complete.")] = False,
) -> None:
    """Per-window predictions from the model's stream alone (no source sensor needed).

    A raw recording folder is preprocessed on the fly with the settings stored in the checkpoint.
    With `--stream` and INPUT `-`, an IMU model reads CSV samples from stdin and writes JSON lines.
    """

    def body():
        from pipelines.learn.predict import format_rows, predict

        if stream or str(input_path) == "-":
            from pipelines.core.errors import DcatError

            if not (stream and str(input_path) == "-"):
                raise DcatError("streaming prediction reads stdin: use INPUT `-` together with --stream")
            if out:
                raise DcatError("--stream writes JSON lines to stdout; redirect it instead of --out")
            from pipelines.deploy.stream import stream_stdio

            stream_stdio(run_dir, checkpoint=checkpoint, device=device, threads=threads)
            return

        res = predict(run_dir, input_path, device=device, checkpoint=checkpoint, threads=threads)
        text = format_rows(res["rows"], fmt)
        if out:
            from pipelines.core.io import atomic_write_text

            atomic_write_text(out, text)
            err_console.print(f"wrote {len(res['rows'])} predictions to {out}", highlight=False)
        else:
            import sys

            sys.stdout.write(text)

    run_guarded(body)
