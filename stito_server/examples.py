"""Example audio generated from code (no files to license): a dry phrase and a styled reference."""

from __future__ import annotations

import numpy as np

from .effects.builtin import BuiltinEffect


def pluck(freq: float, seconds: float, sample_rate: int, rng: np.random.Generator, damping: float = 0.996) -> np.ndarray:
    """Karplus-Strong plucked string, ``(samples,)`` float32.

    The string loop y[n] = damping * (y[n-P] + y[n-P-1]) / 2 runs as an IIR filter over a noise burst.
    """
    from scipy.signal import lfilter

    n = int(seconds * sample_rate)
    period = max(2, int(round(sample_rate / freq)))
    excite = np.zeros(n)
    excite[:period] = rng.uniform(-1, 1, min(period, n))
    a = np.zeros(period + 2)
    a[0], a[period], a[period + 1] = 1.0, -0.5 * damping, -0.5 * damping
    return lfilter([1.0], a, excite).astype(np.float32)


def _drum(kind: str, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.4 * sample_rate)) / sample_rate
    if kind == "kick":
        phase = 2 * np.pi * np.cumsum(50 + 120 * np.exp(-t * 30)) / sample_rate
        return (np.sin(phase) * np.exp(-t * 9)).astype(np.float32)
    noise = rng.standard_normal(t.size)
    if kind == "snare":
        return (0.5 * noise * np.exp(-t * 18) + 0.4 * np.sin(2 * np.pi * 190 * t) * np.exp(-t * 25)).astype(np.float32)
    hat = np.diff(noise, prepend=0.0)
    return (0.25 * hat * np.exp(-t * 60)).astype(np.float32)


def phrase(seconds: float, sample_rate: int = 48000, seed: int = 0, stereo: bool = True) -> np.ndarray:
    """A dry band phrase: plucked bass and chords, kick/snare/hat, panned.

    Args:
        seconds: Duration, in seconds.
        sample_rate: In Hz.
        seed: Changes the notes, timing details and noise.
        stereo: Two channels (panned parts) or one.

    Returns:
        ``(channels, samples)`` float32 peaking at -6 dBFS.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    left, right = np.zeros(n, np.float32), np.zeros(n, np.float32)
    bpm = rng.uniform(90, 130)
    beat = 60.0 / bpm
    roots = rng.choice([40, 43, 45, 47, 48, 50, 52], size=64)
    steps = int(seconds / (beat / 2))
    for s in range(steps):
        start = int(s * beat / 2 * sample_rate)
        if start >= n:
            break
        bar_note = roots[(s // 8) % len(roots)]
        parts = []
        if s % 2 == 0:
            parts.append((pluck(440 * 2 ** ((bar_note - 24 - 69) / 12 + 2), beat, sample_rate, rng), 0.0, 0.9))
        if s % 4 == 2:
            for k, iv in enumerate((0, 4, 7)):
                f = 440 * 2 ** ((bar_note + iv - 69) / 12 + 1)
                parts.append((0.5 * pluck(f, 2 * beat, sample_rate, rng, 0.998), -0.6 + 0.3 * k, 1.0))
        if s % 4 == 0:
            parts.append((_drum("kick", sample_rate, rng), 0.0, 1.0))
        if s % 4 == 2:
            parts.append((_drum("snare", sample_rate, rng), 0.1, 0.8))
        parts.append((_drum("hat", sample_rate, rng) * rng.uniform(0.5, 1.0), 0.5, 0.7))
        for sig, pan, gain in parts:
            m = min(sig.size, n - start)
            left[start:start + m] += gain * sig[:m] * np.cos((pan + 1) * np.pi / 4)
            right[start:start + m] += gain * sig[:m] * np.sin((pan + 1) * np.pi / 4)
    x = np.stack([left, right]) if stereo else ((left + right) / 2)[None]
    return (x * (0.5 / max(np.abs(x).max(), 1e-9))).astype(np.float32)


def styled(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Apply the example "reference" style: bright, scooped, compressed, roomy. Returns a new array."""
    eq = BuiltinEffect("parametric_eq")
    eq.set_values({"low_cut_hz": 60.0, "peak2_gain_db": -6.0, "peak2_cutoff_hz": 500.0,
                   "high_shelf_gain_db": 8.0, "high_shelf_cutoff_hz": 5000.0})
    comp = BuiltinEffect("compressor")
    comp.set_values({"threshold_db": -28.0, "ratio": 6.0, "attack_ms": 5.0, "release_ms": 120.0,
                     "makeup_gain_db": 10.0})
    verb = BuiltinEffect("reverb")
    verb.set_values({"room_size": 0.7, "wet_level": 0.25, "dry_level": 0.8})
    y = np.repeat(x, 2, axis=0) if x.shape[0] == 1 else x
    for fx in (eq, comp, verb):
        y = fx.process(y, sample_rate)
    return (y[:x.shape[0]] if x.shape[0] == 2 else y.mean(axis=0, keepdims=True)).astype(np.float32)
