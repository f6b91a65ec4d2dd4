"""Data commands: `dcat preprocess`, `inspect`, `validate`, `manifest`, `synth`.

Each parses options, calls one function in `pipelines`, renders with rich, sets the exit code.
Results go to stdout (`--json` for machines), messages and progress to stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from dcat_cli.common import err_console, fail, out_console, run_guarded
from dcat_cli.options import argument, config_command, option
from pipelines.ingest.config import PreprocessConfig
from pipelines.synth.config import SynthConfig
from pipelines.core.io import to_json


def _preprocess_body(cfg, inputs: list[str], out: Path, workers: int, shard_index: int, num_shards: int,
                     overwrite: bool, fail_fast: bool, as_json: bool) -> None:
    def body():
        from pipelines.ingest.preprocess import preprocess
        from pipelines.ingest.raw import discover, select_shard

        recs = select_shard(discover(inputs), shard_index, num_shards)
        if not recs:
            fail(f"no recordings for --shard-index {shard_index} of {num_shards}")
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("preprocess"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TextColumn("{task.description}"), console=err_console, transient=True) as bar:
            task = bar.add_task("", total=len(recs))

            def on_done(r):
                bar.update(task, advance=1, description=f"{r['recording']} {r['status']}")
                if r["status"] == "failed":
                    err_console.print(f"[red]error[/red] {r['message']}", highlight=False)

            res = preprocess(recs, out, cfg, overwrite=overwrite, workers=workers, fail_fast=fail_fast,
                             shard_index=shard_index, num_shards=num_shards, argv=sys.argv[1:], progress=on_done)
        s = res["summary"]
        if as_json:
            out_console.print_json(to_json(s))
        else:
            _render_preprocess(s, res["results"], out)
        if s["failed"] or s.get("manifest_error"):
            raise typer.Exit(1)

    run_guarded(body)


#: the options of `dcat preprocess` that are not PreprocessConfig's (what to read, where to write, how to run)
PREPROCESS_RUN_OPTIONS = [
    argument("inputs", List[str], help="Raw folder(s), recording folder(s), or '-' to read recording paths from "
             "stdin (one per line)."),
    option("out", "--out", "-o", typ=Path, default=Path("shards"), help="Shards directory to write."),
    option("workers", "--workers", "-j", typ=int, default=1, help="Recordings processed in parallel (processes)."),
    option("shard_index", "--shard-index", typ=int, default=0, help="This task's index for job arrays: takes "
           "recordings k with k mod --num-shards == index (id order)."),
    option("num_shards", "--num-shards", typ=int, default=1, help="Number of job-array tasks splitting the "
           "recording list."),
    option("overwrite", "--overwrite", help="Rewrite shards that exist (default: skip finished ones; a shard made "
           "with other settings is an error)."),
    option("fail_fast", "--fail-fast", help="Stop at the first failed recording."),
    option("as_json", "--json", help="Print the summary as JSON on stdout."),
]

preprocess_cmd = config_command(PreprocessConfig, _preprocess_body, extra=PREPROCESS_RUN_OPTIONS, first=1,
                                name="preprocess_cmd", doc="""\
Raw recordings -> one synchronized, windowed HDF5 shard per recording (+ manifest.json).

