"""match(): parameter recovery with real effects and plugins, determinism, audio handling."""

import threading

import numpy as np
import pytest

from stito_server.audio import Audio
from stito_server.distances import multi_resolution_stft_distance
from stito_server.effects.builtin import BuiltinEffect
from stito_server.effects.chain import Chain, SearchDim
from stito_server.effects.vst3 import VST3Effect
from stito_server.errors import AudioError, CancelledError, StitoError
from stito_server.engine.match import MatchOptions, match
from stito_server.metrics import get_metric
from stito_server.engine.optimize import OptimizerOptions

from .conftest import RATE, vst3_path


def small(seed=0, gens=10, pop=16, **kw) -> MatchOptions:
    """A small unconstrained search (restraint off): these tests measure what the search can recover; the
    do-no-harm rules have their own tests (test_restraint.py)."""
    kw.setdefault("restraint", "off")
    return MatchOptions(optimizer=OptimizerOptions(popsize=pop, max_generations=gens, seed=seed),
                        excerpts=1, validation_excerpts=2, reference_windows=2, **kw)


def recover(make_chain, truth: list[dict], dry_a, dry_b, **kw):
    """Reference = dry_b through the chain at hidden settings; match dry_a; return errors and distances."""
    hidden = make_chain()
    for fx, values in zip(hidden.effects, truth):
        fx.set_values(values)
    reference = hidden.process(dry_b, RATE)
    oracle = hidden.process(dry_a, RATE)  # what the input would sound like with the true settings
    chain = make_chain()
    start_render = chain.process(dry_a, RATE)
    result = match(Audio(dry_a, RATE), Audio(reference, RATE), chain, get_metric("mfcc"), small(**kw))
    errors = {}
    for d in chain.dims:
        fx = chain.effects[d.effect]
        p = fx.params[d.param]
        true_value = truth[d.effect][p.name]
        errors[p.name] = abs(fx.get_normalized()[d.param] - p.to_normalized(true_value))
    before = multi_resolution_stft_distance(start_render, oracle, RATE)
    after = multi_resolution_stft_distance(result.output, oracle, RATE)
    return errors, before, after, result


def test_recovers_builtin_eq_gain_and_reverb_level(dry_a, dry_b):
    def make():
        eq, verb = BuiltinEffect("parametric_eq"), BuiltinEffect("reverb")
        return Chain([eq, verb], [SearchDim(0, eq.param_index("high_shelf_gain_db")),
                                  SearchDim(1, verb.param_index("wet_level"))])
    errors, before, after, result = recover(make, [{"high_shelf_gain_db": 9.0}, {"wet_level": 0.3}], dry_a, dry_b)
    assert errors["high_shelf_gain_db"] < 0.1 and errors["wet_level"] < 0.1, errors
    assert after < 0.7 * before
    assert result.similarity["after"] > result.similarity["before"] + 0.02


def test_recovers_vst3_compressor_threshold(dry_a, dry_b):
    def make():
        comp = VST3Effect(vst3_path("ZamCompX2"))
        comp.set_values({"Ratio": 8.0})
        return Chain([comp], [SearchDim(0, comp.param_index("Threshold"))])
    errors, before, after, _ = recover(make, [{"Threshold": -30.0}], dry_a, dry_b)
    assert errors["Threshold"] < 0.1, errors
    assert after < 0.7 * before


def test_recovers_mono_vst3_eq_run_dual_mono(dry_a, dry_b):
    def make():
        eq = VST3Effect(vst3_path("ZamEQ2"))
        assert eq.mono
        eq.set_values({"Boost/Cut 1": 0.01, "Boost/Cut 2": 0.01})  # exactly 0 dB renders NaN in ZamEQ2
        return Chain([eq], [SearchDim(0, eq.param_index("Boost/Cut H"))])
    errors, before, after, _ = recover(make, [{"Boost/Cut H": 8.0}], dry_a, dry_b)
    assert errors["Boost/Cut H"] < 0.1, errors
    assert after < 0.7 * before


def test_recovers_reverb_level_of_main_thread_only_plugin(dry_a, dry_b):
    def make():
        room = VST3Effect(vst3_path("DragonflyRoomReverb"))
        room.set_values({"Dry Level": 100.0, "Early Level": 0.0, "Late Level": 0.0})
        return Chain([room], [SearchDim(0, room.param_index("Late Level"))])
    assert not make().thread_safe  # Dragonfly keeps audio across reset: rendered on the calling thread
    errors, before, after, _ = recover(make, [{"Late Level": 40.0}], dry_a, dry_b, gens=6)
    # Measured over 8 runs (seeds 0-2, 6 and 10 generations): error 0.068-0.118. The reference is another
    # phrase, so MFCC's optimum sits ~0.09 off the true level, and Dragonfly's renders are not bit-stable
    # run to run (+-0.02); 0.1 failed about one run in three.
    assert errors["Late Level"] < 0.15, errors
    assert after < 0.7 * before


