"""End-to-end delay of streaming prediction, `dcat predict RUN - --stream`: a sample written to the
process's stdin -> the JSON line of the window it completes read from its stdout.

    python benchmarks/deploy_stream.py --run runs/imu-id-fold0of3 --csv sample_data/s01_r01/imu.csv
    python benchmarks/deploy_stream.py --run RUN --csv imu.csv --speed 4 --json     # paced 4x real time
    python benchmarks/deploy_stream.py --run runs/audio-id --pcm audio.f32          # audio model, raw PCM

Two passes, each a fresh `python -m dcat_cli.main predict RUN - --stream --device cpu --threads 1`:

- fast (run first): every piece written as fast as the pipe takes it; windows/s = windows / (process
  started -> last JSON line), start-up included; ``first_window_s`` (process started -> first JSON
  line: about the start-up) and ``windows_per_s_after_first`` from the first JSON line on.
- paced: the pieces written one at a time at the pace of the stream (``--speed`` times real time;
  1: as a sensor would). An IMU CSV goes row by row at its timestamps, the header first. Raw
  float32 PCM for an audio model goes in ``--chunk-ms`` pieces at the audio rate. For each window
  the piece that completes it is timestamped when written, and its JSON line when read; the delay is
  the difference (median, p95, max in ms). For IMU that piece is the first sample past the last
  instant its anti-alias filter reads, found by running ``pipelines.deploy.stream.ImuWindower`` on
  the same rows here; for audio it is the piece holding the window's last sample. Windows whose
  piece was written before the first JSON line arrived carry the process's start-up (importing
  torch, loading the model) and are left out of the delay, and so is the first window
  (``first_window_ms``: it may carry the rest of the start-up). The pieces start
  ``started_after_s`` after the process (2 x the fast pass's start-up + 2 s), so normally no other
  is left out.

The delay a window has by design, before any computing, is ``design_delay_s``: the median of (end of
the completing piece - ``end_s``), in stream time. For IMU the window's last samples pass the
anti-alias filter, which reads 10 output periods further when decimating, and the row after that
instant completes the window. For audio it is under one chunk.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_spec(run_dir: Path, checkpoint: str = "best.pt"):
    """The ``StreamSpec`` of the run's model (``pipelines.deploy.predictor``)."""
    import torch

    from pipelines.deploy.predictor import spec_from_checkpoint

    ck_path = run_dir if run_dir.suffix == ".pt" else run_dir / checkpoint
    return spec_from_checkpoint(torch.load(ck_path, map_location="cpu", weights_only=True), str(ck_path))


def completing_rows(spec, lines: list[str]) -> tuple[list[int], list[float]]:
    """IMU: for each window, the index in ``lines`` of the row that completes it, and (stream time)
    that row's time minus the window's end."""
    from pipelines.deploy.stream import CsvSamples, ImuWindower

    parser, win = CsvSamples(spec.channels), ImuWindower(spec.rate_hz, spec.window_s, spec.stride_s)
    rows, delays = [], []
    for i, line in enumerate(lines):
        s = parser.parse(line)
        if s is None:
            continue
        for w in win.push(s[0], s[1], parser.lineno):
            rows.append(i)
            delays.append(s[0] - w.end_s)
    rows += [len(lines) - 1] * len(win.finish())  # completed by the end of the input
    return rows, delays


