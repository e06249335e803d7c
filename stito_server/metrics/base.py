"""StyleMetric: the interface every production-style embedding implements, and the metric registry."""

from __future__ import annotations

from abc import ABC
from dataclasses import dataclass

import numpy as np

from ..audio import mid_side, resample
from ..errors import StitoError, did_you_mean

PEAK_FLOOR = 1e-8
# The metric `stito match` and `stito-server` use when none is named (see models/README.md for why).
DEFAULT_METRIC = "mfcc"


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


def metric_names() -> list[str]:
    """Names accepted by ``get_metric``."""
    return ["afx", "mfcc", "mir", "random"]


def get_metric(name: str, device: str = "cpu") -> StyleMetric:
    """Create a style metric by name.

    Args:
        name: One of ``metric_names()``: "afx" (the learned encoder, shipped in models/), "mfcc" (the
            paper's DSP baseline), "mir" (loudness/crest/band/centroid features), "random" (the encoder's
            architecture, randomly initialised with seed 0: the benchmark's sanity floor); or
            "afx:PATH", an encoder file written by `stito train export` (to benchmark a candidate before
            shipping it; the metric is named after the file, e.g. "afx-rep-1a2b3c4d"); or names joined by
            "+", e.g. "afx+mfcc": a ``BlendMetric`` scoring the mean of their similarities.
        device: "cpu" or "cuda" (for learned metrics).

    Raises:
        StitoError: unknown name (the message lists the valid ones), or a blend naming a metric twice.
    """
    if "+" in name:
        from .blend import BlendMetric

        names = name.split("+")
        if len(set(names)) != len(names) or "" in names:
            raise StitoError(f"metric {name!r}: a blend joins different metric names with '+', e.g. afx+mfcc")
        return BlendMetric([get_metric(n, device) for n in names])
    if name == "mfcc":
        from .mfcc import MFCCMetric

        return MFCCMetric()
    if name == "mir":
        from .mir import MIRMetric

        return MIRMetric()
    if name == "afx" or name.startswith("afx:"):
        from pathlib import Path

        from ..encoder.weights import load_encoder, shipped_weights
        from .afx import EncoderMetric

        if name == "afx":
            return EncoderMetric(load_encoder(shipped_weights(), device), "afx", device)
        path = Path(name[4:]).expanduser()
        return EncoderMetric(load_encoder(path, device), path.stem, device)
    if name == "random":
        from ..encoder.model import random_encoder
        from .afx import EncoderMetric

        return EncoderMetric(random_encoder(seed=0), "random", device)
    raise StitoError(f"unknown metric {name!r}; " + did_you_mean(name, metric_names())
                     + " (or afx:PATH, or names joined by '+')")
