"""The full-reference objective of a same-performance match: each render against the reference at the same moment."""

from __future__ import annotations

import numpy as np

from ..metrics.logmel import mel_filterbank
from .render import Clip, ProcessRenderer, Renderer
from .scoring import Scorer

N_MELS = 64
RANGE_DB = 60.0  # bands further below the clip's mean power than this count as this far (noise is not compared)
FRAME_BLOCK = 2048  # frames whose spectra are held at once
UNITS_DB = 10.0  # similarity units: -1 is a mean log-mel difference of 10 dB


class LevelMel:
    """Level-normalised log-mel frames of the mid signal: the spectral shape over time, blind to overall level.

    Args:
        sample_rate: In Hz.
    """

    def __init__(self, sample_rate: int) -> None:
        self.n_fft = 1 << int(np.ceil(np.log2(0.046 * sample_rate)))
        self.hop = self.n_fft // 2
        self.fb = mel_filterbank(sample_rate, self.n_fft, N_MELS, 40.0, min(16000.0, sample_rate / 2)).T
        self.window = np.hanning(self.n_fft).astype(np.float32)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """``(batch, channels, n)`` audio -> ``(batch, frames, N_MELS)`` float32 levels in dB against each item's
        mean band power, floored at -``RANGE_DB``."""
        mono = np.asarray(audio, dtype=np.float32).mean(axis=1)
        if mono.shape[-1] < self.n_fft:
            mono = np.pad(mono, [(0, 0), (0, self.n_fft - mono.shape[-1])])
        frames = np.lib.stride_tricks.sliding_window_view(mono, self.n_fft, axis=-1)[:, ::self.hop]
        out = np.empty((mono.shape[0], frames.shape[1], N_MELS), dtype=np.float32)
        for i in range(mono.shape[0]):  # one item, and a block of frames, at a time: a whole file's spectra are large
            mel = np.concatenate([np.abs(np.fft.rfft(frames[i, lo:lo + FRAME_BLOCK] * self.window, axis=-1)) ** 2
                                  @ self.fb for lo in range(0, frames.shape[1], FRAME_BLOCK)])
            level = 10 * np.log10(np.maximum(mel, 1e-20))
            mean = 10 * np.log10(max(float(np.mean(mel)), 1e-20))
            out[i] = np.maximum(level - mean, -RANGE_DB)
        return out


def aligned_window(reference: np.ndarray, start: int, n: int) -> np.ndarray:
    """``reference[:, start:start + n]`` with silence where it reaches outside the reference, ``(channels, n)``."""
    out = np.zeros((reference.shape[0], n), dtype=np.float32)
    lo, hi = max(start, 0), min(start + n, reference.shape[1])
    if hi > lo:
        out[:, lo - start:hi - start] = reference[:, lo:hi]
    return out


class AlignedScorer(Scorer):
    """Renders candidates on clips and scores each against the reference's own window at the same moment.

    For a reference that is the input's own performance, processed (``engine/alignment.py``), nothing of another
    recording's content is there to fit, so the renders are compared frame by frame: the similarity is minus the
    mean absolute difference of their level-normalised log-mel frames (``LevelMel``), in units of ``UNITS_DB``.
    The level change is measured as ``Scorer`` does (the comparison is level-blind).

    Args:
        renderer: Renders candidates.
        clips: The input's clips (their ``start`` says where each lies in the input).
        sample_rate: Of the input, in Hz.
        reference: The reference at the input's rate, ``(channels, m)``.
        lag: Samples to add to an input position to find the same moment in the reference.
        pipeline: Embed each block of renders as soon as it is rendered.
    """

    def __init__(self, renderer: Renderer | ProcessRenderer, clips: list[Clip], sample_rate: int,
                 reference: np.ndarray, lag: int, pipeline: bool) -> None:
        super().__init__(renderer, None, None, clips, sample_rate, False, pipeline)  # type: ignore[arg-type]
        self.features = LevelMel(sample_rate)
        self.reference, self.lag = reference, lag
        n = clips[0].audio.shape[1] - clips[0].preroll
        self.targets = self.features(np.stack([aligned_window(reference, c.start + lag, n) for c in clips]))
        self._whole_target: np.ndarray | None = None  # the whole reference's levels, once a whole render is scored

    def _embed(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[override]
        """``(rows, clips, channels, n)`` renders -> ``(rows * clips, frames, N_MELS)`` levels and ``(rows,)``
        energies."""
        energy = np.mean(np.square(audio, dtype=np.float64), axis=(1, 2, 3))
        return self.features(audio.reshape(-1, *audio.shape[2:])), energy

    def _join(self, parts: list[np.ndarray]) -> np.ndarray:  # type: ignore[override]
        return np.concatenate(parts)

    def _similarities(self, emb: np.ndarray, rows: int) -> np.ndarray:  # type: ignore[override]
        diff = np.abs(emb.reshape(rows, len(self.clips), *emb.shape[1:]) - self.targets[None])
        return -diff.mean(axis=(1, 2, 3)) / UNITS_DB

    def dry(self) -> float:
        """Similarity of the unprocessed clips."""
        audio = np.stack([c.audio[:, c.preroll:] for c in self.clips])
        return float(self._similarities(self.features(audio), 1)[0])

    def whole(self, render: np.ndarray) -> float:
        """Similarity of a whole render ``(channels, n)`` of the input to the whole reference, aligned."""
        levels = self.features(render[None])
        if self._whole_target is None or self._whole_target.shape != levels.shape:  # the start's and the match's
            self._whole_target = self.features(aligned_window(self.reference, self.lag, render.shape[1])[None])
        return -float(np.mean(np.abs(levels - self._whole_target))) / UNITS_DB
