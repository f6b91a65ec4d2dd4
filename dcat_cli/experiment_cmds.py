"""`dcat experiment`: the study grid (pipelines.study.experiment) with a progress bar and the table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from dcat_cli.common import err_console, fail, out_console, run_guarded
from pipelines.core.io import parse_list


def _list(s: Optional[str], conv=str) -> list | None:
    if s is None:
        return None
    try:
        return parse_list(s, conv)
    except ValueError:
        fail(f"'{s}': expected a comma-separated list of {'numbers' if conv is not str else 'names'}")


def _onoff(s: Optional[str]) -> list | None:
    if s is None:
        return None
    out = []
    for x in _list(s):
        if x.lower() not in ("on", "off", "true", "false"):
            fail(f"--mcma {s}: write on, off or on,off")
        out.append(x.lower() in ("on", "true"))
    return out


def _print_cells(res: dict, as_json: bool) -> None:
    """``--dry-run``: the cells (role and name, or as JSON) and their number."""
    if as_json:
        out_console.print_json(json.dumps([{"cell": c["cell"], "role": c["role"], "deps": c["deps"],
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
        out_console.print_json(json.dumps(res, default=float))
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


def experiment_cmd(
    spec: Annotated[Optional[Path], typer.Argument(help="SPEC.toml: the grid (every setting below; its 'train' table holds training settings such as epochs). Options given on the command line override it.")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="The reduced grid on the bundled sample_data/ (video->imu; D-CAT lambda 0.1/1/10 x MCMA on/off, logit KD, feature KD, no transfer; in distribution and 5 subject folds out of distribution; seeds 0,1; imu shifted +-0.5/+-1 s; 12 epochs, 4 video frames per window).")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", help="Experiment folder: runs/, results.csv, results.md, plots/ (default experiments/exp; --quick: experiments/quick).")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="Shards directory to run on.")] = None,
    raw: Annotated[Optional[Path], typer.Option("--raw", help="Or a raw dataset: preprocessed (lag estimate applied) into <out>/shards first.")] = None,
    pairs: Annotated[Optional[str], typer.Option("--pairs", help="Comma-separated SOURCE->TARGET pairs (quote them in the shell): 'video->imu,audio->imu'; several sources: 'video+audio->imu'. Default video->imu.")] = None,
    methods: Annotated[Optional[str], typer.Option("--methods", help="Transfer methods besides the no-transfer baseline (which always runs): dcat,logit-kd,feature-kd (default all three).")] = None,
    lambdas: Annotated[Optional[str], typer.Option("--lambdas", help="D-CAT lambdas (default 0.1,1,10).")] = None,
    mcma: Annotated[Optional[str], typer.Option("--mcma", help="D-CAT with MCMA on, off, or on,off (default).")] = None,
    splits: Annotated[Optional[str], typer.Option("--splits", help="id, ood or id,ood (default).")] = None,
    folds: Annotated[Optional[int], typer.Option("--folds", help="Out-of-distribution subject folds; every fold runs (default: one per subject, at most 5).")] = None,
    seeds: Annotated[Optional[str], typer.Option("--seeds", help="Seeds (default 0,1,2). Each seed draws its own split and initialisation; every (fold, seed) is one paired comparison.")] = None,
    shifts: Annotated[Optional[str], typer.Option("--shifts", help="Misalignment study: shift magnitudes in seconds, each run at + and - (default 0.5,1; '' for none). D-CAT at --shift-lambda, MCMA on.")] = None,
    shift_stream: Annotated[Optional[str], typer.Option("--shift-stream", help="The stream shifted in the misalignment study (default: the pair's target).")] = None,
    shift_lambda: Annotated[Optional[float], typer.Option("--shift-lambda", help="D-CAT lambda of the misalignment study (default 1).")] = None,
    baseline_lambda: Annotated[Optional[float], typer.Option("--baseline-lambda", help="Weight of the logit-KD / feature-KD term (default 1).")] = None,
    temperature: Annotated[Optional[float], typer.Option("--temperature", help="Logit-KD temperature (default 4).")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Most epochs per run (default 20; --quick 12).")] = None,
    d: Annotated[Optional[int], typer.Option("--d", help="Attention width of every model (default 64).")] = None,
    jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", help="Cells run at once (0, default: one per CPU core divided by --threads; 1 on a GPU).")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", help="torch threads per cell (default 1: a cell's numbers do not depend on --jobs).")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="cpu (default), cuda, auto.")] = None,
    title: Annotated[Optional[str], typer.Option("--title", help="Title of results.md.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Retrain cells whose saved settings differ from the spec's (finished cells with the same settings are always kept).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the cells and exit.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result (rows, paths) as JSON on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
) -> None:
    """Run the paper's study as one resumable grid: source->target pairs x D-CAT lambdas x MCMA on/off,
    the baselines, in and out of distribution, several seeds, and the misalignment study.

    Writes results.csv (one row per run), results.md (mean +- std over seeds and folds, the paired
    difference to the uni-modal baseline with a 95% CI, sync robustness, overfitting) and plots/.
    Run it again to resume: finished cells are skipped.

    Examples: `dcat experiment --quick`; `dcat experiment spec.toml --jobs 2`;
    `dcat experiment --data shards --pairs 'video->imu,audio->imu' --seeds 0,1,2 --out experiments/a`.
    """

    def body():
        from pipelines.study.experiment import load_spec, merge_config, run_experiment

        d0 = load_spec(spec) if spec else None
        cfg = merge_config(d0, dict(
            out=str(out) if out else None, data=str(data) if data else None, raw=str(raw) if raw else None,
            pairs=_list(pairs), methods=_list(methods), lambdas=_list(lambdas, float), mcma=_onoff(mcma),
            splits=_list(splits), folds=folds, seeds=_list(seeds, int), shifts=_list(shifts, float),
            shift_stream=shift_stream, shift_lambda=shift_lambda, baseline_lambda=baseline_lambda,
            temperature=temperature, jobs=jobs, threads=threads, device=device, title=title),
            train={"epochs": epochs, "d": d}, quick=quick, overwrite=overwrite,
            where=str(spec) if spec else "options")
        log = (lambda s: None) if quiet else (lambda s: err_console.print(f"[bold]experiment[/bold] {s}", highlight=False))
        if dry_run:
            _print_cells(run_experiment(cfg, log, dry_run=True), as_json)
            return
        res = _run_with_progress(cfg, log, quiet)
        _print_result(res, as_json)

    run_guarded(body)
