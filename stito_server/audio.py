"""Audio I/O and analysis helpers: load/validate/save, mid/side, excerpt choice, resampling, loudness."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

from .errors import AudioError

SILENCE_DBFS = -70.0
SAVE_CHUNK = 1 << 18  # samples written at a time by save_audio
MAX_CHANNELS = 2


@dataclass(frozen=True)
class Audio:
    """Audio samples with their rate.

    Attributes:
        samples: ``(channels, samples)`` float32, channels 1 (mono) or 2 (stereo).
        sample_rate: Samples per second, in Hz.
        path: Where the audio came from, if a file.
    """

    samples: np.ndarray
    sample_rate: int
    path: str | None = None

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def seconds(self) -> float:
        return self.samples.shape[1] / self.sample_rate


def load_audio(path: str | os.PathLike, min_seconds: float = 1.0, role: str = "input") -> Audio:
    """Read any file soundfile can decode and check it is usable.

    Args:
        path: Audio file path.
        min_seconds: Shortest accepted duration, in seconds.
        role: Word used in error messages ("input", "reference").

    Returns:
        The audio as ``(channels, samples)`` float32.

    Raises:
        AudioError: missing/unreadable file, more than two channels, too short, silent or non-finite.
    """
    p = Path(path)
    if not p.exists():
        raise AudioError(f"{role} file not found: {p}")
    try:
        data, rate = sf.read(str(p), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types; the message is what the user needs
        formats = ", ".join(sorted(sf.available_formats()))
        raise AudioError(f"cannot read {role} file {p}: {exc} (readable formats: {formats})") from None
    audio = Audio(np.ascontiguousarray(data.T), int(rate), str(p))
    validate_audio(audio, min_seconds=min_seconds, role=role)
    return audio


def validate_audio(audio: Audio, min_seconds: float = 1.0, role: str = "input") -> None:
    """Raise AudioError naming the problem if ``audio`` cannot be matched.

    Args:
        audio: Audio to check, ``(channels, samples)``.
        min_seconds: Shortest accepted duration, in seconds.
        role: Word used in error messages.
    """
    where = f" ({audio.path})" if audio.path else ""
    x = audio.samples
    if x.ndim != 2 or x.shape[0] not in (1, 2):
        raise AudioError(
            f"{role}{where} has {x.shape[0] if x.ndim == 2 else x.ndim} channels; stito handles mono and stereo "
            "(1 or 2 channels)"
        )
    if audio.seconds < min_seconds:
        raise AudioError(f"{role}{where} is {audio.seconds:.2f} s long; at least {min_seconds:g} s is needed")
    bad = ~np.isfinite(x)
    if bad.any():
        raise AudioError(f"{role}{where} contains {int(bad.sum())} NaN/Inf samples; fix or re-export the file")
    if peak_dbfs(x) < SILENCE_DBFS:
        raise AudioError(f"{role}{where} is silent (peak {peak_dbfs(x):.1f} dBFS, below {SILENCE_DBFS:g} dBFS)")
    swing = float(np.max(x.max(axis=1) - x.min(axis=1))) / 2  # how far any channel moves (no copy of the file)
    if swing <= 0 or 20 * np.log10(swing) < SILENCE_DBFS:
        raise AudioError(f"{role}{where} is a constant offset (DC at {peak_dbfs(x):.1f} dBFS) with no sound in it; "
                         "there is nothing to match")


def save_atomically(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` for a temporary file beside ``path``, then rename it onto ``path``.

    A failure leaves no file behind (neither the temporary nor a partial ``path``). The writer creates
    the temporary file itself, so it gets the usual permissions (umask), not a private 0600.
    """
    p = Path(path)
    tmp = str(p.parent.resolve() / f".{p.name}.{os.getpid()}.{secrets.token_hex(4)}{p.suffix}")
    try:
        write(tmp)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_audio(path: str | os.PathLike, samples: np.ndarray, sample_rate: int) -> None:
    """Write ``(channels, samples)`` audio atomically.

    WAV/AIFF/W64/CAF are written as 32-bit float so nothing is clipped; other formats use soundfile's
    default subtype for the extension (PCM for FLAC and AU: samples beyond full scale would be clipped, so
    those are refused rather than clipped silently; a match's output respects its true-peak ceiling).

    Raises:
        AudioError: PCM output whose samples exceed full scale.
    """
    ext = Path(path).suffix.lower().lstrip(".")
    subtype = "FLOAT" if ext in ("wav", "aif", "aiff", "w64", "caf") else None
    if subtype is None and "PCM" in (sf.default_subtype(ext.upper()) if ext.upper() in sf.available_formats() else ""):
        level = peak_dbfs(samples)
        if level > 0:
            raise AudioError(f"{path}: the audio peaks at {level:+.2f} dBFS, above full scale, and "
                             f".{ext} is written as PCM, which would clip it; turn it down, or write .wav (float)")
    def write(tmp: str) -> None:
        with sf.SoundFile(tmp, "w", sample_rate, samples.shape[0], subtype=subtype) as f:
            for start in range(0, samples.shape[1], SAVE_CHUNK):  # frames-major copies of a chunk, not of the file
                f.write(np.ascontiguousarray(samples[:, start:start + SAVE_CHUNK].T))

    save_atomically(path, write)


