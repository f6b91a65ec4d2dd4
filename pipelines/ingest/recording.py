"""One recording -> one synchronized, windowed HDF5 shard (``process_recording``).

Per recording, with memory that does not grow with the recording's length:

A. read: every stream once, by its kind (``pipelines.ingest.streams``): the IMU CSV (whole,
   float32 channels) and the audio (decoded in ~10 s chunks, resampled with soxr to --audio-sr
   into a scratch file beside the output); the video is opened and put on the --fps grid by its
   timestamps, and the reference video is decoded in a thread from then on, straight into the
   shard. Activity envelopes are collected on the way.
B. align: clock offsets from meta.json are applied. The lag of every stream behind the reference
   stream (the first video, else audio, else IMU) is estimated from the envelopes on the whole
   overlap (``pipelines.ingest.align``: clock groups, reliability, drift) and reported after the
   video is decoded; with ``align="estimate"`` it must be known before windowing, so the videos are
   decoded first (the reference into the shard, another into memory or a scratch file) and reliable
   lags are applied (a grid origin moves, IMU
   timestamps are rescaled for drift). A coverage failure after an applied lag says so and keeps
   the estimate (``RecordingError.sync``).
C. window: windows inside the span all streams cover pass a quality gate (``windows``: coverage,
   exact length, gaps, NaN, label purity; rejections counted by reason). Each stream's samples that
   kept windows cover are written once (IMU resampled on the window grid, log-mel per run of
   windows, another video decoded forward in chunks) to a temporary file beside ``<id>.h5``, open
   from the start (``_ShardFile``: the reference video's every grid frame is written into it while
   decoded, during A) and renamed to ``<id>.h5`` only when complete (``pipelines.core.io.atomic_path``).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from pipelines import __version__
from pipelines.core.errors import RecordingError
from pipelines.core.io import atomic_path, file_sha256, to_json
from pipelines.ingest.align import estimate_lags, lag_summary
from pipelines.ingest.config import PreprocessConfig
from pipelines.ingest.heap import release_memory
from pipelines.ingest.raw import (Recording, StreamSpec, check_segments_inside, load_recording, read_segments,
                                  recording_id)
from pipelines.ingest.streams import KINDS, Stream
from pipelines.ingest.streams import video as video_streams
from pipelines.ingest.windows import Span, WindowPlan, check_coverage, gate_windows


def shard_path(out_dir: Path, rid: str) -> Path:
    """``<out_dir>/<id>.h5``; ``rid`` is a recording id or a folder name (``recording_id`` maps it)."""
    return Path(out_dir) / f"{recording_id(rid)}.h5"


class _Laps:
    """Seconds per step (``timing_s`` of the info record): a call charges the time since the
    previous call to ``name``."""

    def __init__(self):
        self.timing: dict[str, float] = {}
        self.tick = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.timing[name] = self.timing.get(name, 0.0) + now - self.tick
        self.tick = now

    def rounded(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self.timing.items()}


# ------------------------------------------------------------------------------ A: read
def _selected_specs(rec: Recording, cfg: PreprocessConfig) -> list[StreamSpec]:
    """The streams to keep: all in meta.json, or those ``--streams`` names (in its order)."""
    if cfg.streams is None:
        return list(rec.streams.values())
    missing = [s for s in cfg.streams if s not in rec.streams]
    if missing:
        raise RecordingError(rec.id, "meta.json", f"has no stream(s) {missing} (--streams); it has {list(rec.streams)}")
    return [rec.streams[s] for s in cfg.streams]


def read_streams(rec: Recording, specs: list[StreamSpec], cfg: PreprocessConfig,
                 scratch_dir: Path, shard=None, started: Stream | None = None) -> tuple[list[Stream], list[str]]:
    """Read every stream once (video: opened, timestamps read; decoded later, on demand; the reference
    video, the first, decoded now in a thread straight into ``shard`` when given: its grid never moves;
    ``started``: that video, opened and decoding already (``start_reference_video``); returns the
    streams and the warnings so far (declared rates the timestamps contradict)."""
    first_video = reference_video(specs)

    def read(spec: StreamSpec) -> Stream:
        if spec is not first_video:
            return KINDS[spec.kind].read(spec, rec, cfg, scratch_dir)
        return started if started is not None else KINDS[spec.kind].read(spec, rec, cfg, scratch_dir, shard=shard)

    series = [read(spec) for spec in specs]
    warnings: list[str] = []
    for s in series:
        s.info["clock_offset_s"] = s.offset_s
        if s.info.get("envelope_warning"):
            warnings.append(f"{s.label}: {s.info['envelope_warning']}")
        if not s.info["rate_ok"]:
            warnings.append(f"{s.label}: declared {s.info['declared_rate_hz']:g} Hz but timestamps give "
                            f"{s.info['measured_rate_hz']:.4g} Hz (resampled by timestamps)")
    return series, warnings


# ------------------------------------------------------------------------------ B: align
def align_streams(series: list[Stream], cfg: PreprocessConfig, scratch_dir: Path, warnings: list[str]) -> Stream:
    """Pick the reference stream; with ``--align estimate`` estimate and apply every lag now (the
    envelopes are completed first). Otherwise the lag is estimated and reported after writing."""
    ref = min(series, key=lambda s: s.ref_rank)
    if cfg.align == "estimate":
        for s in series:
            s.complete_envelope(scratch_dir)
        release_memory()
        estimate_lags(series, ref, cfg, True, warnings)
        release_memory()
    return ref


def _coverage(rec: Recording, series: list[Stream], ref: Stream, cfg: PreprocessConfig, warnings: list[str]) -> Span:
    """``check_coverage``; when it fails after an estimated lag was applied, the error says that the
    lag caused it and carries every stream's lag estimate (``RecordingError.sync``)."""
    try:
        return check_coverage(rec, series, cfg, warnings)
    except RecordingError as e:
        moved = [s for s in series if s.info.get("lag_applied_s")]
        if moved:
            what = ", ".join(f"{s.label} shifted by {s.info['lag_applied_s']:+.3f} s" for s in moved)
            e = RecordingError(e.recording, e.file, f"{e.problem}, after the estimated lag was applied ({what}; "
                               "--align estimate): the applied lag caused it",
                               "check the lag estimate (lag_* in the record); --align meta keeps meta.json's "
                               "offsets, --short-streams crop keeps the part every stream covers")
        e.sync = {"reference_stream": ref.name, "streams": lag_summary(series, ref)} if any(
            "lag_s" in s.info for s in series) else None
        raise e from None


# ------------------------------------------------------------------------------ C: write
def _sources(rec: Recording, series: list[Stream]) -> list[dict]:
    """Every input file the shard was made from (streams, labels, meta.json) with size and hash."""
    files = {s.file for s in series} | ({rec.labels_file} if rec.labels_file else set()) | {"meta.json"}
    sources = []
    for f in sorted(files):
        p = rec.dir / f
        sources.append({"file": f, "size_bytes": p.stat().st_size, "sha256": file_sha256(p),
                        "streams": [s.name for s in series if s.file == f]})
    return sources


def info_record(rec: Recording, series: list[Stream], ref: Stream, plan: WindowPlan, span: Span,
                warnings: list[str]) -> dict:
    """The recording's checks (``checks_json`` in the shard, the ``info`` of its run result)."""
    lag_vals = [abs(s.info["lag_s"]) for s in series
                if s is not ref and s.info.get("lag_reliable") and s.info.get("lag_role") != "same clock"]
    return {
        "recording": rec.id, "folder": rec.folder or rec.id, "subject": rec.subject, "reference_stream": ref.name,
        "streams": {s.name: s.info for s in series},
        "span_s": [span.a, span.b], "windows_total": plan.windows_total, "windows_kept": plan.n_kept,
        "rejected": plan.rejected, "max_abs_lag_ms": 1000 * max(lag_vals) if lag_vals else None,
        "sync_ok": (False if any(s.info.get("in_sync_ok") is False for s in series) else
                    None if any(s.info.get("in_sync_ok") is None for s in series) else True),
        "rate_ok": all(s.info["rate_ok"] for s in series), "warnings": warnings,
    }


def _write_windows(h, plan: WindowPlan, window_s: float) -> None:
    """The ``windows`` group: start, end, label and label purity of every kept window."""
    import h5py

    from pipelines.shards.format import WINDOWS_TYPE, set_encoding

    keep = plan.keep
    g = h.create_group("windows")
    set_encoding(g, WINDOWS_TYPE)
    g.create_dataset("start_s", data=plan.starts[keep].astype(np.float64))
    g.create_dataset("end_s", data=(plan.starts[keep] + window_s).astype(np.float64))
    g.create_dataset("label", data=np.array(list(plan.labels[keep]), dtype=object), dtype=h5py.string_dtype())
    g.create_dataset("label_purity", data=plan.purity[keep])


class _ShardFile:
    """The shard's temporary file, open (``h5py.File``, mode ``w``) from the start of the recording, since
    the reference video's frames are written into it while decoded (``ShardFrames``); on leaving,
    every such writer is closed before the file is (also when the recording failed)."""

    def __init__(self, path: Path):
        import h5py

        self.h = h5py.File(path, "w")
        self.sinks: list = []  # ShardFrames writing into it

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        for sink in self.sinks:
            sink.close()
        self.h.close()


def write_shard(h, rec: Recording, cfg: PreprocessConfig, series: list[Stream], ref: Stream,
                plan: WindowPlan, span: Span, warnings: list[str], laps: _Laps) -> dict:
    """Write the shard into the open file ``h`` (``_ShardFile``): attributes, windows, every stream, then
    (``--align meta``) the lags, the sources and the info record. Returns the info record."""
    from pipelines.shards.format import SHARD_TYPE, STREAM_TYPE, set_encoding

    set_encoding(h, SHARD_TYPE)
    h.attrs.update({
        "recording_id": rec.id, "subject": rec.subject, "session": rec.session, "n_windows": plan.n_kept,
        "window_s": cfg.window_s, "stride_s": cfg.stride_s, "tool_version": __version__,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "args_json": to_json(cfg.as_dict()), "meta_json": to_json(rec.meta),
    })
    _write_windows(h, plan, cfg.window_s)
    sg = h.require_group("streams")
    for s in series:
        gs = sg.require_group(s.name)
        set_encoding(gs, STREAM_TYPE)
        s.write(gs, rec, cfg, plan.first[s.name][plan.keep], plan.per_window[s.name])
        release_memory()  # a stream's decoding and writing buffers, before the next stream's
        laps(f"write_{s.name}_s")
    # the lag is reported for every recording; in meta mode the video envelope is complete only now
    if cfg.align != "estimate":
        for s in series:
            s.finish_envelope()
            s.release()
        release_memory()
        laps("write_video_tail_s")
        estimate_lags(series, ref, cfg, False, warnings)
        laps("lag_s")
    for s in series:
        sg[s.name].attrs["lag_applied_s"] = s.info["lag_applied_s"]
    sources = _sources(rec, series)
    info = info_record(rec, series, ref, plan, span, warnings)
    laps("hash_s")
    info["timing_s"] = laps.rounded()
    h.attrs["sources_json"] = to_json(sources)
    h.attrs["checks_json"] = to_json(info)
    return info


# ------------------------------------------------------------------------------ the pipeline
@dataclass
class OpenRecording:
    """A recording opened for preprocessing: its folder read (meta.json, labels), its scratch folder
    named (made by a stream only when it needs one) and its shard's temporary file open (``shard``); ``video``: its reference video, when already
    opened and decoding into the shard (``start_reference_video``). ``stack`` closes them all: the
    temporary file renamed to ``<id>.h5`` when it closes without an exception, else removed."""

    rec: Recording
    segs: list
    specs: list[StreamSpec]
    scratch_dir: Path
    shard: _ShardFile
    stack: ExitStack
    video: Stream | None = None


class _Discarded(Exception):
    """Closes an ``OpenRecording`` that will not be processed (its temporary file removed)."""


def discard(o: OpenRecording) -> None:
    """Close ``o`` without making its shard: the decoding stopped, the temporary file and the
    scratch folder removed, whatever ``o.stack`` holds (a shard lock) released."""
    try:
        if o.video is not None:
            o.video.stop_decoding()
    finally:
        o.stack.__exit__(_Discarded, _Discarded(), None)


def open_recording(rec_dir: Path, out_dir: Path, cfg: PreprocessConfig, stack: ExitStack | None = None) -> OpenRecording:
    """Read the recording's folder and open its shard's temporary file (``OpenRecording``); ``stack``
    (e.g. holding the shard's lock, released last) is taken over. RecordingError on bad input."""
    stack = ExitStack() if stack is None else stack
    try:
        rec = load_recording(rec_dir, need_labels=cfg.labels == "require")
        if cfg.labels == "ignore":
            rec.label, rec.labels_file = "", None  # windows carry the empty label; no purity gate
        segs = read_segments(rec)
        specs = _selected_specs(rec, cfg)
        out_dir = Path(out_dir)
        scratch_dir = out_dir / f".scratch-{rec.id}-{os.getpid()}"
        stack.callback(shutil.rmtree, scratch_dir, ignore_errors=True)  # made by a stream only when it needs it
        tmp = stack.enter_context(atomic_path(shard_path(out_dir, rec.id)))
        shard = stack.enter_context(_ShardFile(tmp))
    except BaseException:
        stack.__exit__(*sys.exc_info())
        raise
    return OpenRecording(rec, segs, specs, scratch_dir, shard, stack)


def reference_video(specs: list[StreamSpec]) -> StreamSpec | None:
    """The recording's reference stream when it is a video: the first video (``ref_rank`` 0)."""
    return next((s for s in specs if KINDS[s.kind].ref_rank == 0), None)


def start_reference_video(o: OpenRecording, cfg: PreprocessConfig) -> None:
    """Open ``o``'s reference video and start decoding it into the shard (a thread), before its
    turn comes: the run over recordings starts the next recording's decoding while this one's lag
    estimate and writing run (``preprocess``, one worker)."""
    spec = reference_video(o.specs)
    if spec is not None and o.video is None:
        v = KINDS[spec.kind].read(spec, o.rec, cfg, o.scratch_dir, shard=o.shard)
        if getattr(v, "sink", None) is None:  # a long video: decoded in its turn (``video.DIRECT_MAX_S``)
            v.stop_decoding()
            v.release()
            return
        o.video = v


def process_recording(rec_dir: Path, out_dir: Path, cfg: PreprocessConfig, opened: OpenRecording | None = None,
                      after_decode: Callable[[], None] | None = None) -> dict:
    """Preprocess one recording into ``out_dir/<id>.h5``. Raises RecordingError on bad input.

    ``opened``: the recording already opened (``open_recording``), maybe decoding; ``after_decode``:
    called once the reference video is decoded (or the streams are read, when there is no video),
    while the lag estimate and the writing are still to come; not for a recording longer than
    ``video.DIRECT_MAX_S`` (its tail is a small part of its time; overlapping it costs memory).
    Returns the recording's info record (also stored in the shard as ``checks_json``).
    """
    t_start = time.perf_counter()
    o = opened if opened is not None else open_recording(rec_dir, out_dir, cfg)
    with o.stack:
        info = _process(o, cfg, after_decode)
    info["seconds"] = time.perf_counter() - t_start
    return info


def _process(o: OpenRecording, cfg: PreprocessConfig, after_decode: Callable[[], None] | None) -> dict:
    """Read, align, gate and write one opened recording; returns the info record."""
    rec, scratch_dir = o.rec, o.scratch_dir
    laps = _Laps()
    series, warnings = read_streams(rec, o.specs, cfg, scratch_dir, o.shard, o.video)
    laps("read_s")
    if after_decode is not None and max((s.n / s.rate_hz for s in series), default=0.0) <= video_streams.DIRECT_MAX_S:
        for s in series:
            s.wait_decoded()
        laps("video_wait_s")
        after_decode()
    # the lag is always estimated and reported; with --align estimate it is applied before windowing
    ref = align_streams(series, cfg, scratch_dir, warnings)
    span = _coverage(rec, series, ref, cfg, warnings)
    if cfg.streams is None:  # with a subset of streams the recording may extend beyond them
        check_segments_inside(rec, o.segs, span.u1)
    plan = gate_windows(rec, o.segs, series, span, cfg)
    laps("align_gate_s")
    return write_shard(o.shard.h, rec, cfg, series, ref, plan, span, warnings, laps)
