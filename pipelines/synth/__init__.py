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
and hears. Given the same recording seed, the IMU file of a recording does not depend on which class
of a motion group is drawn (tests rely on this).

Modules, in the order a recording is made: ``plan`` (SynthConfig, class and motion tables, every
random choice above the sample level), ``motion`` (the latent wrist trajectory, arm and ideal IMU
signals), ``imu``, ``audio`` and ``video`` (one stream each), ``dataset`` (recording folders,
ground_truth.json and the time convention it records). Media libraries (PyAV, soundfile) are
imported inside the functions that write files.
"""

from pipelines.synth.dataset import synthesize, write_recording
from pipelines.synth.imu import IMU_CHANNELS
from pipelines.synth.plan import AUDIO_MODES, CLASSES, MOTION, SHARED_MOTION_PAIRS, SynthConfig, plan_dataset

__all__ = ["AUDIO_MODES", "CLASSES", "IMU_CHANNELS", "MOTION", "SHARED_MOTION_PAIRS", "SynthConfig", "plan_dataset",
           "synthesize", "write_recording"]