Example: `dcat preprocess raw/ --fps 30 --imu-hz 50` writes shards/.
""")


def _lag_cell(name: str, v: dict) -> str:
    """``imu +0.300`` (reliable), ``imu +0.300?`` (uncertain), ``audio =+0.010`` (same clock:
    a consistency check), ``imu -`` (no estimate)."""
    if v.get("lag_s") is None:
        return f"{name} -"
    mark = "" if v.get("lag_reliable") else "?"
    same = "=" if v.get("lag_role") == "same clock" else ""
    return f"{name} {same}{v['lag_s']:+.3f}{mark}"


def _render_preprocess(s: dict, results: list[dict], out: Path) -> None:
    from rich.table import Table

    t = Table(title=f"dcat preprocess -> {out}")
    t.add_column("recording")
    t.add_column("status")
    t.add_column("windows", justify="right")
    t.add_column("dropped", justify="right")
    refs = {(r.get("info") or {}).get("reference_stream") for r in results} - {None}
    one_ref = next(iter(refs)) if len(refs) == 1 else None
    t.add_column(f"lag vs {one_ref} (s)" if one_ref else "lag vs reference (s)")
    t.add_column("checks")
    for r in results:
        info = r.get("info") or {}
        drops = sum(info.get("rejected", {}).values()) if info else 0
        lags = ", ".join(_lag_cell(k, v) for k, v in info.get("streams", {}).items()
                         if k != info.get("reference_stream"))
        if lags and not one_ref:
            lags = f"vs {info.get('reference_stream')}: {lags}"
        flags = []
        if info and info.get("sync_ok") is False:
            flags.append("[yellow]out of sync[/yellow]")
        elif info and info.get("sync_ok") is None:
            flags.append("[yellow]sync uncertain[/yellow]")
        if info and not info.get("rate_ok", True):
            flags.append("[yellow]rate[/yellow]")
        status = {"ok": "[green]ok[/green]", "failed": "[red]failed[/red]"}.get(r["status"], r["status"])
        t.add_row(r["recording"], status, str(info.get("windows_kept", "")), str(drops) if info else "", lags,
                  " ".join(flags) or ("ok" if info else ""))
    out_console.print(t)
    out_console.print("lag: reliable estimate; ? uncertain (not applied); = same clock as the reference "
                      "(consistency check); - no estimate")
    d = ", ".join(f"{k} {v}" for k, v in s["windows_dropped"].items())
    w = s["worst_lag"]
    out_console.print(f"recordings: {s['ok']} ok, {s['skipped']} skipped, {s['failed']} failed"
                      + (f", {s['not_run']} not run" if s.get("not_run") else "")
                      + f" | windows kept {s['windows_kept']}, dropped: {d}")
    if w:
        out_console.print(f"worst lag: {w['recording']} {w['stream']} vs {w.get('reference')} {w['lag_s']:+.3f} s"
                          + (f" | out of sync: {', '.join(s['out_of_sync'])}" if s["out_of_sync"] else "")
                          + (f" | sync uncertain: {', '.join(s['sync_uncertain'])}" if s["sync_uncertain"] else ""))
    for msg in s["warnings"]:
        err_console.print(f"[yellow]warning[/yellow] {msg}", highlight=False)
    if s.get("leftovers_removed"):
        left = s["leftovers_removed"]
        err_console.print(f"removed {len(left)} leftover(s) of interrupted runs from {out}: "
                          + ", ".join(left[:10]) + (" ..." if len(left) > 10 else ""), highlight=False)


def inspect_cmd(
    shards_dir: Annotated[Path, typer.Argument(help="Shards directory.")] = Path("shards"),
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON on stdout.")] = False,
) -> None:
    """Recordings, subjects, classes, windows per class and subject, streams, check results.

    Example: `dcat inspect shards/`.
    """

    def body():
        from pipelines.shards.manifest import inspect_shards

        r = inspect_shards(shards_dir)
        if as_json:
            out_console.print_json(to_json(r))
            return
        from rich.table import Table

        out_console.print(f"[bold]{r['shards_dir']}[/bold]: {r['recordings']} recordings, {len(r['subjects'])} subjects, "
                          f"{len(r['classes'])} classes, {r['n_windows']} windows "
                          f"(window {r['settings']['window_s']:g} s, stride {r['settings']['stride_s']:g} s)")
        st = Table(title="streams")
        for c in ("stream", "kind", "rate (Hz)", "per-window shape", "dtype"):
            st.add_column(c)
        for name, s in r["streams"].items():
            st.add_row(name, s["kind"], f"{s['rate_hz']:g}", "x".join(map(str, s["shape"])), s["dtype"])
        out_console.print(st)
        ct = Table(title="windows per class and subject")
        ct.add_column("class")
        subs = r["subjects"]
        for sub in subs:
            ct.add_column(sub, justify="right")
        ct.add_column("total", justify="right")
        for c in r["classes"]:
            ct.add_row(c, *[str(r["windows_per_class_subject"][c][s]) for s in subs], str(r["windows_per_class"][c]))
        ct.add_row("[bold]total[/bold]", *[str(r["windows_per_subject"][s]) for s in subs], str(r["n_windows"]))
        out_console.print(ct)
        rt = Table(title="checks per recording")
        for c in ("recording", "subject", "windows", "dropped", "lags (s)", "sync", "rate"):
            rt.add_column(c)
        for x in r["per_recording"]:
            rt.add_row(x["recording"], x["subject"], str(x["windows"]),
                       ", ".join(f"{k} {v}" for k, v in x["rejected"].items() if v) or "0",
                       (f"vs {x.get('reference_stream')}: " if x["lags_s"] else "")
                       + ", ".join(f"{k} {v:+.3f}" if v is not None else f"{k} -" for k, v in x["lags_s"].items()),
                       {True: "ok", False: "[yellow]out of sync[/yellow]", None: "[yellow]uncertain[/yellow]"}[x["sync_ok"]],
                       "ok" if x["rate_ok"] else "[yellow]check[/yellow]")
        out_console.print(rt)

    run_guarded(body)


def validate_cmd(
    path: Annotated[Path, typer.Argument(help="A raw folder (recordings with meta.json) or a shards directory.")],
    deep: Annotated[bool, typer.Option("--deep", help="Raw: also open every media file and parse every IMU CSV.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the problems as JSON on stdout.")] = False,
) -> None:
    """Check a raw tree against schemas/raw-layout.md or shards against schemas/shard.md; exit 1 on any problem.

    Example: `dcat validate sample_data/` or `dcat validate shards/`.
    """

    def body():
        from pipelines.shards.validate import validate_shards
        from pipelines.ingest.validate import looks_like_shards, validate_raw

        kind = "shards" if looks_like_shards(path) or (path.is_file() and path.suffix == ".h5") else "raw"
        problems = validate_shards(path) if kind == "shards" else validate_raw(path, deep=deep)
        if as_json:
            out_console.print_json(to_json({"path": str(path), "kind": kind, "ok": not problems, "problems": problems}))
        else:
            for p in problems:
                out_console.print(f"[red]x[/red] {p}", highlight=False)
            out_console.print(f"{path} ({kind}): " + ("[green]valid[/green]" if not problems else f"[red]{len(problems)} problem(s)[/red]"))
        if problems:
            raise typer.Exit(1)

    run_guarded(body)


def manifest_cmd(
    shards_dir: Annotated[Path, typer.Argument(help="Shards directory.")] = Path("shards"),
    expect: Annotated[Optional[List[str]], typer.Option("--expect", help="Raw folder(s): check that every recording there has exactly one shard.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest summary as JSON on stdout.")] = False,
) -> None:
    """Rebuild manifest.json from the shards present (e.g. after a job array).

    Example: `dcat manifest shards/ --expect raw/`.
    """

    def body():
        from pipelines.shards.manifest import write_manifest

        m = write_manifest(shards_dir)
        missing, extra = [], []
        if expect:
            from pipelines.ingest.raw import discover, recording_id

            want = {recording_id(p.name) for p in discover(expect)}
            have = {s["recording_id"] for s in m["shards"]}
            missing, extra = sorted(want - have), sorted(have - want)
        res = {"shards": len(m["shards"]), "n_windows": m["n_windows"], "classes": m["classes"],
               "missing": missing, "unexpected": extra}
        if as_json:
            out_console.print_json(to_json(res))
        else:
            out_console.print(f"manifest: {res['shards']} shards, {res['n_windows']} windows, {len(m['classes'])} classes")
            if expect:
                out_console.print(f"coverage: {len(missing)} missing {missing[:20]}, {len(extra)} unexpected {extra[:20]}")
        if missing or extra:
            raise typer.Exit(1)

    run_guarded(body)


def _synth_body(cfg, out_dir: Path) -> None:
    def body():
        from pipelines.synth import synthesize

        cfg.validate()
        info = synthesize(out_dir, cfg)
        out_console.print_json(to_json(info))

    run_guarded(body)


SYNTH_RUN_OPTIONS = [argument("out_dir", Path, help="Where to write the raw dataset.")]

# every option is a SynthConfig field (pipelines/synth/config.py), declared once
synth_cmd = config_command(SynthConfig, _synth_body, extra=SYNTH_RUN_OPTIONS, first=1, name="synth_cmd", doc="""\
Generate a synthetic raw dataset (video, audio, wrist IMU, labels) with known clock offsets.

Example: `dcat synth raw/ --subjects 5 --recordings 3 --seconds 40 --seed 0` (ground truth in raw/ground_truth.json).

Controls: `--imu-cue 0.3` (a faint IMU cue for drink/eat and stir/wipe), `--source-errors 0.2` (the camera fails 20% of the time), `--audio-strength 0.5`.
""")
