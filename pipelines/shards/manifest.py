"""Manifest (derived from the shards present), inspection, and shard validation (schemas/shard.md)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from pipelines import __version__
from pipelines.core.errors import DcatError, ShardError
from pipelines.core.io import atomic_write_text
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
    """Everything the manifest needs from one shard (attributes, labels, per-window shapes, IMU sums)."""
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
    return _manifest_from_summaries([(p, read_shard_summary(p)) for p in files])


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
            "classes": sorted(per_class), "settings": settings, "streams": dict(sorted(streams.items())),
            "shards": shards, "n_windows": int(sum(per_class.values())),
            "windows_per_class": dict(sorted(per_class.items())), "windows_per_subject": dict(sorted(per_subject.items()))}


def write_manifest(shards_dir: Path) -> dict:
    m = build_manifest(shards_dir)
    atomic_write_text(Path(shards_dir) / MANIFEST_NAME, json.dumps(m, indent=1))
    return m


def validate_shards(shards_dir: Path) -> list[str]:
    """Check every shard against schemas/shard.md and the manifest; return the problems found."""
    import h5py

    problems: list[str] = []
    try:
        files = shard_files(shards_dir)
    except DcatError as e:
        return [str(e)]
    if not files:
        return [f"{shards_dir}: no shards (*.h5)"]
    leftovers = sorted(p.name for p in Path(shards_dir).glob(".*.tmp"))
    if leftovers:
        problems.append(f"{shards_dir}: leftover temporary files {leftovers} (an interrupted run; delete them)")
    for p in files:
        try:
            with h5py.File(p, "r") as h:
                check_encoding(h, SHARD_TYPE, str(p))
                for a in ("recording_id", "subject", "session", "n_windows", "window_s", "stride_s", "tool_version",
                          "args_json", "meta_json", "sources_json", "checks_json"):
                    if a not in h.attrs:
                        problems.append(f"{p}: missing root attribute '{a}'")
                n = int(h.attrs.get("n_windows", -1))
                if "windows" not in h:
                    problems.append(f"{p}: no /windows group")
                    continue
                g = h["windows"]
                check_encoding(g, WINDOWS_TYPE, f"{p}:/windows")
                for d in ("start_s", "end_s", "label", "label_purity"):
                    if d not in g:
                        problems.append(f"{p}: /windows/{d} missing")
                    elif g[d].shape != (n,):
                        problems.append(f"{p}: /windows/{d} has shape {g[d].shape}, expected ({n},)")
                if "start_s" in g and n > 0:
                    s0 = g["start_s"][()]
                    if np.any(np.diff(s0) <= 0):
                        problems.append(f"{p}: /windows/start_s not strictly increasing")
                    if "end_s" in g and not np.allclose(g["end_s"][()] - s0, float(h.attrs["window_s"]), atol=1e-6):
                        problems.append(f"{p}: /windows/end_s - start_s differs from window_s")
                if "streams" not in h or not len(h["streams"]):
                    problems.append(f"{p}: no streams")
                    continue
                for name, gs in h["streams"].items():
                    where = f"{p}:/streams/{name}"
                    check_encoding(gs, STREAM_TYPE, where)
                    kind = str(gs.attrs.get("kind", ""))
                    if kind not in FEATURE_DATASETS:
                        problems.append(f"{where}: kind '{kind}' unknown")
                        continue
                    for a in ("rate_hz", "samples_per_window", "unit", "resample_method"):
                        if a not in gs.attrs:
                            problems.append(f"{where}: missing attribute '{a}'")
                    main = FEATURE_DATASETS[kind]
                    if main not in gs or "window_start" not in gs:
                        problems.append(f"{where}: dataset '{main}' or 'window_start' missing")
                        continue
                    ds, ws = gs[main], gs["window_start"][()]
                    t_win = int(gs.attrs.get("samples_per_window", -1))
                    if ws.shape != (n,):
                        problems.append(f"{where}/window_start: shape {ws.shape}, expected ({n},)")
                    elif n and (np.any(np.diff(ws) <= 0) or ws[0] < 0 or ws[-1] + t_win > ds.shape[0]):
                        problems.append(f"{where}/window_start: not increasing, or windows run past "
                                        f"{main} ({ds.shape[0]} samples, {t_win} per window)")
                    want = {"video": np.uint8, "imu": np.float32, "audio": np.float32}[kind]
                    if ds.dtype != want:
                        problems.append(f"{where}/{main}: dtype {ds.dtype}, expected {np.dtype(want)}")
                    if ds.chunks is not None or ds.compression is not None:
                        problems.append(f"{where}/{main}: must be contiguous and uncompressed")
                    if kind == "imu":
                        if ds.ndim != 2 or ds.shape[1] != len(gs.attrs.get("channels", [])):
                            problems.append(f"{where}/data: channel axis does not match attribute 'channels'")
                        for d in ("sum", "sumsq", "count", "mean", "std"):
                            if d not in gs:
                                problems.append(f"{where}: dataset '{d}' missing")
                        if not np.isfinite(ds[: min(len(ds), 100_000)]).all():
                            problems.append(f"{where}/data: non-finite values (the quality gate should drop them)")
                    if kind == "video" and ds.ndim != 4:
                        problems.append(f"{where}/frames: expected [L, H, W, 3], got shape {ds.shape}")
                    if kind == "audio" and ds.ndim != 2:
                        problems.append(f"{where}/logmel: expected [L, n_mels], got shape {ds.shape}")
        except ShardError as e:
            problems.append(str(e))
        except OSError as e:
            problems.append(f"{p}: cannot read as HDF5 ({e})")
    mpath = Path(shards_dir) / MANIFEST_NAME
    if not mpath.is_file():
        problems.append(f"{mpath}: missing (rebuild it with `dcat manifest {shards_dir}`)")
    else:
        try:
            m = json.loads(mpath.read_text())
            check_encoding(m, MANIFEST_TYPE, str(mpath))
            listed = {s["file"] for s in m.get("shards", [])}
            present = {p.name for p in files}
            if listed != present:
                problems.append(f"{mpath}: lists {sorted(listed - present)} that are absent and misses "
                                f"{sorted(present - listed)}; rebuild it with `dcat manifest {shards_dir}`")
        except (json.JSONDecodeError, ShardError) as e:
            problems.append(f"{mpath}: {e}")
    return problems


def inspect_shards(shards_dir: Path) -> dict:
    """A summary of a shards directory: recordings, subjects, classes, windows, streams, checks."""
    files = shard_files(shards_dir)
    if not files:
        raise DcatError(f"{shards_dir}: no shards (*.h5)")
    summaries = [(p, read_shard_summary(p)) for p in files]  # each shard read once
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
