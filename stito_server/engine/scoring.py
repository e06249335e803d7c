"""The match objective: candidates rendered on clips and scored against the reference embedding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..audio import Audio, mid_side
from ..errors import StitoError
from ..metrics.base import Embedding, StyleMetric
from .excerpts import plan_excerpts, reference_clips
from .options import MatchOptions
from .render import Clip, ProcessRenderer, Renderer

SIDE_FLOOR_DB = -40.0  # side below mid by more than this counts as mono (side similarity ignored)
WINDOW_CHUNK = 8  # windows embedded at once by window_embeddings


def uses_side(*audios: np.ndarray) -> bool:
    """True when every ``(channels, n)`` signal is stereo with a side channel above ``SIDE_FLOOR_DB``."""
    for x in audios:
        if x.shape[0] < 2:
            return False
        mid, side = mid_side(x)
        rms_m, rms_s = float(np.sqrt(np.mean(mid ** 2))), float(np.sqrt(np.mean(side ** 2)))
        if rms_s <= rms_m * 10 ** (SIDE_FLOOR_DB / 20):
            return False
    return True


class Scorer:
    """Renders candidates on a set of clips and scores them against the reference embedding.

    Beside the similarity, each call measures every candidate's level change: the energy of its renders over
    the energy of the unprocessed clips, in dB (``last_levels_db``; what the level-blind metric cannot see).
    """

    def __init__(self, renderer: Renderer | ProcessRenderer, metric: StyleMetric, ref: Embedding, clips: list[Clip],
                 sample_rate: int, use_side: bool, pipeline: bool) -> None:
        self.renderer, self.metric, self.ref = renderer, metric, ref
        self.clips, self.sample_rate, self.use_side, self.pipeline = clips, sample_rate, use_side, pipeline
        self.errors: list[str] = []
        self.last_errors: list[str | None] = []
        self.last_levels_db = np.zeros(0)
        self._dry_energy = max(float(np.mean([np.mean(np.square(c.audio[:, c.preroll:], dtype=np.float64))
                                              for c in clips])), 1e-20)

    def _embed(self, audio: np.ndarray) -> tuple[Embedding, np.ndarray]:
        """``(rows, clips, channels, n)`` renders -> ``rows * clips`` embeddings and ``(rows,)`` energies."""
        energy = np.mean(np.square(audio, dtype=np.float64), axis=(1, 2, 3))
        return self.metric.embed(audio.reshape(-1, *audio.shape[2:]), self.sample_rate), energy

    def __call__(self, xs: np.ndarray) -> np.ndarray:
        """Mean similarity over the clips of each row of ``xs`` (NaN where it failed to render).

        Identical rows render once (the finalists often repeat: the best of the run is the last generation's).
        ``last_errors`` holds this call's error per row (None where it rendered), ``last_levels_db`` its level
        change per row (dB, renders over the unprocessed clips).
        """
        xs = np.atleast_2d(xs)
        _, first, inverse = np.unique(xs, axis=0, return_index=True, return_inverse=True)
        keep = np.sort(first)  # unique rows, rendered in their original order
        uniq = xs[keep]
        if self.pipeline:
            blocks, errors = self.renderer.render_map(uniq, self.clips, self.sample_rate, self._embed)
            emb = self._join([b for b, _ in blocks])
            energy = np.concatenate([e for _, e in blocks])
        else:
            audio, errors = self.renderer.render(uniq, self.clips, self.sample_rate)
            emb, energy = self._embed(audio)
        sims = self._similarities(emb, len(uniq))
        for i, e in enumerate(errors):
            if e is not None:
                sims[i] = np.nan
                self.errors.append(e)
        row = np.searchsorted(keep, first[inverse.ravel()])  # each row's index in ``uniq``
        self.last_errors = [errors[i] for i in row]
        self.last_levels_db = 10 * np.log10(np.maximum(energy, 1e-30) / self._dry_energy)[row]
        return sims[row]

    def _join(self, parts: list[Embedding]) -> Embedding:
        """The embeddings of blocks of renders, as one."""
        return Embedding(np.concatenate([b.mid for b in parts]), np.concatenate([b.side for b in parts]))

    def _similarities(self, emb: Embedding, rows: int) -> np.ndarray:
        """``(rows,)`` mean similarities over the clips of ``rows * clips`` embeddings."""
        ref = self.ref if len(self.ref) == 1 else Embedding(np.tile(self.ref.mid, (rows, 1)),
                                                          np.tile(self.ref.side, (rows, 1)))
        return self.metric.similarity(emb, ref, self.use_side).reshape(rows, len(self.clips)).mean(axis=1)

    def dry(self) -> float:
        """Similarity of the unprocessed clips."""
        audio = np.stack([c.audio[:, c.preroll:] for c in self.clips])
        emb = self.metric.embed(audio, self.sample_rate)
        return float(self.metric.similarity(emb, self.ref, self.use_side).mean())


def window_embeddings(outputs: np.ndarray | list[np.ndarray], metric: StyleMetric, sample_rate: int,
                      seconds: float) -> list[Embedding]:
    """Each audio's embedding averaged over its consecutive windows (one window if shorter than ``seconds``).

    Args:
        outputs: ``(k, channels, n)`` audio, or ``k`` arrays ``(channels, n)`` of one shape.
        metric: The metric to embed with.
        sample_rate: In Hz.
        seconds: Window length, in seconds.

    Returns:
        ``k`` mean embeddings.
    """
    k, n = len(outputs), outputs[0].shape[-1]
    length = min(int(round(seconds * sample_rate)), n)
    w = n // length
    out = []
    for i in range(k):
        audio = outputs[i]
        # a few windows at a time, sliced out of the audio (no reshaped copy of it): a long file's embedding costs
        # a few windows' memory, not the file's many times
        parts = [metric.embed(np.stack([audio[:, s * length:(s + 1) * length]
                                        for s in range(j, min(j + WINDOW_CHUNK, w))]), sample_rate)
                 for j in range(0, w, WINDOW_CHUNK)]
        out.append(metric.average(Embedding(np.concatenate([e.mid for e in parts]),
                                            np.concatenate([e.side for e in parts]))))
    return out


def whole_similarity(outputs: np.ndarray | list[np.ndarray], metric: StyleMetric, ref: Embedding, sample_rate: int,
                     seconds: float, use_side: bool) -> np.ndarray:
    """Similarity of whole renders to the reference, each embedded over consecutive windows (``window_embeddings``).

    Args:
        outputs: ``(k, channels, n)`` renders of the whole input, or ``k`` arrays ``(channels, n)``.
        metric: The match's metric.
        ref: The reference embedding.
        sample_rate: In Hz.
        seconds: Window length, in seconds (the excerpts' length, so the scores compare).
        use_side: Average in the side similarity.

    Returns:
        ``(k,)`` similarities.
    """
    means = window_embeddings(outputs, metric, sample_rate, seconds)
    return np.array([float(metric.similarity(e, ref, use_side)[0]) for e in means])


@dataclass(frozen=True)
class Target:
    """What renders are compared with: the reference's embedding, or, for a delta metric, per-excerpt targets
    (each unprocessed excerpt's embedding plus the reference's estimated processing, ``StyleMetric.targets``).

    Attributes:
        metric: The match's metric.
        reference: The reference's mean embedding over its windows.
        input_mean: The input's mean embedding over its analysis and validation excerpts (delta metrics only).
        sample_rate: Of the input, in Hz.
        reference_prior: ``MatchOptions.reference_prior`` (None: the metric's own).
        references: Each reference's own mean embedding (``reference`` is their mean, each reference weighted
            alike, when there are several).
    """

    metric: StyleMetric
    reference: Embedding
    input_mean: Embedding | None
    sample_rate: int
    reference_prior: float | None = None
    references: tuple[Embedding, ...] = ()

    def for_clips(self, clips: list[Clip]) -> Embedding:
        """The target of renders of ``clips`` (one row, or one per clip)."""
        if not self.metric.delta:
            return self.reference
        dry = self.metric.embed(np.stack([c.audio[:, c.preroll:] for c in clips]), self.sample_rate)
        return self.metric.targets(self.reference, self.input_mean, dry, self.reference_prior)

    def for_whole(self, audio: np.ndarray, seconds: float) -> Embedding:
        """The target of whole renders of ``audio`` ``(channels, n)``, embedded over windows of ``seconds``."""
        if not self.metric.delta:
            return self.reference
        dry = window_embeddings(audio[None], self.metric, self.sample_rate, seconds)[0]
        return self.metric.targets(self.reference, self.input_mean, dry, self.reference_prior)


def objective_parts(input_audio: Audio, reference: Audio | Sequence[Audio], metric: StyleMetric,
                    opts: MatchOptions) -> tuple[list[Clip], list[Clip], Target, bool]:
    """What the match objective is made of: analysis and validation clips, the target (the reference embedding,
    the mean over its windows; with several references, the mean of theirs, each weighted alike: they share their
    processing, not their content) and whether the side counts; excerpts drawn with ``opts.optimizer.seed``."""
    refs = as_references(reference)
    rng = np.random.default_rng(opts.optimizer.seed)
    analysis, validation, first_clips = plan_excerpts(input_audio, refs[0], opts, rng)
    per_ref = []
    for ref, ref_clips in zip(refs, [first_clips] + [reference_clips(r, opts, rng) for r in refs[1:]]):
        per_ref.append(metric.average(metric.embed(np.stack([c.audio for c in ref_clips]), ref.sample_rate)))
    ref_emb = per_ref[0] if len(per_ref) == 1 else metric.average(
        Embedding(np.concatenate([e.mid for e in per_ref]), np.concatenate([e.side for e in per_ref])))
    input_mean = None
    if metric.delta:
        clips = analysis + validation
        input_mean = metric.average(metric.embed(np.stack([c.audio[:, c.preroll:] for c in clips]),
                                                 input_audio.sample_rate))
    target = Target(metric, ref_emb, input_mean, input_audio.sample_rate, opts.reference_prior, tuple(per_ref))
    return analysis, validation, target, uses_side(input_audio.samples, *(r.samples for r in refs))


def as_references(reference: Audio | Sequence[Audio]) -> list[Audio]:
    """One reference or several, as a list (at least one)."""
    refs = [reference] if isinstance(reference, Audio) else list(reference)
    if not refs:
        raise StitoError("give at least one reference")
    return refs


def rendered_seconds(clips: list[Clip], sample_rate: int) -> float:
    """Seconds of audio the clips hold (pre-roll included): the cost of rendering a candidate on them."""
    return sum(c.audio.shape[1] for c in clips) / sample_rate
