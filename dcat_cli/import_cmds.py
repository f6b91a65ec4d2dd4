"""`dcat import`: a public dataset, as downloaded, into dcat's raw layout (``pipelines.ingest.importers``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from rich.markup import escape

from dcat_cli.common import err_console, fail, out_console, run_guarded
from pipelines.core.io import parse_list, to_json


def _list(as_json: bool) -> None:
    from pipelines.ingest.importers import registry

    cards = [{"name": i.name, "title": i.title, "modalities": i.modalities, "subjects": i.subjects,
              "classes": i.classes, "protocols": list(i.protocols), "url": i.url, "notes": i.notes}
             for i in registry().values()]
    if as_json:
        out_console.print_json(to_json(cards))
        return
    for c in cards:
        out_console.print(f"[bold]{escape(c['name'])}[/bold]  {escape(c['title'])}", highlight=False)
        for key in ("modalities", "subjects", "classes", "protocols", "url"):
            val = ", ".join(c[key]) if isinstance(c[key], list) else c[key]
            out_console.print(f"  {'download' if key == 'url' else key}: {escape(val or '-')}", highlight=False)


def import_cmd(
    dataset: Annotated[Optional[str], typer.Argument(help="Dataset name (`dcat import --list`).")] = None,
    src: Annotated[Optional[Path], typer.Argument(help="The dataset's folder, as downloaded and unpacked.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Raw folder to write (one recording folder per trial or clip).")] = Path("raw"),
    subjects: Annotated[Optional[str], typer.Option("--subjects", help="Only these subjects (comma-separated, as the dataset names them).")] = None,
    copy: Annotated[bool, typer.Option("--copy/--link", help="Copy the media files instead of hard-linking them (default --link: no bytes copied; needs --out on the dataset's file system).")] = False,
    mapping: Annotated[Optional[Path], typer.Option("--mapping", help="`table` only: the TOML that maps your columns (see the README).")] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the datasets dcat imports, with modalities, subjects, classes, protocols and where to download them.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the import report (or --list) as JSON on stdout.")] = False,
) -> None:
    """Turn a dataset as downloaded into dcat's raw layout; media are hard-linked, never re-encoded.

    Examples: `dcat import --list`; `dcat import utd-mhad ~/data/UTD-MHAD --out raw/`; then
    `dcat preprocess raw/ --out shards/` and `dcat pretrain --modality imu --split official`.
    """

    def body():
        if list_:
            _list(as_json)
            return
        if not dataset or src is None:
            fail("give DATASET and SRC_DIR (or --list)")
        from pipelines.ingest.importers import run_import

        opts = {"mapping": mapping} if mapping is not None else {}
        rep = run_import(dataset, src, out, subjects=parse_list(subjects) if subjects else None,
                         media="copy" if copy else "link", **opts)
        for s in rep.skipped:
            err_console.print(f"skipped {s['recording']}: {s['file'] or '-'}: {s['problem']}",
                              highlight=False, markup=False)
        if as_json:
            out_console.print_json(to_json(rep.as_dict()))
        else:
            out_console.print(f"{dataset}: {len(rep.written)} recordings written to {out}, {len(rep.skipped)} skipped; "
                              f"protocols: {', '.join(rep.protocols) or 'none'}", highlight=False, markup=False)
        if not rep.written:
            fail(f"{dataset}: nothing imported from {src}")

    run_guarded(body)
