"""Preprocessing speed and memory, measured in one run (ratios, since machines are noisy).

    python benchmarks/preprocess.py                 # >= 10 min of generated recordings
    python benchmarks/preprocess.py --memory        # also: peak RSS for a 10-min and a long recording
    python benchmarks/preprocess.py --video-size 128 256 --align estimate   # both sizes, one run

Prints:
  * decode-only: the same videos decoded by decord at the same size (112x112), frames converted to
    numpy, nothing else;
  * full preprocess with 1 worker (read, check, align, resample, window, features, write shards);
  * their ratio (target <= 1.2) in wall time, and in CPU seconds (all threads; steadier on a busy
    machine, but blind to work that overlaps on two cores), and 1 vs 2 workers against the machine's
    two-process capacity, measured beside every repetition (target: the speedup >= 85% of it);
  * the decoder's own two-process ceiling: two decode-only processes together vs one after the other;
  * with --ab-tree DIR: 1 and 2 workers with another source tree's code in the same repetitions;
  * where the 1-worker time goes: the per-step ``timing_s`` of the recordings' info records, summed
    (read, align/gate, write per stream, video tail, lag, hashes) and the run's own overhead;
  * with --memory: peak resident memory of preprocessing one recording of 10 minutes and of
    --long-minutes (default 60), each in a fresh process (target: the long one < 2 GB and within
    1.3x of the 10-minute one).
Imports are warmed before timing (they cost ~4 s once per process, not per recording).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.ingest.preprocess import PreprocessConfig, preprocess  # noqa: E402
from pipelines.ingest.raw import discover  # noqa: E402
from pipelines.synth import SynthConfig, synthesize  # noqa: E402


def decode_only(recs: list[Path], size: int) -> tuple[float, int]:
    import decord

    t = time.perf_counter()
    n_total = 0
    for r in recs:
        vr = decord.VideoReader(str(r / "video.mp4"), ctx=decord.cpu(0), width=size, height=size, num_threads=1)
        n = len(vr)
        for k in range(0, n, 64):
            vr.get_batch(list(range(k, min(n, k + 64)))).asnumpy()
        n_total += n
    return time.perf_counter() - t, n_total


def full(recs: list[Path], out: Path, workers: int, cfg: PreprocessConfig) -> tuple[float, dict]:
    """Seconds for ``preprocess`` of ``recs``, and the per-step seconds summed over the recordings
    (``timing_s``; ``run_overhead_s``: the run's time outside the recordings, 1 worker only)."""
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    res = preprocess(recs, out, cfg, workers=workers)
    dt = time.perf_counter() - t
    assert res["summary"]["failed"] == 0, res["summary"]["errors"]
    steps: dict[str, float] = {}
    for r in res["results"]:
        for k, v in r["info"]["timing_s"].items():
            steps[k] = steps.get(k, 0.0) + v
    if workers == 1:
        steps["run_overhead_s"] = dt - sum(r["info"]["seconds"] for r in res["results"])
    return dt, steps


def _spin(n: int) -> None:
    x = 0
    for i in range(n):
        x += i


def parallel_capacity(n: int = 8_000_000) -> float:
    """How much faster two independent CPU-bound processes finish than one after the other: the
    ceiling for any 2-worker speedup on this machine (2.0 on two free cores)."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    t = time.perf_counter()
    for _ in range(2):
        _spin(n)
    serial = time.perf_counter() - t
    t = time.perf_counter()
    ps = [ctx.Process(target=_spin, args=(n,)) for _ in range(2)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    return serial / (time.perf_counter() - t)


def warm() -> None:
    """Import what preprocessing imports, and build the mel filterbank, before timing."""
    import av  # noqa: F401  (the audio reader's; ~0.1 s once, with jsonschema for meta.json)
    import decord  # noqa: F401
    import h5py  # noqa: F401
    import jsonschema  # noqa: F401
    import scipy.signal  # noqa: F401
    import soxr  # noqa: F401

    from pipelines.ingest.features import _mel_basis

    _mel_basis(PreprocessConfig().mel())


def peak_rss_mb(rec: Path, out: Path) -> float:
    """Peak RSS of preprocessing one recording in a fresh process: the child's VmHWM (ru_maxrss
    would carry over the parent's size through fork + exec)."""
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from pathlib import Path\n"
            "from pipelines.ingest.preprocess import PreprocessConfig, process_recording\n"
            "process_recording(Path(%r), Path(%r), PreprocessConfig())\n"
            "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])\n") % (
        str(Path(__file__).resolve().parents[1]), str(rec), str(out))
    out.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(r.stdout.strip().splitlines()[-1]) / 1024


