"""The bad-input contract of `dcat preprocess` (DESIGN.md "Time and synchronization", "Conventions";
schemas/raw-layout.md).

For every kind of damaged recording:
* the error names the recording, the file and the problem (summary JSON ``errors`` on stdout with
  ``--json``, the structured record in ``preprocess-info.json``, and the message on stderr);
* the other recordings of the same run still finish, and their shards are valid;
* the exit code is non-zero when any recording failed;
* no partial output remains: no ``<id>.h5`` for the failed recording, no ``.*.tmp``, no ``.scratch-*``;
* ``--fail-fast`` stops at the first failure.
NaN runs and gaps in the IMU are not failures: the affected windows are dropped and counted under
``nan`` / ``gap``.

The damaged recordings are made by ``tests/badinputs.py`` from a small synthesized base made once per
session and copied per test.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import badinputs as B  # noqa: E402

GOOD = "good"  # the good recording that shares every run with a damaged one
BAD = "bad"


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def base(tmp_path_factory) -> dict[str, Path]:
    """Base recordings (10 s each): ``a``, ``b`` (AAC audio in video.mp4) and ``wav`` (audio.wav)."""
    return B.make_base(tmp_path_factory.mktemp("badinputs-base"))


@pytest.fixture(scope="session")
def baseline(base, tmp_path_factory) -> dict:
    """The undamaged base preprocessed once: per-recording info records (windows kept, rejections)."""
    from pipelines.ingest.preprocess import PreprocessConfig, preprocess

    root = tmp_path_factory.mktemp("badinputs-baseline")
    raw = root / "raw"
    for rid, key in ((BAD, "a"), (GOOD, "b"), ("wav", "wav")):
        B.copy_recording(base[key], raw, rid)
    res = preprocess(sorted(raw.iterdir()), root / "out", PreprocessConfig())
    assert res["summary"]["failed"] == 0, res["summary"]["errors"]
    by_id = {r["recording"]: r["info"] for r in res["results"]}
    for rid, info in by_id.items():  # the base must be clean so that gap/nan counts below mean something
        assert info["rejected"]["gap"] == 0 and info["rejected"]["nan"] == 0, (rid, info["rejected"])
    return by_id


@pytest.fixture()
def case(base, tmp_path):
    """A fresh input folder holding the recording to damage (id ``bad``) and a good one (id ``good``)."""

    def make(src: str = "a") -> tuple[Path, Path, Path]:
        raw = tmp_path / "raw"
        bad = B.copy_recording(base[src], raw, BAD)
        B.copy_recording(base["b"], raw, GOOD)
        return raw, bad, tmp_path / "shards"

    return make


# ------------------------------------------------------------------------------------------ running
def run_preprocess(raw: Path, out: Path, *extra: str):
    """``dcat preprocess RAW -o OUT --json ...`` in process; returns (result, summary or None)."""
    from typer.testing import CliRunner

    from dcat_cli.main import app

    res = CliRunner().invoke(app, ["preprocess", str(raw), "-o", str(out), "--json", *extra])
    try:
        summary = json.loads(res.stdout)
    except json.JSONDecodeError:
        summary = None
    return res, summary


def _describe(res) -> str:
    return f"exit {res.exit_code}, exception {res.exception!r}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"


def info_record(out: Path) -> dict:
    return json.loads((out / "preprocess-info.json").read_text())


def assert_no_leftovers(out: Path, failed: list[str] = ()) -> None:
    names = sorted(p.name for p in out.iterdir())
    for rid in failed:
        assert f"{rid}.h5" not in names, f"a shard for the failed recording {rid} remains: {names}"
    tmp = [n for n in names if n.startswith(".") and n.endswith(".tmp")]
    scratch = [n for n in names if n.startswith(".scratch-")]
    assert not tmp, f"temporary files left in {out}: {tmp}"
    assert not scratch, f"scratch folders left in {out}: {scratch}"


def assert_good_shards(out: Path, good: list[str]) -> None:
    """Each good recording has a complete, valid shard and is in the manifest."""
    import h5py

    from pipelines.shards.validate import validate_shards

    for rid in good:
        p = out / f"{rid}.h5"
        assert p.is_file(), f"the good recording {rid} has no shard: {sorted(q.name for q in out.iterdir())}"
        with h5py.File(p, "r") as h:
            assert h.attrs["recording_id"] == rid
            assert int(h.attrs["n_windows"]) > 0
    problems = validate_shards(out)
    assert problems == [], problems
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(s["recording_id"] for s in manifest["shards"]) == sorted(good)


def assert_failed_cleanly(res, summary, out: Path, rid: str, file: str, problem: list[str],
                          good: list[str] = (GOOD,)) -> str:
    """The whole contract for one failed recording; returns its message.

    ``problem``: regular expressions (case-insensitive) that must all match the message.
    """
    assert res.exit_code != 0, "a recording failed but the exit code is 0\n" + _describe(res)
    assert isinstance(res.exception, SystemExit), "the command crashed\n" + _describe(res)
    assert summary is not None, "--json printed no JSON summary on stdout\n" + _describe(res)
    assert summary["failed"] >= 1 and summary["ok"] == len(good), summary
    msgs = [m for m in summary["errors"] if m.startswith(f"{rid}:")]
    assert len(msgs) == 1, f"expected one error for {rid} in the summary, got {summary['errors']}"
    msg = msgs[0]
    assert "internal error" not in msg and "Traceback" not in msg, f"a crash, not a diagnosis: {msg}"
    assert f"{rid}: {file}:" in msg, f"the message does not name the file {file!r}: {msg}"
    for pat in problem:
        assert re.search(pat, msg, re.I), f"the message does not say the problem ({pat!r}): {msg}"
    # the same message, for people, on stderr
    assert msg in res.stderr, f"the error is not on stderr.\nmessage: {msg}\nstderr: {res.stderr}"
    # the run record
    rec = {r["recording"]: r for r in info_record(out)["recordings"]}
    assert rec[rid]["status"] == "failed"
    err = rec[rid]["error"]
    assert err["recording"] == rid and err["file"] == file, err
    for g in good:
        assert rec[g]["status"] == "ok", rec[g]
    assert_no_leftovers(out, failed=[rid])
    assert_good_shards(out, list(good))
    return msg


# ------------------------------------------------------------------------------------------ failing cases
# (id, base recording, mutator, extra CLI args, problem patterns)
FAILING = [
    # 1. corrupt video
    ("corrupt-video", "a", B.corrupt_video, (), [r"video", r"corrupt|invalid|cannot (open|decode)|not a video"]),
    # 2. truncated video: moov atom at the end (the encoder's default) and at the front (faststart)
    ("truncated-video", "a", B.truncate_video, (), [r"video", r"truncat|corrupt|cannot open|partial"]),
    ("truncated-video-faststart", "a", lambda r: (B.faststart(r), B.truncate_video(r))[1], (),
     [r"video", r"truncat|corrupt|cannot open|partial"]),
    ("truncated-video-streams-video-imu", "a", B.truncate_video, ("--streams", "video,imu"),
     [r"video", r"truncat|corrupt|cannot open|partial"]),
    # 3. audio much shorter than the video: a valid wav with half the samples; the wav's bytes cut in half
    ("short-audio", "wav", B.shorten_wav, (), [r"audio", r"ends [\d.]+ s early|shorter|truncat"]),
    ("short-audio-bytes", "wav", B.truncate_wav_bytes, (), [r"audio", r"ends [\d.]+ s early|shorter|truncat"]),
    # 4. malformed IMU CSV
    ("imu-non-numeric", "a", lambda r: B.imu_non_numeric_cell(r, line=40, value="abc"), (),
     [r"\bline 40\b", r"abc", r"not a number|non-numeric"]),
    ("imu-ragged-row", "a", lambda r: B.imu_ragged_row(r, line=40), (), [r"\bline 40\b", r"fields|columns|cells"]),
    ("imu-header-without-t", "a", B.imu_header_without_t, (), [r"header", r"'t'"]),
    # 6. non-monotonic IMU timestamps: file lines 40 and 41 swapped, so time goes back at line 41
    ("imu-non-monotonic", "a", lambda r: B.imu_swap_rows(r, line=40), (),
     [r"\bline 41\b", r"increasing|monoton|backwards|order"]),
    # 7. a missing stream file
    ("missing-imu", "a", B.delete_stream_file, (), [r"missing|not found|no such"]),
    # 8. a stream path that leaves the recording folder
    ("path-escapes", "a", B.stream_path_escapes, (), [r"outside"]),
    # 9. labels outside the recording (a segment ending 100 s after its end); with --align estimate the
    #    video has been decoded to a scratch folder before the labels are checked
    ("labels-outside", "a", B.labels_outside, (), [r"outside|beyond|past the end", r"110"]),
    ("labels-outside-align-estimate", "a", B.labels_outside, ("--align", "estimate"),
     [r"outside|beyond|past the end", r"110"]),
    # 10. malformed meta.json
    ("meta-invalid-json", "a", B.meta_invalid_json, (), [r"json"]),
    ("meta-missing-subject", "a", B.meta_missing_subject, (), [r"subject"]),
]


@pytest.mark.parametrize("src,mutate,extra,problem", [c[1:] for c in FAILING], ids=[c[0] for c in FAILING])
def test_bad_recording_fails_alone(case, src, mutate, extra, problem):
    raw, bad, out = case(src)
    file = mutate(bad)
    res, summary = run_preprocess(raw, out, *extra)
    assert_failed_cleanly(res, summary, out, BAD, file, problem)


def test_non_monotonic_message_shows_plain_numbers(case):
    """The times in the message are plain numbers, not Python reprs such as ``np.float64(0.66)``."""
    raw, bad, out = case()
    B.imu_swap_rows(bad, line=40)
    res, summary = run_preprocess(raw, out)
    msg = next(m for m in summary["errors"] if m.startswith(f"{BAD}:"))
    assert "np.float64" not in msg and "float64(" not in msg, f"numpy repr in a user message: {msg}"


# ------------------------------------------------------------------------------------------ NaN runs and gaps
def _shard_windows(out: Path, rid: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import h5py

    with h5py.File(out / f"{rid}.h5", "r") as h:
        return h["windows/start_s"][:], h["windows/end_s"][:], h["streams/imu/data"][:]


def _assert_dropped_not_failed(res, summary, out: Path, baseline: dict, reason: str, span_rec: tuple[float, float]):
    assert res.exit_code == 0, f"a {reason} in the IMU must not fail the run\n" + _describe(res)
    assert summary["failed"] == 0 and summary["ok"] == 2, summary
    assert summary["windows_dropped"][reason] >= 1, f"no window counted under '{reason}': {summary['windows_dropped']}"
    rec = {r["recording"]: r for r in info_record(out)["recordings"]}
    checks = rec[BAD]["checks"]
    assert checks["rejected"][reason] >= 1, checks["rejected"]
    assert checks["windows_kept"] < baseline[BAD]["windows_kept"], (checks["windows_kept"], baseline[BAD]["windows_kept"])
    assert checks["windows_kept"] > 0
    # the good recording is untouched by the other's problem
    assert rec[GOOD]["checks"]["rejected"][reason] == 0
    starts, ends, data = _shard_windows(out, BAD)
    a, b = span_rec
    overlapping = [(s, e) for s, e in zip(starts, ends) if s < b and e > a]
    assert not overlapping, f"windows overlapping the {reason} [{a:.2f}, {b:.2f}) s were kept: {overlapping}"
    assert np.isfinite(data).all(), "the shard holds non-finite IMU samples (filled or leaked NaN)"
    assert_no_leftovers(out)
    assert_good_shards(out, [BAD, GOOD])


def test_imu_nan_run_drops_windows(case, baseline):
    """5. ~1 s of rows with ``nan`` channels: not a failure; the windows touching it are dropped as 'nan'."""
    raw, bad, out = case()
    mid = B.imu_middle(bad)
    B.imu_nan_run(bad, mid - 0.5, mid + 0.5)
    off = B.imu_offset(bad)
    res, summary = run_preprocess(raw, out)
    _assert_dropped_not_failed(res, summary, out, baseline, "nan", (mid - 0.5 + off, mid + 0.5 + off))
    assert summary["windows_dropped"]["gap"] == 0, summary["windows_dropped"]


def test_imu_gap_drops_windows(case, baseline):
    """11. rows removed over 2 s: not a failure; the windows touching the gap are dropped as 'gap'."""
    raw, bad, out = case()
    mid = B.imu_middle(bad)
    B.imu_gap(bad, mid - 1.0, mid + 1.0)
    off = B.imu_offset(bad)
    res, summary = run_preprocess(raw, out)
    _assert_dropped_not_failed(res, summary, out, baseline, "gap", (mid - 1.0 + off, mid + 1.0 + off))
    imu = {r["recording"]: r for r in info_record(out)["recordings"]}[BAD]["checks"]["streams"]["imu"]
    assert imu["gaps"] >= 1 and imu["max_gap_s"] >= 1.9, imu


# ------------------------------------------------------------------------------------------ several failures, --fail-fast
def _many(base, raw: Path) -> dict[str, str]:
    """``raw`` with three damaged recordings and two good ones; returns {bad id: damaged file}."""
    bad = {}
    for rid, mut in (("a1_video", B.corrupt_video), ("a2_imu", B.imu_header_without_t), ("c1_meta", B.meta_invalid_json)):
        bad[rid] = mut(B.copy_recording(base["a"], raw, rid))
    B.copy_recording(base["b"], raw, "b1_good")
    B.copy_recording(base["wav"], raw, "b2_good")
    return bad


def test_several_failures_each_named_and_good_ones_finish(base, tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "shards"
    bad = _many(base, raw)
    res, summary = run_preprocess(raw, out)
    assert res.exit_code != 0, _describe(res)
    assert summary["failed"] == 3 and summary["ok"] == 2 and summary.get("not_run", 0) == 0, summary
    for rid, file in bad.items():
        msg = next((m for m in summary["errors"] if m.startswith(f"{rid}:")), None)
        assert msg is not None and f"{rid}: {file}:" in msg, (rid, summary["errors"])
    assert_no_leftovers(out, failed=list(bad))
    assert_good_shards(out, ["b1_good", "b2_good"])


def test_fail_fast_stops_at_first_failure(base, tmp_path):
    """Recordings run in id order: a1_video fails first; nothing after it runs or writes a shard."""
    raw, out = tmp_path / "raw", tmp_path / "shards"
    _many(base, raw)
    res, summary = run_preprocess(raw, out, "--fail-fast")
    assert res.exit_code != 0, _describe(res)
    assert isinstance(res.exception, SystemExit), _describe(res)
    assert summary["failed"] == 1 and summary["ok"] == 0, summary
    assert summary["not_run"] == 4, summary
    msgs = [m for m in summary["errors"] if not m.startswith("manifest:")]
    assert len(msgs) == 1 and msgs[0].startswith("a1_video: video.mp4:"), summary["errors"]
    status = {r["recording"]: r["status"] for r in info_record(out)["recordings"]}
    assert status == {"a1_video": "failed", "a2_imu": "not_run", "b1_good": "not_run", "b2_good": "not_run",
                      "c1_meta": "not_run"}, status
    assert not list(out.glob("*.h5")), sorted(p.name for p in out.iterdir())
    assert_no_leftovers(out, failed=["a1_video"])


def test_parallel_workers_isolate_failures(case):
    """With worker processes (-j 2) a failure stays in its recording too."""
    raw, bad, out = case()
    file = B.corrupt_video(bad)
    res, summary = run_preprocess(raw, out, "--workers", "2")
    assert_failed_cleanly(res, summary, out, BAD, file, [r"video"])


def test_without_json_message_on_stderr_and_exit_code(case):
    """The human path: no --json; the error goes to stderr, the exit code is non-zero."""
    from typer.testing import CliRunner

    from dcat_cli.main import app

    raw, bad, out = case()
    B.delete_stream_file(bad)
    res = CliRunner().invoke(app, ["preprocess", str(raw), "-o", str(out)])
    assert res.exit_code != 0 and isinstance(res.exception, SystemExit), _describe(res)
    assert f"{BAD}: imu.csv:" in res.stderr, res.stderr
    assert_no_leftovers(out, failed=[BAD])
    assert_good_shards(out, [GOOD])


def test_dcat_validate_accepts_the_surviving_shards(case):
    """`dcat validate` on the output of a run with a failed recording: the shards there are valid."""
    from typer.testing import CliRunner

    from dcat_cli.main import app

    raw, bad, out = case()
    B.truncate_video(bad)
    res, summary = run_preprocess(raw, out)
    assert res.exit_code != 0
    v = CliRunner().invoke(app, ["validate", str(out), "--json"])
    assert v.exit_code == 0, v.stdout + v.stderr
    assert json.loads(v.stdout)["ok"] is True
