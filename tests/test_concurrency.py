"""Several runs into one folder, and runs killed at random moments (issue 13, items 1, 4, 5).

- two `dcat preprocess` into one shards directory at once both succeed, each shard made once;
- two runs killed at random (seeded) moments, then one rerun: complete shards that `dcat validate`
  accepts, with datasets identical to a clean run's, and no leftovers. The default suite runs
  ``DCAT_KILL_CYCLES`` (3) cycles; set it higher for more (each cycle takes a few seconds);
- killing only the parent of `dcat preprocess -j 2` ends its workers within seconds;
- a second `dcat pretrain` into a run folder in use fails at once naming the folder; the first
  finishes intact.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_leftovers import same_datasets

from pipelines.ingest.preprocess import PreprocessConfig, preprocess
from pipelines.ingest.raw import discover
from pipelines.shards.validate import validate_shards

DCAT = [sys.executable, "-c", "from dcat_cli.main import app; app()"]
KILL_CYCLES = int(os.environ.get("DCAT_KILL_CYCLES", "3"))


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    """3 subjects x 1 recording x 6 s (a run takes about 2 s)."""
    from pipelines.synth import SynthConfig, synthesize

    out = tmp_path_factory.mktemp("conc_raw") / "raw"
    synthesize(out, SynthConfig(subjects=3, recordings=1, seconds=6.0, seed=3, whole_label_every=0))
    return out


@pytest.fixture(scope="module")
def clean(raw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("conc_clean") / "shards"
    res = preprocess(discover([raw]), out, PreprocessConfig())
    assert res["summary"]["ok"] == 3, res["summary"]["errors"]
    return out


def start_preprocess(raw: Path, out: Path, jobs: int = 1) -> subprocess.Popen:
    """`dcat preprocess RAW --out OUT -j JOBS --json`; its stdout and stderr go to files beside
    ``out`` (``.log_path``), not pipes: a pipe would stay open while orphaned workers live."""
    log = out.parent / f"{out.name}-{time.monotonic_ns()}.log"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as so, open(log.with_suffix(".err"), "w") as se:
        p = subprocess.Popen(DCAT + ["preprocess", str(raw), "--out", str(out), "-j", str(jobs), "--json"],
                             stdout=so, stderr=se, text=True)
    p.log_path = log
    return p


def finish(p: subprocess.Popen, timeout: float = 300) -> tuple[str, str]:
    """Wait for ``p``; its (stdout, stderr)."""
    p.wait(timeout=timeout)
    return p.log_path.read_text(), p.log_path.with_suffix(".err").read_text()


def children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``pid``."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(d.name))
    return out


def processes_writing(out: Path) -> list[int]:
    """Live processes whose command line names ``out`` (runs into it, and their workers)."""
    pids = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and str(out).encode() in (d / "cmdline").read_bytes() and alive(int(d.name)):
                pids.append(int(d.name))
        except OSError:
            continue
    return pids


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"


def assert_complete_and_identical(out: Path, clean: Path) -> None:
    assert validate_shards(out) == []
    names = sorted(p.name for p in clean.glob("*.h5"))
    assert sorted(p.name for p in out.glob("*.h5")) == names
    for n in names:
        assert same_datasets(out / n, clean / n), n
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(s["file"] for s in manifest["shards"]) == names
    left = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert left == [], f"leftovers {left}"


def test_two_preprocess_runs_into_one_folder_both_succeed(raw, clean, tmp_path):
    out = tmp_path / "shards"
    runs = [start_preprocess(raw, out, 1), start_preprocess(raw, out, 2)]
    results = [finish(p) for p in runs]
    for p, (so, se) in zip(runs, results):
        assert p.returncode == 0, se
        assert "Traceback" not in se and "BlockingIOError" not in se
    made = [json.loads(so)["ok"] for so, _ in results]
    assert sum(made) == 3  # each shard made by one run, found done by the other
    assert_complete_and_identical(out, clean)


def kill_at_moments(runs: list[subprocess.Popen], out: Path, rng: np.random.Generator) -> int:
    """kill -9 each run's parent at a random moment of the work, whatever the machine's speed:
    ``rng`` picks a stage (0: a recording has started, k = 1..3: k shards are finished) and a
    delay after it (0-0.5 s). Returns how many were killed (a run may finish first)."""
    stage = rng.integers(0, 4, size=len(runs))
    delay = rng.uniform(0.0, 0.5, size=len(runs))
    due: list[float | None] = [None] * len(runs)
    killed = 0
    while any(p.poll() is None for p in runs):
        reached = len(list(out.glob("*.h5"))) if out.is_dir() else 0
        # a recording has started: its shard's temporary file (a scratch folder only when one is needed)
        started = out.is_dir() and bool(list(out.glob(".*.h5.*.tmp")) or list(out.glob(".scratch-*")))
        now = time.monotonic()
        for i, p in enumerate(runs):
            if due[i] is None and (reached >= stage[i] if stage[i] else started or reached):
                due[i] = now + delay[i]
            if due[i] is not None and now >= due[i] and p.poll() is None:
                p.send_signal(signal.SIGKILL)  # the parent only, as `kill -9 <pid>` does
                p.wait()
                killed += 1
        time.sleep(0.005)
    return killed


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_cycles_then_one_rerun_gives_the_clean_shards(raw, clean, tmp_path):
    killed = 0
    for cycle in range(KILL_CYCLES):
        rng = np.random.default_rng([13, cycle])
        out = tmp_path / f"cycle{cycle}"
        runs = [start_preprocess(raw, out, int(rng.integers(1, 3))) for _ in range(2)]
        killed += kill_at_moments(runs, out, rng)
        for p in runs:
            _, se = finish(p)
            assert "Traceback" not in se, se
        deadline = time.monotonic() + 5
        while processes_writing(out) and time.monotonic() < deadline:
            time.sleep(0.05)
        orphans = processes_writing(out)
        for pid in orphans:
            os.kill(pid, signal.SIGKILL)
        assert orphans == [], "workers of a killed run still running"
        left = {"shards": len(list(out.glob("*.h5"))), "leftovers": len(list(out.glob(".*")))}
        rerun = preprocess(discover([raw]), out, PreprocessConfig())  # what `dcat preprocess RAW --out OUT` runs
        assert rerun["summary"]["failed"] == 0 and rerun["manifest"] is not None, rerun["summary"]["errors"]
        assert_complete_and_identical(out, clean)
        print(f"cycle {cycle}: {[p.returncode for p in runs]}, before the rerun {left}, rerun made "
              f"{rerun['summary']['ok']}, removed {len(rerun['summary']['leftovers_removed'])} leftovers")
    print(f"kill cycles: {KILL_CYCLES}, runs killed: {killed} of {2 * KILL_CYCLES}, all identical")
    assert killed > 0  # the seeds above do kill runs: the test exercises what it claims


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_their_parent(raw, tmp_path):
    p = start_preprocess(raw, tmp_path / "shards", 2)
    deadline = time.monotonic() + 60
    workers: list[int] = []
    while time.monotonic() < deadline and len(workers) < 2 and p.poll() is None:
        workers = children(p.pid)
        time.sleep(0.01)
    assert len(workers) >= 2, "the pool did not start"
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(alive(w) for w in workers):
            time.sleep(0.05)
        assert not any(alive(w) for w in workers), "pool workers outlived their parent"
    finally:
        for w in workers:
            if alive(w):
                os.kill(w, signal.SIGKILL)


# ------------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def fake_shards(tmp_path_factory):
    from _fake_shards import write_fake_shards

    d = tmp_path_factory.mktemp("conc_train") / "shards"
    write_fake_shards(d, streams=("imu",), subjects=("s01", "s02", "s03"), recordings_per_subject=2,
                      duration_s=16.0, seed=4)
    return d


def pretrain_argv(shards: Path, out: Path, epochs: int = 3) -> list[str]:
    return DCAT + ["pretrain", "--data", str(shards), "--modality", "imu", "--out", str(out), "--d", "8",
                   "--heads", "2", "--epochs", str(epochs), "--batch-size", "16", "--block-s", "4",
                   "--patience", "0", "--threads", "1"]


def test_pretrain_into_a_run_folder_in_use_fails_at_once(fake_shards, tmp_path):
    from pipelines.learn.runs import lock_run_dir, release_run_dirs

    out = tmp_path / "run"
    lock_run_dir(out)  # this process is "the first run"
    try:
        r = subprocess.run(pretrain_argv(fake_shards, out), capture_output=True, text=True, timeout=300, check=False)
    finally:
        release_run_dirs()
    assert r.returncode == 1
    assert str(out) in r.stderr and "another dcat run" in r.stderr and f"pid {os.getpid()}" in r.stderr
    assert "Traceback" not in r.stderr
    assert list(out.iterdir()) == []  # it wrote nothing (and the lock file went with the release)


def test_two_pretrain_at_once_one_fails_the_other_is_intact(fake_shards, tmp_path):
    out = tmp_path / "run"
    runs = [subprocess.Popen(pretrain_argv(fake_shards, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    res = [p.communicate(timeout=300) for p in runs]
    codes = sorted(p.returncode for p in runs)
    assert codes == [0, 1], [se for _, se in res]
    loser = next(se for p, (_, se) in zip(runs, res) if p.returncode == 1)
    assert str(out) in loser and "Traceback" not in loser
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert (out / "last.pt").is_file() and (out / "best.pt").is_file()
    shutil.rmtree(out)


# ------------------------------------------------------------------------------- the lock itself
def test_file_lock_names_its_holder_and_dies_with_it(tmp_path):
    from pipelines.core.lock import FileLock, LockBusy, guarded_name

    path = tmp_path / ".x.h5.lock"
    holder = subprocess.Popen([sys.executable, "-c", ("import sys, time; from pipelines.core.lock import FileLock; "
                               "FileLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)"), str(path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockBusy, match=f"pid {holder.pid} ") as e:
            FileLock(path, what="shard x.h5").acquire(blocking=False)
        assert "shard x.h5" in str(e.value)
        t0 = time.monotonic()
        with pytest.raises(LockBusy):
            FileLock(path).acquire(timeout=0.3)
        assert 0.25 < time.monotonic() - t0 < 5
    finally:
        holder.kill()  # kill -9: the kernel releases the lock, its file stays
        holder.wait()
    assert path.exists()
    lock = FileLock(path).acquire(blocking=False)
    assert path.read_text().split()[0] == str(os.getpid())
    lock.release()
    assert not path.exists()
    assert guarded_name(".s01_r01.h5.k2j3h4g5.tmp") == "s01_r01.h5"
    assert guarded_name(".confusion-val.png.ab12cd34.tmp.png") == "confusion-val.png"
    assert guarded_name("s01_r01.h5") is None and guarded_name(".tmp") is None
