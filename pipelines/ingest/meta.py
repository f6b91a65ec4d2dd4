"""meta.json: read within bounds and checked against ``schemas/meta.schema.json``, the one contract.

``load_meta`` is the only way dcat reads a recording's meta.json (``pipelines.ingest.raw.load_recording``,
used by `dcat preprocess`, `dcat validate` and `dcat predict` alike), so every command gives the same
message for the same file: ``<recording>: meta.json: <field path>: <problem>``.

Order: size (``MAX_META_BYTES``) and nesting depth (``MAX_META_DEPTH``) are checked on the text before
parsing; NaN, Infinity, numbers that overflow a float and integers over 30 digits are found after
parsing and named by their field; then the schema (types, ranges, string lengths, unique channels,
no control characters in names).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from pipelines.core.bounded import BoundedInputError, bad_numbers, load_json_file
from pipelines.core.errors import RecordingError

META_NAME = "meta.json"
MAX_META_BYTES = 1 << 20  # 1 MiB
MAX_META_DEPTH = 32
MAX_PROBLEMS = 5  # problems listed in one message


@lru_cache(maxsize=1)
def meta_schema() -> dict:
    from importlib import resources

    return json.loads(resources.files("schemas").joinpath("meta.schema.json").read_text())


def _short(value, n: int = 60) -> str:
    """A value for a message: repr (control characters escaped), cut to ``n`` characters."""
    r = repr(value)
    return r if len(r) <= n else r[: n - 3] + "..."


def _describe(err) -> str:
    """One jsonschema error as ``<path>: <problem>``, without echoing huge values."""
    where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
    v, kind = err.validator_value, err.validator
    if kind == "maxLength":
        msg = f"longer than {v} characters"
    elif kind == "pattern" and isinstance(err.instance, str):
        ctl = any(ord(c) < 32 for c in err.instance)
        msg = (f"{_short(err.instance)} holds a control character (NUL, newline, ...)" if ctl
               else f"{_short(err.instance)} does not match {v}")
    elif kind in ("maxItems", "maxProperties"):
        msg = f"more than {v} entries"
    elif kind == "uniqueItems":
        seen, dup = set(), []
        for x in err.instance:
            if x in seen:
                dup.append(x)
            seen.add(x)
        msg = f"has duplicate entries {_short(dup)}: names must be unique"
    elif kind == "type":
        msg = f"{_short(err.instance)} is not of type {v if isinstance(v, str) else ' or '.join(v)}"
    else:
        msg = err.message if len(err.message) <= 200 else err.message[:197] + "..."
    return f"{where}: {msg}"


def meta_problems(meta) -> list[str]:
    """Every way ``meta`` (parsed with ``strict=False``) breaks the contract, one line each, in
    document order; empty when valid."""
    import jsonschema

    out = bad_numbers(meta)
    if out:
        return out  # the schema's own messages on nan / HugeInt would be confusing
    v = jsonschema.Draft202012Validator(meta_schema())
    errs = sorted(v.iter_errors(meta), key=lambda e: [str(p) for p in e.absolute_path])
    return [_describe(e) for e in errs]


def load_meta(rec_dir: Path, rid: str) -> dict:
    """Read and check ``rec_dir/meta.json``; RecordingError ``<rid>: meta.json: <problems>``."""
    path = Path(rec_dir) / META_NAME
    if not path.is_file():
        raise RecordingError(rid, META_NAME, "missing", "every recording folder needs a meta.json")
    try:
        meta = load_json_file(path, MAX_META_BYTES, MAX_META_DEPTH, source=META_NAME, strict=False)
    except BoundedInputError as e:
        raise RecordingError(rid, META_NAME, e.problem) from None
    if not isinstance(meta, dict):
        raise RecordingError(rid, META_NAME, "must be a JSON object")
    problems = meta_problems(meta)
    if problems:
        more = f"; and {len(problems) - MAX_PROBLEMS} more" if len(problems) > MAX_PROBLEMS else ""
        raise RecordingError(rid, META_NAME, "does not match schemas/meta.schema.json: "
                             + "; ".join(problems[:MAX_PROBLEMS]) + more)
    return meta
