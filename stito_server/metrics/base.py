"""StyleMetric: the interface every production-style embedding implements, and the Embedding it returns."""

from __future__ import annotations

from abc import ABC
from dataclasses import dataclass

import numpy as np

from ..audio import mid_side, resample

PEAK_FLOOR = 1e-8


@dataclass(frozen=True)
class Embedding:
    """Mid and side embeddings of a batch of clips, each row L2-normalised.

    Attributes:
        mid: ``(batch, dim)`` float32.
        side: ``(batch, dim)`` float32.
    """

    mid: np.ndarray
    side: np.ndarray

    def __len__(self) -> int:
        return int(self.mid.shape[0])

    def mean(self) -> "Embedding":
        """One embedding averaging the batch (re-normalised), e.g. over several windows of one file."""
        return Embedding(_l2(self.mid.mean(axis=0, keepdims=True)), _l2(self.side.mean(axis=0, keepdims=True)))


def normalized_mid_side(audio: np.ndarray, sample_rate: int, target_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """What every metric embeds: each clip peak-normalised (level alone is not style), resampled, mid and side.

    Args:
        audio: ``(batch, channels, samples)`` float32, channels 1 or 2 (mono has a zero side).
        sample_rate: Rate of ``audio``, in Hz.
        target_rate: Rate of the result, in Hz.

    Returns:
        Mid and side, each ``(batch, samples)`` float32 at ``target_rate``.
    """
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"embed takes (batch, channels, samples) audio, got shape {x.shape}")
    peak = np.maximum(np.abs(x).max(axis=(1, 2), keepdims=True), PEAK_FLOOR)
    return mid_side(resample(x / peak, sample_rate, target_rate))


def _l2(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


class StyleMetric(ABC):
    """A production-style embedding: audio in, mid/side embeddings out, cosine similarity between them.

    Subclasses implement ``embed_mid_side`` (one function for mid and side alike) or, when mid and side
    need different treatment (separate heads), ``embed_pair``. ``embed`` peak-normalises each clip (so level
    alone does not count as style), splits mid and side and resamples to ``sample_rate``.
    """

    name: str
    sample_rate: int
    # True for a metric that compares processing deltas (``targets``) rather than the reference's embedding
    delta: bool = False

    def distance(self, similarity: float) -> float:
        """How far a similarity is from a perfect match (0): 1 - cosine."""
        return max(1.0 - float(similarity), 0.0)

    def average(self, emb: Embedding) -> Embedding:
        """One embedding for a batch (e.g. a file's windows): the re-normalised mean."""
        return emb.mean()

    def targets(self, reference: Embedding, input_mean: Embedding, dry: Embedding,
                reference_prior: float | None = None) -> Embedding:
        """What renders of excerpts are compared with: the reference's embedding (a delta metric: one target
        per excerpt, from the unprocessed excerpts ``dry``, the input's mean ``input_mean`` and, between 0 and 1,
        how far the reference's own content is taken as an average recording's rather than the input's)."""
        return reference

    def embed_mid_side(self, signals: np.ndarray) -> np.ndarray:
        """Embed mono signals (mid and side alike).

        Args:
            signals: ``(batch, samples)`` float32 at ``self.sample_rate``.

        Returns:
            ``(batch, dim)`` float32 embeddings (not necessarily normalised).
        """
        raise NotImplementedError(f"{type(self).__name__} implements neither embed_mid_side nor embed_pair")

    def embed_pair(self, mid: np.ndarray, side: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Embed mid and side signals.

        Args:
            mid: ``(batch, samples)`` float32 at ``self.sample_rate``.
            side: Same shape.

        Returns:
            ``(batch, dim)`` float32 mid and side embeddings (not necessarily normalised).
        """
        both = self.embed_mid_side(np.concatenate([mid, side], axis=0))
        return both[: mid.shape[0]], both[mid.shape[0]:]

    def embed(self, audio: np.ndarray, sample_rate: int) -> Embedding:
        """Embed a batch of clips.

        Args:
            audio: ``(batch, channels, samples)`` float32, channels 1 or 2 (mono has a zero side).
            sample_rate: Rate of ``audio``, in Hz.

        Returns:
            The batch's mid and side embeddings.
        """
        mid, side = normalized_mid_side(audio, sample_rate, self.sample_rate)
        m, s = self.embed_pair(mid, side)
        return Embedding(_l2(m), _l2(s))

    @staticmethod
    def similarity(a: Embedding, b: Embedding, use_side: bool = True) -> np.ndarray:
        """Cosine similarity, averaged over mid and (if ``use_side``) side.

        Args:
            a: Batch of embeddings, ``len(a)`` rows.
            b: One embedding (broadcast) or ``len(a)`` rows.
            use_side: Average in the side similarity; False for mono material.

        Returns:
            ``(len(a),)`` float64 similarities in [-1, 1].
        """
        sim = np.sum(a.mid * b.mid, axis=-1, dtype=np.float64)
        if use_side:
            sim = 0.5 * (sim + np.sum(a.side * b.side, axis=-1, dtype=np.float64))
        return sim
