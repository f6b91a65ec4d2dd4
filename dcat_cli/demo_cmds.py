"""`dcat demo`: the main job on the bundled sample data, in one command."""

from __future__ import annotations

import json
from pathlib import Path

from typing import Annotated

import typer

from pipelines.core.io import parse_list
from dcat_cli.common import err_console, out_console, run_guarded


def demo_cmd(
    raw: Annotated[Path, typer.Argument(help="Raw dataset (default: the bundled sample_data/).")] = Path("sample_data"),
    work: Annotated[Path, typer.Option("--work", help="Where shards (<work>/shards) and runs (<work>/runs) go.")] = Path("demo"),
    seed: Annotated[int, typer.Option(help="Seed of the splits and of every model.")] = 0,
    epochs: Annotated[int, typer.Option(help="Most epochs per training run (early stopping on validation macro-F1).")] = 20,
    ood_subjects: Annotated[str, typer.Option("--ood-subjects", help="Comma-separated test subjects out of distribution (default: the last two).")] = "",
    threads: Annotated[int, typer.Option(help="CPU threads for torch. 1 (default) gives the same numbers on every run of a machine; 0: one per idle core (faster, but float order then depends on the load).")] = 1,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Re-preprocess even if <work>/shards exists.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Preprocess -> pretrain video and IMU -> D-CAT transfer video->imu -> evaluate, in and out of
    distribution; prints test macro-F1 of video alone, IMU alone and IMU with D-CAT.

    Example: `dcat demo` (on sample_data/, a few minutes on 2 CPU cores).
    """

    def body():
        from dcat_cli.train_cmds import RichHooks
        from pipelines.study.demo import DemoConfig, run_demo

        cfg = DemoConfig(raw=str(raw), work=str(work), seed=seed, epochs=epochs, threads=threads, overwrite=overwrite,
                         ood_subjects=tuple(parse_list(ood_subjects)) or None)
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
