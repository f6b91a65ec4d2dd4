"""Hostile shards (issue 13, items 11 and 13): every reader refuses a damaged shard the way
`dcat validate` does, with the same message, without a traceback and without allocating from an
unchecked declared size.

Each case of tests/hostile_shard_cases.py damages one shard of a small valid shards directory; then
`dcat validate`, `pretrain`, `inspect`, `manifest`, `evaluate` and `predict` (with a run trained on
the undamaged shards) run on it through the CLI.
"""

from __future__ import annotations

import json
import resource
import shutil

import pytest
from typer.testing import CliRunner

from _fake_shards import write_fake_shards
from dcat_cli.main import app
from hostile_shard_cases import CASES

runner = CliRunner()
TINY = ["--epochs", "1", "--batch-size", "16", "--threads", "1", "--d", "16", "--block-s", "6", "--quiet"]
VICTIM = "s01_r00.h5"


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A valid imu-only shards directory and a run trained on it (1 epoch)."""
    d = tmp_path_factory.mktemp("hostile")
    write_fake_shards(d / "good", subjects=("s01", "s02", "s03"), recordings_per_subject=2, duration_s=20.0,
                      streams=("imu",), seed=5)
    res = runner.invoke(app, ["pretrain", "--modality", "imu", "--data", str(d / "good"), "--out", str(d / "run"),
                              *TINY])
    assert res.exit_code == 0, res.output + res.stderr
    return d


def _clean_failure(res, what: str) -> str:
    """The error message of a command that must fail cleanly (exit 1, no traceback)."""
    out = res.stdout + res.stderr
    assert res.exit_code == 1, f"{what}: exit {res.exit_code}: {out[-2000:]}"
    assert "Traceback" not in out, f"{what}: {out[-2000:]}"
    assert res.exception is None or isinstance(res.exception, SystemExit), f"{what}: {res.exception!r}"
    return res.stderr


def _validate_problems(shards) -> list[str]:
    res = runner.invoke(app, ["validate", str(shards), "--json"])
    _clean_failure(res, "validate")
    return json.loads(res.stdout)["problems"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_reader_refuses_a_hostile_shard_like_validate(case, good, tmp_path):
    tamper, expect = CASES[case]
    shards = tmp_path / "shards"
    shutil.copytree(good / "good", shards)
    victim = shards / VICTIM
    tamper(victim)
    problems = _validate_problems(shards)
    assert problems and all(p.startswith(f"{victim}:") for p in problems), problems
    first = problems[0]
    assert expect in first, first
    res = runner.invoke(app, ["validate", str(victim), "--json"])  # the file alone: the same problems
    _clean_failure(res, "validate file")
    assert json.loads(res.stdout)["problems"] == problems
    # pretrain: the same message (the first problem; more are counted, `dcat validate` lists them)
    msg = _clean_failure(runner.invoke(app, ["pretrain", "--modality", "imu", "--data", str(shards),
                                             "--out", str(tmp_path / "run"), *TINY]), "pretrain")
    line = msg.strip().removeprefix("error ").strip()
    assert line == first or line.startswith(first + " (and "), (line, first)
    assert not (tmp_path / "run" / "last.pt").exists()
    run = str(good / "run")
    commands = {"inspect": ["inspect", str(shards)], "manifest": ["manifest", str(shards)],
                "evaluate": ["evaluate", run, "--data", str(shards), "--split", "all", "--threads", "1"],
                "predict": ["predict", run, str(shards), "--threads", "1"],
                "predict file": ["predict", run, str(victim), "--threads", "1"]}
    for what, cmd in commands.items():
        msg = _clean_failure(runner.invoke(app, cmd), what)
        assert first in msg, (what, msg, first)


def test_a_declared_80_gb_dataset_is_refused_without_allocating_it(good, tmp_path):
    """start_s declared 10**10 long in a small file: refused before any read (the process's peak
    memory grows by far less than the 80 GB the declaration asks for)."""
    from pipelines.learn.shardset import ShardSet
    from pipelines.core.errors import ShardError

    shards = tmp_path / "shards"
    shutil.copytree(good / "good", shards)
    CASES["start_s_declared_huge"][0](shards / VICTIM)
    assert (shards / VICTIM).stat().st_size < 100_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ShardError, match=r"declares shape \(10000000000,\) \(80,000,000,000 bytes\)"):
        ShardSet(shards, ["imu"])
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 200_000, grown_kb


def test_the_undamaged_directory_is_valid(good):
    """The directory the cases start from passes (so each case's refusal is its damage's doing)."""
    res = runner.invoke(app, ["validate", str(good / "good"), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["problems"] == [], res.stdout


def test_validate_lists_every_problem_and_pretrain_counts_them(good, tmp_path):
    """Two problems in one shard: validate lists both, pretrain names the first and the count."""
    shards = tmp_path / "shards"
    shutil.copytree(good / "good", shards)
    CASES["start_s_nan"][0](shards / VICTIM)
    CASES["window_start_negative"][0](shards / VICTIM)
    problems = _validate_problems(shards)
    assert len(problems) == 2 and "start_s" in problems[0] and "negative start" in problems[1], problems
    msg = _clean_failure(runner.invoke(app, ["pretrain", "--modality", "imu", "--data", str(shards),
                                             "--out", str(tmp_path / "run"), *TINY]), "pretrain")
    assert f"{problems[0]} (and 1 more problem(s)" in msg, msg


def test_window_reader_refuses_starts_outside_the_data(good, tmp_path):
    """The reader's own bounds check (a file changed after the index was made)."""
    import h5py

    from pipelines.core.errors import ShardError
    from pipelines.shards.reader import WindowReader

    p = tmp_path / VICTIM
    shutil.copy(good / "good" / VICTIM, p)
    CASES["window_start_past_end"][0](p)
    with h5py.File(p, "r") as f, pytest.raises(ShardError, match="windows run past the data"):
        WindowReader(f["streams"]["imu"])


