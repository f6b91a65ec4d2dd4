"""`dcat`: the typer app. Each command group lives in its own module; COMMANDS below joins them.

Heavy imports (torch, decord, librosa, h5py) happen inside command bodies so `dcat --help` is fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from pipelines import __version__

app = typer.Typer(
    name="dcat",
    help="Cross-modal knowledge transfer between sensors for activity recognition: "
    "train with video, audio and IMU, deploy with one sensor.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dcat {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """dcat: raw recordings -> synchronized shards -> per-sensor models -> D-CAT transfer -> evaluation."""


from dcat_cli import data_cmds, demo_cmds, deploy_cmds, experiment_cmds, import_cmds, train_cmds  # noqa: E402

#: every command, in the order `dcat --help` lists them
COMMANDS = {
    "preprocess": data_cmds.preprocess_cmd, "inspect": data_cmds.inspect_cmd, "validate": data_cmds.validate_cmd,
    "manifest": data_cmds.manifest_cmd, "synth": data_cmds.synth_cmd,
    "pretrain": train_cmds.pretrain_cmd, "transfer": train_cmds.transfer_cmd, "evaluate": train_cmds.evaluate_cmd,
    "predict": train_cmds.predict_cmd, "demo": demo_cmds.demo_cmd, "experiment": experiment_cmds.experiment_cmd,
    "controls": demo_cmds.controls_cmd, "import": import_cmds.import_cmd,
    "export": deploy_cmds.export_cmd,
}
for _name, _cmd in COMMANDS.items():
    app.command(_name)(_cmd)


if __name__ == "__main__":  # pragma: no cover
    app()
