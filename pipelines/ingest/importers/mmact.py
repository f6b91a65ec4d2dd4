"""MMAct (Kong et al., ICCV 2019), trimmed release -> dcat raw layout (``dcat import mmact``).

What the dataset holds (trimmed clips, one action per file name):

* videos ``<...>/subjectN/camM/sceneK/sessionJ/<action>.mp4`` (4 static cameras; the challenge
  release puts ``camM`` before ``subjectN``: the path components are matched by name, in any order);
* sensors ``<...>/{acc_phone_clip,acc_watch_clip,gyro_clip,orientation_clip}/subjectN/sceneK/sessionJ/
  <action>.csv`` with no camera level ("sensor has NO view definition"): one sensor clip belongs to the
  four camera views of the same subject/scene/session/action;
* ``acc_phone``, ``gyro``, ``orientation``: the smartphone in the right trouser pocket; ``acc_watch``:
  the smartwatch on the right hand;
* CSV rows ``<time>,x,y,z`` (orientation ``<time>,azimuth,pitch,roll``), usually without a header
  row (a ``time,...`` header is accepted), time a local (JST) wall-clock string
  ``YYYYmmdd_HH:MM:SS[.fff]`` (the fraction is sometimes missing: read as .000);
* accelerometer in m/s^2 at ~100 Hz, gyroscope ~50 Hz, orientation at no fixed rate;
* action file names in snake case, some capitalised (``Carrying_light``): labels are lower-cased; in
  scene3 (the desk scene) ``using_phone``/``talking_on_phone`` are the classes ``using_phone_desk``/
  ``talking_on_phone_desk`` (35 file names + 2 aliases = 37 classes).

What the import writes: one recording per video clip, ``subject1_cam2_scene3_session1_walking``
(``video.mp4`` hard-linked, never re-encoded) with the clip's sensor streams ``imu_acc_phone``,
``imu_acc_watch``, ``imu_gyro``, ``imu_orientation`` (the same sensor data in each camera's
recording); a sensor clip without any video becomes an IMU-only recording without the ``camM`` part.
``t`` is seconds from the stream's first row; ``clock_offset_s`` puts each stream on the wall clock
relative to the clip's earliest sensor row (phone streams share ``clock: phone``, the watch has
``clock: watch``; the video is assumed to start at that earliest row: the offset between the cameras
and the sensors is not documented). An empty or unreadable sensor file drops that stream only
(``missing_streams`` in meta.json); a clip with nothing readable is skipped and reported.

Protocols (``splits.json``): ``cross-subject`` (subjects 1-16 train, 17-20 test), ``cross-session``
(sessions 1-4 train, 5 test), ``cross-scene-challenge`` (scenes 1-3 train, scene 4 test: the
challenge's validation scene). Not written: cross-view (the paper names it, the cameras used were not
found; every recording keeps ``cam`` so any view split can be built) and the paper's cross-scene.

Sources: MMAct Challenge 2021 README (idx:38093778828: tree, phone/watch placement, "sensor has NO
view definition"); its sensor toolkit ``utils/time_series_classifiers.py`` (idx:38197514049:
``names=["time","x","y","z"]`` / ``["time","azimuth","pitch","roll"]``, ``%Y%m%d_%H:%M:%S.%f`` in
Asia/Tokyo, missing ``.fff``, "m/s^2 to g's", acc 100 Hz, gyro 50 Hz, capitalised file names,
cross-scene train scene1-3 / val scene4); split builder idx:13372024521 (cross-subject 17-20 test,
cross-session 5 test, scene3 aliases, ``Sensor_trimmed/<src>_clip/subjectN/sceneK/sessionJ``);
paper abstract (https://www.conftrace.com/papers/154757: 20 subjects, 37 classes, 4 scenes).
Assumed, not confirmed: gyroscope in rad/s and orientation in degrees (Android conventions); the
import reports a plausibility check of both.
"""

from __future__ import annotations

