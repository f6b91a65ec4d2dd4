"""Fixtures of the generic table importer's test (tests/test_import_table.py): small tables in the exact
form of PAMAP2 (Protocol/subjectNNN.dat: space separated, no header, 54 columns, timestamp in s at
100 Hz, activityID 0 = transient, heart rate NaN between its ~9 Hz samples), WISDM v1.1
(WISDM_ar_v1.1_raw.txt: ``user,activity,timestamp,x,y,z;`` with the trailing ';', ns timestamps at
20 Hz, malformed lines, a clock reset), a lab session CSV with a header (ms, g, deg/s, string labels)
and a video, and per-recording CSVs with a label table. Every builder returns what the test checks.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

PAMAP2_NAMES = {1: "lying", 4: "walking", 5: "running"}
# (activityID, seconds) per subject: transients (0) between the activities, as in the protocol files
PAMAP2_PLAN = [(0, 2.0), (1, 12.0), (0, 1.0), (4, 12.0), (0, 1.0), (5, 12.0), (0, 1.0)]


def write_mp4(path: Path, seconds: float, fps: float = 10.0, audio: bool = True, size: int = 32) -> None:
    """A small H.264 mp4 (moving gray ramp), with a mono AAC track when ``audio``."""
    from pipelines.synth.config import SynthConfig
    from pipelines.synth.video import _write_mp4

    n = int(round(seconds * fps))
    cfg = SynthConfig(video_size=size, fps=fps, audio_sr=16000, crf=35, keyframe_interval=10)
    frames = (np.full((size, size, 3), (7 * i) % 256, dtype=np.uint8) for i in range(n))
    tone = 0.1 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * 16000)) / 16000)
    snd = tone.astype(np.float32) if audio else None
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_mp4(path, frames, n, cfg, snd)


def _imu_block(rng, n: int, act: np.ndarray, t: np.ndarray) -> np.ndarray:
    """17 PAMAP2 columns of one IMU: temp, acc16 (3), acc6 (3), gyro (3), mag (3), orientation (4)."""
    amp = np.where(act == 5, 6.0, np.where(act == 4, 2.5, 0.2))
    acc = np.stack([amp * np.sin(2 * np.pi * 1.8 * t), 9.80665 + amp * np.cos(2 * np.pi * 1.8 * t),
                    0.3 * rng.standard_normal(n)], 1)
    gyr = np.stack([amp * 0.3 * np.sin(2 * np.pi * 1.8 * t + 1)] * 3, 1) + 0.01 * rng.standard_normal((n, 3))
    mag = np.tile([20.0, -35.0, 12.0], (n, 1)) + rng.standard_normal((n, 3))
    return np.column_stack([np.full(n, 31.5), acc, acc * 0.98, gyr, mag, np.tile([1.0, 0, 0, 0], (n, 1))])


def pamap2(root: Path, subjects=(101, 102)) -> dict:
    """``root/Protocol/subject<id>.dat`` per subject; returns the known values the test checks."""
    (root / "Protocol").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    acts = np.concatenate([np.full(int(round(s * 100)), a) for a, s in PAMAP2_PLAN])
    n = len(acts)
    t = 5.64 + np.arange(n) / 100.0  # PAMAP2 files start at a few seconds
    for sid in subjects:
        hr = np.where(np.arange(n) % 11 == 0, 100.0, np.nan)
        blocks = [_imu_block(rng, n, acts, t) for _ in range(3)]
        blocks[0][500:505, 1:4] = np.nan  # a dropped packet of the hand IMU
        table = np.column_stack([t, acts, hr, *blocks])
        assert table.shape[1] == 54
        lines = [" ".join(["%.2f" % r[0], "%d" % r[1]] + ["NaN" if math.isnan(v) else "%.6g" % v for v in r[2:]])
                 for r in table]
        (root / "Protocol" / f"subject{sid}.dat").write_text("\n".join(lines) + "\n")
    return {"n": n, "t0": 5.64, "first_acc_y": float(blocks[2][0, 2]), "acts": acts}


PAMAP2_TOML = """
[files]
glob = "Protocol/subject*.dat"
sep = "whitespace"
header = false

[subject]
pattern = 'subject(\\d+)\\.dat$'

[time]
column = 1
unit = "s"
rate_hz = 100

[streams.imu_hand]
acc = { columns = [5, 6, 7], unit = "m/s^2" }
gyr = { columns = [11, 12, 13], unit = "rad/s" }
mag = { columns = [14, 15, 16], unit = "uT" }

[streams.imu_chest]
acc = { columns = [22, 23, 24], unit = "m/s^2" }
gyr = { columns = [28, 29, 30], unit = "rad/s" }

[streams.imu_ankle]
acc = { columns = [39, 40, 41], unit = "m/s^2" }
gyr = { columns = [45, 46, 47], unit = "rad/s" }

[labels]
column = 2
ignore = ["0"]
names = { "1" = "lying", "4" = "walking", "5" = "running" }

