"""Generic table importer (``dcat import table SRC --mapping map.toml``): the common lab form.

One delimited text (or Parquet) file per subject or per session with a time column, sensor columns
and a label column, or per-recording files with a separate label table, mapped by a small TOML
(``table_mapping.py`` reads and checks it; ``table_read.py`` reads the files). Each file, split by
the subject/session columns when the mapping names them and at backward time steps or gaps longer
than ``time.split_gap_s``, becomes one recording: one IMU CSV per mapped stream (``t`` in seconds from
the recording's first row, channels converted to SI: g and mg -> m/s^2, deg/s -> rad/s; the units as
stored kept in ``source_units``), labels as segments (runs of equal per-row labels, the ignored
values left unlabelled) or from the label table, and optionally the recording's video (hard-linked,
with its audio track declared as an ``audio`` stream on the same file).

The layout conventions it covers were checked on PAMAP2 (space separated, no header, 54 columns,
timestamp in s, activityID 0 = transient) and WISDM v1.1 (``user,activity,timestamp,x,y,z;``):
copies of their readmes and loaders are cited in /work/helpers/importers/LAYOUTS.md section 6
(code index ids 22856928340, 2903445940, 38734261775, 45650369691).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines.ingest.importers.base import DatasetImportError, DatasetInfo, ImportReport, RecordingWriter, write_splits
from pipelines.ingest.importers.table_mapping import Mapping, Source, load_mapping
from pipelines.ingest.importers.table_read import Table, TableError, need_parquet, read_label_table, read_table
from pipelines.ingest.raw import recording_id

END_PAD_MAX_S = 0.25  # the last labelled run ends at most this long after the last row
MIN_SEGMENT_S = 0.002  # labels.csv keeps 3 decimals: a shorter run could round to start == end
MAX_LABEL_CHARS = 200  # schemas/raw-layout.md


def _files(src: Path, m: Mapping) -> list[Path]:
    found = sorted({p for g in m.globs for p in src.glob(g) if p.is_file()})
    if not found:
        raise DatasetImportError(f"{src}: no file matches files.glob {m.globs} of {m.source}")
    return found


def _from_path(s: Source, rel: str, what: str) -> str | None:
    """``what`` (subject or session) from the file's path: the fixed value, or the pattern's group named
    ``what``, else its first group, else the whole match; None if the pattern does not match."""
    if s.value is not None:
        return s.value
    hit = s.pattern.search(rel)
    if hit is None:
        return None
    if what in hit.re.groupindex:
        return hit.group(what)
    return hit.group(1) if hit.re.groups else hit.group(0)


def _groups(tab: Table, m: Mapping, rel: str) -> dict[tuple[str, str | None], np.ndarray]:
    """Row indices per (subject, session), in file order; TableError if the path gives none."""
    keys = []
    for s, what in ((m.subject, "subject"), (m.session, "session")):
        if s is None:
            keys.append(None)
        elif s.column is not None:
            keys.append(tab.text[s.column])
        else:
            v = _from_path(s, rel, what)
            if v is None or not v.strip():
                raise TableError(f"{what}.pattern {s.pattern.pattern!r} does not match the file's path")
            keys.append(v)
    subj, sess = keys
    if not isinstance(subj, list) and not isinstance(sess, list):
        return {(subj, sess): np.arange(tab.n)}
    out: dict[tuple[str, str | None], list[int]] = {}
    for i in range(tab.n):
        k = (subj[i] if isinstance(subj, list) else subj, sess[i] if isinstance(sess, list) else sess)
        out.setdefault(k, []).append(i)
    return {k: np.asarray(v) for k, v in out.items() if k[0]}


def _seconds(tab: Table, m: Mapping, rows: np.ndarray) -> np.ndarray:
    if m.time_column is None:
        return np.arange(len(rows), dtype=np.float64) / m.rate_hz
    v = tab.num[m.time_column][rows]
    return v / m.rate_hz if m.time_unit == "index" else v * {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}[m.time_unit]


def _parts(t: np.ndarray, rows: np.ndarray, m: Mapping) -> tuple[list[tuple[np.ndarray, np.ndarray]], int]:
    """Pieces with strictly increasing time: NaN times and repeated timestamps dropped (counted), a new
    piece at a backward step (unless ``time.sort``) or a gap over ``time.split_gap_s``."""
    ok = np.isfinite(t)
    dropped = int((~ok).sum())
    t, rows = t[ok], rows[ok]
    if m.sort:
        o = np.argsort(t, kind="stable")
        t, rows = t[o], rows[o]
    dup = np.r_[False, np.diff(t) == 0] if len(t) else np.zeros(0, bool)
    dropped += int(dup.sum())
    t, rows = t[~dup], rows[~dup]
    d = np.diff(t)
    cut = (d < 0) | ((d > m.split_gap_s) if m.split_gap_s else False)
    bounds = [0, *(np.flatnonzero(cut) + 1).tolist(), len(t)]
    return [(t[a:b], rows[a:b]) for a, b in zip(bounds[:-1], bounds[1:]) if b > a], dropped


def _row_segments(t: np.ndarray, labels: list[str], m: Mapping) -> list[tuple[float, float, str]]:
    """Runs of equal labels -> (start, end, class name); a run ends at the next row (at most one median
    step after its last row); ignored values stay unlabelled."""
    n = len(t)
    if n == 0:
        return []
    vocab: dict[str, int] = {}
    codes = np.fromiter((vocab.setdefault(v, len(vocab)) for v in labels), dtype=np.int64, count=n)
    names = list(vocab)
    dt = float(np.median(np.diff(t))) if n > 1 else 0.0
    change = np.flatnonzero(np.diff(codes)) + 1
    out = []
    for a, b in zip([0, *change.tolist()], [*change.tolist(), n]):
        raw = names[codes[a]]
        name = m.names.get(raw, raw)
        if raw in m.ignore or name in m.ignore:
            continue
        end = min(float(t[b]), float(t[b - 1]) + dt) if b < n else float(t[-1]) + min(dt, END_PAD_MAX_S)
        if end - float(t[a]) >= MIN_SEGMENT_S:
            out.append((float(t[a]), end, name))
    return out


def _label_index(src: Path, m: Mapping) -> tuple[dict[str, list[list[str]]], list[int]]:
    """The label table's rows by recording key, and the column indices (label, start, end)."""
    lt = m.label_table
    path = src / lt.file
    header, rows = read_label_table(path, lt.sep)
    cols = []
    for key in (lt.recording, lt.label, lt.start, lt.end):
        if key is not None and key not in header:
            raise DatasetImportError(f"{path}: no column {key!r} (columns: {', '.join(header)}); see [label_table]")
        cols.append(header.index(key) if key is not None else -1)
    by: dict[str, list[list[str]]] = {}
    for r in rows:
        if len(r) < len(header):
            continue
        by.setdefault(r[cols[0]], []).append(r)
    return by, cols[1:]


