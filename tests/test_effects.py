"""Effects and chains over real pedalboard processors and real Zam/Dragonfly VST3 plugins."""

import numpy as np
import pedalboard as pb
import pytest

from stito_server.effects.builtin import BuiltinEffect
from stito_server.effects.chain import Chain, SearchDim
from stito_server.effects.fast_dsp import Biquad, run_processors
from stito_server.effects.vst3 import VST3Effect
from stito_server.errors import ChainError, RenderError

from .conftest import RATE, vst3_path


def test_builtin_effect_changes_audio_without_touching_the_input(dry_a):
    eq = BuiltinEffect("parametric_eq")
    eq.set_values({"high_shelf_gain_db": 12.0, "high_shelf_cutoff_hz": 4000.0})
    before = dry_a.copy()
    out = eq.process(dry_a, RATE)
    assert np.array_equal(dry_a, before)
    assert out.shape == dry_a.shape and out.dtype == np.float32
    # A +12 dB shelf above 4 kHz raises high-band energy by roughly 12 dB.
    def band_db(x):
        spec = np.abs(np.fft.rfft(x[0])) ** 2
        f = np.fft.rfftfreq(x.shape[1], 1 / RATE)
        return 10 * np.log10(spec[(f > 8000) & (f < 16000)].sum())
    assert band_db(out) - band_db(dry_a) == pytest.approx(12.0, abs=1.5)


def test_compressor_threshold_reduces_level(dry_a):
    comp = BuiltinEffect("compressor")
    comp.set_values({"threshold_db": -30.0, "ratio": 10.0})
    rms = lambda x: 20 * np.log10(np.sqrt(np.mean(x ** 2)))
    assert rms(comp.process(dry_a, RATE)) < rms(dry_a) - 3.0


@pytest.mark.parametrize("drive_db, mix, out_db", [(0.0, 1.0, 0.0), (12.5, 0.6, -6.0), (40.0, 0.25, 9.0)])
def test_builtin_distortion_renders_what_pedalboard_distortion_does(dry_a, drive_db, mix, out_db):
    # The distortion's tanh stage is numpy (TanhDrive), not pedalboard.Distortion: same audio, faster.
    dist = BuiltinEffect("distortion")
    dist.set_values({"drive_db": drive_db, "mix": mix, "output_gain_db": out_db})
    before = dry_a.copy()
    out = dist.process(dry_a, RATE)
    assert np.array_equal(dry_a, before)
    ref = pb.Pedalboard([pb.Distortion(drive_db=drive_db), pb.Gain(gain_db=out_db)])(dry_a, RATE)
    ref = (1.0 - mix) * dry_a + mix * ref
    assert out.dtype == np.float32 and out.shape == dry_a.shape
    assert np.abs(out - ref).max() < 2e-6
    assert np.abs(out - dry_a).max() > 1e-3


# pedalboard's filter for each Biquad kind, and the cut-off range the parametric EQ gives it (Hz)
PEDALBOARD_FILTERS = {"peak": (pb.PeakFilter, 50, 16000), "low_shelf": (pb.LowShelfFilter, 30, 500),
                      "high_shelf": (pb.HighShelfFilter, 1500, 16000), "highpass": (pb.HighpassFilter, 20, 1000),
                      "lowpass": (pb.LowpassFilter, 1000, 20000)}


def error_db(out: np.ndarray, ref: np.ndarray) -> float:
    """RMS of the difference relative to the RMS of ``ref``, in dB."""
    return float(20 * np.log10(np.sqrt(np.mean((out - ref) ** 2)) / np.sqrt(np.mean(ref ** 2))))


@pytest.mark.parametrize("kind", list(PEDALBOARD_FILTERS))
def test_biquads_filter_as_pedalboard_filters_do(dry_a, kind):
    cls, f_lo, f_hi = PEDALBOARD_FILTERS[kind]
    rng = np.random.default_rng(3)
    for _ in range(6):
        f, q, g = float(np.exp(rng.uniform(np.log(f_lo), np.log(f_hi)))), float(rng.uniform(0.3, 6)), float(rng.uniform(-18, 18))
        ours = Biquad(kind)
        ours.cutoff_frequency_hz, ours.q, ours.gain_db = f, q, g
        theirs = cls(cutoff_frequency_hz=f)
        if kind not in ("highpass", "lowpass"):
            theirs.q, theirs.gain_db = q, g
        out, ref = ours(dry_a, RATE), theirs(dry_a, RATE)
        assert out.dtype == np.float32
        # the same filter; JUCE runs it in float32, which drifts at low cut-offs (0.08 dB at 20 Hz for a 51 Hz
        # shelf), ours in float64: the outputs differ by at most -40 dB, typically by about -100 dB
        assert error_db(out, ref) < -40.0, (kind, f, q, g)
    with pytest.raises(ValueError, match=r"unknown filter kind 'notch'; valid: peak, low_shelf"):
        Biquad("notch")


