"""The fuzz suite's harness (tests/test_fuzz.py, benchmarks/fuzz_counts.py): the per-case guards (an alarm,
tracemalloc's peak, an address-space limit) and the oracle: each kind's commands run in-process with typer's
CliRunner, their results judged a clean error, a clean success (valid output) or a failure."""

from __future__ import annotations

import json
import math
import resource
import shutil
import signal
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from _strict_json import check_tree, strict_loads
from fuzzgen import Case, make_case

CASE_TIMEOUT_S = 20
PEAK_BYTES = 512 * 2**20  # tracemalloc peak per case
ADDRESS_HEADROOM = 4 * 2**30  # address space a case may add (RLIMIT_AS, restored after the case)
RID = "s01_r01"  # the base recording's id
SHARD = "s01_r00"  # the shard the shard cases damage

# ------------------------------------------------------------------------------------------ guards
class CaseTimeout(BaseException):
    """Raised by the alarm: a BaseException, so no ``except Exception`` in the code under test eats it."""


@dataclass
class Guarded:
    peak: int = 0
    error: str = ""


def _vsize() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * resource.getpagesize()


class guard:
    """Per case: an alarm after CASE_TIMEOUT_S, tracemalloc's peak, a soft RLIMIT_AS of the current
    address space + ADDRESS_HEADROOM (restored on exit)."""

    def __init__(self, g: Guarded):
        self.g = g

    def __enter__(self):
        def on_alarm(*_):
            raise CaseTimeout()

        self.old_handler = signal.signal(signal.SIGALRM, on_alarm)
        signal.alarm(CASE_TIMEOUT_S)
        self.old_as = resource.getrlimit(resource.RLIMIT_AS)
        try:
            soft = _vsize() + ADDRESS_HEADROOM
            hard = self.old_as[1]
            resource.setrlimit(resource.RLIMIT_AS, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))
        except (OSError, ValueError):
            pass
        tracemalloc.start()
        return self

    def __exit__(self, et, ev, tb):
        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.old_handler)
        self.g.peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        resource.setrlimit(resource.RLIMIT_AS, self.old_as)
        if et is not None and issubclass(et, CaseTimeout):
            self.g.error = f"hang: still running after {CASE_TIMEOUT_S} s"
            return True
        if et is not None and issubclass(et, MemoryError):
            self.g.error = "memory: MemoryError (address-space bound hit)"
            return True
        return False


# ------------------------------------------------------------------------------------------ oracle
@dataclass
class Outcome:
    kind: str
    seed: int
    mutation: str
    expect: str
    verdict: str = ""  # "clean_error", "clean_success", "fail"
    problems: list[str] = field(default_factory=list)  # each "<command>: <class>: <detail>"
    exits: dict = field(default_factory=dict)
    peak_mb: float = 0.0

    def fail(self, cmd: str, what: str) -> None:
        self.problems.append(f"{cmd}: {what}")


def _invoke(args: list[str]):
    from typer.testing import CliRunner

    from dcat_cli.main import app

    return CliRunner().invoke(app, [str(a) for a in args])


def _text(r) -> str:
    out = r.output or ""
    try:
        err = r.stderr or ""
    except (ValueError, AttributeError):
        err = ""
    return out if err and err in out else out + err


def _last_line(r, text: str) -> str:
    e = r.exception
    if e is not None and not isinstance(e, SystemExit):
        return f"{type(e).__name__}: {str(e).splitlines()[-1] if str(e) else ''}"[:200]
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return (lines[-1] if lines else "")[:200]


def check_result(o: Outcome, cmd: str, r, names: tuple[str, ...]) -> bool:
    """Clean error or exit 0; records problems; True when the command exited 0 cleanly."""
    text = _text(r)
    o.exits[cmd] = r.exit_code
    e = r.exception
    if isinstance(e, CaseTimeout):
        raise e
    if e is not None and not isinstance(e, SystemExit):
        kind = "memory" if isinstance(e, MemoryError) else "traceback"
        o.fail(cmd, f"{kind}: {_last_line(r, text)}")
        return False
    if "Traceback" in text:
        o.fail(cmd, f"traceback printed: {_last_line(r, text)}")
        return False
    low = text.lower()
    if "internal error" in low:
        line = next(ln for ln in text.splitlines() if "internal error" in ln.lower())
        o.fail(cmd, f"internal error: {line.strip()[:200]}")
        return False
    if r.exit_code != 0:
        if not any(n and n in text for n in names):
            o.fail(cmd, f"error names none of {list(names)}: {_last_line(r, text)}")
        return False
    return True


