"""The settings of one `dcat preprocess` run (``PreprocessConfig``), checked once when made.

Its own module so that the stream kinds (``pipelines.ingest.streams``), the per-recording pipeline
(``recording``) and the run over recordings (``preprocess``, which re-exports it) all read it
without importing each other.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pipelines.core.errors import DcatError
from pipelines.core.timeutil import num_samples
from pipelines.ingest.features import MelSettings


@dataclass
class PreprocessConfig:
    """Settings of one preprocessing run; stored in every shard (``args_json``)."""

    fps: float = 30.0
    imu_hz: float = 50.0
    audio_sr: int = 16000
    window_s: float = 2.0
    stride_s: float = 1.0
    video_size: tuple[int, int] = (112, 112)  # (height, width)
    n_mels: int = 64
    n_fft: int = 400
    hop_length: int = 160
    audio_waveform: bool = False
    streams: tuple[str, ...] | None = None  # stream names to keep; None: all in meta.json
    min_purity: float = 0.8
    align: str = "meta"  # "meta": apply meta.json offsets, estimate + report lag; "estimate": also apply the lag
    max_lag_s: float = 2.0
    lag_tol_s: float = 0.1  # |lag| above this (when reliable) flags the recording as out of sync
    rate_tol: float = 0.01  # relative difference declared vs measured rate that flags a rate check
    short_streams: str = "fail"  # "fail" | "crop": a stream that starts/ends > coverage_tol_s off the others
    coverage_tol_s: float = 2.0
    labels: str = "require"  # "require": labels.csv or meta "label"; "ignore": unlabelled windows (deployment)

    def __post_init__(self):
        if isinstance(self.video_size, int):
            self.video_size = (self.video_size, self.video_size)
        self.video_size = tuple(int(v) for v in self.video_size)
        if self.streams is not None:
            self.streams = tuple(self.streams)
        for name in ("fps", "imu_hz", "window_s", "stride_s"):
            if not getattr(self, name) > 0:
                raise DcatError(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        if self.audio_sr <= 0 or self.n_fft > num_samples(self.window_s, self.audio_sr):
            raise DcatError(f"--audio-sr {self.audio_sr} gives windows shorter than one FFT frame ({self.n_fft})")
        if self.align not in ("meta", "estimate"):
            raise DcatError(f"--align must be 'meta' or 'estimate', got '{self.align}'")
        if self.short_streams not in ("fail", "crop"):
            raise DcatError(f"--short-streams must be 'fail' or 'crop', got '{self.short_streams}'")
        if self.labels not in ("require", "ignore"):
            raise DcatError(f"--labels must be 'require' or 'ignore', got '{self.labels}'")
        if not 0.0 < self.min_purity <= 1.0:
            raise DcatError(f"--min-purity must be in (0, 1], got {self.min_purity}")

    def mel(self) -> MelSettings:
        return MelSettings(sample_rate_hz=self.audio_sr, n_fft=self.n_fft, hop_length=self.hop_length,
                           n_mels=self.n_mels)

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["video_size"] = list(self.video_size)
        d["streams"] = list(self.streams) if self.streams is not None else None
        return d
