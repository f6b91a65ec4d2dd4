"""Hostile raw-recording inputs (issue 13, items 8, 9, 10, 12, 15): a small IMU-only recording made
with numpy, and mutators that damage a copy of it.

Each ``Case`` is a mutator plus what must happen: ``expect="error"``: `dcat preprocess` fails that
recording alone with a message naming the recording, ``file`` and the problem (regexes), and
`dcat validate --deep` reports the same message; ``expect="ok"``: the recording is preprocessed and
everything written is finite and in spec. The fuzz tests reuse ``make_imu_recording`` and ``CASES``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

SECONDS = 12.0
RATE = 100.0
CHANNELS = ["acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z"]


def make_imu_recording(root: Path, rid: str = "rec", seed: int = 0, seconds: float = SECONDS) -> Path:
    """An IMU-only recording ``root/rid``: meta.json, imu.csv (``RATE`` Hz, 6 channels), labels.csv
    (two classes, 4 s segments)."""
    rec = Path(root) / rid
    rec.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    x = np.sin(2 * np.pi * 1.5 * t)[:, None] * np.arange(1, 7) + 0.1 * rng.standard_normal((n, 6))
    lines = ["t," + ",".join(CHANNELS)] + [f"{ti:.4f}," + ",".join(f"{v:.5f}" for v in row) for ti, row in zip(t, x)]
    (rec / "imu.csv").write_text("\n".join(lines) + "\n")
    segs = ["start,end,label"] + [f"{a:.1f},{a + 4:.1f},{'walk' if k % 2 else 'sit'}"
                                  for k, a in enumerate(np.arange(0, seconds - 3.9, 4.0))]
    (rec / "labels.csv").write_text("\n".join(segs) + "\n")
    meta = {"subject": "s01", "session": "a",
            "streams": {"imu": {"kind": "imu", "file": "imu.csv", "rate_hz": RATE,
                                "units": {c: ("m/s^2" if c.startswith("acc") else "rad/s") for c in CHANNELS}}}}
    (rec / "meta.json").write_text(json.dumps(meta, indent=1))
    return rec


# ------------------------------------------------------------------------------------------ helpers
def _meta(rec: Path) -> dict:
    return json.loads((rec / "meta.json").read_text())


def _write_meta(rec: Path, meta: dict) -> None:
    (rec / "meta.json").write_text(json.dumps(meta, indent=1))


def _imu_lines(rec: Path) -> list[str]:
    return (rec / "imu.csv").read_text().splitlines()


def _write_imu(rec: Path, lines: list[str]) -> str:
    (rec / "imu.csv").write_text("\n".join(lines) + "\n")
    return "imu.csv"


def set_meta_raw(key: str, raw: str, stream: str | None = "imu") -> Callable[[Path], str]:
    """meta.json with ``key`` (of the stream, or top level) set to the JSON text ``raw`` verbatim
    (so NaN, Infinity and 10**400 can be written)."""

    def mutate(rec: Path) -> str:
        meta = _meta(rec)
        target = meta["streams"][stream] if stream else meta
        target[key] = "@@PLACEHOLDER@@"
        (rec / "meta.json").write_text(json.dumps(meta, indent=1).replace('"@@PLACEHOLDER@@"', raw))
        return "meta.json"

    return mutate


def imu_cell(line: int, column: int, value: str) -> Callable[[Path], str]:
    """Set one cell of imu.csv (1-based file line and column)."""

    def mutate(rec: Path) -> str:
        lines = _imu_lines(rec)
        cells = lines[line - 1].split(",")
        cells[column - 1] = value
        lines[line - 1] = ",".join(cells)
        return _write_imu(rec, lines)

    return mutate


def imu_insert_line(line: int, text: str) -> Callable[[Path], str]:
    def mutate(rec: Path) -> str:
        lines = _imu_lines(rec)
        lines.insert(line - 1, text)
        return _write_imu(rec, lines)

    return mutate


def imu_header(names: list[str]) -> Callable[[Path], str]:
    def mutate(rec: Path) -> str:
        lines = _imu_lines(rec)
        lines[0] = ",".join(names)
        return _write_imu(rec, lines)

    return mutate


def imu_time_scale(scale: float, integer: bool = True) -> Callable[[Path], str]:
    """Timestamps multiplied by ``scale`` (1e9: integer nanoseconds, 1e3: milliseconds)."""

    def mutate(rec: Path) -> str:
        lines = _imu_lines(rec)
        out = [lines[0]]
        for ln in lines[1:]:
            t, rest = ln.split(",", 1)
            v = float(t) * scale
            out.append(f"{int(round(v)) if integer else v!r},{rest}")
        return _write_imu(rec, out)

    return mutate


def write_bytes(name: str, data: bytes) -> Callable[[Path], str]:
    def mutate(rec: Path) -> str:
        (rec / name).write_bytes(data)
        return name

    return mutate


def random_bytes(name: str, n: int = 4096, seed: int = 1) -> Callable[[Path], str]:
    return write_bytes(name, np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes())


def labels_append(row: str) -> Callable[[Path], str]:
    def mutate(rec: Path) -> str:
        with open(rec / "labels.csv", "a") as f:
            f.write(row + "\n")
        return "labels.csv"

    return mutate


def meta_edit(fn: Callable[[dict], None]) -> Callable[[Path], str]:
    def mutate(rec: Path) -> str:
        meta = _meta(rec)
        fn(meta)
        _write_meta(rec, meta)
        return "meta.json"

    return mutate


def meta_nested(depth: int) -> Callable[[Path], str]:
    def mutate(rec: Path) -> str:
        meta = json.dumps(_meta(rec))
        (rec / "meta.json").write_text(meta[:-1] + ', "deep": ' + "[" * depth + "]" * depth + "}")
        return "meta.json"

    return mutate


def symlink_loop(rec: Path) -> str:
    """imu.csv replaced by a link to itself."""
    (rec / "imu.csv").unlink()
    (rec / "imu.csv").symlink_to("imu.csv")
    return "imu.csv"


def _stream(meta: dict) -> dict:
    return meta["streams"]["imu"]


# ------------------------------------------------------------------------------------------ the cases
@dataclass
class Case:
    name: str
    mutate: Callable[[Path], str]  # damages the recording folder; returns the file the message names
    expect: str = "error"  # "error" or "ok"
    problem: list[str] = field(default_factory=list)  # regexes the message must match (case-insensitive)
    nan_windows: bool = False  # "ok" cases: some windows must be dropped for "nan"


def _inf_case(name: str, value: str) -> Case:
    return Case(f"imu-{name}", imu_cell(300, 3, value), "ok", nan_windows=True)


RATE_PROBLEM = [r"rate_hz"]
CASES: list[Case] = [
    # 8: non-finite and float32-overflowing IMU values are gated like NaN
    _inf_case("inf", "inf"), _inf_case("minus-inf", "-inf"), _inf_case("1e308", "1e308"),
    _inf_case("1e39", "1e39"), _inf_case("minus-1e39", "-1e39"), _inf_case("1e30", "1e30"),
    _inf_case("infinity-word", "Infinity"),
    # 9: rate_hz not a finite positive number
    Case("meta-rate-nan", set_meta_raw("rate_hz", "NaN"), problem=RATE_PROBLEM + [r"NaN"]),
    Case("meta-rate-inf", set_meta_raw("rate_hz", "Infinity"), problem=RATE_PROBLEM + [r"Infinity"]),
    Case("meta-rate-negative", set_meta_raw("rate_hz", "-100"), problem=RATE_PROBLEM),
    Case("meta-rate-zero", set_meta_raw("rate_hz", "0"), problem=RATE_PROBLEM),
    Case("meta-rate-10e400", set_meta_raw("rate_hz", "1" + "0" * 400), problem=[r"digits|too large"]),
    Case("meta-rate-1e400", set_meta_raw("rate_hz", "1e400"), problem=[r"too large|finite"]),
    Case("meta-rate-huge", set_meta_raw("rate_hz", "1e300"), problem=RATE_PROBLEM),
    Case("meta-rate-string", set_meta_raw("rate_hz", '"100"'), problem=RATE_PROBLEM),
    Case("meta-rate-bool", set_meta_raw("rate_hz", "true"), problem=RATE_PROBLEM),
    Case("meta-offset-nan", set_meta_raw("clock_offset_s", "NaN"), problem=[r"NaN"]),
    Case("meta-offset-huge", set_meta_raw("clock_offset_s", "1e300"), problem=[r"clock_offset_s"]),
    # 10: what the raw layout says fails
    Case("imu-comment-line", imu_insert_line(50, "# sensor restarted"), problem=[r"\bline 50\b", r"comment"]),
    Case("labels-4-fields", labels_append("0.5,1.0,sit,extra"), problem=[r"line \d+", r"3 fields"]),
    Case("imu-duplicate-channels", imu_header(["t", "acc_x", "acc_y", "acc_z", "acc_x", "gyr_y", "gyr_z"]),
         problem=[r"duplicate", r"acc_x"]),
    Case("meta-duplicate-channels", meta_edit(lambda m: _stream(m).update(channels=["acc_x", "acc_x"])),
         problem=[r"channels", r"unique|duplicate|non-unique"]),
    # 12: inputs that crashed or tried to allocate without bound
    Case("imu-time-nanoseconds", imu_time_scale(1e9), problem=[r"time|span", r"unit|nanosecond|milli"]),
    Case("imu-time-milliseconds", imu_time_scale(1e3), problem=[r"time|rate", r"unit|milli"]),
    Case("labels-random-bytes", random_bytes("labels.csv"), problem=[r"UTF-8"]),
    Case("imu-random-bytes", random_bytes("imu.csv"), problem=[r"UTF-8|NUL|not a number|header"]),
    Case("meta-random-bytes", random_bytes("meta.json"), problem=[r"UTF-8|JSON"]),
    Case("meta-nested-200000", meta_nested(200_000), problem=[r"nested|deep"]),
    Case("meta-5000-digits", set_meta_raw("extra", "9" * 5000, stream=None), problem=[r"digits"]),
    Case("meta-too-large", set_meta_raw("extra", '"' + "x" * (2 << 20) + '"', stream=None), problem=[r"larger|bytes"]),
    Case("meta-nul-in-file", meta_edit(lambda m: _stream(m).update(file="imu\x00.csv")), problem=[r"file"]),
    Case("meta-nul-in-subject", meta_edit(lambda m: m.update(subject="s\x0001")), problem=[r"subject"]),
    Case("meta-subject-huge", meta_edit(lambda m: m.update(subject="s" * 100_000)), problem=[r"subject"]),
    Case("meta-channels-not-list", meta_edit(lambda m: _stream(m).update(channels="acc_x")), problem=[r"channels"]),
    Case("labels-nul", write_bytes("labels.csv", b"start,end,label\n0,4,s\x00t\n"), problem=[r"NUL"]),
    Case("labels-start-huge", labels_append("1e308,1e309,sit"), problem=[r"finite|outside"]),
    Case("imu-two-rows", lambda r: _write_imu(r, _imu_lines(r)[:3]), problem=[r"spans only", r"at least 1 s"]),
    Case("imu-header-only", lambda r: _write_imu(r, _imu_lines(r)[:1]), problem=[r"no data rows"]),
    Case("imu-t-inf", imu_cell(30, 1, "inf"), problem=[r"line 30", r"not a finite"]),
    Case("labels-many-distinct", write_bytes("labels.csv", ("start,end,label\n" + "".join(
        f"{k * 0.005:.3f},{k * 0.005 + 0.004:.3f},c{k}\n" for k in range(2000))).encode()), problem=[r"2000 distinct labels"]),
    Case("imu-symlink-loop", symlink_loop, problem=[r"loop|refuses"]),
    Case("meta-file-name-too-long", meta_edit(lambda m: _stream(m).update(file="a" * 1000)), problem=[r"refuses|long"]),
    Case("imu-nul-byte", imu_cell(40, 2, "1\x002"), problem=[r"NUL|not a number"]),
    Case("imu-nul-header", imu_header(["t", "acc\x00x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z"]),
         problem=[r"header|channel"]),
]