[protocols.xsub]
train = ["101"]
test = ["102"]
"""


def wisdm(root: Path) -> dict:
    """``root/WISDM_ar_v1.1_raw.txt``: two users, a 30 s gap between activities, a clock reset, a
    repeated timestamp, a short line and one with an empty z (NaN)."""
    lines = []
    step = 50_000_000  # 20 Hz in ns
    rng = np.random.default_rng(4)

    def run(user: int, act: str, t0: int, n: int) -> int:
        for i in range(n):
            x, y, z = rng.normal(0, 2 if act == "Jogging" else 0.3, 3) + [0.0, 9.5, 0.8]
            lines.append(f"{user},{act},{t0 + i * step},{x:.8g},{y:.8g},{z:.8g};")
        return t0 + n * step

    t = run(33, "Jogging", 49105962326000, 400)        # 20 s
    t = run(33, "Walking", t, 400)                     # 20 s, contiguous: one recording, two segments
    lines.append(lines[-1])                            # a repeated line (same timestamp): dropped
    run(33, "Walking", t + 30 * 10**9, 300)            # after a 30 s gap: a second recording (split_gap_s)
    lines.append("33,Walking,")                        # malformed: too few fields
    t = run(17, "Walking", 22_000_000_000, 400)
    lines.append(f"17,Walking,{t},1.0,9.6,;")          # empty z -> NaN, kept
    run(17, "Jogging", 1_000_000_000, 400)             # a clock reset (time goes back): a new recording
    return {"text": "\n".join(lines) + "\n", "lines": lines}


WISDM_TOML = """
[files]
glob = "WISDM_ar_v1.1_raw.txt"
sep = ","
header = false
columns = ["user", "activity", "timestamp", "x", "y", "z"]
strip = ";"

[subject]
column = "user"

[time]
column = "timestamp"
unit = "ns"
rate_hz = 20
split_gap_s = 1.0

[streams.imu]
acc = { columns = ["x", "y", "z"], unit = "m/s^2" }

[labels]
column = "activity"
"""


def lab_sessions(root: Path) -> dict:
    """``root/sessions/<subject>_<session>.csv`` (header; time in ms; g; deg/s; string labels, empty =
    unlabelled) and a video beside each but P02_S1's."""
    d = root / "sessions"
    d.mkdir(parents=True, exist_ok=True)
    n, rate = 20 * 50, 50.0
    t_ms = 1000.0 + np.arange(n) * 20.0
    labels = np.array(["walk"] * 400 + [""] * 100 + ['"sit, relaxed"'] * 500, dtype=object)  # quoted: a comma
    for name in ("P01_S1", "P01_S2", "P02_S1"):
        rows = ["time_ms,ax_g,ay_g,az_g,gx_dps,gy_dps,gz_dps,label"]
        for i in range(n):
            w = labels[i] == "walk"
            rows.append(f"{t_ms[i]:.0f},{0.5 if w else 0.0},1,0,{90.0 if w else 0.0},{-180 if w else 0},0,{labels[i]}")
        (d / f"{name}.csv").write_text("\n".join(rows) + "\n")
        if name != "P02_S1":
            write_mp4(d / f"{name}.mp4", n / rate, audio=(name == "P01_S1"))
    return {"n": n, "rate": rate}


LAB_TOML = """
[files]
glob = "sessions/*.csv"

[subject]
pattern = '(?P<subject>P\\d+)_(?P<session>S\\d+)'

[session]
pattern = '(?P<subject>P\\d+)_(?P<session>S\\d+)'

[time]
column = "time_ms"
unit = "ms"
rate_hz = 50

[streams.imu]
acc = { columns = ["ax_g", "ay_g", "az_g"], unit = "g" }
gyr = { columns = ["gx_dps", "gy_dps", "gz_dps"], unit = "deg/s" }

[labels]
column = "label"

[video]
file = "{dir}/{stem}.mp4"
"""


def trials_with_label_table(root: Path) -> dict:
    """``root/trials/<subject>/trial<k>.csv`` (no time column: 50 Hz rows; acc in raw counts of
    1 mg each) and ``root/labels.csv`` naming each trial's class; trial3 of s2 has no row."""
    truth = {}
    for subj in ("s1", "s2"):
        for k, cls in ((1, "jump"), (2, "squat"), (3, "jump")):
            p = root / "trials" / subj / f"trial{k}.csv"
            p.parent.mkdir(parents=True, exist_ok=True)
            amp = 1000 if cls == "jump" else 200
            rows = ["acc_x,acc_y,acc_z"] + [f"{int(amp * math.sin(i / 5))},1000,0" for i in range(300)]
            p.write_text("\n".join(rows) + "\n")
            truth[f"{subj}_trial{k}"] = cls
    rows = ["trial_file,class,start_s,end_s"]
    for rid, cls in truth.items():
        if rid != "s2_trial3":
            subj, trial = rid.split("_")
            rows.append(f"trials/{subj}/{trial}.csv,{cls},0.5,5.5")
    rows.append("trials/s9/trial1.csv,jump,0,1")  # a row for a file that does not exist
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return truth


TRIALS_TOML = """
[files]
glob = "trials/*/*.csv"

[subject]
pattern = 'trials/(s\\d+)/'

[time]
rate_hz = 50

[streams.imu]
acc = { columns = ["acc_x", "acc_y", "acc_z"], unit = "mg" }

[label_table]
file = "labels.csv"
recording = "trial_file"
label = "class"
start = "start_s"
end = "end_s"
"""
