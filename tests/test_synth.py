"""Tests of the synthetic dataset generator (pipelines/synth/) and the committed sample_data/."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from pipelines.synth import (CLASSES, FAILURE_KINDS, IMU_CHANNELS, KNOBS, MOTION, SHARED_MOTION_PAIRS, SynthConfig,
                             plan_dataset, synthesize, write_recording)
from pipelines.synth.video import _write_mp4
from pipelines.core.timeutil import num_samples

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "schemas" / "meta.schema.json"

# 2 subjects x 1 recording x 8 s: s01_r01 has container audio and labels.csv,
# s02_r01 has a separate audio.wav and a whole-recording meta.json label.
TINY = SynthConfig(subjects=2, recordings=1, seconds=8.0, seed=0, audio="mixed", whole_label_every=2)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth") / "raw"
    info = synthesize(out, TINY)
    return out, info


def _validator():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text())
    return jsonschema.Draft202012Validator(schema)


def _recordings(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.glob("*/meta.json"))


def _read_imu(path: Path) -> tuple[list[str], np.ndarray]:
    with open(path, newline="") as f:
        header = next(csv.reader(f))
    return header, np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)


def _video_gray(path: Path) -> np.ndarray:
    decord = pytest.importorskip("decord")
    vr = decord.VideoReader(str(path))
    return vr.get_batch(list(range(len(vr)))).asnumpy().astype(np.float32).mean(-1)


# --------------------------------------------------------------------------------------------------


def test_layout_and_meta_schema(tiny):
    root, info = tiny
    assert info["recordings"] == 2 and info["recording_ids"] == ["s01_r01", "s02_r01"]
    assert info["bytes"] > 0 and info["seconds_taken"] > 0 and info["classes"] == CLASSES
    validator = _validator()
    recs = _recordings(root)
    assert [r.name for r in recs] == ["s01_r01", "s02_r01"]
    # ground truth sits beside the recordings, not inside one, and is not a recording
    assert (root / "ground_truth.json").is_file()
    assert not any((r / "ground_truth.json").exists() for r in recs)
    for rec in recs:
        meta = json.loads((rec / "meta.json").read_text())
        errors = list(validator.iter_errors(meta))
        assert not errors, f"{rec.name}: {errors[0].message}"
        assert meta["subject"] == rec.name.split("_")[0] and meta["session"] == rec.name.split("_")[1]
        for name, st in meta["streams"].items():
            assert st["kind"] == name
            assert (rec / st["file"]).is_file(), f"{rec.name}: {st['file']} missing"
        imu = meta["streams"]["imu"]
        assert imu["rate_hz"] == 100 and imu["channels"] == IMU_CHANNELS
        assert set(imu["units"]) == set(IMU_CHANNELS)
        # labels.csv xor a whole-recording label
        assert ("label" in meta) != (rec / "labels.csv").exists()
    m1 = json.loads((root / "s01_r01" / "meta.json").read_text())
    m2 = json.loads((root / "s02_r01" / "meta.json").read_text())
    assert m1["streams"]["audio"]["file"] == "video.mp4" and "label" not in m1
    assert m2["streams"]["audio"]["file"] == "audio.wav" and m2["label"] in CLASSES


def test_video_decodes_with_decord(tiny):
    decord = pytest.importorskip("decord")
    root, _ = tiny
    n_expected = num_samples(TINY.seconds, TINY.fps)
    for rec in _recordings(root):
        vr = decord.VideoReader(str(rec / "video.mp4"))
        assert len(vr) == n_expected == 240
        frame = vr[0].asnumpy()
        assert frame.shape == (TINY.video_size, TINY.video_size, 3) and frame.dtype == np.uint8
        ts = vr.get_frame_timestamp(list(range(len(vr))))[:, 0]
        np.testing.assert_allclose(ts, np.arange(len(vr)) / TINY.fps, atol=1e-3)
        keys = np.asarray(vr.get_key_indices())
        assert keys[0] == 0 and np.diff(np.append(keys, len(vr))).max() <= 15
        assert float(np.std(vr[len(vr) // 2].asnumpy())) > 10.0  # not a blank frame


def test_video_stream_format(tiny):
    av = pytest.importorskip("av")
    root, _ = tiny
    with av.open(str(root / "s01_r01" / "video.mp4")) as c:
        vs = c.streams.video[0]
        assert vs.codec_context.name == "h264" and vs.codec_context.pix_fmt == "yuv420p"
        assert c.streams.audio[0].codec_context.name == "aac"
    with av.open(str(root / "s02_r01" / "video.mp4")) as c:
        assert len(c.streams.audio) == 0  # its audio is the separate audio.wav


def test_container_audio_timing_through_aac(tmp_path):
    """A click written at recording time tau decodes (PyAV, frame pts) at tau within 2 ms."""
    av = pytest.importorskip("av")
    cfg = SynthConfig(seconds=3.0)
    sr = cfg.audio_sr
    x = np.random.default_rng(1).normal(0, 0.002, num_samples(cfg.seconds, sr)).astype(np.float32)
    clicks = [0.25, 1.2345, 2.6543]
    for tc in clicks:
        k = int(round(tc * sr))
        x[k:k + 48] += 0.8 * np.exp(-np.arange(48) / 8.0)
    n_frames = num_samples(cfg.seconds, cfg.fps)
    frames = (np.full((cfg.video_size, cfg.video_size, 3), 120, np.uint8) for _ in range(n_frames))
    _write_mp4(tmp_path / "click.mp4", frames, n_frames, cfg, x)
    with av.open(str(tmp_path / "click.mp4")) as c:
        st = c.streams.audio[0]
        assert st.sample_rate == sr
        starts, chunks = [], []
        for fr in c.decode(st):
            starts.append(float(fr.pts * fr.time_base))
            chunks.append(fr.to_ndarray().mean(0))
    assert starts[0] == 0.0
    y = np.concatenate(chunks)
    assert len(y) >= len(x)
    for tc in clicks:
        lo = int((tc - 0.05) * sr)
        seg = np.abs(y[lo:lo + int(0.1 * sr)])
        onset = starts[0] + (lo + int(np.argmax(seg > 0.3 * seg.max()))) / sr
        assert abs(onset - tc) < 0.002, f"click at {tc} s decoded at {onset} s"


def test_imu_csv(tiny):
    root, _ = tiny
    gt = json.loads((root / "ground_truth.json").read_text())
    for rec in _recordings(root):
        g = gt["recordings"][rec.name]["streams"]["imu"]
        header, data = _read_imu(rec / "imu.csv")
        assert header == ["t"] + IMU_CHANNELS
        t = data[:, 0]
        assert np.all(np.diff(t) > 0), "t must be strictly increasing"
        assert np.all(np.isfinite(data))
        assert len(t) == g["rows"]
        assert abs(g["actual_rate_hz"] / 100.0 - 1.0) <= 0.003 + 1e-9
        dt = np.diff(t)
        assert abs(np.median(dt) * g["actual_rate_hz"] - 1.0) < 0.02
        # first/last sample: stream time = recording time - true offset (+- 1.5 ms jitter, 0.1 ms rounding)
        assert abs(t[0] - (g["start_s"] - g["true_clock_offset_s"])) < 0.0017
        # dropouts are real gaps, at the stated stream times
        for d in g["dropouts"]:
            i = int(np.searchsorted(t, d["stream_start_s"]))
            assert t[i] - t[i - 1] >= (d["stream_end_s"] - d["stream_start_s"]) - 0.02
        n_gaps = int(np.sum(dt > 2.5 / 100.0))
        assert n_gaps == len(g["dropouts"])
        acc_norm = np.linalg.norm(data[:, 1:4], axis=1)
        assert 8.5 < float(np.median(acc_norm)) < 11.0  # gravity is in the accelerometer
    # the tiny set has at least one recording with a dropout
    assert any(r["streams"]["imu"]["dropouts"] for r in gt["recordings"].values())


def test_ground_truth_convention(tiny):
    root, _ = tiny
    gt = json.loads((root / "ground_truth.json").read_text())
    assert gt["classes"] == CLASSES and set(gt["recordings"]) == {"s01_r01", "s02_r01"}
    for rid, r in gt["recordings"].items():
        meta = json.loads((root / rid / "meta.json").read_text())
        for name, st in r["streams"].items():
            declared = meta["streams"][name].get("clock_offset_s", 0.0)
            assert st["declared_clock_offset_s"] == declared
            assert st["expected_lag_s"] == pytest.approx(declared - st["true_clock_offset_s"], abs=1e-9)
            assert r["expected_lag_s"][name] == st["expected_lag_s"]
            assert abs(st["true_clock_offset_s"]) <= TINY.max_offset_s
        assert r["streams"]["video"]["true_clock_offset_s"] == 0.0
        audio = r["streams"]["audio"]
        if audio["file"] == "video.mp4":  # container audio shares the video clock
            assert audio["true_clock_offset_s"] == 0.0 and audio["expected_lag_s"] == 0.0
        else:
            assert audio["start_s"] == audio["true_clock_offset_s"]  # first wav sample is stream time 0
        if r["offsets_declared"]:
            assert all(v == 0.0 for v in r["expected_lag_s"].values())
        else:
            assert meta["streams"]["imu"]["clock_offset_s"] == 0.0
        segs = [(s["start"], s["end"], s["label"]) for s in r["segments"]]
        assert all(0.0 <= a < b <= TINY.seconds and c in CLASSES for a, b, c in segs)
        if "label" in meta:
            assert segs == [(0.0, TINY.seconds, meta["label"])]
        else:
            with open(root / rid / "labels.csv", newline="") as f:
                rows = list(csv.DictReader(f))
            assert [(float(x["start"]), float(x["end"]), x["label"]) for x in rows] == segs


def test_same_seed_same_output(tiny, tmp_path):
    root, _ = tiny
    again = tmp_path / "again"
    synthesize(again, TINY)
    for rec in _recordings(root):
        for name in ("imu.csv", "labels.csv", "meta.json", "video.mp4", "audio.wav"):
            if (rec / name).exists():
                assert (again / rec.name / name).read_bytes() == (rec / name).read_bytes(), f"{rec.name}/{name}"
    assert (again / "ground_truth.json").read_bytes() == (root / "ground_truth.json").read_bytes()
    other = tmp_path / "other"
    synthesize(other, dataclasses.replace(TINY, subjects=1, seed=1))
    assert (other / "s01_r01" / "imu.csv").read_bytes() != (root / "s01_r01" / "imu.csv").read_bytes()


@pytest.mark.parametrize("pair", SHARED_MOTION_PAIRS)
def test_shared_motion_pair_same_imu_different_video(tmp_path, pair):
    """Classes that share a wrist motion get the same IMU (from the same seed, with imu_cue 0, the
    default) but different pixels."""
    a, b = pair
    assert MOTION[a] == MOTION[b]
    cfg = SynthConfig(subjects=1, recordings=1, seconds=6.0, seed=5, whole_label_every=1)
    plan = plan_dataset(cfg)[0]
    gt = {}
    for cls in (a, b, "wave"):
        gt[cls] = write_recording(tmp_path / cls, plan.with_labels({plan.whole_label: cls}), cfg)
    imu_a = _read_imu(tmp_path / a / "imu.csv")[1]
    imu_b = _read_imu(tmp_path / b / "imu.csv")[1]
    imu_w = _read_imu(tmp_path / "wave" / "imu.csv")[1]
    np.testing.assert_array_equal(imu_a, imu_b)
    assert gt[a]["strokes"] == gt[b]["strokes"]
    # ... while a class with its own motion has different IMU statistics
    gyr_std = lambda x: float(np.std(np.linalg.norm(x[:, 4:7], axis=1)))  # noqa: E731
    assert abs(gyr_std(imu_w) - gyr_std(imu_a)) > 0.05 * gyr_std(imu_a)
    va, vb = _video_gray(tmp_path / a / "video.mp4"), _video_gray(tmp_path / b / "video.mp4")
    diff = np.abs(va - vb).mean(0)  # per pixel, averaged over time
    assert float((diff > 20).mean()) > 0.003, f"{a} and {b} look the same to the camera"


def test_envelopes_reveal_imu_lag(tmp_path):
    """Frame-difference and gyro envelopes cross-correlate at the IMU lag, within one video frame."""
    from scipy.ndimage import gaussian_filter1d

    cfg = SynthConfig(subjects=1, recordings=1, seconds=16.0, seed=2, whole_label_every=0, dropouts=False)
    plan = dataclasses.replace(plan_dataset(cfg)[0], imu_true_offset_s=0.4, offsets_declared=False)
    gt = write_recording(tmp_path / "rec", plan, cfg)
    expected = gt["expected_lag_s"]["imu"]
    assert expected == pytest.approx(-0.4)
    v = _video_gray(tmp_path / "rec" / "video.mp4")
    ev = np.abs(np.diff(v, axis=0)).mean((1, 2))
    tv = (np.arange(1, len(v)) - 0.5) / cfg.fps
    data = _read_imu(tmp_path / "rec" / "imu.csv")[1]
    ti = data[:, 0] + json.loads((tmp_path / "rec" / "meta.json").read_text())["streams"]["imu"]["clock_offset_s"]
    grid = np.arange(ti[0], ti[-1], 0.01)
    ei = np.linalg.norm(np.stack([np.interp(grid, ti, data[:, c]) for c in (4, 5, 6)], 1), axis=1)

    def z(t, e):
        e = gaussian_filter1d(e, 0.08 / np.median(np.diff(t)))
        return (e - e.mean()) / e.std()

    ev, ei = z(tv, ev), z(grid, ei)
    m = (tv > 1.5) & (tv < tv[-1] - 1.5)
    lags = np.arange(-1.2, 1.2, 0.002)
    corr = [np.mean(ev[m] * np.interp(tv[m] + lag, grid, ei)) for lag in lags]
    est = float(lags[int(np.argmax(corr))])
    assert abs(est - expected) < 1.0 / cfg.fps, f"estimated {est}, expected {expected}"
    assert max(corr) > 0.5


def test_plan_defaults():
    cfg = SynthConfig()
    plans = plan_dataset(cfg)
    assert len(plans) == cfg.subjects * cfg.recordings == 15
    assert [p.recording for p in plans[:4]] == ["s01_r01", "s01_r02", "s01_r03", "s02_r01"]
    assert sum(p.offsets_declared for p in plans) == 8  # round(0.5 * 15)
    whole = [p.recording for p in plans if p.whole_label]
    assert whole == ["s03_r02"]  # every 8th recording
    secs = {c: 0.0 for c in CLASSES}
    for p in plans:
        assert abs(p.imu_true_offset_s) <= cfg.max_offset_s and abs(p.imu_rate_drift) <= 0.003
        assert -0.5 <= p.imu_start_s <= 0.5 and cfg.seconds - 0.5 <= p.imu_end_s <= cfg.seconds + 0.5
        for d0, d1 in p.imu_dropouts:
            assert 0.3 <= d1 - d0 <= 1.5
        prev_end = None
        for a, b, c in p.segments:
            secs[c] += b - a
            assert 0.0 <= a < b <= cfg.seconds
            if not p.whole_label:
                assert 5.0 - 1e-6 <= b - a <= 10.0 + 1e-6
            if prev_end is not None:
                assert 0.4 - 1e-6 <= a - prev_end <= 0.9 + 1e-6
            prev_end = b
    assert any(p.imu_dropouts for p in plans)
    assert min(secs.values()) > 0.5 * max(secs.values()), secs  # balanced-ish


def test_config_validation():
    with pytest.raises(ValueError, match="audio"):
        plan_dataset(SynthConfig(audio="mp3"))
    with pytest.raises(ValueError, match="seconds"):
        plan_dataset(SynthConfig(seconds=1.0))


#: sample_data/ is `dcat synth sample_data --subjects 5 --recordings 3 --seconds 40 --seed 0 --imu-cue 0.5
#: --source-errors 0.1` (sample_data/README.md): the defaults with a faint wrist cue and camera failures
SAMPLE_DATA = dict(imu_cue=0.5, source_errors=0.1)


def test_committed_sample_data_matches_generator():
    """sample_data/ is valid and was made by the SynthConfig defaults plus SAMPLE_DATA (README's command)."""
    root = REPO / "sample_data"
    if not (root / "ground_truth.json").exists():
        pytest.skip("sample_data/ not generated")
    validator = _validator()
    recs = _recordings(root)
    assert len({r.name.split("_")[0] for r in recs}) >= 4
    for rec in recs:
        meta = json.loads((rec / "meta.json").read_text())
        assert not list(validator.iter_errors(meta)), rec.name
    gt = json.loads((root / "ground_truth.json").read_text())
    made_by = dataclasses.asdict(SynthConfig(**SAMPLE_DATA))
    assert gt["config"] == made_by
    for p in plan_dataset(SynthConfig(**SAMPLE_DATA)):
        segs = [(s["start"], s["end"], s["label"]) for s in gt["recordings"][p.recording]["segments"]]
        assert segs == [tuple(s) for s in p.segments]
    assert sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) < 16 * 2**20


