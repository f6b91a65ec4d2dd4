"""The raw layout (schemas/raw-layout.md): find recordings, load and check meta.json and labels.

Everything here is cheap (no media decoding) and raises RecordingError naming recording and file.
"""

from __future__ import annotations

import csv
import json
import math
import re
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from pipelines.core.errors import DcatError, RecordingError

META_NAME = "meta.json"
CONTAINER_AUDIO_SUFFIXES = {".mp4", ".m4a", ".mov", ".mkv", ".webm", ".avi", ".aac", ".mp3"}
LABEL_TOL_S = 0.5
_ID_RE = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass
class StreamSpec:
    name: str
    kind: str
    path: Path  # resolved, inside the recording folder
    file: str  # as written in meta.json
    clock_offset_s: float = 0.0
    declared_rate_hz: float | None = None
    channels: list[str] | None = None
    units: dict[str, str] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)  # imu: channel -> acc / gyr / mag / other
    clock: str = ""  # streams with one clock are never shifted against each other (default: one per file)
    clock_declared: bool = False  # "clock" given in meta.json (else the file's own clock)


@dataclass
class Segment:
    start_s: float
    end_s: float
    label: str


@dataclass
class Recording:
    id: str
    dir: Path
    subject: str
    session: str
    meta: dict
    streams: dict[str, StreamSpec]
    label: str | None  # whole-recording label
    labels_file: str | None  # relative name of the labels CSV when used


@lru_cache(maxsize=1)
def meta_schema() -> dict:
    from importlib import resources

    return json.loads(resources.files("schemas").joinpath("meta.schema.json").read_text())


def _schema_problems(meta: dict) -> list[str]:
    import jsonschema

    v = jsonschema.Draft202012Validator(meta_schema())
    out = []
    for err in sorted(v.iter_errors(meta), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        out.append(f"{where}: {err.message}")
    return out


def load_recording(rec_dir: Path, need_labels: bool = True) -> Recording:
    """Load ``rec_dir/meta.json``, check it against the schema, resolve stream files safely.

    ``need_labels=False`` (deployment: predicting on unlabelled recordings) allows a recording with
    neither a labels file nor a ``label``.
    """
    rec_dir = Path(rec_dir)
    rid = rec_dir.name
    if not _ID_RE.match(rid):
        raise RecordingError(rid, None, "recording folder name has characters outside [A-Za-z0-9._-]",
                             "rename the folder")
    mpath = rec_dir / META_NAME
    if not mpath.is_file():
        raise RecordingError(rid, META_NAME, "missing", "every recording folder needs a meta.json")
    try:
        meta = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RecordingError(rid, META_NAME, f"not valid JSON: {e}") from e
    if not isinstance(meta, dict):
        raise RecordingError(rid, META_NAME, "must be a JSON object")
    problems = _schema_problems(meta)
    if problems:
        raise RecordingError(rid, META_NAME, "does not match schemas/meta.schema.json: " + "; ".join(problems))
    root = rec_dir.resolve()
    streams: dict[str, StreamSpec] = {}
    for name, s in meta["streams"].items():
        rel = s["file"]
        p = (rec_dir / rel).resolve()
        if not p.is_relative_to(root):
            raise RecordingError(rid, rel, f"stream '{name}' file resolves outside the recording folder ({p})",
                                 "stream files must live inside the recording folder")
        if not p.is_file():
            raise RecordingError(rid, rel, f"stream '{name}' file is missing")
        off = float(s.get("clock_offset_s", 0.0))
        if not math.isfinite(off):
            raise RecordingError(rid, META_NAME, f"stream '{name}' clock_offset_s is not finite")
        streams[name] = StreamSpec(
            name=name, kind=s["kind"], path=p, file=rel, clock_offset_s=off,
            declared_rate_hz=float(s["rate_hz"]) if s.get("rate_hz") is not None else None,
            channels=list(s["channels"]) if s.get("channels") else None,
            units=dict(s.get("units") or {}), roles=dict(s.get("roles") or {}),
            clock=str(s["clock"]) if s.get("clock") else f"file:{p.relative_to(root)}", clock_declared=bool(s.get("clock")),
        )
    label = meta.get("label")
    labels_file = None
    if not label:
        labels_file = meta.get("labels_file", "labels.csv")
        lp = (rec_dir / labels_file).resolve()
        if not lp.is_relative_to(root):
            raise RecordingError(rid, labels_file, "labels file resolves outside the recording folder")
        if not lp.is_file():
            if not need_labels:
                labels_file = None
            else:
                raise RecordingError(rid, labels_file, "missing, and meta.json has no whole-recording 'label'",
                                     "add labels.csv (start,end,label) or a 'label' field")
    return Recording(id=rid, dir=rec_dir, subject=str(meta["subject"]), session=str(meta.get("session") or ""),
                     meta=meta, streams=streams, label=label, labels_file=labels_file)


def read_segments(rec: Recording) -> list[Segment]:
    """Read the labels CSV (start,end,label; seconds on the recording clock); check order and overlap."""
    if rec.label is not None or rec.labels_file is None:
        return []
    name = rec.labels_file
    path = rec.dir / name
    segs: list[Segment] = []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise RecordingError(rec.id, name, "empty file", "expected a header start,end,label") from None
        header = [h.strip().lower() for h in header]
        if header[:3] != ["start", "end", "label"]:
            raise RecordingError(rec.id, name, f"header is {header}, expected start,end,label")
        for lineno, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) < 3:
                raise RecordingError(rec.id, name, f"line {lineno}: expected 3 fields, got {len(row)}")
            try:
                a, b = float(row[0]), float(row[1])
            except ValueError:
                raise RecordingError(rec.id, name, f"line {lineno}: start/end are not numbers: {row[:2]}") from None
            lab = row[2].strip()
            if not (math.isfinite(a) and math.isfinite(b)) or not a < b:
                raise RecordingError(rec.id, name, f"line {lineno}: needs finite start < end, got {a}, {b}")
            if not lab:
                raise RecordingError(rec.id, name, f"line {lineno}: empty label")
            segs.append(Segment(a, b, lab))
    if not segs:
        raise RecordingError(rec.id, name, "no label segments")
    segs.sort(key=lambda s: s.start_s)
    for x, y in zip(segs, segs[1:]):
        if y.start_s < x.end_s - 1e-6:
            raise RecordingError(rec.id, name, f"segments overlap: [{x.start_s}, {x.end_s}) {x.label} and "
                                 f"[{y.start_s}, {y.end_s}) {y.label}")
    return segs


