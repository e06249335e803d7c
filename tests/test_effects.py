"""Effects and chains over real pedalboard processors and real Zam/Dragonfly VST3 plugins."""

import numpy as np
import pytest

from stito_server.effects.builtin import BuiltinEffect
from stito_server.effects.chain import Chain, SearchDim
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
