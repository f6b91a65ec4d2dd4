"""Layer 2 (beside ingest): the synthetic raw dataset generator (``dcat synth``). Writes the raw
layout; imports only ``pipelines.core``."""

from pipelines.synth.generator import (AUDIO_MODES, CLASSES, IMU_CHANNELS, MOTION, SHARED_MOTION_PAIRS,
                                       SynthConfig, plan_dataset, synthesize, write_recording)

__all__ = ["AUDIO_MODES", "CLASSES", "IMU_CHANNELS", "MOTION", "SHARED_MOTION_PAIRS", "SynthConfig", "plan_dataset",
           "synthesize", "write_recording"]
