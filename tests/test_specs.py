"""Chain specs: shipped chains, search/fix/start/ranges, and errors that list valid options."""

import pytest

from stito_server.effects.specs import chain_from_dict, load_chain
from stito_server.errors import ChainError

from .conftest import vst3_path


def test_pedalboard_strip_has_the_papers_36_parameters():
    chain = load_chain("pedalboard-strip")
    assert len(chain) == 36
    assert [fx.name for fx in chain.effects] == ["distortion", "parametric_eq", "compressor", "delay", "reverb"]


def test_zam_strip_loads_real_plugins_with_fixed_and_started_values():
    vst3_path("ZamEQ2")
    chain = load_chain("zam-strip")
    names = chain.dim_names()
    assert "eq.Peaks ON" not in names and "eq.Master Gain" not in names and "eq.Boost/Cut 1" in names
    rows = {(r["effect"], r["param"]): r for r in chain.describe()}
    assert rows[("eq", "Peaks ON")]["normalized"] == 1.0 and not rows[("eq", "Peaks ON")]["searched"]
    assert rows[("eq", "Boost/Cut 1")]["value"] == pytest.approx(0.01, abs=1e-3)
    assert rows[("reverb", "Late Level")]["value"] == pytest.approx(0.0, abs=1e-6)
    assert rows[("compressor", "Threshold")]["text"].endswith("dB")


def test_range_override_narrows_the_search():
    chain = chain_from_dict({"effects": [{"builtin": "compressor", "search": ["threshold_db"],
                                          "ranges": {"threshold_db": [-40, -10]}}]})
    chain.set_vector([0.0])
    assert chain.effects[0].param_value(0) == pytest.approx(-40.0)
    chain.set_vector([1.0])
    assert chain.effects[0].param_value(0) == pytest.approx(-10.0)


@pytest.mark.parametrize("spec,message", [
    ({"effects": [{"builtin": "compresor"}]}, r"unknown built-in effect 'compresor'; valid: compressor"),
    ({"effects": [{"builtin": "compressor", "search": ["treshold"]}]}, r"no parameter 'treshold'; valid: threshold_db"),
    ({"effects": [{"builtin": "gain", "fix": {"gain_db": 40}}]}, r"gain_db: 40 dB is outside its range -24\.\.24 dB"),
    ({"effects": [{"builtin": "gain", "serch": []}]}, r"unknown key 'serch'; valid: search"),
    ({"effects": [{"vst3": "NoSuchPlugin"}]}, r"VST3 plugin 'NoSuchPlugin' not found in .*; valid: "),
    ({"effects": []}, r"at least one \[\[effects\]\] entry"),
    ({"effects": [{"builtin": "gain"}, {"builtin": "gain"}]}, r"repeated: gain \(set 'name'\)"),
])
def test_spec_errors(spec, message):
    with pytest.raises(ChainError, match=message):
        chain_from_dict(spec)


def test_unknown_chain_name_lists_shipped_chains():
    with pytest.raises(ChainError, match=r"unknown chain 'zam-strp'.*valid: zam-strip"):
        load_chain("zam-strp")


def test_folder_named_like_a_chain_does_not_hide_the_shipped_chain(tmp_path, monkeypatch):
    (tmp_path / "pedalboard-strip").mkdir()  # e.g. a folder of that chain's renders in the working directory
    monkeypatch.chdir(tmp_path)
    assert len(load_chain("pedalboard-strip")) == 36


def test_plugin_that_fails_to_load_is_named(tmp_path):
    fake = tmp_path / "Broken.vst3"
    fake.mkdir()
    with pytest.raises(ChainError, match=r"VST3 plugin .*Broken\.vst3 failed to load"):
        chain_from_dict({"effects": [{"vst3": str(fake)}]})
