"""Options declared once: a config dataclass field carries its default, its help and how the
command line spells it; the typer options, the experiment spec's keys and the README's option
tables are derived from it (``dcat_cli.options``, ``pipelines.learn.config``).

``opt(default, help, flag=..., cli=..., experiment=...)`` is ``dataclasses.field`` with that
metadata. ``flag`` is the command-line spelling (default ``--field-name``; a boolean may give
``"--augment/--no-augment"``); ``cli=False`` keeps a field off the command line; ``experiment=True``
lets an experiment's ``[train]`` table set it; ``required`` makes the command-line option
mandatory. The README tables list the options in declaration order.

A field also carries what values it takes: its type comes from the annotation (``int``, ``float``,
``str``, ``bool``, ``list`` with ``items``, ``dict``, ``tuple[int, int]``, ``| None``), its range from
``ge``/``gt``/``le``/``lt`` (on a list or tuple: on each item), ``finite`` (floats, default on),
``choices`` (the words a text takes), ``unique`` (a list's items each once) and ``why`` (the message's "what is allowed", replacing the
generated one). :func:`check_options` checks a config object against them (each config's
``__post_init__`` calls it), so the command line, an experiment spec and the library refuse the same
value with the same message: ``--epochs -1: give a whole number >= 1`` (or, naming the key of a
spec, ``epochs = -1: ...``). TOML's ``true`` is refused where a number is expected (a Python bool is
an int), and every int is bounded by :data:`INT_LIMIT` (a 64-bit signed int).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import types
import typing
from dataclasses import MISSING, field

#: the largest magnitude of an int setting (TOML's own range; no dcat setting needs more)
INT_LIMIT = 2 ** 63 - 1

def opt(default=MISSING, help: str = "", *, flag: str | None = None, short: str | None = None,
        cli: bool = True, experiment: bool = False, required: bool = False,
        cli_type: type | None = None, cli_default=MISSING, argument: bool = False, items: type | None = None,
        default_factory=MISSING, ge: float | None = None, gt: float | None = None, le: float | None = None,
        lt: float | None = None, finite: bool = True, unique: bool = False, choices: tuple | None = None,
        why: str | None = None):
    """A dataclass field with its command-line metadata (see the module docstring). ``cli_type`` and
    ``cli_default``: how the command line spells a value the config converts (``--video-size 112``
    for ``(112, 112)``); ``argument``: a positional argument, not an option; ``items``: the type of
    a list's items (the command line gives the list comma-separated). ``ge``, ``gt``, ``le``, ``lt``,
    ``finite``, ``unique``, ``choices``, ``why``: the values it takes (:func:`check_options`)."""
    meta = {"help": help, "flag": flag, "short": short, "cli": cli, "experiment": experiment,
            "required": required, "cli_type": cli_type, "cli_default": cli_default,
            "argument": argument, "items": items, "ge": ge, "gt": gt, "le": le, "lt": lt, "finite": finite,
            "unique": unique, "choices": tuple(choices) if choices is not None else None, "why": why}
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


# ------------------------------------------------------------------ the values a field takes


@functools.cache
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _kind(hint) -> tuple[object, bool, tuple]:
    """(base type, None allowed, the type's arguments) of a field annotation."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        base, optional = (rest[0] if len(rest) == 1 else object), type(None) in args
    else:
        base, optional = hint, False
    return (typing.get_origin(base) or base), optional, typing.get_args(base)


_NOUN = {int: "a whole number", float: "a finite number", str: "text", bool: "true or false"}
_NOUNS = {int: "whole numbers", float: "finite numbers", str: "names", bool: "true/false values"}


def _range_text(m: dict) -> str:
    parts = [f"{op} {m[k]:g}" for k, op in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")) if m.get(k) is not None]
    if len(parts) == 2 and parts[0][0] == ">":
        lo, hi = parts
        lb = "(" if lo.startswith("> ") else "["
        rb = ")" if hi.startswith("< ") else "]"
        return f" in {lb}{lo.split()[-1]}, {hi.split()[-1]}{rb}"
    return "".join(" " + p for p in parts)


def allowed_text(cls, name: str) -> str:
    """What field ``name`` of config class ``cls`` takes, in words (``a whole number >= 1``)."""
    f = {g.name: g for g in dataclasses.fields(cls)}[name]
    m = f.metadata
    if m.get("why"):
        return m["why"]
    base, optional, args = _kind(_hints(cls)[name])
    rng = _range_text(m)
    if m.get("choices"):
        words = ", ".join(map(str, m["choices"]))
        if base not in (list, tuple):
            return "choose one of " + words + (" (or leave it unset)" if optional and f.default is None else "")
        text = f"a list of: {words}" + (" (each once)" if m.get("unique") else "")
    elif base in (list, tuple):
        item = m.get("items") or (args[0] if args else None)
        text = f"a list of {_NOUNS.get(item, 'values')}{rng}" + (", each once" if m.get("unique") else "")
    elif base is dict:
        text = "a table of settings"
    else:
        text = _NOUN.get(base, "a value") + rng
    return "give " + text + (" (or leave it unset)" if optional and f.default is None else "")


def _scalar_ok(v, base, m: dict) -> bool:
    if base is int or base is float:
        if isinstance(v, bool) or not isinstance(v, (int, float) if base is float else int):
            return False
        if isinstance(v, int) and abs(v) > INT_LIMIT:
            return False
        x = float(v)
        if base is float and m.get("finite", True) and not math.isfinite(x):
            return False
        if math.isnan(x):
            return False
        return not any(m.get(k) is not None and not ok(x, m[k]) for k, ok in (
            ("ge", lambda a, b: a >= b), ("gt", lambda a, b: a > b), ("le", lambda a, b: a <= b),
            ("lt", lambda a, b: a < b)))
    if base is str:
        if m.get("choices"):
            return isinstance(v, str) and v in m["choices"]
        return isinstance(v, os.PathLike) or (isinstance(v, str) and "\x00" not in v)
    if base is bool:
        return isinstance(v, bool)
    return True


def value_ok(cls, name: str, v) -> bool:
    """Whether ``v`` is a value field ``name`` of ``cls`` takes (its type, range, finiteness)."""
    f = {g.name: g for g in dataclasses.fields(cls)}[name]
    base, optional, args = _kind(_hints(cls)[name])
    if v is None:
        return optional
    if base in (list, tuple):
        if not isinstance(v, (list, tuple)):
            return False
        item = f.metadata.get("items") or (args[0] if args else object)
        if item is not object and not all(_scalar_ok(x, item, f.metadata) for x in v):
            return False
        return not (f.metadata.get("unique") and len({repr(x) for x in v}) != len(v))
    if base is dict:
        return isinstance(v, dict)
    return _scalar_ok(v, base, f.metadata)


def shown(v) -> str:
    """A value as a message shows it: numbers as written (huge ints abridged), text quoted, at most ~60 characters."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int) and abs(v) > INT_LIMIT:
        return f"{'-' if v < 0 else ''}<an integer of about {int(v.bit_length() * 0.30103) + 1} digits>"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (int, str)):
        t = str(v) if isinstance(v, int) else repr(v)
    else:
        t = repr(v)
    return t if len(t) <= 60 else t[:57] + "..."


def option_problem(cls, name: str, v, spelling: str = "flag") -> str | None:
    """None when ``v`` suits field ``name`` of ``cls``, else the message: ``--epochs -1: give a
    whole number >= 1`` (``spelling="key"``: ``epochs = -1: ...``, as a spec writes it)."""
    if value_ok(cls, name, v):
        return None
    f = {g.name: g for g in dataclasses.fields(cls)}[name]
    who = f"{name} =" if spelling == "key" else flag_of(f).split("/")[0]
    allowed = allowed_text(cls, name)
    base = _kind(_hints(cls)[name])[0]
    if f.metadata.get("why") and base in (int, float) and (isinstance(v, bool) or not isinstance(v, (int, float))):
        allowed = f"give {_NOUN[base]} ({f.metadata['why']})"  # the wrong kind of value: say which kind
    text = v if isinstance(v, str) and f.metadata.get("choices") and len(v) <= 60 else shown(v)
    return f"{who} {text}: {allowed}"


def check_options(obj, error: type[Exception] = ValueError, spelling: str = "flag") -> None:
    """Raise ``error`` (with ``.option`` = the field's name and ``.value``) at the first field of
    config object ``obj`` whose value the field does not take (:func:`option_problem`)."""
    cls = type(obj)
    for f in dataclasses.fields(cls):
        if "ge" not in f.metadata:  # a plain field, not made with opt
            continue
        v = getattr(obj, f.name)
        msg = option_problem(cls, f.name, v, spelling)
        if msg is not None:
            e = error(msg)
            e.option, e.value = f.name, v
            raise e
