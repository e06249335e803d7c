"""Saved matches (`stito match --save-chain`) rendered again with `stito apply`: the same output, clear refusals."""

import numpy as np
import pytest
import soundfile as sf

from stito_server.cli import main
from stito_server.effects.saved import load_saved
from stito_server.examples import phrase, styled

from .conftest import RATE, write

FAST = ["--max-generations", "3", "--popsize", "8", "--excerpt-seconds", "2", "--excerpts", "1", "--restraint", "off",
        "--quiet"]


@pytest.fixture()
def matched(tmp_path, dry_a, dry_b):
    """A pedalboard-strip match with its chain saved: (folder, input, output, saved chain)."""
    inp, ref = write(tmp_path / "in.wav", dry_a), write(tmp_path / "ref.wav", styled(dry_b, RATE))
    out, saved = tmp_path / "o.wav", tmp_path / "m.toml"
    assert main(["match", str(inp), str(ref), "--chain", "pedalboard-strip", "--out", str(out),
                 "--save-chain", str(saved), *FAST]) == 0
    return tmp_path, inp, out, saved


def test_a_saved_match_applied_to_its_input_gives_the_same_output(matched, capsys):
    d, inp, out, saved = matched
    stem = write(d / "stem.wav", phrase(3.0, RATE, seed=31))
    assert main(["apply", str(inp), str(stem), "--chain", str(saved), "--out-dir", str(d / "applied")]) == 0
    assert "applied" in capsys.readouterr().out
    expected, rate = sf.read(out, dtype="float32")
    again, rate2 = sf.read(d / "applied" / "in.wav", dtype="float32")
    assert rate == rate2 and np.array_equal(again, expected)  # the same samples (JUCE's reverb settled first)
    other, _ = sf.read(d / "applied" / "stem.wav", dtype="float32")
    assert other.shape == (3 * RATE, 2) and np.abs(other).max() > 0.01
    # applied again into the same folder: refused, every output kept, until --overwrite
    (d / "applied" / "stem.wav").write_bytes(b"keep me")
    assert main(["apply", str(inp), str(stem), "--chain", str(saved), "--out-dir", str(d / "applied")]) == 2
    err = capsys.readouterr().err
    assert "in.wav exists (and 1 more); stito does not overwrite" in err and "--overwrite" in err
    assert (d / "applied" / "stem.wav").read_bytes() == b"keep me"
    (d / "applied" / "stem.wav").chmod(0o444)
    assert main(["apply", str(inp), str(stem), "--chain", str(saved), "--out-dir", str(d / "applied"),
                 "--overwrite"]) == 2
    assert "stem.wav is write-protected; stito does not replace it" in capsys.readouterr().err
    assert (d / "applied" / "stem.wav").read_bytes() == b"keep me"
    (d / "applied" / "stem.wav").chmod(0o644)
    assert main(["apply", str(inp), str(stem), "--chain", str(saved), "--out-dir", str(d / "applied"),
                 "--overwrite"]) == 0
    assert np.array_equal(sf.read(d / "applied" / "stem.wav", dtype="float32")[0], other)
    # every parameter fixed, in units, with the match's gain and ceiling
    text = saved.read_text()
    assert "[apply]" in text and "gain_db = " in text and "ceiling_dbtp = -1.0" in text
    chain = load_saved(saved).chain
    assert len(chain.dims) == 0 and [fx.name for fx in chain.effects] == ["distortion", "parametric_eq", "compressor",
                                                                         "delay", "reverb"]


