"""Scoring code on constructed cases with known answers, and the MIR-features metric on signals with known features."""

from __future__ import annotations

import numpy as np
import pytest

from bench.scoring import retrieval_accuracy, retrieval_curve, top1_credit, zero_shot_accuracy
from stito_server.errors import StitoError
from stito_server.metrics import get_metric, metric_names
from stito_server.metrics.mir import FEATURE_NAMES, channel_features

RATE = 48000
CLASSES = ["a", "b", "c", "d", "e"]


def _feature(x: np.ndarray, name: str) -> float:
    return float(channel_features(x, RATE)[FEATURE_NAMES.index(name)])


def test_perfect_representation_scores_one_and_constant_scores_chance():
    rng = np.random.default_rng(0)
    queries = list(rng.choice(CLASSES, size=200))
    protos = CLASSES * 2  # two prototypes per class
    perfect = (np.array(queries)[:, None] == np.array(protos)[None, :]).astype(float)
    r = zero_shot_accuracy(perfect, queries, protos, CLASSES)
    assert r["accuracy"] == 1.0 and r["balanced"] == 1.0 and set(r["per_class"].values()) == {1.0}
    constant = np.full((200, len(protos)), 0.3)
    r = zero_shot_accuracy(constant, queries, protos, CLASSES)
    assert r["accuracy"] == pytest.approx(0.2) and r["chance"] == pytest.approx(0.2)
    assert all(v == pytest.approx(0.2) for v in r["per_class"].values())


def test_zero_shot_counts_wrong_and_tied_answers_by_hand():
    sim = np.array([[0.9, 0.1, 0.0],   # a -> a: right
                    [0.2, 0.8, 0.8],   # b -> tie b/c: half credit
                    [0.7, 0.1, 0.2],   # c -> a: wrong
                    [0.0, 0.0, 0.5]])  # c -> c: right
    r = zero_shot_accuracy(sim, ["a", "b", "c", "c"], ["a", "b", "c"])
    assert r["per_class"] == {"a": 1.0, "b": 0.5, "c": 0.5}
    assert r["accuracy"] == pytest.approx(2.5 / 4)
    assert r["balanced"] == pytest.approx(2.0 / 3)


def test_retrieval_perfect_constant_and_curve():
    rng = np.random.default_rng(1)
    n, m = 50, 25
    noise = rng.uniform(0, 0.5, size=(n, m))
    perfect = noise.copy()
    perfect[:, 0] = 1.0
    assert retrieval_accuracy(perfect, np.zeros(n, dtype=int)) == 1.0
    assert retrieval_accuracy(np.ones((n, m)), np.zeros(n, dtype=int)) == pytest.approx(1 / m)
    curve = retrieval_curve(np.ones((n, m)), [1, 2, 5, 25])
    assert curve == pytest.approx({1: 1.0, 2: 0.5, 5: 0.2, 25: 0.04})
    # positive beats exactly the first 4 distractors: right for sizes <= 5, wrong after
    s = np.tile(np.arange(m, dtype=float), (n, 1))  # distractor j scores j
    s[:, 0] = 4.5
    assert retrieval_curve(s, [5, 6, 25]) == {5: 1.0, 6: 0.0, 25: 0.0}


def test_scoring_errors_name_the_bad_value():
    with pytest.raises(ValueError, match=r"expected \(2, 3\)"):
        zero_shot_accuracy(np.zeros((2, 2)), ["a", "b"], ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"without a prototype: \['z'\]"):
        zero_shot_accuracy(np.zeros((1, 2)), ["z"], ["a", "b"])
    with pytest.raises(ValueError, match="NaN or Inf"):
        top1_credit(np.array([[np.nan, 1.0]]), np.array([[True, False]]))
    with pytest.raises(ValueError, match=r"sizes \[26\] outside \[1, 25\]"):
        retrieval_curve(np.zeros((2, 25)), [26])


