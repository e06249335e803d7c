"""`stito bench throughput`: each metric's embedding speed in x real time (batch of stereo clips, mid + side)."""

from __future__ import annotations

import time

import numpy as np

from stito_server.metrics import get_metric


def metric_throughput(name: str, batch: int = 128, seconds: float = 5.46, repeats: int = 3, seed: int = 0,
                      sample_rate: int = 48000) -> dict:
    """Time ``metric.embed`` on a batch of stereo noise clips (content does not change the cost).

    Args:
        name: Metric name.
        batch: Stereo clips per call (each gives a mid and a side signal).
        seconds: Clip length, in seconds (5.46 s = the paper's 262144 samples).
        repeats: Timed calls after one warm-up call; the median is reported.
        seed: Seed of the noise.
        sample_rate: In Hz.

    Returns:
        ``{"metric", "batch", "seconds", "median_s", "x_real_time"}``; x real time counts stereo audio
        seconds (``batch * seconds``) per wall second.
    """
    metric = get_metric(name)
    x = (np.random.default_rng(seed).standard_normal((batch, 2, int(seconds * sample_rate))) * 0.1
         ).astype(np.float32)
    metric.embed(x[:2], sample_rate)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        metric.embed(x, sample_rate)
        times.append(time.perf_counter() - t0)
    med = float(np.median(times))
    return {"metric": name, "batch": batch, "seconds": seconds, "median_s": med,
            "x_real_time": batch * seconds / med}