# ------------------------------------------------------------------ knobs: imu_cue, source_errors, audio_strength

KNOBBED = SynthConfig(subjects=1, recordings=1, seconds=8.0, seed=4, audio="wav", video_size=32, imu_cue=0.5,
                      source_errors=0.4, audio_strength=0.5)


def test_knobs_same_seed_same_output(tmp_path):
    a, b, plain = tmp_path / "a", tmp_path / "b", tmp_path / "plain"
    synthesize(a, KNOBBED)
    synthesize(b, KNOBBED)
    files = sorted(f.relative_to(a) for f in a.rglob("*") if f.is_file())
    assert {"s01_r01/video.mp4", "s01_r01/audio.wav", "s01_r01/imu.csv", "ground_truth.json"} <= {str(f) for f in files}
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), str(f)
    synthesize(plain, dataclasses.replace(KNOBBED, imu_cue=0.0, source_errors=0.0, audio_strength=1.0))
    for name in ("video.mp4", "audio.wav", "imu.csv"):  # each knob changes its stream
        assert (plain / "s01_r01" / name).read_bytes() != (a / "s01_r01" / name).read_bytes(), name
    gt = json.loads((a / "ground_truth.json").read_text())
    assert set(gt["knobs"]) == {"imu_cue", "source_errors", "audio_strength"}
    assert gt["config"]["imu_cue"] == 0.5 and gt["config"]["source_errors"] == 0.4


