"""What the study benchmarks (``selection.py``, ``mcma_cost.py``, ``classical.py``) share: the work
folder, the bundled sample data preprocessed into shards, and strict JSON output.

Not a benchmark itself; the scripts import it as ``common`` (``python benchmarks/<script>.py`` puts
this folder on the path).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DATA = ROOT / "sample_data"


def add_common_args(ap: argparse.ArgumentParser) -> None:
    """``--data``, ``--work`` and ``--json``, the same in every study benchmark."""
    ap.add_argument("--data", help="shards directory (default: `dcat preprocess sample_data` into WORK/shards)")
    ap.add_argument("--work", help="folder for the shards, runs and results (default: a new temporary folder)")
    ap.add_argument("--json", action="store_true",
                    help="print the figures as JSON on stdout (the table goes to stderr)")


def work_dir(arg: str | None, prefix: str) -> Path:
    """``--work``, created when missing, or a new temporary folder."""
    if arg:
        p = Path(arg)
        p.mkdir(parents=True, exist_ok=True)
        return p
    return Path(tempfile.mkdtemp(prefix=prefix))


def shards(data: str | None, work: Path, log) -> Path:
    """``--data``, or the bundled sample data preprocessed with default settings into ``work/shards``
    (what ``dcat preprocess sample_data --out WORK/shards`` makes; reused when already there)."""
    if data:
        return Path(data)
    out = work / "shards"
    if (out / "manifest.json").is_file():
        return out
    from pipelines.ingest.config import PreprocessConfig
    from pipelines.ingest.preprocess import preprocess
    from pipelines.ingest.raw import discover

    t0 = time.perf_counter()
    res = preprocess(discover([SAMPLE_DATA]), out, PreprocessConfig(), workers=1)
    if res["summary"].get("failed"):
        raise SystemExit(f"preprocessing {SAMPLE_DATA} failed: {res['summary']}")
    log(f"preprocessed {SAMPLE_DATA} into {out} ({time.perf_counter() - t0:.0f} s)")
    return out


def log(msg: str) -> None:
    """A progress or table line on stderr (stdout holds the figures)."""
    print(msg, file=sys.stderr, flush=True)


def emit(res: dict, text: str, as_json: bool) -> None:
    """The figures: ``text`` (a table) on stdout, or with ``--json`` the JSON of ``res`` on stdout and
    ``text`` on stderr."""
    if as_json:
        log(text)
        print(dumps(res))
    else:
        print(text)


def dumps(obj) -> str:
    """Strict JSON (``pipelines.core.io.to_json``), indented."""
    from pipelines.core.io import to_json

    return to_json(obj, indent=1)
