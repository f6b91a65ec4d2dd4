"""`dcat demo`: the main job on the bundled sample data, in one command."""

from __future__ import annotations

from pathlib import Path


from dcat_cli.common import err_console, out_console, run_guarded
from dcat_cli.options import config_command, option
from pipelines.study.demo import DemoConfig
from pipelines.core.io import to_json


def _demo_body(cfg, quiet: bool, as_json: bool) -> None:
    def body():
        from dcat_cli.train_cmds import RichHooks
        from pipelines.study.demo import run_demo

        log = (lambda s: None) if quiet else (lambda s: err_console.print(f"[bold]demo[/bold] {s}", highlight=False))
        with RichHooks(quiet=True) as hooks:
            res = run_demo(cfg, hooks, log)
        if as_json:
            out_console.print_json(to_json(res))
            return
        from rich.table import Table

        t = Table(title=f"test macro-F1 on {cfg.raw} (seed {cfg.seed}; OOD test subjects {', '.join(res['ood_test_subjects'])})")
        cols = [c for c in res["table"][0] if c != "setting"]
        t.add_column("")
        for c in cols:
            t.add_column(c, justify="right")
        for row in res["table"]:
            t.add_row(row["setting"], *[f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in cols])
        out_console.print(t)
        out_console.print(f"runs: {Path(cfg.work) / 'runs'}  (dcat evaluate <run>, dcat predict <run> <input>); "
                          f"took {res['seconds']:.0f} s")

    run_guarded(body)


#: the options of `dcat demo` that are not DemoConfig fields
DEMO_RUN_OPTIONS = [option("quiet", "--quiet", "-q", help="No progress output."),
                    option("as_json", "--json", help="Print the result as JSON on stdout.")]

demo_cmd = config_command(DemoConfig, _demo_body, name="demo_cmd", extra=DEMO_RUN_OPTIONS, doc="""\
Preprocess -> pretrain video and IMU -> D-CAT transfer video->imu -> evaluate, in and out of
distribution; prints test macro-F1 of video alone, IMU alone and IMU with D-CAT.

Example: `dcat demo` (on sample_data/, a few minutes on 2 CPU cores).
""")
