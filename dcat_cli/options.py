"""Typer options derived from a config dataclass (:mod:`pipelines.core.options`): each field's
default, help and flag are declared once, in the dataclass; this module turns them into
``Annotated[type, typer.Option(...)]`` parameters and builds a command whose body receives the
config object."""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from typing import Annotated, Callable, Optional

import typer
from rich.markup import escape

from dcat_cli.common import fail
from pipelines.core.errors import DcatError
from pipelines.core.options import cli_default, cli_fields, flag_of

_P = inspect.Parameter


def _help(text: str) -> str:
    text = text.replace("`", "'")
    return escape(text[:1].upper() + text[1:] + ("" if text.endswith(".") else "."))


def config_params(cls, unset_none: bool = False) -> list[inspect.Parameter]:
    """One keyword-only parameter per command-line field of ``cls``. ``unset_none``: every option
    defaults to None ("not given"; the help states the real default)."""
    hints = typing.get_type_hints(cls)
    params = []
    for f in cli_fields(cls):
        hint = hints[f.name]
        args = typing.get_args(hint)
        optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args
        base = next(a for a in args if a is not type(None)) if optional else hint
        if base is list:
            base = str
        if f.metadata.get("cli_type") is not None:
            base = f.metadata["cli_type"]
        typ = Optional[base] if (optional or unset_none) else base
        names = [flag_of(f)] + ([f.metadata["short"]] if f.metadata.get("short") else [])
        if f.metadata.get("argument"):
            option = typer.Argument(help=_help(f.metadata["help"]), show_default=False)
        else:
            option = typer.Option(*names, help=_help(f.metadata["help"]),
                                  show_default=not (f.metadata.get("required") or unset_none))
        default = None if unset_none else _P.empty if f.metadata.get("required") else cli_default(f)
        params.append(_P(f.name, _P.KEYWORD_ONLY, default=default, annotation=Annotated[typ, option]))
    return params


def config_command(cls, body: Callable, *, extra: list[inspect.Parameter] = (), name: str, doc: str,
                   first: int = 0, unset_none: bool = False) -> Callable:
    """A typer command whose options are ``cls``'s fields plus ``extra`` (the first ``first`` of
    them before the fields: arguments); it calls ``body(cfg, **extra_values)`` with
    ``cfg = cls(**field_values)``, or with ``unset_none`` ``body(field_values, ...)`` where a value
    not given is None (the body merges them over other settings)."""
    params = list(extra[:first]) + config_params(cls, unset_none) + list(extra[first:])
    extra_names = [p.name for p in extra]
    field_names = {f.name for f in dataclasses.fields(cls)}

    def command(**kw):
        rest = {k: kw.pop(k) for k in extra_names}
        if unset_none:
            return body({k: v for k, v in kw.items() if k in field_names}, **rest)
        try:  # the config checks its values when made: a bad one is an error message, not a traceback
            cfg = cls(**{k: v for k, v in kw.items() if k in field_names})
        except DcatError as e:
            fail(str(e))
        body(cfg, **rest)

    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__name__ = name
    command.__doc__ = doc
    return command


def option(name: str, *flags: str, help: str, default=False, typ=bool) -> inspect.Parameter:
    """An option that is not a config field (``--json``, ``--workers``), for ``extra``."""
    return _P(name, _P.KEYWORD_ONLY, default=default, annotation=Annotated[typ, typer.Option(*flags, help=help)])


def argument(name: str, typ, *, help: str, default=_P.empty) -> inspect.Parameter:
    """A positional argument that is not a config field, for ``extra`` (with ``first``)."""
    return _P(name, _P.KEYWORD_ONLY, default=default, annotation=Annotated[typ, typer.Argument(help=help)])


# ------------------------------------------------------------------ README tables

README_BLOCKS = ("synth", "preprocess", "pretrain", "transfer", "demo", "experiment", "experiment-train", "controls")


def extra_rows(params: list[inspect.Parameter]) -> str:
    """README table rows for options declared as parameters (not config fields)."""
    rows = []
    for p in params:
        info = typing.get_args(p.annotation)[1]
        if not isinstance(info, typer.models.OptionInfo):
            continue
        # in the Annotated form typer keeps the first flag where a default would stand
        first = [info.default] if isinstance(info.default, str) and info.default.startswith("-") else []
        names = ", ".join([*first, *info.param_decls])
        d = p.default
        default = ("on" if d else "off") if isinstance(d, bool) else "-" if d is None else f"`{d}`"
        rows.append(f"| `{names}` | {default} | {info.help[:1].lower() + info.help[1:].rstrip('.')} |")
    return "".join(r + "\n" for r in rows)


def readme_block(name: str) -> str:
    """The generated text of README block ``name`` (between ``<!-- options: name -->`` and
    ``<!-- /options -->``), derived from the config dataclasses."""
    from pipelines.core.options import option_table, own_fields
    from pipelines.learn.config import EXPERIMENT_TRAIN_KEYS, TrainConfig, TransferConfig

    if name == "synth":
        from pipelines.synth.config import SynthConfig

        return option_table(SynthConfig)
    if name == "preprocess":
        from dcat_cli.data_cmds import PREPROCESS_RUN_OPTIONS
        from pipelines.ingest.config import PreprocessConfig

        return option_table(PreprocessConfig) + extra_rows(PREPROCESS_RUN_OPTIONS)
    if name == "pretrain":
        return option_table(TrainConfig)
    if name == "transfer":
        return option_table(TransferConfig, only=own_fields(TransferConfig))
    if name == "demo":
        from dcat_cli.demo_cmds import DEMO_RUN_OPTIONS
        from pipelines.study.demo import DemoConfig

        return option_table(DemoConfig) + extra_rows(DEMO_RUN_OPTIONS)
    if name == "experiment":
        from dcat_cli.experiment_cmds import EXPERIMENT_RUN_OPTIONS
        from pipelines.study.spec import ExperimentConfig

        return option_table(ExperimentConfig) + extra_rows(EXPERIMENT_RUN_OPTIONS)
    if name == "controls":
        from dcat_cli.demo_cmds import DEMO_RUN_OPTIONS
        from pipelines.study.controls import ControlsConfig

        return option_table(ControlsConfig) + extra_rows(DEMO_RUN_OPTIONS)
    if name == "experiment-train":
        return ("`[train]` keys (each is the `dcat pretrain`/`dcat transfer` option of that name, `_` for `-`): "
                + ", ".join(f"`{k}`" for k in EXPERIMENT_TRAIN_KEYS) + ".\n")
    raise KeyError(name)


def update_readme(text: str) -> str:
    """``text`` with every generated block replaced by :func:`readme_block`'s current text."""
    import re

    for name in README_BLOCKS:
        pat = re.compile(rf"(<!-- options: {re.escape(name)} -->\n)(.*?)(<!-- /options -->)", re.S)
        if not pat.search(text):
            raise KeyError(f"README has no '<!-- options: {name} -->' block")
        text = pat.sub(lambda m: m.group(1) + readme_block(name) + m.group(3), text)
    return text


if __name__ == "__main__":  # python -m dcat_cli.options README.md: rewrite the generated tables
    import sys
    from pathlib import Path

    for arg in sys.argv[1:] or ["README.md"]:
        p = Path(arg)
        p.write_text(update_readme(p.read_text()))
