"""benchmarks/deploy.py --smoke runs, and its counts are right: the IMU model's multiply-accumulates per
window equal the ones counted by hand from the architecture, the file sizes are the files'."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imu_macs(t: int, c: int, d: int, n_classes: int, widths=(32, 64), mlp_ratio: float = 2.0) -> int:
    """Convolutions (k 5 s 1, k 5 s 2, k 3 s 2; 'same' padding), one attention block, the head."""
    w1, w2 = widths
    t1, t2 = t, -(-t // 2)
    t3 = -(-t2 // 2)
    conv = t1 * w1 * c * 5 + t2 * w2 * w1 * 5 + t3 * d * w2 * 3
    hidden = int(round(d * mlp_ratio))
    attn = t3 * d * 3 * d + 2 * t3 * t3 * d + t3 * d * d  # qkv, QK^T and AV, output projection
    return conv + attn + 2 * t3 * d * hidden + d * n_classes


def test_deploy_benchmark_smoke(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "deploy.py"), "--smoke", "--json",
                        "--runtimes", "eager,torchscript", "--work", str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout)
    by = {m["name"]: m for m in res["models"]}
    assert set(by) == {"imu", "audio (waveform)", "audio (logmel)"}
    imu = by["imu"]
    _, t, c = imu["input"]
    assert imu["macs"] == _imu_macs(t, c, d=16, n_classes=len(json.loads((tmp_path / "export" / "imu.json").read_text())["classes"]))
    assert imu["frontend_macs"] == 0 and by["audio (waveform)"]["frontend_macs"] > 0
    assert by["audio (waveform)"]["macs"] - by["audio (waveform)"]["frontend_macs"] == by["audio (logmel)"]["macs"]
    assert imu["file_bytes"]["torchscript"] == (tmp_path / "export" / "imu.pt").stat().st_size
    for m in res["models"]:
        assert set(m["runtimes"]) == {"eager", "torchscript"}
        for t_ in m["runtimes"].values():
            assert 0 < t_["latency_ms_median"] <= t_["latency_ms_p95"]
        assert m["tolerance"] is not None and m["tolerance"] <= 1e-3
