"""Writing the dataset: one recording folder (:func:`write_recording`) and the whole raw dataset with
its ``ground_truth.json`` (:func:`synthesize`).

Time convention (ground_truth.json): video is the reference clock (recording time = video time).
An event at recording time ``tau`` appears in a stream's file at stream time
``s = tau - true_clock_offset_s``.  A reader computes recording time as ``s + declared clock_offset_s``,
so the event shows up at ``tau + expected_lag_s`` with
``expected_lag_s = declared_clock_offset_s - true_clock_offset_s``.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np

from pipelines import __version__
from pipelines.core.io import atomic_write_text, to_json
from pipelines.core.timeutil import num_samples
from pipelines.synth.audio import _make_audio
from pipelines.synth.imu import IMU_CHANNELS, IMU_UNITS, _imu_table, _write_imu_csv
from pipelines.synth.motion import _Latent, _latent
from pipelines.synth.config import KNOBS, SynthConfig
from pipelines.synth.plan import CLASSES, MOTION, SHARED_MOTION_PAIRS, RecordingPlan, _r, plan_dataset
from pipelines.synth.video import _render_frames, _write_mp4

_CONVENTION = ("video is the reference clock (recording time = video time). An event at recording "
               "time tau appears in a stream's file at s = tau - true_clock_offset_s; a reader maps "
               "s to s + declared_clock_offset_s, so the event appears at tau + expected_lag_s, "
               "expected_lag_s = declared_clock_offset_s - true_clock_offset_s.")


def _json_dump(path: Path, obj) -> None:
    atomic_write_text(path, to_json(obj, indent=1) + "\n")


def _recording_rngs(plan: RecordingPlan) -> list[np.random.Generator]:
    """Independent random streams (motion, imu, audio, video, imu cue, camera-failure noise) of one
    recording. ``SeedSequence`` children are deterministic by index, so the first four are the same
    whether or not the last two are used."""
    ss = np.random.SeedSequence([plan.seed, 2, plan.index])
    return [np.random.default_rng(s) for s in ss.spawn(6)]


def write_recording(rec_dir: Path, plan: RecordingPlan, cfg: SynthConfig) -> dict:
    """Write one recording folder (meta.json last) and return its ground-truth entry."""
    rec_dir = Path(rec_dir)
    if rec_dir.exists():
        shutil.rmtree(rec_dir)
    rec_dir.mkdir(parents=True)
    rng_motion, rng_imu, rng_audio, rng_video, rng_cue, rng_fail = _recording_rngs(plan)

    lat = _latent(plan, rng_motion, cfg.imu_cue, rng_cue)

    table, imu_facts = _imu_table(plan, lat, cfg, rng_imu)
    _write_imu_csv(rec_dir / "imu.csv", table)

    audio, audio_facts = _make_audio(rec_dir, plan, lat, cfg, rng_audio)

    n_frames = num_samples(plan.seconds, cfg.fps)
    _write_mp4(rec_dir / "video.mp4", _render_frames(plan, lat, cfg, rng_video, rng_fail), n_frames, cfg, audio)

    if plan.whole_label is None:
        lines = ["start,end,label"] + [f"{a:.3f},{b:.3f},{c}" for a, b, c in plan.segments]
        (rec_dir / "labels.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    _json_dump(rec_dir / "meta.json", _meta(plan, cfg, audio_facts["file"]))
    return _truth_entry(plan, lat, cfg, n_frames, audio_facts, imu_facts)


def _camera_failures(plan: RecordingPlan, cfg: SynthConfig, n_frames: int) -> dict:
    """Ground truth of the camera failure episodes (``source_errors``): the episodes, the share of the
    recording's time they cover and the number of frames they blank."""
    tf = np.arange(n_frames) / cfg.fps
    failed = np.zeros(n_frames, dtype=bool)
    for a, b, _ in plan.camera_failures:
        failed |= (tf >= a) & (tf < b)
    covered = sum(b - a for a, b, _ in plan.camera_failures)
    return {"failures": [{"start": a, "end": b, "kind": k} for a, b, k in plan.camera_failures],
            "failure_share": _r(covered / plan.seconds), "failed_frames": int(failed.sum())}


def _audio_offsets(plan: RecordingPlan) -> tuple[float, float]:
    """(true, declared) clock offset of the audio stream: 0 for container audio (the video clock)."""
    audio_true = plan.audio_true_offset_s if plan.audio_mode == "wav" else 0.0
    audio_decl = plan.audio_declared_offset_s if plan.audio_mode == "wav" else 0.0
    return audio_true, audio_decl


