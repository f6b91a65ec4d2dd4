"""Fuzz suite: seeded hostile inputs (tests/fuzzgen.py) through the commands that consume them (the
guards and the oracle: tests/fuzzharness.py).

Every case must end in a *clean success* (exit 0, every output file valid: strict JSON, shards that
pass `dcat validate` and hold only finite values) or a *clean error* (exit != 0 through SystemExit,
a message naming the input, no traceback, no "internal error"); none may hang (per-case alarm),
allocate more than a bound (tracemalloc peak, plus an address-space limit so a runaway allocation
fails instead of exhausting the machine), or accept (exit 0) an input the contract rejects.

Kinds and commands, run in-process with typer's CliRunner on ``dcat_cli.main:app``:

- ``meta``, ``imu_csv``, ``labels``: one damaged copy of a small synthesized recording:
  ``dcat validate RAW --deep`` and ``dcat preprocess RAW -o OUT --json``;
- ``shard``: one damaged shard of a small shards directory: ``dcat validate``, ``dcat inspect --json``,
  ``dcat pretrain`` (one epoch: the training read) and ``dcat manifest``;
- ``spec``: a damaged experiment SPEC.toml: ``dcat experiment SPEC --dry-run --json``.

Sizes: the default set (CI) has ``DEFAULT_SIZES`` cases; ``pytest --fuzz-full`` (or env
``DCAT_FUZZ=full``) runs ``FULL_SIZES``. One case: ``DCAT_FUZZ_CASE=imu_csv:137 pytest
tests/test_fuzz.py``; ``DCAT_FUZZ_SEED=N`` shifts every seed by N. The counts per kind are printed
at the end (and written as JSON to ``$DCAT_FUZZ_SUMMARY`` when set); ``python
benchmarks/fuzz_counts.py`` runs the cases without pytest and prints the counts and failure classes.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzzgen import KINDS, make_case, spec_text  # noqa: E402
from fuzzharness import (CONSUMERS, RID, Outcome, apply_expectations, check_result, format_summary,  # noqa: E402
                         run_case, summarize)

DEFAULT_SIZES = {"meta": 24, "imu_csv": 18, "labels": 15, "shard": 16, "spec": 18}  # 2-3 rounds of each mutator
FULL_SIZES = {"meta": 120, "imu_csv": 100, "labels": 60, "shard": 160, "spec": 150}


# ------------------------------------------------------------------------------------------ selection
def selected(full: bool) -> list[tuple[str, int]]:
    one = os.environ.get("DCAT_FUZZ_CASE")
    if one:
        kind, seed = one.rsplit(":", 1)
        return [(kind, int(seed))]
    off = int(os.environ.get("DCAT_FUZZ_SEED", "0"))
    sizes = FULL_SIZES if full else DEFAULT_SIZES
    return [(k, off + i) for k in KINDS for i in range(sizes[k])]


def want_full(config) -> bool:
    return bool(config.getoption("--fuzz-full", default=False)) or os.environ.get("DCAT_FUZZ") == "full"


def reproduce(kind: str, seed: int) -> str:
    return f"DCAT_FUZZ_CASE={kind}:{seed} python -m pytest -q -p no:cacheprovider tests/test_fuzz.py"


# ------------------------------------------------------------------------------------------ bases
def build_bases(root: Path) -> dict:
    """The valid inputs every case starts from: a 4 s recording (small video, wav audio, IMU), a shards
    directory (2 subjects x 20 s of video + imu) and an experiment spec on it."""
    from _fake_shards import write_fake_shards
    from pipelines.synth import SynthConfig, synthesize

    root = Path(root)
    synthesize(root / "raw", SynthConfig(subjects=1, recordings=1, seconds=4.0, seed=3, whole_label_every=0,
                                         dropouts=False, video_size=32, fps=10.0, audio="wav", audio_sr=8000))
    (root / "raw" / "ground_truth.json").unlink()
    write_fake_shards(root / "shards", subjects=("s01", "s02"), recordings_per_subject=1, duration_s=20.0,
                      streams=("video", "imu"), classes=("drink", "eat"), video_size=16)
    from hostile_raw_cases import make_imu_recording

    make_imu_recording(root / "imu_rec", rid=RID)
    spec = {"data": str(root / "shards"), "pairs": ["video->imu"], "methods": ["dcat"], "lambdas": [1.0],
            "seeds": [0], "splits": ["id"], "id_folds": 1, "shifts": [], "train": {"epochs": 1}}
    return {"raw": root / "raw" / RID, "imu_rec": root / "imu_rec" / RID, "shards": root / "shards", "spec": spec}


def warm_imports() -> None:
    """Import what the commands import, outside the traced cases (tracemalloc would count it)."""
    import h5py  # noqa: F401
    import torch  # noqa: F401

    import dcat_cli.main  # noqa: F401
    import pipelines.ingest.preprocess  # noqa: F401
    import pipelines.learn.pretrain  # noqa: F401
    import pipelines.study.experiment  # noqa: F401


# ------------------------------------------------------------------------------------------ pytest
_OUTCOMES: list[Outcome] = []


def pytest_generate_tests(metafunc):
    if "fuzz_case" in metafunc.fixturenames:
        cases = selected(want_full(metafunc.config))
        metafunc.parametrize("fuzz_case", cases, ids=[f"{k}-s{s}" for k, s in cases])


@pytest.fixture(scope="module")
def fuzz_base(tmp_path_factory, request):
    base = build_bases(tmp_path_factory.mktemp("fuzzbase"))
    warm_imports()
    yield base
    if _OUTCOMES:
        s = summarize(_OUTCOMES)
        tr = request.config.pluginmanager.get_plugin("terminalreporter")
        cap = request.config.pluginmanager.get_plugin("capturemanager")
        if tr is not None and cap is not None:
            with cap.global_and_fixture_disabled():  # teardown output is captured otherwise
                tr.write_line("\nfuzz suite counts:\n" + format_summary(s))
        if os.environ.get("DCAT_FUZZ_SUMMARY"):
            Path(os.environ["DCAT_FUZZ_SUMMARY"]).write_text(json.dumps(
                {"summary": s, "outcomes": [o.__dict__ for o in _OUTCOMES]}, indent=1))


def test_base_inputs_are_valid(fuzz_base, tmp_path):
    """The harness's own check: the unmodified inputs succeed, so a clean error is the mutation's doing."""
    for kind, raw_base in (("meta", "raw"), ("meta", "imu_rec"), ("shard", ""), ("spec", "")):
        case = make_case(kind, 0)
        case.mutation.apply = lambda p: (p.write_text(spec_text(json.loads(p.with_suffix(".json").read_text())))
                                         if p.suffix == ".toml" else None)
        case.mutation.extra = {"base": raw_base} if raw_base else {}
        o = Outcome(kind, 0, "unmodified", "success")
        (tmp_path / f"{kind}{raw_base}").mkdir()
        CONSUMERS[kind](case, o, fuzz_base, tmp_path / f"{kind}{raw_base}")
        assert o.exits and not o.problems and all(v == 0 for v in o.exits.values()), (kind, raw_base, o.problems,
                                                                                     o.exits)


def test_fuzz(fuzz_case, fuzz_base, tmp_path):
    kind, seed = fuzz_case
    o = run_case(kind, seed, fuzz_base, tmp_path)
    _OUTCOMES.append(o)
    assert not o.problems, (f"{kind} seed {seed} ({o.mutation}, expect {o.expect}): "
                            + "; ".join(o.problems) + f"\nreproduce: {reproduce(kind, seed)}")


class _FakeResult:
    def __init__(self, code: int, output: str, exception: BaseException | None = None):
        self.exit_code, self.output, self.stderr, self.exception = code, output, "", exception


def test_oracle_flags_unclean_outcomes():
    """The oracle itself: a traceback, an internal error, an unnamed error and an accepted bad input fail."""
    def problems(result, expect="either"):
        o = Outcome("meta", 0, "x", expect)
        ok = check_result(o, "cmd", result, (RID, "meta.json"))
        apply_expectations(o, {"cmd": ok})
        return o.problems

    assert problems(_FakeResult(1, "", ValueError("boom"))) == ["cmd: traceback: ValueError: boom"]
    assert "internal error" in problems(_FakeResult(1, f"error {RID}: internal error KeyError: 'x'", SystemExit(1)))[0]
    assert "names none" in problems(_FakeResult(1, "error something failed", SystemExit(1)))[0]
    assert "silently accepted" in problems(_FakeResult(0, "ok"), expect="error")[0]
    assert "harmless" in problems(_FakeResult(1, f"error {RID}: meta.json: bad", SystemExit(1)), expect="success")[0]
    assert problems(_FakeResult(1, f"error {RID}: meta.json: bad", SystemExit(1)), expect="error") == []
    assert problems(_FakeResult(0, "valid"), expect="success") == []


def test_guard_turns_hangs_and_allocations_into_failures(monkeypatch):
    """The per-case guard: a hang becomes a failure after the alarm, a runaway allocation a MemoryError
    (address-space limit), and numpy's buffers count in the traced peak."""
    import time

    import numpy as np

    import fuzzharness

    monkeypatch.setattr(fuzzharness, "CASE_TIMEOUT_S", 1)
    g = fuzzharness.Guarded()
    with fuzzharness.guard(g):
        time.sleep(5)
    assert g.error.startswith("hang")
    g = fuzzharness.Guarded()
    with fuzzharness.guard(g):
        np.ones(2**41, dtype=np.uint8)  # 2 TiB
    assert g.error.startswith("memory")
    g = fuzzharness.Guarded()
    with fuzzharness.guard(g):
        a = np.ones(64 * 2**20, dtype=np.uint8)
        del a
    assert not g.error and g.peak >= 64 * 2**20