def _pair_imu(tmp_path: Path, pair: tuple[str, str], cue: float) -> tuple[np.ndarray, np.ndarray]:
    """IMU rows of one recording plan drawn as class a and as class b (same seed), with ``imu_cue`` = cue."""
    cfg = SynthConfig(subjects=1, recordings=1, seconds=8.0, seed=5, whole_label_every=1, video_size=32, audio="wav",
                      imu_cue=cue)
    plan = plan_dataset(cfg)[0]
    out = []
    for cls in pair:
        d = tmp_path / f"{cls}-{cue}"
        write_recording(d, plan.with_labels({plan.whole_label: cls}), cfg)
        out.append(_read_imu(d / "imu.csv")[1])
    return out[0], out[1]


@pytest.mark.parametrize("pair", SHARED_MOTION_PAIRS)
def test_imu_cue_separates_a_shared_pair_more_as_it_grows(tmp_path, pair):
    """At imu_cue 0 the pair's IMU is identical; above 0 it differs, and the second class's cue (a
    higher frequency) raises the gyro's mean absolute sample-to-sample change, more with a larger cue."""
    mad = lambda x: float(np.abs(np.diff(x[:, 4:7], axis=0)).mean())  # noqa: E731
    diff, gap = {}, {}
    for cue in (0.0, 0.25, 1.0):
        a, b = _pair_imu(tmp_path, pair, cue)
        assert a.shape == b.shape
        np.testing.assert_array_equal(a[:, 0], b[:, 0])  # same clock: only the motion differs
        diff[cue] = float(np.abs(a[:, 4:7] - b[:, 4:7]).mean())
        gap[cue] = mad(b) - mad(a)
    assert diff[0.0] == 0.0 and gap[0.0] == 0.0
    assert diff[0.25] > 0.02 and 3.0 < diff[1.0] / diff[0.25] < 5.0  # the cue's amplitude is linear in C
    assert 0.0 < gap[0.25] < gap[1.0] and gap[1.0] > 2 * gap[0.25]


