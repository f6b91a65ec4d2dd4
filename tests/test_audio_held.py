"""Resampled audio is held in memory up to ``audio.HOLD_BYTES``, else spilled to the scratch file
(also part-way through a recording): the shards are the same either way, and a short recording makes
no scratch folder at all (removing one cost 26-69 ms of the run's tail)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pipelines.ingest.preprocess import PreprocessConfig, process_recording
from pipelines.ingest.streams import audio
from tests.test_perf_preprocess import _assert_same_shards

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"


@pytest.mark.parametrize("align", ["meta", "estimate"])
def test_held_audio_and_spilled_audio_write_the_same_shard(align, tmp_path, monkeypatch):
    cfg = replace(PreprocessConfig(), align=align, audio_waveform=True)
    rec = SAMPLE / "s01_r02"
    made: dict[str, list] = {}
    close = audio._ScratchWriter.close

    def spy(self):
        made.setdefault(str(tmp_path), []).append((self.f is not None, self.n))
        return close(self)

    monkeypatch.setattr(audio._ScratchWriter, "close", spy)
    mkdirs: list[Path] = []
    real_mkdir = Path.mkdir

    def watch_mkdir(self, *a, **k):
        if self.name.startswith(".scratch-"):
            mkdirs.append(self)
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", watch_mkdir)
    process_recording(rec, tmp_path / "held", cfg)
    n = made[str(tmp_path)][-1][1]
    assert made[str(tmp_path)][-1] == (False, n) and n > 16000  # held: no scratch file
    assert mkdirs == []  # and no scratch folder
    for name, limit in [("spilled", 0), ("midway", (n // 3) * 4)]:
        monkeypatch.setattr(audio, "HOLD_BYTES", limit)
        process_recording(rec, tmp_path / name, cfg)
        assert made[str(tmp_path)][-1] == (True, n)
        _assert_same_shards(tmp_path / "held" / "s01_r02.h5", tmp_path / name / "s01_r02.h5")
    assert len(mkdirs) == 2 and not any(p.exists() for p in mkdirs)  # made when spilled, removed after


def test_writer_spills_what_it_held_in_order(tmp_path, monkeypatch):
    monkeypatch.setattr(audio, "HOLD_BYTES", 40)  # 10 float32 samples
    w = audio._ScratchWriter(tmp_path / "scr" / "a.f32", hop=4)
    parts = [np.arange(k * 6, k * 6 + 6, dtype=np.float32) for k in range(3)]  # 6, 12, then 18 > 10: spill
    w.emit(parts[0])
    assert w.f is None and not (tmp_path / "scr").exists()
    w.emit(parts[1])
    assert w.f is not None
    w.emit(parts[2])
    assert w.close() is None
    assert np.array_equal(np.fromfile(tmp_path / "scr" / "a.f32", np.float32), np.arange(18, dtype=np.float32))
    assert len(w.envelope()) == 18 // 4
    h = audio._ScratchWriter(tmp_path / "none" / "b.f32", hop=4)
    monkeypatch.setattr(audio, "HOLD_BYTES", 1 << 20)
    for p in parts:
        h.emit(p)
    held = h.close()
    assert np.array_equal(held, np.arange(18, dtype=np.float32)) and not held.flags.writeable
    assert not (tmp_path / "none").exists()
