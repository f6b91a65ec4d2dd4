"""Peak memory of preprocessing one long recording, and where the peak comes from.

    python benchmarks/memory.py --minutes 60                      # generate 1 h (128 px video), measure
    python benchmarks/memory.py --recording DIR --align estimate  # an existing recording
    python benchmarks/memory.py --minutes 60 --tracemalloc        # also: Python/numpy allocations at the peak

The recording is preprocessed (``process_recording``, the full pipeline, default options) in a fresh
process, as ``benchmarks/preprocess.py --memory`` does (``peak_rss_mb``: the child's ``VmHWM``). That
process also samples its resident memory every few milliseconds and charges it to the step running
(read per stream, align, gate windows, write per stream, envelope tail), so the report says which
step holds the peak and how much of it the imported libraries (decord, PyAV, h5py, scipy, soxr: the
RSS before the recording is touched) already take. With --tracemalloc the largest live allocations
(numpy arrays included) at the traced peak are listed by source line (slower; RSS figures then include
tracemalloc's own bookkeeping, so take the peak from a run without it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.core.io import to_json  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
MB = 1024 * 1024


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def _vmhwm() -> int:
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("VmHWM"))


class Sampler:
    """A thread that samples RSS (and traced memory) and charges it to the current step."""

    def __init__(self, every_s: float, trace: bool):
        self.stack: list[str] = ["process_recording"]
        self.entry: list[int] = [0]  # RSS when each step on the stack began
        self.peak_by_step: dict[str, int] = {}
        self.rise_by_step: dict[str, int] = {}  # peak during the step minus RSS at its start
        self.peak, self.peak_step = 0, ""
        self.trace, self.traced_peak, self.snap, self.snap_step = trace, 0, None, ""
        self.every_s, self.stop = every_s, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def step(self) -> str:
        return "/".join(self.stack)

    def sample(self) -> None:
        r, s = _rss(), self.step()
        self.peak_by_step[s] = max(self.peak_by_step.get(s, 0), r)
        self.rise_by_step[s] = max(self.rise_by_step.get(s, 0), r - self.entry[-1])
        if r > self.peak:
            self.peak, self.peak_step = r, s
        if self.trace:
            import tracemalloc

            cur = tracemalloc.get_traced_memory()[0]
            if cur > self.traced_peak + 4 * MB:  # a new peak: keep its snapshot (re-taken as it grows)
                self.traced_peak, self.snap, self.snap_step = cur, tracemalloc.take_snapshot(), s

    def _run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            time.sleep(self.every_s)

    def wrap(self, owner, attr: str, name: str, is_classmethod: bool = False) -> None:
        orig = getattr(owner, attr)
        fn = orig.__func__ if is_classmethod else orig

        def wrapped(*a, **kw):
            self.entry.append(_rss())
            self.stack.append(name)
            self.sample()
            try:
                return fn(*a, **kw)
            finally:
                self.sample()
                self.stack.pop()
                self.entry.pop()

        setattr(owner, attr, classmethod(wrapped) if is_classmethod else wrapped)


def _as_the_cli_runs():
    """The context ``dcat preprocess`` runs each recording in (one BLAS thread: ``one_blas_thread``)."""
    try:
        from pipelines.ingest.preprocess import one_blas_thread
    except ImportError:  # an older tree
        from contextlib import nullcontext

        return nullcontext()
    return one_blas_thread()


def child(rec: Path, out: Path, align: str, trace: bool, every_s: float) -> dict:
    """Runs in the fresh process: import, instrument, preprocess ``rec``, report."""
    import decord  # noqa: F401  (what preprocessing imports, loaded before the baseline)
    import h5py  # noqa: F401
    import scipy.signal  # noqa: F401
    import soxr  # noqa: F401

    import pipelines.ingest.recording as R
    from pipelines.ingest.config import PreprocessConfig
    from pipelines.ingest.streams import KINDS

    cli = _as_the_cli_runs()  # imported (and the limit set) before the baseline
    base = _rss()
    s = Sampler(every_s, trace)
    s.entry[0] = base
    for fn in ("load_recording", "read_segments", "read_streams", "align_streams", "gate_windows", "write_shard",
               "estimate_lags", "info_record", "_sources"):
        if hasattr(R, fn):
            s.wrap(R, fn, fn)
    for kind, cls in KINDS.items():
        s.wrap(cls, "read", f"read_{kind}", is_classmethod=True)
        for m in ("write_runs", "complete_envelope", "finish_envelope"):
            if m in cls.__dict__:
                s.wrap(cls, m, f"{m}_{kind}")
    if trace:
        import tracemalloc

        tracemalloc.start(1)
    s.thread.start()
    t0 = time.perf_counter()
    with cli:
        info = R.process_recording(rec, out, PreprocessConfig(align=align))
    seconds = time.perf_counter() - t0
    s.stop.set()
    s.thread.join()
    r = {"vmhwm_mb": round(_vmhwm() / MB, 1), "sampled_peak_mb": round(s.peak / MB, 1),
         "peak_step": s.peak_step, "rss_after_imports_mb": round(base / MB, 1), "seconds": round(seconds, 1),
         "windows": info.get("windows_kept"),
         "lags": {k: {f: v for f, v in st.items() if f.startswith("lag")} for k, st in info.get("streams", {}).items()},
         "peak_by_step_mb": {k: round(v / MB, 1) for k, v in sorted(s.peak_by_step.items(), key=lambda x: -x[1])},
         "rise_by_step_mb": {k: round(v / MB, 1) for k, v in s.rise_by_step.items()}}
    if trace and s.snap is not None:
        import tracemalloc

        r["traced_peak_mb"] = round(tracemalloc.get_traced_memory()[1] / MB, 1)
        r["traced_snapshot_mb"] = round(s.traced_peak / MB, 1)
        r["traced_snapshot_step"] = s.snap_step
        top = s.snap.statistics("lineno")[:10]
        r["traced_top"] = [{"where": f"{st.traceback[0].filename.split('/work/main/')[-1]}:{st.traceback[0].lineno}",
                            "mb": round(st.size / MB, 1), "blocks": st.count} for st in top]
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recording", type=Path, default=None, help="an existing recording folder")
    ap.add_argument("--minutes", type=float, default=60.0, help="length of the generated recording")
    ap.add_argument("--video-size", type=int, default=128, help="native size of the generated video")
    ap.add_argument("--align", choices=["meta", "estimate"], default="meta")
    ap.add_argument("--tracemalloc", action="store_true", help="also list the largest allocations at the peak")
    ap.add_argument("--every-ms", type=float, default=5.0, help="RSS sampling period")
    ap.add_argument("--work", type=Path, default=None, help="folder for the data (default: temporary, removed)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON on stdout")
    ap.add_argument("--child", nargs=2, type=Path, metavar=("REC", "OUT"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(to_json(child(a.child[0], a.child[1], a.align, a.tracemalloc, a.every_ms / 1000)))
        return
    work = a.work or Path(tempfile.mkdtemp(prefix="dcat-mem-"))
    try:
        rec = a.recording
        if rec is None:
            from pipelines.ingest.raw import discover
            from pipelines.synth import SynthConfig, synthesize

            raw = work / f"raw{a.minutes:g}"
            if not raw.exists():
                synthesize(raw, SynthConfig(subjects=1, recordings=1, seconds=a.minutes * 60, seed=5,
                                            video_size=a.video_size, declared_fraction=1.0))
            rec = discover([raw])[0]
        out = work / "out"  # removed after the run
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        cmd = [sys.executable, __file__, "--child", str(rec), str(out), "--align", a.align,
               "--every-ms", str(a.every_ms)] + (["--tracemalloc"] if a.tracemalloc else [])
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode:
            sys.exit(p.stderr[-3000:])
        r = __import__("json").loads(p.stdout.strip().splitlines()[-1])
        r.update(recording=str(rec), align=a.align, tracemalloc=a.tracemalloc)
    finally:
        shutil.rmtree(work / "out", ignore_errors=True)  # the shard of 1 h is GBs: never kept
        if a.work is None:
            shutil.rmtree(work, ignore_errors=True)
    if a.json:
        print(to_json(r, indent=1))
        return
    print(f"{r['recording']} (--align {a.align}): peak RSS (VmHWM) {r['vmhwm_mb']:.0f} MB; "
          f"{r['rss_after_imports_mb']:.0f} MB after imports; peak in step {r['peak_step']!r}; {r['seconds']} s")
    print("  peak RSS during the step | rise over the RSS at its start | step")
    for k, v in r["peak_by_step_mb"].items():
        print(f"  {v:8.1f} MB  {r['rise_by_step_mb'][k]:+8.1f} MB  {k}")
    if "traced_top" in r:
        print(f"tracemalloc: peak {r['traced_peak_mb']} MB; at {r['traced_snapshot_mb']} MB "
              f"(step {r['traced_snapshot_step']!r}) the largest live allocations:")
        for x in r["traced_top"]:
            print(f"  {x['mb']:8.1f} MB  {x['blocks']:7d} blocks  {x['where']}")


if __name__ == "__main__":
    main()