def test_a_saved_zam_strip_names_its_plugin_versions_and_keeps_every_value(tmp_path, dry_a, dry_b):
    import json

    inp, ref = write(tmp_path / "in.wav", dry_a), write(tmp_path / "ref.wav", styled(dry_b, RATE))
    assert main(["match", str(inp), str(ref), "--chain", "zam-strip", "--out", str(tmp_path / "o.wav"),
                 "--report", str(tmp_path / "r.json"), "--save-chain", str(tmp_path / "z.toml"), *FAST]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    after = {(p["effect"], p["param"]): p["normalized_after"] for p in report["parameters"]}
    chain = load_saved(tmp_path / "z.toml").chain
    for fx in chain.effects:
        for p, x in zip(fx.params, fx.get_normalized()):
            assert x == pytest.approx(after[(fx.name, p.name)], abs=1e-6), (fx.name, p.name)
    assert 'version = "' in (tmp_path / "z.toml").read_text()
    # each VST3 plugin's matched state beside it as a .vstpreset, which a fresh instance of the plugin loads to the
    # same values and the same sound
    import pedalboard

    from stito_server.effects.vst3 import VST3Effect

    presets = sorted(p.name for p in tmp_path.glob("z.*.vstpreset"))
    assert presets == ["z.compressor.vstpreset", "z.delay.vstpreset", "z.eq.vstpreset", "z.reverb.vstpreset"]
    clip = dry_a[:, :RATE]
    for fx in chain.effects:
        if not isinstance(fx, VST3Effect):
            continue
        data = (tmp_path / f"z.{fx.name}.vstpreset").read_bytes()
        assert data[:4] == b"VST3"
        fresh = pedalboard.load_plugin(str(fx.path))
        fresh.load_preset(str(tmp_path / f"z.{fx.name}.vstpreset"))
        for slot, p in zip(range(len(fx.params)), fx.params):
            assert fresh.parameters[_key(fresh, p.name)].raw_value == pytest.approx(
                fx._plugin.parameters[_key(fx._plugin, p.name)].raw_value, abs=1e-6), (fx.name, p.name)
        if fx.name in ("eq", "compressor"):  # deterministic plugins: the same samples
            ours = fx.process(clip, RATE)
            theirs = np.concatenate([fresh(clip[c:c + 1], RATE) for c in range(2)]) if fx.mono else fresh(clip, RATE)
            assert np.allclose(ours, theirs, atol=1e-6), fx.name


def _key(plugin, name: str) -> str:
    """pedalboard's key of a parameter named ``name`` (its Python identifier form)."""
    return next(k for k, v in plugin.parameters.items() if v.name == name or k == name)


def _refused(argv, capsys, message):
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and message in err, err


def test_bad_saved_chains_and_outputs_are_one_line_and_write_nothing(matched, capsys):
    d, inp, out, saved = matched
    target = d / "applied"
    text = saved.read_text()
    missing = d / "missing.toml"
    missing.write_text(text.replace('builtin = "reverb"', 'vst3 = "NoSuchPlugin"'))
    _refused(["apply", str(inp), "--chain", str(missing), "--out-dir", str(target)], capsys, "NoSuchPlugin")
    other = d / "other-version.toml"  # the reverb swapped for a ZamEQ2 saved with another version (fix dropped)
    lines = text.replace('builtin = "reverb"', 'vst3 = "ZamEQ2"\nversion = "0.1"').splitlines()
    other.write_text("\n".join(x for x in lines if not (x.startswith("fix = ") and "room_size" in x)) + "\n")
    _refused(["apply", str(inp), "--chain", str(other), "--out-dir", str(target)], capsys,
             "VST3 plugin 'ZamEQ2' is version 4.2.0 here, but the chain was saved with version 0.1")
    _refused(["apply", str(inp), "--chain", "pedalboard-strip", "--out-dir", str(target)], capsys,
             "saved chain not found: pedalboard-strip")
    plain = d / "plain.toml"
    plain.write_text('[[effects]]\nbuiltin = "gain"\n')
    _refused(["apply", str(inp), "--chain", str(plain), "--out-dir", str(target)], capsys,
             "is not a saved match (no [apply] table with gain_db)")
    _refused(["apply", str(inp), str(d / "nope.wav"), "--chain", str(saved), "--out-dir", str(target)], capsys,
             "nope.wav: cannot read it as audio")
    (d / "sub").mkdir()
    twin = write(d / "sub" / "in.wav", phrase(2.0, RATE, seed=2))
    _refused(["apply", str(inp), str(twin), "--chain", str(saved), "--out-dir", str(target)], capsys,
             "would both be written to")
    _refused(["apply", str(inp), "--chain", str(saved), "--out-dir", str(d), "--overwrite"], capsys,
             "in.wav is the input " + str(inp) + "; stito never overwrites its inputs")
    _refused(["match", str(inp), str(d / "ref.wav"), "--chain", "pedalboard-strip", "--out", str(d / "x.wav"),
              "--save-chain", str(d / "x.txt"), *FAST], capsys, "a saved chain is a TOML chain spec")
    assert not target.exists() and not (d / "x.wav").exists()
