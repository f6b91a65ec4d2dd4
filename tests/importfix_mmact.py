"""A tiny MMAct trimmed release in its exact layout (for tests/test_import_mmact.py).

``Video_trimmed/subjectN/camM/sceneK/sessionJ/<action>.mp4`` and ``Sensor_trimmed/<src>_clip/subjectN/
sceneK/sessionJ/<action>.csv``, the CSVs without a header, first column a JST wall-clock string
``YYYYmmdd_HH:MM:SS.fff``; acc in m/s^2 at 100 Hz, gyro 50 Hz, orientation in degrees at ~30 Hz; quirks:
a capitalised file name, an empty CSV, a row without ``.fff``, an unreadable CSV, a gyro clip with a
repeated time, a sensor clip without video, and a clip with nothing readable.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from importfix_common import write_video

SECONDS = 4.0
BASE = (2018, 10, 11, 10, 0, 0.0)  # 2018-10-11 10:00:00.000 JST
G_PHONE = (0.1, 9.80665, 0.2)  # m/s^2 as stored (gravity along y)


def stamp(sec: float, frac: bool = True) -> str:
    """``20181011_10:00:SS.fff`` for ``sec`` seconds after BASE (no fraction when ``frac`` is False)."""
    ms = int(round(sec * 1000))
    hh, mm = 10, ms // 60000
    s, f = divmod(ms % 60000, 1000)
    txt = f"20181011_{hh:02d}:{mm:02d}:{s:02d}"
    return f"{txt}.{f:03d}" if frac else txt


def write_sensor(path: Path, times: np.ndarray, vals: np.ndarray, no_frac_row: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (t, v) in enumerate(zip(times, vals)):
        frac = not (i == no_frac_row)
        lines.append(f"{stamp(t, frac)},{v[0]:.6f},{v[1]:.6f},{v[2]:.6f}")
    path.write_text("\n".join(lines) + "\n")


def _acc(n: int, t0: float, rate: float, seed: int, gravity=G_PHONE) -> tuple[np.ndarray, np.ndarray]:
    t = t0 + np.arange(n) / rate
    rng = np.random.default_rng(seed)
    v = np.asarray(gravity) + 0.5 * np.sin(2 * np.pi * 1.5 * t)[:, None] + 0.05 * rng.standard_normal((n, 3))
    return t, v


# (subject, scene, session, action file stem of the sensors, video stem, cams, clip start s after BASE)
CLIPS = [
    ("subject1", "scene1", "session1", "walking", "walking", ("cam1", "cam2"), 0.0),
    ("subject1", "scene3", "session5", "using_phone", "using_phone", ("cam1",), 10.0),
    ("subject2", "scene1", "session1", "walking", "walking", ("cam1",), 20.0),
    ("subject2", "scene4", "session2", "Carrying_light", "carrying_light", ("cam1",), 30.0),
    ("subject17", "scene1", "session1", "walking", "walking", ("cam1",), 40.0),
    ("subject17", "scene3", "session5", "using_phone", "using_phone", ("cam2",), 50.0),
    ("subject17", "scene2", "session3", "jumping", None, (), 60.0),  # sensors only
]


def build(root: Path) -> Path:
    """Write the fixture under ``root/MMAct``; returns that folder."""
    top = root / "MMAct"
    sens = top / "Sensor_trimmed"
    for k, (subj, scene, sess, stem, vstem, cams, t0) in enumerate(CLIPS):
        for cam in cams:
            write_video(top / "Video_trimmed" / subj / cam / scene / sess / f"{vstem}.mp4", SECONDS, 30,
                        seed=k, size=64)
        rel = Path(subj) / scene / sess
        t, v = _acc(int(SECONDS * 100), t0, 100.0, k)
        no_frac = 100 if subj == "subject17" else None  # one row of subject17's phone clip without ".fff"
        write_sensor(sens / "acc_phone_clip" / rel / f"{stem}.csv", t, v, no_frac_row=no_frac)
        watch_name = "Walking.csv" if (subj, scene) == ("subject1", "scene1") else f"{stem}.csv"
        wpath = sens / "acc_watch_clip" / rel / watch_name
        if subj == "subject2" and stem == "walking":
            wpath.parent.mkdir(parents=True, exist_ok=True)
            wpath.write_bytes(b"")  # an empty clip
        else:
            t, v = _acc(int(SECONDS * 100), t0 + 0.05, 100.0, 100 + k, gravity=(9.80665, 0.0, 0.0))
            write_sensor(wpath, t, v)
        gpath = sens / "gyro_clip" / rel / f"{stem}.csv"
        if subj == "subject2" and stem == "walking":
            gpath.parent.mkdir(parents=True, exist_ok=True)
            gpath.write_text(f"{stamp(t0)},0.1,0.2,0.3\nnot a time,1,2,3\n")  # unreadable line 2
        else:
            tg = t0 + 0.01 + np.arange(int(SECONDS * 50)) / 50.0
            if subj == "subject1" and scene == "scene3":
                tg[10] = tg[9]  # a repeated time: the import falls back to row index / 50 Hz
            write_sensor(gpath, tg, 0.5 * np.stack([np.sin(tg), np.cos(tg), 0 * tg], 1))
        to = t0 + np.cumsum(np.full(int(SECONDS * 30), 1 / 30) + 0.002 * (np.arange(int(SECONDS * 30)) % 3)) - 1 / 30
        write_sensor(sens / "orientation_clip" / rel / f"{stem}.csv", to,
                     np.tile([90.0, -45.0, 180.0], (len(to), 1)))
    # a clip with no video whose only sensor file is empty: reported, not imported
    p = sens / "acc_phone_clip" / "subject2" / "scene2" / "session1" / "kicking.csv"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"")
    return top