def test_source_errors_one_hides_the_class_from_the_camera(tmp_path):
    """With source_errors 1 every frame is a failure frame: two classes give identical decoded video
    (audio and IMU as without errors: the audio differs by class, the pair's IMU does not)."""
    cfg = SynthConfig(subjects=1, recordings=1, seconds=6.0, seed=5, whole_label_every=1, video_size=64, audio="wav",
                      source_errors=1.0)
    plan = plan_dataset(cfg)[0]
    eps = plan.camera_failures
    assert eps[0][0] == 0.0 and eps[-1][1] == cfg.seconds
    assert all(e0[1] == e1[0] for e0, e1 in zip(eps, eps[1:]))  # contiguous
    gt = {c: write_recording(tmp_path / c, plan.with_labels({plan.whole_label: c}), cfg) for c in ("drink", "eat")}
    video = gt["drink"]["streams"]["video"]
    assert video["failure_share"] == 1.0 and video["failed_frames"] == video["frames"] == 180
    assert [(e["start"], e["end"], e["kind"]) for e in video["failures"]] == [tuple(e) for e in eps]
    # the rendered frames are identical whatever the class ...
    from pipelines.synth.dataset import _recording_rngs
    from pipelines.synth.motion import _latent
    from pipelines.synth.video import _render_frames

    frames = {}
    for c in ("drink", "eat"):
        p = plan.with_labels({plan.whole_label: c})
        r_motion, _, _, r_video, r_cue, r_fail = _recording_rngs(p)
        frames[c] = np.stack(list(_render_frames(p, _latent(p, r_motion, 0.0, r_cue), cfg, r_video, r_fail)))
    np.testing.assert_array_equal(frames["drink"], frames["eat"])
    # ... and so are the decoded ones, up to x264's rounding (its output for 64-px frames is not always
    # bit-identical from one call to the next, with or without knobs)
    va, vb = _video_gray(tmp_path / "drink" / "video.mp4"), _video_gray(tmp_path / "eat" / "video.mp4")
    assert float(np.abs(va - vb).mean((1, 2)).max()) < 1.0
    assert (tmp_path / "drink" / "audio.wav").read_bytes() != (tmp_path / "eat" / "audio.wav").read_bytes()
    assert (tmp_path / "drink" / "imu.csv").read_bytes() == (tmp_path / "eat" / "imu.csv").read_bytes()