def gain_chain() -> Chain:
    eq, comp = BuiltinEffect("parametric_eq"), BuiltinEffect("compressor")
    return Chain([eq, comp], [SearchDim(0, eq.param_index("peak2_gain_db")),
                              SearchDim(0, eq.param_index("high_shelf_gain_db")),
                              SearchDim(1, comp.param_index("threshold_db"))])


def test_very_quiet_chain_output_is_still_gained_to_the_reference(dry_a, dry_b):
    """A chain 72 dB down sounds the same to a level-blind metric; BS.1770's -70 LUFS gate must not leave it silent."""
    from stito_server.audio import gain_loudness_lufs, loudness_lufs

    quiet = [BuiltinEffect("gain") for _ in range(3)]
    for g in quiet:
        g.set_values({"gain_db": -24.0})
    eq = BuiltinEffect("parametric_eq")
    chain = Chain([*quiet, eq], [SearchDim(3, eq.param_index("peak2_gain_db"))])
    result = match(Audio(dry_a, RATE), Audio(dry_b, RATE), chain, get_metric("mfcc"),
                   small(gens=2, pop=6, excerpt_seconds=2.0, loudness="reference"))
    raw = result.output * np.float32(10 ** (-result.output_gain_db / 20))  # the chain's own output
    assert loudness_lufs(raw, RATE) == -np.inf  # what the plain meter says: all blocks gated away
    assert result.output_gain_db == pytest.approx(72.0, abs=3.0)
    assert loudness_lufs(result.output, RATE) == pytest.approx(loudness_lufs(dry_b, RATE), abs=0.1)
    # the gain measure equals the meter at ordinary levels and follows the level dB for dB below the gate
    assert gain_loudness_lufs(dry_a, RATE) == pytest.approx(loudness_lufs(dry_a, RATE), abs=1e-6)
    assert gain_loudness_lufs(dry_a * np.float32(1e-4), RATE) == pytest.approx(loudness_lufs(dry_a, RATE) - 80, abs=1e-3)
    assert gain_loudness_lufs(np.zeros((2, RATE), np.float32), RATE) == -np.inf


def test_same_seed_same_result_and_inputs_untouched(dry_a, dry_b):
    ref = BuiltinEffect("distortion")
    ref.set_values({"drive_db": 20.0})
    reference = ref.process(dry_b, RATE)
    a_copy, r_copy = dry_a.copy(), reference.copy()
    runs = [match(Audio(dry_a, RATE), Audio(reference, RATE), gain_chain(), get_metric("mfcc"), small(seed=3, gens=3))
            for _ in range(2)]
    assert np.array_equal(runs[0].vector, runs[1].vector)
    assert np.array_equal(dry_a, a_copy) and np.array_equal(reference, r_copy)
    other = match(Audio(dry_a, RATE), Audio(reference, RATE), gain_chain(), get_metric("mfcc"), small(seed=4, gens=3))
    assert not np.array_equal(other.vector, runs[0].vector)


def test_amount_blends_from_start_and_mono_rate_preserved(dry_a, dry_b):
    mono_in = dry_a[:1, : int(4 * 44100)].copy()  # mono, treated as 44.1 kHz
    reference = dry_b  # stereo 48 kHz reference
    half = match(Audio(mono_in, 44100), Audio(reference, RATE), gain_chain(), get_metric("mfcc"),
                 small(gens=3, amount=0.5, excerpt_seconds=2.0))
    assert half.output.shape == mono_in.shape and half.sample_rate == 44100
    assert np.allclose(half.vector, half.start_vector + 0.5 * (half.matched_vector - half.start_vector))
    assert not np.allclose(half.matched_vector, half.start_vector)
    none = match(Audio(mono_in, 44100), Audio(reference, RATE), gain_chain(), get_metric("mfcc"),
                 small(gens=3, amount=0.0, excerpt_seconds=2.0, loudness="input"))
    assert none.loudness_lufs["output"] == pytest.approx(none.loudness_lufs["input"], abs=1e-6)
    assert half.output_gain_db == 0.0 and half.loudness_lufs["output"] == half.loudness_lufs["chain_output"]
    assert np.array_equal(none.vector, none.start_vector)
    assert not any(p.changed for p in none.parameters) and none.changed() == []


