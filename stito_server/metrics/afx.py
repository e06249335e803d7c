"""AFx-Rep metric: the learned production-style encoder (shipped weights), or its random-init sanity floor."""

from __future__ import annotations

import numpy as np
import torch

from .encoder import FrontEnd, StyleEncoder
from .base import StyleMetric


class EncoderMetric(StyleMetric):
    """A ``StyleEncoder`` as a style metric: log-mel front end, mid/side heads, batched under inference mode."""

    def __init__(self, model: StyleEncoder, name: str, device: str = "cpu", chunk: int = 64) -> None:
        """
        Args:
            model: The encoder (put in eval mode here).
            name: Metric name shown in reports.
            device: torch device of the network.
            chunk: Clips per forward pass (bounds memory).
        """
        self.name = name
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.front = FrontEnd(model.config)
        self.sample_rate = model.config.sample_rate
        self.chunk = chunk

    def embed_pair(self, mid: np.ndarray, side: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Embed mid ``(batch, samples)`` and side (same shape) float32 -> two ``(batch, dim)`` float32 arrays."""
        ms, ss = [], []
        with torch.inference_mode():
            for i in range(0, mid.shape[0], self.chunk):
                mel_m = torch.from_numpy(self.front(mid[i:i + self.chunk])).to(self.device)
                mel_s = torch.from_numpy(self.front(side[i:i + self.chunk])).to(self.device)
                zm, zs = self.model(mel_m, mel_s)
                ms.append(zm.float().cpu().numpy())
                ss.append(zs.float().cpu().numpy())
        return np.concatenate(ms), np.concatenate(ss)