def test_real_preprocessed_shards_pass_the_checks(tiny_shards):
    from pipelines.shards.check import check_shard, shard_problems

    out, _ = tiny_shards
    for p in sorted(out.glob("*.h5")):
        assert shard_problems(p) == []
        s = check_shard(p)
        assert s.n_windows > 0 and set(s.streams) >= {"imu"}


@pytest.mark.parametrize("extra", ["random_bytes", "valid_but_unlisted"])
def test_a_shard_the_manifest_does_not_list_is_refused_like_validate(extra, good, tmp_path):
    """A stray ``*.h5`` beside the listed shards: validate flags it, and pretrain no longer trains on
    the listed subset silently (a stale manifest after a job array)."""
    shards = tmp_path / "shards"
    shutil.copytree(good / "good", shards)
    if extra == "random_bytes":
        (shards / "zz_stray.h5").write_bytes(bytes(range(256)) * 20)
    else:
        shutil.copy(shards / VICTIM, shards / "s09_r00.h5")
    problems = _validate_problems(shards)
    want = "cannot read as HDF5" if extra == "random_bytes" else "misses ['s09_r00.h5']"
    assert want in problems[0], problems
    msg = _clean_failure(runner.invoke(app, ["pretrain", "--modality", "imu", "--data", str(shards),
                                             "--out", str(tmp_path / "run"), *TINY]), "pretrain")
    assert msg.strip().removeprefix("error ").strip() == problems[0]


@pytest.mark.parametrize("case", ["window_start_negative", "start_s_declared_huge", "not_hdf5"])
def test_transfer_refuses_a_hostile_shard_like_validate(case, tmp_path):
    """`dcat transfer` (video source -> imu target) on a directory with one damaged shard."""
    shards = tmp_path / "shards"
    write_fake_shards(shards, subjects=("s01", "s02", "s03"), recordings_per_subject=1, duration_s=20.0,
                      streams=("video", "imu"), video_size=8, seed=5)
    runs = tmp_path / "runs"
    res = runner.invoke(app, ["pretrain", "--modality", "video", "--data", str(shards), "--runs", str(runs),
                              "--video-frames", "2", *TINY])
    assert res.exit_code == 0, res.output + res.stderr
    CASES[case][0](shards / VICTIM)
    first = _validate_problems(shards)[0]
    msg = _clean_failure(runner.invoke(app, ["transfer", "--src", "video", "--tgt", "imu", "--data", str(shards),
                                             "--runs", str(runs), "--no-mcma", *TINY]), "transfer")
    line = msg.strip().removeprefix("error ").strip()
    assert line == first or line.startswith(first + " (and "), (line, first)
