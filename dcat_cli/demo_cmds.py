"""`dcat demo`: the main job on the bundled sample data, in one command; `dcat controls`: the positive and
negative controls."""

from __future__ import annotations

from pathlib import Path


from dcat_cli.common import err_console, out_console, run_guarded
from dcat_cli.options import config_command, option
from pipelines.study.controls import ControlsConfig
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
        from pipelines.study.demo import render_table

        out_console.print(render_table(res), markup=False, highlight=False, soft_wrap=True)
        out_console.print("A difference whose interval holds 0, or that the null's matches, is not told apart from "
                          f"noise. Full report: {res['results_md']}; runs: {res['out']}/runs "
                          f"(dcat evaluate <run>, dcat predict <run> <input>); took {res['seconds']:.0f} s",
                          highlight=False)

    run_guarded(body)


#: the options of `dcat demo` that are not DemoConfig fields
DEMO_RUN_OPTIONS = [option("quiet", "--quiet", "-q", help="No progress output."),
                    option("as_json", "--json", help="Print the result as JSON on stdout.")]

demo_cmd = config_command(DemoConfig, _demo_body, name="demo_cmd", extra=DEMO_RUN_OPTIONS, doc="""\
Preprocess -> video source, IMU alone, the IMU's null (a second seed) and IMU with D-CAT over time-block
folds x seeds, the IMU seeing a share of its training labels; prints test macro-F1 (mean ± SD) and each
difference to the IMU alone with its 95% interval over test sets.

Example: `dcat demo` (on sample_data/, under 4 minutes on 2 CPU cores).
""")


def _controls_body(cfg, quiet: bool, as_json: bool) -> None:
    def body():
        from pipelines.study.controls import run_controls

        log = (lambda s: None) if quiet else (lambda s: err_console.print(f"[bold]controls[/bold] {s}", highlight=False))
        res = run_controls(cfg, log)
        if as_json:
            out_console.print_json(to_json(res))
            return
        out_console.print((Path(cfg.out) / "controls.md").read_text(), markup=False, highlight=False)
        out_console.print(f"files: {', '.join(res['files'])}; took {res['seconds']:.0f} s", highlight=False)

    run_guarded(body)


controls_cmd = config_command(ControlsConfig, _controls_body, name="controls_cmd", extra=DEMO_RUN_OPTIONS, doc="""\
Positive and negative controls on synthetic data where the answer is known: synthesizes the datasets
(`dcat synth --imu-cue --source-errors`), preprocesses them and runs one `dcat experiment` per dataset
and labelled share (in-distribution folds x seeds, the IMU baseline and its null, D-CAT with MCMA on
and off); writes controls.md / controls.csv (every gain with its 95% interval over test sets beside
the null's) and plots/gain_vs_label_fraction.png, plots/gain_vs_cue.png. Resumable.

Example: `dcat controls --out controls` (about an hour on 2 CPU cores); `dcat controls --fractions 0.1,1 --cues 0.3`.
""")