def full_on_demand(recs: list[Path], out: Path, cfg: PreprocessConfig) -> float:
    """``full`` with 1 worker, the video decoded on demand (no prefetching thread), when the default
    prefetches; else with a 48 MB prefetching thread: the other of the two paths, to compare."""
    from pipelines.ingest.streams import video

    keep = video.PREFETCH_BYTES
    video.PREFETCH_BYTES = 0 if keep else 48 << 20
    try:
        return full(recs, out, 1, cfg)[0]
    finally:
        video.PREFETCH_BYTES = keep


_TREE_RUN = """
import sys, time, json, resource
sys.path.insert(0, %r)
from dataclasses import replace
from pathlib import Path
import pipelines
assert pipelines.__file__.startswith(%r), pipelines.__file__
import av, decord, h5py, jsonschema, scipy.signal, soxr  # noqa: the imports warmed before timing, as in warm()
from pipelines.ingest.features import _mel_basis
from pipelines.ingest.preprocess import PreprocessConfig, preprocess
from pipelines.ingest.raw import discover
cfg = replace(PreprocessConfig(), align=%r)
_mel_basis(cfg.mel())
ru = resource.getrusage(resource.RUSAGE_SELF)
t = time.perf_counter()
res = preprocess(discover([Path(%r)]), Path(%r), cfg, workers=%d)
dt = time.perf_counter() - t
ru2 = resource.getrusage(resource.RUSAGE_SELF)
assert res["summary"]["failed"] == 0, res["summary"]["errors"]
print(json.dumps([dt, ru2.ru_utime + ru2.ru_stime - ru.ru_utime - ru.ru_stime]))
"""


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of every CPU since boot (/proc/stat; (0, 0) where there is none)."""
    try:
        v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return sum(v) - v[3] - v[4], sum(v)  # idle and iowait are not busy


def busy_share(t0: tuple[int, int], t1: tuple[int, int]) -> float:
    """The share of the machine's CPU time that was busy between two ``machine_ticks`` (any process)."""
    return (t1[0] - t0[0]) / max(t1[1] - t0[1], 1)


def cpu_s() -> float:
    """CPU seconds (user + system) of this process so far, all its threads."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def full_tree(tree: Path, raw: Path, out: Path, workers: int, cfg: PreprocessConfig) -> tuple[float, float]:
    """Seconds for ``preprocess`` with the ``pipelines`` package of another source tree (``tree``:
    a folder holding ``pipelines/``, e.g. ``git archive HEAD pipelines | tar -x -C DIR``), timed
    inside a fresh process after the same imports as ``warm`` (the import cost is not counted); and
    that process's CPU seconds over the run (its own threads; 1 worker)."""
    shutil.rmtree(out, ignore_errors=True)
    code = _TREE_RUN % (str(tree), str(tree), cfg.align, str(raw), str(out), workers)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(tree))
    if r.returncode:
        raise RuntimeError(f"--ab-tree {tree}: {r.stderr[-2000:]}")
    dt, cpu = json.loads(r.stdout.strip().splitlines()[-1])
    return float(dt), float(cpu)


