"""The metric registry: a style metric by name (``get_metric``), the names it knows and the default."""

from __future__ import annotations

from ..errors import StitoError, did_you_mean
from .base import StyleMetric

# The metric `stito match` and `stito-server` use when none is named (see stito_server/models/README.md for why).
DEFAULT_METRIC = "stats"


def metric_names() -> list[str]:
    """Names accepted by ``get_metric``."""
    return ["afx", "mfcc", "mir", "random", "stats"]


def get_metric(name: str, device: str = "cpu") -> StyleMetric:
    """Create a style metric by name.

    Args:
        name: One of ``metric_names()``: "afx" (the learned encoder, shipped in stito_server/models/), "mfcc" (the
            paper's DSP baseline), "mir" (loudness/crest/band/centroid features), "stats" (production
            statistics compared as processing deltas, ``metrics/stats.py``), "random" (the encoder's
            architecture, randomly initialised with seed 0: the benchmark's sanity floor); or
            "afx:PATH", an encoder file written by `stito train export` (to benchmark a candidate before
            shipping it; the metric is named after the file, e.g. "afx-rep-1a2b3c4d"); or names joined by
            "+", e.g. "afx+mfcc": a ``BlendMetric`` scoring the mean of their similarities.
        device: "cpu" or "cuda" (for learned metrics).

    Raises:
        StitoError: unknown name (the message lists the valid ones), or a blend naming a metric twice.
    """
    # Each metric's module is imported when it is asked for: mfcc/mir load scipy.fft, afx and random torch
    # (seconds), which neither `stito --help` nor a server that never uses them should pay for.
    if "+" in name:
        from .blend import BlendMetric

        names = name.split("+")
        if len(set(names)) != len(names) or "" in names:
            raise StitoError(f"metric {name!r}: a blend joins different metric names with '+', e.g. afx+mfcc")
        return BlendMetric([get_metric(n, device) for n in names])
    if name == "mfcc":
        from .mfcc import MFCCMetric

        return MFCCMetric()
    if name == "stats":
        from .stats import StatsMetric

        return StatsMetric()
    if name == "mir":
        from .mir import MIRMetric

        return MIRMetric()
    if name == "afx" or name.startswith("afx:"):
        from pathlib import Path

        from .weights import load_encoder, shipped_weights
        from .afx import EncoderMetric

        if name == "afx":
            return EncoderMetric(load_encoder(shipped_weights(), device), "afx", device)
        path = Path(name[4:]).expanduser()
        return EncoderMetric(load_encoder(path, device), path.stem, device)
    if name == "random":
        from .encoder import random_encoder
        from .afx import EncoderMetric

        return EncoderMetric(random_encoder(seed=0), "random", device)
    raise StitoError(f"unknown metric {name!r}; " + did_you_mean(name, metric_names())
                     + " (or afx:PATH, or names joined by '+')")
