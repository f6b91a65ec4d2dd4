"""A small UESTC-MMEA-CL as released (train/val/test.txt, video/<class_dir>/<clip>.mp4, sensor/<class_dir>/
<clip>.csv with 6 raw MPU count columns, no header, one row per video frame), for
tests/test_import_uestc_mmea_cl.py."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
from importfix_common import write_video

FPS = 25
SECONDS = 4.0
CLASSES = {"1_upstairs": 0, "32_watch_TV": 31}
ACC_RAW = (120, -8192, 300)  # counts: acc_y = -1 g
GYR_RAW = (164, -328, 0)  # counts: 10 and -20 deg/s


def clip_name(class_dir: str, k: int) -> str:
    return f"{class_dir}_2022_04_{27 + k % 2:02d}_10_{k:02d}_00"


# part -> clips per class; each clip k of a class gets its own time of day
PLAN = {"train": (0, 1, 2), "val": (3,), "test": (4, 5)}
SHORT_ROWS = clip_name("1_upstairs", 1)  # 99 sensor rows for 100 frames (a +-1 mismatch)
FEW_FRAMES = clip_name("32_watch_TV", 6)  # listed in test.txt with 2 RGB frames: left out of the split
NO_SENSOR = clip_name("32_watch_TV", 5)  # in test.txt, video but no sensor CSV: skipped
UNLISTED = clip_name("1_upstairs", 7)  # in video/ and sensor/ but in no list


def sensor_rows(class_dir: str, k: int, n: int) -> np.ndarray:
    """Raw counts [n, 6] (integers): gravity on -y, a class-dependent swing on acc x, constant gyro."""
    i = np.arange(n)
    swing = np.round(2000 * np.sin(2 * np.pi * (0.5 + CLASSES[class_dir] / 31) * i / FPS + k))
    x = np.tile(np.array(ACC_RAW + GYR_RAW, dtype=np.int64), (n, 1))
    x[:, 0] += swing.astype(np.int64)
    return x


def _clip(root: Path, class_dir: str, k: int, rows: int | None = None, sensor: bool = True) -> str:
    clip = clip_name(class_dir, k)
    (root / "video" / class_dir).mkdir(parents=True, exist_ok=True)
    (root / "sensor" / class_dir).mkdir(parents=True, exist_ok=True)
    write_video(root / "video" / class_dir / f"{clip}.mp4", SECONDS, FPS, seed=k + CLASSES[class_dir])
    n = int(SECONDS * FPS)
    if sensor:
        x = sensor_rows(class_dir, k, rows if rows is not None else n)
        np.savetxt(root / "sensor" / class_dir / f"{clip}.csv", x, fmt="%d", delimiter=",")
    return clip


def build(root: Path) -> Path:
    lists = {p: [] for p in PLAN}
    n = int(SECONDS * FPS)
    for class_dir, label in CLASSES.items():
        for part, ks in PLAN.items():
            for k in ks:
                short = class_dir == "1_upstairs" and k == 1
                sensor = not (class_dir == "32_watch_TV" and k == 5)
                clip = _clip(root, class_dir, k, rows=n - 1 if short else None, sensor=sensor)
                lists[part].append(f"yourdataset_path/data/{class_dir}/{clip} {n} {n - 1 if short else n} {label}")
    _clip(root, "32_watch_TV", 6)
    lists["test"].append(f"yourdataset_path/data/32_watch_TV/{FEW_FRAMES} 2 2 31")
    _clip(root, "1_upstairs", 7)
    for part, lines in lists.items():
        (root / f"{part}.txt").write_text("\n".join(lines))  # the authors' lists end without a newline
    return root


def write_clip_with_audio(path: Path, seconds: float = 2.0, fps: int = FPS, sr: int = 16000) -> None:
    """An H.264 clip with a mono AAC track (the importer then adds an audio stream on the same file)."""
    import av

    with av.open(str(path), mode="w") as c:
        v = c.add_stream("libx264", rate=Fraction(fps))
        v.width = v.height = 32
        v.pix_fmt = "yuv420p"
        a = c.add_stream("aac", rate=sr)
        a.layout = "mono"
        for i in range(int(seconds * fps)):
            for pk in v.encode(av.VideoFrame.from_ndarray(np.full((32, 32, 3), i % 255, np.uint8), format="rgb24")):
                c.mux(pk)
        wav = (0.1 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * sr)) / sr)).astype(np.float32)[None, :]
        fr = av.AudioFrame.from_ndarray(wav, format="fltp", layout="mono")
        fr.sample_rate = sr
        for pk in a.encode(fr):
            c.mux(pk)
        for s in (v, a):
            for pk in s.encode():
                c.mux(pk)
