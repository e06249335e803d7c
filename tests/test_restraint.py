"""Do-no-harm: references without a style change nothing, the start is transparent, only the needed effect engages."""

import json

import numpy as np
import pytest

from stito_server.audio import Audio
from stito_server.effects.builtin import BuiltinEffect
from stito_server.effects.specs import load_chain
from stito_server.engine.match import MatchOptions, match
from stito_server.engine.restraint import FLOORS_FILE, load_floors
from stito_server.examples import phrase
from stito_server.metrics import DEFAULT_METRIC, get_metric
from stito_server.resources import package_dir

from .conftest import RATE


def _db(x: np.ndarray) -> float:
    return 10 * np.log10(max(float(np.mean(np.square(x, dtype=np.float64))), 1e-30))


def _default_match(input_audio: np.ndarray, reference: np.ndarray, chain: str = "pedalboard-strip", **changes):
    # the product's default search without its time budget (a fixed seed gives a fixed result on any machine)
    opts = MatchOptions.fast(time_budget_s=None, seed=0, **changes)
    return match(Audio(input_audio, RATE), Audio(reference, RATE), load_chain(chain), get_metric(DEFAULT_METRIC), opts)


def _assert_unchanged(result, input_audio: np.ndarray) -> None:
    assert result.restraint is not None and not result.restraint.accepted, result.restraint
    assert "nothing changed" in result.restraint.reason
    assert np.array_equal(result.vector, result.start_vector) and not result.changed()
    # the start of the shipped strip is transparent: what is left differs from the input by 40 dB less than it
    assert _db(result.output - input_audio) < _db(input_audio) - 40.0
    report = result.report()
    assert report["restraint"]["accepted"] is False and report["restraint"]["lines"][0].startswith("restraint: ")
    json.dumps(report["restraint"], allow_nan=False)


def test_the_shipped_floors_were_measured_on_training_matches():
    entry = json.loads((package_dir("models") / FLOORS_FILE).read_text())["metrics"][DEFAULT_METRIC]
    floors = load_floors(DEFAULT_METRIC)
    assert floors is not None and floors.gain > 0 and floors.effect > 0 and floors.prior_weight > 0
    assert entry["cases"] >= 20 and "stito train restraint" in entry["command"]
    # the floor is the stated quantile of the no-style gains measured on the training corpus
    assert floors.gain == pytest.approx(np.quantile(entry["gains"], entry["quantile"]))
    # the prior weight is the swept one with the lowest styled oracle distance, per unit of the start's distance
    best = min(entry["sweep"], key=lambda s: s["styled_mrstft_db"])
    assert floors.relative and entry["calibrated_prior_weight"] == pytest.approx(best["prior_weight"])
    assert floors.prior_weight == pytest.approx(best["prior_weight"] / entry["reference_distance"])
    assert load_floors("no-such-metric") is None


def test_the_input_as_its_own_reference_changes_nothing(dry_a):
    result = _default_match(dry_a, dry_a)
    _assert_unchanged(result, dry_a)


def test_another_clip_of_the_same_unprocessed_recording_changes_nothing():
    recording = phrase(12.0, RATE, seed=21)
    first, second = recording[:, : 6 * RATE], recording[:, 6 * RATE:]
    result = _default_match(first, second)
    _assert_unchanged(result, first)


def _high_pass(x: np.ndarray, hz: float = 600.0, times: int = 2) -> np.ndarray:
    hp = BuiltinEffect("parametric_eq")
    hp.set_values({"low_cut_hz": hz})
    for _ in range(times):
        x = hp.process(x, RATE)
    return x


def test_the_metric_points_a_high_pass_reference_to_the_low_cut(dry_a):
    """The metric's side of the high-pass case: the chain's low cut alone, swept on the input, comes steadily
    closer to the input through a 600 Hz high-pass (twice, 24 dB/octave) up to 1 kHz, and at 600 Hz closes over
    70 % of the start's distance (measured: -0.199 at 20 Hz, -0.043 at 600 Hz, -0.019 at 1 kHz)."""
    metric = get_metric(DEFAULT_METRIC)
    dry = metric.embed(dry_a[None], RATE)
    target = metric.targets(metric.embed(_high_pass(dry_a)[None], RATE), dry, dry)
    sims = [float(metric.similarity(metric.embed(_high_pass(dry_a, hz, 1)[None], RATE), target)[0])
            for hz in (20.0, 100.0, 200.0, 400.0, 600.0, 1000.0)]
    assert all(b > a for a, b in zip(sims, sims[1:])), sims
    assert (sims[4] - sims[0]) / -sims[0] > 0.7, sims


@pytest.mark.parametrize("source", [
    # the input itself through the high-pass: a same-performance match (engine/alignment.py), scored moment by moment
    "the input itself",
    pytest.param("another phrase", marks=pytest.mark.xfail(strict=True, reason=(
        "issue 18, not met yet: the prior and the floors both grow with the start's distance (0.63 per unit of "
        "squared normalised move, 0.49), so an effect engages only when the share r of the start's distance it wins "
        "minus 0.63 x its squared move reaches 0.49; the low cut alone, swept with the metric, peaks at "
        "r - 0.63 u^2 = 0.30 (600 Hz: r 0.78, u 0.87; measured on the identical clip), so nothing changes with "
        "another phrase through the high-pass as reference")))])
def test_a_high_pass_reference_engages_only_the_filter(dry_a, dry_b, source):
    reference = _high_pass(dry_a if source == "the input itself" else dry_b)
    result = _default_match(dry_a, reference)
    assert result.same_performance.same_performance == (source == "the input itself"), result.same_performance
    assert result.restraint.accepted, result.restraint.reason
    engaged = {e.effect: e.engaged for e in result.restraint.effects}
    assert engaged["parametric_eq"], result.restraint.lines()
    for name in ("distortion", "delay", "reverb"):
        assert not engaged[name], result.restraint.lines()
    changed = {(p.effect, p.param): p for p in result.changed()}
    assert not any(effect in ("distortion", "delay", "reverb") for effect, _ in changed)
    low_cut = next(p for p in result.parameters if p.param == "low_cut_hz")
    assert low_cut.after > 100.0, low_cut  # the filter moved up from 20 Hz towards the reference's 600 Hz
    # the chain's level stays within a few dB of the input's (the level penalty)
    assert abs(result.level_change_db) < 4.0


def test_restraint_off_is_the_unconstrained_search(dry_a):
    result = _default_match(dry_a, dry_a, restraint="off", max_generations=2)
    assert result.restraint is None and result.report()["restraint"] is None


@pytest.mark.parametrize("bad", [{"restraint": "maybe"}, {"prior_weight": -1.0}, {"gain_floor": float("nan")}])
def test_restraint_options_are_checked(bad):
    from stito_server.errors import StitoError

    with pytest.raises(StitoError, match=next(iter(bad))):
        MatchOptions.fast(**bad)
