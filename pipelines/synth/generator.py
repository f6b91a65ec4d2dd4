"""Synthetic multimodal activity dataset in the dcat raw layout (schemas/raw-layout.md).

One latent 3-D wrist trajectory per recording drives every stream:

* **video** (``video.mp4``, H.264 yuv420p, short GOP): a frontal, slightly elevated camera sees a
  person at a table (torso, head, right arm drawn from the shoulder through the elbow to the hand)
  plus the class's objects (cup, bowl and spoon, pot and spoon, cloth);
* **audio** (AAC track in ``video.mp4`` or a separate ``audio.wav``): class-specific sounds placed at
  the motion events (clinks, swishes, thumps, slurps, crunches) over low background noise;
* **imu** (``imu.csv``): a wrist sensor: accelerometer = second derivative of the wrist position plus
  gravity, gyroscope = angular velocity of the forearm, both in a per-subject rotated sensor frame,
  with noise, bias, rate drift, timestamp jitter, dropouts and a clock offset.

Classes come in groups that share one wrist motion (:data:`MOTION`): ``drink``/``eat`` (lift to the
mouth) and ``stir``/``wipe`` (circles over the table) differ only in the objects the camera sees (and
in their sounds), so the wrist IMU cannot separate them; ``wave`` and ``knock`` have motions of
their own.  Given the same recording seed, the IMU file of a recording does not depend on which
class of a motion group is drawn (tests rely on this).

Time convention (ground_truth.json): video is the reference clock (recording time = video time).
An event at recording time ``tau`` appears in a stream's file at stream time
``s = tau - true_clock_offset_s``.  A reader computes recording time as ``s + declared clock_offset_s``,
so the event shows up at ``tau + expected_lag_s`` with
``expected_lag_s = declared_clock_offset_s - true_clock_offset_s``.

Media libraries (PyAV, soundfile) are imported inside the functions that write files.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np

from pipelines import __version__
from pipelines.core.timeutil import num_samples

# --------------------------------------------------------------------------------------------------
# Public constants

CLASSES: list[str] = ["wave", "drink", "eat", "stir", "wipe", "knock"]

#: Wrist motion of each class. Classes with the same motion differ only in what the camera sees
#: (and hears).
MOTION: dict[str, str] = {
    "wave": "wave",
    "drink": "lift",
    "eat": "lift",
    "stir": "circle",
    "wipe": "circle",
    "knock": "tap",
}

#: Class pairs that share one wrist motion: the IMU cannot tell them apart, the camera can.
SHARED_MOTION_PAIRS: list[tuple[str, str]] = [("drink", "eat"), ("stir", "wipe")]

IMU_CHANNELS: list[str] = ["acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z"]
IMU_UNITS: dict[str, str] = {c: ("m/s^2" if c.startswith("acc") else "rad/s") for c in IMU_CHANNELS}

GRAVITY_MS2 = 9.81
LATENT_RATE_HZ = 1000.0  # the latent trajectory is sampled at 1 kHz
LATENT_MARGIN_S = 2.0  # latent covers [-margin, seconds + margin] on the recording clock

AUDIO_MODES = ("container", "wav", "mixed")


@dataclass
class SynthConfig:
    """What :func:`synthesize` writes. The defaults reproduce the committed ``sample_data/``."""

    subjects: int = 5  # subjects s01..sNN
    recordings: int = 3  # recordings per subject
    seconds: float = 40.0  # length of each recording (video length)
    seed: int = 0
    video_size: int = 128  # native square frame size (preprocessing resizes to 112 by default)
    fps: float = 30.0  # native video frame rate
    imu_hz: float = 100.0  # nominal IMU rate (declared in meta.json as rate_hz)
    audio_sr: int = 16000  # audio sample rate
    audio: str = "container"  # "container": AAC in video.mp4; "wav": separate audio.wav; "mixed": alternate
    max_offset_s: float = 1.0  # true IMU (and wav audio) clock offsets drawn in [-max, max]
    declared_fraction: float = 0.5  # fraction of recordings whose meta.json declares the true offsets
    dropouts: bool = True  # IMU dropouts (rows removed over 0.3-1.5 s) in some recordings
    whole_label_every: int = 8  # if >0, every k-th recording is single-activity, labelled via meta "label"
    crf: int = 23  # x264 constant rate factor (higher = smaller files)
    keyframe_interval: int = 15  # frames between H.264 keyframes (random access)
    audio_kbps: int = 32  # AAC bit rate

    def validate(self) -> None:
        if self.subjects < 1 or self.recordings < 1:
            raise ValueError(f"synth needs subjects >= 1 and recordings >= 1, got {self.subjects}, {self.recordings}")
        if self.seconds < 3.0:
            raise ValueError(f"synth needs seconds >= 3 (one activity segment), got {self.seconds}")
        if self.audio not in AUDIO_MODES:
            raise ValueError(f"synth audio must be one of {AUDIO_MODES}, got {self.audio!r}")
        if self.video_size < 32 or self.video_size % 2:
            raise ValueError(f"synth video_size must be even and >= 32, got {self.video_size}")
        if self.fps <= 0 or self.imu_hz <= 0 or self.audio_sr < 8000:
            raise ValueError("synth needs fps > 0, imu_hz > 0 and audio_sr >= 8000")
        if not 0.0 <= self.declared_fraction <= 1.0:
            raise ValueError(f"synth declared_fraction must be in [0, 1], got {self.declared_fraction}")
        if self.max_offset_s < 0:
            raise ValueError(f"synth max_offset_s must be >= 0, got {self.max_offset_s}")
        if self.keyframe_interval < 1:
            raise ValueError(f"synth keyframe_interval must be >= 1, got {self.keyframe_interval}")


# --------------------------------------------------------------------------------------------------
# Plans: everything random about a recording that is decided before rendering


@dataclass
class SubjectParams:
    """Per-subject appearance, body and sensor parameters."""

    subject: str
    index: int
    body_scale: float  # arm lengths and rest poses scale with it
    amp_scale: float  # movement amplitude (0.7-1.3)
    speed: float  # movement speed factor
    cam_scale: float
    cam_u0_px: float  # on a 128-pixel frame; scaled with video_size
    cam_v0_px: float
    shirt_rgb: list[float]
    skin_rgb: list[float]
    hair_rgb: list[float]
    background_rgb: list[float]
    table_rgb: list[float]
    imu_mount_deg: list[float]  # rotation vector (degrees) of the sensor on the forearm
    acc_noise_ms2: float
    gyr_noise_rads: float
    acc_bias_ms2: list[float]
    gyr_bias_rads: list[float]

    @property
    def mount_matrix(self) -> np.ndarray:
        return _rotvec_to_matrix(np.deg2rad(np.asarray(self.imu_mount_deg, dtype=np.float64)))


@dataclass
class RecordingPlan:
    """One recording: its id, subject, activity segments, clocks and imperfections."""

    recording: str
    subject: SubjectParams
    session: str
    index: int  # global recording index (determines the recording's random streams)
    seed: int
    seconds: float
    segments: list[tuple[float, float, str]]  # (start, end, label) on the recording clock
    whole_label: str | None
    audio_mode: str  # "container" or "wav"
    offsets_declared: bool
    imu_true_offset_s: float
    imu_rate_drift: float  # actual IMU rate = imu_hz * (1 + drift)
    imu_start_s: float  # first IMU sample, recording clock
    imu_end_s: float  # last IMU sample at or before this, recording clock
    imu_dropouts: list[tuple[float, float]] = field(default_factory=list)  # recording clock
    audio_true_offset_s: float = 0.0  # wav only (container audio shares the video clock)
    audio_end_s: float = 0.0  # wav only: end of the wav on the recording clock

    @property
    def imu_declared_offset_s(self) -> float:
        return self.imu_true_offset_s if self.offsets_declared else 0.0

    @property
    def audio_declared_offset_s(self) -> float:
        return self.audio_true_offset_s if self.offsets_declared else 0.0

    def with_labels(self, mapping: dict[str, str]) -> "RecordingPlan":
        """A copy with segment labels renamed (e.g. ``{"drink": "eat"}``); clocks and seeds unchanged."""
        segs = [(a, b, mapping.get(c, c)) for a, b, c in self.segments]
        wl = mapping.get(self.whole_label, self.whole_label) if self.whole_label else None
        return dataclasses.replace(self, segments=segs, whole_label=wl)


def _r(x: float, nd: int = 4) -> float:
    return float(round(float(x), nd))


def _subject_params(seed: int, index: int) -> SubjectParams:
    rng = np.random.default_rng([seed, 1, index])
    hue = rng.uniform(0, 1)
    shirt = _hsv_to_rgb(hue, rng.uniform(0.45, 0.85), rng.uniform(0.45, 0.8))
    skins = [(233, 196, 170), (205, 160, 125), (160, 115, 85), (110, 75, 55), (240, 210, 190)]
    skin = np.array(skins[int(rng.integers(len(skins)))], dtype=float) + rng.uniform(-8, 8, 3)
    hair = np.array([40, 30, 25], dtype=float) + rng.uniform(0, 60) * np.array([1.0, 0.8, 0.5])
    bg_base = rng.uniform(175, 225)
    background = bg_base + rng.uniform(-15, 15, 3)
    table = np.array([125, 88, 55], dtype=float) + rng.uniform(-15, 15, 3)
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    mount = axis * rng.uniform(5, 30)
    return SubjectParams(
        subject=f"s{index + 1:02d}",
        index=index,
        body_scale=_r(rng.uniform(0.9, 1.1)),
        amp_scale=_r(rng.uniform(0.7, 1.3)),
        speed=_r(rng.uniform(0.85, 1.15)),
        cam_scale=_r(rng.uniform(0.92, 1.08)),
        cam_u0_px=_r(64 + rng.uniform(-6, 6), 2),
        cam_v0_px=_r(33 + rng.uniform(-3, 3), 2),
        shirt_rgb=[_r(v, 1) for v in shirt],
        skin_rgb=[_r(v, 1) for v in np.clip(skin, 0, 255)],
        hair_rgb=[_r(v, 1) for v in np.clip(hair, 0, 255)],
        background_rgb=[_r(v, 1) for v in np.clip(background, 0, 255)],
        table_rgb=[_r(v, 1) for v in np.clip(table, 0, 255)],
        imu_mount_deg=[_r(v, 3) for v in mount],
        acc_noise_ms2=_r(rng.uniform(0.02, 0.08)),
        gyr_noise_rads=_r(rng.uniform(0.005, 0.02)),
        acc_bias_ms2=[_r(v) for v in rng.uniform(-0.1, 0.1, 3)],
        gyr_bias_rads=[_r(v) for v in rng.uniform(-0.02, 0.02, 3)],
    )


class _Deck:
    """Class labels drawn from shuffled decks, so all classes appear about equally often."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.cards: list[str] = []

    def draw(self, avoid: str | None = None) -> str:
        if not self.cards:
            self.cards = [CLASSES[i] for i in self.rng.permutation(len(CLASSES))]
        if avoid is not None and self.cards[0] == avoid:
            if len(self.cards) == 1:
                self.cards += [CLASSES[i] for i in self.rng.permutation(len(CLASSES))]
            j = 1 if self.cards[1] != avoid else 0
            self.cards[0], self.cards[j] = self.cards[j], self.cards[0]
        return self.cards.pop(0)