def _table_labels(rows: list[list[str]], cols: list[int], m: Mapping, shift: float, t_end: float
                  ) -> tuple[str | None, list[tuple[float, float, str]]]:
    """(whole-recording label, segments) from this recording's label-table rows; ValueError with the problem."""
    li, si, ei = cols
    names = [m.names.get(r[li], r[li]) for r in rows if r[li] not in m.ignore]
    names = [n for n in names if n not in m.ignore]
    if si < 0:
        if len(set(names)) != 1:
            raise ValueError(f"{len(set(names))} different labels in the label table for one recording: give start "
                             "and end columns for segments")
        return names[0], []
    segs = []
    for r in rows:
        name = m.names.get(r[li], r[li])
        if r[li] in m.ignore or name in m.ignore:
            continue
        try:
            a, b = float(r[si]) * m.label_table.unit_s - shift, float(r[ei]) * m.label_table.unit_s - shift
        except ValueError:
            raise ValueError(f"start/end {r[si]!r}, {r[ei]!r} are not numbers") from None
        a, b = max(a, 0.0), min(b, t_end)
        if b - a >= MIN_SEGMENT_S:
            segs.append((a, b, name))
    segs.sort()
    for (a0, b0, _), (a1, _, _) in zip(segs, segs[1:]):
        if a1 < b0 - 1e-6:
            raise ValueError(f"label-table segments overlap at {a1:.3f} s (labels.csv forbids overlaps)")
    return None, segs


def _has_audio(path: Path) -> bool:
    try:
        import av
    except ModuleNotFoundError:
        return False
    try:
        with av.open(str(path)) as c:
            return len(c.streams.audio) > 0
    except (OSError, ValueError, av.error.FFmpegError):
        return False