def completing_chunks(spec, n_samples: int, chunk: int) -> tuple[list[int], list[float]]:
    """Audio: for each window, the index of the ``chunk``-sample piece holding its last sample, and
    (stream time) the end of that piece minus the window's end."""
    from pipelines.core.timeutil import num_samples, sample_index

    sr = dict(spec.audio)["audio_sr"]
    t_win = num_samples(spec.window_s, sr)
    rows, delays, j = [], [], 0
    while (last := sample_index(j * spec.stride_s, 0.0, sr) + t_win - 1) < n_samples:
        rows.append(last // chunk)
        delays.append(min(n_samples, (last // chunk + 1) * chunk) / sr - (j * spec.stride_s + spec.window_s))
        j += 1
    return rows, delays


def _plan(spec, path: Path, chunk_ms: float) -> tuple[list[bytes], list[float], list[int], list[float]]:
    """The pieces to write (CSV rows; PCM chunks of ``chunk_ms``), when each is due (stream time from
    the first), and each window's completing piece and delay by design."""
    if spec.kind == "audio":
        data = path.read_bytes()
        sr = dict(spec.audio)["audio_sr"]
        chunk = max(1, round(chunk_ms * sr / 1000))
        pieces = [data[i:i + 4 * chunk] for i in range(0, len(data), 4 * chunk)]
        return pieces, [i * chunk / sr for i in range(len(pieces))], *completing_chunks(spec, len(data) // 4, chunk)
    lines = path.read_text().splitlines(keepends=True)
    ts = [float(ln.split(",", 1)[0]) if ln[:1] not in ("t", "T") else None for ln in lines]
    t0 = next(t for t in ts if t is not None)
    return [ln.encode() for ln in lines], [0.0 if t is None else t - t0 for t in ts], *completing_rows(spec, lines)


def _feed(fd: int, lines: list[bytes], due_s: list[float] | None, written: list[float], wait_s: float) -> None:
    """After ``wait_s``, write ``lines`` to ``fd`` one by one (each at ``due_s[i]`` after the first
    when paced), noting when."""
    time.sleep(wait_s)
    t0 = time.perf_counter()
    try:
        for i, line in enumerate(lines):
            if due_s is not None:
                wait = t0 + due_s[i] - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
            os.write(fd, line)
            written.append(time.perf_counter())
    except BrokenPipeError:
        pass
    finally:
        os.close(fd)


def _one_pass(run_dir: Path, lines: list[bytes], due_s: list[float] | None, checkpoint: str, threads: int,
              wait_s: float = 0.0) -> dict:
    cmd = [sys.executable, "-m", "dcat_cli.main", "predict", str(run_dir), "-", "--stream", "--device", "cpu",
           "--threads", str(threads), "--checkpoint", checkpoint]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    written: list[float] = []
    fd = os.dup(proc.stdin.fileno())
    proc.stdin.close()
    feeder = threading.Thread(target=_feed, args=(fd, lines, due_s, written, wait_s), daemon=True)
    t_start = time.perf_counter()
    feeder.start()
    arrived, out = [], []
    for raw in proc.stdout:
        arrived.append(time.perf_counter())
        out.append(json.loads(raw))
    feeder.join()
    rc = proc.wait()
    if rc != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {rc}: {proc.stderr.read().decode()[-2000:]}")
    return {"t_start": t_start, "written": written, "arrived": arrived, "rows": out}


def _ms(xs: list[float]) -> dict:
    if not xs:
        return {"n": 0, "median_ms": None, "p95_ms": None, "max_ms": None}
    s = sorted(xs)
    p95 = s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))]
    return {"n": len(s), "median_ms": round(1000 * statistics.median(s), 3), "p95_ms": round(1000 * p95, 3),
            "max_ms": round(1000 * s[-1], 3)}


def stream_latency(run_dir: str | Path, input_path: str | Path, *, speed: float = 1.0, paced: bool = True,
                   fast: bool = True, checkpoint: str = "best.pt", threads: int = 1, chunk_ms: float = 10.0) -> dict:
    """Figures of the two passes (module docstring). ``input_path``: an IMU CSV for an IMU model, raw
    float32 PCM at the model's audio rate for an audio model (written in ``chunk_ms`` pieces)."""
    run_dir, input_path = Path(run_dir).resolve(), Path(input_path)
    spec = load_spec(run_dir, checkpoint)
    pieces, due, rows_of, design = _plan(spec, input_path, chunk_ms)
    res: dict = {"run": str(run_dir), "input": str(input_path), "kind": spec.kind, "pieces": len(pieces),
                 "windows": len(rows_of), "threads": threads,
                 "design_delay_s": round(statistics.median(design), 4) if design else None}
    if fast:
        f = _one_pass(run_dir, pieces, None, checkpoint, threads)
        n = len(f["rows"])
        total = f["arrived"][-1] - f["t_start"]
        after = f["arrived"][-1] - f["arrived"][0]
        res["fast"] = {"windows": n, "seconds": round(total, 3), "windows_per_s": round(n / total, 1),
                       "first_window_s": round(f["arrived"][0] - f["t_start"], 3),
                       "windows_per_s_after_first": round((n - 1) / after, 1) if after > 0 else None,
                       "skipped": sum("skipped" in r for r in f["rows"])}
    if paced:
        wait = 2.0 * res["fast"]["first_window_s"] + 2.0 if fast else 12.0  # let the process start first
        p = _one_pass(run_dir, pieces, [d / speed for d in due], checkpoint, threads, wait)
        if len(p["rows"]) != len(rows_of):
            raise SystemExit(f"paced: {len(p['rows'])} JSON lines, expected {len(rows_of)}")
        first = p["arrived"][0] if p["arrived"] else float("inf")
        delays = [p["arrived"][j] - p["written"][rows_of[j]] for j in range(len(rows_of))
                  if p["written"][rows_of[j]] > first]
        res["paced"] = {"speed": speed, "started_after_s": round(wait, 2),
                        "first_window_ms": round(1000 * (first - p["written"][rows_of[0]]), 3),
                        "seconds": round(p["arrived"][-1] - p["written"][0], 2), **_ms(delays)}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="run folder (or .pt checkpoint) of an IMU or audio model")
    ap.add_argument("--csv", help="IMU model: an IMU CSV (t,<channels>), e.g. sample_data/s01_r01/imu.csv")
    ap.add_argument("--pcm", help="audio model: raw float32 little-endian mono PCM at the model's audio rate")
    ap.add_argument("--chunk-ms", type=float, default=10.0, help="audio: PCM written in pieces of this length")
    ap.add_argument("--speed", type=float, default=1.0, help="paced pass: this many times real time")
    ap.add_argument("--checkpoint", default="best.pt")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-paced", action="store_true", help="skip the paced pass")
    ap.add_argument("--no-fast", action="store_true", help="skip the as-fast-as-possible pass")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    if (a.csv is None) == (a.pcm is None):
        ap.error("give --csv (IMU model) or --pcm (audio model)")
    res = stream_latency(a.run, a.csv or a.pcm, speed=a.speed, paced=not a.no_paced, fast=not a.no_fast,
                         checkpoint=a.checkpoint, threads=a.threads, chunk_ms=a.chunk_ms)
    if a.json:
        from pipelines.core.io import to_json

        print(to_json(res))
        return
    print(f"{res['windows']} windows from {res['pieces']} pieces of {res['input']}; by design a window is complete "
          f"{res['design_delay_s']} s (stream time) after its end")
    if "paced" in res:
        p = res["paced"]
        print(f"paced x{p['speed']:g}: sample in -> JSON line out: median {p['median_ms']} ms, p95 {p['p95_ms']} ms, "
              f"max {p['max_ms']} ms over {p['n']} windows (rows started {p['started_after_s']} s after the process)")
    if "fast" in res:
        f = res["fast"]
        print(f"as fast as possible: {f['windows']} windows in {f['seconds']} s = {f['windows_per_s']} windows/s "
              f"(start-up included, first window after {f['first_window_s']} s); "
              f"{f['windows_per_s_after_first']} windows/s after the first")


if __name__ == "__main__":
    main()
