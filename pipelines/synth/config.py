"""The settings of ``dcat synth``: :class:`SynthConfig` (every command-line option, declared once with
``opt``), its validation, and :data:`KNOBS` (what each control knob means, repeated in
ground_truth.json). Imports no numpy, so building the command line stays fast."""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipelines.core.errors import DcatError
from pipelines.core.options import opt

AUDIO_MODES = ("container", "wav", "mixed")

#: Kinds of camera failure episode (``source_errors``): a nearly black noisy frame; something covering
#: the arm and the table; the camera turned to the wall.
FAILURE_KINDS = ("darkness", "occlusion", "out_of_frame")


class SynthConfigError(DcatError, ValueError):
    """A :class:`SynthConfig` value out of range (a ValueError, and a DcatError the CLI reports without a
    traceback)."""


#: What each generator knob means (one sentence each; ground_truth.json repeats it under "knobs").
KNOBS: dict[str, str] = {
    "imu_cue": ("strength C in [0, 1] of a class-specific wrist component (a forearm-roll oscillation and a small "
                "wrist displacement at a class-specific frequency, during the strokes) that tells apart the classes "
                "sharing a wrist motion (drink/eat, stir/wipe): 0 = their IMU is identical, 1 = easy to separate."),
    "source_errors": ("share P in [0, 1] of each recording's time on which the camera fails, in episodes of a few "
                      "seconds (darkness, occlusion of the arm and table, out of frame) whose frames show no arm and "
                      "no object; 1 = the video is pure noise; audio and IMU are unaffected."),
    "audio_strength": ("gain S >= 0 of the class-specific sounds (event sounds and the sounds that follow the wrist) "
                       "against the unchanged background noise: 1 = the default mix, 0 = background noise only."),
}


@dataclass
class SynthConfig:
    """What :func:`~pipelines.synth.dataset.synthesize` writes (``dcat synth``'s options; each field's
    help is the command line's). The defaults reproduce the media files of the committed ``sample_data/``."""

    subjects: int = opt(5, "number of subjects (s01..sNN)")
    recordings: int = opt(3, "recordings per subject")
    seconds: float = opt(40.0, "length of each recording, seconds (the video's length)")
    seed: int = opt(0, "random seed (same seed and options, same files)")
    audio: str = opt("container", "'container' (AAC inside video.mp4), 'wav' (a separate audio.wav) or 'mixed' "
                                  "(alternate)")
    imu_cue: float = opt(0.0, "strength in [0, 1] of a class-specific wrist component that separates drink/eat and "
                              "stir/wipe on the IMU: 0 = identical wrist motions, 1 = easy to tell apart")
    source_errors: float = opt(0.0, "share in [0, 1] of each recording's time on which the camera fails (darkness, "
                                    "occlusion, out of frame; episodes of a few seconds); 1 = the video is pure noise")
    audio_strength: float = opt(1.0, "gain (>= 0) of the class-specific sounds against the background noise: 1 = "
                                     "default, 0 = background only")
    video_size: int = opt(128, "native square frame size, pixels (even, >= 32)")
    fps: float = opt(30.0, "native video frame rate")
    imu_hz: float = opt(100.0, "nominal IMU rate (meta.json's rate_hz)")
    audio_sr: int = opt(16000, "audio sample rate, Hz")
    max_offset_s: float = opt(1.0, "true IMU (and wav audio) clock offsets are drawn in [-max, max] seconds")
    declared_fraction: float = opt(0.5, "share of recordings whose meta.json declares the true clock offsets")
    dropouts: bool = opt(True, "IMU dropouts (rows removed over 0.3-1.5 s) in some recordings",
                         flag="--dropouts/--no-dropouts")
    whole_label_every: int = opt(8, "if > 0, every k-th recording is one activity, labelled by meta.json's 'label'")
    crf: int = opt(23, "x264 constant rate factor (higher = smaller files)")
    keyframe_interval: int = opt(15, "frames between H.264 keyframes")
    audio_kbps: int = opt(32, "AAC bit rate, kbit/s")

    def validate(self) -> None:
        """Raise :class:`SynthConfigError` naming the first value out of range."""
        def bad(msg: str) -> None:
            raise SynthConfigError(f"synth: {msg}")

        if self.subjects < 1 or self.recordings < 1:
            bad(f"needs subjects >= 1 and recordings >= 1, got {self.subjects}, {self.recordings}")
        if self.seconds < 3.0:
            bad(f"needs seconds >= 3 (one activity segment), got {self.seconds}")
        if self.audio not in AUDIO_MODES:
            bad(f"audio must be one of {AUDIO_MODES}, got {self.audio!r}")
        if self.video_size < 32 or self.video_size % 2:
            bad(f"video_size must be even and >= 32, got {self.video_size}")
        if self.fps <= 0 or self.imu_hz <= 0 or self.audio_sr < 8000:
            bad("needs fps > 0, imu_hz > 0 and audio_sr >= 8000")
        if not 0.0 <= self.declared_fraction <= 1.0:
            bad(f"declared_fraction must be in [0, 1], got {self.declared_fraction}")
        if self.max_offset_s < 0:
            bad(f"max_offset_s must be >= 0, got {self.max_offset_s}")
        if self.keyframe_interval < 1:
            bad(f"keyframe_interval must be >= 1, got {self.keyframe_interval}")
        if not 0.0 <= self.imu_cue <= 1.0:
            bad(f"imu_cue (--imu-cue) must be in [0, 1], got {self.imu_cue}")
        if not 0.0 <= self.source_errors <= 1.0:
            bad(f"source_errors (--source-errors) must be in [0, 1], got {self.source_errors}")
        if not (self.audio_strength >= 0.0 and math.isfinite(self.audio_strength)):
            bad(f"audio_strength (--audio-strength) must be a finite number >= 0, got {self.audio_strength}")
