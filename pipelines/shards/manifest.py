"""Manifest (derived from the shards present), inspection, and shard validation (schemas/shard.md)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from pipelines import __version__
from pipelines.core.errors import DcatError, ShardError
from pipelines.core.io import atomic_write_text, to_json
from pipelines.core.lock import FileLock, lock_path_for
from pipelines.shards.format import (
    ENCODING_VERSION,
    FEATURE_DATASETS,
    MANIFEST_NAME,
    MANIFEST_TYPE,
    SHARD_TYPE,
    STREAM_TYPE,
    WINDOWS_TYPE,
    check_encoding,
)

# settings that every shard of a directory must share
SHARED_SETTINGS = ("fps", "imu_hz", "audio_sr", "window_s", "stride_s", "video_size", "n_mels", "n_fft",
                   "hop_length", "audio_waveform")


def shard_files(shards_dir: Path) -> list[Path]:
    d = Path(shards_dir)
    if not d.is_dir():
        raise DcatError(f"{d}: not a directory")
    return sorted(p for p in d.glob("*.h5") if not p.name.startswith("."))


def read_shard_summary(path: Path) -> dict:
    """Everything the manifest needs from one shard (attributes, labels, per-window shapes, IMU sums).
    ShardError naming the file when it does not read as a shard (damaged, truncated, empty, in use)."""
    from pipelines.shards.check import check_shard

    check_shard(path)  # the checks of `dcat validate`, with its messages (schemas/shard.md)
    try:
        return _read_shard_summary(path)
    except ShardError:
        raise
    except Exception as e:  # noqa: BLE001 - h5py raises OSError, KeyError, ValueError, ... for a damaged file
        raise ShardError(f"{path}: cannot be read as a shard ({type(e).__name__}: {e})") from e


def _read_shard_summary(path: Path) -> dict:
    import h5py

    with h5py.File(path, "r") as h:
        check_encoding(h, SHARD_TYPE, str(path))
        check_encoding(h["windows"], WINDOWS_TYPE, f"{path}:/windows")
        labels = [x.decode() if isinstance(x, bytes) else str(x) for x in h["windows/label"][()]]
        streams = {}
        for name, g in h["streams"].items():
            check_encoding(g, STREAM_TYPE, f"{path}:/streams/{name}")
            kind = str(g.attrs["kind"])
            main = FEATURE_DATASETS[kind]
            shape = [int(g.attrs["samples_per_window"])] + list(g[main].shape[1:])  # per window
            s = {"kind": kind, "rate_hz": float(g.attrs["rate_hz"]), "shape": shape,
                 "dtype": str(g[main].dtype), "dataset": main}
            if kind == "imu":
                s["channels"] = [str(c) for c in g.attrs["channels"]]
                s["_sum"], s["_sumsq"], s["_count"] = g["sum"][()], g["sumsq"][()], int(g["count"][()])
            if kind == "audio" and "waveform" in g:
                s["waveform_shape"] = [int(g.attrs["waveform_samples_per_window"])]
            streams[name] = s
        return {"file": path.name, "recording_id": str(h.attrs["recording_id"]), "subject": str(h.attrs["subject"]),
                "session": str(h.attrs["session"]), "n_windows": int(h.attrs["n_windows"]),
                "args": json.loads(h.attrs["args_json"]), "checks": json.loads(h.attrs["checks_json"]),
                "labels": labels, "streams": streams}


def build_manifest(shards_dir: Path) -> dict:
    """Build the manifest from the shards present; refuse shards made with different settings."""
    files = shard_files(shards_dir)
    if not files:
        raise DcatError(f"{shards_dir}: no shards (*.h5); run `dcat preprocess RAW --out {shards_dir}`")
    return manifest_from_files(files)


def manifest_from_files(files: list[Path]) -> dict:
    """The manifest of these shard files (also of a single shard used without its directory)."""
    return _manifest_from_summaries(read_summaries(files))


def read_summaries(files: list[Path]) -> list[tuple[Path, dict]]:
    """``read_shard_summary`` of every file; one ShardError naming every file that does not read."""
    summaries, bad = [], []
    for p in files:
        try:
            summaries.append((p, read_shard_summary(p)))
        except ShardError as e:
            bad.append(str(e))
    if bad:
        raise ShardError(f"{len(bad)} of {len(files)} shard(s) cannot be read: " + "; ".join(bad)
                         + " (`dcat preprocess` on their recordings moves an unreadable shard to quarantine/ "
                         "and makes it again)")
    return summaries


def _manifest_from_summaries(summaries: list[tuple[Path, dict]]) -> dict:
    shards, per_class, per_subject = [], Counter(), Counter()
    streams: dict[str, dict] = {}
    settings = None
    first = None
    for p, s in summaries:
        st = {k: s["args"].get(k) for k in SHARED_SETTINGS}
        if settings is None:
            settings, first = st, p.name
        elif st != settings:
            diff = {k: (settings[k], st[k]) for k in st if st[k] != settings[k]}
            raise ShardError(f"{p}: made with settings {diff} (first value from {first}); all shards of a directory "
                             "must share them: re-run `dcat preprocess --overwrite` with one set of settings")
        for name, info in s["streams"].items():
            if name not in streams:
                streams[name] = {k: v for k, v in info.items() if not k.startswith("_")}
                if info["kind"] == "imu":
                    streams[name].update(_sum=np.zeros_like(info["_sum"]), _sumsq=np.zeros_like(info["_sum"]), _count=0)
            elif info["shape"] != streams[name]["shape"] or info["kind"] != streams[name]["kind"]:
                raise ShardError(f"{p}: stream '{name}' has per-window shape {info['shape']}, other shards "
                                 f"{streams[name]['shape']}: re-run preprocess with one set of settings")
            if info["kind"] == "imu":
                if info["channels"] != streams[name]["channels"]:
                    raise ShardError(f"{p}: stream '{name}' channels {info['channels']} differ from "
                                     f"{streams[name]['channels']}")
                streams[name]["_sum"] = streams[name]["_sum"] + info["_sum"]
                streams[name]["_sumsq"] = streams[name]["_sumsq"] + info["_sumsq"]
                streams[name]["_count"] += info["_count"]
        c = Counter(s["labels"])
        per_class.update(c)
        per_subject[s["subject"]] += s["n_windows"]
        checks = s["checks"]
        shards.append({"file": s["file"], "recording_id": s["recording_id"], "subject": s["subject"],
                       "session": s["session"], "n_windows": s["n_windows"], "windows_per_class": dict(sorted(c.items())),
                       "streams": sorted(s["streams"]), "sync_ok": checks.get("sync_ok"),
                       "max_abs_lag_ms": checks.get("max_abs_lag_ms")})
    for name, info in streams.items():
        if info["kind"] == "imu":
            n = max(info.pop("_count"), 1)
            mean = info.pop("_sum") / n
            var = info.pop("_sumsq") / n - mean ** 2
            info["mean"] = [float(x) for x in mean]
            info["std"] = [float(x) for x in np.sqrt(np.maximum(var, 0))]
    return {"encoding-type": MANIFEST_TYPE, "encoding-version": ENCODING_VERSION, "tool_version": __version__,
            "classes": sorted(c for c in per_class if c != ""), "settings": settings, "streams": dict(sorted(streams.items())),
            "shards": shards, "n_windows": int(sum(per_class.values())),
            "windows_per_class": dict(sorted(per_class.items())), "windows_per_subject": dict(sorted(per_subject.items()))}


def write_manifest(shards_dir: Path) -> dict:
    """Build and write ``manifest.json`` under its lock (``.manifest.json.lock``: runs finishing at
    once write it one after the other, each from the shards present then)."""
    path = Path(shards_dir) / MANIFEST_NAME
    if not Path(shards_dir).is_dir():
        raise DcatError(f"{shards_dir}: not a directory")
    with FileLock(lock_path_for(path), what=str(path)):
        m = build_manifest(shards_dir)
        atomic_write_text(path, to_json(m, indent=1))
    return m


def inspect_shards(shards_dir: Path) -> dict:
    """A summary of a shards directory: recordings, subjects, classes, windows, streams, checks."""
    files = shard_files(shards_dir)
    if not files:
        raise DcatError(f"{shards_dir}: no shards (*.h5)")
    summaries = read_summaries(files)  # each shard read once
    m = _manifest_from_summaries(summaries)
    recs = []
    per_class_subject = Counter()
    for _, s in summaries:
        for c, n in Counter(s["labels"]).items():
            per_class_subject[(c, s["subject"])] += n
        ch = s["checks"]
        recs.append({"recording": s["recording_id"], "subject": s["subject"], "windows": s["n_windows"],
                     "rejected": ch.get("rejected", {}), "sync_ok": ch.get("sync_ok"), "rate_ok": ch.get("rate_ok"),
                     "lags_s": {k: v.get("lag_s") for k, v in ch.get("streams", {}).items() if k != ch.get("reference_stream")},
                     "reference_stream": ch.get("reference_stream"), "warnings": ch.get("warnings", [])})
    return {"shards_dir": str(shards_dir), "recordings": len(files), "subjects": sorted(m["windows_per_subject"]),
            "classes": m["classes"], "n_windows": m["n_windows"], "windows_per_class": m["windows_per_class"],
            "windows_per_subject": m["windows_per_subject"],
            "windows_per_class_subject": {c: {sub: per_class_subject[(c, sub)] for sub in sorted(m["windows_per_subject"])}
                                          for c in m["classes"]},
            "streams": m["streams"], "settings": m["settings"], "per_recording": recs}
