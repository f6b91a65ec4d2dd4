"""Hostile raw inputs (issue 13, items 8, 9, 10, 12, 15): every case ends in a clean error naming
recording, file and problem, the same in `dcat preprocess` and `dcat validate --deep`, or in a clean
success with finite, in-spec output. Cases: ``tests/hostile_raw_cases.py`` (IMU-only recordings,
fast)."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hostile_raw_cases as H  # noqa: E402

BAD, GOOD = "bad", "good"


def _cli(*args: str):
    from typer.testing import CliRunner

    from dcat_cli.main import app

    return CliRunner().invoke(app, list(args))


def _describe(res) -> str:
    return f"exit {res.exit_code}, exception {res.exception!r}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"


def preprocess_json(raw: Path, out: Path):
    res = _cli("preprocess", str(raw), "-o", str(out), "--json")
    try:
        return res, json.loads(res.stdout)
    except json.JSONDecodeError:
        return res, None


def _all_finite_h5(path: Path) -> list[str]:
    """Names of numeric datasets or attributes of the shard holding a non-finite value."""
    import h5py

    bad = []
    with h5py.File(path, "r") as h:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and obj.dtype.kind == "f" and not np.all(np.isfinite(obj[()])):
                bad.append(name)
        h.visititems(visit)
    return bad


def _finite_json(obj) -> bool:
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(_finite_json(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_finite_json(v) for v in obj)
    return True


@pytest.fixture()
def raw(tmp_path):
    raw = tmp_path / "raw"
    H.make_imu_recording(raw, BAD, seed=1)
    H.make_imu_recording(raw, GOOD, seed=2)
    return raw


@pytest.mark.parametrize("case", [c for c in H.CASES if c.expect == "error"], ids=lambda c: c.name)
def test_hostile_input_fails_cleanly(raw, tmp_path, case):
    file = case.mutate(raw / BAD)
    out = tmp_path / "out"
    res, summary = preprocess_json(raw, out)
    assert res.exit_code not in (0, None) and isinstance(res.exception, SystemExit), _describe(res)
    assert summary is not None, _describe(res)
    assert summary["failed"] == 1 and summary["ok"] == 1, summary
    msgs = [m for m in summary["errors"] if m.startswith(f"{BAD}:")]
    assert len(msgs) == 1, summary["errors"]
    msg = msgs[0]
    assert "internal error" not in msg and "Traceback" not in res.stdout + res.stderr, msg
    assert f"{BAD}: {file}:" in msg, f"the message does not name {file!r}: {msg}"
    for pat in case.problem:
        assert re.search(pat, msg, re.I), f"the message does not say {pat!r}: {msg}"
    assert len(msg) < 600, f"message too long ({len(msg)} chars): {msg[:300]}"
    assert (out / f"{GOOD}.h5").is_file() and not (out / f"{BAD}.h5").exists()
    # validate --deep says the same
    v = _cli("validate", str(raw), "--deep", "--json")
    assert v.exit_code == 1 and "Traceback" not in v.stdout + v.stderr, _describe(v)
    problems = json.loads(v.stdout)["problems"]
    assert problems == [msg], f"validate --deep: {problems}\npreprocess: {msg}"


@pytest.mark.parametrize("case", [c for c in H.CASES if c.expect == "ok"], ids=lambda c: c.name)
def test_hostile_value_gated_like_nan(raw, tmp_path, case):
    """inf, -inf and values beyond float32 (or the IMU bound) in a channel: the windows holding them
    are dropped under ``nan`` and counted; shards, stream statistics and the manifest stay finite."""
    import h5py

    case.mutate(raw / BAD)
    out = tmp_path / "out"
    res, summary = preprocess_json(raw, out)
    assert res.exit_code == 0 and summary["ok"] == 2, _describe(res)
    info = {r["recording"]: r["checks"] for r in json.loads((out / "preprocess-info.json").read_text())["recordings"]}
    assert info[BAD]["rejected"]["nan"] >= 1 and info[GOOD]["rejected"]["nan"] == 0, info[BAD]["rejected"]
    assert info[BAD]["streams"]["imu"]["nonfinite_values"] == 1
    assert _all_finite_h5(out / f"{BAD}.h5") == []
    with h5py.File(out / f"{BAD}.h5", "r") as h:
        assert float(np.abs(h["streams/imu/data"][()]).max()) < 100
        assert float(np.max(h["streams/imu/std"][()])) < 100
    manifest = json.loads((out / "manifest.json").read_text())
    assert _finite_json(manifest)
    v = _cli("validate", str(raw), "--deep", "--json")
    assert v.exit_code == 0, _describe(v)


def test_nan_and_inf_drop_the_same_windows(tmp_path):
    """An inf is gated exactly like a NaN at the same place."""
    counts = []
    for k, value in enumerate(("nan", "inf", "1e39")):
        raw = tmp_path / f"raw{k}"
        rec = H.make_imu_recording(raw, "r", seed=3)
        H.imu_cell(500, 4, value)(rec)
        res, summary = preprocess_json(raw, tmp_path / f"out{k}")
        assert res.exit_code == 0, _describe(res)
        info = json.loads((tmp_path / f"out{k}" / "preprocess-info.json").read_text())["recordings"][0]["checks"]
        counts.append((info["windows_kept"], info["rejected"]["nan"]))
    assert counts[0] == counts[1] == counts[2] and counts[0][1] > 0, counts


def test_meta_rate_message_names_recording_file_field(raw, tmp_path):
    H.set_meta_raw("rate_hz", "NaN")(raw / BAD)
    res, summary = preprocess_json(raw, tmp_path / "out")
    msg = [m for m in summary["errors"] if m.startswith("bad:")][0]
    assert msg.startswith("bad: meta.json:") and "rate_hz" in msg and "NaN" in msg, msg


def test_nanosecond_times_fail_before_allocating(raw, tmp_path):
    """Integer nanoseconds: refused from the time span alone (this used to try to allocate TiB)."""
    import resource

    H.imu_time_scale(1e9)(raw / BAD)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    res, summary = preprocess_json(raw, tmp_path / "out")
    grew_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    msg = [m for m in summary["errors"] if m.startswith("bad:")][0]
    assert "24 h" in msg or "86400" in msg, msg
    assert grew_mb < 500, f"peak memory grew by {grew_mb:.0f} MB"


# ------------------------------------------------------------------------------------------ folder names (15)
def test_recording_id_from_folder_name():
    from pipelines.ingest.raw import recording_id

    assert recording_id("s01_r01") == "s01_r01"  # safe names are kept
    a, b = recording_id("rec ü 1"), recording_id("rec u 1")
    assert re.fullmatch(r"[A-Za-z0-9._-]+", a) and re.fullmatch(r"[A-Za-z0-9._-]+", b)
    assert a.startswith("rec_u_1") and b.startswith("rec_u_1") and a != b  # folded alike, kept apart
    assert recording_id(a) == a  # idempotent: a derived id is a safe name
    long = recording_id("x" * 250)
    assert len(long) <= 100 and long != recording_id("x" * 251) and recording_id(long) == long
    assert recording_id("x" * 100) == "x" * 100 and recording_id("x" * 101) != "x" * 101
    assert recording_id("Ärger/Ölfeld") == recording_id("Ärger/Ölfeld")  # deterministic
    assert recording_id("rec \u00fc 1") == recording_id("rec u\u0308 1")  # NFC and NFD (macOS) spell one name


def test_folder_with_spaces_and_accents_is_preprocessed(tmp_path):
    import h5py

    from pipelines.ingest.raw import recording_id

    raw = tmp_path / "raw"
    H.make_imu_recording(raw, "rec ü 1", seed=4)
    H.make_imu_recording(raw, "rec u 1", seed=5)
    H.make_imu_recording(raw, "y" * 240, seed=6)  # a long name: the shard's temporary name must fit
    out = tmp_path / "out"
    res, summary = preprocess_json(raw, out)
    assert res.exit_code == 0 and summary["ok"] == 3, _describe(res)
    rid = recording_id("rec ü 1")
    with h5py.File(out / f"{rid}.h5", "r") as h:
        assert h.attrs["recording_id"] == rid
        assert json.loads(h.attrs["checks_json"])["folder"] == "rec ü 1"
    recs = json.loads((out / "preprocess-info.json").read_text())["recordings"]
    assert {r["checks"]["folder"] for r in recs} == {"rec ü 1", "rec u 1", "y" * 240}
    assert sorted(s["recording_id"] for s in json.loads((out / "manifest.json").read_text())["shards"]) == \
        sorted([rid, recording_id("rec u 1"), recording_id("y" * 240)])
    # a second run finds the shards (skipped, not redone)
    res2, summary2 = preprocess_json(raw, out)
    assert res2.exit_code == 0 and summary2["skipped"] == 3, _describe(res2)
    assert _cli("validate", str(raw), "--deep").exit_code == 0
    v = _cli("validate", str(out))  # the shards too
    assert v.exit_code == 0, _describe(v)


def test_path_escape_still_refused_in_odd_folder(tmp_path):
    raw = tmp_path / "raw"
    rec = H.make_imu_recording(raw, "rec ü 2")
    (raw / "other").mkdir()
    (raw / "other" / "imu.csv").write_text((rec / "imu.csv").read_text())
    H.meta_edit(lambda m: H._stream(m).update(file="../other/imu.csv"))(rec)
    res, summary = preprocess_json(raw, tmp_path / "out")
    assert res.exit_code == 1 and summary["failed"] == 1, _describe(res)
    assert "outside the recording folder" in summary["errors"][0], summary["errors"]


# ------------------------------------------------------------------------------------------ the bounded loader
def test_bounded_json_loader(tmp_path):
    from pipelines.core.bounded import (BoundedInputError, bad_numbers, check_depth, finite_float, load_json_file,
                                        loads_json_bounded, nesting_depth)

    assert nesting_depth('{"a": [1, {"b": "[[[{"}], "c": "\\"]"}') == 3  # brackets in strings do not count
    assert nesting_depth("x = [[1], '[[['] # [[[", quotes="\"'") == 3  # TOML: a comment's bracket counts (safe side)
    with pytest.raises(BoundedInputError, match="nested 200000 levels"):
        loads_json_bounded("[" * 200_000 + "]" * 200_000)
    check_depth("[[1]]", max_depth=2)
    for text, pat in (('{"a": NaN}', "NaN"), ('{"a": -Infinity}', "Infinity"), ('{"a": 1e400}', "too large"),
                      ('{"a": ' + "9" * 5000 + "}", "5000 digits"), ('{"a": 1,}', "not valid JSON")):
        with pytest.raises(BoundedInputError, match=pat):
            loads_json_bounded(text, source="x.json")
    kept = loads_json_bounded('{"a": {"r": NaN}, "b": [1, ' + "7" * 40 + "]}", strict=False)
    assert bad_numbers(kept) == ["a/r: NaN is not a finite number", "b/1: integer with 40 digits is too large"]
    p = tmp_path / "m.json"
    p.write_bytes(b'\xef\xbb\xbf{"a": 1}')  # a BOM is fine
    assert load_json_file(p) == {"a": 1}
    p.write_bytes(b'{"a": "' + b"x" * 2000 + b'"}')
    with pytest.raises(BoundedInputError, match="larger than 1000 bytes") as e:
        load_json_file(p, max_bytes=1000, source="meta.json")
    assert str(e.value).startswith("meta.json: ") and e.value.problem.startswith("larger")
    p.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(BoundedInputError, match="UTF-8"):
        load_json_file(p)
    assert finite_float(3, "x", lo=0, lo_open=True) == 3.0
    for bad in (True, "3", float("nan"), 10 ** 400, -1.0):
        with pytest.raises(BoundedInputError):
            finite_float(bad, "rate_hz", lo=0, lo_open=True)