import csv
import os
import re
from datetime import date
from pathlib import Path

import numpy as np

from pipelines.ingest.importers.base import (DEG, DatasetImportError, DatasetInfo, ImportReport, RecordingWriter,
                                             write_splits)

# archive folder -> (stream name, channels, source unit, SI unit, factor, role, nominal rate, clock)
SENSORS = {
    "acc_phone_clip": ("imu_acc_phone", ["acc_x", "acc_y", "acc_z"], "m/s^2", "m/s^2", 1.0, "acc", 100.0, "phone"),
    "acc_watch_clip": ("imu_acc_watch", ["acc_x", "acc_y", "acc_z"], "m/s^2", "m/s^2", 1.0, "acc", 100.0, "watch"),
    "gyro_clip": ("imu_gyro", ["gyr_x", "gyr_y", "gyr_z"], "rad/s", "rad/s", 1.0, "gyr", 50.0, "phone"),
    "orientation_clip": ("imu_orientation", ["azimuth", "pitch", "roll"], "deg", "rad", DEG, "other", None, "phone"),
}
DEVICE = {"acc_phone_clip": "smartphone, right trouser pocket", "acc_watch_clip": "smartwatch, right hand",
          "gyro_clip": "smartphone, right trouser pocket", "orientation_clip": "smartphone, right trouser pocket"}
DESK_SCENE = "scene3"
DESK_ALIAS = {"using_phone": "using_phone_desk", "talking_on_phone": "talking_on_phone_desk"}
CLASSES = ("carrying", "carrying_heavy", "carrying_light", "checking_time", "closing", "crouching", "entering",
           "exiting", "fall", "jumping", "kicking", "loitering", "looking_around", "opening", "picking_up",
           "pointing", "pulling", "pushing", "running", "setting_down", "standing", "talking", "talking_on_phone",
           "throwing", "transferring_object", "using_phone", "walking", "waving_hand", "drinking", "pocket_in",
           "pocket_out", "sitting", "sitting_down", "standing_up", "talking_on_phone_desk", "using_pc",
           "using_phone_desk")
PROTOCOL_SOURCE = ("MMAct: cross-subject (subjects 1-16 train, 17-20 test) and cross-session (sessions 1-4 train, "
                   "5 test) as in a public MMAct split builder; cross-scene-challenge (scenes 1-3 train, scene 4 "
                   "test) as in the MMAct Challenge 2021 sensor toolkit (scene 4 was the challenge's validation "
                   "scene). Cross-view is not written: its cameras were not found in a source.")
_PART = re.compile(r"^(subject|cam|scene|session)(\d+)$", re.IGNORECASE)
_TIME = re.compile(r"^\s*(\d{4})(\d{2})(\d{2})_(\d{1,2}):(\d{2}):(\d{2}(?:\.\d*)?)\s*$")


def _parts(rel: tuple[str, ...]) -> dict[str, str]:
    """``{"subject": "subject1", "cam": "cam2", ...}`` from the folder names of a path (any order)."""
    out = {}
    for p in rel:
        m = _PART.match(p)
        if m:
            out[m.group(1).lower()] = f"{m.group(1).lower()}{int(m.group(2))}"
    return out


def scan(src: Path) -> tuple[dict, dict]:
    """Videos by (subject, cam, scene, session, action) and sensor CSVs by archive, then by
    (subject, scene, session, action); ``action`` is the lower-cased file stem."""
    videos: dict[tuple, Path] = {}
    sensors: dict[str, dict[tuple, Path]] = {k: {} for k in SENSORS}
    for root, dirs, files in os.walk(src):
        dirs.sort()
        rel = Path(root).relative_to(src).parts
        kind = next((p for p in rel if p in SENSORS), None)
        pp = _parts(rel)
        for name in sorted(files):
            stem, ext = os.path.splitext(name)
            ext = ext.lower()
            if kind and ext == ".csv" and {"subject", "scene", "session"} <= set(pp):
                key = (pp["subject"], pp["scene"], pp["session"], stem.strip().lower())
                sensors[kind].setdefault(key, Path(root) / name)
            elif not kind and ext == ".mp4" and {"subject", "cam", "scene", "session"} <= set(pp):
                key = (pp["subject"], pp["cam"], pp["scene"], pp["session"], stem.strip().lower())
                videos.setdefault(key, Path(root) / name)
    return videos, sensors


