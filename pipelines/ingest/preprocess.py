"""`dcat preprocess`: raw recordings -> one synchronized, windowed HDF5 shard per recording.

This module owns the run over recordings: each in a worker (``_run_one``; a failure is recorded,
not raised), an existing shard made with the same settings skipped, the summary (``summarize``),
the manifest and ``preprocess-info.json``. One recording's pipeline (read, align, window, write)
is ``pipelines.ingest.recording.process_recording``; its settings are ``PreprocessConfig``
(``pipelines.ingest.config``); the stream kinds are ``pipelines.ingest.streams``. Those names are
re-exported here, where callers have always found them.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from contextlib import AbstractContextManager, ExitStack
from typing import Callable

from pipelines import __version__
from pipelines.core.errors import DcatError, RecordingError, ShardError
from pipelines.core.lock import FileLock, LockBusy, lock_path_for
from pipelines.ingest.config import PreprocessConfig
from pipelines.ingest.outdir import clear_leftovers, quarantine, shard_lock, sweep_leftovers
from pipelines.ingest.raw import recording_id
from pipelines.ingest.recording import (OpenRecording, discard, open_recording, process_recording, shard_path,
                                        start_reference_video)
from pipelines.ingest.windows import REJECT_REASONS
from pipelines.core.io import to_json

__all__ = [
    "REJECT_REASONS",
    "PreprocessConfig",
    "existing_shard_info",
    "preprocess",
    "process_recording",
    "shard_path",
    "summarize",
]


def one_blas_thread() -> "AbstractContextManager":
    """A context in which BLAS / OpenMP libraries use one thread (``threadpoolctl``; nothing when it
    is not installed). A recording's steps are single-threaded by design (decord with one thread,
    pocketfft); only the log-mel matrix product used the BLAS pool: with N workers on N cores that is
    N x N threads, and beside a busy core the pool's first use cost ~0.3 s against ~0.07 s on one
    thread (same log-mel bytes: each output element is one thread's dot product)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        from contextlib import nullcontext

        return nullcontext()
    return threadpool_limits(limits=1)


def _run_one(rec_dir: str, out_dir: str, cfg: PreprocessConfig, overwrite: bool,
             started: OpenRecording | None = None, after_decode: Callable[[], None] | None = None) -> dict:
    """Worker entry: never raises; returns a result record with status ok / skipped / failed.

    The shard's lock (:func:`pipelines.ingest.outdir.shard_lock`) is held throughout: another run
    making the same shard is waited for, and then its shard is found and skipped. ``started``: the
    recording opened early (``_start_early``: its lock held, no shard there, its video decoding);
    ``after_decode``: handed to ``process_recording``."""
    folder = Path(rec_dir).name
    rid = recording_id(folder)
    t0 = time.perf_counter()
    extra: dict = {} if folder == rid else {"folder": folder}
    try:
        with ExitStack() as held:
            if started is None:  # else its lock is held, and no shard was there (``_start_early``)
                final = shard_path(Path(out_dir), rid)
                held.enter_context(shard_lock(final))
                clear_leftovers(Path(out_dir), final.name)
                if final.exists() and not overwrite:
                    try:
                        prev = existing_shard_info(final)
                    except ShardError as e:
                        if isinstance(e.__cause__, BlockingIOError):  # open for writing elsewhere: not ours to move
                            raise RecordingError(rid, str(final), f"the shard is in use by another program "
                                                 f"({e.__cause__})", "close it and run again") from None
                        moved = quarantine(final)
                        extra["quarantined"] = {"file": str(final), "moved_to": str(moved), "problem": str(e)}
                    else:
                        if prev["args"] != cfg.as_dict():
                            raise RecordingError(rid, str(final), "a shard made with different settings exists",
                                                 "use --overwrite to replace it, or another --out")
                        return {"recording": rid, "status": "skipped", "info": prev["checks"],
                                "seconds": time.perf_counter() - t0}
            with one_blas_thread():
                info = process_recording(Path(rec_dir), Path(out_dir), cfg, opened=started, after_decode=after_decode)
        return {"recording": rid, "status": "ok", "info": info, **extra, "seconds": time.perf_counter() - t0}
    except RecordingError as e:
        return _failed(rid, e, extra, t0)
    except DcatError as e:
        return {"recording": rid, "status": "failed", "error": {"recording": rid, "file": None, "problem": str(e)},
                "message": f"{rid}: {e}", **extra, "seconds": time.perf_counter() - t0}
    except Exception as e:  # a bug, or a library failing in a way we did not foresee: keep going
        if disk_full(e):
            full = RecordingError(rid, str(shard_path(Path(out_dir), rid)),
                                  f"no space left on the device while writing the shard ({e})",
                                  "free space or choose another --out; nothing of this recording was kept")
            return _failed(rid, full, extra, t0)
        tb = traceback.format_exc(limit=3)
        return {"recording": rid, "status": "failed",
                "error": {"recording": rid, "file": None, "problem": f"internal error {type(e).__name__}: {e}", "traceback": tb},
                "message": f"{rid}: internal error {type(e).__name__}: {e}", **extra, "seconds": time.perf_counter() - t0}


def _failed(rid: str, e: RecordingError, extra: dict, t0: float) -> dict:
    out = {"recording": rid, "status": "failed", "error": e.as_dict(), "message": str(e), **extra,
           "seconds": time.perf_counter() - t0}
    if getattr(e, "sync", None):  # the lag estimate made before the recording failed
        out["sync"] = e.sync
    return out


def disk_full(e: BaseException) -> bool:
    """An OSError of a full disk or quota: ``errno`` ENOSPC / EDQUOT, or HDF5's message for it (h5py's
    OSError carries the C library's errno only in its text)."""
    import errno

    if not isinstance(e, OSError):
        return False
    return e.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in str(e) or "errno = 28," in str(e)


def existing_shard_info(path: Path) -> dict:
    """The settings (``args``) and info record (``checks``) stored in an existing shard; ShardError
    (the cause chained) when it does not open as a shard (truncated, empty, not HDF5, attributes
    or groups missing) or fails the checks every reader runs (``pipelines.shards.check``)."""
    import h5py

    from pipelines.shards.check import check_shard

    try:
        with h5py.File(path, "r") as h:
            missing = [k for k in ("windows", "streams") if k not in h]
            if missing:
                raise ShardError(f"{path}: no {' or '.join('/' + k for k in missing)} (not a complete shard)")
            info = {"args": json.loads(h.attrs["args_json"]), "checks": json.loads(h.attrs["checks_json"])}
    except ShardError:
        raise
    except Exception as e:  # noqa: BLE001 - h5py raises OSError, KeyError, ValueError, ... for a damaged file
        raise ShardError(f"{path}: cannot be read as a shard ({type(e).__name__}: {e})") from e
    check_shard(path)  # the checks every reader runs: a tampered shard is quarantined and made again
    return info


def carry_protocols(recordings: list[Path], out_dir: Path) -> str | None:
    """Copy the raw folder's ``splits.json`` (a dataset's own protocols, written by ``dcat import``)
    into the shards folder, where ``--split official`` reads it; returns where it came from. Raw
    folders with different ``splits.json`` files: none is copied, and ``--split official`` says so."""
    from pipelines.core.io import atomic_write_text

    found = {}
    for root in sorted({Path(p).parent for p in recordings}):
        f = root / "splits.json"
        if f.is_file() and f.stat().st_size <= 64 << 20:
            found.setdefault(f.read_bytes(), str(f))
    if len(found) != 1:
        return None
    (text, src), = found.items()
    atomic_write_text(Path(out_dir) / "splits.json", text.decode("utf-8", errors="replace"))
    return src


def summarize(results: list[dict]) -> dict:
    """Totals over the run's result records: statuses, windows kept and dropped per reason, the
    worst reliable lag, recordings out of sync or uncertain, warnings and errors."""
    rej = {r: 0 for r in REJECT_REASONS}
    kept = 0
    worst = None
    for r in results:
        info = r.get("info")
        if not info:
            continue
        kept += info["windows_kept"]
        for k, v in info["rejected"].items():
            rej[k] = rej.get(k, 0) + v
        for name, s in info["streams"].items():
            if (name == info["reference_stream"] or not s.get("lag_reliable") or s.get("lag_s") is None
                    or s.get("lag_role") == "same clock"):
                continue
            if worst is None or abs(s["lag_s"]) > abs(worst["lag_s"]):
                worst = {"recording": r["recording"], "stream": name, "reference": info["reference_stream"],
                         "lag_s": s["lag_s"], "corr": s.get("lag_corr"), "z": s.get("lag_z")}
    count = lambda st: sum(1 for r in results if r["status"] == st)  # noqa: E731
    return {"recordings": len(results), "ok": count("ok"), "skipped": count("skipped"), "failed": count("failed"),
            "windows_kept": kept, "windows_dropped": rej, "worst_lag": worst,
            "out_of_sync": sorted(r["recording"] for r in results if r.get("info") and r["info"].get("sync_ok") is False),
            "sync_uncertain": sorted(r["recording"] for r in results if r.get("info") and r["info"].get("sync_ok") is None),
            "warnings": [f"{r['recording']}: {w}" for r in results if r.get("info") for w in r["info"].get("warnings", [])]
            + [f"{r['recording']}: {q['problem']}: moved to {q['moved_to']} and made again"
               for r in results if (q := r.get("quarantined"))],
            "errors": [r["message"] for r in results if r["status"] == "failed"]}


def die_with_parent(parent: int) -> None:
    """Pool worker initializer: the worker ends when ``parent`` (the run) ends, also by kill -9,
    instead of finishing its recording for nobody. Linux: the kernel sends SIGKILL
    (``prctl(PR_SET_PDEATHSIG)``); elsewhere a thread checks the parent every 0.5 s."""
    armed = False
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            armed = ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0) == 0  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
    if not armed:
        import threading

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(0.5)
            os._exit(1)

        threading.Thread(target=watch, name="dcat-parent-watch", daemon=True).start()


