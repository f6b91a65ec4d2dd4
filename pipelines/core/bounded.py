"""Reading untrusted text files within bounds: size, nesting depth, number sizes, encoding.

Everything a user hands dcat (meta.json, experiment specs, CSVs) is read through these helpers
before any parsing that could recurse without limit (``json.loads`` on 200,000 nested brackets
raises RecursionError), convert without limit (a 5,000-digit integer) or allocate from a value.
Every failure is a ``BoundedInputError`` (a ``DcatError``) whose ``problem`` says what is wrong
without the file, so callers can wrap it in their own error naming recording and file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from pipelines.core.errors import DcatError

MAX_JSON_BYTES = 1 << 20  # 1 MiB: meta.json and specs are a few KB
MAX_DEPTH = 32  # brackets nested deeper than this are refused before parsing
MAX_INT_DIGITS = 30  # integers with more digits are refused (no dcat field needs more)


class BoundedInputError(DcatError):
    """An input file over a bound or not parseable. ``str()``: ``<source>: <problem>``."""

    def __init__(self, source: str, problem: str):
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}" if source else problem)


def read_text_bounded(path: str | Path, max_bytes: int = MAX_JSON_BYTES, source: str | None = None) -> str:
    """The UTF-8 text of ``path``, refusing files over ``max_bytes``, undecodable bytes and NUL bytes."""
    path = Path(path)
    src = source if source is not None else str(path)
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise BoundedInputError(src, f"cannot read: {e.strerror or e}") from None
    if len(data) > max_bytes:
        raise BoundedInputError(src, f"larger than {max_bytes} bytes; is this the right file?")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise BoundedInputError(src, f"not UTF-8 text (byte {e.start}): is this the right file?") from None
    if "\x00" in text:
        raise BoundedInputError(src, f"holds a NUL byte (character {text.index(chr(0))}): not a text file")
    return text


def nesting_depth(text: str, quotes: str = '"') -> int:
    """The deepest nesting of ``[``/``{`` in ``text``, skipping quoted strings (``quotes``: the
    quote characters, ``'"'`` for JSON, ``'"' + "'"`` for TOML; backslash escapes inside ``"``).
    Never recurses; linear in the length."""
    depth = best = 0
    q = ""
    esc = False
    for ch in text:
        if q:
            if esc:
                esc = False
            elif ch == "\\" and q == '"':
                esc = True
            elif ch == q:
                q = ""
            continue
        if ch in quotes:
            q = ch
        elif ch in "[{":
            depth += 1
            if depth > best:
                best = depth
        elif ch in "]}":
            depth = max(0, depth - 1)
    return best


def check_depth(text: str, max_depth: int = MAX_DEPTH, source: str = "", quotes: str = '"') -> None:
    """Raise BoundedInputError when ``text`` nests brackets deeper than ``max_depth``."""
    d = nesting_depth(text, quotes)
    if d > max_depth:
        raise BoundedInputError(source, f"nested {d} levels deep; at most {max_depth} are allowed")


class HugeInt:
    """An integer literal with more digits than allowed, kept (``strict=False``) so that a schema
    check can name the field that holds it."""

    def __init__(self, digits: int):
        self.digits = digits

    def __repr__(self) -> str:
        return f"<integer with {self.digits} digits>"


def loads_json_bounded(text: str, max_depth: int = MAX_DEPTH, max_int_digits: int = MAX_INT_DIGITS,
                       source: str = "", strict: bool = True) -> Any:
    """``json.loads`` with bounds: depth checked first (no RecursionError); NaN/Infinity constants,
    numbers that overflow a float (``1e400``) and integers over ``max_int_digits`` digits refused.

    ``strict=False`` keeps those values instead (NaN/Infinity and ``1e400`` as float nan/inf,
    long integers as ``HugeInt``) so the caller can name the field: ``bad_numbers`` finds them."""
    check_depth(text, max_depth, source)

    def _const(name: str) -> Any:
        if not strict:
            return float(name.replace("Infinity", "inf"))
        raise BoundedInputError(source, f"'{name}' is not a JSON number; write a finite number or null")

    def _int(s: str) -> Any:
        digits = len(s.lstrip("-"))
        if digits > max_int_digits:
            if not strict:
                return HugeInt(digits)
            raise BoundedInputError(source, f"integer with {digits} digits is too large (at most {max_int_digits})")
        return int(s)

    def _float(s: str) -> float:
        v = float(s)
        if strict and not math.isfinite(v):
            raise BoundedInputError(source, f"number {s[:40]} is too large (not a finite float)")
        return v

    try:
        return json.loads(text, parse_constant=_const, parse_int=_int, parse_float=_float)
    except json.JSONDecodeError as e:
        raise BoundedInputError(source, f"not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    except (ValueError, RecursionError) as e:  # belt and braces: int digit limit, deep nesting
        raise BoundedInputError(source, f"not valid JSON: {str(e)[:200]}") from None


def bad_numbers(obj: Any, path: str = "") -> list[str]:
    """``"<path>: <problem>"`` for every non-finite float and ``HugeInt`` in a parsed JSON value
    (``path``: keys and indices joined by ``/``; iterative, so any depth is safe)."""
    out: list[str] = []
    stack: list[tuple[str, Any]] = [(path, obj)]
    while stack:
        where, v = stack.pop()
        if isinstance(v, dict):
            stack.extend((f"{where}/{k}" if where else str(k), x) for k, x in reversed(list(v.items())))
        elif isinstance(v, list):
            stack.extend((f"{where}/{i}" if where else str(i), x) for i, x in reversed(list(enumerate(v))))
        elif isinstance(v, HugeInt):
            out.append(f"{where or '(top level)'}: integer with {v.digits} digits is too large")
        elif isinstance(v, float) and not math.isfinite(v):
            word = "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
            out.append(f"{where or '(top level)'}: {word} is not a finite number")
    return out


def load_json_file(path: str | Path, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_DEPTH,
                   max_int_digits: int = MAX_INT_DIGITS, source: str | None = None, strict: bool = True) -> Any:
    """Read and parse a JSON file within bounds (``read_text_bounded`` + ``loads_json_bounded``).
    ``source`` names the file in messages (default: the path)."""
    src = source if source is not None else str(path)
    text = read_text_bounded(path, max_bytes, src)
    return loads_json_bounded(text, max_depth, max_int_digits, src, strict)


def finite_float(x: Any, what: str, source: str = "", lo: float | None = None, hi: float | None = None,
                 lo_open: bool = False) -> float:
    """``x`` as a finite float within ``[lo, hi]`` (``lo_open``: ``lo < x``); bools, strings and
    non-finite values refused with a BoundedInputError naming ``what``."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise BoundedInputError(source, f"{what} must be a number, got {type(x).__name__} {str(x)[:40]!r}")
    try:
        v = float(x)
    except OverflowError:
        raise BoundedInputError(source, f"{what} is too large ({len(str(x))} digits)") from None
    if not math.isfinite(v):
        raise BoundedInputError(source, f"{what} must be finite, got {v}")
    if lo is not None and (v <= lo if lo_open else v < lo):
        raise BoundedInputError(source, f"{what} must be {'>' if lo_open else '>='} {lo:g}, got {v:g}")
    if hi is not None and v > hi:
        raise BoundedInputError(source, f"{what} must be <= {hi:g}, got {v:g}")
    return v


def load_toml_file(path: str | Path, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_DEPTH,
                   source: str | None = None) -> dict:
    """Read and parse a TOML file within bounds: size, UTF-8, no NUL, brackets nested at most
    ``max_depth`` deep (tomllib recurses: 500 nested arrays raise RecursionError), integers within
    Python's digit limit. ``source`` names the file in messages (default: the path)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    src = source if source is not None else str(path)
    text = read_text_bounded(path, max_bytes, src)
    check_depth(text, max_depth, src, quotes="\"'")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise BoundedInputError(src, f"not valid TOML ({e})") from None
    except (ValueError, RecursionError) as e:  # a number past the digit limit; nesting the scan missed
        raise BoundedInputError(src, f"not valid TOML: {str(e)[:200]}") from None
