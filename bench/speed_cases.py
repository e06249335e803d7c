"""The speed benchmark's cases: a chain's hidden true setting, the generated input, reference and oracle, and scores."""

from __future__ import annotations

import numpy as np

from stito_server.audio import loudness_lufs
from stito_server.effects.chain import Chain
from stito_server.effects.specs import load_chain
from stito_server.examples import phrase

CASE_SEED_STEP = 1000  # case k's input and source phrases use INPUT_SEED / SOURCE_SEED + k * CASE_SEED_STEP
RATE = 48000
INPUT_SEED, SOURCE_SEED = 101, 202  # seeds of the generated input and of the recording the reference is made from
# The hidden "true" setting of each chain (values in units, per effect name; the rest at the chain's
# starting settings): the reference is another recording through it, the oracle is the input through it.
TRUE_SETTINGS: dict[str, dict[str, dict[str, float]]] = {
    "pedalboard-strip": {
        "distortion": {"drive_db": 6.0},
        "parametric_eq": {"low_cut_hz": 80.0, "peak2_gain_db": -5.0, "peak2_cutoff_hz": 400.0,
                          "high_shelf_gain_db": 6.0, "high_shelf_cutoff_hz": 5000.0},
        "compressor": {"threshold_db": -24.0, "ratio": 4.0, "attack_ms": 5.0, "release_ms": 120.0,
                       "makeup_gain_db": 6.0},
        "delay": {"delay_ms": 350.0, "feedback": 0.3, "mix": 0.1},
        "reverb": {"room_size": 0.6, "wet_level": 0.25, "dry_level": 0.85},
    },
    "zam-strip": {
        "saturation": {"drive_db": 6.0},
        "eq": {"Boost/Cut 1": -5.0, "Frequency 1": 400.0, "Boost/Cut 2": 4.0, "Frequency 2": 3000.0,
               "Boost/Cut H": 5.0, "Frequency H": 8000.0},
        "compressor": {"Threshold": -24.0, "Ratio": 4.0, "Attack": 5.0, "Release": 120.0, "Makeup": 6.0},
        "delay": {"Time": 350.0, "Feedback": 0.3, "Dry/Wet": 0.1},
        "reverb": {"Dry Level": 90.0, "Early Level": 10.0, "Late Level": 25.0, "Size": 16.0, "Decay": 1.2},
    },
}


def true_chain(chain_name: str) -> Chain:
    """``chain_name`` at its hidden true setting (``TRUE_SETTINGS``).

    Raises:
        ValueError: a chain without a true setting (valid ones listed).
    """
    if chain_name not in TRUE_SETTINGS:
        raise ValueError(f"no true setting for chain {chain_name!r}; valid: {', '.join(TRUE_SETTINGS)}")
    chain = load_chain(chain_name)
    by_name = {fx.name: fx for fx in chain.effects}
    for effect, values in TRUE_SETTINGS[chain_name].items():
        by_name[effect].set_values(values)
    return chain


def material(chain_name: str, seconds: float = 30.0, sample_rate: int = RATE, case: int = 0) -> dict[str, np.ndarray]:
    """The input, reference and oracle of one chain's case (deterministic, generated from code).

    Args:
        chain_name: One of ``TRUE_SETTINGS``.
        seconds: Length of input and reference, in seconds.
        sample_rate: In Hz.
        case: 0 is the timed case; case k generates other recordings (phrase seeds + k * ``CASE_SEED_STEP``)
            through the same true setting.

    Returns:
        ``{"input", "reference", "oracle"}``, each ``(2, seconds * sample_rate)`` float32: the input is a
        dry generated phrase, the reference a different phrase (other notes, tempo and noise) through the
        chain's true setting, the oracle the input through that same setting.
    """
    chain = true_chain(chain_name)
    dry = phrase(seconds, sample_rate, seed=INPUT_SEED + case * CASE_SEED_STEP)
    source = phrase(seconds, sample_rate, seed=SOURCE_SEED + case * CASE_SEED_STEP)
    return {"input": dry, "reference": chain.process(source, sample_rate), "oracle": chain.process(dry, sample_rate)}


def oracle_distance(output: np.ndarray, oracle: np.ndarray, sample_rate: int = RATE) -> float:
    """Multi-resolution STFT distance (dB) of ``output`` to ``oracle`` after gaining it to the oracle's loudness.

    Level is not style here (the match's output gain is a separate choice), so only spectrum and envelope count.

    Args:
        output: ``(channels, n)`` audio.
        oracle: ``(channels, n)`` audio of the same content.
        sample_rate: In Hz.
    """
    a, b = loudness_lufs(output, sample_rate), loudness_lufs(oracle, sample_rate)
    y = output * np.float32(10 ** ((b - a) / 20)) if np.isfinite(a) and np.isfinite(b) else output
    from stito_server.distances import (
        multi_resolution_stft_distance,  # scipy.signal: ~0.7 s, kept off the CLI's start-up
    )

    return multi_resolution_stft_distance(y, oracle, sample_rate)


def style_similarity(output: np.ndarray, reference: np.ndarray, metric, sample_rate: int = RATE,
                     window_s: float = 5.5) -> float:
    """Metric similarity of a whole output to the whole reference: mean embedding over consecutive windows.

    Args:
        output: ``(channels, n)`` audio.
        reference: ``(channels, m)`` audio.
        metric: A ``StyleMetric``.
        sample_rate: Of both, in Hz.
        window_s: Window length, in seconds.
    """
    from stito_server.engine.scoring import uses_side, window_embeddings

    a = window_embeddings(output[None], metric, sample_rate, window_s)[0]
    b = window_embeddings(reference[None], metric, sample_rate, window_s)[0]
    return float(metric.similarity(a, b, uses_side(output, reference))[0])
