"""The video stream (``video.mp4``, H.264 yuv420p, short GOP): a frontal, slightly elevated camera sees
a person at a table (torso, head, right arm drawn from the shoulder through the elbow to the hand) plus
the class's objects (cup, bowl and spoon, pot and spoon, cloth), except during the camera failure
episodes of ``source_errors`` (darkness, occlusion, out of frame: :class:`_Failures`). Frames are
drawn anti-aliased with :class:`_Canvas` and written, with the container audio track if any, by
:func:`_write_mp4`. PyAV is imported inside the function that writes the file."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from pipelines.core.io import atomic_path
from pipelines.core.timeutil import num_samples
from pipelines.synth.motion import _SHOULDER_HALF_WIDTH, _TABLE_Z, _Latent, _rest_pose
from pipelines.synth.plan import MOTION, RecordingPlan, SubjectParams, SynthConfig


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


def _render_frames(plan: RecordingPlan, lat: _Latent, cfg: SynthConfig, rng: np.random.Generator,
                   fail_rng: np.random.Generator | None = None) -> Iterator[np.ndarray]:
    """Yield uint8 (size, size, 3) frames; frame i shows recording time i / fps. Frames inside one of
    ``plan.camera_failures`` come from :class:`_Failures` (noise from ``fail_rng``)."""
    subj = plan.subject
    cam = _Camera(subj, cfg.video_size)
    n_frames = num_samples(plan.seconds, cfg.fps)
    tf = np.arange(n_frames) / cfg.fps
    wrist = np.stack([np.interp(tf, lat.t, lat.wrist[:, c]) for c in range(3)], axis=1)
    elbow = np.stack([np.interp(tf, lat.t, lat.elbow[:, c]) for c in range(3)], axis=1)
    wrist_px, elbow_px = cam(wrist), cam(elbow)
    arm = _RightArm(subj, cam, cam(lat.shoulder))

    base = _static_background(subj, cam)
    layers = _segment_layers(plan, lat, base, cam, rng)
    seg_starts = np.array([s[0] for s in plan.segments])
    seg_ends = np.array([s[1] for s in plan.segments])
    failures = _Failures(plan, base, fail_rng) if plan.camera_failures else None
    for i in range(n_frames):
        if failures is not None:
            bad = failures.frame(tf[i])
            if bad is not None:
                yield bad
                continue
        j = int(np.searchsorted(seg_starts, tf[i], side="right")) - 1
        active = j >= 0 and tf[i] < seg_ends[j]
        img = (layers[j] if active else base).copy()
        c = plan.segments[j][2] if active else None
        arm.draw(_Canvas(img), c, wrist[i], wrist_px[i], elbow_px[i])
        yield np.clip(img + 0.5, 0, 255).astype(np.uint8)


def _static_background(subj: SubjectParams, cam: _Camera) -> np.ndarray:
    """The float32 image every frame of the recording starts from: wall, torso, head, the resting
    left arm and the table."""
    size = cam.size
    k = cam.k
    bs = subj.body_scale
    shirt = np.array(subj.shirt_rgb)
    sleeve = shirt * 0.72
    skin = np.array(subj.skin_rgb)
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
    return base


def _segment_layers(plan: RecordingPlan, lat: _Latent, base: np.ndarray, cam: _Camera,
                    rng: np.random.Generator) -> list[np.ndarray]:
    """Per segment, a copy of ``base`` with the objects that stand on the table (bowl, pot) drawn in,
    placed at the segment's rest pose with a little random jitter."""
    k = cam.k
    bs = plan.subject.body_scale
    layers = []
    for _, _, c in plan.segments:
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
    return layers


class _Failures:
    """Frames of the camera failure episodes: nothing in them depends on the class or the arm.

    ``darkness``: a nearly black frame with sensor noise; ``occlusion``: the static scene (no arm, no
    objects) with a dark blur covering the arm and the table; ``out_of_frame``: the camera turned to
    the wall (the wall's colour, a slight gradient, noise). Each episode's look is drawn once, the
    noise per frame, all from the stream ``rng``."""

    def __init__(self, plan: RecordingPlan, base: np.ndarray, rng: np.random.Generator | None):
        if rng is None:
            raise ValueError("_Failures: camera failures need their random stream")
        self.rng = rng
        self.size = size = base.shape[0]
        self.episodes = []
        rows = np.arange(size, dtype=np.float32)[:, None, None]
        wall = np.asarray(plan.subject.background_rgb, dtype=np.float32)
        for a, b, kind in plan.camera_failures:
            if kind == "darkness":
                img = np.full((size, size, 3), rng.uniform(4.0, 12.0), dtype=np.float32)
                sd = 3.0
            elif kind == "occlusion":
                top = rng.uniform(0.25, 0.45) * size
                alpha = np.clip((rows - top) / (0.06 * size), 0.0, 1.0)
                cover = np.float32(rng.uniform(30.0, 70.0)) * np.array([1.0, 0.95, 0.9], dtype=np.float32)
                img = base + alpha * (cover - base)
                sd = 2.0
            else:
                shade = 1.0 + rng.uniform(-0.08, 0.08) * (rows / size - 0.5)
                img = np.broadcast_to(wall * np.float32(rng.uniform(0.85, 1.05)) * shade, (size, size, 3))
                sd = 2.0
            self.episodes.append((a, b, np.ascontiguousarray(img, dtype=np.float32), sd))

    def frame(self, t: float) -> np.ndarray | None:
        """The uint8 frame at recording time ``t`` if it falls in an episode, else None."""
        for a, b, img, sd in self.episodes:
            if a <= t < b:
                noise = self.rng.normal(0.0, sd, (self.size, self.size, 1)).astype(np.float32)
                return np.clip(img + noise + 0.5, 0, 255).astype(np.uint8)
        return None


