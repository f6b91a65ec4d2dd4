"""Preprocessing's mel filterbank is computed in numpy and equals librosa's ``filters.mel`` byte for byte,
so log-mel features (and shards) are what they were with librosa, without importing it (numba)."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

from pipelines.ingest.features import MelSettings, logmel, mel_basis

SETTINGS = [(sr, n_fft, n_mels, fmin, fmax)
            for sr in (8000, 16000, 22050, 48000)
            for n_fft in (256, 400, 1024)
            for n_mels in (40, 64, 128)
            for fmin, fmax in ((0.0, None), (20.0, None), (50.0, 3900.0))]


def test_mel_basis_is_librosas_byte_for_byte():
    librosa = pytest.importorskip("librosa")
    for sr, n_fft, n_mels, fmin, fmax in SETTINGS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # librosa warns of empty filters at small n_fft
            ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax).astype(np.float32)
        ours = mel_basis(sr, n_fft, n_mels, fmin, fmax)
        assert ours.dtype == np.float32 and ours.tobytes() == ref.tobytes(), (sr, n_fft, n_mels, fmin, fmax)


def test_logmel_of_a_tone_peaks_in_its_band():
    s = MelSettings()
    t = np.arange(s.sample_rate_hz) / s.sample_rate_hz
    x = np.sin(2 * np.pi * 440.0 * t).astype(np.float32)[None]
    m = logmel(x, s)
    assert m.shape == (1, s.n_frames(len(t)), s.n_mels)
    band = int(m[0].mean(axis=0).argmax())
    centres = mel_basis(s.sample_rate_hz, s.n_fft, s.n_mels).argmax(axis=1) * s.sample_rate_hz / s.n_fft
    assert abs(centres[band] - 440.0) < 80.0


def test_preprocessing_features_do_not_import_librosa():
    code = ("import sys, numpy as np\nfrom pipelines.ingest.features import MelSettings, logmel\n"
            "logmel(np.zeros((1, 16000), np.float32), MelSettings())\n"
            "bad = [m for m in ('librosa', 'numba') if m in sys.modules]\nassert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