def _seconds(s: str) -> float | None:
    """Seconds since 0001-01-01 of a ``YYYYmmdd_HH:MM:SS[.fff]`` local time (None if not one)."""
    m = _TIME.match(s)
    if not m:
        return None
    y, mo, d, hh, mm = (int(m.group(i)) for i in range(1, 6))
    try:
        day = date(y, mo, d).toordinal()
    except ValueError:
        return None
    return day * 86400.0 + hh * 3600.0 + mm * 60.0 + float(m.group(6))


def read_sensor_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(wall-clock seconds per row, values [N, 3]) of one sensor clip; an optional header row is
    skipped. Raises ValueError naming the line of an unreadable row; empty files give N = 0."""
    times, vals = [], []
    with open(path, newline="", encoding="utf-8-sig") as f:
        for i, row in enumerate(csv.reader(f), start=1):
            if not row or all(not c.strip() for c in row):
                continue
            t = _seconds(row[0])
            if t is None:
                if i == 1 and not times:  # a header row such as time,x,y,z
                    continue
                raise ValueError(f"line {i}: {row[0][:40]!r} is not a YYYYmmdd_HH:MM:SS[.fff] time")
            if len(row) < 4:
                raise ValueError(f"line {i}: {len(row)} fields, expected time and 3 values")
            try:
                vals.append([float(c) for c in row[1:4]])
            except ValueError:
                raise ValueError(f"line {i}: non-numeric value in {row[1:4]}") from None
            times.append(t)
    return np.asarray(times, dtype=np.float64), np.asarray(vals, dtype=np.float64).reshape(-1, 3)


def _stream_times(wall: np.ndarray, rate: float | None) -> tuple[np.ndarray, str]:
    """Seconds from the first row: the rows' own times when strictly increasing, else row index /
    rate (the nominal rate, or the clip's mean rate), as the authors' toolkit does."""
    rel = np.round(wall - wall[0], 3)
    if len(rel) < 2 or np.all(np.diff(rel) > 0):
        return rel, "row times"
    span = rel[-1]
    r = rate or ((len(rel) - 1) / span if span > 0 else None)
    if r is None:
        raise ValueError("all rows have the same time and the stream has no nominal rate")
    return np.arange(len(rel)) / r, f"row index / {r:.4g} Hz (row times not strictly increasing)"


def load_clip(key: tuple, sensors: dict) -> tuple[dict, dict[str, str]]:
    """The clip's readable sensor streams {archive: (wall, values, path)} and why the others are missing."""
    got, missing = {}, {}
    for kind in SENSORS:
        path = sensors[kind].get(key)
        if path is None:
            missing[kind] = "no file"
            continue
        try:
            wall, vals = read_sensor_csv(path)
        except (ValueError, OSError, UnicodeDecodeError) as e:
            missing[kind] = f"unreadable {path.name}: {e}"
            continue
        if len(wall) == 0:
            missing[kind] = f"empty file {path.name}"
            continue
        got[kind] = (wall, vals, path)
    return got, missing


def _label(action: str, scene: str) -> str:
    return DESK_ALIAS.get(action, action) if scene == DESK_SCENE else action


class _Checks:
    """Plausibility of the assumed units over the whole import (reported as notes)."""

    def __init__(self):
        self.acc_norm: dict[str, list[float]] = {"acc_phone_clip": [], "acc_watch_clip": []}
        self.gyro_big = self.gyro_n = self.ori_small = self.ori_n = 0

    def add(self, kind: str, vals: np.ndarray) -> None:
        if kind in self.acc_norm:
            self.acc_norm[kind].append(float(np.median(np.linalg.norm(vals, axis=1))))
        elif kind == "gyro_clip":
            self.gyro_n += 1
            self.gyro_big += bool(np.nanmax(np.abs(vals)) > 35.0)  # > 2000 deg/s in rad/s: deg/s data
        elif kind == "orientation_clip":
            self.ori_n += 1
            self.ori_small += bool(np.nanmax(np.abs(vals)) <= 2 * np.pi)

    def notes(self) -> list[str]:
        out = []
        for kind, v in self.acc_norm.items():
            if v:
                med = float(np.median(v))
                hint = "" if 7.0 < med < 13.0 else " (not ~9.8: check the unit)"
                out.append(f"{kind}: median |acc| {med:.2f} m/s^2 over {len(v)} clips{hint}")
        if self.gyro_n:
            out.append(f"gyro_clip: read as rad/s (assumed); {self.gyro_big} of {self.gyro_n} clips exceed 35 rad/s")
        if self.ori_n:
            out.append(f"orientation_clip: read as degrees (assumed) and written in rad; {self.ori_small} of "
                       f"{self.ori_n} clips stay within +-2*pi (radian-like)")
        return out


def _write(out: Path, rid: str, parts: dict, action: str, video: Path | None, got: dict, missing: dict,
           media: str) -> str:
    """One recording folder: the video (if any) and the sensor streams of its clip."""
    w = RecordingWriter(out, rid, parts["subject"], media, session=f"{parts['scene']}_{parts['session']}")
    if video is not None:
        w.add_media("video", "video", video, filename="video.mp4")
    ref = min((g[0][0] for g in got.values()), default=None)
    for kind, (wall, vals, path) in got.items():
        name, chans, src_u, si_u, factor, role, rate, clock = SENSORS[kind]
        t, t_from = _stream_times(wall, rate)
        fields = {"clock": clock, "clock_offset_s": round(float(wall[0] - ref), 3), "device": DEVICE[kind],
                  "source_file": path.name, "time_from": t_from, "roles": {c: role for c in chans}}
        if rate:
            fields["rate_hz"] = rate
        w.add_imu(name, t, vals * factor, chans, {c: si_u for c in chans}, source_units={c: src_u for c in chans},
                  **fields)
    w.set_label(_label(action, parts["scene"]))
    extra = {"dataset": "mmact", "scene": parts["scene"], "mmact_session": parts["session"], "action": action}
    if "cam" in parts:
        extra["cam"] = parts["cam"]
    if ref is not None:
        extra["sensor_start_local"] = _iso(ref)
    if missing:
        extra["missing_streams"] = {SENSORS[k][0]: why for k, why in missing.items()}
    return w.save(**extra)


def _iso(sec: float) -> str:
    day, rest = divmod(sec, 86400.0)
    hh, rest = divmod(rest, 3600.0)
    mm, ss = divmod(rest, 60.0)
    return f"{date.fromordinal(int(day)).isoformat()}T{int(hh):02d}:{int(mm):02d}:{ss:06.3f}+09:00"


def _num(name: str) -> int:
    return int(re.sub(r"\D", "", name) or 0)


def protocols(recs: dict[str, dict]) -> dict[str, dict[str, list[str]]]:
    """The protocols from each recording's subject/scene/session (those with train and test)."""
    rules = {"cross-subject": ("subject", lambda n: n >= 17),
             "cross-session": ("mmact_session", lambda n: n == 5),
             "cross-scene-challenge": ("scene", lambda n: n == 4)}
    out = {}
    for name, (field, is_test) in rules.items():
        parts = {"train": [], "test": []}
        for rid, info in recs.items():
            parts["test" if is_test(_num(info[field])) else "train"].append(rid)
        if parts["train"] and parts["test"]:
            out[name] = parts
    return out


def _wanted(subjects: list[str] | None) -> set[str] | None:
    if not subjects:
        return None
    return {f"subject{int(s)}" if s.strip().isdigit() else s.strip().lower() for s in subjects}


def prepare(src: Path, out: Path, subjects: list[str] | None = None, media: str = "link",
            cams: list[str] | None = None, **options) -> ImportReport:
    """Import the trimmed MMAct clips under ``src`` into ``out`` (``cams``: only these camera views)."""
    src, out = Path(src), Path(out)
    rep = ImportReport("mmact", str(out))
    videos, sensors = scan(src)
    if not videos and not any(sensors.values()):
        raise DatasetImportError(f"{src}: no MMAct clips found (expected <...>/subjectN/camM/sceneK/sessionJ/"
                                 "<action>.mp4 and/or acc_phone_clip/subjectN/sceneK/sessionJ/<action>.csv)")
    want, want_cams = _wanted(subjects), {c.lower() for c in cams} if cams else None
    by_clip: dict[tuple, dict[str, Path]] = {}
    for (subj, cam, scene, sess, action), p in videos.items():
        if want_cams is None or cam in want_cams:
            by_clip.setdefault((subj, scene, sess, action), {})[cam] = p
    for kind in SENSORS:
        for key in sensors[kind]:
            by_clip.setdefault(key, {})
    checks, recs, n_missing = _Checks(), {}, 0
    for key in sorted(by_clip):
        subj, scene, sess, action = key
        if want is not None and subj not in want:
            continue
        got, missing = load_clip(key, sensors)
        for kind, g in got.items():
            checks.add(kind, g[1])
        base = {"subject": subj, "scene": scene, "session": sess}
        cams_of = by_clip[key]
        if not cams_of and not got:
            rep.skip(f"{subj}_{scene}_{sess}_{action}", None, "no video and no readable sensor file: "
                     + "; ".join(f"{k}: {v}" for k, v in missing.items()))
            continue
        targets = [(f"{subj}_{c}_{scene}_{sess}_{action}", {**base, "cam": c}, v) for c, v in sorted(cams_of.items())]
        targets = targets or [(f"{subj}_{scene}_{sess}_{action}", base, None)]
        n_missing += bool(missing) * len(targets)
        for rid, parts, video in targets:
            try:
                rep.written.append(_write(out, rid, parts, action, video, got, missing, media))
            except (ValueError, OSError) as e:
                rep.skip(rid, str(video) if video else None, str(e))
                continue
            recs[rid] = {"subject": subj, "scene": scene, "mmact_session": sess}
    if n_missing:
        rep.notes.append(f"{n_missing} recordings lack one or more sensor streams (no file, empty or unreadable): "
                         "see missing_streams in their meta.json")
    rep.notes.extend(checks.notes())
    unknown = sorted({_label(k[3], k[1]) for k in by_clip} - set(CLASSES))
    if unknown:
        rep.notes.append(f"labels outside the 37 MMAct classes: {', '.join(unknown)}")
    prot = protocols(recs)
    if prot:
        rep.protocols = write_splits(out, prot, source=PROTOCOL_SOURCE)
    missing_prot = sorted({"cross-subject", "cross-session", "cross-scene-challenge"} - set(prot))
    if missing_prot:
        rep.notes.append(f"protocols not written (no train or no test recordings here): {', '.join(missing_prot)}")
    return rep


INFO = DatasetInfo(
    name="mmact", title="MMAct (trimmed clips)",
    modalities="video (4 views) + phone acc/gyro/orientation + watch acc",
    subjects="20 (subject1..subject20)", classes="37 actions (35 file names + 2 desk-scene aliases)",
    url="https://mmact19.github.io/2019/ (on request, research licence)",
    protocols=("cross-subject", "cross-session", "cross-scene-challenge"), prepare=prepare,
    notes="one recording per camera view; sensor streams imu_acc_phone, imu_acc_watch, imu_gyro, imu_orientation; "
          "cross-view not written (cameras not confirmed)")
