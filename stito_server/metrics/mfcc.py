"""MFCC baseline metric (the paper's DSP baseline): MFCC mean and deviation over time, mid and side."""

from __future__ import annotations

import numpy as np
from scipy.fft import dct

from .base import StyleMetric
from .logmel import log_mel, mel_filterbank


class MFCCMetric(StyleMetric):
    """MFCC statistics: per-coefficient mean and standard deviation over frames (2 x ``n_mfcc`` dims)."""

    name = "mfcc"

    def __init__(self, sample_rate: int = 48000, n_fft: int = 2048, hop: int = 1024, n_mels: int = 128,
                 n_mfcc: int = 25) -> None:
        self.sample_rate = sample_rate
        self.n_fft, self.hop, self.n_mfcc = n_fft, hop, n_mfcc
        self.fb = mel_filterbank(sample_rate, n_fft, n_mels, 20.0, min(20000.0, sample_rate / 2))

    def embed_mid_side(self, signals: np.ndarray, chunk: int = 16) -> np.ndarray:
        """MFCC mean and deviation, computed ``chunk`` signals at a time to bound memory (framing copies)."""
        rows = []
        for i in range(0, signals.shape[0], chunk):
            mel = log_mel(signals[i:i + chunk], self.fb, self.n_fft, self.hop)
            mfcc = dct(mel, type=2, norm="ortho", axis=-1)[..., : self.n_mfcc]
            rows.append(np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1)], axis=-1))
        return np.concatenate(rows, axis=0).astype(np.float32)
