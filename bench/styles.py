"""The five production styles of the zero-shot classification task, built from the built-in EQ and compressor."""

from __future__ import annotations

import numpy as np

from stito_server.effects.builtin import BuiltinEffect

STYLE_NAMES = ("telephone", "bright", "warm", "broadcast", "neutral")
STYLE_ABBREVIATIONS = {"telephone": "TL", "bright": "BR", "warm": "WM", "broadcast": "BC", "neutral": "NT"}
INPUT_PEAK_DBFS = -1.0

Range = tuple[float, float]

# Each style is a chain of built-in effects whose parameters are drawn, per rendering, uniformly from a
# narrow range (log-uniform for frequencies), so a query and a prototype of one style are two different
# instances of it, as two engineers would set them. The input is first peak-normalised to -1 dBFS so the
# compressor thresholds mean the same on every clip.
#
# - telephone: band-pass 300-500 Hz .. 3-4 kHz (pedalboard's filters are first order, so the EQ's low/high
#   cut and a separate high-pass and low-pass are stacked: 12 dB/oct each side), +4..+8 dB nasal peak at
#   1.2-2 kHz, compression (threshold -30..-22 dB, ratio 4..8).
# - bright: +8..+12 dB high shelf at 4-7 kHz, -3..-6 dB low shelf at 120-250 Hz, light compression
#   (threshold -18..-12 dB, ratio 1.5..2.5).
# - warm: +5..+9 dB low shelf at 150-300 Hz, -8..-12 dB high shelf at 3-6 kHz, light compression
#   (threshold -22..-16 dB, ratio 1.5..2.5).
# - broadcast: 60-90 Hz low cut, +2..+4 dB low shelf at 100-150 Hz, +3..+5 dB presence peak at 2.5-4 kHz,
#   heavy fast compression (threshold -36..-28 dB, ratio 6..10, attack 1-5 ms, release 50-150 ms).
# - neutral: no compression, every EQ band within +-1 dB (an untouched recording).
#
# style -> [(built-in effect kind, {parameter: (low, high)})]; ranges on "_hz" parameters are log-uniform
STYLES: dict[str, list[tuple[str, dict[str, Range]]]] = {
    "telephone": [
        ("parametric_eq", {"low_cut_hz": (300.0, 500.0), "high_cut_hz": (3000.0, 4000.0),
                           "peak2_gain_db": (4.0, 8.0), "peak2_cutoff_hz": (1200.0, 2000.0),
                           "peak2_q": (1.0, 2.0)}),
        ("highpass", {"cutoff_hz": (300.0, 500.0)}),
        ("lowpass", {"cutoff_hz": (3000.0, 4000.0)}),
        ("compressor", {"threshold_db": (-30.0, -22.0), "ratio": (4.0, 8.0), "attack_ms": (2.0, 10.0),
                        "release_ms": (50.0, 200.0)}),
    ],
    "bright": [
        ("parametric_eq", {"high_shelf_gain_db": (8.0, 12.0), "high_shelf_cutoff_hz": (4000.0, 7000.0),
                           "low_shelf_gain_db": (-6.0, -3.0), "low_shelf_cutoff_hz": (120.0, 250.0)}),
        ("compressor", {"threshold_db": (-18.0, -12.0), "ratio": (1.5, 2.5), "attack_ms": (5.0, 20.0),
                        "release_ms": (100.0, 300.0)}),
    ],
    "warm": [
        ("parametric_eq", {"low_shelf_gain_db": (5.0, 9.0), "low_shelf_cutoff_hz": (150.0, 300.0),
                           "high_shelf_gain_db": (-12.0, -8.0), "high_shelf_cutoff_hz": (3000.0, 6000.0)}),
        ("compressor", {"threshold_db": (-22.0, -16.0), "ratio": (1.5, 2.5), "attack_ms": (10.0, 30.0),
                        "release_ms": (100.0, 300.0)}),
    ],
    "broadcast": [
        ("parametric_eq", {"low_cut_hz": (60.0, 90.0), "low_shelf_gain_db": (2.0, 4.0),
                           "low_shelf_cutoff_hz": (100.0, 150.0), "peak3_gain_db": (3.0, 5.0),
                           "peak3_cutoff_hz": (2500.0, 4000.0), "peak3_q": (0.7, 1.2)}),
        ("compressor", {"threshold_db": (-36.0, -28.0), "ratio": (6.0, 10.0), "attack_ms": (1.0, 5.0),
                        "release_ms": (50.0, 150.0)}),
    ],
    "neutral": [
        ("parametric_eq", {"low_shelf_gain_db": (-1.0, 1.0), "peak2_gain_db": (-1.0, 1.0),
                           "peak3_gain_db": (-1.0, 1.0), "high_shelf_gain_db": (-1.0, 1.0)}),
    ],
}


def sample_settings(style: str, rng: np.random.Generator) -> list[tuple[str, dict[str, float]]]:
    """Draw one instance of a style.

    Args:
        style: One of ``STYLE_NAMES``.
        rng: Random generator (explicit seed).

    Returns:
        ``[(effect kind, {parameter: value in its unit})]`` in processing order.

    Raises:
        ValueError: unknown style (valid ones listed).
    """
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; valid: {', '.join(STYLE_NAMES)}")
    out = []
    for kind, ranges in STYLES[style]:
        values = {}
        for name, (lo, hi) in ranges.items():
            u = rng.uniform()
            values[name] = float(np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo)))) if name.endswith("_hz") \
                else float(lo + u * (hi - lo))
        out.append((kind, values))
    return out


def apply_style(audio: np.ndarray, sample_rate: int, style: str, rng: np.random.Generator) -> np.ndarray:
    """Render a random instance of a style.

    Args:
        audio: ``(channels, samples)`` float32.
        sample_rate: In Hz.
        style: One of ``STYLE_NAMES``.
        rng: Random generator for the instance's parameters.

    Returns:
        ``(channels, samples)`` float32: the input peak-normalised to -1 dBFS, then processed.
    """
    x = np.asarray(audio, dtype=np.float32)
    peak = float(np.abs(x).max())
    if peak <= 0.0:
        raise ValueError("cannot apply a style to silent audio (peak 0)")
    x = x * np.float32(10 ** (INPUT_PEAK_DBFS / 20) / peak)
    for kind, values in sample_settings(style, rng):
        effect = BuiltinEffect(kind)
        effect.set_values(values)
        x = effect.process(x, sample_rate)
    return x.astype(np.float32, copy=False)
