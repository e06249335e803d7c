"""Which parts of the input and the reference a match listens to: excerpt choice and clips."""

from __future__ import annotations

import numpy as np

from ..audio import Audio
from .options import MatchOptions
from .render import Clip


def choose_excerpts(x: np.ndarray, sample_rate: int, seconds: float, count: int,
                    rng: np.random.Generator) -> list[int]:
    """Pick ``count`` excerpt start samples from ``(channels, n)`` audio, favouring loud, busy regions.

    The file is split into ``count`` equal zones and, in each, the excerpt with the highest
    RMS among a few random candidates is taken, so excerpts spread over the file and avoid silence.

    Args:
        x: ``(channels, n)`` audio.
        sample_rate: In Hz.
        seconds: Excerpt length, in seconds (clipped to the file length).
        count: Number of excerpts wanted.
        rng: Random generator (explicit seed).

    Returns:
        Start offsets in samples, one per excerpt (fewer if the file is short; repeats avoided).
    """
    n = x.shape[1]
    length = min(int(round(seconds * sample_rate)), n)
    span = n - length
    if span <= 0:
        return [0]
    mono = np.abs(x).mean(axis=0)
    cumsum = np.concatenate([[0.0], np.cumsum(mono.astype(np.float64) ** 2)])
    starts: list[int] = []
    for zone in range(count):
        lo, hi = span * zone // count, span * (zone + 1) // count
        cands = rng.integers(lo, max(hi, lo + 1), size=8)
        energy = cumsum[cands + length] - cumsum[cands]
        starts.append(int(cands[int(np.argmax(energy))]))
    return sorted(set(starts))


ACTIVITY_BLOCK = 1024  # frames whose spectra are held at once


def activity(x: np.ndarray, n_fft: int = 2048, hop: int = 1024, range_db: float = 40.0) -> np.ndarray:
    """Per-frame activity of ``(channels, n)`` audio: how loud and how eventful each frame is.

    Activity is the frame's level above a floor ``range_db`` below the loudest frame (0..1) plus its
    onset strength (positive log-spectral flux, divided by the file's 90th percentile and capped at 1).

    Args:
        x: ``(channels, n)`` audio.
        n_fft: Frame length, in samples.
        hop: Frame hop, in samples.
        range_db: Level range scored, in dB.

    Returns:
        ``(frames,)`` float64 activity in [0, 2]; frame ``i`` starts at sample ``i * hop``.
    """
    mono = np.asarray(x, dtype=np.float32).mean(axis=0)
    if mono.size < n_fft:
        mono = np.pad(mono, (0, n_fft - mono.size))
    frames = np.lib.stride_tricks.sliding_window_view(mono, n_fft)[::hop]
    window = np.hanning(n_fft).astype(np.float32)
    level, flux = np.empty(len(frames)), np.zeros(len(frames))
    previous = None  # the last frame's log spectrum, for the flux across a block boundary
    for start in range(0, len(frames), ACTIVITY_BLOCK):  # spectra a block of frames at a time (long files)
        mag = np.abs(np.fft.rfft(frames[start:start + ACTIVITY_BLOCK] * window, axis=-1))
        level[start:start + len(mag)] = 10 * np.log10(np.mean(mag ** 2, axis=-1) + 1e-12)
        logmag = np.log10(mag + 1e-6)
        if previous is not None:
            logmag = np.concatenate([previous, logmag])
        flux[max(start, 1):start + len(mag)] = np.maximum(np.diff(logmag, axis=0), 0.0).mean(axis=-1)
        previous = logmag[-1:]
    loud = np.clip((level - (level.max() - range_db)) / range_db, 0.0, 1.0)
    scale = max(float(np.percentile(flux, 90)), 1e-9)
    return loud + np.minimum(flux / scale, 1.0)


