"""Layer 2 (beside ingest): the synthetic raw dataset generator (``dcat synth``). Writes the raw
layout (schemas/raw-layout.md); imports only ``pipelines.core``.

One latent 3-D wrist trajectory per recording drives every stream:

* **video** (``video.mp4``, H.264 yuv420p, short GOP): a frontal, slightly elevated camera sees a
  person at a table (torso, head, right arm drawn from the shoulder through the elbow to the hand)
  plus the class's objects (cup, bowl and spoon, pot and spoon, cloth);
* **audio** (AAC track in ``video.mp4`` or a separate ``audio.wav``): class-specific sounds placed at
  the motion events (clinks, swishes, thumps, slurps, crunches) over low background noise;
* **imu** (``imu.csv``): a wrist sensor: accelerometer = second derivative of the wrist position plus
  gravity, gyroscope = angular velocity of the forearm, both in a per-subject rotated sensor frame,
  with noise, bias, rate drift, timestamp jitter, dropouts and a clock offset.

Classes that share a wrist motion (:data:`SHARED_MOTION_PAIRS`) differ only in what the camera sees
and hears. Given the same recording seed and ``imu_cue`` 0 (the default), the IMU file of a recording
does not depend on which class of a motion group is drawn (tests rely on this); ``imu_cue`` C > 0 adds
a class-specific wrist component that makes the pair's IMU differ, more as C grows.

Knobs for positive and negative controls (:data:`~pipelines.synth.plan.KNOBS`, repeated in
ground_truth.json): ``imu_cue``; ``source_errors`` (camera failure episodes, frames with no class
information); ``audio_strength`` (class sounds against the background). Their defaults reproduce the
media files of ``sample_data/`` byte for byte; each knob that is on draws from a random stream of its own.

Modules, in the order a recording is made: ``config`` (SynthConfig: the options, their checks and
the knobs' meaning; no numpy), ``plan`` (class and motion tables, every random choice above the
sample level), ``motion`` (the latent wrist trajectory, arm and ideal IMU
signals), ``imu``, ``audio`` and ``video`` (one stream each), ``dataset`` (recording folders,
ground_truth.json and the time convention it records). Media libraries (PyAV, soundfile) are
imported inside the functions that write files.
"""

from pipelines.synth.config import AUDIO_MODES, FAILURE_KINDS, KNOBS, SynthConfig, SynthConfigError

# the rest needs numpy: imported on first use, so the command line starts without it
_LAZY = {"synthesize": "dataset", "write_recording": "dataset", "IMU_CHANNELS": "imu", "CLASSES": "plan",
         "MOTION": "plan", "SHARED_MOTION_PAIRS": "plan", "plan_dataset": "plan"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"pipelines.synth.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'pipelines.synth' has no attribute {name!r}")


__all__ = ["AUDIO_MODES", "CLASSES", "FAILURE_KINDS", "IMU_CHANNELS", "KNOBS", "MOTION", "SHARED_MOTION_PAIRS",
           "SynthConfig", "SynthConfigError", "plan_dataset", "synthesize", "write_recording"]
