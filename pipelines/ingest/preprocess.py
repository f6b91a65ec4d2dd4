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
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from pipelines import __version__
from pipelines.core.errors import DcatError, RecordingError
from pipelines.ingest.config import PreprocessConfig
from pipelines.ingest.recording import process_recording, shard_path
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


def _run_one(rec_dir: str, out_dir: str, cfg: PreprocessConfig, overwrite: bool) -> dict:
    """Worker entry: never raises; returns a result record with status ok / skipped / failed."""
    rid = Path(rec_dir).name
    t0 = time.perf_counter()
    try:
        final = shard_path(Path(out_dir), rid)
        if final.exists() and not overwrite:
            prev = existing_shard_info(final)
            if prev["args"] != cfg.as_dict():
                raise RecordingError(rid, str(final), "a shard made with different settings exists",
                                     "use --overwrite to replace it, or another --out")
            return {"recording": rid, "status": "skipped", "info": prev["checks"], "seconds": time.perf_counter() - t0}
        info = process_recording(Path(rec_dir), Path(out_dir), cfg)
        return {"recording": rid, "status": "ok", "info": info, "seconds": time.perf_counter() - t0}
    except RecordingError as e:
        out = {"recording": rid, "status": "failed", "error": e.as_dict(), "message": str(e),
               "seconds": time.perf_counter() - t0}
        if getattr(e, "sync", None):  # the lag estimate made before the recording failed
            out["sync"] = e.sync
        return out
    except DcatError as e:
        return {"recording": rid, "status": "failed", "error": {"recording": rid, "file": None, "problem": str(e)},
                "message": f"{rid}: {e}", "seconds": time.perf_counter() - t0}
    except Exception as e:  # a bug, or a library failing in a way we did not foresee: keep going
        tb = traceback.format_exc(limit=3)
        return {"recording": rid, "status": "failed",
                "error": {"recording": rid, "file": None, "problem": f"internal error {type(e).__name__}: {e}", "traceback": tb},
                "message": f"{rid}: internal error {type(e).__name__}: {e}", "seconds": time.perf_counter() - t0}


def existing_shard_info(path: Path) -> dict:
    """The settings (``args``) and info record (``checks``) stored in an existing shard."""
    import h5py

    with h5py.File(path, "r") as h:
        return {"args": json.loads(h.attrs["args_json"]), "checks": json.loads(h.attrs["checks_json"])}


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
            "warnings": [f"{r['recording']}: {w}" for r in results if r.get("info") for w in r["info"].get("warnings", [])],
            "errors": [r["message"] for r in results if r["status"] == "failed"]}


def _run_all(recordings: list[Path], out_dir: Path, cfg: PreprocessConfig, overwrite: bool, workers: int,
             fail_fast: bool, done: Callable[[dict], None]) -> None:
    """Run ``_run_one`` for every recording (in ``workers`` processes when > 1), handing each
    result to ``done`` as it finishes; ``fail_fast`` stops at the first failure."""
    if workers <= 1:
        for p in recordings:
            r = _run_one(str(p), str(out_dir), cfg, overwrite)
            done(r)
            if fail_fast and r["status"] == "failed":
                break
        return
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
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

    def done(r):
        results.append(r)
        if progress:
            progress(r)

    _run_all(recordings, out_dir, cfg, overwrite, workers, fail_fast, done)
    ran = {r["recording"] for r in results}
    for p in recordings:
        if p.name not in ran:
            results.append({"recording": p.name, "status": "not_run", "seconds": 0.0})
    results.sort(key=lambda r: r["recording"])
    summary = summarize(results)
    summary["not_run"] = sum(1 for r in results if r["status"] == "not_run")
    summary["seconds"] = time.perf_counter() - t0
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
    atomic_write_text(out_dir / name, to_json(record, indent=1))
    return {"summary": summary, "results": results, "manifest": manifest}