def _finite_shards(out: Path) -> list[str]:
    """Problems of a shards directory written by a successful run: validate, finiteness, strict JSON."""
    import h5py

    from pipelines.shards.validate import validate_shards

    bad = [f"validate: {p}" for p in validate_shards(out)]
    for p in sorted(out.glob("*.h5")):
        with h5py.File(p, "r") as f:
            def visit(name, obj):
                if isinstance(obj, h5py.Dataset) and obj.dtype.kind == "f":
                    a = obj[()]
                    if not np.all(np.isfinite(a)):
                        bad.append(f"{p.name}:{name} holds non-finite values")
            f.visititems(visit)
            for k in ("window_s", "stride_s"):
                v = f.attrs.get(k)
                if v is not None and not math.isfinite(float(v)):
                    bad.append(f"{p.name}: attr {k} = {v}")
    try:
        check_tree(out)
    except AssertionError as e:
        bad.append(str(e))
    return bad


def _consume_raw(case: Case, o: Outcome, base: dict, tmp: Path) -> None:
    raw = tmp / "raw"
    rec = raw / RID
    shutil.copytree(base[case.mutation.extra.get("base", "raw")], rec)
    case.mutation.apply(rec)
    names = (RID, case.mutation.file) + tuple(p.name for p in raw.iterdir())  # a case may rename the folder
    rv = _invoke(["validate", raw, "--deep"])
    v_ok = check_result(o, "validate --deep", rv, names)
    out = tmp / "shards"
    rp = _invoke(["preprocess", raw, "-o", out, "--json"])
    p_ok = check_result(o, "preprocess", rp, names)
    if p_ok:
        for p in _finite_shards(out):
            o.fail("preprocess", f"exit 0 with bad output: {p}")
        info = out / "preprocess-info.json"
        if info.exists() and strict_loads(info.read_text())["summary"].get("failed"):
            o.fail("preprocess", "exit 0 with failed recordings in preprocess-info.json")
    if rv.exit_code != 0 and p_ok:
        o.fail("preprocess", "exit 0 on a recording `dcat validate --deep` rejects")
    apply_expectations(o, {"validate --deep": v_ok, "preprocess": p_ok})


def _consume_shard(case: Case, o: Outcome, base: dict, tmp: Path) -> None:
    sh = tmp / "shards"
    shutil.copytree(base["shards"], sh)
    case.mutation.apply(sh / f"{SHARD}.h5")
    names = (SHARD, case.mutation.file or f"{SHARD}.h5", "zz_stray", "manifest.json")
    rv = _invoke(["validate", sh])
    v_ok = check_result(o, "validate", rv, names)
    ri = _invoke(["inspect", sh, "--json"])
    i_ok = check_result(o, "inspect", ri, names)
    if i_ok:
        try:
            strict_loads(ri.stdout)
        except ValueError as e:
            o.fail("inspect", f"exit 0 with output that is not strict JSON: {e}")
    run = tmp / "run"
    # on the CPU: CUDA's start reserves more address space than a case may add
    rt = _invoke(["pretrain", "--modality", "imu", "--data", sh, "--out", run, "--epochs", "1", "--d", "8",
                  "--threads", "1", "--batch-size", "8", "--block-s", "4", "--device", "cpu"])
    t_ok = check_result(o, "pretrain", rt, names)
    if t_ok:
        try:
            check_tree(run)
        except AssertionError as e:
            o.fail("pretrain", f"exit 0 with bad output: {e}")
        if not (run / "best.pt").exists():
            o.fail("pretrain", "exit 0 without best.pt")
    if not v_ok and t_ok and rv.exit_code != 0:
        o.fail("pretrain", "exit 0 on shards `dcat validate` rejects")
    rm = _invoke(["manifest", sh, "--json"])  # last: it rewrites manifest.json (or quarantines a bad shard)
    if check_result(o, "manifest", rm, names):
        try:
            check_tree(sh)
        except AssertionError as e:
            o.fail("manifest", f"exit 0 with bad output: {e}")
    # inspect only summarizes (its figures come from the attributes): it may report a shard validate rejects
    apply_expectations(o, {"validate": v_ok, "pretrain": t_ok})


