"""benchmarks/decode.py (decoders side by side) still runs, and its error measures catch wrong frames."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "decode.py"


def _module():
    spec = importlib.util.spec_from_file_location("bench_decode", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _Shifted:
    """A fake decoder whose seeks return the frame ``shift`` after the right one (and its pts)."""

    def __init__(self, frames: np.ndarray, ref: np.ndarray, shift: int):
        self.frames, self.ref, self.shift = frames, ref, shift

    def at_times(self, path, size, times):
        out = []
        for t in times:
            i = min(len(self.ref) - 1, int(np.searchsorted(self.ref, t + 1e-9, side="right")) - 1 + self.shift)
            out.append((self.frames[i], float(self.ref[i])))
        return out


@pytest.mark.parametrize("shift", [0, 1, 3])
def test_seek_errors_count_frames_off(shift):
    mod = _module()
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(40, 8, 8, 3), dtype=np.uint8)
    ref = np.arange(40) / 30.0
    times = np.array([0.0, 0.2, 0.51, 1.0])  # frames 0, 6, 15, 30
    r = mod.seek_errors(_Shifted(frames, ref, shift), Path("x"), (8, 8), ref, frames, times)
    assert r["seek_pts_err_frames"] == shift
    assert r["seek_pixel_err_frames"] == shift
    assert r["seek_pixel_mad"] == 0.0


def test_smoke_run_measures_every_frame():
    pytest.importorskip("av")
    r = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--json"], capture_output=True, text=True,
                       timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    fig = json.loads(r.stdout)
    per = fig["results"]["128px 2s"]
    assert "pyav" in per and set(per) | set(fig["skipped"]) == {"decord", "decord+resize", "pyav", "torchcodec"}
    for name, x in per.items():
        assert x["container_frames"] == 60, name  # 2 s at 30 fps
        assert x["frames"] == 60 and x["fps"] > 0, name
        assert x["scaling"]["112x112"]["ok"], name
    p = per["pyav"]  # the reference implementation of 'the frame shown at t': exact
    assert p["pts_err_frames"] == 0 and p["seek_pts_err_frames"] == 0 and p["seek_pixel_err_frames"] == 0
    assert all(v["ok"] and v["mad_vs_dcat_resize"] < 12 for v in p["scaling"].values())
    assert "| 128px 2s | pyav |" in r.stderr