def peak_dbfs(x: np.ndarray) -> float:
    """Peak level of any array, in dBFS (-inf for all zeros)."""
    peak = max(float(np.max(x)), -float(np.min(x))) if x.size else 0.0  # no |x| copy of a long file
    return 20 * np.log10(peak) if peak > 0 else -np.inf


def true_peak_dbtp(x: np.ndarray, sample_rate: int, block: int = 1 << 18) -> float:
    """True peak (ITU-R BS.1770-4, 4x oversampled) of ``(channels, n)`` audio, in dBTP (-inf for all zeros).

    The interpolation is a 48-tap windowed-sinc (12 taps a phase, as in BS.1770-4's example), run in blocks of
    ``block`` samples with margins for it, so a long file costs 4x one block, not 4x the file. Never below the
    sample peak.

    Args:
        x: ``(channels, n)`` audio.
        sample_rate: In Hz (the oversampling is 4x below 96 kHz, else none, as BS.1770-4 allows).
        block: Samples per block.
    """
    from scipy.signal import firwin, upfirdn

    x = np.atleast_2d(np.asarray(x))
    peak = 10 ** (peak_dbfs(x) / 20)  # the sample peak (0 for silence)
    if sample_rate < 96000 and x.size:
        taps = 4 * firwin(48, 0.25, window=("kaiser", 5.0))
        margin, n = 12, x.shape[-1]
        for start in range(0, n, block):
            lo, stop = max(0, start - margin), min(n, start + block)
            y = upfirdn(taps, x[:, lo:min(n, stop + margin)], up=4, axis=-1)
            # output sample 4 * i + 23.5 (the filter's delay) lies at input sample i; keep this block's own part
            first, last = 4 * (start - lo) + 24, 4 * (stop - lo) + 24
            peak = max(peak, float(np.max(np.abs(y[:, first:last]))))
    return 20 * np.log10(peak) if peak > 0 else -np.inf


def to_stereo(x: np.ndarray) -> np.ndarray:
    """``(1|2, n)`` -> ``(2, n)``; mono is duplicated (a new array, the input is not modified)."""
    return np.repeat(x, 2, axis=0) if x.shape[0] == 1 else x.copy()


def to_channels(x: np.ndarray, channels: int) -> np.ndarray:
    """``(2, n)`` -> ``(channels, n)``: stereo kept, or folded to mono by averaging L and R."""
    if channels == 2 or x.shape[0] == channels:
        return x
    return x.mean(axis=0, keepdims=True)