def _start_early(rec_dir: Path, out_dir: Path, cfg: PreprocessConfig) -> OpenRecording | None:
    """The next recording opened and its reference video decoding into its shard, while the current
    recording's lag estimate and writing run; best effort: None (nothing held) when its shard's lock
    is taken, a shard is there already (skipped or quarantined in its turn, as without this), or
    opening it fails (the error is reported in its turn)."""
    final = shard_path(out_dir, recording_id(Path(rec_dir).name))
    lock = shard_lock(final)
    try:
        lock.acquire(blocking=False)
    except LockBusy:
        return None
    stack = ExitStack()
    stack.callback(lock.release)
    try:
        clear_leftovers(out_dir, final.name)
        if final.exists():
            stack.close()
            return None
        o = open_recording(Path(rec_dir), out_dir, cfg, stack)
    except Exception:
        stack.close()
        return None
    try:
        start_reference_video(o, cfg)
    except Exception:
        discard(o)
        return None
    except BaseException:
        discard(o)
        raise
    return o


#: one worker starts the next recording's video decoding when the current one's is done (``_start_early``)
EARLY_START = True


def _run_serial(recordings: list[Path], out_dir: Path, cfg: PreprocessConfig, overwrite: bool, fail_fast: bool,
                done: Callable[[dict], None]) -> None:
    """One recording after the other; the next one's reference video starts decoding (into its shard,
    in a thread) as soon as the current one's is decoded, so decoding goes on while the current
    recording's lag is estimated and its shard written."""
    started: OpenRecording | None = None
    try:
        for k, p in enumerate(recordings):
            nxt = recordings[k + 1] if k + 1 < len(recordings) else None

            def after_decode() -> None:  # called within this iteration: ``nxt`` is this one's
                nonlocal started
                if EARLY_START and nxt is not None:
                    started = _start_early(nxt, Path(out_dir), cfg)

            cur, started = started, None
            r = _run_one(str(p), str(out_dir), cfg, overwrite, started=cur, after_decode=after_decode)
            done(r)
            if fail_fast and r["status"] == "failed":
                break
    finally:
        if started is not None:
            discard(started)


