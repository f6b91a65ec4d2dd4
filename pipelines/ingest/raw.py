"""The raw layout (schemas/raw-layout.md): find recordings, load and check meta.json and labels.

Everything here is cheap (no media decoding) and raises RecordingError naming recording and file.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import math
import re
import sys
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from pipelines.core.bounded import BoundedInputError, read_text_bounded
from pipelines.core.errors import DcatError, RecordingError

META_NAME = "meta.json"
MAX_ID_CHARS = 100  # a recording id (shard name) is at most this long, plus a hash when derived
MAX_LABELS_BYTES = 64 << 20  # labels.csv larger than this is not a labels file
MAX_LABEL_CHARS = 200
MAX_DISTINCT_LABELS = 1000  # distinct labels in one labels file (window labelling is windows x labels)
MAX_RECORDING_S = 24 * 3600.0  # the longest recording dcat accepts (a stream's time span, all streams' span)
MIN_IMU_SPAN_S = 1.0  # an IMU stream shorter than this holds no useful window (and no activity envelope)
MAX_ABS_VALUE = 1e15  # IMU values beyond this (or inf) are treated as NaN: no sensor reads them
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
    folder: str = ""  # the folder's name as on disk (``id`` is derived from it: ``recording_id``)


def recording_id(folder_name: str) -> str:
    """The recording id (shard name) of a recording folder: the name itself when it is safe
    (``[A-Za-z0-9._-]``, at most ``MAX_ID_CHARS`` characters, not starting with ``.``); otherwise the
    name with accents folded to ASCII (NFKD), every other character replaced by ``_``, cut to
    ``MAX_ID_CHARS - 9`` characters, plus ``-`` and 8 hex digits of the SHA-256 of the name (NFC,
    UTF-8; macOS writes NFD), so two folders that fold alike (``rec ü 1``, ``rec u 1``) keep apart.
    Deterministic and idempotent (an id is a safe name)."""
    if _ID_RE.match(folder_name) and len(folder_name) <= MAX_ID_CHARS and not folder_name.startswith("."):
        return folder_name
    folded = unicodedata.normalize("NFKD", folder_name).encode("ascii", "ignore").decode("ascii")
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", folded).lstrip(".")[:MAX_ID_CHARS - 9] or "rec"
    nfc = unicodedata.normalize("NFC", folder_name)  # one id for a name however a file system composes it
    digest = hashlib.sha256(nfc.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"{safe}-{digest}"


def _inside(rid: str, root: Path, rec_dir: Path, rel: str, what: str, must_exist: bool = True) -> Path | None:
    """``rec_dir / rel`` resolved (None when missing and not ``must_exist``); RecordingError when it
    leaves the recording folder or the file system refuses the name (too long, a loop of links)."""
    try:
        p = (rec_dir / rel).resolve()
        inside = p.is_relative_to(root)
        exists = inside and p.is_file()
    except (OSError, RuntimeError, ValueError) as e:  # a name too long, a loop of links
        if isinstance(e, OSError) and e.errno == errno.ENAMETOOLONG:
            raise RecordingError(rid, META_NAME, f"{what} {rel[:60]!r}...: the file system refuses the name "
                                 f"({e.strerror})") from None
        raise RecordingError(rid, rel, f"{what}: the file system refuses the name ({str(e)[:200]})") from None
    if not inside:
        raise RecordingError(rid, rel, f"{what} resolves outside the recording folder ({p})",
                             "stream files must live inside the recording folder")
    if not exists:
        if not must_exist:
            return None
        raise RecordingError(rid, rel, f"{what} is missing")
    return p


def load_recording(rec_dir: Path, need_labels: bool = True) -> Recording:
    """Load ``rec_dir/meta.json`` (``pipelines.ingest.meta.load_meta``: bounded, checked against the
    schema), resolve stream files safely.

    ``need_labels=False`` (deployment: predicting on unlabelled recordings) allows a recording with
    neither a labels file nor a ``label``.
    """
    from pipelines.ingest.meta import load_meta

    rec_dir = Path(rec_dir)
    rid = recording_id(rec_dir.name)
    meta = load_meta(rec_dir, rid)
    root = rec_dir.resolve()
    streams: dict[str, StreamSpec] = {}
    for name, s in meta["streams"].items():
        rel = s["file"]
        p = _inside(rid, root, rec_dir, rel, f"stream '{name}' file")
        off = float(s.get("clock_offset_s", 0.0))
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
        if _inside(rid, root, rec_dir, labels_file, "labels file", must_exist=False) is None:
            if not need_labels:
                labels_file = None
            else:
                raise RecordingError(rid, labels_file, "missing, and meta.json has no whole-recording 'label'",
                                     "add labels.csv (start,end,label) or a 'label' field")
    return Recording(id=rid, dir=rec_dir, subject=str(meta["subject"]), session=str(meta.get("session") or ""),
                     meta=meta, streams=streams, label=label, labels_file=labels_file, folder=rec_dir.name)


def read_segments(rec: Recording) -> list[Segment]:
    """Read the labels CSV (start,end,label; seconds on the recording clock); check order and overlap."""
    if rec.label is not None or rec.labels_file is None:
        return []
    name = rec.labels_file
    path = rec.dir / name
    try:
        text = read_text_bounded(path, MAX_LABELS_BYTES, name)
    except BoundedInputError as e:
        raise RecordingError(rec.id, name, e.problem) from None
    segs: list[Segment] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise RecordingError(rec.id, name, "empty file", "expected a header start,end,label") from None
    except csv.Error as e:
        raise RecordingError(rec.id, name, f"line 1: not CSV: {e}") from None
    header = [h.strip().lower() for h in header]
    if header != ["start", "end", "label"]:
        raise RecordingError(rec.id, name, f"header is {str(header)[:120]}, expected start,end,label")
    try:
        for row in reader:
            seg = _segment(rec.id, name, reader.line_num, row)
            if seg is not None:
                segs.append(seg)
    except csv.Error as e:
        raise RecordingError(rec.id, name, f"line {reader.line_num}: not CSV: {e}") from None
    if not segs:
        raise RecordingError(rec.id, name, "no label segments")
    n_labels = len({x.label for x in segs})
    if n_labels > MAX_DISTINCT_LABELS:
        raise RecordingError(rec.id, name, f"{n_labels} distinct labels; at most {MAX_DISTINCT_LABELS} are allowed",
                             "is the label column right?")
    segs.sort(key=lambda s: s.start_s)
    for x, y in zip(segs, segs[1:]):
        if y.start_s < x.end_s - 1e-6:
            raise RecordingError(rec.id, name, f"segments overlap: [{x.start_s}, {x.end_s}) {x.label} and "
                                 f"[{y.start_s}, {y.end_s}) {y.label}")
    return segs


def _segment(rid: str, name: str, lineno: int, row: list[str]) -> Segment | None:
    """One labels row (exactly start,end,label) as a Segment; None for a blank line."""
    if not row or all(not c.strip() for c in row):
        return None
    if len(row) != 3:
        raise RecordingError(rid, name, f"line {lineno}: expected 3 fields (start,end,label), got {len(row)}",
                             "quote a label that holds a comma")
    try:
        a, b = float(row[0]), float(row[1])
    except ValueError:
        raise RecordingError(rid, name, f"line {lineno}: start/end are not numbers: {str(row[:2])[:120]}") from None
    lab = row[2].strip()
    if not (math.isfinite(a) and math.isfinite(b)) or not a < b:
        raise RecordingError(rid, name, f"line {lineno}: needs finite start < end, got {a}, {b}")
    if not lab:
        raise RecordingError(rid, name, f"line {lineno}: empty label")
    if len(lab) > MAX_LABEL_CHARS or any(ord(c) < 32 for c in lab):
        raise RecordingError(rid, name, f"line {lineno}: a label is at most {MAX_LABEL_CHARS} characters "
                             "without control characters")
    return Segment(a, b, lab)


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
        if "\x00" in str(inp):
            raise DcatError(f"{str(inp)[:200]!r}: a path cannot hold a NUL byte")
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
        rid = recording_id(p.name)
        if rid in by_id and by_id[rid].resolve() != p.resolve():
            raise DcatError(f"recording id '{rid}' appears twice: {by_id[rid]} and {p}")
        by_id[rid] = p
    return [by_id[k] for k in sorted(by_id)]


def select_shard(recs: list[Path], shard_index: int, num_shards: int) -> list[Path]:
    """Deterministic split for job arrays: recording k (in id order) goes to task k mod num_shards."""
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise DcatError(f"--shard-index must be in [0, --num-shards), got {shard_index} of {num_shards}")
    ordered = sorted(recs, key=lambda p: recording_id(p.name))
    return [p for k, p in enumerate(ordered) if k % num_shards == shard_index]
