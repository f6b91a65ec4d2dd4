"""A tiny WEAR download in its exact layout (for tests/test_import_wear.py).

``wear/raw/inertial/50hz/sbj_<n>.csv`` (the authors' header, no time column, 50 Hz, g, ``label`` with
``null``/empty for no activity), ``wear/raw/videos/sbj_<n>.mp4`` and ``wear/annotations/60fps/
wear_split_<k>.json`` as the authors' converter writes them (runs after a label change start one
sample late; a file's last run is never written). Quirks: sbj_1's columns in another order, sbj_3's CSV
without the left-arm columns and no video.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from importfix_common import write_video

RATE = 50
HEADER = ["sbj_id", "right_arm_acc_x", "right_arm_acc_y", "right_arm_acc_z", "right_leg_acc_x", "right_leg_acc_y",
          "right_leg_acc_z", "left_leg_acc_x", "left_leg_acc_y", "left_leg_acc_z", "left_arm_acc_x", "left_arm_acc_y",
          "left_arm_acc_z", "label"]
LABEL_DICT = {"jogging": 0, "jogging (rotating arms)": 1, "stretching (triceps)": 5, "push-ups": 10, "sit-ups": 12}
# per subject: runs of (rows, label); None = no activity (written "null", or "" for the second null run)
PLAN = {
    0: [(100, None), (400, "jogging"), (200, "push-ups"), (100, None), (200, "jogging (rotating arms)")],
    1: [(50, None), (450, "stretching (triceps)"), (100, None), (350, "push-ups"), (50, None)],
    2: [(300, "sit-ups"), (200, None), (500, "jogging")],
}
SECONDS = 20.0


def label_rows(sbj: int) -> list[str | None]:
    out: list[str | None] = []
    for n, lab in PLAN[sbj]:
        out += [lab] * n
    return out


def acc_rows(sbj: int, n: int) -> np.ndarray:
    """[n, 12] in g: 1 g of gravity on each watch's own axis plus a 2 Hz sway."""
    t = np.arange(n) / RATE
    a = np.zeros((n, 12))
    for k in range(4):
        a[:, 3 * k + (k % 3)] = 1.0
    return a + 0.3 * np.sin(2 * np.pi * 2.0 * t + sbj)[:, None] * np.linspace(0.5, 1.0, 12)[None, :]


def authors_json_annotations(labels: list[str | None]) -> list[dict]:
    """What ``data_creation/utils.py::convert_labels_to_annotation_json`` writes for these labels (pandas
    reads ``null``/empty as NaN, and NaN != NaN)."""
    nan = float("nan")
    vals = [nan if lab is None else lab for lab in labels]

    def differs(a, b):
        return a != b  # True for two NaNs, as in the authors' loop

    out, start, end, cur = [], 0, 0, vals[0]
    for i, lab in enumerate(vals):
        if differs(cur, lab):
            if not (isinstance(cur, float) and math.isnan(cur)):
                out.append({"label": cur, "segment": [start / RATE, end / RATE],
                            "segment (frames)": [start / RATE * 60, end / RATE * 60], "label_id": LABEL_DICT[cur]})
            cur, start, end = lab, i + 1, i + 1
        else:
            end += 1
    return out


def write_csv(path: Path, sbj: int, header: list[str]) -> None:
    labels = label_rows(sbj)
    acc = acc_rows(sbj, len(labels))
    path.parent.mkdir(parents=True, exist_ok=True)
    col = {h: j for j, h in enumerate(HEADER[1:13])}
    nulls = 0
    lines = [",".join(header)]
    prev = "x"
    for i, lab in enumerate(labels):
        if lab is None and prev is not None:
            nulls += 1
        prev = lab
        cell = ("null" if nulls % 2 == 1 else "") if lab is None else lab
        row = []
        for h in header:
            row.append(str(sbj) if h == "sbj_id" else cell if h == "label" else f"{acc[i, col[h]]:.6f}")
        lines.append(",".join(row))
    path.write_text("\n".join(lines) + "\n")


def build(root: Path) -> Path:
    """Write the fixture under ``root/wear``; returns that folder."""
    top = root / "wear"
    inert = top / "raw" / "inertial" / "50hz"
    reordered = ["sbj_id"] + [h for p in ("left_arm", "right_leg", "right_arm", "left_leg")
                              for h in HEADER if h.startswith(p)] + ["label"]
    for s in PLAN:
        write_csv(inert / f"sbj_{s}.csv", s, reordered if s == 1 else HEADER)
        write_video(top / "raw" / "videos" / f"sbj_{s}.mp4", SECONDS, 10, seed=s, size=64,
                    audio=(s == 0))
    bad = inert / "sbj_3.csv"
    bad.write_text(",".join(HEADER[:10] + ["label"]) + "\n" + ",".join(["3"] + ["0.1"] * 9 + ["null"]) + "\n")
    ann = top / "annotations" / "60fps"
    ann.mkdir(parents=True)
    subjects = [*PLAN, 3]
    for k, held in enumerate(subjects, start=1):
        db = {}
        for s in subjects:
            labels = label_rows(s) if s in PLAN else [None]
            db[f"sbj_{s}"] = {"subset": "Validation" if s == held else "Training", "duration": len(labels) / RATE,
                              "fps": 60, "annotations": authors_json_annotations(labels)}
        doc = {"version": "Wear", "database": db, "label_dict": LABEL_DICT}
        (ann / f"wear_split_{k}.json").write_text(json.dumps(doc, indent=4))
    return top
