"""Audio streams: decoded in chunks, resampled to ``--audio-sr`` (soxr) and held in memory while
they take at most ``HOLD_BYTES`` (4.4 minutes at 16 kHz), else written to a scratch file; the shard
stores the log-mel frames of the kept windows (and, with ``--audio-waveform``, the waveform).

The activity envelopes (RMS energy over ``ENV_RATE_HZ`` hops and its onsets) are collected while reading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.core.errors import RecordingError
from pipelines.ingest.sync.envelopes import ENV_RATE_HZ, Envelope, audio_envelopes
from pipelines.ingest.config import PreprocessConfig
from pipelines.ingest.features import logmel
from pipelines.ingest.heap import release_memory
from pipelines.ingest.raw import Recording, StreamSpec
from pipelines.ingest.readers import audio_reader_name, iter_audio
from pipelines.ingest.streams.base import BLOCK_BYTES, Stream, rate_check, run_samples


#: resampled audio is held in memory up to this size (16 MiB: 4.4 min at 16 kHz), else it goes to a
#: scratch file: a short recording then needs no scratch folder, whose removal alone took 26-69 ms
#: (ext4 with ``discard``) while the shard's frames were being written back. 40 MiB raised a 1-hour
#: recording's peak from 364 to 404 MB (``benchmarks/memory.py``): what was held stays with the process
HOLD_BYTES = 16 << 20


class _ScratchWriter:
    """Keeps resampled chunks (in memory up to ``HOLD_BYTES``, then in the scratch file ``path``,
    made with its folder only then) and collects the RMS envelope (one value per ``hop`` samples; a
    chunk's remainder carries over to the next)."""

    def __init__(self, path: Path, hop: int):
        self.path, self.f, self.hop = path, None, hop
        self.held: list[np.ndarray] = []
        self.env_parts: list[np.ndarray] = []
        self.carry = np.zeros(0, np.float32)
        self.n = 0

    def emit(self, y: np.ndarray) -> None:
        hop = self.hop
        y = np.asarray(y, dtype=np.float32)
        if self.f is None and (self.n + len(y)) * 4 > HOLD_BYTES:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.f = open(self.path, "wb")
            for part in self.held:
                part.tofile(self.f)
            self.held = []
            release_memory()  # the parts' pages back to the OS
        if self.f is None:
            self.held.append(y)
        else:
            y.tofile(self.f)
        self.n += len(y)
        buf = np.concatenate([self.carry, y])
        m = len(buf) // hop
        if m:
            self.env_parts.append(np.sqrt((buf[: m * hop].reshape(m, hop).astype(np.float64) ** 2).mean(axis=1)))
        self.carry = buf[m * hop:]

    def envelope(self) -> np.ndarray:
        return np.concatenate(self.env_parts) if self.env_parts else np.zeros(0)

    def close(self) -> np.ndarray | None:
        """The samples when held (read-only), else None (they are in the scratch file, now closed)."""
        if self.f is not None:
            self.f.close()
            return None
        held = np.concatenate(self.held) if self.held else np.zeros(0, np.float32)
        self.held = []
        held.flags.writeable = False
        return held


@dataclass
class AudioStream(Stream):
    """Mono float32 samples at ``--audio-sr``, held (``held``) or in a scratch file."""

    kind = "audio"
    ref_rank = 1
    held: np.ndarray | None = None  # every sample, when they fit HOLD_BYTES (else ``scratch``)

    @classmethod
    def read(cls, spec: StreamSpec, rec: Recording, cfg: PreprocessConfig, scratch_dir: Path) -> AudioStream:
        """Decode and resample to ``--audio-sr`` chunk by chunk, held in memory or written to
        ``scratch_dir/<name>.f32`` (``HOLD_BYTES``)."""
        import soxr

        path = scratch_dir / f"{spec.name}.f32"
        hop = int(round(cfg.audio_sr / ENV_RATE_HZ))
        rs = None
        t0 = None
        sr_in = None
        n_in = 0
        out = _ScratchWriter(path, hop)
        try:
            for t, x, sr in iter_audio(spec, rec.id):
                if t0 is None:
                    t0, sr_in = (t if math.isfinite(t) else 0.0), sr
                    rs = None if sr == cfg.audio_sr else soxr.ResampleStream(sr, cfg.audio_sr, 1, dtype="float32",
                                                                             quality="HQ")
                elif sr != sr_in:
                    raise RecordingError(rec.id, spec.file, f"sample rate changes mid-stream ({sr_in} -> {sr} Hz)")
                n_in += len(x)
                out.emit(rs.resample_chunk(x) if rs is not None else x)
            if rs is not None:
                out.emit(rs.resample_chunk(np.zeros(0, np.float32), last=True))
        finally:
            held = out.close()
        info = {"kind": "audio", "file": spec.file, "envelopes": ["rms", "onset"], **rate_check(spec.declared_rate_hz, float(sr_in), cfg.rate_tol),
                "samples": int(n_in), "reader": audio_reader_name(spec),
                "resample_method": ("none: rate matches" if sr_in == cfg.audio_sr else
                                    f"soxr HQ streaming resampler {sr_in} -> {cfg.audio_sr} Hz (anti-aliased)")}
        env = Envelope(float(t0) + 0.5 * hop / cfg.audio_sr, ENV_RATE_HZ, out.envelope())
        return cls(name=spec.name, file=spec.file, rate_hz=float(cfg.audio_sr), t0_s=float(t0), n=out.n,
                   offset_s=spec.clock_offset_s, envelopes=audio_envelopes(env), info=info,
                   scratch=None if held is not None else path, dtype="float32", clock=spec.clock, held=held)

    def samples(self, i0: int, i1: int) -> np.ndarray:
        """Samples [i0, i1): a read-only view of the held ones, else read from the scratch file."""
        return self.held[i0:i1] if self.held is not None else super().samples(i0, i1)

    @classmethod
    def probe_end_s(cls, spec: StreamSpec, rec_id: str) -> float | None:
        """Decodes the first chunk only: the end would need the whole file."""
        for _t, _x, _sr in iter_audio(spec, rec_id):
            break
        return None

    def write_runs(self, gs, rec: Recording, cfg: PreprocessConfig, runs: list[tuple[int, int]],
                   window_start: np.ndarray, i0: np.ndarray, t_win: int) -> None:
        """``logmel`` frames of each run (frame f covers samples [f*hop, f*hop + n_fft) of the run),
        ``window_start`` in frames; with ``--audio-waveform`` also ``waveform`` and its starts."""
        mel = cfg.mel()
        hop, nfft = mel.hop_length, mel.n_fft
        t_frames = mel.n_frames(t_win)
        run_frames = [1 + (r1 - r0 - nfft) // hop for r0, r1 in runs]
        ds = gs.create_dataset("logmel", shape=(int(sum(run_frames)), mel.n_mels), dtype=np.float32)
        wav = gs.create_dataset("waveform", shape=(run_samples(runs),), dtype=np.float32) if cfg.audio_waveform else None
        fstart = np.empty(len(i0), np.int64)
        fpos, spos = 0, 0
        chunk = max(1, BLOCK_BYTES // (hop * 4 * 4))  # frames per log-mel call
        for (r0, r1), nf in zip(runs, run_frames):
            sel = (i0 >= r0) & (i0 < r1)
            # windows start on the hop grid of their run when stride * sr is a multiple of hop (10 ms at
            # the defaults); otherwise the nearest frame (under half a hop away)
            fstart[sel] = fpos + np.minimum(np.round((i0[sel] - r0) / hop).astype(np.int64), nf - t_frames)
            for f0 in range(0, nf, chunk):
                f1 = min(nf, f0 + chunk)
                x = self.samples(r0 + f0 * hop, r0 + (f1 - 1) * hop + nfft)
                ds[fpos + f0:fpos + f1] = logmel(x[None, :], mel)[0]
            if wav is not None:
                for c0 in range(r0, r1, chunk * hop):
                    c1 = min(r1, c0 + chunk * hop)
                    wav[spos + c0 - r0:spos + c1 - r0] = self.samples(c0, c1)
            fpos += nf
            spos += r1 - r0
        gs.create_dataset("window_start", data=fstart)
        if wav is not None:
            gs.create_dataset("waveform_window_start", data=window_start)
        gs.attrs.update(rate_hz=cfg.audio_sr / hop, samples_per_window=t_frames,
                        unit="log(mel power + 1e-6)", sample_rate_hz=cfg.audio_sr, n_fft=nfft,
                        hop_length=hop, n_mels=mel.n_mels, fmin_hz=mel.fmin_hz,
                        fmax_hz=cfg.audio_sr / 2, waveform_samples_per_window=t_win)
