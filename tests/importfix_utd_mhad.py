"""A small UTD-MHAD as unzipped (RGB/ and Inertial/ with the dataset's file names, ``d_iner`` in g and
deg/s at 50 Hz, 30 fps .avi), for tests/test_import_utd_mhad.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from importfix_common import write_video

FPS = 30
RATE = 50.0
SECONDS = 3.0
# (action, subject, trial): actions 1 (wrist) and 22 (thigh), subjects 1..4
TRIALS = [(a, s, t) for a in (1, 22) for s in (1, 2, 3, 4) for t in (1, 2)]
MS2_TRIAL = "a1_s3_t2"  # stored in m/s^2 instead of g (the importer's unit check takes it as such)
WINDOWS_NAME_TRIAL = (22, 4, 2)  # stored as 'Inertial\a22_s4_t2_inertial.mat' in the root (a Windows zip)
MAT73_TRIAL = "a1_s2_t2"  # saved as a MATLAB v7.3 (HDF5) file
GYRO_DEG_S = (90.0, 0.0, -180.0)  # constant offset of the gyro columns, deg/s


def d_iner(a: int, s: int, t: int, n: int) -> np.ndarray:
    """N x 6: acc (g) = gravity on -z plus a class-dependent swing on x; gyro (deg/s) offset + swing."""
    i = np.arange(n)
    swing = np.sin(2 * np.pi * (1.0 + 0.5 * (a == 22)) * i / RATE + s + t)
    acc = np.stack([0.5 * swing, np.zeros(n), -np.ones(n)], axis=1)
    gyr = np.array(GYRO_DEG_S)[None, :] + np.stack([np.zeros(n), 30 * swing, np.zeros(n)], axis=1)
    return np.concatenate([acc, gyr], axis=1)


def write_mat73(path: Path, x: np.ndarray) -> None:
    """``d_iner`` in a MATLAB v7.3 file: HDF5 behind a 512-byte MAT header, arrays stored transposed."""
    import h5py

    with h5py.File(path, "w", userblock_size=512) as f:
        f.create_dataset("d_iner", data=np.ascontiguousarray(x.T))
    head = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    with open(path, "r+b") as f:
        f.write(head.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM")


def build(root: Path) -> Path:
    """The dataset folder; also a8_s1_t4 with inertial but no RGB, a damaged a1_s4_t3 .mat and an
    a22_s3_t3 .mat without ``d_iner``."""
    import scipy.io

    (root / "RGB").mkdir(parents=True)
    (root / "Inertial").mkdir()
    (root / "Depth").mkdir()
    n = int(SECONDS * RATE)
    for a, s, t in TRIALS:
        rid = f"a{a}_s{s}_t{t}"
        write_video(root / "RGB" / f"{rid}_color.avi", SECONDS, FPS, seed=a * 100 + s * 10 + t)
        x = d_iner(a, s, t, n)
        if rid == MS2_TRIAL:
            x[:, :3] *= 9.80665
        mat = root / "Inertial" / f"{rid}_inertial.mat"
        if (a, s, t) == WINDOWS_NAME_TRIAL:
            mat = root / f"Inertial\\{rid}_inertial.mat"
        if rid == MAT73_TRIAL:
            write_mat73(mat, x)
        else:
            scipy.io.savemat(str(mat), {"d_iner": x})
    scipy.io.savemat(str(root / "Inertial" / "a8_s1_t4_inertial.mat"), {"d_iner": d_iner(8, 1, 4, n)})
    write_video(root / "RGB" / "a1_s4_t3_color.avi", 1.0, FPS, seed=1)
    (root / "Inertial" / "a1_s4_t3_inertial.mat").write_bytes(b"MATLAB 5.0 MAT-file, damaged")
    write_video(root / "RGB" / "a22_s3_t3_color.avi", 1.0, FPS, seed=2)
    scipy.io.savemat(str(root / "Inertial" / "a22_s3_t3_inertial.mat"), {"d_skel": np.zeros((20, 3, 5))})
    (root / "Depth" / "a1_s1_t1_depth.mat").write_bytes(b"not read")
    return root
