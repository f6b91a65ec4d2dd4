"""The latent motion of a recording: one 3-D wrist trajectory on a 1 kHz grid (rest poses, strokes,
slow drift), the arm that reaches it (two-link inverse kinematics) and the ideal wrist-sensor signals
derived from it (specific force and angular velocity of the forearm, in the sensor frame).

Every stream is rendered from this: the IMU samples the ideal signals, audio places sounds at the
motion events, video draws the arm. With ``imu_cue`` 0 (the default) the trajectory uses only the
motion of each segment (not its class), so classes that share a motion get identical trajectories
from the same random stream. With ``imu_cue`` C > 0, :func:`_add_imu_cue` adds, during the strokes
of the classes of :data:`_CUE`, a class-specific forearm-roll oscillation and wrist displacement
whose amplitude is C times the table's, with random frequency jitter and phase from a random stream
of its own: the two classes of a shared pair then differ on the IMU, more as C grows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.synth.plan import MOTION, RecordingPlan, SubjectParams

GRAVITY_MS2 = 9.81
LATENT_RATE_HZ = 1000.0  # the latent trajectory is sampled at 1 kHz
LATENT_MARGIN_S = 2.0  # latent covers [-margin, seconds + margin] on the recording clock

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


# imu_cue: class -> (frequency Hz, unit axis of the wrist displacement in the body frame). At C = 1 a
# stroke carries a roll oscillation of _CUE_ROLL_RAD and a displacement of _CUE_DISP_M at that
# frequency; both scale linearly with C.
_CUE: dict[str, tuple[float, tuple[float, float, float]]] = {
    "drink": (3.0, (0.0, 1.0, 0.0)),  # a slow forward-back tilt of the cup
    "eat": (5.5, (1.0, 0.0, 0.0)),  # a quicker sideways scooping jiggle
    "stir": (4.5, (0.0, 0.0, 1.0)),  # the spoon bobbing up and down
    "wipe": (7.0, (1.0, 0.0, 0.0)),  # fast sideways scrubbing
}
_CUE_ROLL_RAD = 0.05
_CUE_DISP_M = 0.0025


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


def _latent(plan: RecordingPlan, rng: np.random.Generator, imu_cue: float = 0.0,
            cue_rng: np.random.Generator | None = None) -> _Latent:
    """The wrist trajectory, arm pose and ideal IMU signals on a 1 kHz grid.

    With ``imu_cue`` 0 uses only ``rng`` and the motion of each segment (not its class), so classes
    that share a motion get identical trajectories from the same random stream. With ``imu_cue`` > 0
    the class-specific cue (:func:`_add_imu_cue`) is drawn from ``cue_rng``.
    """
    subj = plan.subject
    bs = subj.body_scale
    dt = 1.0 / LATENT_RATE_HZ
    n = int(round((plan.seconds + 2 * LATENT_MARGIN_S) * LATENT_RATE_HZ)) + 1
    t = -LATENT_MARGIN_S + np.arange(n) * dt
    shoulder = np.array([-_SHOULDER_HALF_WIDTH * bs, 0.0, 0.0])

    segs = plan.segments
    rests = [shoulder + _rest_pose(MOTION[c]) * bs + rng.normal(0.0, 0.012, 3) for _, _, c in segs]
    rest = _rest_trajectory(t, segs, rests)
    strokes = _Strokes(t, subj, shoulder + _MOUTH * bs, rng)
    for j, (a, b, c) in enumerate(segs):
        strokes.add_segment(j, a, b, MOTION[c], rests[j])
    drift = _slow_drift(t, rng)
    if imu_cue > 0.0:
        if cue_rng is None:
            raise ValueError("_latent: imu_cue > 0 needs cue_rng")
        _add_imu_cue(strokes, segs, imu_cue, cue_rng)
    wrist = rest + strokes.disp + drift
    elbow, wrist = _two_link_ik(shoulder, wrist, _UPPER_ARM * bs, _FOREARM * bs)

    R = _forearm_axes(shoulder, elbow, wrist, strokes.roll)
    R = R @ subj.mount_matrix
    imu, speed = _ideal_imu(wrist, R, dt)
    strokes.events.sort()
    return _Latent(t=t, wrist=wrist, elbow=elbow, shoulder=shoulder, imu=imu, speed=speed, events=strokes.events,
                   strokes=strokes.strokes)


def _rest_trajectory(t: np.ndarray, segs: list[tuple[float, float, str]], rests: list[np.ndarray]) -> np.ndarray:
    """(n, 3) wrist rest position: each segment's rest pose, moved between them (minimum jerk) during
    the transitions."""
    n = len(t)
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
    return rest


class _Strokes:
    """The strokes of a recording (lifts, waves, circles, taps): wrist displacement from the rest
    pose, forearm roll, and the events and stroke spans they produce. Segments must be added in
    order: they draw from one random stream."""

    def __init__(self, t: np.ndarray, subj: SubjectParams, mouth: np.ndarray, rng: np.random.Generator):
        self.t = t
        self.amp, self.spd = subj.amp_scale, subj.speed
        self.mouth = mouth
        self.rng = rng
        self.disp = np.zeros((len(t), 3))
        self.roll = np.zeros(len(t))
        self.events: list[tuple[float, str, int]] = []
        self.strokes: list[tuple[float, float, int]] = []

    def add_segment(self, j: int, a: float, b: float, motion: str, rest: np.ndarray) -> None:
        """Strokes of ``motion`` with random gaps, from just after ``a`` until one would end past ``b - 0.1``."""
        rng, t = self.rng, self.t
        ts = a + rng.uniform(0.2, 0.8)
        while True:
            dur, n_taps, period = self._duration(motion)
            if ts + dur > b - 0.1:
                break
            self.strokes.append((ts, ts + dur, j))
            i0, i1 = int(np.searchsorted(t, ts)), int(np.searchsorted(t, ts + dur))
            sl = slice(i0, i1)
            tt = t[i0:i1] - ts
            u = tt / dur
            if motion == "lift":
                self._lift(sl, tt, u, ts, dur, j, rest)
            elif motion == "wave":
                self._wave(sl, tt, u, ts, j)
            elif motion == "circle":
                self._circle(sl, tt, u, ts, dur, j)
            else:
                self._tap(sl, tt, ts, j, n_taps, period)
            ts += dur + rng.uniform(0.2, 1.0)

    def _duration(self, motion: str) -> tuple[float, int, float]:
        """A stroke's length in seconds, and for a tap its number of taps and their period (else 0, 0.0)."""
        rng, spd = self.rng, self.spd
        if motion == "lift":
            return rng.uniform(1.2, 1.8) / spd, 0, 0.0
        if motion == "wave":
            return rng.uniform(0.8, 1.6) / spd, 0, 0.0
        if motion == "circle":
            return rng.uniform(0.7, 1.3) / spd, 0, 0.0
        n_taps = int(rng.integers(2, 5))
        period = rng.uniform(0.14, 0.22) / spd
        return n_taps * period, n_taps, period

    def _lift(self, sl: slice, tt: np.ndarray, u: np.ndarray, ts: float, dur: float, j: int, rest: np.ndarray) -> None:
        """Hand to the mouth and back, with a small wobble and a forearm roll."""
        rng = self.rng
        rise = rng.uniform(0.3, 0.38)
        prof = _minjerk(u / rise) * _minjerk((1.0 - u) / rise)
        target = self.mouth + rng.normal(0.0, 0.01, 3) - rest
        wobble = 0.01 * self.amp * np.sin(2 * np.pi * rng.uniform(2.0, 4.0) * tt) * _taper(u, 0.4)
        self.disp[sl] += prof[:, None] * target
        self.disp[sl, 2] += wobble
        self.roll[sl] += rng.uniform(0.5, 1.0) * prof
        self.events += [(ts, "lift_start", j), (ts + rise * dur, "at_mouth", j),
                        (ts + (1 - rise) * dur, "leave_mouth", j), (ts + dur, "lift_end", j)]

    def _wave(self, sl: slice, tt: np.ndarray, u: np.ndarray, ts: float, j: int) -> None:
        """Side-to-side oscillation of the raised hand."""
        rng = self.rng
        f = rng.uniform(2.0, 3.0) * self.spd
        A = rng.uniform(0.07, 0.12) * self.amp
        w = _taper(u, 0.2)
        ph = 2 * np.pi * f * tt
        self.disp[sl, 0] += A * w * np.sin(ph)
        self.disp[sl, 2] += 0.25 * A * w * np.sin(2 * ph)
        self.roll[sl] += 0.6 * w * np.sin(ph + 0.5)
        self.events.append((ts, "wave_start", j))

    def _circle(self, sl: slice, tt: np.ndarray, u: np.ndarray, ts: float, dur: float, j: int) -> None:
        """Horizontal circles over the table; an event at each inner full revolution."""
        rng = self.rng
        f = rng.uniform(1.5, 2.5) * self.spd
        R = rng.uniform(0.05, 0.09) * self.amp
        sign = 1.0 if rng.random() < 0.5 else -1.0
        w = _taper(u, 0.2)
        th = 2 * np.pi * f * tt
        self.disp[sl, 0] += R * w * np.cos(th)
        self.disp[sl, 1] += sign * R * w * np.sin(th)
        self.roll[sl] += 0.15 * w * np.sin(th)
        for k in range(1, int(f * dur) + 1):
            if 0.15 < k / (f * dur) < 0.9:
                self.events.append((ts + k / f, "revolution", j))

    def _tap(self, sl: slice, tt: np.ndarray, ts: float, j: int, n_taps: int, period: float) -> None:
        """Knuckle taps: rectified sine bounces, an impact at the end of each."""
        h = self.rng.uniform(0.03, 0.06) * self.amp
        self.disp[sl, 2] += h * np.abs(np.sin(np.pi * tt / period))
        self.disp[sl, 1] += 0.2 * h * np.abs(np.sin(np.pi * tt / period))
        self.events += [(ts + k * period, "impact", j) for k in range(1, n_taps + 1)]


