"""Small I/O helpers every layer uses: atomic writes, strict JSON and comma-list parsing.

Atomic writes: a file dcat writes is either complete or absent. The bytes go to a temporary file
beside the target (``.<name>.<random>.tmp[<suffix>]``, so two writers never share one and a crash
leaves only an obvious leftover), which is renamed over the target when complete and removed on
failure.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block ends without
    an exception, remove it otherwise. ``suffix`` ends the temporary name (``".png"`` for writers
    that pick the format from the extension)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + suffix)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the file gets what open() would give it
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see the module docstring), flushed to disk."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def parse_list(x, conv: Callable = str) -> list:
    """A comma-separated string (``"video, audio"``), a list or None -> a list of ``conv`` values,
    blanks dropped. ``conv`` raising ValueError propagates (the caller names the option)."""
    if x is None:
        return []
    items = x.split(",") if isinstance(x, str) else x
    return [conv(s) if conv is not str else s for s in (str(v).strip() for v in items) if s]


def jsonable(obj):
    """``obj`` with every value JSON can hold strictly: non-finite floats (NaN, +-inf) become None,
    numpy scalars and arrays plain numbers and lists, paths and other objects their ``str``."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "tolist"):  # numpy scalar or array (numpy is not imported here)
        return jsonable(obj.tolist())
    return str(obj)


def to_json(obj, **kw) -> str:
    """Strict JSON text of ``obj`` (``jsonable`` first, then ``allow_nan=False``): every JSON dcat
    writes parses with a strict parser. ``kw`` go to ``json.dumps`` (``indent``)."""
    return json.dumps(jsonable(obj), allow_nan=False, **kw)


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks (hex digest)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
