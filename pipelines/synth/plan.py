"""The plan of a synthetic dataset: the class and motion tables, :class:`SynthConfig`, and every random
choice above the sample level (subjects' looks and sensors, activity segments, clocks, dropouts),
decided by :func:`plan_dataset` before anything is rendered.

Classes come in groups that share one wrist motion (:data:`MOTION`): ``drink``/``eat`` (lift to the
mouth) and ``stir``/``wipe`` (circles over the table) differ only in the objects the camera sees (and
in their sounds), so with ``imu_cue`` 0 (the default) the wrist IMU cannot separate them; ``imu_cue`` > 0
adds a class-specific wrist component (pipelines/synth/motion.py). ``wave`` and ``knock`` have motions
of their own. The camera failure episodes of ``source_errors`` are planned here too, from a random
stream of their own. :class:`SynthConfig` lives in ``pipelines.synth.config`` (importable without
numpy, for the command line) and is re-exported here.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from pipelines.synth.config import AUDIO_MODES, FAILURE_KINDS, KNOBS, SynthConfig, SynthConfigError  # noqa: F401

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

#: Class pairs that share one wrist motion: with imu_cue 0 the IMU cannot tell them apart, the camera can.
SHARED_MOTION_PAIRS: list[tuple[str, str]] = [("drink", "eat"), ("stir", "wipe")]

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
    camera_failures: list[tuple[float, float, str]] = field(default_factory=list)  # (start, end, kind), recording clock

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
    """``x`` rounded to ``nd`` decimals as a plain float (the precision the JSON files show)."""
    return float(round(float(x), nd))


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


def _plan_dropouts(rng: np.random.Generator, seconds: float) -> list[tuple[float, float]]:
    """One or two IMU dropouts of 0.3-1.5 s, at least 2 s from the ends and 1 s apart, sorted."""
    drops: list[tuple[float, float]] = []
    k = 1 + int(rng.random() < 0.5 and seconds > 15.0)
    lo, hi = 2.0, seconds - 2.0
    for _ in range(20):
        if len(drops) == k:
            break
        length = rng.uniform(0.3, 1.5)
        a = rng.uniform(lo, hi - length)
        if all(a > d1 + 1.0 or a + length < d0 - 1.0 for d0, d1 in drops):
            drops.append((_r(a), _r(a + length)))
    drops.sort()
    return drops


def _plan_camera_failures(rng: np.random.Generator, seconds: float, share: float) -> list[tuple[float, float, str]]:
    """Camera failure episodes covering ``share`` of [0, seconds]: about 3 s each (random lengths of
    at least half their mean that sum to ``share * seconds``), separated by random gaps, each of a
    random kind. Draws nothing when ``share`` is 0; ``share`` 1 covers the whole recording."""
    if share <= 0.0:
        return []
    fail_s = share * seconds
    k = max(1, int(round(fail_s / 3.0)))
    lengths = fail_s * (0.5 / k + 0.5 * rng.dirichlet(np.full(k, 4.0)))  # each at least half the mean
    gaps = (seconds - fail_s) * rng.dirichlet(np.full(k + 1, 2.0))
    kinds = rng.integers(len(FAILURE_KINDS), size=k)
    episodes = []
    t = float(gaps[0])
    for i in range(k):
        a, b = round(t, 3), round(min(t + float(lengths[i]), seconds), 3)
        if b > a:
            episodes.append((a, b, FAILURE_KINDS[int(kinds[i])]))
        t += float(lengths[i]) + float(gaps[i + 1])
    return episodes


def _recording_flags(cfg: SynthConfig, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Which of the ``n`` recordings declare their true offsets, and which get IMU dropouts."""
    n_declared = int(math.floor(cfg.declared_fraction * n + 0.5))
    declared = np.zeros(n, dtype=bool)
    declared[rng.permutation(n)[:n_declared]] = True
    if cfg.dropouts:
        with_drop = rng.random(n) < 0.4
        if n >= 2 and not with_drop.any():
            with_drop[int(rng.integers(n))] = True
    else:
        with_drop = np.zeros(n, dtype=bool)
    return declared, with_drop


def _plan_recording(cfg: SynthConfig, i: int, subj: SubjectParams, rng: np.random.Generator, deck: _Deck,
                    declared: bool, with_drop: bool) -> RecordingPlan:
    """Recording ``i`` of the dataset (draws from the dataset's ``rng`` and label ``deck`` in turn)."""
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
    drops = _plan_dropouts(rng, cfg.seconds) if with_drop and cfg.seconds > 6.0 else []
    audio_off = _r(rng.uniform(-m, m)) if (audio_mode == "wav" and m > 0) else 0.0
    audio_end = _r(cfg.seconds + rng.uniform(-0.5, 0.5)) if audio_mode == "wav" else float(cfg.seconds)
    return RecordingPlan(
        recording=f"{subj.subject}_{session}",
        subject=subj,
        session=session,
        index=i,
        seed=cfg.seed,
        seconds=float(cfg.seconds),
        segments=segs,
        whole_label=label,
        audio_mode=audio_mode,
        offsets_declared=declared,
        imu_true_offset_s=imu_off,
        imu_rate_drift=drift,
        imu_start_s=imu_start,
        imu_end_s=imu_end,
        imu_dropouts=drops,
        audio_true_offset_s=audio_off,
        audio_end_s=audio_end,
        camera_failures=_plan_camera_failures(np.random.default_rng([cfg.seed, 4, i]), cfg.seconds, cfg.source_errors),
    )


def plan_dataset(cfg: SynthConfig) -> list[RecordingPlan]:
    """Decide every random choice above the sample level (segments, clocks, dropouts) for ``cfg``."""
    cfg.validate()
    rng = np.random.default_rng([cfg.seed, 0])
    deck = _Deck(np.random.default_rng([cfg.seed, 3]))
    n = cfg.subjects * cfg.recordings
    declared, with_drop = _recording_flags(cfg, rng, n)
    subjects = [_subject_params(cfg.seed, i) for i in range(cfg.subjects)]
    return [_plan_recording(cfg, i, subjects[i // cfg.recordings], rng, deck, bool(declared[i]), bool(with_drop[i]))
            for i in range(n)]
