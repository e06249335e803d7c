"""Distances between two renders of the same content, independent of any style metric (for tests and benchmarks)."""

from __future__ import annotations

import numpy as np
from scipy.signal import stft


def multi_resolution_stft_distance(a: np.ndarray, b: np.ndarray, sample_rate: int,
                                   sizes: tuple[int, ...] = (512, 2048, 8192)) -> float:
    """Mean absolute difference of log-magnitude STFTs over several resolutions, in dB.

    Args:
        a: ``(channels, n)`` audio.
        b: ``(channels, n)`` audio, the same content (e.g. an oracle render).
        sample_rate: In Hz.
        sizes: FFT sizes, in samples.

    Returns:
        Distance in dB (0 for identical audio).
    """
    n = min(a.shape[-1], b.shape[-1])
    total = 0.0
    for size in sizes:
        _, _, za = stft(a[..., :n], sample_rate, nperseg=size, noverlap=size * 3 // 4)
        _, _, zb = stft(b[..., :n], sample_rate, nperseg=size, noverlap=size * 3 // 4)
        da = 20 * np.log10(np.abs(za) + 1e-5)
        db = 20 * np.log10(np.abs(zb) + 1e-5)
        total += float(np.mean(np.abs(da - db)))
    return total / len(sizes)
