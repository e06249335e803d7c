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
    default subtype for the extension.
    """
    ext = Path(path).suffix.lower().lstrip(".")
    subtype = "FLOAT" if ext in ("wav", "aif", "aiff", "w64", "caf") else None
    data = np.ascontiguousarray(samples.T)
    save_atomically(path, lambda tmp: sf.write(tmp, data, sample_rate, subtype=subtype))


def peak_dbfs(x: np.ndarray) -> float:
    """Peak level of any array, in dBFS (-inf for all zeros)."""
    peak = float(np.max(np.abs(x))) if x.size else 0.0
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
    mag = np.abs(np.fft.rfft(frames * np.hanning(n_fft).astype(np.float32), axis=-1))
    level = 10 * np.log10(np.mean(mag ** 2, axis=-1) + 1e-12)
    loud = np.clip((level - (level.max() - range_db)) / range_db, 0.0, 1.0)
    logmag = np.log10(mag + 1e-6)
    flux = np.concatenate([[0.0], np.maximum(np.diff(logmag, axis=0), 0.0).mean(axis=-1)])
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


def loudness_lufs(x: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness (ITU-R BS.1770-4) of ``(channels, n)`` audio, in LUFS (pyloudnorm's meter)."""
    import pyloudnorm

    data = np.asarray(x, dtype=np.float64).T
    if data.shape[0] < int(0.4 * sample_rate) + 1:
        return float("-inf")
    return float(pyloudnorm.Meter(sample_rate).integrated_loudness(data))


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
    return loudness_lufs(np.asarray(x, dtype=np.float64) * 10 ** (shift / 20), sample_rate) - shift