def test_source_errors_share_and_episodes():
    kinds = set()
    for share in (0.1, 0.3, 0.7):
        cfg = SynthConfig(subjects=3, recordings=2, seconds=40.0, seed=1, source_errors=share)
        for p in plan_dataset(cfg):
            eps = p.camera_failures
            covered = sum(b - a for a, b, _ in eps)
            assert covered / cfg.seconds == pytest.approx(share, abs=0.002), p.recording
            assert all(0.0 <= a < b <= cfg.seconds for a, b, _ in eps)
            assert all(e0[1] < e1[0] for e0, e1 in zip(eps, eps[1:])), eps  # sorted, apart
            assert all(1.0 <= b - a <= 8.0 for a, b, _ in eps), eps  # a few seconds each
            kinds |= {k for _, _, k in eps}
    assert kinds == set(FAILURE_KINDS)
    assert all(not p.camera_failures for p in plan_dataset(SynthConfig(subjects=2, seconds=10.0)))


def test_source_errors_frames_inside_and_outside_episodes(tmp_path):
    """Frames inside the failure episodes show no scene (no arm, no table), frames outside are as
    without errors; the ground truth's share is near the asked one. Seed 6 gives one episode of
    each kind in its three recordings."""
    base = SynthConfig(subjects=1, recordings=3, seconds=12.0, seed=6, whole_label_every=0, video_size=64,
                       audio="wav")
    synthesize(tmp_path / "ok", base)
    synthesize(tmp_path / "err", dataclasses.replace(base, source_errors=0.3))
    truth = json.loads((tmp_path / "err" / "ground_truth.json").read_text())["recordings"]
    kinds = []
    for rec, entry in truth.items():
        gt = entry["streams"]["video"]
        assert gt["failure_share"] == pytest.approx(0.3, abs=0.002)
        assert gt["failed_frames"] / gt["frames"] == pytest.approx(0.3, abs=0.02)
        ok, err = _video_gray(tmp_path / "ok" / rec / "video.mp4"), _video_gray(tmp_path / "err" / rec / "video.mp4")
        t = np.arange(len(ok)) / base.fps
        inside = np.zeros(len(ok), dtype=bool)
        for e in gt["failures"]:
            kinds.append(e["kind"])
            inside |= (t >= e["start"]) & (t < e["end"])
            m = (t >= e["start"] + 0.1) & (t < e["end"] - 0.1)
            lower = err[m, 48:]  # where the table and the resting hand are in the real scene
            assert ok[m, 48:].std(axis=(1, 2)).min() > 10  # (the real scene has edges there)
            if e["kind"] == "darkness":
                assert err[m].mean() < 25 and err[m].std(axis=(1, 2)).max() < 8
            else:  # a uniform occluder or the wall: no table edge, no arm
                assert lower.std(axis=(1, 2)).max() < 8, e
        assert int(inside.sum()) == gt["failed_frames"]
        d = np.abs(ok - err).mean((1, 2))
        assert d[inside].min() > 10 and np.median(d[~inside]) < 1.5
    assert sorted(kinds) == sorted(FAILURE_KINDS)