def _plan_segments(rng: np.random.Generator, deck: _Deck, seconds: float) -> list[tuple[float, float, str]]:
    """Activity segments of 5-10 s separated by 0.4-0.9 s unlabelled transitions, inside [0, seconds]."""
    segs: list[tuple[float, float, str]] = []
    t = rng.uniform(0.3, 0.8)
    end_margin = rng.uniform(0.2, 0.5)
    prev = None
    while True:
        avail = seconds - end_margin - t
        if avail < 5.0 and (segs or avail < 1.0):
            break
        trans = rng.uniform(0.4, 0.9)
        if avail <= 10.0:  # the last segment
            length = avail
        elif avail < 10.0 + trans:  # two would not fit
            length = 10.0
        else:
            length = rng.uniform(5.0, 10.0)
            if avail - length - trans < 5.0:  # leave room for a last segment of >= 5 s
                length = avail - trans - 5.0
        label = deck.draw(avoid=prev)
        a, b = round(t, 3), round(t + length, 3)
        segs.append((a, b, label))
        prev = label
        t = b + trans
    return segs


def plan_dataset(cfg: SynthConfig) -> list[RecordingPlan]:
    """Decide every random choice above the sample level (segments, clocks, dropouts) for ``cfg``."""
    cfg.validate()
    rng = np.random.default_rng([cfg.seed, 0])
    deck = _Deck(np.random.default_rng([cfg.seed, 3]))
    n = cfg.subjects * cfg.recordings
    n_declared = int(math.floor(cfg.declared_fraction * n + 0.5))
    declared = np.zeros(n, dtype=bool)
    declared[rng.permutation(n)[:n_declared]] = True
    if cfg.dropouts:
        with_drop = rng.random(n) < 0.4
        if n >= 2 and not with_drop.any():
            with_drop[int(rng.integers(n))] = True
    else:
        with_drop = np.zeros(n, dtype=bool)
    subjects = [_subject_params(cfg.seed, i) for i in range(cfg.subjects)]
    plans = []
    for i in range(n):
        subj = subjects[i // cfg.recordings]
        session = f"r{i % cfg.recordings + 1:02d}"
        whole = cfg.whole_label_every > 0 and (i + 1) % cfg.whole_label_every == 0
        if whole:
            label = deck.draw()
            segs = [(0.0, float(cfg.seconds), label)]
        else:
            label = None
            segs = _plan_segments(rng, deck, cfg.seconds)
        if cfg.audio == "mixed":
            audio_mode = "container" if i % 2 == 0 else "wav"
        else:
            audio_mode = cfg.audio
        m = cfg.max_offset_s
        imu_off = _r(rng.uniform(-m, m)) if m > 0 else 0.0
        drift = _r(rng.uniform(-0.003, 0.003), 6)
        imu_start = _r(rng.uniform(-0.5, 0.5))
        imu_end = _r(cfg.seconds + rng.uniform(-0.5, 0.5))
        drops: list[tuple[float, float]] = []
        if with_drop[i] and cfg.seconds > 6.0:
            k = 1 + int(rng.random() < 0.5 and cfg.seconds > 15.0)
            lo, hi = 2.0, cfg.seconds - 2.0
            for _ in range(20):
                if len(drops) == k:
                    break
                length = rng.uniform(0.3, 1.5)
                a = rng.uniform(lo, hi - length)
                if all(a > d1 + 1.0 or a + length < d0 - 1.0 for d0, d1 in drops):
                    drops.append((_r(a), _r(a + length)))
            drops.sort()
        audio_off = _r(rng.uniform(-m, m)) if (audio_mode == "wav" and m > 0) else 0.0
        audio_end = _r(cfg.seconds + rng.uniform(-0.5, 0.5)) if audio_mode == "wav" else float(cfg.seconds)
        plans.append(
            RecordingPlan(
                recording=f"{subj.subject}_{session}",
                subject=subj,
                session=session,
                index=i,
                seed=cfg.seed,
                seconds=float(cfg.seconds),
                segments=segs,
                whole_label=label,
                audio_mode=audio_mode,
                offsets_declared=bool(declared[i]),
                imu_true_offset_s=imu_off,
                imu_rate_drift=drift,
                imu_start_s=imu_start,
                imu_end_s=imu_end,
                imu_dropouts=drops,
                audio_true_offset_s=audio_off,
                audio_end_s=audio_end,
            )
        )
    return plans


# --------------------------------------------------------------------------------------------------
# Latent wrist motion

# Poses relative to the right shoulder, metres (x: image right, y: towards the camera, z: up),
# multiplied by the subject's body scale.
_SHOULDER_HALF_WIDTH = 0.18
_REST_TABLE = np.array([0.03, 0.28, -0.34])
_REST_RAISED = np.array([-0.08, 0.10, 0.25])
_MOUTH = np.array([0.17, 0.10, 0.15])
_UPPER_ARM = 0.30
_FOREARM = 0.28
_TABLE_Z = -0.40  # table top, body frame (shoulder height = 0)
_ELBOW_POLE = np.array([-0.5, -0.3, -1.0]) / np.linalg.norm([-0.5, -0.3, -1.0])


def _rest_pose(motion: str) -> np.ndarray:
    return _REST_RAISED if motion == "wave" else _REST_TABLE


def _minjerk(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * x * (10.0 - 15.0 * x + 6.0 * x * x)


def _taper(u: np.ndarray, frac: float) -> np.ndarray:
    """1 in the middle, smooth ramps over the first and last ``frac`` of u in [0, 1]."""
    return _minjerk(u / frac) * _minjerk((1.0 - u) / frac)


@dataclass
class _Latent:
    t: np.ndarray  # (n,) recording time
    wrist: np.ndarray  # (n, 3) body frame (origin between the shoulders)
    elbow: np.ndarray  # (n, 3)
    shoulder: np.ndarray  # (3,)
    imu: np.ndarray  # (n, 6) ideal sensor-frame specific force and angular velocity, low-passed
    speed: np.ndarray  # (n,) wrist speed, m/s
    events: list[tuple[float, str, int]]  # (recording time, kind, segment index)
    strokes: list[tuple[float, float, int]]  # (start, end, segment index), recording time


def _latent(plan: RecordingPlan, rng: np.random.Generator) -> _Latent:
    """The wrist trajectory, arm pose and ideal IMU signals on a 1 kHz grid.

    Uses only ``rng`` and the motion of each segment (not its class), so classes that share a motion
    get identical trajectories from the same random stream.
    """
    from scipy.signal import butter, sosfiltfilt

    subj = plan.subject
    bs, amp, spd = subj.body_scale, subj.amp_scale, subj.speed
    dt = 1.0 / LATENT_RATE_HZ
    n = int(round((plan.seconds + 2 * LATENT_MARGIN_S) * LATENT_RATE_HZ)) + 1
    t = -LATENT_MARGIN_S + np.arange(n) * dt
    shoulder = np.array([-_SHOULDER_HALF_WIDTH * bs, 0.0, 0.0])

    segs = plan.segments
    rests = [shoulder + _rest_pose(MOTION[c]) * bs + rng.normal(0.0, 0.012, 3) for _, _, c in segs]
    rest = np.empty((n, 3))
    rest[:] = rests[0]
    for j, (a, b, _) in enumerate(segs):
        ia = int(np.searchsorted(t, a))
        rest[ia:] = rests[j]
        if j + 1 < len(segs):
            nxt = segs[j + 1][0]
            ib, ic = int(np.searchsorted(t, b)), int(np.searchsorted(t, nxt))
            if ic > ib:
                s = _minjerk((t[ib:ic] - b) / (nxt - b))[:, None]
                rest[ib:ic] = rests[j] + s * (rests[j + 1] - rests[j])
                rest[ic:] = rests[j + 1]

    disp = np.zeros((n, 3))
    roll = np.zeros(n)
    events: list[tuple[float, str, int]] = []
    strokes: list[tuple[float, float, int]] = []
    mouth = shoulder + _MOUTH * bs
    for j, (a, b, c) in enumerate(segs):
        motion = MOTION[c]
        ts = a + rng.uniform(0.2, 0.8)
        while True:
            if motion == "lift":
                dur = rng.uniform(1.2, 1.8) / spd
            elif motion == "wave":
                dur = rng.uniform(0.8, 1.6) / spd
            elif motion == "circle":
                dur = rng.uniform(0.7, 1.3) / spd
            else:  # tap
                n_taps = int(rng.integers(2, 5))
                period = rng.uniform(0.14, 0.22) / spd
                dur = n_taps * period
            if ts + dur > b - 0.1:
                break
            strokes.append((ts, ts + dur, j))
            i0, i1 = int(np.searchsorted(t, ts)), int(np.searchsorted(t, ts + dur))
            tt = t[i0:i1] - ts
            u = tt / dur
            if motion == "lift":
                rise = rng.uniform(0.3, 0.38)
                prof = _minjerk(u / rise) * _minjerk((1.0 - u) / rise)
                target = mouth + rng.normal(0.0, 0.01, 3) - rests[j]
                wobble = 0.01 * amp * np.sin(2 * np.pi * rng.uniform(2.0, 4.0) * tt) * _taper(u, 0.4)
                disp[i0:i1] += prof[:, None] * target
                disp[i0:i1, 2] += wobble
                roll[i0:i1] += rng.uniform(0.5, 1.0) * prof
                events += [(ts, "lift_start", j), (ts + rise * dur, "at_mouth", j),
                           (ts + (1 - rise) * dur, "leave_mouth", j), (ts + dur, "lift_end", j)]
            elif motion == "wave":
                f = rng.uniform(2.0, 3.0) * spd
                A = rng.uniform(0.07, 0.12) * amp
                w = _taper(u, 0.2)
                ph = 2 * np.pi * f * tt
                disp[i0:i1, 0] += A * w * np.sin(ph)
                disp[i0:i1, 2] += 0.25 * A * w * np.sin(2 * ph)
                roll[i0:i1] += 0.6 * w * np.sin(ph + 0.5)
                events.append((ts, "wave_start", j))
            elif motion == "circle":
                f = rng.uniform(1.5, 2.5) * spd
                R = rng.uniform(0.05, 0.09) * amp
                sign = 1.0 if rng.random() < 0.5 else -1.0
                w = _taper(u, 0.2)
                th = 2 * np.pi * f * tt
                disp[i0:i1, 0] += R * w * np.cos(th)
                disp[i0:i1, 1] += sign * R * w * np.sin(th)
                roll[i0:i1] += 0.15 * w * np.sin(th)
                for k in range(1, int(f * dur) + 1):
                    if 0.15 < k / (f * dur) < 0.9:
                        events.append((ts + k / f, "revolution", j))
            else:  # tap
                h = rng.uniform(0.03, 0.06) * amp
                disp[i0:i1, 2] += h * np.abs(np.sin(np.pi * tt / period))
                disp[i0:i1, 1] += 0.2 * h * np.abs(np.sin(np.pi * tt / period))
                events += [(ts + k * period, "impact", j) for k in range(1, n_taps + 1)]
            ts += dur + rng.uniform(0.2, 1.0)

    drift = np.zeros((n, 3))
    for _ in range(3):
        drift += rng.uniform(0.001, 0.003) * np.sin(2 * np.pi * rng.uniform(0.05, 0.4) * t[:, None]
                                                    + rng.uniform(0, 2 * np.pi, 3))
    wrist = rest + disp + drift
    elbow, wrist = _two_link_ik(shoulder, wrist, _UPPER_ARM * bs, _FOREARM * bs)

    # forearm frame: e1 along the forearm, e3 normal to the arm plane, rolled by `roll`
    e1 = wrist - elbow
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    nrm = np.cross(elbow - shoulder, wrist - elbow)
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    e2 = np.cross(nrm, e1)
    cr, sr = np.cos(roll)[:, None], np.sin(roll)[:, None]
    f2 = cr * e2 + sr * nrm
    f3 = -sr * e2 + cr * nrm
    R = np.stack([e1, f2, f3], axis=2)  # columns: sensor frame axes in body coordinates
    R = R @ subj.mount_matrix

    vel = np.gradient(wrist, dt, axis=0)
    acc = np.gradient(vel, dt, axis=0)
    f_world = acc + np.array([0.0, 0.0, GRAVITY_MS2])
    f_sensor = np.einsum("nji,nj->ni", R, f_world)
    Rdot = np.gradient(R, dt, axis=0)
    Om = np.einsum("nji,njk->nik", R, Rdot)
    gyr = 0.5 * np.stack([Om[:, 2, 1] - Om[:, 1, 2], Om[:, 0, 2] - Om[:, 2, 0], Om[:, 1, 0] - Om[:, 0, 1]], axis=1)
    sos = butter(4, 25.0, fs=LATENT_RATE_HZ, output="sos")  # the sensor's anti-alias filter (zero phase)
    imu = sosfiltfilt(sos, np.concatenate([f_sensor, gyr], axis=1), axis=0)
    speed = np.linalg.norm(vel, axis=1)
    events.sort()
    return _Latent(t=t, wrist=wrist, elbow=elbow, shoulder=shoulder, imu=imu, speed=speed, events=events,
                   strokes=strokes)


def _two_link_ik(shoulder: np.ndarray, wrist: np.ndarray, l1: float, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """Elbow positions for an arm of segment lengths l1, l2 (wrist clamped to the reachable shell)."""
    d_vec = wrist - shoulder
    d = np.linalg.norm(d_vec, axis=1, keepdims=True)
    d_cl = np.clip(d, abs(l1 - l2) + 0.03, 0.97 * (l1 + l2))
    u = d_vec / d
    wrist = shoulder + u * d_cl
    a = (l1 * l1 - l2 * l2 + d_cl * d_cl) / (2 * d_cl)
    r = np.sqrt(np.maximum(l1 * l1 - a * a, 1e-9))
    pole = _ELBOW_POLE - (u @ _ELBOW_POLE)[:, None] * u
    pole /= np.linalg.norm(pole, axis=1, keepdims=True)
    elbow = shoulder + a * u + r * pole
    return elbow, wrist


def _rotvec_to_matrix(v: np.ndarray) -> np.ndarray:
    th = float(np.linalg.norm(v))
    if th < 1e-12:
        return np.eye(3)
    k = v / th
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(th) * K + (1 - math.cos(th)) * (K @ K)


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, tt = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, tt, p), (q, v, p), (p, v, tt), (p, q, v), (tt, p, v), (v, p, q)][i]
    return np.array(rgb) * 255.0


# --------------------------------------------------------------------------------------------------
# IMU


def _imu_table(plan: RecordingPlan, lat: _Latent, cfg: SynthConfig, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Rows (t on the IMU clock, 6 channels) and the facts about them."""
    subj = plan.subject
    rate = cfg.imu_hz * (1.0 + plan.imu_rate_drift)
    n = int(math.floor((plan.imu_end_s - plan.imu_start_s) * rate)) + 1
    tau = plan.imu_start_s + np.arange(n) / rate  # true sampling times, recording clock
    vals = np.empty((n, 6))
    for c in range(6):
        vals[:, c] = np.interp(tau, lat.t, lat.imu[:, c])
    gain = 1.0 + rng.normal(0.0, 0.01, 6)
    bias = np.concatenate([subj.acc_bias_ms2, subj.gyr_bias_rads])
    noise = np.concatenate([np.full(3, subj.acc_noise_ms2), np.full(3, subj.gyr_noise_rads)])
    vals = vals * gain + bias + rng.normal(size=(n, 6)) * noise
    jitter = np.clip(rng.normal(0.0, 0.0005, n), -0.0015, 0.0015)
    s = tau - plan.imu_true_offset_s + jitter
    keep = np.ones(n, dtype=bool)
    drops = []
    for a, b in plan.imu_dropouts:
        m = (tau >= a) & (tau < b)
        keep &= ~m
        drops.append({"start_s": a, "end_s": b, "stream_start_s": _r(a - plan.imu_true_offset_s),
                      "stream_end_s": _r(b - plan.imu_true_offset_s), "rows_removed": int(m.sum())})
    s_round = np.round(s[keep], 4)
    assert np.all(np.diff(s_round) > 0), "IMU timestamps must be strictly increasing"
    table = np.column_stack([s_round, vals[keep]])
    facts = {"rows": int(keep.sum()), "actual_rate_hz": _r(rate, 6), "rate_drift": plan.imu_rate_drift,
             "timestamp_jitter_sd_s": 0.0005, "dropouts": drops,
             "start_s": plan.imu_start_s, "end_s": _r(tau[-1], 6),
             "stream_start_s": float(s_round[0]), "stream_end_s": float(s_round[-1])}
    return table, facts


def _write_imu_csv(path: Path, table: np.ndarray) -> None:
    np.savetxt(path, table, fmt=["%.4f"] + ["%.4f"] * 6, delimiter=",",
               header="t," + ",".join(IMU_CHANNELS), comments="")


# --------------------------------------------------------------------------------------------------
# Audio


def _bandnoise(rng: np.random.Generator, n: int, lo: float, hi: float, sr: int) -> np.ndarray:
    from scipy.signal import butter, sosfilt

    sos = butter(2, [lo, min(hi, 0.45 * sr)], btype="band", fs=sr, output="sos")
    x = sosfilt(sos, rng.normal(size=n))
    return x / (np.std(x) + 1e-12)


def _template(kind: str, rng: np.random.Generator, sr: int) -> np.ndarray:
    """A short sound placed at a motion event."""
    if kind == "clink":  # spoon on pot rim: metallic partials
        n = int(0.12 * sr)
        tt = np.arange(n) / sr
        x = sum(a * np.sin(2 * np.pi * f * rng.uniform(0.97, 1.03) * tt) * np.exp(-tt / d)
                for f, a, d in [(2300, 1.0, 0.03), (3700, 0.6, 0.02), (5900, 0.4, 0.012)])
        return 0.25 * rng.uniform(0.6, 1.0) * x
    if kind == "thump":  # knuckles on wood
        n = int(0.1 * sr)
        tt = np.arange(n) / sr
        body = np.sin(2 * np.pi * rng.uniform(120, 200) * tt) * np.exp(-tt / 0.03)
        click = rng.normal(size=n) * np.exp(-tt / 0.002)
        return 0.45 * rng.uniform(0.7, 1.0) * (body + 0.4 * click)
    if kind == "tock":  # cup put down
        n = int(0.06 * sr)
        tt = np.arange(n) / sr
        return 0.15 * np.sin(2 * np.pi * rng.uniform(700, 900) * tt) * np.exp(-tt / 0.01)
    if kind == "tick":  # spoon scoops in the bowl
        n = int(0.05 * sr)
        tt = np.arange(n) / sr
        return 0.12 * np.sin(2 * np.pi * rng.uniform(3800, 4400) * tt) * np.exp(-tt / 0.008)
    if kind == "slurp":
        n = int(rng.uniform(0.3, 0.45) * sr)
        tt = np.arange(n) / sr
        gate = np.maximum(0.0, np.sin(2 * np.pi * rng.uniform(15, 25) * tt)) ** 2
        return 0.08 * _bandnoise(rng, n, 400, 2500, sr) * gate * _taper(tt / tt[-1], 0.15)
    if kind == "crunch":
        n = int(0.6 * sr)
        x = np.zeros(n)
        m = int(0.004 * sr)
        for _ in range(int(rng.integers(5, 11))):
            k = int(rng.integers(0, n - m))
            x[k:k + m] += rng.uniform(0.1, 0.25) * rng.normal(size=m) * np.exp(-np.arange(m) / (0.001 * sr))
        return x
    raise ValueError(kind)


# which events of which class make which sound, and which continuous sound a class makes
_EVENT_SOUNDS = {
    "stir": {"revolution": "clink"},
    "knock": {"impact": "thump"},
    "drink": {"at_mouth": "slurp", "lift_end": "tock"},
    "eat": {"lift_start": "tick", "at_mouth": "crunch"},
}
# class: (low Hz, high Hz, gain per m/s of wrist speed): every class makes some sound while the
# hand moves (rustle, slosh, scrape, swish), so audio energy follows the motion envelope
_CONTINUOUS_SOUNDS = {
    "wave": (150, 800, 0.04),
    "drink": (300, 1500, 0.03),
    "eat": (2500, 6000, 0.03),
    "stir": (2000, 6000, 0.04),
    "wipe": (1000, 5000, 0.10),
    "knock": (200, 1000, 0.02),
}


def _audio_track(plan: RecordingPlan, lat: _Latent, t0: float, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Mono waveform whose sample k is at recording time ``t0 + k / sr``."""
    from scipy.signal import butter, sosfilt

    tau = t0 + np.arange(n) / sr
    seg_of = np.full(n, -1)
    for j, (a, b, _) in enumerate(plan.segments):
        seg_of[(tau >= a) & (tau < b)] = j
    x = np.zeros(n)
    bg = sosfilt(butter(1, 3000, fs=sr, output="sos"), rng.normal(size=n))
    x += rng.uniform(0.002, 0.005) * bg / (np.std(bg) + 1e-12)
    speed = np.interp(tau, lat.t, lat.speed)
    for cls, (lo, hi, gain) in _CONTINUOUS_SOUNDS.items():
        js = [j for j, s in enumerate(plan.segments) if s[2] == cls]
        if not js:
            continue
        mask = np.isin(seg_of, js)
        x += mask * gain * speed * _bandnoise(rng, n, lo, hi, sr)
    for te, kind, j in lat.events:
        sound = _EVENT_SOUNDS.get(plan.segments[j][2], {}).get(kind)
        if sound is None:
            continue
        tpl = _template(sound, rng, sr)
        k0 = int(math.floor((te - t0) * sr + 0.5))
        a, b = max(k0, 0), min(k0 + len(tpl), n)
        if b > a:
            x[a:b] += tpl[a - k0:b - k0]
    return np.clip(x, -0.99, 0.99).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Video


class _Canvas:
    """Anti-aliased drawing on a float32 RGB image (pixel (row y, column x) centred at (x, y))."""

    def __init__(self, img: np.ndarray):
        self.img = img
        self.h, self.w = img.shape[:2]

    def _box(self, xmin, xmax, ymin, ymax):
        x0, x1 = max(0, int(math.floor(xmin)) - 1), min(self.w, int(math.ceil(xmax)) + 2)
        y0, y1 = max(0, int(math.floor(ymin)) - 1), min(self.h, int(math.ceil(ymax)) + 2)
        if x0 >= x1 or y0 >= y1:
            return None
        return x0, x1, y0, y1, np.arange(x0, x1, dtype=np.float32)[None, :], np.arange(y0, y1, dtype=np.float32)[:, None]

    def _blend(self, box, alpha, color):
        x0, x1, y0, y1 = box[:4]
        sub = self.img[y0:y1, x0:x1]
        sub += alpha[..., None] * (np.asarray(color, dtype=np.float32) - sub)

    def capsule(self, p0, p1, r, color):
        box = self._box(min(p0[0], p1[0]) - r, max(p0[0], p1[0]) + r, min(p0[1], p1[1]) - r, max(p0[1], p1[1]) + r)
        if box is None:
            return
        xs, ys = box[4], box[5]
        dx, dy = p1[0] - p0[0], p1[1] - p0[1]
        px, py = xs - p0[0], ys - p0[1]
        l2 = dx * dx + dy * dy
        s = np.clip((px * dx + py * dy) / l2, 0.0, 1.0) if l2 > 1e-9 else np.zeros_like(px * py)
        d = np.hypot(px - s * dx, py - s * dy)
        self._blend(box, np.clip(r + 0.5 - d, 0.0, 1.0), color)

    def ellipse(self, c, rx, ry, color, lower_half=False):
        box = self._box(c[0] - rx, c[0] + rx, c[1] - ry, c[1] + ry)
        if box is None:
            return
        xs, ys = box[4], box[5]
        q = np.sqrt(((xs - c[0]) / rx) ** 2 + ((ys - c[1]) / ry) ** 2)
        a = np.clip((1.0 - q) * min(rx, ry) + 0.5, 0.0, 1.0)
        if lower_half:
            a = a * np.clip(ys - c[1] + 0.5, 0.0, 1.0)
        self._blend(box, a, color)

    def rect(self, c, w, h, color):
        box = self._box(c[0] - w / 2, c[0] + w / 2, c[1] - h / 2, c[1] + h / 2)
        if box is None:
            return
        xs, ys = box[4], box[5]
        a = np.clip(np.minimum(w / 2 + 0.5 - np.abs(xs - c[0]), h / 2 + 0.5 - np.abs(ys - c[1])), 0.0, 1.0)
        self._blend(box, a, color)


# object colours (RGB)
_CUP = (40, 90, 220)
_BOWL = (235, 120, 35)
_SPOON = (205, 205, 215)
_POT = (70, 72, 82)
_POT_RIM = (120, 122, 135)
_WOOD = (170, 120, 60)
_CLOTH = (240, 210, 50)


_CAM_TILT = 0.9  # the camera looks down: a point 1 m nearer the camera appears 0.9 m lower


class _Camera:
    def __init__(self, subj: SubjectParams, size: int):
        f = size / 128.0
        self.k = 115.0 * f * subj.cam_scale
        self.u0 = subj.cam_u0_px * f
        self.v0 = subj.cam_v0_px * f
        self.size = size

    def __call__(self, p: np.ndarray) -> np.ndarray:
        """Body-frame points (..., 3) -> pixel (..., 2) as (x, y)."""
        p = np.asarray(p, dtype=np.float64)
        u = self.u0 + self.k * p[..., 0]
        v = self.v0 - self.k * (p[..., 2] - _CAM_TILT * p[..., 1])
        return np.stack([u, v], axis=-1)


def _render_frames(plan: RecordingPlan, lat: _Latent, cfg: SynthConfig, rng: np.random.Generator):
    """Yield uint8 (size, size, 3) frames; frame i shows recording time i / fps."""
    subj = plan.subject
    size = cfg.video_size
    cam = _Camera(subj, size)
    k = cam.k
    bs = subj.body_scale
    n_frames = num_samples(plan.seconds, cfg.fps)
    tf = np.arange(n_frames) / cfg.fps
    wrist = np.stack([np.interp(tf, lat.t, lat.wrist[:, c]) for c in range(3)], axis=1)
    elbow = np.stack([np.interp(tf, lat.t, lat.elbow[:, c]) for c in range(3)], axis=1)
    wrist_px, elbow_px = cam(wrist), cam(elbow)
    shoulder_px = cam(lat.shoulder)
    shirt = np.array(subj.shirt_rgb)
    sleeve = shirt * 0.72
    skin = np.array(subj.skin_rgb)

    # static background (the same in every frame of the recording)
    base = np.empty((size, size, 3), dtype=np.float32)
    base[:] = np.asarray(subj.background_rgb, dtype=np.float32)
    cv = _Canvas(base)
    top = cam(np.array([0.0, 0.0, -0.04]))
    bottom = cam(np.array([0.0, 0.0, -0.65 * bs]))
    cv.capsule(top, bottom, 0.17 * bs * k, shirt)
    head = cam(np.array([0.0, 0.02, 0.17 * bs]))
    cv.capsule(cam(np.array([0.0, 0.0, 0.0])), head, 0.04 * k, skin)
    cv.ellipse(head, 0.08 * k, 0.095 * k, skin)
    cv.ellipse(head - np.array([0.0, 0.04 * k]), 0.082 * k, 0.06 * k, subj.hair_rgb)
    cv.ellipse(head + np.array([0.0, 0.01 * k]), 0.07 * k, 0.07 * k, skin, lower_half=True)
    l_sh = np.array([_SHOULDER_HALF_WIDTH * bs, 0.0, 0.0])
    l_el = l_sh + np.array([0.05, 0.02, -0.29]) * bs
    l_wr = l_sh + np.array([-0.06, 0.26, -0.34]) * bs
    cv.capsule(cam(l_sh), cam(l_el), 0.036 * k, sleeve)
    table_back = cam(np.array([0.0, 0.12, _TABLE_Z * bs]))[1]
    cv.rect((size / 2, (table_back + size + 4) / 2), size + 8, size + 4 - table_back, subj.table_rgb)
    cv.rect((size / 2, table_back), size + 8, max(1.0, 0.012 * k), np.array(subj.table_rgb) * 0.8)
    cv.capsule(cam(l_el), cam(l_wr), 0.03 * k, skin)
    cv.ellipse(cam(l_wr), 0.045 * k, 0.045 * k, skin)

    # per segment: objects on the table, drawn into a copy of the static background
    layers = []
    for j, (a, b, c) in enumerate(plan.segments):
        layer = base.copy()
        lc = _Canvas(layer)
        rest = lat.shoulder + _rest_pose(MOTION[c]) * bs
        jit = rng.normal(0.0, 0.01, 3)
        if c == "eat":
            bowl = rest + np.array([0.11, 0.02, 0.0]) * bs + jit
            bowl[2] = _TABLE_Z * bs + 0.045
            lc.ellipse(cam(bowl), 0.075 * k, 0.045 * k, _BOWL, lower_half=True)
        elif c == "stir":
            pot = rest + jit
            pot_top = pot.copy()
            pot_top[2] = _TABLE_Z * bs + 0.11
            pot_bot = pot.copy()
            pot_bot[2] = _TABLE_Z * bs
            pc = (cam(pot_top) + cam(pot_bot)) / 2
            lc.rect(pc, 0.22 * k, 0.11 * k, _POT)
            lc.ellipse(cam(pot_top), 0.11 * k, 0.03 * k, _POT_RIM)
        layers.append(layer)
    seg_starts = np.array([s[0] for s in plan.segments])
    seg_ends = np.array([s[1] for s in plan.segments])

    table_z = _TABLE_Z * bs
    for i in range(n_frames):
        j = int(np.searchsorted(seg_starts, tf[i], side="right")) - 1
        active = j >= 0 and tf[i] < seg_ends[j]
        img = (layers[j] if active else base).copy()
        c = plan.segments[j][2] if active else None
        cv = _Canvas(img)
        w3, wp, ep = wrist[i], wrist_px[i], elbow_px[i]
        if c == "wipe":
            cl = w3.copy()
            cl[2] = table_z
            cv.ellipse(cam(cl), 0.065 * k, 0.03 * k, _CLOTH)
        cv.capsule(shoulder_px, ep, 0.036 * k, sleeve)
        cv.capsule(ep, wp, 0.03 * k, skin)
        if c == "stir":
            cv.capsule(wp, cam(w3 + np.array([0.0, 0.0, -0.10]) * bs), 0.012 * k, _WOOD)
        cv.ellipse(wp, 0.045 * k, 0.045 * k, skin)
        if c == "drink":
            cv.rect(cam(w3 + np.array([0.0, 0.01, 0.035])), 0.06 * k, 0.09 * k, _CUP)
        elif c == "eat":
            cv.capsule(wp, cam(w3 + np.array([0.06, 0.0, 0.05]) * bs), 0.01 * k + 0.3, _SPOON)
        yield np.clip(img + 0.5, 0, 255).astype(np.uint8)


def _write_mp4(path: Path, frames, n_frames: int, cfg: SynthConfig, audio: np.ndarray | None) -> None:
    """H.264 yuv420p video (frame i at pts i / fps) and optionally a mono AAC track starting at 0."""
    import av

    rate = Fraction(cfg.fps).limit_denominator(1001)
    tb_v = 1 / rate
    sr = cfg.audio_sr
    tmp = path.with_name(path.name + ".tmp.mp4")
    container = av.open(str(tmp), mode="w")
    try:
        vs = container.add_stream("libx264", rate=rate)
        vs.width = vs.height = cfg.video_size
        vs.pix_fmt = "yuv420p"
        vs.time_base = tb_v
        vs.codec_context.thread_count = 1
        g = cfg.keyframe_interval
        vs.options = {"crf": str(cfg.crf), "preset": "medium",
                      "x264-params": f"keyint={g}:min-keyint={g}:scenecut=0:threads=1:sliced-threads=0"}
        aus = None
        if audio is not None:
            aus = container.add_stream("aac", rate=sr)
            aus.layout = "mono"
            aus.bit_rate = cfg.audio_kbps * 1000
            aus.codec_context.thread_count = 1
        a_pos = 0
        chunk = 1024
        for i, img in enumerate(frames):
            fr = av.VideoFrame.from_ndarray(img, format="rgb24")
            fr.pts = i
            fr.time_base = tb_v
            for p in vs.encode(fr):
                container.mux(p)
            if aus is not None:  # interleave: audio up to the end of this frame
                until = len(audio) if i == n_frames - 1 else min(len(audio), int(math.floor((i + 1) * sr / cfg.fps)))
                while a_pos < until and (until - a_pos >= chunk or i == n_frames - 1):
                    blk = audio[a_pos:a_pos + chunk]
                    af = av.AudioFrame.from_ndarray(np.ascontiguousarray(blk[None, :]), format="fltp", layout="mono")
                    af.sample_rate = sr
                    af.pts = a_pos
                    af.time_base = Fraction(1, sr)
                    for p in aus.encode(af):
                        container.mux(p)
                    a_pos += len(blk)
        for p in vs.encode():
            container.mux(p)
        if aus is not None:
            for p in aus.encode():
                container.mux(p)
    finally:
        container.close()
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------------
# One recording and the dataset


def _json_dump(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _recording_rngs(plan: RecordingPlan) -> list[np.random.Generator]:
    """Independent random streams (motion, imu, audio, video) of one recording."""
    ss = np.random.SeedSequence([plan.seed, 2, plan.index])
    return [np.random.default_rng(s) for s in ss.spawn(4)]


def write_recording(rec_dir: Path, plan: RecordingPlan, cfg: SynthConfig) -> dict:
    """Write one recording folder (meta.json last) and return its ground-truth entry."""
    rec_dir = Path(rec_dir)
    if rec_dir.exists():
        shutil.rmtree(rec_dir)
    rec_dir.mkdir(parents=True)
    rng_motion, rng_imu, rng_audio, rng_video = _recording_rngs(plan)

    lat = _latent(plan, rng_motion)

    table, imu_facts = _imu_table(plan, lat, cfg, rng_imu)
    _write_imu_csv(rec_dir / "imu.csv", table)

    sr = cfg.audio_sr
    if plan.audio_mode == "container":
        audio = _audio_track(plan, lat, 0.0, num_samples(plan.seconds, sr), sr, rng_audio)
        audio_file = "video.mp4"
        audio_facts = {"file": audio_file, "start_s": 0.0, "end_s": _r(len(audio) / sr, 6)}
    else:
        import soundfile as sf

        n_a = num_samples(plan.audio_end_s - plan.audio_true_offset_s, sr)
        wav = _audio_track(plan, lat, plan.audio_true_offset_s, n_a, sr, rng_audio)
        sf.write(str(rec_dir / "audio.wav"), wav, sr, subtype="PCM_16")
        audio = None
        audio_file = "audio.wav"
        audio_facts = {"file": audio_file, "start_s": plan.audio_true_offset_s,
                       "end_s": _r(plan.audio_true_offset_s + n_a / sr, 6)}

    n_frames = num_samples(plan.seconds, cfg.fps)
    _write_mp4(rec_dir / "video.mp4", _render_frames(plan, lat, cfg, rng_video), n_frames, cfg, audio)

    if plan.whole_label is None:
        lines = ["start,end,label"] + [f"{a:.3f},{b:.3f},{c}" for a, b, c in plan.segments]
        (rec_dir / "labels.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    audio_true = plan.audio_true_offset_s if plan.audio_mode == "wav" else 0.0
    audio_decl = plan.audio_declared_offset_s if plan.audio_mode == "wav" else 0.0
    meta = {
        "subject": plan.subject.subject,
        "session": plan.session,
        "streams": {
            "video": {"kind": "video", "file": "video.mp4", "rate_hz": cfg.fps},
            "audio": {"kind": "audio", "file": audio_file, "clock_offset_s": audio_decl, "rate_hz": sr},
            "imu": {"kind": "imu", "file": "imu.csv", "clock_offset_s": plan.imu_declared_offset_s,
                    "rate_hz": cfg.imu_hz, "channels": list(IMU_CHANNELS), "units": dict(IMU_UNITS)},
        },
        "synth": {"generator": "pipelines.synth", "version": __version__, "seed": plan.seed,
                  "recording_index": plan.index, "offsets_declared": plan.offsets_declared},
    }
    if plan.whole_label is not None:
        meta["label"] = plan.whole_label
    _json_dump(rec_dir / "meta.json", meta)

    def lag(declared: float, true: float) -> float:
        return _r(declared - true, 6)

    return {
        "subject": plan.subject.subject,
        "session": plan.session,
        "seconds": plan.seconds,
        "whole_label": plan.whole_label,
        "offsets_declared": plan.offsets_declared,
        "segments": [{"start": a, "end": b, "label": c} for a, b, c in plan.segments],
        "strokes": [[round(a, 3), round(b, 3)] for a, b, _ in lat.strokes],
        "streams": {
            "video": {"file": "video.mp4", "true_clock_offset_s": 0.0, "declared_clock_offset_s": 0.0,
                      "expected_lag_s": 0.0, "rate_hz": cfg.fps, "frames": n_frames},
            "audio": {**audio_facts, "true_clock_offset_s": audio_true, "declared_clock_offset_s": audio_decl,
                      "expected_lag_s": lag(audio_decl, audio_true), "rate_hz": sr},
            "imu": {"file": "imu.csv", "true_clock_offset_s": plan.imu_true_offset_s,
                    "declared_clock_offset_s": plan.imu_declared_offset_s,
                    "expected_lag_s": lag(plan.imu_declared_offset_s, plan.imu_true_offset_s),
                    "nominal_rate_hz": cfg.imu_hz, **imu_facts},
        },
        "expected_lag_s": {"video": 0.0, "audio": lag(audio_decl, audio_true),
                           "imu": lag(plan.imu_declared_offset_s, plan.imu_true_offset_s)},
    }


def synthesize(out_dir: Path, cfg: SynthConfig, progress: Callable[[int, int], None] | None = None) -> dict:
    """Write a raw dataset in the dcat layout; return an info dict (recordings written, classes, bytes, seconds taken).

    ``out_dir/<subject>_<session>/`` gets ``meta.json``, ``video.mp4``, ``imu.csv``, ``labels.csv`` (or a
    meta ``label``) and, with ``audio="wav"``, ``audio.wav``. ``out_dir/ground_truth.json`` (no
    meta.json, so not a recording) holds the true clocks, dropouts, segments and ``expected_lag_s``.
    Deterministic given ``cfg`` (and the same PyAV / x264 build).
    """
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    plans = plan_dataset(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    recs = {}
    n_bytes = 0
    for k, plan in enumerate(plans):
        rec_dir = out_dir / plan.recording
        recs[plan.recording] = write_recording(rec_dir, plan, cfg)
        n_bytes += sum(p.stat().st_size for p in rec_dir.iterdir() if p.is_file())
        if progress is not None:
            progress(k + 1, len(plans))
    counts = {c: 0.0 for c in CLASSES}
    for r in recs.values():
        for s in r["segments"]:
            counts[s["label"]] += s["end"] - s["start"]
    gt = {
        "generator": "pipelines.synth",
        "version": __version__,
        "config": dataclasses.asdict(cfg),
        "classes": list(CLASSES),
        "motion": dict(MOTION),
        "shared_motion_pairs": [list(p) for p in SHARED_MOTION_PAIRS],
        "convention": ("video is the reference clock (recording time = video time). An event at recording "
                       "time tau appears in a stream's file at s = tau - true_clock_offset_s; a reader maps "
                       "s to s + declared_clock_offset_s, so the event appears at tau + expected_lag_s, "
                       "expected_lag_s = declared_clock_offset_s - true_clock_offset_s."),
        "subjects": {p.subject.subject: dataclasses.asdict(p.subject) for p in plans},
        "recordings": recs,
    }
    _json_dump(out_dir / "ground_truth.json", gt)
    n_bytes += (out_dir / "ground_truth.json").stat().st_size
    return {
        "out_dir": str(out_dir),
        "recordings": len(recs),
        "recording_ids": list(recs),
        "subjects": cfg.subjects,
        "classes": list(CLASSES),
        "class_seconds": {c: round(v, 3) for c, v in counts.items()},
        "bytes": int(n_bytes),
        "seconds_taken": round(time.perf_counter() - t_start, 3),
        "ground_truth": str(out_dir / "ground_truth.json"),
    }