def _add_video(w: RecordingWriter, src: Path, m: Mapping, rel: str, subject: str, session: str | None,
               offset_s: float, report: ImportReport) -> bool:
    """Link the recording's video (and declare its audio track); False if it is required and missing."""
    p = Path(rel)
    try:
        name = m.video.file.format(dir=p.parent.as_posix(), stem=p.stem, name=p.name, subject=subject,
                                   session=session or "")
    except (KeyError, IndexError, ValueError) as e:
        raise DatasetImportError(f"{m.source}: [video]: file template {m.video.file!r}: {e}") from None
    video = src / name
    if not video.is_file():
        if m.video.required:
            report.skip(w.id, name, "video missing (video.required = true)")
            return False
        report.notes.append(f"{w.id}: no video at {name}: imported without video")
        return True
    fname = "video" + video.suffix.lower()
    w.add_media("video", "video", video, filename=fname, clock_offset_s=round(offset_s, 6))
    if m.video.audio == "yes" or (m.video.audio == "auto" and _has_audio(video)):
        w.meta["streams"]["audio"] = {"kind": "audio", "file": fname, "clock_offset_s": round(offset_s, 6)}
    return True


def _recording(src: Path, out: Path, m: Mapping, tab: Table, rel: str, rid: str, key: tuple[str, str | None],
               t: np.ndarray, rows: np.ndarray, t_file0: float, labels: tuple | None, media: str,
               report: ImportReport) -> bool:
    """Write one recording (a piece of one file's rows); False (and a report entry) when it cannot be."""
    subject, session = key
    t0 = float(t[0])
    rt = t - t0
    if len(rt) < 2 or rt[-1] < m.min_duration_s:
        report.skip(rid, rel, f"only {len(rt)} rows ({rt[-1]:.3f} s): shorter than time.min_duration_s "
                    f"{m.min_duration_s:g} s or under 2 rows")
        return False
    whole, segs = None, []
    if m.label_column is not None:
        segs = _row_segments(rt, [tab.text[m.label_column][i] for i in rows], m)
    elif labels is None:
        report.skip(rid, rel, f"no row for this file in the label table {m.label_table.file}")
        return False
    else:
        shift = t0 if m.label_table.clock == "source" else t0 - t_file0
        try:
            whole, segs = _table_labels(labels[0], labels[1], m, shift, float(rt[-1]) + END_PAD_MAX_S)
        except ValueError as e:
            report.skip(rid, m.label_table.file, str(e))
            return False
    if whole is None and not segs:
        report.skip(rid, rel, "no labelled rows (every label is empty or in labels.ignore)")
        return False
    bad = next((x for x in ([whole] if whole is not None else [g[2] for g in segs])
                if len(x) > MAX_LABEL_CHARS or any(ord(ch) < 32 or ord(ch) == 127 for ch in x)), None)
    if bad is not None:
        report.skip(rid, rel, f"label {bad[:40]!r}: over {MAX_LABEL_CHARS} characters or holds a control character "
                    "(map it to a clean name with [labels] names)")
        return False
    w = RecordingWriter(out, rid, subject, media, session=session)
    if m.video is not None and not _add_video(w, src, m, rel, subject, session, m.video.offset_s - (t0 - t_file0),
                                               report):
        return False
    shared = {"clock": "table"} if len(m.streams) > 1 else {}
    if m.rate_hz is not None:
        shared["rate_hz"] = m.rate_hz
    for name, chans in m.streams.items():
        data = np.column_stack([tab.num[c][rows] * ch.factor for ch in chans for c in ch.columns])
        cn = [n for ch in chans for n in ch.names]
        w.add_imu(name, rt, data, cn, {n: ch.si_unit for ch in chans for n in ch.names},
                  source_units={n: ch.unit for ch in chans for n in ch.names},
                  roles={n: ch.role for ch in chans for n in ch.names}, **shared)
    if whole is not None:
        w.set_label(whole)
    else:
        w.set_segments(segs)
    w.save(dataset="table", source_file=rel, source_t0_s=t0, mapping=Path(m.source).name)
    return True