def _add_imu_cue(strokes: "_Strokes", segs: list[tuple[float, float, str]], cue: float,
                 rng: np.random.Generator) -> None:
    """Add, during each stroke of a class in :data:`_CUE`, a roll oscillation and a wrist displacement
    at the class's frequency (jittered by +-10 %, random phase), amplitude ``cue`` times the table's,
    tapered in and out. Two draws per stroke whatever its class, so the draws do not depend on which
    class of a pair a segment is."""
    t = strokes.t
    for ts, te, j in strokes.strokes:
        jitter, phase = rng.uniform(-0.1, 0.1), rng.uniform(0.0, 2 * np.pi)
        spec = _CUE.get(segs[j][2])
        if spec is None:
            continue
        f0, axis = spec
        i0, i1 = int(np.searchsorted(t, ts)), int(np.searchsorted(t, te))
        tt = t[i0:i1] - ts
        osc = np.sin(2 * np.pi * f0 * (1.0 + jitter) * tt + phase) * _taper(tt / (te - ts), 0.25)
        strokes.roll[i0:i1] += cue * _CUE_ROLL_RAD * osc
        strokes.disp[i0:i1] += (cue * _CUE_DISP_M * osc)[:, None] * np.asarray(axis)


def _slow_drift(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n, 3) slow millimetre-scale wander of the wrist: three random low-frequency sines."""
    drift = np.zeros((len(t), 3))
    for _ in range(3):
        drift += rng.uniform(0.001, 0.003) * np.sin(2 * np.pi * rng.uniform(0.05, 0.4) * t[:, None]
                                                    + rng.uniform(0, 2 * np.pi, 3))
    return drift


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


def _forearm_axes(shoulder: np.ndarray, elbow: np.ndarray, wrist: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """(n, 3, 3) forearm frame, columns in body coordinates: e1 along the forearm, e3 normal to the
    arm plane, rolled by ``roll`` about e1."""
    e1 = wrist - elbow
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    nrm = np.cross(elbow - shoulder, wrist - elbow)
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    e2 = np.cross(nrm, e1)
    cr, sr = np.cos(roll)[:, None], np.sin(roll)[:, None]
    f2 = cr * e2 + sr * nrm
    f3 = -sr * e2 + cr * nrm
    return np.stack([e1, f2, f3], axis=2)


def _ideal_imu(wrist: np.ndarray, R: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """(n, 6) noise-free sensor signals (specific force, angular velocity in the sensor frame ``R``),
    low-passed like the sensor's anti-alias filter, and the (n,) wrist speed."""
    from scipy.signal import butter, sosfiltfilt

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
    return imu, speed
