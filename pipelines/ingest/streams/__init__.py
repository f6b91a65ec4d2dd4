"""Stream kinds of preprocessing: one ``Stream`` subclass per kind, one module each.

``KINDS`` maps a meta.json stream ``kind`` to its class. Adding a kind means one module here (a
``Stream`` subclass with ``kind`` and ``ref_rank``: ``read``, ``probe_end_s`` and ``write_runs``,
and where the defaults do not fit ``cover_rec_s``, ``complete_envelope``, ``resample``,
``bad_samples``; see ``base``), one entry below, and the kind in schemas/meta.schema.json.
"""

from __future__ import annotations

from pipelines.ingest.streams.audio import AudioStream
from pipelines.ingest.streams.base import Stream
from pipelines.ingest.streams.imu import ImuStream
from pipelines.ingest.streams.video import VideoStream

KINDS: dict[str, type[Stream]] = {"video": VideoStream, "audio": AudioStream, "imu": ImuStream}

__all__ = ["KINDS", "AudioStream", "ImuStream", "Stream", "VideoStream"]
