"""`dcat import`: public datasets, as downloaded, into dcat's raw layout.

One module per dataset, each with ``INFO`` (a ``base.DatasetInfo``: the card ``dcat import --list``
shows, and ``prepare(src, out, subjects=None, media="link") -> ImportReport``). ``REGISTRY`` lists
them in the order of ``--list``; ``run_import`` is what the command calls.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from pipelines.ingest.importers.base import MEDIA_MODES, DatasetImportError, DatasetInfo, ImportReport

# module names under pipelines.ingest.importers, in the order `dcat import --list` shows them
MODULES = ("uestc_mmea_cl", "utd_mhad", "mmact", "wear", "epic_kitchens", "table")


def registry() -> dict[str, DatasetInfo]:
    """Every importer present, by its name (``dcat import NAME``)."""
    out: dict[str, DatasetInfo] = {}
    for mod in MODULES:
        try:
            info = importlib.import_module(f"pipelines.ingest.importers.{mod}").INFO
        except ModuleNotFoundError as e:
            if e.name == f"pipelines.ingest.importers.{mod}":
                continue  # not written yet
            raise
        out[info.name] = info
    return out


def run_import(name: str, src: Path, out: Path, subjects: list[str] | None = None, media: str = "link",
               **options) -> ImportReport:
    """Import dataset ``name`` from ``src`` into ``out``."""
    reg = registry()
    if name not in reg:
        raise DatasetImportError(f"unknown dataset {name!r}: choose one of {', '.join(reg)} (dcat import --list)")
    if media not in MEDIA_MODES:
        raise DatasetImportError(f"media mode {media!r}: choose one of {', '.join(MEDIA_MODES)}")
    src = Path(src)
    if not src.is_dir():
        raise DatasetImportError(f"{src}: not a folder (give the dataset's folder as downloaded)")
    Path(out).mkdir(parents=True, exist_ok=True)
    return reg[name].prepare(src, Path(out), subjects=subjects, media=media, **options)


__all__ = ["MODULES", "DatasetImportError", "DatasetInfo", "ImportReport", "registry", "run_import"]