class _RightArm:
    """Draws the moving right arm and what the hand holds or pushes (cloth, spoon, cup) in one frame."""

    def __init__(self, subj: SubjectParams, cam: _Camera, shoulder_px: np.ndarray):
        self.cam = cam
        self.k = cam.k
        self.bs = subj.body_scale
        self.shoulder_px = shoulder_px
        self.sleeve = np.array(subj.shirt_rgb) * 0.72
        self.skin = np.array(subj.skin_rgb)
        self.table_z = _TABLE_Z * self.bs

    def draw(self, cv: _Canvas, c: str | None, w3: np.ndarray, wp: np.ndarray, ep: np.ndarray) -> None:
        """Class ``c`` (None between segments); wrist ``w3`` in the body frame, wrist and elbow pixels."""
        cam, k, bs = self.cam, self.k, self.bs
        if c == "wipe":
            cl = w3.copy()
            cl[2] = self.table_z
            cv.ellipse(cam(cl), 0.065 * k, 0.03 * k, _CLOTH)
        cv.capsule(self.shoulder_px, ep, 0.036 * k, self.sleeve)
        cv.capsule(ep, wp, 0.03 * k, self.skin)
        if c == "stir":
            cv.capsule(wp, cam(w3 + np.array([0.0, 0.0, -0.10]) * bs), 0.012 * k, _WOOD)
        cv.ellipse(wp, 0.045 * k, 0.045 * k, self.skin)
        if c == "drink":
            cv.rect(cam(w3 + np.array([0.0, 0.01, 0.035])), 0.06 * k, 0.09 * k, _CUP)
        elif c == "eat":
            cv.capsule(wp, cam(w3 + np.array([0.06, 0.0, 0.05]) * bs), 0.01 * k + 0.3, _SPOON)


def _write_mp4(path: Path, frames: Iterable[np.ndarray], n_frames: int, cfg: SynthConfig,
               audio: np.ndarray | None) -> None:
    """H.264 yuv420p video (frame i at pts i / fps) and optionally a mono AAC track starting at 0."""
    import av

    rate = Fraction(cfg.fps).limit_denominator(1001)
    tb_v = 1 / rate
    sr = cfg.audio_sr
    with atomic_path(path, suffix=".mp4") as tmp:  # PyAV picks the container from the extension
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
            for i, img in enumerate(frames):
                fr = av.VideoFrame.from_ndarray(img, format="rgb24")
                fr.pts = i
                fr.time_base = tb_v
                for p in vs.encode(fr):
                    container.mux(p)
                if aus is not None:  # interleave: audio up to the end of this frame
                    last = i == n_frames - 1
                    until = len(audio) if last else min(len(audio), int(math.floor((i + 1) * sr / cfg.fps)))
                    a_pos = _mux_audio(container, aus, audio, a_pos, until, last, sr)
            for p in vs.encode():
                container.mux(p)
            if aus is not None:
                for p in aus.encode():
                    container.mux(p)
        finally:
            container.close()


def _mux_audio(container, aus, audio: np.ndarray, a_pos: int, until: int, last: bool, sr: int) -> int:
    """Encode and mux ``audio[a_pos:until]`` in whole 1024-sample frames (the remainder too when
    ``last``); return the new position."""
    import av

    chunk = 1024
    while a_pos < until and (until - a_pos >= chunk or last):
        blk = audio[a_pos:a_pos + chunk]
        af = av.AudioFrame.from_ndarray(np.ascontiguousarray(blk[None, :]), format="fltp", layout="mono")
        af.sample_rate = sr
        af.pts = a_pos
        af.time_base = Fraction(1, sr)
        for p in aus.encode(af):
            container.mux(p)
        a_pos += len(blk)
    return a_pos
