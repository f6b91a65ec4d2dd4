"""The settings of ``dcat synth``: :class:`SynthConfig` (every command-line option, declared once with
``opt``), its validation, and :data:`KNOBS` (what each control knob means, repeated in
ground_truth.json). Imports no numpy, so building the command line stays fast."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.core.errors import DcatError
from pipelines.core.options import check_options, opt

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

    subjects: int = opt(5, "number of subjects (s01..sNN)", ge=1)
    recordings: int = opt(3, "recordings per subject", ge=1)
    seconds: float = opt(40.0, "length of each recording, seconds (the video's length)", ge=3,
                          why="give a number >= 3 (one activity segment)")
    seed: int = opt(0, "random seed (same seed and options, same files)", ge=0)
    audio: str = opt("container", "'container' (AAC inside video.mp4), 'wav' (a separate audio.wav) or 'mixed' "
                                  "(alternate)", choices=AUDIO_MODES)
    imu_cue: float = opt(0.0, "strength in [0, 1] of a class-specific wrist component that separates drink/eat and "
                              "stir/wipe on the IMU: 0 = identical wrist motions, 1 = easy to tell apart", ge=0, le=1)
    source_errors: float = opt(0.0, "share in [0, 1] of each recording's time on which the camera fails (darkness, "
                                    "occlusion, out of frame; episodes of a few seconds); 1 = the video is pure noise", ge=0,
                                le=1)
    audio_strength: float = opt(1.0, "gain (>= 0) of the class-specific sounds against the background noise: 1 = "
                                     "default, 0 = background only", ge=0)
    video_size: int = opt(128, "native square frame size, pixels (even, >= 32)", ge=32)
    fps: float = opt(30.0, "native video frame rate", gt=0)
    imu_hz: float = opt(100.0, "nominal IMU rate (meta.json's rate_hz)", gt=0)
    audio_sr: int = opt(16000, "audio sample rate, Hz", ge=8000)
    max_offset_s: float = opt(1.0, "true IMU (and wav audio) clock offsets are drawn in [-max, max] seconds", ge=0)
    declared_fraction: float = opt(0.5, "share of recordings whose meta.json declares the true clock offsets", ge=0,
                                     le=1)
    dropouts: bool = opt(True, "IMU dropouts (rows removed over 0.3-1.5 s) in some recordings",
                         flag="--dropouts/--no-dropouts")
    whole_label_every: int = opt(8, "if > 0, every k-th recording is one activity, labelled by meta.json's 'label'",
                                 ge=0)
    crf: int = opt(23, "x264 constant rate factor (higher = smaller files)", ge=0, le=51)
    keyframe_interval: int = opt(15, "frames between H.264 keyframes", ge=1)
    audio_kbps: int = opt(32, "AAC bit rate, kbit/s", ge=1)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise :class:`SynthConfigError` naming the first value out of range (types and ranges as each
        field declares them, then what a field cannot say alone)."""
        try:
            check_options(self, SynthConfigError, spelling="key")
        except SynthConfigError as e:
            raise SynthConfigError(f"synth: {e}") from None
        if self.video_size % 2:
            raise SynthConfigError(f"synth: video_size must be even and >= 32, got {self.video_size}")
