"""Shared CLI plumbing: consoles (results to stdout, messages to stderr) and error handling."""

from __future__ import annotations

from typing import Callable, NoReturn

import typer
from rich.console import Console

out_console = Console(soft_wrap=True)  # results
err_console = Console(stderr=True, soft_wrap=True)  # messages, progress


def fail(msg: str, code: int = 1) -> NoReturn:
    """Print ``error <msg>`` on stderr (the message verbatim: brackets in it are not markup) and exit."""
    from rich.markup import escape

    err_console.print(f"[red]error[/red] {escape(msg)}", highlight=False)
    raise typer.Exit(code)


def run_guarded(body: Callable[[], None]) -> None:
    """Run a command body; a DcatError becomes a message on stderr and exit code 1 (no traceback)."""
    from pipelines.core.errors import DcatError

    try:
        body()
    except DcatError as e:
        fail(str(e))
