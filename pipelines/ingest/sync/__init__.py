"""Synchronization from the data: activity envelopes per sensor (``envelopes``), the lag of one
stream behind another with a calibrated ``reliable`` (``estimate``) and clock drift on long
recordings (``drift``). Pure numpy/scipy on envelopes; how a recording's streams are aligned (clock
groups, what is applied) is ``pipelines.ingest.align``."""

from pipelines.ingest.sync.drift import estimate_drift
from pipelines.ingest.sync.envelopes import (ENV_RATE_HZ, Envelope, audio_envelopes, channel_roles,
                                             imu_envelopes)
from pipelines.ingest.sync.estimate import MIN_OVERLAP_S, Series, estimate_lag, prepare

__all__ = ["ENV_RATE_HZ", "MIN_OVERLAP_S", "Envelope", "Series", "audio_envelopes", "channel_roles",
           "estimate_drift", "estimate_lag", "imu_envelopes", "prepare"]