def test_amount_per_effect_leaves_an_effect_at_zero_exactly_at_its_start(dry_a, dry_b):
    from stito_server.engine.match import effect_amounts

    full = match(Audio(dry_a, RATE), Audio(dry_b, RATE), gain_chain(), get_metric("mfcc"),
                 small(gens=3, excerpt_seconds=2.0, amount="compressor=0"))
    dims = np.array([d.effect for d in gain_chain().dims])
    assert np.array_equal(full.vector[dims == 1], full.start_vector[dims == 1])  # the compressor: at its start
    moved = full.vector[dims == 0] != full.start_vector[dims == 0]
    assert moved.any() and np.array_equal(full.vector[dims == 0], full.matched_vector[dims == 0])  # the EQ: matched
    assert full.report()["amounts"] == {"parametric_eq": 1.0, "compressor": 0.0}
    half = effect_amounts(gain_chain(), "parametric_eq=0.5")
    assert half == {"parametric_eq": 0.5, "compressor": 1.0} and effect_amounts(gain_chain(), 0.3)["compressor"] == 0.3
    # REAPER chains name effects "N:Plugin": the plugin name alone is enough when it is unique
    reaper_like = Chain([BuiltinEffect("gain", "1:ZamEQ2"), BuiltinEffect("gain", "2:ZamCompX2")])
    assert effect_amounts(reaper_like, "zameq2=0.25") == {"1:ZamEQ2": 0.25, "2:ZamCompX2": 1.0}
    for bad, says in (("reverb=0.5", "amount names 'reverb', which is no effect of chain 'custom'; its effects: "
                                     "parametric_eq, compressor"),
                      ("compressor=1.5", "amount 'compressor=1.5': give effect=amount with an amount from 0 to 1"),
                      ("compressor", "amount 'compressor': give effect=amount"),
                      ("compressor=0,compressor=1", "amount names effect 'compressor' twice")):
        with pytest.raises(StitoError) as err:
            effect_amounts(gain_chain(), bad)
        assert says in str(err.value)
        if "=" in bad and "1.5" in bad:
            with pytest.raises(StitoError, match="from 0 to 1"):
                MatchOptions(amount=bad)  # the options refuse it before any chain is known


def test_several_references_average_their_embeddings_and_one_in_a_list_is_one(dry_a, dry_b):
    from stito_server.engine.scoring import objective_parts
    from stito_server.examples import phrase

    refs = [Audio(dry_b, RATE), Audio(phrase(6.0, RATE, seed=33), RATE), Audio(phrase(6.0, RATE, seed=34), RATE)]
    opts = small(gens=2, excerpt_seconds=2.0)
    metric = get_metric("stats")
    single = match(Audio(dry_a, RATE), refs[0], gain_chain(), metric, opts)
    listed = match(Audio(dry_a, RATE), refs[:1], gain_chain(), metric, opts)
    assert np.array_equal(single.output, listed.output) and single.report()["references"] == listed.report()["references"]
    _, _, target, _ = objective_parts(Audio(dry_a, RATE), refs, metric, opts)
    assert len(target.references) == 3
    mean = metric.average(type(target.reference)(np.concatenate([e.mid for e in target.references]),
                                                 np.concatenate([e.side for e in target.references])))
    assert np.allclose(target.reference.mid, mean.mid) and np.allclose(target.reference.side, mean.side)
    three = match(Audio(dry_a, RATE), refs, gain_chain(), metric, opts)
    rows = three.report()["references"]
    assert len(rows) == 3 and all(r["similarity_to_target"] <= 1.0 for r in rows)
    assert three.loudness_lufs["reference"] == pytest.approx(np.mean([r["loudness_lufs"] for r in rows]))
    with pytest.raises(AudioError, match="reference 2"):
        match(Audio(dry_a, RATE), [refs[0], Audio(np.zeros((2, RATE * 2), np.float32), RATE)], gain_chain(), metric,
              opts)


def test_progress_each_generation_and_cancel(dry_a, dry_b):
    seen = []
    match(Audio(dry_a, RATE), Audio(dry_b, RATE), gain_chain(), get_metric("mfcc"),
          small(gens=3, pop=8), progress=seen.append)
    assert [p.generation for p in seen] == [1, 2, 3] and seen[-1].evaluations == 24
    stop = threading.Event()
    calls = []

    def progress(p):
        calls.append(p)
        stop.set()  # cancel after the first generation

    with pytest.raises(CancelledError, match="cancelled after 1 generations"):
        match(Audio(dry_a, RATE), Audio(dry_b, RATE), gain_chain(), get_metric("mfcc"), small(gens=5, pop=8),
              progress=progress, cancelled=stop.is_set)
    assert len(calls) == 1


