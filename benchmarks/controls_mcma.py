"""What MCMA's mask does on the camera failures of `dcat controls` (python benchmarks/controls_mcma.py controls/).

For each video source of the positive control (one per fold), from its out-of-fold file
(`oof-correct.npz`) and the dataset's ground truth: the share of training windows in a camera
failure (at least half the window inside a failure episode), the out-of-fold copies' mean top-class
probability and accuracy on failing and on other windows, and the share each keeps under MCMA's
rules (labelled windows: out-of-fold prediction right; unlabelled: probability >= 0.5).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def failing(keys: np.ndarray, truth: dict, window_s: float = 2.0) -> np.ndarray:
    out = []
    for k in keys.tolist():
        rid, ms = k.split("@")
        t0 = int(ms) / 1000
        eps = truth["recordings"][rid]["streams"]["video"]["failures"]
        ov = sum(max(0.0, min(t0 + window_s, e["end"]) - max(t0, e["start"])) for e in eps)
        out.append(ov >= window_s / 2)
    return np.array(out, bool)


def main(root: Path) -> None:
    truth = json.loads((root / "data" / "positive" / "raw" / "ground_truth.json").read_text())
    print("| source (fold) | windows failing | mean top-class prob. failing / other | out-of-fold accuracy (= kept "
          "by correctness) failing / other | kept by prob. >= 0.5 failing / other |")
    print("|---|---|---|---|---|")
    for npz in sorted((root / "exp" / "positive-lf1" / "runs").glob("*/src-video/oof-correct.npz")):
        z = np.load(npz)
        f = failing(z["key"], truth)
        right = z["pred"] == z["label"]
        print(f"| {npz.parts[-3]} | {f.mean():.3f} | {z['conf'][f].mean():.2f} / {z['conf'][~f].mean():.2f} | "
              f"{right[f].mean():.2f} / {right[~f].mean():.2f} | {(z['conf'][f] >= 0.5).mean():.2f} / "
              f"{(z['conf'][~f] >= 0.5).mean():.2f} |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "controls"))
