"""UTD-MHAD (RGB video + one wearable inertial sensor, 27 actions, 8 subjects) into dcat's raw layout.

One recording per trial ``a{action}_s{subject}_t{trial}``: the Kinect RGB ``.avi`` hard-linked (or
copied) as it is, the inertial ``.mat`` (variable ``d_iner``, N x 6: acc x/y/z in g, gyro x/y/z in
deg/s, 50 Hz, no time column) written as ``imu.csv`` in m/s^2 and rad/s with ``t = i / 50``, and the
action's name as the whole-recording label. Depth and skeleton are not imported. The cross-subject
protocol (odd subjects train, even subjects test) goes to ``splits.json``.

Layout, formats and protocol, and the sources that confirm them:
- Official page https://www.utdallas.edu/~kehtar/UTD-MHAD.html (Chen, Jafari, Kehtarnavaz, ICIP 2015):
  one Kinect, colour 640x480 at "approximately 30 frames per second"; a 9-axis inertial sensor built
  at UT Dallas; the four modalities "temporally synchronized".
- The rest of the official text, quoted in a public loader (UTD_MHAD_HAR_DATA, data_loaders): the 27
  action names, sensor on the right wrist for actions 1-21 and the right thigh for 22-27, "sampling
  rate ... 50 Hz", range +-8 g and +-1000 degrees/second; ``loadmat(f)["d_iner"]`` columns
  acc_x, acc_y, acc_z, gyr_x, gyr_y, gyr_z (also lalasray/Real2Sim loader/load_mat.py).
- File names ``a{1..27}_s{1..8}_t{1..4}_{color,inertial,...}.{avi,mat}`` in ``RGB/`` and
  ``Inertial/`` (download zips RGB.zip, Inertial.zip from http://www.utdallas.edu/~kehtar/UTD-MAD/);
  861 of 864 trials released, a8_s1_t4, a23_s6_t4 and a27_s8_t4 absent (several public loaders).
  Matched by the regex below anywhere in a file's name, in any folder, so mirrors that split RGB into
  parts or zips unpacked with ``Inertial\\a1_s1_t1_inertial.mat`` as a literal name still import.
- Cross-subject protocol: subjects 1, 3, 5, 7 train, 2, 4, 6, 8 test (431 / 430 trials; ICIP 2015
  and the loaders that reproduce it); ``cross-subject-val`` also holds subject 7 out for validation
  (train 1, 3, 5; as in CMKM-style configs, MartijnHilders/No-Negative-Sample-SSL configs/dataset_configs.yaml).

Units are not stated in the official text (only the ranges): g and deg/s are assumed, and each
trial is checked: a median acceleration norm above 4 (impossible in g for these actions, about 9.8
in m/s^2) is taken as m/s^2, recorded in ``source_units`` and reported in the import notes.
A trial without its RGB video or its inertial file is skipped and reported (dcat's cross-modal
training needs both streams of a recording).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from pipelines.ingest.importers.base import (
    DEG,
    DatasetImportError,
    DatasetInfo,
    G,
    ImportReport,
    RecordingWriter,
    write_splits,
)

NAME = "utd-mhad"
RATE_HZ = 50.0
NAME_RE = re.compile(r"a(\d+)_s(\d+)_t(\d+)_(color|inertial)\.(avi|mat)$", re.IGNORECASE)
CHANNELS = ["acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z"]
ROLES = {c: c[:3] for c in CHANNELS}
#: a median |acc| above this (in the file's unit) means the file holds m/s^2, not g
MS2_NORM_THRESHOLD = 4.0
ACTIONS = (
    "right arm swipe to the left", "right arm swipe to the right", "right hand wave", "two hand front clap",
    "right arm throw", "cross arms in the chest", "basketball shoot", "right hand draw x",
    "right hand draw circle (clockwise)", "right hand draw circle (counter clockwise)", "draw triangle",
    "bowling (right hand)", "front boxing", "baseball swing from right", "tennis right hand forehand swing",
    "arm curl (two arms)", "tennis serve", "two hand push", "right hand knock on door",
    "right hand catch an object", "right hand pick up and throw", "jogging in place", "walking in place",
    "sit to stand", "stand to sit", "forward lunge (left foot forward)", "squat (two arms stretch out)",
)
KNOWN_MISSING = ("a8_s1_t4", "a23_s6_t4", "a27_s8_t4")
TRAIN_SUBJECTS = ("s1", "s3", "s5", "s7")
TEST_SUBJECTS = ("s2", "s4", "s6", "s8")


def subject_name(s: str | int) -> str:
    """``3``, ``"3"``, ``"s3"`` or ``"S3"`` -> ``"s3"`` (the dataset's name)."""
    s = str(s).strip().lower()
    return s if s.startswith("s") else f"s{int(s)}" if s.isdigit() else s


def scan(src: Path) -> tuple[dict[str, dict[str, Path]], list[str]]:
    """Trial id -> {"color": avi, "inertial": mat}; and notes on duplicates (first in sorted order kept)."""
    trials: dict[str, dict[str, Path]] = {}
    notes: list[str] = []
    for p in sorted(src.rglob("*")):
        m = NAME_RE.search(p.name)
        if not m or not p.is_file():
            continue
        a, s, t, kind, ext = int(m[1]), int(m[2]), int(m[3]), m[4].lower(), m[5].lower()
        if (kind, ext) not in (("color", "avi"), ("inertial", "mat")):
            continue
        rid = f"a{a}_s{s}_t{t}"
        slot = trials.setdefault(rid, {})
        if kind in slot:
            notes.append(f"{rid}: {kind} found twice ({slot[kind]} and {p}); kept the first")
            continue
        slot[kind] = p
    return trials, notes


def read_inertial(path: Path) -> np.ndarray:
    """``d_iner`` as float64 [N, 6]; ValueError with the problem if it is not there or not N x 6."""
    import scipy.io
    from scipy.io.matlab import MatReadError

    try:
        d = scipy.io.loadmat(str(path))
    except NotImplementedError:  # MATLAB v7.3 (HDF5)
        d = _read_mat73(path)
    except (MatReadError, ValueError, TypeError, OSError, KeyError, IndexError) as e:  # damaged files
        raise ValueError(f"unreadable .mat file ({e})") from None
    if "d_iner" not in d:
        names = sorted(k for k in d if not k.startswith("__"))
        raise ValueError(f"no variable d_iner (has: {', '.join(names) or 'none'})")
    try:
        x = np.asarray(d["d_iner"], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"d_iner is not a numeric array ({type(d['d_iner']).__name__})") from None
    if x.ndim != 2 or x.shape[1] < 6 or x.shape[0] < 2:
        raise ValueError(f"d_iner has shape {x.shape}; expected N x 6 with N >= 2")
    return x[:, :6]


def _read_mat73(path: Path) -> dict[str, np.ndarray]:
    """The top-level arrays of a MATLAB v7.3 (HDF5) file, transposed back to MATLAB's order."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return {k: np.asarray(v[()]).T for k, v in f.items() if isinstance(v, h5py.Dataset)}
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(f"unreadable MATLAB v7.3 file ({e})") from None


def _import_trial(rep: ImportReport, out: Path, rid: str, files: dict[str, Path], media: str) -> bool:
    a, s, _t = (int(x[1:]) for x in rid.split("_"))
    if "color" not in files or "inertial" not in files:
        missing = "RGB video" if "color" not in files else "inertial .mat"
        have = files.get("inertial") or files.get("color")
        known = " (one of the 3 trials the dataset does not release)" if rid in KNOWN_MISSING else ""
        rep.skip(rid, str(have), f"no {missing} for this trial{known}; trial skipped")
        return False
    if not 1 <= a <= len(ACTIONS):
        rep.skip(rid, str(files["inertial"]), f"action {a} is not one of UTD-MHAD's 1..{len(ACTIONS)}")
        return False
    try:
        x = read_inertial(files["inertial"])
    except ValueError as e:
        rep.skip(rid, str(files["inertial"]), str(e))
        return False
    acc, gyr = x[:, :3], x[:, 3:6]
    norms = np.linalg.norm(acc, axis=1)
    if not np.isfinite(norms).any():
        rep.skip(rid, str(files["inertial"]), "d_iner has no row with all three acceleration values")
        return False
    norm = float(np.median(norms[np.isfinite(norms)]))
    acc_unit = "m/s^2" if norm > MS2_NORM_THRESHOLD else "g"
    if acc_unit == "m/s^2":
        rep.notes.append(f"{rid}: median |acc| {norm:.2f} > {MS2_NORM_THRESHOLD}: taken as m/s^2, not g")
    data = np.concatenate([acc * (G if acc_unit == "g" else 1.0), gyr * DEG], axis=1)
    t = np.arange(len(x)) / RATE_HZ
    w = RecordingWriter(out, rid, subject=f"s{s}", media=media)
    w.add_media("video", "video", files["color"], filename=f"{rid}_color.avi", clock_offset_s=0.0,
                source_file=files["color"].name)
    w.add_imu("imu", t, data, CHANNELS,
              units={c: ("m/s^2" if c.startswith("acc") else "rad/s") for c in CHANNELS},
              source_units={c: (acc_unit if c.startswith("acc") else "deg/s") for c in CHANNELS},
              rate_hz=RATE_HZ, clock_offset_s=0.0, roles=dict(ROLES),
              placement="right_wrist" if a <= 21 else "right_thigh", source_file=files["inertial"].name,
              source_variable="d_iner", acc_median_norm_source=round(norm, 4))
    w.set_label(ACTIONS[a - 1])
    w.save(dataset=NAME, action_id=a, trial=int(_t),
           time_base="imu: t = row / 50 Hz (d_iner has no time column); video: container timestamps; "
                     "both start at the trial's start (the dataset's modalities are synchronized)")
    rep.written.append(rid)
    return True


def _numeric_order(rid: str) -> tuple[int, ...]:
    """``a10_s2_t1`` -> (10, 2, 1): trials in the order of action, subject, trial numbers."""
    return tuple(int(x[1:]) for x in rid.split("_"))


def prepare(src: Path, out: Path, subjects: list[str] | None = None, media: str = "link",
            **options) -> ImportReport:
    """Import UTD-MHAD from ``src`` (the folder holding ``RGB/`` and ``Inertial/``) into ``out``."""
    src, out = Path(src), Path(out)
    rep = ImportReport(dataset=NAME, out=str(out))
    trials, notes = scan(src)
    rep.notes.extend(notes)
    if not trials:
        raise DatasetImportError(f"{src}: no UTD-MHAD files (a<action>_s<subject>_t<trial>_color.avi / "
                                 "_inertial.mat) found; give the folder holding RGB/ and Inertial/")
    want = {subject_name(s) for s in subjects} if subjects else None
    for rid in sorted(trials, key=_numeric_order):
        if want is not None and rid.split("_")[1] not in want:
            continue
        _import_trial(rep, out, rid, trials[rid], media)
    if want is not None and not rep.written and not rep.skipped:
        rep.notes.append(f"no trial of subjects {', '.join(sorted(want))} (UTD-MHAD names them s1..s8)")
    subj = {rid: rid.split("_")[1] for rid in rep.written}
    train = [r for r in rep.written if subj[r] in TRAIN_SUBJECTS]
    test = [r for r in rep.written if subj[r] in TEST_SUBJECTS]
    protocols: dict[str, dict[str, list[str]]] = {}
    if train and test:
        protocols["cross-subject"] = {"train": train, "test": test}
        val = [r for r in train if subj[r] == "s7"]
        if val and len(val) < len(train):
            protocols["cross-subject-val"] = {"train": [r for r in train if subj[r] != "s7"], "val": val,
                                              "test": test}
    if protocols:
        rep.protocols = write_splits(out, protocols, source="UTD-MHAD cross-subject protocol (Chen et al., "
                                     "ICIP 2015): subjects 1,3,5,7 train, 2,4,6,8 test; -val: subject 7 "
                                     "held out of training for validation")
    else:
        rep.notes.append("no splits.json: the cross-subject protocol needs trials of odd and even subjects")
    return rep


INFO = DatasetInfo(
    name=NAME,
    title="UTD Multimodal Human Action Dataset (UTD-MHAD)",
    modalities="RGB video (640x480, ~30 fps) + IMU (acc, gyro; 50 Hz; right wrist or thigh)",
    subjects="8 (s1..s8)",
    classes="27 actions",
    url="https://www.utdallas.edu/~kehtar/UTD-MHAD.html",
    protocols=("cross-subject", "cross-subject-val"),
    prepare=prepare,
    notes="unzip RGB.zip and Inertial.zip into one folder; depth and skeleton are not imported; "
          "861 trials (a8_s1_t4, a23_s6_t4, a27_s8_t4 are not released)",
)