def test_silent_and_nonfinite_input_refused(dry_b):
    with pytest.raises(AudioError, match="input is silent"):
        match(Audio(np.zeros((2, RATE * 3), np.float32), RATE), Audio(dry_b, RATE), gain_chain(), get_metric("mfcc"))
    bad = dry_b.copy()
    bad[0, 100] = np.nan
    with pytest.raises(AudioError, match="reference contains 1 NaN/Inf samples"):
        match(Audio(dry_b, RATE), Audio(bad, RATE), gain_chain(), get_metric("mfcc"))


def test_scorer_renders_identical_rows_once_and_keeps_row_order(dry_a, dry_b):
    from stito_server.engine.scoring import Scorer
    from stito_server.engine.render import Clip, Renderer

    eq = BuiltinEffect("parametric_eq")
    chain = Chain([eq], [SearchDim(0, eq.param_index("high_shelf_gain_db"))])
    metric = get_metric("mfcc")
    ref = metric.embed(dry_b[None, :, : RATE], RATE).mean()
    with Renderer(chain, 2) as renderer:
        rendered_rows = []
        plain_map = renderer.render_map

        def counting_map(xs, *a, **kw):
            rendered_rows.append(len(xs))
            return plain_map(xs, *a, **kw)

        renderer.render_map = counting_map
        scorer = Scorer(renderer, metric, ref, [Clip(dry_a[:, : RATE], 0)], RATE, True, True)
        xs = np.array([[0.1], [0.9], [0.1], [0.5], [0.9]])
        sims = scorer(xs)
        alone = scorer(np.array([[0.9], [0.5]]))
    assert rendered_rows == [3, 2]
    assert sims[0] == sims[2] and sims[1] == sims[4] and len(set(sims.tolist())) == 3
    np.testing.assert_allclose([sims[1], sims[3]], alone, rtol=1e-6)
    assert scorer.last_errors == [None, None]


def test_score_settings_maps_the_objective_and_leaves_the_chain(dry_a, dry_b):
    from stito_server.engine.match import score_settings

    eq = BuiltinEffect("parametric_eq")
    chain = Chain([eq], [SearchDim(0, eq.param_index("high_shelf_gain_db"))])
    chain.set_vector(np.array([0.8]))
    reference = chain.process(dry_a, RATE)  # the input itself at 0.8
    chain.set_vector(np.array([0.35]))
    # the whole clip: the reference window is the input's; the metric's objective (the reference is the input's own
    # performance: by default it would be compared moment by moment instead, below)
    opts = small(excerpt_seconds=dry_a.shape[1] / RATE, same_performance="off")
    grid = np.linspace(0, 1, 11)[:, None]
    scores = score_settings(Audio(dry_a, RATE), Audio(reference, RATE), chain, get_metric("mfcc"), grid, opts)
    assert set(scores) == {"analysis", "validation"} and scores["analysis"].shape == scores["validation"].shape == (11,)
    assert int(np.argmax(scores["analysis"])) == 8 and scores["analysis"][8] == pytest.approx(1.0, abs=1e-5)
    # further from the truth scores lower on both sides
    a = scores["analysis"]
    assert a[0] < a[4] < a[8] and a[10] < a[8] - 1e-4
    # the same-performance objective (the default here): 0 at the reference's own setting, lower on both sides
    aligned = score_settings(Audio(dry_a, RATE), Audio(reference, RATE), chain, get_metric("mfcc"), grid,
                             small(excerpt_seconds=dry_a.shape[1] / RATE))["analysis"]
    assert int(np.argmax(aligned)) == 8 and aligned[8] == pytest.approx(0.0, abs=1e-4)
    assert aligned[0] < aligned[4] < aligned[8] and aligned[10] < aligned[8] - 1e-3
    assert chain.get_vector() == pytest.approx([0.35])  # the caller's settings, not the last one scored
    with pytest.raises(StitoError, match=r"takes \(k, 1\) settings in \[0, 1\].*got shape \(2, 2\)"):
        score_settings(Audio(dry_a, RATE), Audio(reference, RATE), chain, get_metric("mfcc"), np.zeros((2, 2)))
    with pytest.raises(StitoError, match="with values outside"):
        score_settings(Audio(dry_a, RATE), Audio(reference, RATE), chain, get_metric("mfcc"), np.array([[1.5]]))