def _run_all(recordings: list[Path], out_dir: Path, cfg: PreprocessConfig, overwrite: bool, workers: int,
             fail_fast: bool, done: Callable[[dict], None]) -> None:
    """Run ``_run_one`` for every recording (in ``workers`` processes when > 1), handing each
    result to ``done`` as it finishes; ``fail_fast`` stops at the first failure."""
    if workers <= 1:
        _run_serial(recordings, out_dir, cfg, overwrite, fail_fast, done)
        return
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=die_with_parent,
                             initargs=(os.getpid(),)) as ex:
        pending = {ex.submit(_run_one, str(p), str(out_dir), cfg, overwrite) for p in recordings}
        stop = False
        while pending and not stop:
            fin, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in fin:
                r = f.result()
                done(r)
                if fail_fast and r["status"] == "failed":
                    stop = True
        if stop:
            for f in pending:
                f.cancel()
            for f in pending:
                if not f.cancelled():
                    done(f.result())


def preprocess(recordings: list[Path], out_dir: Path, cfg: PreprocessConfig, *, overwrite: bool = False,
               workers: int = 1, fail_fast: bool = False, shard_index: int = 0, num_shards: int = 1,
               argv: list[str] | None = None,
               progress: Callable[[dict], None] | None = None) -> dict:
    """Preprocess recording folders (already discovered and selected) into ``out_dir``.

    Returns ``{"summary", "results", "manifest"}``. Recordings fail independently; ``fail_fast`` stops
    at the first failure (recordings not started are reported as not run).
    """
    from pipelines.core.io import atomic_write_text
    from pipelines.shards.format import INFO_NAME
    from pipelines.shards.manifest import write_manifest

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: list[dict] = []
    t0 = time.perf_counter()
    leftovers = sweep_leftovers(out_dir)  # of killed runs; a live run's are kept

    def done(r):
        results.append(r)
        if progress:
            progress(r)

    _run_all(recordings, out_dir, cfg, overwrite, workers, fail_fast, done)
    carried = carry_protocols(recordings, out_dir)
    ran = {r.get("folder", r["recording"]) for r in results}
    for p in recordings:
        if p.name not in ran:
            results.append({"recording": recording_id(p.name), "status": "not_run", "seconds": 0.0}
                           | ({"folder": p.name} if recording_id(p.name) != p.name else {}))
    results.sort(key=lambda r: r["recording"])
    summary = summarize(results)
    summary["not_run"] = sum(1 for r in results if r["status"] == "not_run")
    summary["seconds"] = time.perf_counter() - t0
    if carried:
        summary["protocols_from"] = carried
    summary["leftovers_removed"] = leftovers
    manifest = None
    try:
        manifest = write_manifest(out_dir)
    except DcatError as e:
        summary["errors"].append(f"manifest: {e}")
        summary["manifest_error"] = str(e)
    record = {"tool_version": __version__, "argv": argv, "config": cfg.as_dict(),
              "shard_index": shard_index, "num_shards": num_shards,
              "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "summary": summary,
              "recordings": [{k: v for k, v in r.items() if k != "info"} | ({"checks": r["info"]} if r.get("info") else {})
                             for r in results]}
    name = INFO_NAME if num_shards == 1 else INFO_NAME.replace(".json", f".{shard_index}-of-{num_shards}.json")
    with FileLock(lock_path_for(out_dir / name), what=str(out_dir / name)):
        atomic_write_text(out_dir / name, to_json(record, indent=1))
    return {"summary": summary, "results": results, "manifest": manifest}
