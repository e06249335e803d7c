"""`stito` CLI on real files: a full small match, and error cases that leave no output behind."""

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf

from stito_server.cli import main
from stito_server.examples import styled
from stito_server.resources import package_dir

from .conftest import RATE, write

FAST = ["--max-generations", "2", "--popsize", "8", "--excerpt-seconds", "2", "--excerpts", "1"]


@pytest.fixture()
def files(tmp_path, dry_a, dry_b):
    return {
        "input": write(tmp_path / "in.wav", dry_a, subtype="PCM_24"),
        "reference": write(tmp_path / "ref.flac", styled(dry_b, RATE), subtype="PCM_16"),
        "dir": tmp_path,
    }


def test_match_writes_audio_report_and_plot(files, capsys):
    d = files["dir"]
    rc = main(["match", str(files["input"]), str(files["reference"]), "--chain", "pedalboard-strip",
               "--out", str(d / "out.wav"), "--report", str(d / "r.json"), "--plot", str(d / "p.png"), *FAST])
    assert rc == 0
    out, rate = sf.read(str(d / "out.wav"), always_2d=True)
    assert rate == RATE and out.shape[1] == 2 and np.isfinite(out).all()
    report = json.loads((d / "r.json").read_text())
    assert len(report["vector"]) == 36 and report["search"]["evaluations"] == 16
    assert report["similarity"]["after"] >= report["similarity"]["before"] - 1e-9
    assert (d / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # default --loudness reference: the written file sits at the reference's integrated loudness, less what the
    # default -1 dBTP ceiling took (this input gained that far would peak above it)
    import pyloudnorm

    from stito_server.audio import true_peak_dbtp
    ref, _ = sf.read(str(files["reference"]))
    meter = pyloudnorm.Meter(RATE)
    assert report["ceiling_gain_db"] < 0 and report["true_peak_dbtp"] == pytest.approx(-1.0, abs=1e-3)
    assert true_peak_dbtp(out.T, RATE) == pytest.approx(-1.0, abs=0.01)
    assert meter.integrated_loudness(out) == pytest.approx(
        meter.integrated_loudness(ref) + report["ceiling_gain_db"], abs=0.1)
    assert report["loudness_lufs"]["output"] == pytest.approx(meter.integrated_loudness(out), abs=0.1)
    assert report["output_gain_db"] == pytest.approx(report["loudness_lufs"]["reference"] + report["ceiling_gain_db"]
                                                     - report["loudness_lufs"]["chain_output"], abs=1e-6)
    text = capsys.readouterr().out
    assert "similarity to reference" in text and "parameters changed in pedalboard-strip" in text
    # the restraint's verdict, one line per effect with its evidence (the report carries the same lines)
    assert report["restraint"]["lines"][0] in text and all(line in text for line in report["restraint"]["lines"])
    assert len(report["restraint"]["effects"]) == 5 and "level through the chain" in text
    assert sorted(p.name for p in d.iterdir()) == ["in.wav", "out.wav", "p.png", "r.json", "ref.flac"]


def error_case(files, tmp_path, capsys, args, message):
    out = tmp_path / "out.wav"
    rc = main(["match", *args, "--out", str(out), "--report", str(tmp_path / "r.json"), *FAST])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("stito: error: ") and len(err.strip().splitlines()) == 1
    assert message in err
    assert not out.exists() and not (tmp_path / "r.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_missing_input(files, tmp_path, capsys):
    error_case(files, tmp_path, capsys, [str(tmp_path / "nope.wav"), str(files["reference"]), "--chain", "pedalboard-strip"],
               "input file not found")


def test_negative_time_budget(files, tmp_path, capsys):
    error_case(files, tmp_path, capsys, [str(files["input"]), str(files["reference"]), "--chain", "pedalboard-strip",
                                         "--time-budget", "-2"],
               "--time-budget must be a number of seconds above 0, or 0 for no limit; got -2")


def test_unreadable_input(files, tmp_path, capsys):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF not really a wave file")
    error_case(files, tmp_path, capsys, [str(junk), str(files["reference"]), "--chain", "pedalboard-strip"],
               "cannot read input file")


def test_silent_and_short_and_nan_inputs(files, tmp_path, capsys):
    silent = write(tmp_path / "silent.wav", np.zeros((2, RATE * 3), np.float32))
    error_case(files, tmp_path, capsys, [str(silent), str(files["reference"]), "--chain", "pedalboard-strip"], "is silent")
    short = write(tmp_path / "short.wav", np.full((1, RATE // 4), 0.1, np.float32))
    error_case(files, tmp_path, capsys, [str(short), str(files["reference"]), "--chain", "pedalboard-strip"],
               "is 0.25 s long; at least 1 s is needed")
    nan = np.full((2, RATE * 2), 0.1, np.float32)
    nan[1, 5] = np.inf
    bad = write(tmp_path / "nan.wav", nan)
    error_case(files, tmp_path, capsys, [str(files["input"]), str(bad), "--chain", "pedalboard-strip"],
               "reference")


def test_unknown_chain_effect_and_parameter(files, tmp_path, capsys):
    error_case(files, tmp_path, capsys, [str(files["input"]), str(files["reference"]), "--chain", "zam-strp"],
               "unknown chain 'zam-strp'")
    spec = tmp_path / "bad.toml"
    spec.write_text('[[effects]]\nbuiltin = "reverbb"\n')
    error_case(files, tmp_path, capsys, [str(files["input"]), str(files["reference"]), "--chain", str(spec)],
               "unknown built-in effect 'reverbb'; valid: reverb")
    spec.write_text('[[effects]]\nbuiltin = "reverb"\nsearch = ["size"]\n')
    error_case(files, tmp_path, capsys, [str(files["input"]), str(files["reference"]), "--chain", str(spec)],
               "effect 'reverb' has no parameter 'size'")


def test_plugin_that_fails_to_load(files, tmp_path, capsys):
    (tmp_path / "Broken.vst3").mkdir()
    spec = tmp_path / "broken.toml"
    spec.write_text(f'[[effects]]\nvst3 = "{tmp_path / "Broken.vst3"}"\n')
    error_case(files, tmp_path, capsys, [str(files["input"]), str(files["reference"]), "--chain", str(spec)],
               "Broken.vst3 failed to load")


def test_bad_amount_and_overwriting_input(files, tmp_path, capsys):
    rc = main(["match", str(files["input"]), str(files["reference"]), "--chain", "pedalboard-strip",
               "--out", str(tmp_path / "o.wav"), "--amount", "1.5"])
    assert rc == 2 and "amount must be between 0 and 1, got 1.5" in capsys.readouterr().err
    for bad, says in (("reverb_x=0.5", "amount names 'reverb_x', which is no effect of chain 'pedalboard-strip'; "
                                       "its effects: distortion, parametric_eq, compressor, delay, reverb"),
                      ("reverb=2", "amount 'reverb=2': give effect=amount with an amount from 0 to 1"),
                      ("lots", "--amount must be a number from 0 to 1, or effect=amount pairs")):
        rc = main(["match", str(files["input"]), str(files["reference"]), "--chain", "pedalboard-strip",
                   "--out", str(tmp_path / "o.wav"), "--amount", bad, *FAST])
        err = capsys.readouterr().err
        assert rc == 2 and says in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "o.wav").exists()
    before = files["input"].read_bytes()
    rc = main(["match", str(files["input"]), str(files["reference"]), "--chain", "pedalboard-strip",
               "--out", str(files["input"])])
    assert rc == 2 and "is one of the input files" in capsys.readouterr().err
    assert files["input"].read_bytes() == before


def test_existing_outputs_are_refused_unless_overwrite(files, tmp_path, capsys):
    kept = {name: tmp_path / name for name in ("o.wav", "r.json", "p.png", "c.toml")}
    for p in kept.values():
        p.write_bytes(b"keep me")
    for flag, name in (("--out", "o.wav"), ("--report", "r.json"), ("--plot", "p.png"), ("--save-chain", "c.toml")):
        outs = {"--out": str(tmp_path / "new.wav"), flag: str(kept[name])}
        rc = main(["match", str(files["input"]), str(files["reference"]), "--chain", "pedalboard-strip",
                   *[x for kv in outs.items() for x in kv], *FAST])
        err = capsys.readouterr().err
        assert rc == 2 and f"{flag} {kept[name]} exists; stito does not overwrite" in err and "--overwrite" in err
        assert len(err.strip().splitlines()) == 1 and not (tmp_path / "new.wav").exists()
    assert all(p.read_bytes() == b"keep me" for p in kept.values())
    rc = main(["match", str(files["input"]), str(files["reference"]), "--chain", "pedalboard-strip",
               "--out", str(kept["o.wav"]), "--report", str(kept["r.json"]), "--overwrite", *FAST])
    assert rc == 0 and sf.read(str(kept["o.wav"]))[1] == RATE and "vector" in json.loads(kept["r.json"].read_text())


def test_a_bad_option_value_is_named_by_its_flag(files, tmp_path, capsys):
    for flags, says in ((["--excerpt-seconds", "0.1"], "--excerpt-seconds must be above 0.5 s, got 0.1"),
                        (["--max-generations", "0"], "--max-generations must be at least 1, got 0"),
                        (["--popsize", "1"], "--popsize must be at least 2, got 1")):
        rc = main(["match", str(files["input"]), str(files["reference"]), "--chain", "pedalboard-strip",
                   "--out", str(tmp_path / "o.wav"), *flags])
        err = capsys.readouterr().err
        assert rc == 2 and says in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "o.wav").exists()


def test_plugins_listing_and_show_via_console_script():
    out = subprocess.run([sys.executable, "-m", "stito_server", "plugins", "show", "compressor"],
                         capture_output=True, text=True, check=True).stdout
    assert "threshold_db" in out and "log" in out
    bad = subprocess.run([sys.executable, "-m", "stito_server", "plugins", "show", "NoSuchThing"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "VST3 plugin 'NoSuchThing' not found" in bad.stderr


def test_parser_builds_without_torch_scipy_signal_or_cma():
    """`stito chains`/`--help` must not pay for torch (~1.5 s), scipy.signal or cma: those load only where used."""
    code = ("import sys; from stito_server.cli import get_parser; get_parser(); "
            "print(sorted(m for m in ('torch', 'scipy.signal', 'cma') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_lab_commands_run_through_their_entry_points(capsys, tmp_path):
    from stito_server import cli

    assert set(cli.lab_commands()) == {"bench", "data", "train"}
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "usage: stito train" in out and "export" in out and "rankfit" in out
    with pytest.raises(SystemExit) as exit_:
        cli.main(["data", "bogus"])
    assert exit_.value.code == 2 and "invalid choice: 'bogus'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli.main(["bench", "visibility", "--clips", "1"])
    assert "--clips must be at least 2" in str(exit_.value.code) and "got 1" in str(exit_.value.code)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["bench", "separation", "--prior", "no-such-prior.json"])
    assert "--prior no-such-prior.json: no such file" in str(exit_.value.code)
    for flags, says in ((["--family-weight", "2"], "--family-weight 2 weighs the descriptors that"),
                        (["--echo", "--family-weight", "0"], "--family-weight must be above 0, got 0")):
        with pytest.raises(SystemExit) as exit_:
            cli.main(["train", "stats-prior", *flags, "--out", str(tmp_path / "prior.json")])
        assert says in str(exit_.value.code) and not (tmp_path / "prior.json").exists()
    restraint = package_dir("models") / "restraint.json"
    before = restraint.read_bytes()
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "restraint", "--match-seed", "1"])
    assert "--match-seed is for --probe" in str(exit_.value.code) and restraint.read_bytes() == before


def test_the_probe_takes_the_match_seed_from_its_changes():
    from training.restraint import probe_options

    assert probe_options().optimizer.seed == 0 and probe_options().loudness == "reference"
    moved = probe_options({"seed": 3, "evidence": "similarity"})
    assert (moved.optimizer.seed, moved.evidence, moved.loudness) == (3, "similarity", "reference")
    assert replace(moved, optimizer=replace(moved.optimizer, seed=0), evidence=None) == probe_options()


def test_a_lab_command_without_its_extra_says_which_to_install(monkeypatch, capsys):
    from stito_server import cli

    class Missing:
        value = "bench.cli:main"

        def load(self):
            raise ModuleNotFoundError("No module named 'matchering'", name="matchering")

    monkeypatch.setattr(cli, "lab_commands", lambda: {"bench": Missing()})
    assert cli.main(["bench", "transfer"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("stito: error: `stito bench` needs 'matchering', which is not installed: install the lab's "
                   "extras (pip install -e '.[bench,train]' in a checkout)")


def test_several_references_on_the_command_line(files, tmp_path, capsys):
    from stito_server.examples import phrase, styled

    second = write(tmp_path / "ref2.wav", styled(phrase(6.0, RATE, seed=36), RATE))
    rc = main(["match", str(files["input"]), str(files["reference"]), str(second), "--chain", "pedalboard-strip",
               "--out", str(tmp_path / "o.wav"), "--report", str(tmp_path / "r.json"), *FAST])
    out = capsys.readouterr().out
    assert rc == 0 and "2 references, combined" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["reference"] == [str(files["reference"]), str(second)] and len(report["references"]) == 2
    rc = main(["match", str(files["input"]), str(files["reference"]), str(tmp_path / "nope.wav"), "--chain",
               "pedalboard-strip", "--out", str(tmp_path / "o2.wav"), *FAST])
    err = capsys.readouterr().err
    assert rc == 2 and "reference 2" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o2.wav").exists()
