"""Streaming prediction for an audio target (`dcat predict RUN - --stream` with an audio model): raw PCM
in on stdin, one JSON line per window out as soon as the window's samples have arrived.

The input is what preprocessing's audio reader writes to its scratch file: float32, little-endian,
mono, at the checkpoint's audio rate (``--audio-sr``, 16 kHz by default), with no header; convert
first, e.g. ``ffmpeg -i in.wav -f f32le -ac 1 -ar 16000 -``. Windows lie on the grid preprocessing
uses for a lone audio stream: window ``j`` covers samples ``[round(j * stride * sr), + window * sr)``
and its model input is ``pipelines.ingest.features.logmel`` of those samples (frame ``f`` covers
``[f * hop, f * hop + n_fft)``), the frames preprocessing stores for it when ``stride * sr`` is a
multiple of ``hop`` (true at the defaults: 1 s, 16 kHz, 160). Times are seconds since the first
sample (preprocessing's are on the recording clock: the audio's first timestamp plus its
``clock_offset_s`` later). A window holding a non-finite sample is written as skipped (``nan``).
"""

from __future__ import annotations

from typing import IO, BinaryIO

import numpy as np

from pipelines.core.errors import RecordingError
from pipelines.core.io import to_json
from pipelines.core.timeutil import num_samples, sample_index
from pipelines.deploy.predictor import StreamSpec, Window, window_rows
from pipelines.ingest.features import MelSettings, logmel

CHUNK_BYTES = 1 << 16  # stdin is read in pieces of at most this many bytes, as they arrive
MAX_PCM = 1e3  # float PCM is nominally within +-1: a sample beyond this is not PCM (text? the wrong format?)


def mel_settings(spec: StreamSpec) -> MelSettings:
    a = dict(spec.audio)
    return MelSettings(sample_rate_hz=a["audio_sr"], n_fft=a["n_fft"], hop_length=a["hop_length"], n_mels=a["n_mels"])


class PcmWindower:
    """PCM samples in (``push``), complete windows (log-mel frames) out."""

    def __init__(self, spec: StreamSpec):
        self.mel = mel_settings(spec)
        self.sr = self.mel.sample_rate_hz
        self.w, self.stride = spec.window_s, spec.stride_s
        self.t_win = num_samples(spec.window_s, self.sr)
        self.buf = np.zeros(0, np.float32)
        self.buf0 = 0  # sample index of buf[0]
        self.j = 0  # the next window

    def push(self, x: np.ndarray) -> list[Window]:
        self.buf = np.concatenate([self.buf, np.asarray(x, np.float32)])
        out = []
        while True:
            i0 = sample_index(self.j * self.stride, 0.0, self.sr)
            if i0 + self.t_win > self.buf0 + len(self.buf):
                break
            seg = self.buf[i0 - self.buf0:i0 - self.buf0 + self.t_win]
            start = self.j * self.stride
            if np.isfinite(seg).all():
                out.append(Window(start, start + self.w, logmel(seg[None, :], self.mel)[0]))
            else:
                out.append(Window(start, start + self.w, None, "nan"))
            self.j += 1
        keep = sample_index(self.j * self.stride, 0.0, self.sr)
        if keep > self.buf0:
            self.buf = self.buf[keep - self.buf0:]
            self.buf0 = keep
        return out


def stream_pcm(predictor, f: BinaryIO, out: IO[str]) -> dict:
    """Read float32 PCM from ``f`` as it arrives, write one JSON line per window to ``out`` (flushed);
    returns ``{"windows", "skipped", "samples"}``. Input that ends inside a sample, or a sample beyond
    ``MAX_PCM`` (text, say), is a RecordingError (after the complete windows before it are written)."""
    spec = predictor.spec
    win = PcmWindower(spec)
    n_frames = win.mel.n_frames(win.t_win)
    predictor(logmel(np.zeros((1, win.t_win), np.float32), win.mel))  # imports, mel basis, first forward: now
    counts = {"windows": 0, "skipped": 0, "samples": 0}
    read = getattr(f, "read1", None) or f.read
    rest = b""
    while True:
        chunk = read(CHUNK_BYTES)
        if not chunk:
            break
        data = rest + chunk
        n = len(data) // 4 * 4
        rest = data[n:]
        x = np.frombuffer(data[:n], dtype="<f4")
        big = np.flatnonzero(np.abs(np.nan_to_num(x)) > MAX_PCM)
        if len(big):
            raise RecordingError("stdin", "-", f"sample {counts['samples'] + int(big[0])} is {float(x[big[0]]):.4g}: "
                                 f"not float32 PCM (nominally within +-1)", "an audio model reads raw float32 PCM "
                                 f"(e.g. `ffmpeg -i in.wav -f f32le -ac 1 -ar {win.sr} -`), not CSV")
        counts["samples"] += len(x)
        ws = win.push(x)
        if ws:
            for row in window_rows(ws, predictor, spec.classes):
                out.write(to_json(row) + "\n")
                counts["skipped" if "skipped" in row else "windows"] += 1
            out.flush()
    if rest:
        raise RecordingError("stdin", "-", f"the input ends {len(rest)} bytes into a float32 sample (after "
                             f"{counts['samples']} samples): not raw float32 PCM",
                             f"convert with e.g. `ffmpeg -i in.wav -f f32le -ac 1 -ar {win.sr} -`")
    return {**counts, "frames_per_window": n_frames}


__all__ = ["PcmWindower", "stream_pcm", "mel_settings", "CHUNK_BYTES"]
