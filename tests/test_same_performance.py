"""A reference that is the input's own performance, processed: detected, aligned, and matched moment by moment."""

import json

import numpy as np
import pytest

from stito_server.audio import Audio
from stito_server.effects.builtin import BuiltinEffect
from stito_server.effects.specs import load_chain
from stito_server.engine.aligned_scoring import AlignedScorer, LevelMel, aligned_window
from stito_server.engine.alignment import ALIGNMENT_FILE, align, load_same_performance_floors, load_threshold
from stito_server.engine.match import MatchOptions, make_renderer, match
from stito_server.engine.render import Clip
from stito_server.errors import StitoError
from stito_server.examples import phrase
from stito_server.metrics import DEFAULT_METRIC, get_metric
from stito_server.resources import package_dir

from .conftest import RATE


def _through(x: np.ndarray, effect: str, **values: float) -> np.ndarray:
    fx = BuiltinEffect(effect)
    fx.set_values(values)
    return fx.process(x, RATE)


def test_the_shipped_threshold_passes_no_training_pair_of_another_performance():
    entry = json.loads((package_dir("models") / ALIGNMENT_FILE).read_text())
    assert load_threshold() == entry["coherence_threshold"]
    assert "stito train alignment" in entry["command"]
    others = [p["coherence"] for p in entry["pairs"] if p["kind"] in ("same recording", "other recording")]
    selves = [p["coherence"] for p in entry["pairs"] if p["kind"] == "self"]
    assert len(others) >= 40 and len(selves) >= 20
    # the threshold is the middle of the gap between the other pairs and the input through a style
    assert max(others) < entry["coherence_threshold"] == pytest.approx((max(others) + min(selves)) / 2)
    assert entry["passed"]["self"] == 1.0 and entry["passed"]["other recording"] == 0.0


@pytest.mark.parametrize("processing, lag_ms", [
    ("identical", 0), ("high-pass", 0), ("reverb", 0), ("compressor", 0), ("high-pass, 100 ms later", 100),
    ("high-pass, 37 ms earlier", -37)])
def test_the_input_processed_is_detected_at_its_lag(dry_a, processing, lag_ms):
    ref = dry_a
    if processing.startswith("high-pass"):
        ref = _through(dry_a, "parametric_eq", low_cut_hz=600.0)
    elif processing == "reverb":
        ref = _through(dry_a, "reverb", room_size=0.7, wet_level=0.3)
    elif processing == "compressor":
        ref = _through(dry_a, "compressor", threshold_db=-30.0, ratio=8.0, makeup_gain_db=12.0)
    shift = int(round(lag_ms * RATE / 1000))
    if shift > 0:
        ref = np.concatenate([np.zeros((2, shift), np.float32), ref], axis=1)
    elif shift < 0:
        ref = ref[:, -shift:]
    al = align(Audio(dry_a, RATE), Audio(ref, RATE))
    assert al.same_performance, al
    assert al.lag_s * 1000 == pytest.approx(lag_ms, abs=1.0)  # to the sample where the waveforms agree
    assert al.report()["detected"] is True and "same performance" in al.line()


def test_another_phrase_or_another_moment_of_the_same_beat_is_not_the_same_performance(dry_a, dry_b):
    for ref in (dry_b, _through(dry_b, "parametric_eq", low_cut_hz=600.0)):
        al = align(Audio(dry_a, RATE), Audio(ref, RATE))
        assert not al.same_performance and al.coherence < 0.1, al
        assert "no (" in al.line()
    # the phrase one second on: its beat lines up (onsets correlate), its waveform is not the input's
    al = align(Audio(dry_a, RATE), Audio(dry_a[:, RATE:], RATE))
    assert al.onset_score > 0.9 and al.coherence < 0.15 and not al.same_performance, al
    # the input itself at another sample rate is found as the same performance (the reference is resampled)
    from stito_server.audio import resample

    al = align(Audio(dry_a, RATE), Audio(resample(dry_a, RATE, 44100), 44100))
    assert al.same_performance and abs(al.lag_s) < 0.001, al


def test_the_aligned_scorer_is_zero_at_the_reference_and_worse_away_from_it(dry_a):
    """The full-reference objective: 0 when the render is the reference (any level), lower the further it is."""
    chain = load_chain("pedalboard-strip")
    ref = _through(dry_a, "parametric_eq", low_cut_hz=600.0)
    clips = [Clip(dry_a[:, RATE - 2400:3 * RATE], 2400, RATE), Clip(dry_a[:, 3 * RATE - 2400:5 * RATE], 2400, 3 * RATE)]
    with make_renderer(chain, MatchOptions(workers=1)) as renderer:
        scorer = AlignedScorer(renderer, clips, RATE, ref, 0, pipeline=False)
        low_cut = chain.dim_names().index("parametric_eq.low_cut_hz")
        param = chain.effects[chain.dims[low_cut].effect].params[chain.dims[low_cut].param]
        xs = np.repeat(chain.get_vector()[None], 3, axis=0)
        for row, hz in zip(xs[1:], (200.0, 600.0)):
            row[low_cut] = param.to_normalized(hz)
        sims = scorer(xs)
    assert sims[0] < sims[1] < sims[2] and sims[2] > -0.005, sims  # 20 Hz, 200 Hz, 600 Hz (the reference's)
    assert scorer.dry() == pytest.approx(sims[0], abs=0.01)
    # level-blind: the reference 12 dB down is compared the same
    feats = LevelMel(RATE)
    window = aligned_window(ref, RATE, RATE)
    assert np.allclose(feats(window[None]), feats(window[None] * 0.25), atol=1e-3)
    assert scorer.whole(ref) == pytest.approx(0.0, abs=1e-6)


