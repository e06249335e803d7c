"""BlendMetric: several style metrics as one, scoring the mean of their cosine similarities."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import StitoError
from .base import Embedding, StyleMetric


class BlendMetric(StyleMetric):
    """Metrics side by side: each part's L2-normalised embedding scaled by ``1/sqrt(k)`` and concatenated.

    The concatenation has unit norm, so its cosine similarity to another blend is the mean of the parts'
    similarities (e.g. "afx+mfcc": the learned encoder's view of dynamics and distortion beside MFCC's of the
    spectral envelope). A window mean (``Embedding.mean``) re-normalises the whole row, which keeps the parts'
    weights equal to within how far their means shrink.
    """

    def __init__(self, parts: Sequence[StyleMetric]) -> None:
        """
        Args:
            parts: Two or more metrics, each used as it is.

        Raises:
            ValueError: fewer than two parts.
        """
        if len(parts) < 2:
            raise ValueError(f"a blend needs at least two metrics, got {len(parts)}")
        deltas = [p.name for p in parts if p.delta]
        if deltas:
            raise StitoError(f"metric {deltas[0]!r} compares processing deltas, not embeddings, and cannot be "
                             "blended; use it on its own")
        self.parts = list(parts)
        self.name = "+".join(p.name for p in self.parts)
        self.sample_rate = self.parts[0].sample_rate

    def embed(self, audio: np.ndarray, sample_rate: int) -> Embedding:
        """Embed a batch of ``(batch, channels, samples)`` float32 clips with every part.

        Returns:
            ``(batch, sum of the parts' dims)`` mid and side rows, unit norm.
        """
        w = np.float32(1.0 / np.sqrt(len(self.parts)))
        embs = [p.embed(audio, sample_rate) for p in self.parts]
        return Embedding(np.concatenate([e.mid * w for e in embs], axis=-1),
                         np.concatenate([e.side * w for e in embs], axis=-1))
