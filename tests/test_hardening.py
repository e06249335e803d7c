"""Issue 19: chain files are data, a server loads no plugin from a client's path, outputs are checked before work."""

import pytest

from stito_server.cli import main
from stito_server.effects.specs import load_chain
from stito_server.examples import styled
from stito_server.errors import ChainError, RequestError
from stito_server.server import build_chain

from .conftest import RATE, write

FAST = ["--max-generations", "2", "--popsize", "8", "--excerpt-seconds", "2", "--excerpts", "1"]


@pytest.fixture()
def files(tmp_path, dry_a, dry_b):
    return {"input": write(tmp_path / "in.wav", dry_a), "reference": write(tmp_path / "ref.wav", styled(dry_b, RATE))}


def _refused(files, capsys, tmp_path, extra, message, written=()):
    rc = main(["match", str(files["input"]), str(files["reference"]), *extra, *FAST])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("stito: error: ") and len(err.strip().splitlines()) == 1, err
    assert message in err, err
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["in.wav", "ref.wav", *written]), left


def test_a_chain_file_naming_python_code_is_refused_before_it_runs(files, tmp_path, capsys):
    marker = tmp_path / "ran"
    spec = tmp_path / "preset.toml"
    spec.write_text(f'[[effects]]\npython = "os:system"\nname = "touch {marker}"\n')
    _refused(files, capsys, tmp_path, ["--chain", str(spec), "--out", str(tmp_path / "o.wav")],
             "effect #1 names Python code ('python' key), which would run on loading; refused", ["preset.toml"])
    assert not marker.exists()
    # a trusted file with the opt-in still builds
    spec.write_text('[[effects]]\npython = "tests.crashing_effect:CrashingGain"\n')
    assert [fx.name for fx in load_chain(spec, allow_python=True).effects] == ["crashing_gain"]
    with pytest.raises(ChainError, match="--allow-python-effects"):
        load_chain(spec)


def test_a_binary_chain_file_is_one_line(files, tmp_path, capsys):
    spec = tmp_path / "bin.toml"
    spec.write_bytes(bytes(range(256)))
    _refused(files, capsys, tmp_path, ["--chain", str(spec), "--out", str(tmp_path / "o.wav")],
             "not UTF-8 text", ["bin.toml"])


def test_the_server_loads_no_plugin_from_a_path_a_client_names(tmp_path):
    for name in (str(tmp_path / "X.vst3"), "../X.vst3", "X.vst3", "C:\\Plugins\\X"):
        with pytest.raises(RequestError) as err:
            build_chain({"spec": {"effects": [{"vst3": name}]}})
        assert err.value.ename == "NotAllowed" and repr(name) in err.value.evalue
    # plugins by name still resolve on the server's own paths
    assert [fx.name for fx in build_chain({"spec": {"effects": [{"vst3": "ZamEQ2"}]}}).chain.effects] == ["ZamEQ2"]


@pytest.mark.parametrize("out, report, message", [
    ("o.wav", "o.wav", "--report {d}/o.wav is also --out: give each output its own file"),
    ("o.xyz", None, "--out {d}/o.xyz: unknown audio format .xyz; use one of "),
    ("o", None, "--out {d}/o: no file extension; use one of "),
    ("sub", None, "--out {d}/sub is a folder; give a file name"),
])
def test_output_paths_are_refused_before_the_match(files, tmp_path, capsys, out, report, message):
    (tmp_path / "sub").mkdir()
    extra = ["--chain", "pedalboard-strip", "--out", str(tmp_path / out)]
    if report:
        extra += ["--report", str(tmp_path / report)]
    _refused(files, capsys, tmp_path, extra, message.format(d=tmp_path), ["sub"])


def test_a_negative_seed_is_one_line(files, tmp_path, capsys):
    _refused(files, capsys, tmp_path, ["--chain", "pedalboard-strip", "--out", str(tmp_path / "o.wav"), "--seed", "-5"],
             "seed must be a whole number at least 0, got -5")
