"""Options declared once: a config dataclass field carries its default, its help and how the
command line spells it; the typer options, the experiment spec's keys and the README's option
tables are derived from it (``dcat_cli.options``, ``pipelines.learn.config``).

``opt(default, help, flag=..., cli=..., experiment=...)`` is ``dataclasses.field`` with that
metadata. ``flag`` is the command-line spelling (default ``--field-name``; a boolean may give
``"--augment/--no-augment"``); ``cli=False`` keeps a field off the command line; ``experiment=True``
lets an experiment's ``[train]`` table set it; ``required`` makes the command-line option
mandatory. The README tables list the options in declaration order.
"""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING, field

def opt(default=MISSING, help: str = "", *, flag: str | None = None, short: str | None = None,
        cli: bool = True, experiment: bool = False, required: bool = False,
        cli_type: type | None = None, cli_default=MISSING, argument: bool = False, items: type | None = None,
        default_factory=MISSING):
    """A dataclass field with its command-line metadata (see the module docstring). ``cli_type`` and
    ``cli_default``: how the command line spells a value the config converts (``--video-size 112``
    for ``(112, 112)``); ``argument``: a positional argument, not an option; ``items``: the type of
    a list's items (the command line gives the list comma-separated)."""
    meta = {"help": help, "flag": flag, "short": short, "cli": cli, "experiment": experiment,
            "required": required, "cli_type": cli_type, "cli_default": cli_default,
            "argument": argument, "items": items}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def flag_of(f: dataclasses.Field) -> str:
    """The command-line spelling of field ``f`` (``--batch-size``, ``--augment/--no-augment``)."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def cli_fields(cls) -> list[dataclasses.Field]:
    """The fields of config class ``cls`` that are command-line options (made with :func:`opt`,
    not ``cli=False``), in declaration order."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("cli")]


def default_of(f: dataclasses.Field):
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def cli_default(f: dataclasses.Field):
    """The default as the command line spells it."""
    v = f.metadata.get("cli_default", MISSING)
    return default_of(f) if v is MISSING else v


def _default_text(f: dataclasses.Field) -> str:
    if f.metadata.get("required"):
        return "required"
    v = cli_default(f)
    if isinstance(v, list):
        return "`" + ",".join(("on" if x else "off") if isinstance(x, bool) else f"{x:g}" if isinstance(x, float)
                              else str(x) for x in v) + "`"
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "on" if v else "off"
    return f"`{v:g}`" if isinstance(v, float) else f"`{v}`"


def own_fields(cls) -> list[str]:
    """Names of the fields ``cls`` declares itself (new or redeclared), not inherited unchanged."""
    return list(cls.__dict__.get("__annotations__", {}))


def option_table(cls, only: list[str] | None = None) -> str:
    """The README's Markdown table of ``cls``'s command-line options (flag, default, meaning) in
    declaration order; ``only``: just these fields."""
    rows = ["| option | default | meaning |", "|---|---|---|"]
    for f in cli_fields(cls):
        if (only is None or f.name in only) and not f.metadata.get("argument"):
            names = flag_of(f) + (f", {f.metadata['short']}" if f.metadata.get("short") else "")
            rows.append(f"| `{names}` | {_default_text(f)} | {f.metadata['help'].replace('|', '/')} |")
    return "\n".join(rows) + "\n"


def experiment_keys(cls) -> tuple[str, ...]:
    """The fields an experiment's ``[train]`` table may set."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("experiment"))
