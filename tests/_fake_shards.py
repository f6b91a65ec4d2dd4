"""Write small shards directories that follow schemas/shard.md exactly, with learnable signals.

The signals are continuous over each recording's time axis and then windowed; each stream stores
the samples its windows cover once, plus ``window_start`` (the packed layout of the spec). Each class has its own pattern per stream:

- imu (``imu_hz``, ``imu_channels``): class c adds a sine of ``1 + c`` Hz to channel ``c % C``
  (amplitude ``imu_snr``) over unit Gaussian noise, plus a per-subject constant offset.
- video (``video_fps``, ``video_size`` px): a bright bar in RGB channel ``c % 3`` whose intensity
  is ``video_snr`` x 80 over a noisy grey background.
- audio (``audio_fps`` frames/s, ``n_mels``): energy ``audio_snr`` in mel band ``c % n_mels`` over
  noise.

So a stream with a high ``*_snr`` is "strong" and one with a low value is "weak". Labels follow
segments of ``segment_s`` seconds cycling through the classes in a per-recording random order.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from pipelines.shards.format import pack_windows

STR = h5py.string_dtype("utf-8")


def _enc(g, etype):
    g.attrs["encoding-type"] = etype
    g.attrs["encoding-version"] = "1"


def write_fake_shards(out_dir, *, subjects=("s01", "s02", "s03", "s04"), recordings_per_subject=2,
                      duration_s=20.0, window_s=2.0, stride_s=1.0, classes=("drink", "eat", "walk"),
                      segment_s=6.0, streams=("video", "imu", "audio"), video_fps=4.0, video_size=16,
                      imu_hz=10.0, imu_channels=6, audio_fps=8.0, n_mels=8, imu_snr=1.5,
                      video_snr=1.0, audio_snr=2.0, seed=0, stream_names=None, drop_windows=()) -> dict:
    """Write ``<out_dir>/<rid>.h5`` for every recording plus ``manifest.json``; return the manifest.

    ``stream_names`` maps kind -> stream name (default: the kind), e.g. ``{"imu": "imu_wrist"}``.
    ``drop_windows``: window indices left out of every recording (as a quality gate would), so the
    stored samples form several runs.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    classes = sorted(classes)
    names = {k: (stream_names or {}).get(k, k) for k in streams}
    n_win_all = int(np.floor((duration_s - window_s) / stride_s + 1e-9)) + 1
    shard_entries = []
    per_stream_stats = {}
    for si, subj in enumerate(subjects):
        for r in range(recordings_per_subject):
            rid = f"{subj}_r{r:02d}"
            order = np.random.default_rng([seed, si, r]).permutation(len(classes))
            n_seg = int(np.ceil(duration_s / segment_s))
            seg_cls = [order[i % len(classes)] for i in range(n_seg)]

            def cls_at(t):
                return np.asarray(seg_cls)[np.minimum((np.asarray(t) // segment_s).astype(int), n_seg - 1)]

            starts = np.arange(n_win_all) * stride_s
            keep = np.setdiff1d(np.arange(n_win_all), np.asarray(drop_windows, dtype=np.int64))
            starts = starts[keep]
            n_win = len(starts)
            ends = starts + window_s
            labels, purity = [], []
            for s, e in zip(starts, ends):
                cover = np.zeros(len(classes))
                edges = np.unique(np.concatenate([[s, e], np.arange(0, duration_s, segment_s)]))
                edges = edges[(edges >= s) & (edges <= e)]
                for a, b in zip(edges[:-1], edges[1:]):
                    cover[cls_at((a + b) / 2)] += b - a
                labels.append(classes[int(np.argmax(cover))])
                purity.append(cover.max() / window_s)
            path = out / f"{rid}.h5"
            with h5py.File(path, "w") as f:
                _enc(f, "dcat-shard")
                f.attrs.update({"recording_id": rid, "subject": subj, "session": "", "n_windows": n_win,
                                "window_s": float(window_s), "stride_s": float(stride_s),
                                "tool_version": "0.1.0",
                                "created_utc": datetime.now(timezone.utc).isoformat(),
                                "args_json": json.dumps({"window_s": window_s, "stride_s": stride_s}),
                                "meta_json": json.dumps({"subject": subj}),
                                "sources_json": "[]", "checks_json": "{}"})
                w = f.create_group("windows")
                _enc(w, "dcat-windows")
                w.create_dataset("start_s", data=starts.astype(np.float64))
                w.create_dataset("end_s", data=ends.astype(np.float64))
                w.create_dataset("label", data=np.array(labels, dtype=object), dtype=STR)
                w.create_dataset("label_purity", data=np.array(purity, dtype=np.float32))
                sg = f.create_group("streams")
                for kind in streams:
                    # one generator per (recording, kind): a stream's data does not depend on the others
                    rng = np.random.default_rng([seed, si, r, ("imu", "video", "audio").index(kind)])
                    g = sg.create_group(names[kind])
                    _enc(g, "dcat-stream")
                    if kind == "imu":
                        rate, unit = imu_hz, "m/s^2"
                    elif kind == "video":
                        rate, unit = video_fps, "uint8 RGB"
                    else:
                        rate, unit = audio_fps, "log mel power"
                    t_per = int(round(window_s * rate))
                    n_tot = int(round(duration_s * rate))
                    tt = np.arange(n_tot) / rate
                    c_t = cls_at(tt)
                    if kind == "imu":
                        x = rng.normal(size=(n_tot, imu_channels)).astype(np.float32)
                        x += si * 0.3
                        for c in range(len(classes)):
                            m = c_t == c
                            x[m, c % imu_channels] += imu_snr * np.sin(2 * np.pi * (1 + c) * tt[m])
                        x = x.astype(np.float32)
                    elif kind == "video":
                        S = video_size
                        x = np.clip(rng.normal(100, 20, size=(n_tot, S, S, 3)), 0, 255)
                        for k in range(n_tot):
                            c = c_t[k]
                            x[k, :, (k % S): (k % S) + max(2, S // 4), c % 3] += 80 * video_snr
                        x = np.clip(x, 0, 255).astype(np.uint8)
                    else:
                        x = rng.normal(-5, 1, size=(n_tot, n_mels)).astype(np.float32)
                        for c in range(len(classes)):
                            x[c_t == c, c % n_mels] += audio_snr
                    # each sample stored once: the runs the windows cover, plus where each window starts
                    first = np.minimum(np.round(starts * rate).astype(np.int64), n_tot - t_per)
                    runs, wstart = pack_windows(first, t_per)
                    arr = np.concatenate([x[a:b] for a, b in runs])
                    g.create_dataset("window_start", data=wstart)
                    g.attrs.update({"kind": kind, "rate_hz": float(rate), "samples_per_window": t_per,
                                    "unit": unit, "resample_method": "none",
                                    "declared_rate_hz": float(rate), "measured_rate_hz": float(rate),
                                    "clock_offset_s": 0.0, "lag_applied_s": 0.0})
                    if kind == "imu":
                        g.create_dataset("data", data=arr)
                        chans = [f"acc_{a}" for a in "xyz"] + [f"gyr_{a}" for a in "xyz"]
                        chans = (chans + [f"ch{i}" for i in range(imu_channels)])[:imu_channels]
                        g.attrs["channels"] = chans
                        g.attrs["units"] = json.dumps({c: "m/s^2" for c in chans})
                        flat = arr.astype(np.float64)
                        g.create_dataset("sum", data=flat.sum(0))
                        g.create_dataset("sumsq", data=(flat ** 2).sum(0))
                        g.create_dataset("count", data=np.int64(flat.shape[0]))
                        g.create_dataset("mean", data=flat.mean(0).astype(np.float32))
                        g.create_dataset("std", data=flat.std(0).astype(np.float32))
                        st = per_stream_stats.setdefault(names[kind], [0.0, 0.0, 0])
                        st[0] = st[0] + flat.sum(0)
                        st[1] = st[1] + (flat ** 2).sum(0)
                        st[2] += flat.shape[0]
                    elif kind == "video":
                        g.create_dataset("frames", data=arr)
                    else:
                        g.create_dataset("logmel", data=arr)
                        g.attrs.update({"sample_rate_hz": 16000, "n_fft": 400,
                                        "hop_length": int(round(16000 / audio_fps)), "n_mels": n_mels,
                                        "fmin_hz": 0.0, "fmax_hz": 8000.0})
            shard_entries.append({"file": path.name, "recording_id": rid, "subject": subj, "session": "",
                                  "n_windows": n_win,
                                  "windows_per_class": {c: labels.count(c) for c in classes if c in labels}})
    stream_info = {}
    for kind in streams:
        nm = names[kind]
        with h5py.File(out / shard_entries[0]["file"], "r") as f:
            g = f["streams"][nm]
            ds = g["data"] if kind == "imu" else g["frames"] if kind == "video" else g["logmel"]
            info = {"kind": kind, "rate_hz": float(g.attrs["rate_hz"]),
                    "shape": [int(g.attrs["samples_per_window"]), *ds.shape[1:]], "dtype": str(ds.dtype)}
            if kind == "imu":
                info["channels"] = [str(c) for c in g.attrs["channels"]]
        if kind == "imu":
            s, ss, n = per_stream_stats[nm]
            mean = s / n
            info.update({"mean": mean.tolist(), "std": np.sqrt(np.maximum(ss / n - mean ** 2, 0)).tolist()})
        stream_info[nm] = info
    wpc, wps = {}, {}
    for e in shard_entries:
        for c, n in e["windows_per_class"].items():
            wpc[c] = wpc.get(c, 0) + n
        wps[e["subject"]] = wps.get(e["subject"], 0) + e["n_windows"]
    manifest = {"encoding-type": "dcat-manifest", "encoding-version": "1", "tool_version": "0.1.0",
                "classes": classes, "settings": {"window_s": window_s, "stride_s": stride_s},
                "streams": stream_info, "shards": shard_entries,
                "n_windows": sum(e["n_windows"] for e in shard_entries),
                "windows_per_class": wpc, "windows_per_subject": wps}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest
