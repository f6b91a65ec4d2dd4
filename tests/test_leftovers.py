"""What killed or damaged runs leave behind (issue 13, items 2, 3 and 6).

- an unreadable ``*.h5`` in the shards directory: `dcat preprocess` moves it to ``quarantine/``
  and makes the recording again; `dcat manifest` fails with a clean error naming the file;
- ``.scratch-<id>-<pid>/`` folders and ``.*.tmp`` files of dead runs are removed at the start of
  a run, those of a live run (its lock held) are kept;
- a kill between the epoch's metrics row and ``last.pt`` loses no row after ``--resume``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from dcat_cli.main import app
from pipelines.core.lock import FileLock, lock_path_for, try_lock
from pipelines.ingest.preprocess import PreprocessConfig, preprocess
from pipelines.ingest.raw import discover
from pipelines.shards.validate import validate_shards

runner = CliRunner()


def datasets(path: Path) -> dict[str, np.ndarray]:
    """Every dataset of an HDF5 file by name (values, not attributes: those carry times)."""
    out = {}
    with h5py.File(path, "r") as h:
        h.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def same_datasets(a: Path, b: Path) -> bool:
    da, db = datasets(a), datasets(b)
    return da.keys() == db.keys() and all(
        np.asarray(da[k]).dtype == np.asarray(db[k]).dtype and np.array_equal(da[k], db[k]) for k in da)


@pytest.fixture()
def shards_copy(tiny_shards, tmp_path) -> Path:
    src, _ = tiny_shards
    dst = tmp_path / "shards"
    shutil.copytree(src, dst)
    return dst


DAMAGE = {
    "empty": lambda b: b"",
    "truncated": lambda b: b[: len(b) // 3],
    "garbage": lambda b: bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_unreadable_shard_is_quarantined_and_made_again(kind, tiny_raw, tiny_shards, shards_copy):
    clean, _ = tiny_shards
    bad = shards_copy / "s01_r01.h5"
    damaged = DAMAGE[kind](bad.read_bytes())
    bad.write_bytes(damaged)
    res = preprocess(discover([tiny_raw]), shards_copy, PreprocessConfig())
    s = res["summary"]
    assert (s["ok"], s["skipped"], s["failed"]) == (1, 1, 0), s["errors"]
    assert res["manifest"] is not None and len(res["manifest"]["shards"]) == 2
    moved = list((shards_copy / "quarantine").iterdir())
    assert len(moved) == 1 and moved[0].name.startswith("s01_r01.") and moved[0].suffix == ".h5"
    assert moved[0].read_bytes() == damaged  # the user's file is kept as it was
    assert any("s01_r01.h5" in w and "quarantine" in w for w in s["warnings"]), s["warnings"]
    assert same_datasets(bad, clean / "s01_r01.h5")
    assert validate_shards(shards_copy) == []


def test_manifest_names_an_unreadable_shard_without_traceback(shards_copy):
    (shards_copy / "s02_r01.h5").write_bytes(b"")
    before = (shards_copy / "manifest.json").read_bytes()
    r = runner.invoke(app, ["manifest", str(shards_copy)])
    assert r.exit_code == 1
    text = r.output + (r.stderr if r.stderr_bytes is not None else "")
    assert "s02_r01.h5" in text and "cannot be read" in text and "Traceback" not in text
    assert r.exception is None or isinstance(r.exception, SystemExit)
    assert (shards_copy / "manifest.json").read_bytes() == before  # the last good manifest stays
    r = runner.invoke(app, ["inspect", str(shards_copy)])
    assert r.exit_code == 1 and (r.exception is None or isinstance(r.exception, SystemExit))


def test_leftovers_of_dead_runs_removed_live_ones_kept(tiny_raw, shards_copy):
    dead_scratch = shards_copy / ".scratch-s01_r01-4194304"  # no such pid; no lock held
    dead_scratch.mkdir()
    (dead_scratch / "video.u8").write_bytes(b"x" * 1000)
    dead_tmp = [shards_copy / ".s02_r01.h5.k2j3h4g5.tmp", shards_copy / ".manifest.json.abcd1234.tmp"]
    for p in dead_tmp:
        p.write_bytes(b"half")
    (shards_copy / ".s01_r01.h5.lock").write_text("4194304 elsewhere\n")  # a killed holder's lock file
    # a live run (here: this process) making s09_r01: its scratch folder and temporary file stay
    live_scratch = shards_copy / ".scratch-s09_r01-1"
    live_scratch.mkdir()
    live_tmp = shards_copy / ".s09_r01.h5.zzzz9999.tmp"
    live_tmp.write_bytes(b"in progress")
    with FileLock(lock_path_for(shards_copy / "s09_r01.h5")):
        res = preprocess(discover([tiny_raw]), shards_copy, PreprocessConfig())
        assert live_scratch.is_dir() and live_tmp.is_file()
    assert res["summary"]["skipped"] == 2 and res["summary"]["failed"] == 0
    assert not dead_scratch.exists() and not any(p.exists() for p in dead_tmp)
    assert sorted(res["summary"]["leftovers_removed"]) == sorted([dead_scratch.name] + [p.name for p in dead_tmp])
    assert not (shards_copy / ".s01_r01.h5.lock").exists()
    assert not list(shards_copy.glob(".*.lock"))  # a finished run leaves no lock file


# ------------------------------------------------------------------------ item 6: metrics vs last.pt
@pytest.fixture(scope="module")
def fake_shards(tmp_path_factory):
    from _fake_shards import write_fake_shards

    d = tmp_path_factory.mktemp("leftover_shards") / "shards"
    write_fake_shards(d, streams=("imu",), subjects=("s01", "s02", "s03"), recordings_per_subject=2,
                      duration_s=16.0, seed=4)
    return d


@pytest.mark.parametrize("when", ["after_last_pt", "before_last_pt"])
def test_kill_around_last_pt_loses_no_metrics_row(when, fake_shards, tmp_path, monkeypatch, one_thread):
    """A kill right after ``last.pt`` of epoch 2 is replaced (before, the row came after it) or
    right before it: after --resume the rows are epochs 0..4, each once."""
    import pipelines.learn.fit as fit_mod
    from pipelines.learn.config import TrainConfig
    from pipelines.learn.pretrain import pretrain

    real = fit_mod.save_checkpoint

    def save(path, payload):
        hit = Path(path).name == "last.pt" and payload["epoch"] == 2
        if hit and when == "before_last_pt":
            raise KeyboardInterrupt
        real(path, payload)
        if hit:
            raise KeyboardInterrupt

    kw = {"data": str(fake_shards), "modality": "imu", "out": str(tmp_path / "run"), "d": 8, "heads": 2, "epochs": 5,
              "batch_size": 16, "block_s": 4.0, "patience": 0, "threads": 1}
    monkeypatch.setattr(fit_mod, "save_checkpoint", save)
    with pytest.raises(KeyboardInterrupt):
        pretrain(TrainConfig(**kw))
    free = try_lock(tmp_path / "run" / ".dcat.lock")  # the interrupted run let go of its folder
    assert free is not None
    free.release()
    monkeypatch.setattr(fit_mod, "save_checkpoint", real)
    pretrain(TrainConfig(**kw, resume=True))
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3, 4]
