"""MIR-features metric: loudness, dynamics, crest factor, band spectrum and spectral shape, per mid/side channel."""

from __future__ import annotations

import warnings

import numpy as np
import pyloudnorm
from scipy.fft import rfft

from .base import StyleMetric

FLOOR_DB = -100.0  # a channel whose RMS is below this (in dBFS) counts as silent
BAND_EDGES_HZ = (20.0, 63.0, 125.0, 250.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0, 12000.0, 16000.0, 20000.0)
FEATURE_NAMES = (
    ("loudness_lufs", "rms_dbfs", "crest_db", "short_term_std_db", "short_term_range_db",
     "centroid_log2_khz", "centroid_std_oct", "rolloff_log2_khz", "flatness_db", "bandwidth_oct")
    + tuple(f"band_{int(lo)}_{int(hi)}_db" for lo, hi in zip(BAND_EDGES_HZ[:-1], BAND_EDGES_HZ[1:]))
    + ("silent",)
)
# Fixed centre and scale per feature, so that the vector is roughly zero-mean and unit-scale on typical
# peak-normalised material and cosine similarity weighs the features comparably.
_CENTRE = np.array([-20.0, -20.0, 14.0, 4.0, 12.0, 0.0, 1.0, 1.5, -25.0, 1.5] + [0.0] * 11 + [0.0])
_SCALE = np.array([8.0, 8.0, 5.0, 3.0, 8.0, 1.0, 0.5, 1.0, 10.0, 0.5] + [6.0] * 11 + [1.0])


def channel_features(x: np.ndarray, sample_rate: int, n_fft: int = 2048, hop: int = 1024) -> np.ndarray:
    """Raw MIR features of one channel (units in ``FEATURE_NAMES``).

    Args:
        x: ``(samples,)`` float32, one channel (e.g. mid or side).
        sample_rate: In Hz.
        n_fft: STFT size, in samples.
        hop: STFT hop, in samples.

    Returns:
        ``(len(FEATURE_NAMES),)`` float64. A silent channel gives zeros with ``silent`` = 1.
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros(len(FEATURE_NAMES))
    rms = np.sqrt(np.mean(x ** 2)) if x.size else 0.0
    rms_db = 20 * np.log10(max(rms, 1e-12))
    if rms_db < FLOOR_DB or x.size < n_fft:
        out[-1] = 1.0
        return out
    peak_db = 20 * np.log10(np.max(np.abs(x)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lufs = pyloudnorm.Meter(sample_rate).integrated_loudness(x) if x.size > 0.4 * sample_rate else rms_db
    lufs = float(np.clip(lufs, -70.0, 10.0)) if np.isfinite(lufs) else -70.0
    # short-term (100 ms) level statistics over frames within 60 dB of the loudest
    frame = int(0.1 * sample_rate)
    n = x.size // frame
    st = 10 * np.log10(np.maximum((x[: n * frame].reshape(n, frame) ** 2).mean(axis=1), 1e-20))
    st = st[st > st.max() - 60.0]
    # spectrum
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop]
    power = np.abs(rfft(frames * np.hanning(n_fft), axis=-1)) ** 2  # (frames, bins)
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    frame_energy = power.sum(axis=1)
    active = frame_energy > frame_energy.max() * 1e-6
    p = power[active]
    ltas = p.mean(axis=0)
    total = ltas.sum()
    f = np.maximum(freqs, 1.0)
    centroids = (p * f).sum(axis=1) / np.maximum(p.sum(axis=1), 1e-30)
    centroid = (ltas * f).sum() / total
    cum = np.cumsum(ltas) / total
    rolloff = f[min(int(np.searchsorted(cum, 0.85)), len(f) - 1)]
    log_f = np.log2(f / centroid)
    bandwidth = np.sqrt((ltas * log_f ** 2).sum() / total)
    in_range = (freqs >= 20.0) & (freqs <= min(20000.0, sample_rate / 2))
    spec = ltas[in_range] + 1e-30
    flatness = 10 * np.log10(np.exp(np.mean(np.log(spec))) / np.mean(spec))
    bands = []
    for lo, hi in zip(BAND_EDGES_HZ[:-1], BAND_EDGES_HZ[1:]):
        sel = (freqs >= lo) & (freqs < hi)
        bands.append(10 * np.log10(max(ltas[sel].mean() if sel.any() else 0.0, 1e-30) / (total / len(freqs))))
    bands = np.maximum(np.array(bands), -80.0)
    bands -= bands.mean()  # spectral shape only: the level is in the loudness/RMS features
    out[:10] = [lufs, rms_db, peak_db - rms_db, st.std(), np.percentile(st, 95) - np.percentile(st, 10),
                np.log2(centroid / 1000.0), np.std(np.log2(np.maximum(centroids, 1.0) / centroid)),
                np.log2(rolloff / 1000.0), flatness, bandwidth]
    out[10:-1] = bands
    return out


class MIRMetric(StyleMetric):
    """Hand-made MIR features (loudness, dynamics, crest, band levels, spectral shape), standardised.

    Each of mid and side gets its own feature vector (side levels are relative to the clip's peak, so
    stereo width shows as a quieter or louder side). Features are centred and scaled by fixed constants,
    so no data set statistics are needed and embeddings of different runs are comparable.
    """

    name = "mir"

    def __init__(self, sample_rate: int = 48000) -> None:
        self.sample_rate = sample_rate

    def embed_mid_side(self, signals: np.ndarray) -> np.ndarray:
        feats = np.stack([channel_features(s, self.sample_rate) for s in np.asarray(signals)])
        z = (feats - _CENTRE) / _SCALE
        z[feats[:, -1] == 1.0, :-1] = 0.0  # silent channels: only the indicator
        return z.astype(np.float32)
