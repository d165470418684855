"""Mel filter banks, built in float64 numpy once per extractor.

Two kinds are needed: Whisper's (librosa's "slaney" mel scale and area normalisation, triangles
drawn in Hz on an evenly spaced FFT grid) and Kaldi's (``1127 ln(1 + f/700)``, triangles drawn in
mel space, no normalisation) for AST's fbank. Both return ``(n_frequency_bins, n_mels)``: a
power spectrum with frequency last times this matrix is the mel spectrum.
"""

from __future__ import annotations

import numpy as np

__all__ = ["hz_to_mel", "mel_to_hz", "slaney_mel_filters", "kaldi_mel_filters"]

# Slaney's scale is linear (3 mels per 200 Hz) below 1 kHz and logarithmic above it, with 27 mels
# per factor 6.4 so the two parts meet at 15 mels.
_SLANEY_BREAK_HZ = 1000.0
_SLANEY_BREAK_MEL = 15.0
_SLANEY_LOG_STEP = np.log(6.4) / 27.0


def hz_to_mel(hz: np.ndarray | float, scale: str) -> np.ndarray:
    """Hz -> mel on ``scale`` ``"slaney"``, ``"kaldi"`` (natural log) or ``"htk"`` (log10)."""
    hz = np.asarray(hz, dtype=np.float64)
    if scale == "kaldi":
        return 1127.0 * np.log(1.0 + hz / 700.0)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + hz / 700.0)
    if scale != "slaney":
        raise ValueError(f"unknown mel scale {scale!r}")
    linear = 3.0 * hz / 200.0
    with np.errstate(divide="ignore"):
        logarithmic = _SLANEY_BREAK_MEL + np.log(hz / _SLANEY_BREAK_HZ) * (27.0 / np.log(6.4))
    return np.where(hz >= _SLANEY_BREAK_HZ, logarithmic, linear)


def mel_to_hz(mel: np.ndarray | float, scale: str) -> np.ndarray:
    """The inverse of :func:`hz_to_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    if scale == "kaldi":
        return 700.0 * (np.exp(mel / 1127.0) - 1.0)
    if scale == "htk":
        return 700.0 * (np.power(10.0, mel / 2595.0) - 1.0)
    if scale != "slaney":
        raise ValueError(f"unknown mel scale {scale!r}")
    linear = 200.0 * mel / 3.0
    logarithmic = _SLANEY_BREAK_HZ * np.exp(_SLANEY_LOG_STEP * (mel - _SLANEY_BREAK_MEL))
    return np.where(mel >= _SLANEY_BREAK_MEL, logarithmic, linear)


def _triangles(grid: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Filter ``m`` rises from ``corners[m]`` to 1 at ``corners[m + 1]`` and falls to 0 at
    ``corners[m + 2]``, evaluated at each ``grid`` point: (len(grid), len(corners) - 2)."""
    left, centre, right = corners[:-2], corners[1:-1], corners[2:]
    point = grid[:, None]
    rising = (point - left) / (centre - left)
    falling = (right - point) / (right - centre)
    return np.maximum(0.0, np.minimum(rising, falling))


def slaney_mel_filters(n_frequency_bins: int, n_mels: int, sampling_rate: int,
                       min_hz: float = 0.0, max_hz: float = 8000.0) -> np.ndarray:
    """Whisper's filters: mel centres evenly spaced on the slaney scale between ``min_hz`` and
    ``max_hz``, triangles over the FFT bin frequencies ``0 .. sampling_rate // 2``, each scaled by
    ``2 / width in Hz`` so every filter has the same area (librosa's ``norm="slaney"``)."""
    corners_mel = np.linspace(hz_to_mel(min_hz, "slaney"), hz_to_mel(max_hz, "slaney"), n_mels + 2)
    corners_hz = mel_to_hz(corners_mel, "slaney")
    bin_hz = np.linspace(0, sampling_rate // 2, n_frequency_bins)
    filters = _triangles(bin_hz, corners_hz)
    return filters * (2.0 / (corners_hz[2:] - corners_hz[:-2]))[None, :]


def kaldi_mel_filters(n_frequency_bins: int, n_mels: int, sampling_rate: int,
                      min_hz: float = 20.0, max_hz: float | None = None) -> np.ndarray:
    """Kaldi's filters (``compute-fbank-feats``): centres evenly spaced on Kaldi's mel scale, the
    triangles drawn in mel space over the mel value of each FFT bin, not normalised."""
    max_hz = sampling_rate / 2 if max_hz is None else max_hz
    corners_mel = np.linspace(hz_to_mel(min_hz, "kaldi"), hz_to_mel(max_hz, "kaldi"), n_mels + 2)
    bin_width = sampling_rate / ((n_frequency_bins - 1) * 2)
    bin_mel = hz_to_mel(bin_width * np.arange(n_frequency_bins), "kaldi")
    return _triangles(bin_mel, corners_mel)