def _consume_spec(case: Case, o: Outcome, base: dict, tmp: Path) -> None:
    spec = tmp / "spec.toml"
    spec.with_suffix(".json").write_text(json.dumps(base["spec"]))
    case.mutation.apply(spec)
    r = _invoke(["experiment", spec, "--dry-run", "--json", "--out", tmp / "exp"])
    ok = check_result(o, "experiment --dry-run", r, ("spec.toml",))
    if ok:
        try:
            cells = strict_loads(r.stdout)
            assert isinstance(cells, list) and cells, "no cells"
        except (ValueError, AssertionError) as e:
            o.fail("experiment --dry-run", f"exit 0 with output that is not a strict JSON list of cells: {e}")
    apply_expectations(o, {"experiment --dry-run": ok})


def apply_expectations(o: Outcome, oks: dict[str, bool]) -> None:
    for cmd, ok in oks.items():
        if o.expect == "error" and ok:
            o.fail(cmd, "exit 0 on an input the contract rejects (silently accepted)")
        if o.expect == "success" and not ok and o.exits.get(cmd, 0) != 0 and not any(
                p.startswith(cmd + ":") for p in o.problems):
            o.fail(cmd, "refused a harmless variation of a valid input")


CONSUMERS = {"meta": _consume_raw, "imu_csv": _consume_raw, "labels": _consume_raw, "shard": _consume_shard,
             "spec": _consume_spec}


def run_case(kind: str, seed: int, base: dict, tmp: Path) -> Outcome:
    case = make_case(kind, seed)
    o = Outcome(kind, seed, case.mutation.name, case.mutation.expect)
    Path(tmp).mkdir(parents=True, exist_ok=True)
    g = Guarded()
    with guard(g):
        CONSUMERS[kind](case, o, base, Path(tmp))
    o.peak_mb = round(g.peak / 2**20, 1)
    if g.error:
        o.problems.append(f"{kind}: {g.error}")
    elif g.peak > PEAK_BYTES:
        o.problems.append(f"{kind}: memory: tracemalloc peak {o.peak_mb} MB > {PEAK_BYTES // 2**20} MB")
    o.verdict = "fail" if o.problems else ("clean_success" if all(v == 0 for v in o.exits.values())
                                           else "clean_error")
    return o


def summarize(outcomes: list[Outcome]) -> dict:
    per = {}
    for o in outcomes:
        d = per.setdefault(o.kind, {"cases": 0, "clean_error": 0, "clean_success": 0, "fail": 0,
                                    "tracebacks": 0, "silent_wrong": 0})
        d["cases"] += 1
        d[o.verdict] += 1
        d["tracebacks"] += any("traceback" in p or "internal error" in p for p in o.problems)
        d["silent_wrong"] += any("exit 0" in p for p in o.problems)
    total = {k: sum(d[k] for d in per.values()) for k in ("cases", "clean_error", "clean_success", "fail",
                                                           "tracebacks", "silent_wrong")}
    return {"per_kind": per, "total": total}


def format_summary(s: dict) -> str:
    cols = ("cases", "clean_error", "clean_success", "fail", "tracebacks", "silent_wrong")
    lines = [f"{'kind':10s}" + "".join(f"{c:>15s}" for c in cols)]
    for k, d in list(s["per_kind"].items()) + [("total", s["total"])]:
        lines.append(f"{k:10s}" + "".join(f"{d[c]:>15d}" for c in cols))
    return "\n".join(lines)
