"""Same-performance detection: is the reference the input's own performance, processed, and at what lag?"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..audio import Audio, resample
from ..resources import package_dir
from .restraint import Floors

ALIGNMENT_FILE = "alignment.json"  # in the package's models folder, written by `stito train alignment`
FRAME_S = 0.01  # frame hop of the band envelopes, in seconds
MAX_LAG_S = 0.5  # the reference may start this much before or after the input
ANALYSIS_S = 60.0  # seconds of each file compared (from their beginnings)
BAND_EDGES_HZ = (50, 100, 200, 400, 800, 1600, 3200, 6400, 12800)  # octave bands of the onset envelope
ACTIVE_RANGE_DB = 50.0  # a band or a frequency quieter than the loudest by more than this is not compared
COHERENCE_S = 10.0  # seconds of the aligned waveforms whose coherence is measured
COHERENCE_BAND_HZ = (60.0, 12000.0)


@dataclass(frozen=True)
class Alignment:
    """How a reference lines up with the input in time, and whether it is the input's own performance.

    Attributes:
        lag_s: Seconds to add to a time in the input to find the same moment in the reference.
        onset_score: Peak correlation of the two onset envelopes over lags within ``MAX_LAG_S`` (-1..1): where
            the lag comes from (a loop or a steady beat of another clip scores high too).
        coherence: At that lag, the median over the input's active frequencies of the magnitude-squared coherence
            of the two waveforms (0..1): the share of the reference that is a filtered copy of the input. An EQ
            keeps it at 1, a compressor or a reverb high; another moment or another recording, even with the same
            beat, near 0.
        same_performance: ``coherence`` is above the threshold.
        threshold: The coherence threshold applied; None when there is none (nothing is detected).
    """

    lag_s: float
    onset_score: float
    coherence: float
    same_performance: bool
    threshold: float | None

    def line(self) -> str:
        """One line for a console: whether the reference was taken as the input's own performance, and why."""
        if self.same_performance:
            return (f"same performance: the reference is the input's own performance, processed (coherence "
                    f"{self.coherence:.2f} at {self.lag_s * 1000:+.0f} ms); compared moment by moment, no prior")
        if self.threshold is None:
            return "same performance: not looked for (no calibrated threshold)"
        return f"same performance: no (coherence {self.coherence:.2f}, needs above {self.threshold:.2f})"

    def report(self) -> dict[str, Any]:
        """A JSON-serialisable form (the match report's ``same_performance``)."""
        return {"detected": self.same_performance, "line": self.line(), "lag_s": self.lag_s,
                "onset_score": self.onset_score, "coherence": self.coherence, "threshold": self.threshold}


def _calibration() -> dict[str, Any]:
    """The package's ``models/alignment.json`` (threshold and floors), or {} when it has none."""
    path = package_dir("models") / ALIGNMENT_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def load_threshold() -> float | None:
    """The calibrated coherence threshold, or None when the package has none."""
    threshold = _calibration().get("coherence_threshold")
    return None if threshold is None else float(threshold)