def test_aligned_windows_outside_the_reference_are_silence():
    ref = np.ones((2, 10), np.float32)
    assert aligned_window(ref, -3, 5).tolist() == [[0, 0, 0, 1, 1]] * 2
    assert aligned_window(ref, 8, 4).tolist() == [[1, 1, 0, 0]] * 2


def test_a_before_after_pair_is_matched_moment_by_moment(dry_a):
    """The input through a compressor as reference: found as the same performance, matched without the prior;
    the compressor engages, the reverb, delay and distortion stay at their starts, and the output ends closer to
    the reference than the input was (MR-STFT)."""
    from stito_server.distances import multi_resolution_stft_distance

    ref = _through(dry_a, "compressor", threshold_db=-30.0, ratio=8.0, attack_ms=2.0, release_ms=80.0)
    result = match(Audio(dry_a, RATE), Audio(ref, RATE), load_chain("pedalboard-strip"), get_metric(DEFAULT_METRIC),
                   MatchOptions.fast(time_budget_s=None, seed=0))
    report = result.report()
    assert report["same_performance"]["detected"] is True
    json.dumps(report, allow_nan=False)
    from stito_server.cli import summary

    assert report["same_performance"]["line"] in summary(report, "pedalboard-strip").splitlines()
    assert result.restraint.accepted, result.restraint.reason
    engaged = {e.effect: e.engaged for e in result.restraint.effects}
    assert engaged["compressor"] and not any(engaged[n] for n in ("distortion", "delay", "reverb")), engaged
    assert result.restraint.source.startswith(ALIGNMENT_FILE)
    def levelled(x: np.ndarray) -> np.ndarray:  # at the reference's RMS: the distance is not level-blind
        return x * np.sqrt(np.mean(np.square(ref)) / np.mean(np.square(x)))

    before = multi_resolution_stft_distance(levelled(dry_a), ref, RATE)
    after = multi_resolution_stft_distance(levelled(result.output), ref, RATE)
    assert after < 0.7 * before, (before, after)
    # the search was the same-performance one: 1.5 x the generations, with coordinate probes
    assert len(result.search.trajectory) > MatchOptions.fast().optimizer.max_generations


def test_same_performance_off_and_several_references_keep_the_usual_match(dry_a):
    ref = _through(dry_a, "parametric_eq", low_cut_hz=600.0)
    opts = MatchOptions.fast(time_budget_s=None, seed=0, max_generations=2, same_performance="off")
    result = match(Audio(dry_a, RATE), Audio(ref, RATE), load_chain("pedalboard-strip"), get_metric(DEFAULT_METRIC),
                   opts)
    assert result.same_performance is None and result.report()["same_performance"] is None
    assert not result.restraint.source.startswith(ALIGNMENT_FILE)
    result = match(Audio(dry_a, RATE), [Audio(ref, RATE), Audio(ref, RATE)], load_chain("pedalboard-strip"),
                   get_metric(DEFAULT_METRIC), MatchOptions.fast(time_budget_s=None, seed=0, max_generations=2))
    assert result.same_performance is None


def test_same_performance_option_is_checked_and_the_paper_preset_turns_it_off():
    with pytest.raises(StitoError, match="same_performance must be one of auto, off, got 'yes'"):
        MatchOptions.fast(same_performance="yes")
    assert MatchOptions.paper().same_performance == "off" and MatchOptions.fast().same_performance == "auto"
    search = MatchOptions.fast().same_performance_search()
    assert search.max_generations == 24 and search.time_budget_s == 13.0 and search.probe_values == (0.0, 0.5, 1.0)
    assert search.probe_steps == (-0.1, 0.1)


def test_probe_steps_find_a_small_move_of_one_coordinate_among_many():
    """A shelf a few dB up among an EQ's 20 parameters: the step beside the start finds it, the absolute probes
    (0, 0.5, 1) do not."""
    from stito_server.engine.optimize import probe_coordinates

    x0 = np.full(20, 0.5)
    optimum = x0.copy()
    optimum[3], optimum[7] = 0.6, 0.4

    def score(xs: np.ndarray) -> np.ndarray:
        return -np.sum(np.square(xs - optimum), axis=1)

    base = float(score(x0[None])[0])
    x, best, evaluations = probe_coordinates(score, x0, base, (0.0, 0.5, 1.0))
    assert np.array_equal(x, x0) and best == base  # 0 and 1 overshoot, 0.5 is the start
    x, best, evaluations = probe_coordinates(score, x0, base, (0.0, 0.5, 1.0), (-0.1, 0.1))
    assert x == pytest.approx(optimum) and best == pytest.approx(0.0)
    assert evaluations == 20 * 2 + 20 * 2 + 1  # 0 and 1, the two steps, then the two gaining coordinates together


def test_the_same_performance_floors_are_shipped_with_their_source():
    floors = load_same_performance_floors()
    assert floors.prior_weight == 0.0 and floors.effect > 0 and floors.gain > 0 and not floors.relative
    assert "stito train alignment" in floors.source