def test_parametric_eq_renders_what_pedalboard_filters_do(dry_a):
    eq = BuiltinEffect("parametric_eq")
    eq.set_values({"low_cut_hz": 120.0, "low_shelf_gain_db": 4.0, "peak2_gain_db": -9.0, "peak2_cutoff_hz": 700.0,
                   "peak2_q": 2.0, "high_shelf_gain_db": 6.0, "high_cut_hz": 9000.0})
    v = eq.values()
    board = [pb.HighpassFilter(120.0)]
    for band, cls in [("low_shelf", pb.LowShelfFilter), ("peak1", pb.PeakFilter), ("peak2", pb.PeakFilter),
                      ("peak3", pb.PeakFilter), ("peak4", pb.PeakFilter), ("high_shelf", pb.HighShelfFilter)]:
        board.append(cls(v[f"{band}_cutoff_hz"], v[f"{band}_gain_db"], v[f"{band}_q"]))
    ref = pb.Pedalboard(board + [pb.LowpassFilter(9000.0)])(dry_a, RATE)
    before = dry_a.copy()
    out = eq.process(dry_a, RATE)
    assert np.array_equal(dry_a, before)
    assert error_db(out, ref) < -40.0
    assert error_db(out, dry_a) > -10.0  # the settings do change the audio


def test_run_processors_returns_new_audio_even_with_nothing_to_run(dry_a):
    out = run_processors([], dry_a, RATE)
    assert out is not dry_a and np.array_equal(out, dry_a)


def test_unknown_builtin_and_parameter_list_options():
    with pytest.raises(ChainError, match=r"unknown built-in effect 'compresor'; valid: compressor"):
        BuiltinEffect("compresor")
    with pytest.raises(ChainError, match=r"has no parameter 'treshold_db'; valid: threshold_db"):
        BuiltinEffect("compressor").set_values({"treshold_db": -3})


def test_vst3_parameters_read_from_plugin_without_non_audio_ones():
    comp = VST3Effect(vst3_path("ZamCompX2"))
    names = [p.name for p in comp.params]
    assert names[:6] == ["Attack", "Release", "Knee", "Ratio", "Threshold", "Makeup"]
    for hidden in ("Buffer Size", "Sample Rate", "Current Program", "Gain Reduction", "Output Level"):
        assert hidden not in names
    thr = comp.params[comp.param_index("Threshold")]
    assert (thr.unit, thr.min, thr.max) == ("dB", -80.0, 0.0)
    comp.set_values({"Threshold": -12.0})
    text = comp.param_text(comp.param_index("Threshold"))  # the plugin's own display, e.g. "-11.999998 dB"
    assert text.endswith(" dB") and float(text.split()[0]) == pytest.approx(-12.0, abs=0.01)
    assert comp.param_value(comp.param_index("threshold")) == pytest.approx(-12.0, abs=0.05)
    # discrete parameters are snapped to the plugin's own steps
    i = comp.param_index("Stereo Detection")
    x = comp.get_normalized()
    x[i] = 0.8
    comp.set_normalized(x)
    assert comp.get_normalized()[i] == 1.0


def test_mono_plugin_runs_dual_mono_on_stereo(dry_a):
    eq = VST3Effect(vst3_path("ZamEQ2"))
    assert eq.mono
    eq.set_values({"Boost/Cut L": 9.0, "Boost/Cut 1": 0.5, "Boost/Cut 2": 0.5})
    out = eq.process(dry_a, RATE)
    assert out.shape == dry_a.shape
    # each channel processed on its own: the left output equals a mono render of the left input
    assert np.allclose(out[0], eq.process(dry_a[:1], RATE)[0], atol=1e-6)
    assert not np.allclose(out[0], out[1])


def test_zameq2_nan_at_exactly_0db_is_caught_and_named(dry_a):
    eq = VST3Effect(vst3_path("ZamEQ2"), name="eq")
    x = eq.get_normalized()
    x[eq.param_index("Boost/Cut 1")] = 0.7142857313156128  # exactly 0 dB, the plugin's default
    eq.set_normalized(x)
    with pytest.raises(RenderError, match="effect 'eq' produced NaN/Inf audio"):
        Chain([eq]).process(dry_a, RATE)


def test_chain_vector_length_and_mapping(dry_a):
    comp = BuiltinEffect("compressor")
    i = comp.param_index("threshold_db")
    lo, hi = comp.params[i].with_range(-40.0, -10.0)
    chain = Chain([BuiltinEffect("gain"), comp], [SearchDim(0, 0), SearchDim(1, i, lo, hi)])
    assert chain.dim_names() == ["gain.gain_db", "compressor.threshold_db"]
    with pytest.raises(ValueError, match=r"takes a vector of 2 values \(gain.gain_db, compressor.threshold_db\)"):
        chain.set_vector(np.zeros(3))
    chain.set_vector(np.array([0.5, 0.5]))
    assert comp.param_value(i) == pytest.approx(-25.0)
    assert chain.get_vector() == pytest.approx([0.5, 0.5])
    rows = {r["param"]: r for r in chain.describe()}
    assert rows["threshold_db"]["text"] == "-25 dB" and rows["threshold_db"]["searched"]
    assert not rows["ratio"]["searched"]


def test_mono_stays_mono_through_stereo_plugins(dry_a):
    chain = Chain([VST3Effect(vst3_path("DragonflyRoomReverb")), VST3Effect(vst3_path("ZamCompX2"))])
    mono = dry_a[:1].copy()
    out = chain.process(mono, RATE)
    assert out.shape == mono.shape and np.isfinite(out).all()


def test_clone_is_independent():
    comp = VST3Effect(vst3_path("ZamCompX2"))
    twin = comp.clone()
    comp.set_values({"Threshold": -30.0})
    assert twin.param_value(twin.param_index("Threshold")) == pytest.approx(0.0, abs=0.05)
