"""MFCC baseline metric (the paper's DSP baseline): MFCC mean and deviation over time, mid and side."""

from __future__ import annotations

import numpy as np
from scipy.fft import dct

from .base import StyleMetric


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """Triangular mel filters (HTK mel scale), ``(n_mels, n_fft // 2 + 1)`` float32, area-normalised."""
    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    bins = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (bins[None, :] - lower) / (centre - lower)
    down = (upper - bins[None, :]) / (upper - centre)
    fb = np.maximum(0.0, np.minimum(up, down))
    fb *= 2.0 / (upper - lower)
    return fb.astype(np.float32)


def log_mel(signals: np.ndarray, fb: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Log-mel spectrogram in dB, clamped to [-80, 40] dB and scaled to [-1, 1].

    Runs on torch's FFT (measured ~2.6x faster than scipy's here on 2 cores).

    Args:
        signals: ``(batch, samples)`` float32.
        fb: ``(n_mels, n_fft // 2 + 1)`` filterbank.
        n_fft: FFT size, in samples.
        hop: Hop size, in samples.

    Returns:
        ``(batch, frames, n_mels)`` float32.
    """
    import torch

    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(signals, dtype=np.float32))
        if x.shape[-1] < n_fft:
            x = torch.nn.functional.pad(x, (0, n_fft - x.shape[-1]))
        frames = x.unfold(-1, n_fft, hop) * torch.hann_window(n_fft, periodic=False)
        spec = torch.fft.rfft(frames, dim=-1)
        power = spec.real ** 2 + spec.imag ** 2
        mel = power @ torch.from_numpy(fb).T
        db = 10.0 * torch.log10(mel.clamp_min(1e-10))
        return ((db.clamp(-80.0, 40.0) + 20.0) / 60.0).numpy()


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
