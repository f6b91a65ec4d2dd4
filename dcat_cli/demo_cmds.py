"""`dcat demo`: the main job on the bundled sample data, in one command."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from dcat_cli.common import err_console, out_console, run_guarded


def demo_cmd(
    raw: Path = typer.Argument(Path("sample_data"), help="Raw dataset (default: the bundled sample_data/)."),
    work: Path = typer.Option(Path("demo"), "--work", help="Where shards (<work>/shards) and runs (<work>/runs) go."),
    seed: int = typer.Option(0, help="Seed of the splits and of every model."),
    epochs: int = typer.Option(20, help="Most epochs per training run (early stopping on validation macro-F1)."),
    ood_subjects: str = typer.Option("", "--ood-subjects", help="Comma-separated test subjects out of distribution (default: the last two)."),
    threads: int = typer.Option(1, help="CPU threads for torch. 1 (default) gives the same numbers on every run of a machine; 0: one per idle core (faster, but float order then depends on the load)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Re-preprocess even if <work>/shards exists."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Preprocess -> pretrain video and IMU -> D-CAT transfer video->imu -> evaluate, in and out of
    distribution; prints test macro-F1 of video alone, IMU alone and IMU with D-CAT.

    Example: `dcat demo` (on sample_data/, a few minutes on 2 CPU cores).
    """

    def body():
        from dcat_cli.train_cmds import RichHooks
        from pipelines.demo import DemoConfig, run_demo

        cfg = DemoConfig(raw=str(raw), work=str(work), seed=seed, epochs=epochs, threads=threads, overwrite=overwrite,
                         ood_subjects=tuple(s.strip() for s in ood_subjects.split(",") if s.strip()) or None)
        log = (lambda s: None) if quiet else (lambda s: err_console.print(f"[bold]demo[/bold] {s}", highlight=False))
        with RichHooks(quiet=True) as hooks:
            res = run_demo(cfg, hooks, log)
        if as_json:
            out_console.print_json(json.dumps(res, default=float))
            return
        from rich.table import Table

        t = Table(title=f"test macro-F1 on {raw} (seed {seed}; OOD test subjects {', '.join(res['ood_test_subjects'])})")
        cols = [c for c in res["table"][0] if c != "setting"]
        t.add_column("")
        for c in cols:
            t.add_column(c, justify="right")
        for row in res["table"]:
            t.add_row(row["setting"], *[f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in cols])
        out_console.print(t)
        out_console.print(f"runs: {work / 'runs'}  (dcat evaluate <run>, dcat predict <run> <input>); "
                          f"took {res['seconds']:.0f} s")

    run_guarded(body)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)