def _wav(path: Path) -> np.ndarray:
    import soundfile as sf

    return sf.read(str(path), dtype="float64")[0]


def test_audio_strength_scales_the_class_sounds_only(tmp_path):
    cfg = SynthConfig(subjects=1, recordings=1, seconds=8.0, seed=2, whole_label_every=1, video_size=32, audio="wav")
    x = {}
    for s in (0.0, 0.5, 1.0):
        synthesize(tmp_path / str(s), dataclasses.replace(cfg, audio_strength=s))
        x[s] = _wav(tmp_path / str(s) / "s01_r01" / "audio.wav")
    rms = {s: float(np.sqrt(np.mean(v ** 2))) for s, v in x.items()}
    assert rms[0.0] < 0.006  # the background noise alone (0.002-0.005 rms)
    assert rms[1.0] > 3 * rms[0.0]
    # same random draws: the class part is linear in the strength (up to 16-bit rounding)
    np.testing.assert_allclose(x[0.5] - x[0.0], 0.5 * (x[1.0] - x[0.0]), atol=2.0 / 2 ** 15)


def test_knob_validation():
    for kw, name in ((dict(imu_cue=1.5), "imu_cue"), (dict(imu_cue=-0.1), "imu_cue"),
                     (dict(source_errors=2.0), "source_errors"), (dict(audio_strength=-1.0), "audio_strength"),
                     (dict(audio_strength=float("nan")), "audio_strength")):
        with pytest.raises(ValueError, match=name):
            plan_dataset(SynthConfig(**kw))


