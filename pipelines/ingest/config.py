"""The settings of one `dcat preprocess` run (``PreprocessConfig``), checked once when made.

Its own module so that the stream kinds (``pipelines.ingest.streams``), the per-recording pipeline
(``recording``) and the run over recordings (``preprocess``, which re-exports it) all read it
without importing each other.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pipelines.core.errors import DcatError
from pipelines.core.io import parse_list
from pipelines.core.options import check_options, opt
from pipelines.core.timeutil import num_samples


def _parse_size(s: str) -> tuple[int, int]:
    """``"112"`` -> (112, 112); ``"96x128"`` -> (96, 128) (height x width)."""
    try:
        if "x" in s.lower():
            h, w = s.lower().split("x")
            return int(h), int(w)
        return int(s), int(s)
    except ValueError:
        raise DcatError(f"--video-size '{s}' is not a size: use 112 or 96x128 (height x width)") from None


@dataclass
class PreprocessConfig:
    """Settings of one preprocessing run; stored in every shard (``args_json``). Each field's help is
    the command line's and the README's (``dcat_cli.options``)."""

    fps: float = opt(30.0, "video frame rate in the shards; resampled by timestamps (the frame shown at each grid time)")
    imu_hz: float = opt(50.0, "IMU rate; anti-aliased (linear interpolation on the timestamps, then polyphase FIR "
                       "decimation)")
    audio_sr: int = opt(16000, "audio rate (soxr HQ) before log-mel", ge=1)
    window_s: float = opt(2.0, "window length, seconds", flag="--window")
    stride_s: float = opt(1.0, "window step, seconds", flag="--stride")
    video_size: tuple[int, int] = opt((112, 112), "frame size in the shards: `112` or `HxW`, e.g. `96x128`",
                                     cli_type=str, cli_default="112", ge=1)
    n_mels: int = opt(64, "mel bands (25 ms FFT, 10 ms hop at 16 kHz)", ge=1)
    n_fft: int = opt(400, "FFT length of the log-mel, samples", cli=False, ge=1)
    hop_length: int = opt(160, "hop of the log-mel, samples", cli=False, ge=1)
    audio_waveform: bool = opt(False, "also store the resampled waveform per window",
                              flag="--audio-waveform/--no-audio-waveform")
    streams: tuple[str, ...] | None = opt(None, "comma-separated stream names to keep, e.g. `video,imu` (default: all "
                                         "in meta.json)", cli_type=str, items=str)
    min_purity: float = opt(0.8, "a window keeps its majority label only if that label covers at least this "
                           "fraction of it; otherwise it is dropped (`label_purity`)")
    align: str = opt("meta", "`meta`: apply `clock_offset_s` from meta.json, estimate and report the lag; "
                    "`estimate`: also apply reliable lag estimates (and a measured clock drift) to whole clock groups; "
                    "uncertain ones are reported, never applied", choices=("meta", "estimate"))
    max_lag_s: float = opt(2.0, "largest lag (s) searched", flag="--max-lag", gt=0)
    lag_tol_s: float = opt(0.1, "a reliable estimated lag above this (s) flags the recording as out of sync",
                          flag="--lag-tol", ge=0)
    rate_tol: float = opt(0.01, "relative declared-vs-measured rate difference reported as a rate warning", ge=0)
    short_streams: str = opt("fail", "a stream that starts late / ends early by more than --coverage-tol: `fail` the "
                            "recording or `crop` to the span all streams cover",
                            choices=("fail", "crop"))
    coverage_tol_s: float = opt(2.0, "seconds of late start / early end tolerated", flag="--coverage-tol", ge=0)
    labels: str = opt("require", "`require`: every recording needs labels.csv or a meta.json label; `ignore`: "
                     "unlabelled windows, no purity gate (deployment, `dcat predict`)",
                     choices=("require", "ignore"))

    def __post_init__(self):
        if isinstance(self.video_size, str):
            self.video_size = _parse_size(self.video_size)
        if isinstance(self.streams, str):
            self.streams = tuple(parse_list(self.streams)) or None
        if isinstance(self.video_size, int):
            self.video_size = (self.video_size, self.video_size)
        if isinstance(self.video_size, (list, tuple)):
            self.video_size = tuple(self.video_size)
        if self.streams is not None:
            self.streams = tuple(self.streams)
        check_options(self, DcatError)  # types and declared ranges; the checks below keep their messages
        for name in ("fps", "imu_hz", "window_s", "stride_s"):
            if not getattr(self, name) > 0:
                raise DcatError(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        if self.audio_sr <= 0 or self.n_fft > num_samples(self.window_s, self.audio_sr):
            raise DcatError(f"--audio-sr {self.audio_sr} gives windows shorter than one FFT frame ({self.n_fft})")
        if not 0.0 < self.min_purity <= 1.0:
            raise DcatError(f"--min-purity must be in (0, 1], got {self.min_purity}")

    def mel(self) -> MelSettings:  # noqa: F821 - imported here: the command line reads this module at start-up
        from pipelines.ingest.features import MelSettings

        return MelSettings(sample_rate_hz=self.audio_sr, n_fft=self.n_fft, hop_length=self.hop_length,
                           n_mels=self.n_mels)

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["video_size"] = list(self.video_size)
        d["streams"] = list(self.streams) if self.streams is not None else None
        return d