def check_segments_inside(rec: Recording, segs: list[Segment], rec_end_s: float) -> None:
    """Labels must lie inside the recording: 0 <= start, end <= the recording's end (+ tolerance)."""
    for s in segs:
        if s.start_s < -LABEL_TOL_S or s.end_s > rec_end_s + LABEL_TOL_S:
            raise RecordingError(
                rec.id, rec.labels_file,
                f"segment [{s.start_s:g}, {s.end_s:g}) '{s.label}' lies outside the recording "
                f"(streams cover 0 to {rec_end_s:.3f} s on the recording clock)",
                "labels are seconds on the recording clock; check units and clock offsets")


def _is_recording(p: Path) -> bool:
    return (p / META_NAME).is_file()


def discover(inputs: Iterable[str | Path], stdin=None) -> list[Path]:
    """Turn CLI inputs into recording folders.

    Each input is a recording folder (has meta.json), a raw folder (its sub-folders with meta.json are
    recordings), or ``-`` (read one path per line from stdin). The result is sorted by recording id;
    the same id twice is an error.
    """
    found: list[Path] = []
    for inp in inputs:
        if str(inp) == "-":
            stream = stdin if stdin is not None else sys.stdin
            lines = [ln.strip() for ln in stream.read().splitlines() if ln.strip()]
            found.extend(discover(lines))
            continue
        p = Path(inp)
        if p.name == META_NAME and p.is_file():
            p = p.parent
        if not p.exists():
            raise DcatError(f"{p}: no such file or directory")
        if _is_recording(p):
            found.append(p)
        elif p.is_dir():
            subs = sorted(q for q in p.iterdir() if q.is_dir() and _is_recording(q))
            if not subs:
                raise DcatError(f"{p}: holds no recordings (no sub-folder with a meta.json, and no meta.json here)")
            found.extend(subs)
        else:
            raise DcatError(f"{p}: not a recording folder or raw folder")
    by_id: dict[str, Path] = {}
    for p in found:
        if p.name in by_id and by_id[p.name].resolve() != p.resolve():
            raise DcatError(f"recording id '{p.name}' appears twice: {by_id[p.name]} and {p}")
        by_id[p.name] = p
    return [by_id[k] for k in sorted(by_id)]


def select_shard(recs: list[Path], shard_index: int, num_shards: int) -> list[Path]:
    """Deterministic split for job arrays: recording k (in id order) goes to task k mod num_shards."""
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise DcatError(f"--shard-index must be in [0, --num-shards), got {shard_index} of {num_shards}")
    ordered = sorted(recs, key=lambda p: p.name)
    return [p for k, p in enumerate(ordered) if k % num_shards == shard_index]
