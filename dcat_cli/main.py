"""`dcat`: the typer app. Each command group lives in its own module and registers here.

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


from dcat_cli import data_cmds, demo_cmds, experiment_cmds, train_cmds  # noqa: E402

data_cmds.register(app)
train_cmds.register(app)
demo_cmds.register(app)
experiment_cmds.register(app)


if __name__ == "__main__":  # pragma: no cover
    app()