def test_synth_cli_options_come_from_the_config(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import pipelines.synth
    from dcat_cli.data_cmds import synth_cmd
    from dcat_cli.main import app
    from pipelines.core.options import cli_fields

    assert list(synth_cmd.__signature__.parameters) == ["out_dir"] + [f.name for f in cli_fields(SynthConfig)]
    got = {}

    def fake(out_dir, cfg):
        got.update(out_dir=out_dir, cfg=cfg)
        return {"out_dir": str(out_dir)}

    monkeypatch.setattr(pipelines.synth, "synthesize", fake)
    r = CliRunner().invoke(app, ["synth", str(tmp_path / "raw"), "--subjects", "2", "--seconds", "9", "--audio", "wav",
                                 "--imu-cue", "0.3", "--source-errors", "0.25", "--audio-strength", "0.5",
                                 "--no-dropouts", "--video-size", "64"])
    assert r.exit_code == 0, r.output
    assert got["out_dir"] == tmp_path / "raw"
    assert got["cfg"] == SynthConfig(subjects=2, seconds=9.0, audio="wav", imu_cue=0.3, source_errors=0.25,
                                     audio_strength=0.5, dropouts=False, video_size=64)
    bad = CliRunner().invoke(app, ["synth", str(tmp_path / "raw"), "--imu-cue", "2"])
    assert bad.exit_code == 1 and "imu_cue" in bad.output and "Traceback" not in bad.output