def decode_capacity(recs: list[Path], size: int) -> float:
    """How much faster two decode-only processes (each decoding every video of ``recs``) finish
    than one after the other: the ceiling the decoder itself leaves for 2 workers (memory
    bandwidth and shared caches count here, unlike in ``parallel_capacity``)."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    t = time.perf_counter()
    for _ in range(2):
        decode_only(recs, size)
    serial = time.perf_counter() - t
    t = time.perf_counter()
    ps = [ctx.Process(target=decode_only, args=(recs, size)) for _ in range(2)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    return serial / (time.perf_counter() - t)


def measure(raw: Path, work: Path, reps: int, cfg: PreprocessConfig, ab: bool = False,
            tree: Path | None = None) -> dict:
    """Decode-only, full preprocess with 1 and with 2 workers, and the machine's two-process
    capacity, interleaved ``reps`` times on the recordings under ``raw``; medians. With ``tree``,
    also 1 and 2 workers with that tree's code (``full_tree``), in the same repetitions."""
    recs = discover([raw])
    for r in recs:  # page cache: both contenders read warm files
        for f in r.iterdir():
            f.read_bytes()
    dec, full1, full2, caps, steps, ondemand, dcaps = [], [], [], [], [], [], []
    base1, base2, cpu_dec, cpu_full1, cpu_base1 = [], [], [], [], []
    busy1, busy2 = [], []  # the machine's busy share during the 1- and 2-worker runs
    n_frames = 0
    for _ in range(reps):
        c = cpu_s()
        d, n_frames = decode_only(recs, 112)
        cpu_dec.append(cpu_s() - c)
        dec.append(d)
        c = cpu_s()
        m = machine_ticks()
        t1, st = full(recs, work / "shards1", 1, cfg)
        busy1.append(busy_share(m, machine_ticks()))
        cpu_full1.append(cpu_s() - c)
        full1.append(t1)
        steps.append(st)
        m = machine_ticks()
        full2.append(full(recs, work / "shards2", 2, cfg)[0])
        busy2.append(busy_share(m, machine_ticks()))
        caps.append(parallel_capacity())
        dcaps.append(decode_capacity(recs, 112))
        if tree is not None:
            t1, c1 = full_tree(tree, raw, work / "shards_b1", 1, cfg)
            base1.append(t1)
            cpu_base1.append(c1)
            base2.append(full_tree(tree, raw, work / "shards_b2", 2, cfg)[0])
        if ab:
            ondemand.append(full_on_demand(recs, work / "shards0", cfg))
    med = lambda x: sorted(x)[len(x) // 2]  # noqa: E731
    speed = [a / b for a, b in zip(full1, full2)]
    k = full1.index(med(full1))  # the steps of the median 1-worker run
    extra = {} if not ab else {
        "full_on_demand_s": round(med(ondemand), 3), "on_demand_over_decode": round(med(ondemand) / med(dec), 3),
        "prefetch_speedup_per_rep": [round(a / b, 3) for a, b in zip(ondemand, full1)]}
    if tree is not None:
        bspeed = [a / b for a, b in zip(base1, base2)]
        extra |= {"tree": str(tree), "tree_full_1_worker_s": round(med(base1), 3),
                  "tree_full_over_decode": round(med(base1) / med(dec), 3),
                  "tree_full_over_decode_per_rep": [round(a / b, 3) for a, b in zip(base1, dec)],
                  "tree_over_this_1_worker_per_rep": [round(a / b, 3) for a, b in zip(base1, full1)],
                  "tree_cpu_over_decode_cpu": round(med([a / b for a, b in zip(cpu_base1, cpu_dec)]), 3),
                  "tree_cpu_over_this_cpu_per_rep": [round(a / b, 3) for a, b in zip(cpu_base1, cpu_full1)],
                  "tree_full_2_workers_s": round(med(base2), 3), "tree_speedup_2_workers": round(med(bspeed), 3),
                  "tree_speedup_over_capacity_per_rep": [round(a / b, 3) for a, b in zip(bspeed, caps)],
                  "tree_speedup_over_capacity": round(med([a / b for a, b in zip(bspeed, caps)]), 3)}
    return extra | {
        "recordings": len(recs), "video_frames": n_frames,
        "decode_only_s": round(med(dec), 3), "decode_fps": round(n_frames / med(dec)),
        "full_1_worker_s": round(med(full1), 3), "full_over_decode": round(med(full1) / med(dec), 3),
        "full_over_decode_per_rep": [round(a / b, 3) for a, b in zip(full1, dec)],
        "cpu_full_over_decode": round(med([a / b for a, b in zip(cpu_full1, cpu_dec)]), 3),
        "cpu_full_over_decode_per_rep": [round(a / b, 3) for a, b in zip(cpu_full1, cpu_dec)],
        "full_2_workers_s": round(med(full2), 3), "speedup_2_workers": round(med(speed), 3),
        "machine_parallel_capacity": round(med(caps), 3),
        "decode_capacity": round(med(dcaps), 3), "decode_capacity_per_rep": [round(x, 3) for x in dcaps],
        "speedup_over_capacity_per_rep": [round(a / b, 3) for a, b in zip(speed, caps)],
        "speedup_over_capacity": round(med([a / b for a, b in zip(speed, caps)]), 3),
        "machine_busy_1_worker": round(med(busy1), 3), "machine_busy_2_workers": round(med(busy2), 3),
        "machine_busy_2_workers_per_rep": [round(x, 3) for x in busy2],
        "steps_1_worker_s": {n: round(v, 3) for n, v in steps[k].items()},
        "all_runs": {"decode": [round(x, 3) for x in dec], "full1": [round(x, 3) for x in full1],
                     "full2": [round(x, 3) for x in full2], "capacity": [round(x, 3) for x in caps]}
        | ({"tree_full1": [round(x, 3) for x in base1], "tree_full2": [round(x, 3) for x in base2]} if tree else {}),
    }


def report(fig: dict, size: int) -> None:
    print(f"[{size}x{size} native] {fig['recordings']} recordings, {fig['video_frames']} video frames")
    print(f"  decode-only (decord, 112x112, 1 thread): {fig['decode_only_s']:.2f} s ({fig['decode_fps']} frames/s)")
    print(f"  full preprocess, 1 worker:               {fig['full_1_worker_s']:.2f} s  "
          f"= {fig['full_over_decode']:.2f}x decode-only (target <= 1.2; per rep {fig['full_over_decode_per_rep']})")
    print(f"  CPU seconds (all threads), full 1 worker / decode-only: {fig['cpu_full_over_decode']:.2f}x (per rep "
          f"{fig['cpu_full_over_decode_per_rep']}; the work besides decoding, whatever the machine's load)")
    print(f"  full preprocess, 2 workers:              {fig['full_2_workers_s']:.2f} s  "
          f"= {fig['speedup_2_workers']:.2f}x faster than 1")
    print(f"  machine busy (all processes, /proc/stat): {100 * fig['machine_busy_1_worker']:.0f}% with 1 worker, "
          f"{100 * fig['machine_busy_2_workers']:.0f}% with 2 (per rep {fig['machine_busy_2_workers_per_rep']})")
    print(f"  machine: two CPU-bound processes run {fig['machine_parallel_capacity']:.2f}x faster than one after "
          "the other (the ceiling for any 2-worker speedup here; 2.0 on two free cores)")
    print(f"  2 workers reach {100 * fig['speedup_over_capacity']:.0f}% of that capacity (target >= 85%; per rep "
          f"{fig['speedup_over_capacity_per_rep']})")
    print(f"  two decode-only processes run {fig['decode_capacity']:.2f}x faster than one after the other "
          f"(the decoder's own 2-process ceiling; per rep {fig['decode_capacity_per_rep']})")
    if "tree" in fig:
        print(f"  --ab-tree {fig['tree']}: 1 worker {fig['tree_full_1_worker_s']:.2f} s = "
              f"{fig['tree_full_over_decode']:.2f}x decode-only (per rep {fig['tree_full_over_decode_per_rep']}), CPU "
              f"{fig['tree_cpu_over_decode_cpu']:.2f}x decode-only's (its CPU / this tree's per rep "
              f"{fig['tree_cpu_over_this_cpu_per_rep']}); "
              f"its time / this tree's, per rep {fig['tree_over_this_1_worker_per_rep']}; 2 workers "
              f"{fig['tree_speedup_2_workers']:.2f}x faster than 1 = {100 * fig['tree_speedup_over_capacity']:.0f}% "
              f"of capacity (per rep {fig['tree_speedup_over_capacity_per_rep']})")
    if "full_on_demand_s" in fig:
        print(f"  1 worker, the other video path (prefetch thread on/off): {fig['full_on_demand_s']:.2f} s = "
              f"{fig['on_demand_over_decode']:.2f}x decode-only; default path's speedup per rep "
              f"{fig['prefetch_speedup_per_rep']}")
    print("  1-worker steps, summed over recordings: "
          + ", ".join(f"{k[:-2]} {v:.2f}" for k, v in fig["steps_1_worker_s"].items()) + " (s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    ap.add_argument("--minutes", type=float, default=10.0, help="minutes of recordings to generate (>= 10)")
    ap.add_argument("--recordings", type=int, default=4)
    ap.add_argument("--video-size", type=int, nargs="+", default=[128],
                    help="native size(s) of the generated video; several: each measured in the same run")
    ap.add_argument("--align", choices=("meta", "estimate"), default="meta", help="--align of the full preprocess")
    ap.add_argument("--reps", type=int, default=3, help="repetitions, interleaved (the median is reported)")
    ap.add_argument("--memory", action="store_true", help="also measure peak memory, 10 min vs --long-minutes")
    ap.add_argument("--long-minutes", type=float, default=60.0)
    ap.add_argument("--ab", action="store_true",
                    help="also time 1 worker with the other video path (prefetching thread on if off by default, and back)")
    ap.add_argument("--ab-tree", type=Path, default=None,
                    help="also time 1 and 2 workers with the pipelines/ of another source tree, interleaved in the "
                         "same repetitions (before/after: git archive HEAD pipelines | tar -x -C DIR)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    a = ap.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="dcat-bench-"))
    secs = a.minutes * 60 / a.recordings
    cfg = replace(PreprocessConfig(), align=a.align)
    warm()
    fig: dict = {"machine": f"{os.cpu_count()} cpu, python {sys.version.split()[0]}",
                 "recorded_minutes": round(a.minutes, 2), "align": a.align, "sizes": {}}
    for size in a.video_size:
        raw = work / f"raw{size}"
        if not raw.exists():
            t = time.perf_counter()
            synthesize(raw, SynthConfig(subjects=a.recordings, recordings=1, seconds=secs, seed=11,
                                        video_size=size, declared_fraction=1.0))
            print(f"generated {a.recordings} x {secs:.0f} s in {time.perf_counter() - t:.1f} s -> {raw}", file=sys.stderr)
        fig["sizes"][str(size)] = measure(raw, work, a.reps, cfg, a.ab, a.ab_tree)
    a.video_size = a.video_size[0]  # --memory: recordings of the first size
    if a.memory:
        mem = {}
        for minutes in (10.0, a.long_minutes):
            d = work / f"mem{minutes:g}"
            if not d.exists():
                synthesize(d, SynthConfig(subjects=1, recordings=1, seconds=minutes * 60, seed=5,
                                          video_size=a.video_size, declared_fraction=1.0))
            mem[minutes] = peak_rss_mb(discover([d])[0], work / f"memout{minutes:g}")
        fig["peak_rss_mb_10min"] = round(mem[10.0], 1)
        fig[f"peak_rss_mb_{a.long_minutes:g}min"] = round(mem[a.long_minutes], 1)
        fig["peak_rss_ratio"] = round(mem[a.long_minutes] / mem[10.0], 3)
    if a.json:
        print(json.dumps(fig, indent=1))
    else:
        print(f"{fig['recorded_minutes']} min of recordings per size on {fig['machine']}, --align {a.align}")
        for size, f in fig["sizes"].items():
            report(f, int(size))
        if a.memory:
            print(f"peak RSS: 10 min {fig['peak_rss_mb_10min']:.0f} MB, {a.long_minutes:g} min "
                  f"{fig[f'peak_rss_mb_{a.long_minutes:g}min']:.0f} MB, ratio {fig['peak_rss_ratio']:.2f} "
                  "(target < 2 GB and <= 1.3)")
    if a.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
