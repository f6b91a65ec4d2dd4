"""What every dataset importer shares: the dataset's card, the raw-layout writer and the report.

An importer (one module per dataset in this package) turns a dataset as downloaded into dcat's raw
layout (``schemas/raw-layout.md``): one recording folder per trial or clip with ``meta.json``, its
media, the IMU as a CSV with a ``t`` column in seconds and SI units, and labels. Media are never
re-encoded: a file is hard-linked into the recording folder (``media="link"``, the default; no
bytes copied, the path-escape guard of the raw layout stays as it is) or copied (``media="copy"``).
A hard link needs the output on the same file system as the dataset; otherwise the import stops
with a message that says so and suggests ``--copy``.

What cannot be imported (a missing file, a trial without one modality, an unreadable file) is
reported per recording in ``ImportReport.skipped`` and never raises. The dataset's own protocols
(cross-subject lists, official train/val/test) are written to ``<out>/splits.json``
(``write_splits``), which ``dcat preprocess`` carries into the shards folder for ``--split official``.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from pipelines.core.errors import DcatError
from pipelines.core.io import atomic_path, atomic_write_text, to_json

G = 9.80665  # standard gravity, m/s^2 per g
DEG = np.pi / 180.0  # rad per degree
SPLITS_NAME = "splits.json"
MEDIA_MODES = ("link", "copy")


class DatasetImportError(DcatError):
    """A dataset that cannot be imported at all (wrong folder, nothing found, a link across file systems)."""


@dataclass
class DatasetInfo:
    """The card ``dcat import --list`` shows, and the importer's entry point."""

    name: str
    title: str
    modalities: str
    subjects: str
    classes: str
    url: str
    protocols: tuple[str, ...]
    prepare: Callable[..., "ImportReport"]
    notes: str = ""


@dataclass
class ImportReport:
    """What an import wrote (recording ids), what it skipped and why, and the protocols it wrote."""

    dataset: str
    out: str
    written: list[str] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    protocols: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def skip(self, recording: str, file: str | None, problem: str) -> None:
        self.skipped.append({"recording": recording, "file": file, "problem": problem})

    def as_dict(self) -> dict:
        return {"dataset": self.dataset, "out": self.out, "written": len(self.written),
                "recordings": self.written, "skipped": self.skipped, "protocols": self.protocols,
                "notes": self.notes}


def place_media(src: Path, dst: Path, media: str) -> None:
    """Put ``src`` at ``dst`` without re-encoding: a hard link (``link``) or a copy (``copy``)."""
    if media not in MEDIA_MODES:
        raise DatasetImportError(f"media mode {media!r}: choose one of {', '.join(MEDIA_MODES)}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        if dst.samefile(src) or (media == "copy" and dst.stat().st_size == src.stat().st_size):
            return
        dst.unlink()
    if media == "copy":
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
        return
    try:
        os.link(src, dst)
    except OSError as e:
        raise DatasetImportError(f"{src}: cannot hard-link into {dst.parent} ({e.strerror}): the output must be on "
                           "the same file system as the dataset for --link; use --copy, or --out on the "
                           "dataset's file system") from None


class RecordingWriter:
    """One recording folder of the raw layout, written by ``save`` (meta.json last, so a folder
    without meta.json is an unfinished one that ``dcat preprocess`` does not pick up)."""

    def __init__(self, out: Path, rid: str, subject: str, media: str, session: str | None = None):
        self.dir = Path(out) / rid
        self.id = rid
        self.media = media
        self.meta: dict = {"subject": str(subject), "streams": {}}
        if session is not None:
            self.meta["session"] = str(session)
        self._labels: list[tuple[float, float, str]] | None = None
        self.dir.mkdir(parents=True, exist_ok=True)

    def add_media(self, name: str, kind: str, src: Path, filename: str | None = None, **fields) -> None:
        """A video or audio stream read from ``src`` (linked or copied as ``filename``)."""
        filename = filename or Path(src).name
        place_media(Path(src), self.dir / filename, self.media)
        self.meta["streams"][name] = {"kind": kind, "file": filename, **fields}

    def add_imu(self, name: str, t: np.ndarray, data: np.ndarray, channels: list[str], units: dict[str, str],
                source_units: dict[str, str] | None = None, filename: str | None = None, **fields) -> None:
        """An IMU stream: ``t`` in seconds, ``data`` [N, C] already in SI units (``units`` per channel,
        e.g. ``m/s^2``, ``rad/s``); ``source_units`` records what the dataset stored."""
        filename = filename or f"{name}.csv"
        t = np.asarray(t, dtype=np.float64)
        data = np.asarray(data, dtype=np.float64).reshape(len(t), -1)
        if data.shape[1] != len(channels):
            raise ValueError(f"{self.id}: {len(channels)} channel names for {data.shape[1]} columns")
        buf = io.StringIO()  # the whole table formatted at once (hours of samples), empty cells non-finite
        np.savetxt(buf, np.c_[t, data], fmt=["%.6f"] + ["%.7g"] * data.shape[1], delimiter=",", newline="\r\n",
                   header=",".join(["t", *channels]), comments="")
        text = re.sub(r"(?<=,)(?:-?inf|nan)(?=,|\r)", "", buf.getvalue())
        with atomic_path(self.dir / filename) as tmp, open(tmp, "w", newline="") as f:
            f.write(text)
        entry = {"kind": "imu", "file": filename, "units": dict(units), **fields}
        if source_units:
            entry["source_units"] = dict(source_units)
        self.meta["streams"][name] = entry

    def set_label(self, label: str) -> None:
        """One label for the whole recording (a trimmed clip)."""
        self.meta["label"] = str(label)

    def set_segments(self, segments: Iterable[tuple[float, float, str]]) -> None:
        """Labelled segments ``(start_s, end_s, label)`` on the recording clock (not overlapping)."""
        self._labels = sorted((float(a), float(b), str(c)) for a, b, c in segments)

    def save(self, **extra) -> str:
        """Write labels.csv (if segments were set) and meta.json; returns the recording id."""
        if self._labels is not None:
            buf = io.StringIO()  # the csv module quotes a label holding a comma or a quote
            w = csv.writer(buf, lineterminator="\n")
            w.writerow(["start", "end", "label"])
            w.writerows((f"{a:.3f}", f"{b:.3f}", c) for a, b, c in self._labels)
            atomic_write_text(self.dir / "labels.csv", buf.getvalue())
        atomic_write_text(self.dir / "meta.json", to_json({**self.meta, **extra}, indent=1))
        return self.id


def write_splits(out: Path, protocols: dict[str, dict[str, list[str]]], source: str) -> list[str]:
    """Write ``<out>/splits.json``: ``{"source": ..., "protocols": {name: {"train": [ids], "val": [...],
    "test": [...]}}}``; the first protocol is the default of ``--split official``."""
    for name, parts in protocols.items():
        unknown = set(parts) - {"train", "val", "test"}
        if unknown or "train" not in parts or "test" not in parts:
            raise ValueError(f"protocol {name}: parts {sorted(parts)}; need train and test (val optional)")
    doc = {"source": source, "default": next(iter(protocols), None),
           "protocols": {k: {p: sorted(v) for p, v in parts.items()} for k, parts in protocols.items()}}
    atomic_write_text(Path(out) / SPLITS_NAME, to_json(doc, indent=1))
    return list(protocols)
