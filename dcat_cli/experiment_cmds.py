"""`dcat experiment`: the study grid (pipelines.study.experiment) with a progress bar and the table."""

from __future__ import annotations

from pathlib import Path
from typing import Optional


from dcat_cli.common import err_console, fail, out_console, run_guarded
from dcat_cli.options import argument, config_command, option
from pipelines.study.spec import ExperimentConfig
from pipelines.core.io import to_json


def _print_cells(res: dict, as_json: bool) -> None:
    """``--dry-run``: the cells (role and name, or as JSON) and their number."""
    if as_json:
        out_console.print_json(to_json([{"cell": c["cell"], "role": c["role"], "deps": c["deps"],
                                            "settings": c["settings"]} for c in res["cells"]]))
        return
    for c in res["cells"]:
        out_console.print(f"{c['role']:9s} {c['cell']}", highlight=False)
    out_console.print(f"{res['total']} cells in {res['out']}", highlight=False)


def _run_with_progress(cfg, log, quiet: bool) -> dict:
    """Run the grid with a progress bar on stderr and a line per finished cell (none with ``quiet``)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pipelines.study.experiment import run_experiment

    prog = Progress(TextColumn("cells"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[last]}"), console=err_console, transient=True, disable=quiet)

    with prog:
        task = prog.add_task("cells", total=None, last="")

        def on_cell(c, status, row, done, total):
            prog.update(task, total=total, completed=done, last=f"{c['cell']} {status}")
            if quiet or status == "skipped":
                return
            if status == "ok":
                f1 = row.get("test_macro_f1")
                err_console.print(f"  [green]done[/green] {c['cell']}: test macro-F1 "
                                  f"{f1:.3f} ({row['seconds']:.0f} s)" if f1 is not None else
                                  f"  done {c['cell']}", highlight=False)
            else:
                err_console.print(f"  [red]{status}[/red] {c['cell']}", highlight=False)

        return run_experiment(cfg, log, on_cell)


def _print_result(res: dict, as_json: bool) -> None:
    """The result (JSON, or results.md and a summary line); fails (exit 1) when a cell failed or was blocked."""
    if as_json:
        out_console.print_json(to_json(res))
    else:
        md = Path(res["out"]) / "results.md"
        if md.is_file():
            out_console.print(md.read_text(), markup=False, highlight=False)
        out_console.print(f"{res['ran']} cells run, {res['skipped']} finished before, {len(res['failed'])} failed, "
                          f"{res['blocked']} blocked; {res['seconds']:.0f} s. Results: {res['out']}/results.md, "
                          "results.csv, plots/", highlight=False)
    if res["failed"] or res["blocked"]:
        fail(f"{len(res['failed'])} cell(s) failed ({', '.join(sorted(res['failed']))}); see "
             f"{res['out']}/failed.json. Fix the cause and run the same command again: finished cells are kept.")


def _experiment_body(options: dict, spec: Optional[Path], quick: bool, epochs: Optional[int], d: Optional[int],
                     overwrite: bool, dry_run: bool, as_json: bool, quiet: bool) -> None:
    def body():
        from pipelines.study.experiment import load_spec, merge_config, parse_options, run_experiment

        d0 = load_spec(spec) if spec else None
        cfg = merge_config(d0, parse_options(options), train={"epochs": epochs, "d": d}, quick=quick,
                           overwrite=overwrite, where=str(spec) if spec else "options")
        log = (lambda s: None) if quiet else (lambda s: err_console.print(f"[bold]experiment[/bold] {s}", highlight=False))
        if dry_run:
            _print_cells(run_experiment(cfg, log, dry_run=True), as_json)
            return
        res = _run_with_progress(cfg, log, quiet)
        _print_result(res, as_json)

    run_guarded(body)


#: the options of `dcat experiment` that are not ExperimentConfig fields
EXPERIMENT_RUN_OPTIONS = [
    argument("spec", Optional[Path], default=None, help="SPEC.toml: the grid (every setting below; its 'train' "
             "table holds training settings such as epochs). Options given on the command line override it."),
    option("quick", "--quick", help="The reduced grid on the bundled sample_data/ (video->imu; D-CAT lambda 0.1/1/10 x "
           "MCMA on/off, logit KD, feature KD, the classical reference (features-rf), no transfer and its null "
           "(second seed); 3 time-block folds in distribution and 5 subject folds out of distribution; seed 0; imu "
           "shifted +-1 s; 12 epochs, 4 video frames per window)."),
    option("epochs", "--epochs", typ=Optional[int], default=None,
           help="Most epochs per run (default 20; --quick 12): sets [train] epochs."),
    option("d", "--d", typ=Optional[int], default=None, help="Attention width of every model (default 64): sets [train] d."),
    option("overwrite", "--overwrite", help="Retrain cells whose saved settings differ from the spec's (finished cells "
           "with the same settings are always kept)."),
    option("dry_run", "--dry-run", help="List the cells and exit."),
    option("as_json", "--json", help="Print the result (rows, paths) as JSON on stdout."),
    option("quiet", "--quiet", "-q", help="No progress on stderr."),
]

experiment_cmd = config_command(ExperimentConfig, _experiment_body, extra=EXPERIMENT_RUN_OPTIONS, first=2,
                                unset_none=True, name="experiment_cmd", doc="""\
Run the paper's study as one resumable grid: source->target pairs x D-CAT lambdas x MCMA on/off,
the baselines, the classical reference and the null (the baseline with a second seed), in and out of
distribution over folds (each fold one test set), several seeds, and the misalignment study.

Writes results.csv (one row per run), results.md (the headline: D-CAT with lambda and MCMA chosen
on validation; per model the paired difference to the uni-modal baseline with a 95% CI over test
sets, keep rates, identical runs marked; sync robustness; overfitting against an independent
baseline) and plots/ (paired differences). Run it again to resume: finished cells are skipped.

Examples: `dcat experiment --quick`; `dcat experiment spec.toml --jobs 2`;
`dcat experiment --data shards --pairs 'video->imu,audio->imu' --seeds 0,1,2 --out experiments/a`.
""")