def mid_side(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mid (L+R)/2 and side (L-R)/2 of ``(..., 2, n)`` audio; mono input gives a zero side.

    Returns:
        Two ``(..., n)`` arrays.
    """
    if x.shape[-2] == 1:
        return x[..., 0, :], np.zeros_like(x[..., 0, :])
    return (x[..., 0, :] + x[..., 1, :]) * 0.5, (x[..., 0, :] - x[..., 1, :]) * 0.5


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling along the last axis (float32 in and out)."""
    if rate_in == rate_out:
        return x
    from scipy.signal import resample_poly

    g = gcd(rate_in, rate_out)
    return resample_poly(x, rate_out // g, rate_in // g, axis=-1).astype(np.float32)




def gain_under_ceiling(output: np.ndarray, sample_rate: int, gain_db: float, ceiling_dbtp: float | None,
                       tolerance_db: float = 0.0) -> tuple[np.ndarray, float, float]:
    """``output`` gained by ``gain_db``, turned down further as far as it would peak above ``ceiling_dbtp``.

    The true peak moves dB for dB with the gain, so it is measured once, on ``output`` as given. ``output`` is
    gained in place (pass an array of your own).

    Args:
        output: ``(channels, n)`` float32.
        sample_rate: In Hz.
        gain_db: The gain wanted, in dB.
        ceiling_dbtp: The true-peak ceiling in dBTP, or None for none.
        tolerance_db: How far above the ceiling still counts as at it (no further cut).

    Returns:
        The gained output, the cut the ceiling took (0 or negative, dB; the gain applied is ``gain_db`` plus it)
        and the output's true peak in dBTP.
    """
    peak = true_peak_dbtp(output, sample_rate) + gain_db
    cut = 0.0
    if ceiling_dbtp is not None and np.isfinite(peak) and peak > ceiling_dbtp + tolerance_db:
        cut = ceiling_dbtp - peak
    total = gain_db + cut
    if total:
        output = np.multiply(output, np.float32(10 ** (total / 20)), out=output)
    return output, cut, peak + cut


LOUDNESS_BLOCK_S, LOUDNESS_STEP_S = 0.4, 0.1  # BS.1770-4's gating blocks: 400 ms, 75 % overlap
LOUDNESS_CHUNK = 1 << 20  # samples filtered at a time: memory is a chunk's, not the file's


def loudness_lufs(x: np.ndarray, sample_rate: int, gain_db: float = 0.0) -> float:
    """Integrated loudness (ITU-R BS.1770-4) of ``(channels, n)`` audio, in LUFS.

    pyloudnorm's K-weighting filters and gating, computed in chunks of ``LOUDNESS_CHUNK`` samples (the filters
    carry their state from chunk to chunk, the 400 ms blocks are summed from running sums of squares), so an hour
    of audio costs a chunk of memory rather than a float64 copy of the file; ``tests/test_hardening.py`` holds it
    to pyloudnorm's figure.

    Args:
        x: ``(channels, n)`` audio (1 or 2 channels, both weighted 1).
        sample_rate: In Hz.
        gain_db: Measure the audio as if gained by this much first (without making a gained copy).

    Returns:
        LUFS; -inf for audio shorter than one block, or silent.
    """
    from pyloudnorm.iirfilter import IIRfilter
    from scipy.signal import lfilter

    x = np.atleast_2d(np.asarray(x))
    n = x.shape[-1]
    if n < int(LOUDNESS_BLOCK_S * sample_rate) + 1:
        return float("-inf")
    stages = [IIRfilter(4.0, 1 / np.sqrt(2), 1500.0, sample_rate, "high_shelf"),
              IIRfilter(0.0, 0.5, 38.0, sample_rate, "high_pass")]
    coeffs = [(f.b, f.a, f.passband_gain) for f in stages]
    blocks = int(np.round((n / sample_rate - LOUDNESS_BLOCK_S) / LOUDNESS_STEP_S)) + 1
    j = np.arange(blocks)
    lower = (LOUDNESS_BLOCK_S * (j * 0.25) * sample_rate).astype(np.int64)
    upper = (LOUDNESS_BLOCK_S * (j * 0.25 + 1) * sample_rate).astype(np.int64)
    edges = np.unique(np.concatenate([lower, np.minimum(upper, n)]))
    z = np.zeros(blocks)
    for channel in x:
        states = [np.zeros(max(len(a), len(b)) - 1) for b, a, _ in coeffs]  # filters at rest
        at_edge = np.zeros(len(edges))  # sum of squares of the filtered signal before each edge
        total = 0.0
        for start in range(0, n, LOUDNESS_CHUNK):
            y = channel[start:start + LOUDNESS_CHUNK].astype(np.float64)
            for k, (b, a, gain) in enumerate(coeffs):
                y, states[k] = lfilter(b, a, y, zi=states[k])
                y = gain * y
            csum = np.concatenate([[0.0], np.cumsum(np.square(y))]) + total
            inside = (edges >= start) & (edges <= start + len(y))
            at_edge[inside] = csum[edges[inside] - start]
            total = csum[-1]
        sums = at_edge[np.searchsorted(edges, np.minimum(upper, n))] - at_edge[np.searchsorted(edges, lower)]
        z += sums / (LOUDNESS_BLOCK_S * sample_rate)
    z *= 10 ** (gain_db / 10)
    with np.errstate(divide="ignore"):
        block_lufs = -0.691 + 10 * np.log10(z)
    gated = block_lufs >= -70.0
    if not gated.any():
        return float("-inf")
    relative = -0.691 + 10 * np.log10(z[gated].mean()) - 10.0
    gated &= block_lufs > relative
    if not gated.any():
        return float("-inf")
    return float(-0.691 + 10 * np.log10(z[gated].mean()))


def gain_loudness_lufs(x: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness for gain matching: ``loudness_lufs`` of the audio brought to -1 dBFS peak, shifted back.

    BS.1770's absolute gate drops every block below -70 LUFS, so audio that is merely very quiet (a chain
    setting 60 dB down, which a level-blind metric cannot tell from full level) would measure -inf and
    could not be gained back up. Measured this way the result moves dB for dB with the audio's level at
    every level; for audio already near full scale it equals ``loudness_lufs``. -inf for silence.
    """
    peak = peak_dbfs(x)
    if not np.isfinite(peak):
        return float("-inf")
    shift = -1.0 - peak
    return loudness_lufs(x, sample_rate, gain_db=shift) - shift