def _meta(plan: RecordingPlan, cfg: SynthConfig, audio_file: str) -> dict:
    """The recording's meta.json (schemas/meta.schema.json): streams with declared offsets, synth facts."""
    audio_decl = _audio_offsets(plan)[1]
    meta = {
        "subject": plan.subject.subject,
        "session": plan.session,
        "streams": {
            "video": {"kind": "video", "file": "video.mp4", "rate_hz": cfg.fps},
            "audio": {"kind": "audio", "file": audio_file, "clock_offset_s": audio_decl, "rate_hz": cfg.audio_sr},
            "imu": {"kind": "imu", "file": "imu.csv", "clock_offset_s": plan.imu_declared_offset_s,
                    "rate_hz": cfg.imu_hz, "channels": list(IMU_CHANNELS), "units": dict(IMU_UNITS)},
        },
        "synth": {"generator": "pipelines.synth", "version": __version__, "seed": plan.seed,
                  "recording_index": plan.index, "offsets_declared": plan.offsets_declared},
    }
    if plan.whole_label is not None:
        meta["label"] = plan.whole_label
    return meta


def _lag(declared: float, true: float) -> float:
    return _r(declared - true, 6)


def _truth_entry(plan: RecordingPlan, lat: _Latent, cfg: SynthConfig, n_frames: int, audio_facts: dict,
                 imu_facts: dict) -> dict:
    """The recording's entry in ground_truth.json: segments, strokes, true and declared clocks."""
    audio_true, audio_decl = _audio_offsets(plan)
    return {
        "subject": plan.subject.subject,
        "session": plan.session,
        "seconds": plan.seconds,
        "whole_label": plan.whole_label,
        "offsets_declared": plan.offsets_declared,
        "segments": [{"start": a, "end": b, "label": c} for a, b, c in plan.segments],
        "strokes": [[round(a, 3), round(b, 3)] for a, b, _ in lat.strokes],
        "streams": {
            "video": {"file": "video.mp4", "true_clock_offset_s": 0.0, "declared_clock_offset_s": 0.0,
                      "expected_lag_s": 0.0, "rate_hz": cfg.fps, "frames": n_frames,
                      **_camera_failures(plan, cfg, n_frames)},
            "audio": {**audio_facts, "true_clock_offset_s": audio_true, "declared_clock_offset_s": audio_decl,
                      "expected_lag_s": _lag(audio_decl, audio_true), "rate_hz": cfg.audio_sr},
            "imu": {"file": "imu.csv", "true_clock_offset_s": plan.imu_true_offset_s,
                    "declared_clock_offset_s": plan.imu_declared_offset_s,
                    "expected_lag_s": _lag(plan.imu_declared_offset_s, plan.imu_true_offset_s),
                    "nominal_rate_hz": cfg.imu_hz, **imu_facts},
        },
        "expected_lag_s": {"video": 0.0, "audio": _lag(audio_decl, audio_true),
                           "imu": _lag(plan.imu_declared_offset_s, plan.imu_true_offset_s)},
    }


def synthesize(out_dir: Path, cfg: SynthConfig, progress: Callable[[int, int], None] | None = None) -> dict:
    """Write a raw dataset in the dcat layout; return an info dict (recordings written, classes, bytes, seconds taken).

    ``out_dir/<subject>_<session>/`` gets ``meta.json``, ``video.mp4``, ``imu.csv``, ``labels.csv`` (or a
    meta ``label``) and, with ``audio="wav"``, ``audio.wav``. ``out_dir/ground_truth.json`` (no
    meta.json, so not a recording) holds the true clocks, dropouts, segments, ``expected_lag_s``, the
    camera failure episodes (``streams.video.failures``) and what each knob means (``knobs``).
    Deterministic given ``cfg`` (and the same PyAV / x264 build).
    """
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    plans = plan_dataset(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    recs = {}
    n_bytes = 0
    for k, plan in enumerate(plans):
        rec_dir = out_dir / plan.recording
        recs[plan.recording] = write_recording(rec_dir, plan, cfg)
        n_bytes += sum(p.stat().st_size for p in rec_dir.iterdir() if p.is_file())
        if progress is not None:
            progress(k + 1, len(plans))
    counts = {c: 0.0 for c in CLASSES}
    for r in recs.values():
        for s in r["segments"]:
            counts[s["label"]] += s["end"] - s["start"]
    gt = {
        "generator": "pipelines.synth",
        "version": __version__,
        "config": dataclasses.asdict(cfg),
        "knobs": dict(KNOBS),
        "classes": list(CLASSES),
        "motion": dict(MOTION),
        "shared_motion_pairs": [list(p) for p in SHARED_MOTION_PAIRS],
        "convention": _CONVENTION,
        "subjects": {p.subject.subject: dataclasses.asdict(p.subject) for p in plans},
        "recordings": recs,
    }
    _json_dump(out_dir / "ground_truth.json", gt)
    n_bytes += (out_dir / "ground_truth.json").stat().st_size
    return {
        "out_dir": str(out_dir),
        "recordings": len(recs),
        "recording_ids": list(recs),
        "subjects": cfg.subjects,
        "classes": list(CLASSES),
        "class_seconds": {c: round(v, 3) for c, v in counts.items()},
        "bytes": int(n_bytes),
        "seconds_taken": round(time.perf_counter() - t_start, 3),
        "ground_truth": str(out_dir / "ground_truth.json"),
    }
