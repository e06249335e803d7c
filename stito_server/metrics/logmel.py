"""Log-mel spectrogram shared by the MFCC metric and the learned encoder's front end.

Two implementations of one transform: ``log_mel`` (numpy + scipy's FFT, so the MFCC metric never imports
torch: ~1.3 s of start-up per ``stito match``) and ``log_mel_torch`` (the encoder's, which has torch loaded
anyway; ~1.5x faster). They agree to ~1e-5 (tests/test_metric_optimize.py).
"""

from __future__ import annotations

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view

DB_FLOOR, DB_CEIL = -80.0, 40.0


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
    """Log-mel spectrogram in dB, clamped to [-80, 40] dB and scaled to [-1, 1] (numpy and scipy only).

    Frames are ``n_fft`` samples every ``hop`` samples with a symmetric Hann window (no centring or
    padding, except that a signal shorter than one frame is zero-padded to one frame).

    Args:
        signals: ``(batch, samples)`` float32.
        fb: ``(n_mels, n_fft // 2 + 1)`` filterbank (``mel_filterbank``).
        n_fft: FFT size, in samples.
        hop: Hop size, in samples.

    Returns:
        ``(batch, frames, n_mels)`` float32.
    """
    x = np.asarray(signals, dtype=np.float32)
    if x.shape[-1] < n_fft:
        x = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, n_fft - x.shape[-1])])
    frames = np.multiply(sliding_window_view(x, n_fft, axis=-1)[..., ::hop, :], np.hanning(n_fft).astype(np.float32))
    spec = scipy.fft.rfft(frames, axis=-1, workers=-1, overwrite_x=True)  # complex64
    parts = spec.view(np.float32)  # re, im interleaved: squaring in place and a filterbank with each row
    np.multiply(parts, parts, out=parts)  # twice sums re^2 + im^2 inside the product
    mel = parts @ np.repeat(fb.T, 2, axis=0)
    np.maximum(mel, 1e-10, out=mel)
    db = 10.0 * np.log10(mel)
    return ((np.clip(db, DB_FLOOR, DB_CEIL) + 20.0) / 60.0).astype(np.float32, copy=False)


def log_mel_torch(signals: np.ndarray, fb: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """``log_mel`` computed with torch's FFT (for callers that have torch loaded); same arguments and result."""
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
        return ((db.clamp(DB_FLOOR, DB_CEIL) + 20.0) / 60.0).numpy()
