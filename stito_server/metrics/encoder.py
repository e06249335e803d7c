"""StyleEncoder: log-mel frames -> mid/side production-style embeddings (a small 1-D CNN built for CPU speed)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from .logmel import log_mel_torch, mel_filterbank


@dataclass(frozen=True)
class EncoderConfig:
    """Shape of the encoder and its front end.

    Attributes:
        sample_rate: Input rate, in Hz.
        n_fft: FFT size, in samples.
        hop: Hop between frames, in samples (1024 at 48 kHz = 21.3 ms).
        n_mels: Mel bands between ``f_min`` and ``f_max``.
        f_min: Lowest mel edge, in Hz.
        f_max: Highest mel edge, in Hz.
        width: Channels of the trunk's 1-D convolutions over frames.
        dilations: Dilation of each residual block (receptive field grows to cover reverb tails).
        dim: Embedding size of each of mid and side.
    """

    sample_rate: int = 48000
    n_fft: int = 2048
    hop: int = 1024
    n_mels: int = 128
    f_min: float = 20.0
    f_max: float = 20000.0
    width: int = 128
    dilations: tuple[int, ...] = (1, 2, 4, 8)
    dim: int = 128

    def to_dict(self) -> dict:
        """Plain dict (JSON/torch-save friendly)."""
        d = asdict(self)
        d["dilations"] = list(self.dilations)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "EncoderConfig":
        """Inverse of ``to_dict``; unknown keys are an error naming them."""
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown encoder config keys {sorted(unknown)}; valid: {sorted(cls.__dataclass_fields__)}")
        d = dict(d)
        if "dilations" in d:
            d["dilations"] = tuple(d["dilations"])
        return cls(**d)


class FrontEnd:
    """The log-mel front end (the paper's: power -> dB clamped to [-80, 40] dB -> [-1, 1])."""

    def __init__(self, config: EncoderConfig) -> None:
        self.config = config
        self.fb = mel_filterbank(config.sample_rate, config.n_fft, config.n_mels, config.f_min,
                                 min(config.f_max, config.sample_rate / 2))

    def __call__(self, signals: np.ndarray) -> np.ndarray:
        """Log-mel frames.

        Args:
            signals: ``(batch, samples)`` float32 at ``config.sample_rate``.

        Returns:
            ``(batch, frames, n_mels)`` float32 in [-1, 1].
        """
        return log_mel_torch(signals, self.fb, self.config.n_fft, self.config.hop)


class _Block(nn.Module):
    def __init__(self, width: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(width, width, 3, padding=dilation, dilation=dilation)
        self.norm = nn.BatchNorm1d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.norm(self.conv(x)))


def _stats(x: torch.Tensor) -> torch.Tensor:
    """Mean and standard deviation over time: ``(batch, ch, frames)`` -> ``(batch, 2 * ch)``."""
    var, mean = torch.var_mean(x, dim=-1, correction=0)
    return torch.cat([mean, var.add(1e-6).sqrt()], dim=-1)


class StyleEncoder(nn.Module):
    """Shared trunk over log-mel frames, separate mid and side heads, L2-normalised outputs.

    The trunk is a strided 1-D convolution then residual dilated 1-D convolutions over time with the mel
    bands as channels
    (spectral envelope, dynamics and decay are what production style changes, not pitch patterns);
    statistics pooling (mean, deviation) of both the trunk output and the input bands feeds each head.
    """

    def __init__(self, config: EncoderConfig = EncoderConfig()) -> None:
        super().__init__()
        self.config = config
        c = config
        # stride 2: the trunk runs at 42.7 ms per frame (half the cost; decay and dynamics survive it)
        self.inp = nn.Sequential(nn.Conv1d(c.n_mels, c.width, 3, stride=2, padding=1), nn.BatchNorm1d(c.width),
                                 nn.ReLU())
        self.blocks = nn.Sequential(*[_Block(c.width, d) for d in c.dilations])
        pooled = 2 * c.width + 2 * c.n_mels
        self.mid_head = nn.Sequential(nn.Linear(pooled, 2 * c.dim), nn.ReLU(), nn.Linear(2 * c.dim, c.dim))
        self.side_head = nn.Sequential(nn.Linear(pooled, 2 * c.dim), nn.ReLU(), nn.Linear(2 * c.dim, c.dim))

    def trunk(self, mel: torch.Tensor) -> torch.Tensor:
        """Pooled trunk features: ``(batch, frames, n_mels)`` -> ``(batch, 2 * width + 2 * n_mels)``."""
        x = mel.transpose(1, 2)
        h = self.blocks(self.inp(x))
        return torch.cat([_stats(h), _stats(x)], dim=-1)

    def forward(self, mid: torch.Tensor, side: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed mid and side log-mel frames.

        Args:
            mid: ``(batch, frames, n_mels)`` float32 log-mel of the mid signal.
            side: Same for the side signal.

        Returns:
            ``(batch, dim)`` mid and side embeddings, each row L2-normalised.
        """
        b = mid.shape[0]
        pooled = self.trunk(torch.cat([mid, side], dim=0))
        zm = self.mid_head(pooled[:b])
        zs = self.side_head(pooled[b:])
        return nn.functional.normalize(zm, dim=-1), nn.functional.normalize(zs, dim=-1)


def random_encoder(seed: int = 0, config: EncoderConfig = EncoderConfig()) -> StyleEncoder:
    """A randomly initialised encoder (the benchmark's sanity floor), in eval mode, seeded."""
    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = StyleEncoder(config)
    finally:
        torch.random.set_rng_state(gen_state)  # leave the caller's torch RNG as it was
    return model.eval()
