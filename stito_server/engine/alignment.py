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
BAND_EDGES_HZ = (50, 100, 200, 400, 800, 1600, 3200, 6400, 12800)  # octave bands of the envelopes
ACTIVE_RANGE_DB = 50.0  # a band quieter than the input's loudest band by more than this is not compared


@dataclass(frozen=True)
class Alignment:
    """How a reference lines up with the input in time, and whether it is the input's own performance.

    Attributes:
        lag_s: Seconds to add to a time in the input to find the same moment in the reference.
        onset_score: Peak correlation of the two onset envelopes over lags within ``MAX_LAG_S`` (-1..1).
        coherence: At that lag, the median over octave bands of the correlation of the two signals' frame-to-frame
            band level changes (-1..1): a static EQ, a compressor or a reverb keeps these moving together;
            another take or another recording does not.
        same_performance: Both scores are above their thresholds.
        thresholds: The ``(onset_score, coherence)`` thresholds applied; None when there are none (nothing is
            detected).
    """

    lag_s: float
    onset_score: float
    coherence: float
    same_performance: bool
    thresholds: tuple[float, float] | None

    def line(self) -> str:
        """One line for a console: whether the reference was taken as the input's own performance, and why."""
        scores = f"onsets {self.onset_score:.2f}, band changes {self.coherence:.2f}"
        if self.same_performance:
            return (f"same performance: the reference is the input's own performance, processed ({scores}, "
                    f"{self.lag_s * 1000:+.0f} ms); compared moment by moment, no prior")
        if self.thresholds is None:
            return "same performance: not looked for (no calibrated thresholds)"
        return (f"same performance: no ({scores}; needs {self.thresholds[0]:.2f} and {self.thresholds[1]:.2f})")

    def report(self) -> dict[str, Any]:
        """A JSON-serialisable form (the match report's ``same_performance``)."""
        return {"detected": self.same_performance, "line": self.line(), "lag_s": self.lag_s,
                "onset_score": self.onset_score,
                "coherence": self.coherence,
                "thresholds": None if self.thresholds is None else list(self.thresholds)}


def load_thresholds() -> tuple[float, float] | None:
    """The calibrated ``(onset_score, coherence)`` thresholds, or None when the package has none."""
    path = package_dir("models") / ALIGNMENT_FILE
    if not path.is_file():
        return None
    entry = json.loads(path.read_text(encoding="utf-8"))
    return float(entry["onset_threshold"]), float(entry["coherence_threshold"])


def band_levels(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Octave-band levels of ``(channels, n)`` audio, in dB, every ``FRAME_S`` seconds.

    Returns:
        ``(bands, frames)`` float64; bands above the Nyquist frequency are left out.
    """
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
    bands = [power[:, (freqs >= lo) & (freqs < hi)].sum(axis=1) for lo, hi in zip(edges, edges[1:])]
    return 10 * np.log10(np.stack(bands) + 1e-12)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt(np.sum(a * a) * np.sum(b * b)))
    return float(np.sum(a * b) / den) if den > 0 else 0.0


def _overlap(a: np.ndarray, b: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """The frames of ``a`` (``(..., n)``) and of ``b`` ``lag`` frames later that both have."""
    start_a = max(0, -lag)
    n = min(a.shape[-1] - start_a, b.shape[-1] - (start_a + lag))
    return a[..., start_a:start_a + max(n, 0)], b[..., start_a + lag:start_a + lag + max(n, 0)]


def _refine(x: np.ndarray, ref: np.ndarray, lag: int, radius: int) -> int:
    """The lag in samples within ``radius`` of ``lag`` where the two waveforms (mono) correlate best."""
    a, b = x.mean(axis=0).astype(np.float64), ref.mean(axis=0).astype(np.float64)
    lo = radius + max(0, -lag)
    n = min(a.size - lo - radius, b.size - (lo + lag) - radius)
    if n < 1024:
        return lag
    n = min(n, 1 << 20)  # about 20 s is plenty
    seg = a[lo:lo + n]
    window = b[lo + lag - radius:lo + lag + radius + n]
    size = 1 << int(np.ceil(np.log2(window.size + seg.size)))
    corr = np.fft.irfft(np.fft.rfft(window, size) * np.conj(np.fft.rfft(seg, size)), size)[:2 * radius + 1]
    return lag - radius + int(np.argmax(corr))


def align(input_audio: Audio, reference: Audio, thresholds: tuple[float, float] | None = None) -> Alignment:
    """Whether ``reference`` is ``input_audio``'s own performance, processed, and at what lag.

    Both files are compared over their first ``ANALYSIS_S`` seconds in octave-band level envelopes: the onset
    envelope (the positive level changes summed over bands) is cross-correlated over lags within ±``MAX_LAG_S``,
    and at the best lag each band's level changes are correlated. Another clip of the same recording, or another
    recording, scores low on both; the same performance through an EQ, a compressor, a delay or a reverb scores
    high on both (thresholds from ``stito train alignment``).

    Args:
        input_audio: The input, ``(channels, n)``.
        reference: The reference, any rate (resampled to the input's).
        thresholds: ``(onset_score, coherence)``; None: the calibrated ones (``models/alignment.json``); without
            any, nothing is detected.

    Returns:
        The alignment.
    """
    sr = input_audio.sample_rate
    limit = int(ANALYSIS_S * sr)
    x = input_audio.samples[:, :limit]
    ref = reference.samples[:, :int(ANALYSIS_S * reference.sample_rate) + 1]
    if reference.sample_rate != sr:
        ref = resample(ref, reference.sample_rate, sr)
    la, lb = band_levels(x, sr), band_levels(ref[:, :limit], sr)
    floor_a = la.max() - ACTIVE_RANGE_DB
    da, db = np.diff(np.maximum(la, floor_a), axis=1), np.diff(np.maximum(lb, lb.max() - ACTIVE_RANGE_DB), axis=1)
    oa, ob = np.maximum(da, 0).sum(axis=0), np.maximum(db, 0).sum(axis=0)
    max_lag = int(round(MAX_LAG_S / FRAME_S))
    best_lag, best = 0, -1.0
    for lag in range(-max_lag, max_lag + 1):
        a, b = _overlap(oa, ob, lag)
        if a.size < 50:  # under half a second in common
            continue
        c = _corr(a, b)
        if c > best:
            best_lag, best = lag, c
    a, b = _overlap(da, db, best_lag)
    active = np.median(la, axis=1) > floor_a  # bands the input has something in
    coherence = float(np.median([_corr(a[k], b[k]) for k in np.flatnonzero(active)])) if active.any() and a.size else 0.0
    thresholds = thresholds if thresholds is not None else load_thresholds()
    detected = thresholds is not None and best > thresholds[0] and coherence > thresholds[1]
    hop = int(round(FRAME_S * sr))
    lag = _refine(x, ref[:, :limit + 2 * hop], best_lag * hop, 2 * hop) if detected else best_lag * hop
    return Alignment(lag / sr, float(best), coherence, bool(detected), thresholds)


def load_same_performance_floors() -> Floors:
    """The restraint of a same-performance match (``models/alignment.json``, in ``AlignedScorer``'s units): no prior,
    the level penalty, and the gain and effect floors; without the file, any gain counts."""
    path = package_dir("models") / ALIGNMENT_FILE
    entry = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    floors = entry.get("floors")
    if floors is None:
        return Floors(0.0, 0.0, "same performance: no calibrated floors, any gain counts")
    return Floors(float(floors["gain_floor"]), float(floors["effect_floor"]),
                  f"{ALIGNMENT_FILE}: same-performance floors ({floors['source']})", 0.0, float(floors["level_weight"]))