def content_excerpts(x: np.ndarray, sample_rate: int, seconds: float, count: int, hop: int = 1024) -> list[int]:
    """Pick ``count`` excerpt starts by content: deterministic, one per zone of the file, the most active there.

    The possible starts are split into ``count`` equal zones; in each, the excerpt with the highest mean
    ``activity`` (loud and eventful: transients for dynamics, their decays for reverb) is taken, so
    excerpts spread over the file, avoid silence and do not depend on a random draw.

    Args:
        x: ``(channels, n)`` audio.
        sample_rate: In Hz.
        seconds: Excerpt length, in seconds (clipped to the file length).
        count: Number of excerpts wanted.
        hop: Spacing of the candidate starts, in samples.

    Returns:
        Start offsets in samples, ascending, in zone order (fewer if the file is too short for distinct ones).
    """
    n = x.shape[1]
    length = min(int(round(seconds * sample_rate)), n)
    span = n - length
    if span <= 0 or count < 1:
        return [0]
    act = activity(x, hop=hop)
    win = max(1, length // hop)
    csum = np.concatenate([[0.0], np.cumsum(act)])
    n_starts = span // hop + 1
    ends = np.minimum(np.arange(n_starts) + win, act.size)
    score = (csum[ends] - csum[np.minimum(np.arange(n_starts), act.size)]) / win
    starts: list[int] = []
    for zone in range(count):
        lo, hi = n_starts * zone // count, max(n_starts * (zone + 1) // count, n_starts * zone // count + 1)
        starts.append(int(lo + np.argmax(score[lo:hi])) * hop)
    return sorted(set(starts))


def excerpt_clips(audio: Audio, starts: list[int], seconds: float, preroll_s: float) -> list[Clip]:
    """Clips of ``audio`` starting at ``starts`` (samples), ``seconds`` long, each with up to ``preroll_s`` before it."""
    n = min(int(round(seconds * audio.sample_rate)), audio.samples.shape[1])
    pre = int(round(preroll_s * audio.sample_rate))
    clips = []
    for s in starts:
        p = min(pre, s)
        clips.append(Clip(audio.samples[:, s - p:s + n], p, s))
    return clips


def plan_excerpts(input_audio: Audio, reference: Audio, opts: MatchOptions,
                  rng: np.random.Generator) -> tuple[list[Clip], list[Clip], list[Clip]]:
    """Analysis and validation clips of the input and the reference's windows (``opts.excerpt_choice``).

    Returns:
        (analysis, validation, reference) clips; input clips carry ``opts.preroll_seconds`` of pre-roll.
    """
    x, sr, secs = input_audio.samples, input_audio.sample_rate, opts.excerpt_seconds
    if opts.excerpt_choice == "random":
        ana = choose_excerpts(x, sr, secs, opts.excerpts, rng)
        val = choose_excerpts(x, sr, secs, opts.validation_excerpts, rng)
    else:
        starts = content_excerpts(x, sr, secs, opts.excerpts + opts.validation_excerpts)
        # analysis zones centred in equal parts of the file (one excerpt: the middle), validation takes the
        # others (disjoint when possible)
        k = min(opts.excerpts, len(starts))
        pick = sorted({int(np.floor((i + 0.5) * len(starts) / k)) for i in range(k)})
        ana = [starts[i] for i in pick]
        val = [s for i, s in enumerate(starts) if i not in pick] or ana
    return (excerpt_clips(input_audio, ana, secs, opts.preroll_seconds), excerpt_clips(input_audio, val, secs, opts.preroll_seconds),
            reference_clips(reference, opts, rng))


def reference_clips(reference: Audio, opts: MatchOptions, rng: np.random.Generator) -> list[Clip]:
    """A reference's windows (``opts.reference_windows``, by ``opts.excerpt_choice``; random ones drawn from
    ``rng``), without pre-roll."""
    r, r_sr, secs = reference.samples, reference.sample_rate, opts.excerpt_seconds
    if opts.excerpt_choice == "random":
        starts = choose_excerpts(r, r_sr, secs, opts.reference_windows, rng)
    else:
        starts = content_excerpts(r, r_sr, secs, opts.reference_windows)
    return excerpt_clips(reference, starts, secs, 0.0)
