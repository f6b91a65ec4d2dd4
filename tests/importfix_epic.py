"""A small EPIC-KITCHENS-100 tree (tests/test_import_epic_kitchens.py) in the layout the official
downloader writes (``<P>/videos/<video>.MP4``, ``<P>/meta_data/<video>-accl.csv`` / ``-gyro.csv`` for
extension videos) plus the annotation files of epic-kitchens-100-annotations (same names and columns),
in a sub-folder as a clone would put them. Returns what the test checks."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from importfix_table import write_mp4

HEADER = ["narration_id", "participant_id", "video_id", "narration_timestamp", "start_timestamp", "stop_timestamp",
          "start_frame", "stop_frame", "narration", "verb", "verb_class", "noun", "noun_class", "all_nouns",
          "all_noun_classes"]
VERBS = [(0, "take", "['take', 'grab']", "retrieve"), (1, "put", "['put', 'put-down']", "leave"),
         (2, "wash", "['wash', 'rinse']", "clean"), (3, "open", "['open']", "access")]
SECONDS = 12.0
FPS = 25.0
# (video, split, [(start, stop, verb as narrated, verb_class)]); "rinse" is class 2 = "wash"
ANNOTATED = {
    "P01_101": ("train", [(0.5, 3.0, "take", 0), (2.5, 5.0, "open", 3), (6.0, 9.0, "wash", 2),
                          (8.0, 10.0, "rinse", 2), (10.5, 12.6, "put", 1)]),
    "P01_102": ("validation", [(1.0, 5.0, "take", 0), (6.0, 11.0, "wash", 2)]),
    "P02_101": ("train", [(0.0, 6.0, "wash", 2), (6.0, 11.5, "take", 0)]),
    "P02_102": ("validation", [(0.5, 5.5, "put", 1), (6.5, 11.5, "open", 3)]),
    "P01_01": ("train", [(1.0, 4.0, "take", 0)]),       # EPIC-55: no GoPro metadata
    "P02_103": ("train", [(1.0, 4.0, "take", 0)]),      # its MP4 was not downloaded
    "P02_104": ("train", [(1.0, 4.0, "open", 3)]),      # only the accl CSV
}
EXPECTED = {  # labels.csv after the overlap policy (P01_101: take/open overlap 2.5-3.0 left out, wash merged,
    "P01_101": [(0.5, 2.5, "take"), (3.0, 5.0, "open"), (6.0, 10.0, "wash"), (10.5, 12.0, "put")],  # put cut at 12 s
    "P01_102": [(1.0, 5.0, "take"), (6.0, 11.0, "wash")],
    "P02_101": [(0.0, 6.0, "wash"), (6.0, 11.5, "take")],
    "P02_102": [(0.5, 5.5, "put"), (6.5, 11.5, "open")],
}


def _ts(s: float, ms: bool = False) -> str:
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{int(h):02d}:{int(m):02d}:{sec:06.3f}" if ms else f"{int(h):02d}:{int(m):02d}:{sec:05.2f}"


def _gopro(path: Path, cols: list[str], step_ms: float, t0_ms: float, fn) -> None:
    n = int((SECONDS * 1000 - t0_ms) / step_ms)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Milliseconds", *cols])
        for i in range(n):
            ms = t0_ms + i * step_ms
            w.writerow([f"{ms:.3f}", *(f"{v:.6f}" for v in fn(ms / 1000.0))])


def acc_fn(t: float) -> tuple[float, float, float]:
    return (0.5 * math.sin(2 * math.pi * 2 * t), 9.81, 0.2 * math.cos(2 * math.pi * 3 * t))


def gyr_fn(t: float) -> tuple[float, float, float]:
    return (0.1 * t, -0.2 * t, 0.05)  # linear: interpolation onto the accl times is exact


def build(root: Path) -> dict:
    """``root/EPIC-KITCHENS`` (the SRC) with videos, GoPro CSVs and ``epic-kitchens-100-annotations/``."""
    src = root / "EPIC-KITCHENS"
    for vid in ANNOTATED:
        p = vid.split("_")[0]
        if vid != "P02_103":
            write_mp4(src / p / "videos" / f"{vid}.MP4", SECONDS, fps=FPS, audio=True)
        if vid != "P01_01":
            (src / p / "meta_data").mkdir(parents=True, exist_ok=True)
            _gopro(src / p / "meta_data" / f"{vid}-accl.csv", ["AcclX", "AcclY", "AcclZ"], 5.0, 3.2, acc_fn)
            if vid != "P02_104":
                _gopro(src / p / "meta_data" / f"{vid}-gyro.csv", ["GyroX", "GyroY", "GyroZ"], 2.5, 1.0, gyr_fn)
    ann = src / "epic-kitchens-100-annotations"
    ann.mkdir(parents=True)
    files = {"train": [], "validation": []}
    for vid, (split, segs) in ANNOTATED.items():
        for k, (a, b, verb, vc) in enumerate(segs):
            files[split].append([f"{vid}_{k}", vid.split("_")[0], vid, _ts(a, ms=True), _ts(a), _ts(b),
                                 int(a * FPS) + 1, int(b * FPS), f"{verb} thing", verb, vc, "thing", 7,
                                 "['thing', 'cup']", "[7, 9]"])
    for split, rows in files.items():
        with (ann / f"EPIC_100_{split}.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(HEADER)
            w.writerows(rows)
    with (ann / "EPIC_100_verb_classes.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "key", "instances", "category"])
        w.writerows(VERBS)
    with (ann / "EPIC_100_test_timestamps.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER[:8])
        w.writerow(["P01_103_0", "P01", "P01_103", "00:00:01.000", "00:00:01.00", "00:00:02.00", 26, 50])
    return {"src": src, "acc_t0": 0.0032, "acc_step": 0.005, "gyr": np.array(gyr_fn(1.0))}