def onset_envelope(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """The onset envelope of ``(channels, n)`` audio: positive octave-band level changes (dB, each band floored
    ``ACTIVE_RANGE_DB`` below its loudest frame) summed over bands, every ``FRAME_S`` seconds, ``(frames - 1,)``."""
    mono = np.asarray(x, dtype=np.float64).mean(axis=0)
    hop = int(round(FRAME_S * sample_rate))
    n_fft = 1 << int(np.ceil(np.log2(4 * hop)))
    if mono.size < n_fft:
        mono = np.pad(mono, (0, n_fft - mono.size))
    frames = np.lib.stride_tricks.sliding_window_view(mono, n_fft)[::hop]
    power = np.empty((len(frames), n_fft // 2 + 1))
    window = np.hanning(n_fft)
    for lo in range(0, len(frames), 2048):  # a block of frames at a time (long files)
        power[lo:lo + 2048] = np.abs(np.fft.rfft(frames[lo:lo + 2048] * window, axis=-1)) ** 2
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    edges = [e for e in BAND_EDGES_HZ if e < sample_rate / 2]
    levels = 10 * np.log10(np.stack([power[:, (freqs >= lo) & (freqs < hi)].sum(axis=1)
                                     for lo, hi in zip(edges, edges[1:])]) + 1e-12)
    levels = np.maximum(levels, levels.max(axis=1, keepdims=True) - ACTIVE_RANGE_DB)
    return np.maximum(np.diff(levels, axis=1), 0.0).sum(axis=0)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt(np.sum(a * a) * np.sum(b * b)))
    return float(np.sum(a * b) / den) if den > 0 else 0.0


def _overlap(a: np.ndarray, b: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """The samples of ``a`` (``(n,)``) and of ``b`` ``lag`` samples later that both have."""
    start_a = max(0, -lag)
    n = max(min(a.shape[-1] - start_a, b.shape[-1] - (start_a + lag)), 0)
    return a[start_a:start_a + n], b[start_a + lag:start_a + lag + n]


def _refine(a: np.ndarray, b: np.ndarray, lag: int, radius: int) -> int:
    """The lag in samples within ``radius`` of ``lag`` where two mono waveforms correlate best (either polarity)."""
    lo = radius + max(0, -lag)
    n = min(a.size - lo - radius, b.size - (lo + lag) - radius, 1 << 18)  # about 5 s is plenty
    if n < 1024:
        return lag
    seg, window = a[lo:lo + n], b[lo + lag - radius:lo + lag + radius + n]
    size = 1 << int(np.ceil(np.log2(window.size + seg.size)))
    corr = np.fft.irfft(np.fft.rfft(window, size) * np.conj(np.fft.rfft(seg, size)), size)[:2 * radius + 1]
    return lag - radius + int(np.argmax(np.abs(corr)))


def coherence(a: np.ndarray, b: np.ndarray, sample_rate: int) -> float:
    """Median magnitude-squared coherence of two aligned mono signals over the frequencies (``COHERENCE_BAND_HZ``)
    where ``a`` is within ``ACTIVE_RANGE_DB`` of its loudest (0..1; 0 when they share under a second)."""
    n = min(a.size, b.size, int(COHERENCE_S * sample_rate))
    if n < sample_rate:
        return 0.0
    import scipy.signal  # not at import time: it is most of engine.match's import (0.3-0.7 s)

    nperseg = 1 << int(np.ceil(np.log2(0.046 * sample_rate)))
    freqs, msc = scipy.signal.coherence(a[:n], b[:n], fs=sample_rate, nperseg=nperseg)
    _, power = scipy.signal.welch(a[:n], fs=sample_rate, nperseg=nperseg)
    band = (freqs >= COHERENCE_BAND_HZ[0]) & (freqs <= COHERENCE_BAND_HZ[1]) & (
        power > power.max() * 10 ** (-ACTIVE_RANGE_DB / 10))
    return float(np.median(np.nan_to_num(msc[band]))) if band.any() else 0.0


def align(input_audio: Audio, reference: Audio, threshold: float | None = None) -> Alignment:
    """Whether ``reference`` is ``input_audio``'s own performance, processed, and at what lag.

    The onset envelopes of the two files' first ``ANALYSIS_S`` seconds are cross-correlated over lags within
    ±``MAX_LAG_S``; the lag is refined to the sample on the waveforms; at that lag the waveforms' coherence says how
    much of the reference is a filtered copy of the input. The same performance through an EQ, a compressor, a
    delay or a reverb is coherent; another clip of the same recording, or another recording, is not, even where
    the beat lines up (threshold from ``stito train alignment``).

    Args:
        input_audio: The input, ``(channels, n)``.
        reference: The reference, any rate (resampled to the input's).
        threshold: Coherence above which it is the same performance; None: the calibrated one
            (``models/alignment.json``); without any, nothing is detected.

    Returns:
        The alignment.
    """
    sr = input_audio.sample_rate
    limit = int(ANALYSIS_S * sr)
    x = input_audio.samples[:, :limit]
    ref = reference.samples[:, :int(ANALYSIS_S * reference.sample_rate) + 1]
    if reference.sample_rate != sr:
        ref = resample(ref, reference.sample_rate, sr)
    oa, ob = onset_envelope(x, sr), onset_envelope(ref[:, :limit], sr)
    hop = int(round(FRAME_S * sr))
    best_lag, best = 0, -1.0
    for lag in range(-int(round(MAX_LAG_S / FRAME_S)), int(round(MAX_LAG_S / FRAME_S)) + 1):
        a, b = _overlap(oa, ob, lag)
        if a.size >= 50:  # half a second in common at least
            c = _corr(a, b)
            if c > best:
                best_lag, best = lag, c
    a, b = x.mean(axis=0).astype(np.float64), ref.mean(axis=0).astype(np.float64)
    lag = _refine(a, b, best_lag * hop, 2 * hop)
    score = coherence(*_overlap(a, b, lag), sr)
    threshold = threshold if threshold is not None else load_threshold()
    return Alignment(lag / sr, float(best), score, bool(threshold is not None and score > threshold), threshold)


def load_same_performance_floors() -> Floors:
    """The restraint of a same-performance match (``models/alignment.json``, in ``AlignedScorer``'s units): no prior,
    the level penalty, and the gain and effect floors; without the file, any gain counts."""
    floors = _calibration().get("floors")
    if floors is None:
        return Floors(0.0, 0.0, "same performance: no calibrated floors, any gain counts")
    return Floors(float(floors["gain_floor"]), float(floors["effect_floor"]),
                  f"{ALIGNMENT_FILE}: same-performance floors ({floors['source']})", 0.0, float(floors["level_weight"]))