def _ids(files: list[Path], src: Path) -> dict[Path, str]:
    stems = [p.stem for p in files]
    if len(set(stems)) == len(stems):
        return dict(zip(files, stems))
    return {p: p.relative_to(src).with_suffix("").as_posix().replace("/", "_") for p in files}


def prepare(src: Path, out: Path, subjects: list[str] | None = None, media: str = "link", **options) -> ImportReport:
    """Import the tables under ``src`` as ``options["mapping"]`` (a TOML path) says."""
    if options.get("mapping") is None:
        raise DatasetImportError("table: give the column mapping with --mapping FILE.toml "
                                 "(its keys: README, dcat import table)")
    m = load_mapping(options["mapping"])
    src, out = Path(src), Path(out)
    files = _files(src, m)
    need_parquet(files)
    lab_index, lab_cols = _label_index(src, m) if m.label_table else ({}, [])
    used_keys: set[str] = set()
    report = ImportReport("table", str(out))
    by_subject: dict[str, list[str]] = {}
    for path, base in _ids(files, src).items():
        rel = path.relative_to(src).as_posix()
        if subjects and m.subject.column is None and _from_path(m.subject, rel, "subject") not in subjects:
            continue
        try:
            tab = read_table(path, m)
            groups = _groups(tab, m, rel)
        except TableError as e:
            report.skip(recording_id(base), rel, str(e))
            continue
        if tab.n == 0:
            report.skip(recording_id(base), rel, f"no readable row{f' ({tab.first_bad})' if tab.first_bad else ''}")
            continue
        if tab.bad_rows:
            report.notes.append(f"{rel}: {tab.bad_rows} malformed rows dropped (first: {tab.first_bad})")
        labels = None
        if m.label_table:
            for k in (rel, Path(rel).with_suffix("").as_posix(), path.name, path.stem):
                if k in lab_index:
                    labels = (lab_index[k], lab_cols)
                    used_keys.add(k)
                    break
        for key, rows in groups.items():
            if subjects and key[0] not in subjects:
                continue
            parts, dropped = _parts(_seconds(tab, m, rows), rows, m)
            if dropped:
                report.notes.append(f"{rel} {key[0]}: {dropped} rows without a time or with a repeated time dropped")
            if not parts:
                report.skip(recording_id(base), rel, "no row with a time")
                continue
            stem = base + "".join(f"_{v}" for v, s in zip(key, (m.subject, m.session)) if s and s.column is not None)
            for k, (t, r) in enumerate(parts):
                rid = recording_id(stem + (f"_p{k + 1:02d}" if len(parts) > 1 else ""))
                if rid in report.written:
                    rid = recording_id(f"{rid}_{len(report.written)}")
                if _recording(src, out, m, tab, rel, rid, key, t, r, float(parts[0][0][0]), labels, media, report):
                    report.written.append(rid)
                    by_subject.setdefault(key[0], []).append(rid)
    unused = sorted(set(lab_index) - used_keys)
    if unused:
        report.notes.append(f"label table rows for {len(unused)} recording(s) that match no file: {unused[:5]}")
    _protocols(out, m, by_subject, report)
    return report


def _protocols(out: Path, m: Mapping, by_subject: dict[str, list[str]], report: ImportReport) -> None:
    protos = {}
    for name, parts in m.protocols.items():
        ids = {part: [r for s in subs for r in by_subject.get(s, [])] for part, subs in parts.items()}
        missing = sorted({s for subs in parts.values() for s in subs} - set(by_subject))
        if missing:
            report.notes.append(f"protocol {name}: no recording of subject(s) {missing}")
        if ids.get("train") and ids.get("test"):
            protos[name] = ids
        else:
            report.notes.append(f"protocol {name}: not written (its train or test part has no recording)")
    if protos:
        report.protocols = write_splits(out, protos, source=f"[protocols] of {Path(m.source).name}")


INFO = DatasetInfo(
    name="table", title="Your own tables (CSV or Parquet per subject/session), columns mapped in a TOML",
    modalities="IMU streams you map (+ video/audio per recording if mapped)", subjects="from the file name or a column",
    classes="from a label column or a label table", url="(your data; --mapping FILE.toml, see the README)",
    protocols=("from [protocols] in the mapping",), prepare=prepare,
    notes="PAMAP2, WISDM and lab CSVs: time in s/ms/us/ns or a sample index at rate_hz; g, mg, deg/s converted to SI")
