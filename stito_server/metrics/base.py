"""StyleMetric: the interface every production-style embedding implements, and the metric registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from ..audio import mid_side, resample
from ..errors import StitoError, did_you_mean

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


def _l2(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


class StyleMetric(ABC):
    """A production-style embedding: audio in, mid/side embeddings out, cosine similarity between them.

    Subclasses implement ``embed_mid_side``; ``embed`` peak-normalises each clip (so level alone does
    not count as style), splits mid and side and resamples to ``sample_rate``.
    """

    name: str
    sample_rate: int

    @abstractmethod
    def embed_mid_side(self, signals: np.ndarray) -> np.ndarray:
        """Embed mono signals.

        Args:
            signals: ``(batch, samples)`` float32 at ``self.sample_rate``.

        Returns:
            ``(batch, dim)`` float32 embeddings (not necessarily normalised).
        """

    def embed(self, audio: np.ndarray, sample_rate: int) -> Embedding:
        """Embed a batch of clips.

        Args:
            audio: ``(batch, channels, samples)`` float32, channels 1 or 2 (mono has a zero side).
            sample_rate: Rate of ``audio``, in Hz.

        Returns:
            The batch's mid and side embeddings.
        """
        x = np.asarray(audio, dtype=np.float32)
        if x.ndim != 3:
            raise ValueError(f"embed takes (batch, channels, samples) audio, got shape {x.shape}")
        peak = np.maximum(np.abs(x).max(axis=(1, 2), keepdims=True), PEAK_FLOOR)
        x = resample(x / peak, sample_rate, self.sample_rate)
        mid, side = mid_side(x)
        both = self.embed_mid_side(np.concatenate([mid, side], axis=0))
        b = x.shape[0]
        return Embedding(_l2(both[:b]), _l2(both[b:]))

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


def metric_names() -> list[str]:
    """Names accepted by ``get_metric``."""
    return ["mfcc", "mir"]


def get_metric(name: str, device: str = "cpu") -> StyleMetric:
    """Create a style metric by name.

    Args:
        name: One of ``metric_names()``.
        device: "cpu" or "cuda" (for learned metrics).

    Raises:
        StitoError: unknown name; the message lists the valid ones.
    """
    if name == "mfcc":
        from .mfcc import MFCCMetric

        return MFCCMetric()
    if name == "mir":
        from .mir import MIRMetric

        return MIRMetric()
    raise StitoError(f"unknown metric {name!r}; " + did_you_mean(name, metric_names()))