def test_mir_is_registered_and_unknown_names_list_it():
    assert "mir" in metric_names()
    assert get_metric("mir").name == "mir"
    with pytest.raises(StitoError, match="valid: mir"):
        get_metric("mirr")


def test_mir_features_of_a_sine_and_of_noise():
    t = np.arange(RATE * 3) / RATE
    sine = 0.5 * np.sin(2 * np.pi * 1500 * t)
    assert _feature(sine, "rms_dbfs") == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.01)
    assert _feature(sine, "crest_db") == pytest.approx(20 * np.log10(np.sqrt(2)), abs=0.05)
    assert _feature(sine, "centroid_log2_khz") == pytest.approx(np.log2(1.5), abs=0.05)
    bands = [n for n in FEATURE_NAMES if n.startswith("band_")]
    levels = [_feature(sine, b) for b in bands]
    assert bands[int(np.argmax(levels))] == "band_1000_2000_db"
    noise = np.random.default_rng(2).standard_normal(RATE * 3) * 0.1
    assert _feature(noise, "flatness_db") > -3.0 > -20.0 > _feature(sine, "flatness_db")
    # K-weighted loudness of white noise sits above its RMS (the high-shelf boost)
    assert _feature(noise, "loudness_lufs") > _feature(noise, "rms_dbfs") - 0.691


def test_mir_is_computed_per_channel_mid_and_side():
    rng = np.random.default_rng(3)
    left = rng.standard_normal(RATE * 3).astype(np.float32) * 0.1
    narrow = np.stack([left, 0.9 * left + 0.1 * rng.standard_normal(left.size).astype(np.float32) * 0.1])
    wide = np.stack([left, rng.standard_normal(left.size).astype(np.float32) * 0.1])
    mono = np.stack([left, left])
    side_rms = [_feature((x[0] - x[1]) / 2, "rms_dbfs") for x in (narrow, wide)]
    assert side_rms[1] > side_rms[0] + 10
    metric = get_metric("mir")
    emb = metric.embed(np.stack([mono, mono * 0.5, narrow, wide]), RATE)
    silent = np.zeros(len(FEATURE_NAMES), dtype=np.float32)
    silent[-1] = 1.0
    assert np.allclose(emb.side[0], silent) and np.allclose(emb.side[1], silent)  # mono: silent side only
    assert emb.mid[0] == pytest.approx(emb.mid[1], abs=1e-5)  # level alone is not style (peak-normalised)
    assert float(emb.side[2] @ emb.side[3]) < 0.99


def test_mir_similarity_follows_eq_not_content(dry_a, dry_b):
    from stito_server.effects.builtin import BuiltinEffect

    def lowpass(x: np.ndarray, hz: float) -> np.ndarray:
        e = BuiltinEffect("lowpass")
        e.set_values({"cutoff_hz": hz})
        return e.process(x, RATE)

    metric = get_metric("mir")
    emb = metric.embed(np.stack([lowpass(dry_a, 800.0), lowpass(dry_b, 800.0), dry_b]), RATE)
    same_style = metric.similarity(type(emb)(emb.mid[:1], emb.side[:1]), type(emb)(emb.mid[1:2], emb.side[1:2]))
    other_style = metric.similarity(type(emb)(emb.mid[:1], emb.side[:1]), type(emb)(emb.mid[2:], emb.side[2:]))
    assert same_style[0] > other_style[0] + 0.1
    assert _feature(lowpass(dry_a, 800.0).mean(axis=0), "centroid_log2_khz") < _feature(
        dry_a.mean(axis=0), "centroid_log2_khz") - 0.5


def test_tables_label_metrics_and_reproduce_the_command():
    from bench.common import command_line, metric_label

    assert metric_label("mfcc") == "MFCC"
    assert metric_label("afx:/tmp/cand/afx-rep-1a2b3c4d.pt") == "AFX-REP-1A2B3C4D"
    report = {"quick": True, "seed": 3, "results": {"mfcc": {}, "afx": {}}}
    assert command_line("retrieval", report) == "stito bench retrieval --quick --metrics mfcc,afx --seed 3"
