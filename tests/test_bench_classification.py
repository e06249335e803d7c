"""Task 1: the style definitions do what they claim, and `stito bench classification --quick` runs end to end."""

from __future__ import annotations

import numpy as np
import pytest

from bench.classification import QUICK_TRIALS
from bench.styles import STYLE_NAMES, apply_style, sample_settings
from stito_server.metrics.mir import FEATURE_NAMES, channel_features

from .conftest import run_quick_bench

RATE = 48000


def _features(x: np.ndarray) -> dict[str, float]:
    return dict(zip(FEATURE_NAMES, channel_features(x.mean(axis=0), RATE)))


def test_styles_shape_the_spectrum_and_dynamics_as_defined():
    noise = np.random.default_rng(0).standard_normal((2, RATE * 2)).astype(np.float32) * 0.1
    noise[:, RATE // 2: RATE] *= 0.05  # a quiet stretch, so compression shows in the level statistics
    f = {s: _features(apply_style(noise, RATE, s, np.random.default_rng(1))) for s in STYLE_NAMES}
    n = f["neutral"]
    def tilt(feats: dict[str, float], band: str) -> float:  # level of a band relative to 1-2 kHz, in dB
        return feats[band] - feats["band_1000_2000_db"]

    # two stacked first-order cuts: >= 12 dB/oct over >= 2 octaves below 300 Hz and ~1.3 octaves above 4 kHz
    assert tilt(f["telephone"], "band_63_125_db") < tilt(n, "band_63_125_db") - 24
    assert tilt(f["telephone"], "band_8000_12000_db") < tilt(n, "band_8000_12000_db") - 15
    assert f["bright"]["band_8000_12000_db"] > n["band_8000_12000_db"] + 6
    assert f["warm"]["band_8000_12000_db"] < n["band_8000_12000_db"] - 6
    assert f["warm"]["centroid_log2_khz"] < n["centroid_log2_khz"] - 1 < f["bright"]["centroid_log2_khz"] - 1
    assert f["broadcast"]["short_term_range_db"] < n["short_term_range_db"] - 3


def test_style_instances_differ_but_stay_in_range_and_errors_name_the_styles():
    a = sample_settings("broadcast", np.random.default_rng(1))
    b = sample_settings("broadcast", np.random.default_rng(2))
    assert a != b
    comp = dict(a)["compressor"]
    assert -36.0 <= comp["threshold_db"] <= -28.0 and 6.0 <= comp["ratio"] <= 10.0
    with pytest.raises(ValueError, match="valid: telephone, bright, warm, broadcast, neutral"):
        sample_settings("lofi", np.random.default_rng(0))


def test_quick_classification_end_to_end(tmp_path, request, capsys):
    cache = request.config.cache.mkdir("stito-data")  # the same quick data as tests/test_data.py
    report, md, printed = run_quick_bench("classification", tmp_path, capsys, "--cache", str(cache))
    assert "| MFCC | speech |" in printed
    assert "Command: `stito bench classification --quick --metrics mfcc,mir`" in md
    assert report["trials"] == QUICK_TRIALS
    for metric in ("mfcc", "mir"):
        for domain in ("speech", "music"):
            r = report["results"][metric][domain]
            assert r["n"] == QUICK_TRIALS and set(r["per_class"]) == set(STYLE_NAMES)
            assert 0.0 <= r["balanced"] <= 1.0
        assert report["results"][metric]["all"]["n"] == 2 * QUICK_TRIALS
