"""Preprocessing end to end on synthetic recordings with known answers."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest

from conftest import ground_truth
from pipelines.core.errors import DcatError, ShardError
from pipelines.shards.manifest import read_shard_summary
from pipelines.shards.validate import validate_shards
from pipelines.ingest.preprocess import PreprocessConfig, preprocess, process_recording
from pipelines.ingest.raw import discover, select_shard
from pipelines.ingest.resample import resample_irregular
from pipelines.shards.format import pack_windows
from pipelines.shards.reader import WindowReader

FRAME_S = 1 / 30


def _checks(path):
    with h5py.File(path) as h:
        return json.loads(h.attrs["checks_json"])


def test_shards_are_valid_and_complete(tiny_raw, tiny_shards):
    out, res = tiny_shards
    assert validate_shards(out) == []
    gt = ground_truth(tiny_raw)
    m = json.loads((out / "manifest.json").read_text())
    assert {s["recording_id"] for s in m["shards"]} == set(gt["recordings"])
    assert m["n_windows"] == sum(s["n_windows"] for s in m["shards"]) == res["summary"]["windows_kept"]
    assert m["streams"]["video"]["shape"] == [60, 112, 112, 3]  # 2 s at 30 fps, 112x112 RGB
    assert m["streams"]["imu"]["shape"] == [100, 6]  # 2 s at 50 Hz, 6 channels
    assert m["streams"]["audio"]["shape"] == [198, 64]  # 1 + (32000 - 400) // 160 frames, 64 mels
    assert len(m["streams"]["imu"]["mean"]) == 6
    assert (out / "preprocess-info.json").is_file()
    assert not list(out.glob(".*"))  # no temporary or scratch files left


def test_windows_lie_inside_coverage_on_the_stride_grid_with_labels_from_segments(tiny_raw, tiny_shards):
    out, _ = tiny_shards
    gt = ground_truth(tiny_raw)["recordings"]
    for p in sorted(out.glob("*.h5")):
        with h5py.File(p) as h:
            start = h["windows/start_s"][()]
            labels = [x.decode() for x in h["windows/label"][()]]
            purity = h["windows/label_purity"][()]
            checks = json.loads(h.attrs["checks_json"])
            rid = h.attrs["recording_id"]
        a, b = checks["span_s"]
        assert (start >= a - 1e-9).all() and (start + 2.0 <= b + 1e-9).all()
        steps = np.diff(start)
        assert np.allclose(steps / 1.0, np.round(steps / 1.0))  # multiples of the 1 s stride
        assert (purity >= 0.8).all()
        for s0, lab, pur in zip(start, labels, purity):
            cover = {}
            for seg in gt[rid]["segments"]:
                ov = max(0.0, min(s0 + 2.0, seg["end"]) - max(s0, seg["start"]))
                cover[seg["label"]] = cover.get(seg["label"], 0.0) + ov
            best = max(cover, key=cover.get)
            assert lab == best and pur == pytest.approx(cover[best] / 2.0, abs=1e-5)


def test_imu_windows_equal_resampling_of_the_csv_at_window_times(tiny_raw, tiny_shards):
    out, _ = tiny_shards
    p = sorted(out.glob("*.h5"))[0]
    with h5py.File(p) as h:
        rid = h.attrs["recording_id"]
        start = h["windows/start_s"][()]
        data = WindowReader(h["streams/imu"]).read(0, len(start))
        off = h["streams/imu"].attrs["clock_offset_s"]
        a = json.loads(h.attrs["checks_json"])["span_s"][0]
    csv = np.loadtxt(tiny_raw / rid / "imu.csv", delimiter=",", skiprows=1)
    n = int(round((start[-1] + 2.0 - a) * 50)) + 1
    r = resample_irregular(csv[:, 0], csv[:, 1:], 50.0, a - off, n, 2.5 / 100)
    for i in (0, len(start) // 2, len(start) - 1):
        k = int(round((start[i] - a) * 50))
        assert np.allclose(data[i], r.y[k:k + 100], atol=1e-5)


def test_video_windows_hold_the_frames_shown_at_window_times(tiny_raw, tiny_shards):
    import decord

    out, _ = tiny_shards
    p = sorted(out.glob("*.h5"))[0]
    with h5py.File(p) as h:
        rid = h.attrs["recording_id"]
        start = h["windows/start_s"][()]
        frames = WindowReader(h["streams/video"]).read(len(start) - 1, len(start))[0]
    vr = decord.VideoReader(str(tiny_raw / rid / "video.mp4"), width=112, height=112)
    # video is the reference clock (offset 0); frame k of the last window is at start + k/30
    for k in (0, 17, 59):
        idx = int(np.floor((start[-1] + k / 30) * 30 + 1e-6))
        assert np.array_equal(frames[k], vr[idx].asnumpy())


def test_lag_estimates_match_ground_truth_within_one_frame(tiny_raw, tiny_shards):
    out, _ = tiny_shards
    gt = ground_truth(tiny_raw)["recordings"]
    for p in out.glob("*.h5"):
        c = _checks(p)
        for name in ("imu", "audio"):
            s = c["streams"][name]
            assert s["lag_s"] == pytest.approx(gt[c["recording"]]["expected_lag_s"][name], abs=FRAME_S)
            # short recordings of repetitive motion may be ambiguous: then it must say so and why
            assert s["lag_reliable"] == (s["lag_status"] == "reliable")
            assert s["lag_reliable"] or (s["lag_status"] == "uncertain" and s["lag_reason"])


def test_injected_imu_offset_of_0_4_s_is_found_within_one_frame(raw_copy, tmp_path):
    rid = "s02_r01"  # seed 7: its estimate is unambiguous (s01_r01's repetitive motion is flagged uncertain)
    cfg = PreprocessConfig()
    before = process_recording(raw_copy / rid, tmp_path / "a", cfg)["streams"]["imu"]["lag_s"]
    csv = raw_copy / rid / "imu.csv"
    lines = csv.read_text().splitlines()
    shifted = [lines[0]] + [",".join([f"{float(ln.split(',', 1)[0]) + 0.4:.6f}", ln.split(",", 1)[1]]) for ln in lines[1:]]
    csv.write_text("\n".join(shifted) + "\n")
    info = process_recording(raw_copy / rid, tmp_path / "b", cfg)
    after = info["streams"]["imu"]["lag_s"]
    # stream time + 0.4 s => events appear 0.4 s later on the recording clock
    assert after - before == pytest.approx(0.4, abs=FRAME_S)
    truth = ground_truth(raw_copy)["recordings"][rid]["expected_lag_s"]["imu"] + 0.4
    assert after == pytest.approx(truth, abs=FRAME_S)
    assert info["streams"]["imu"]["lag_reliable"]
    assert info["sync_ok"] is False and any("--align estimate" in w for w in info["warnings"])
    # --align estimate applies it: the residual is gone and the windows are re-timed
    est = process_recording(raw_copy / rid, tmp_path / "c", PreprocessConfig(align="estimate"))
    # (the estimate sees every frame here, only the windowed ones before: equal within 10 ms)
    assert est["streams"]["imu"]["lag_applied_s"] == pytest.approx(-after, abs=0.01)
    assert est["sync_ok"] is True
    with h5py.File(tmp_path / "c" / f"{rid}.h5") as h:
        assert h["streams/imu"].attrs["lag_applied_s"] == pytest.approx(est["streams"]["imu"]["lag_applied_s"])


def test_label_purity_threshold(raw_copy, tmp_path):
    rid = sorted(p.name for p in raw_copy.iterdir() if p.is_dir())[0]
    (raw_copy / rid / "labels.csv").write_text("start,end,label\n0,5.0,wave\n5.0,11.5,knock\n")
    strict = process_recording(raw_copy / rid, tmp_path / "s", PreprocessConfig(min_purity=1.0))
    loose = process_recording(raw_copy / rid, tmp_path / "l", PreprocessConfig(min_purity=0.5))
    with h5py.File(tmp_path / "s" / f"{rid}.h5") as h:
        st = h["windows/start_s"][()]
        lab = [x.decode() for x in h["windows/label"][()]]
    # every kept window lies wholly inside one segment, labelled by it
    for s0, lb in zip(st, lab):
        assert (s0 + 2 <= 5.0 + 1e-9 and lb == "wave") or (s0 >= 5.0 - 1e-9 and s0 + 2 <= 11.5 + 1e-9 and lb == "knock")
    assert strict["rejected"]["label_purity"] > loose["rejected"]["label_purity"]
    assert loose["windows_kept"] == strict["windows_kept"] + strict["rejected"]["label_purity"] - loose["rejected"]["label_purity"]


def test_whole_recording_label_from_meta(raw_copy, tmp_path):
    rid = sorted(p.name for p in raw_copy.iterdir() if p.is_dir())[0]
    meta = json.loads((raw_copy / rid / "meta.json").read_text())
    meta["label"] = "knock"
    (raw_copy / rid / "meta.json").write_text(json.dumps(meta))
    (raw_copy / rid / "labels.csv").unlink()
    info = process_recording(raw_copy / rid, tmp_path, PreprocessConfig())
    with h5py.File(tmp_path / f"{rid}.h5") as h:
        assert {x.decode() for x in h["windows/label"][()]} == {"knock"}
    assert info["rejected"]["label_purity"] == 0


def test_rerun_skips_finished_shards_and_refuses_other_settings(tiny_raw, tmp_path):
    recs = discover([tiny_raw])
    out = tmp_path / "sh"
    first = preprocess(recs, out, PreprocessConfig())
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.h5")}
    again = preprocess(recs, out, PreprocessConfig())
    assert again["summary"]["skipped"] == len(recs) and again["summary"]["ok"] == 0
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.h5")} == mtimes
    assert again["summary"]["windows_kept"] == first["summary"]["windows_kept"]
    other = preprocess(recs, out, PreprocessConfig(fps=15))
    assert other["summary"]["failed"] == len(recs)
    assert "different settings" in other["summary"]["errors"][0] and "--overwrite" in other["summary"]["errors"][0]
    over = preprocess(recs, out, PreprocessConfig(fps=15), overwrite=True)
    assert over["summary"]["ok"] == len(recs)
    assert json.loads((out / "manifest.json").read_text())["streams"]["video"]["shape"][0] == 30  # 2 s at 15 fps


def test_two_workers_give_the_same_shards_as_one(tiny_raw, tiny_shards, tmp_path):
    out1, _ = tiny_shards
    preprocess(discover([tiny_raw]), tmp_path, PreprocessConfig(), workers=2)
    for p in out1.glob("*.h5"):
        with h5py.File(p) as a, h5py.File(tmp_path / p.name) as b:
            for ds in ("windows/start_s", "streams/imu/data", "streams/audio/logmel", "streams/video/frames",
                       "streams/video/window_start"):
                assert np.array_equal(a[ds][()], b[ds][()]), ds


def test_pack_windows_stores_each_sample_once():
    runs, ws = pack_windows(np.array([0, 50, 100, 300, 350]), 100)
    assert runs == [(0, 200), (300, 450)]  # overlapping windows merge; a gap starts a new run
    assert ws.tolist() == [0, 50, 100, 200, 250]
    runs, ws = pack_windows(np.array([0, 100]), 100)  # touching windows: one run
    assert runs == [(0, 200)] and ws.tolist() == [0, 100]


def test_window_reader_blocks_equal_single_windows(tiny_shards):
    out, _ = tiny_shards
    with h5py.File(sorted(out.glob("*.h5"))[0]) as h:
        for name, shape in (("video", (60, 112, 112, 3)), ("imu", (100, 6)), ("audio", (198, 64))):
            r = WindowReader(h["streams"][name])
            n = len(r)
            block = r.read(0, n)
            assert block.shape == (n,) + shape
            for i in (0, n // 2, n - 1):
                assert np.array_equal(block[i], r.read(i, i + 1)[0])
            sub = r.read(1, 3, frames=[0, 10, 20]) if name == "video" else None
            if sub is not None:
                assert np.array_equal(sub, block[1:3][:, [0, 10, 20]])


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_shard_index_covers_every_recording_exactly_once(tmp_path, n):
    recs = []
    for i in range(11):
        d = tmp_path / f"r{i:02d}"
        d.mkdir()
        (d / "meta.json").write_text("{}")
        recs.append(d)
    found = discover([tmp_path])
    parts = [select_shard(found, i, n) for i in range(n)]
    names = [p.name for part in parts for p in part]
    assert sorted(names) == sorted(p.name for p in recs) and len(names) == len(set(names))
    assert parts == [select_shard(list(reversed(found)), i, n) for i in range(n)]  # order-independent
    with pytest.raises(DcatError):
        select_shard(found, n, n)


def test_unknown_encoding_version_is_refused(tiny_shards, tmp_path):
    out, _ = tiny_shards
    p = tmp_path / "x.h5"
    shutil.copy(sorted(out.glob("*.h5"))[0], p)
    with h5py.File(p, "a") as h:
        h.attrs["encoding-version"] = "99"
    with pytest.raises(ShardError, match="encoding-version '99'.*upgrade dcat"):
        read_shard_summary(p)


def test_audio_logmel_windows_match_their_waveform(raw_copy, tmp_path):
    from pipelines.ingest.features import logmel

    rid = "s01_r01"
    cfg = PreprocessConfig(audio_waveform=True, streams=("video", "audio"))
    process_recording(raw_copy / rid, tmp_path, cfg)
    with h5py.File(tmp_path / f"{rid}.h5") as h:
        assert set(h["streams"]) == {"video", "audio"}  # --streams keeps only those
        lm = WindowReader(h["streams/audio"]).read(0, 3)
        wav = WindowReader(h["streams/audio"], "waveform").read(0, 3)
    assert wav.shape == (3, 32000) and lm.shape == (3, 198, 64)
    # the stored frames of each window are exactly the log-mel of that window's samples
    assert np.allclose(lm, logmel(wav, cfg.mel()), atol=1e-4)


def test_unlabelled_recording_for_deployment(raw_copy, tmp_path):
    rid = "s01_r01"
    (raw_copy / rid / "labels.csv").unlink()
    with pytest.raises(Exception, match="labels.csv: missing"):
        process_recording(raw_copy / rid, tmp_path / "a", PreprocessConfig())
    info = process_recording(raw_copy / rid, tmp_path / "b", PreprocessConfig(labels="ignore", streams=("imu",)))
    assert info["rejected"]["label_purity"] == 0 and info["windows_kept"] >= 8
    with h5py.File(tmp_path / "b" / f"{rid}.h5") as h:
        assert {x.decode() for x in h["windows/label"][()]} == {""}
