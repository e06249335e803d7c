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


# --- item 5: outputs never clip ---

def test_true_peak_finds_the_peak_between_samples():
    import numpy as np

    from stito_server.audio import peak_dbfs, true_peak_dbtp

    t = np.arange(RATE) / RATE
    x = np.sin(2 * np.pi * (RATE / 4) * t + np.pi / 4).astype(np.float32)[None].repeat(2, axis=0)
    assert peak_dbfs(x) == pytest.approx(-3.01, abs=0.01)  # every sample sits at 0.707 of the wave's peak
    assert true_peak_dbtp(x, RATE) == pytest.approx(0.0, abs=0.2)
    # blocks change nothing: the same figure with blocks far smaller than the file
    assert true_peak_dbtp(x, RATE, block=1000) == pytest.approx(true_peak_dbtp(x, RATE), abs=1e-6)
    assert true_peak_dbtp(np.zeros((1, 100)), RATE) == -np.inf


def test_a_loud_reference_gives_a_file_under_the_ceiling_and_the_report_says_so(files, tmp_path, capsys, dry_b):
    import json

    import numpy as np
    import soundfile as sf

    from stito_server.audio import loudness_lufs, true_peak_dbtp

    # a reference squashed to about -5 LUFS: the input gained to its loudness would peak far above full scale
    loud = write(tmp_path / "loud.wav", (np.tanh(12 * dry_b) * 0.9).astype(np.float32))
    out, report = tmp_path / "o.flac", tmp_path / "r.json"
    rc = main(["match", str(files["input"]), str(loud), "--chain", "pedalboard-strip", "--out", str(out),
               "--report", str(report), *FAST])
    printed = capsys.readouterr().out
    assert rc == 0
    y, sr = sf.read(out, dtype="float32", always_2d=True)
    assert true_peak_dbtp(y.T, sr) <= -1.0 + 0.1  # FLAC is PCM: nothing clipped, the ceiling held (16-bit rounding)
    r = json.loads(report.read_text())
    assert r["true_peak_dbtp"] == pytest.approx(-1.0, abs=0.01) and r["ceiling_gain_db"] < -3.0
    assert r["output_gain_db"] == pytest.approx(r["loudness_lufs"]["output"] - r["loudness_lufs"]["chain_output"])
    assert r["loudness_lufs"]["output"] == pytest.approx(loudness_lufs(y.T, sr), abs=0.3)
    assert r["loudness_lufs"]["output"] < r["loudness_lufs"]["reference"] - 3.0  # fell short, by the ceiling's cut
    assert f"output true peak: -1.0 dBTP (turned down {-r['ceiling_gain_db']:.1f} dB to meet the ceiling)" in printed


def test_a_lower_ceiling_is_kept_and_a_bad_one_is_refused_before_work(files, tmp_path, capsys):
    import json

    out, report = tmp_path / "o.wav", tmp_path / "r.json"
    assert main(["match", str(files["input"]), str(files["reference"]), "--chain", "pedalboard-strip", "--out",
                 str(out), "--report", str(report), "--ceiling", "-6", *FAST]) == 0
    assert json.loads(report.read_text())["true_peak_dbtp"] <= -6.0 + 1e-6
    capsys.readouterr()
    for path in (out, report):
        path.unlink()
    for bad in ("3", "-80"):
        _refused(files, capsys, tmp_path, ["--chain", "pedalboard-strip", "--ceiling", bad, "--out", str(out)],
                 f"ceiling must be a number of dBTP from -60 to 0, got {float(bad)!r}")
    _refused(files, capsys, tmp_path, ["--chain", "pedalboard-strip", "--ceiling", "nan", "--out", str(out)],
             "--ceiling must be a finite number, got nan")


def test_pcm_output_above_full_scale_is_refused_not_clipped(tmp_path):
    import numpy as np

    from stito_server.audio import save_audio
    from stito_server.errors import AudioError

    x = np.full((2, RATE), 0.5, np.float32)
    x[0, 10] = 1.5
    with pytest.raises(AudioError, match=r"peaks at \+3.52 dBFS, above full scale, and .flac is written as PCM"):
        save_audio(tmp_path / "o.flac", x, RATE)
    assert list(tmp_path.iterdir()) == []
    save_audio(tmp_path / "o.wav", x, RATE)  # float WAV keeps it
    import soundfile as sf

    assert sf.read(tmp_path / "o.wav", dtype="float32")[0].max() == pytest.approx(1.5)


# --- item 8: a wrong key is not a dead server; item 9: a bad address is one line ---

def test_a_wrong_key_is_named_at_once_not_taken_for_a_dead_server(tmp_path, monkeypatch, files, capsys):
    import threading
    import time

    from stito_server.client import ServerError, StitoClient
    from stito_server.protocol import load_or_create_key
    from stito_server.server import Server, ServerOptions

    server_key = tmp_path / "server-key"
    load_or_create_key(server_key)
    srv = Server(ServerOptions(bind="tcp://127.0.0.1:0", workers=1, key_file=server_key, quiet=True))
    thread = threading.Thread(target=srv.serve, daemon=True)
    thread.start()
    try:
        t0 = time.monotonic()
        with StitoClient(srv.address, b"1" * 64, timeout_s=30) as c, pytest.raises(ServerError) as err:
            c.server_info()
        assert time.monotonic() - t0 < 5 and err.value.ename == "BadKey"
        assert "is not the server's (its --key-file)" in err.value.evalue
        # the CLI, with this machine's own (other) key: one line naming the key, not "is stito-server running?"
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
        load_or_create_key(tmp_path / "config" / "stito" / "key")
        _refused(files, capsys, tmp_path, ["--chain", "pedalboard-strip", "--out", str(tmp_path / "o.wav"),
                                           "--server", srv.address],
                 f"refused this client's key at the handshake: the key here ({tmp_path / 'config' / 'stito' / 'key'})",
                 ["server-key", "config"])
    finally:
        srv.stop()
        thread.join(timeout=60)


def test_a_bad_server_address_is_one_line(files, tmp_path, capsys, monkeypatch):
    from stito_server.protocol import load_or_create_key

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    load_or_create_key(tmp_path / "config" / "stito" / "key")
    _refused(files, capsys, tmp_path, ["--chain", "pedalboard-strip", "--out", str(tmp_path / "o.wav"),
                                       "--server", "bogus://x"],
             "cannot connect to 'bogus://x' (", ["config"])


def test_a_reader_that_goes_away_is_no_traceback():
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "stito_server", "plugins"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # like `| head -0`: gone before the first line is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and "Traceback" not in err and "BrokenPipe" not in err, err


# --- item 11 ---

def test_only_local_transports_bind_without_a_key(tmp_path):
    from stito_server.server import check_bind

    for local in ("tcp://127.0.0.1:5557", "tcp://localhost:5557", f"ipc://{tmp_path}/s", "inproc://x"):
        check_bind(local, None)
    for remote in ("tipc://{5560,0,0}", "ws://0.0.0.0:5557", "tcp://0.0.0.0:5557", "udp://10.0.0.1:5557"):
        with pytest.raises(ValueError, match="--key-file"):
            check_bind(remote, None)
        check_bind(remote, tmp_path / "key")


def test_a_write_protected_output_is_not_replaced(files, tmp_path, capsys):
    out = tmp_path / "o.wav"
    out.write_bytes(b"keep")
    out.chmod(0o444)
    _refused(files, capsys, tmp_path, ["--chain", "pedalboard-strip", "--out", str(out)],
             f"--out {out} is write-protected; stito does not replace it", ["o.wav"])
    assert out.read_bytes() == b"keep"


def test_sigterm_during_a_match_leaves_no_file_at_all(files, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "stito_server", "match", str(files["input"]),
                             str(files["reference"]), "--chain", "pedalboard-strip", "--out", str(tmp_path / "o.flac"),
                             "--report", str(tmp_path / "r.json"), "--time-budget", "0", "--max-generations", "60",
                             "--quiet"], stderr=subprocess.PIPE, text=True)
    time.sleep(8.0)  # past start-up, inside the search
    assert proc.poll() is None, proc.stderr.read()
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 143 and err.strip().splitlines()[-1] == "stito: terminated; nothing was written", err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav", "ref.wav"]  # no output, no hidden temp file


# --- item 10: long files (streamed renders; loudness, activity, window embeddings, writing and peaks in chunks) ---

@pytest.mark.parametrize("rate", [44100, 48000])
def test_the_chunked_loudness_meter_gives_pyloudnorms_figure(rate, monkeypatch):
    import numpy as np
    import pyloudnorm

    from stito_server import audio
    from stito_server.examples import phrase

    monkeypatch.setattr(audio, "LOUDNESS_CHUNK", 10007)  # many chunks, boundaries anywhere in a block
    x = phrase(12.0, rate, seed=3)
    x[:, : 2 * rate] *= 1e-4  # a quiet start the relative gate drops
    for sig in (x, x[:1], np.pad(x, ((0, 0), (3 * rate, 0)))):
        expected = pyloudnorm.Meter(rate).integrated_loudness(np.asarray(sig, np.float64).T)
        assert audio.loudness_lufs(sig, rate) == pytest.approx(expected, abs=1e-6)
    # gain_db measures a gained copy without making one
    assert audio.loudness_lufs(x, rate, gain_db=-12.0) == pytest.approx(
        pyloudnorm.Meter(rate).integrated_loudness(np.asarray(x * 10 ** (-12 / 20), np.float64).T), abs=1e-6)
    assert audio.loudness_lufs(x[:, : int(0.3 * rate)], rate) == -np.inf
    assert audio.loudness_lufs(np.zeros((2, rate)), rate) == -np.inf


def test_window_embeddings_in_chunks_equal_one_batch(monkeypatch):
    import numpy as np

    from stito_server.engine import scoring
    from stito_server.examples import phrase
    from stito_server.metrics import get_metric

    x = np.stack([phrase(20.0, RATE, seed=5), phrase(20.0, RATE, seed=6)])
    metric = get_metric("stats")
    chunked = scoring.window_embeddings(x, metric, RATE, 2.0)
    monkeypatch.setattr(scoring, "WINDOW_CHUNK", 1000)
    whole = scoring.window_embeddings(x, metric, RATE, 2.0)
    for a, b in zip(chunked, whole):
        assert np.allclose(a.mid, b.mid, atol=1e-4)


def _streamed(chain, x, monkeypatch):
    from stito_server.effects import chain as chain_module

    with monkeypatch.context() as m:
        m.setattr(chain_module, "STREAM_ABOVE", 0)  # any length renders as a stream of STREAM_BLOCK blocks
        m.setattr(chain_module, "STREAM_BLOCK", 16384)
        return chain.process(x, RATE)


@pytest.mark.parametrize("name", ["pedalboard-strip", "zam-strip"])
def test_a_streamed_render_is_the_whole_render(name, monkeypatch):
    """Long audio renders block by block through the chain, each effect keeping its state: the same samples as
    one whole render, compared after the same history (JUCE's reverb ramps from the previous settings). Dragonfly
    keeps audio across renders, so two whole renders differ too: there, the stream's distance to the whole render
    is held to that spread (RMS); every other effect, and the mono plugins' one-instance-per-channel streams, exactly."""
    import numpy as np

    from stito_server.effects.chain import Chain
    from stito_server.effects.specs import load_chain
    from stito_server.examples import phrase

    x = phrase(4.0, RATE, seed=8)
    chain = load_chain(name)
    assert chain.streams
    rng = np.random.default_rng(4)
    rms = lambda d: float(np.sqrt(np.mean(np.square(d, dtype=np.float64))))
    for trial in range(4):
        chain.set_vector(rng.uniform(size=len(chain.get_vector())) if trial else chain.get_vector())
        for fx in chain.effects:
            one = Chain([fx])
            one.process(x, RATE)
            whole, again = one.process(x, RATE), one.process(x, RATE)
            streamed = _streamed(one, x, monkeypatch)
            assert streamed.shape == whole.shape and streamed.dtype == np.float32
            if np.array_equal(whole, again):
                assert np.array_equal(streamed, whole), (trial, fx.name)
            else:  # Dragonfly
                assert fx.name == "reverb" and rms(streamed - whole) <= 3.0 * rms(again - whole), trial
    if name == "zam-strip":
        assert [fx.name for fx in chain.effects if getattr(fx, "mono", False)] == ["eq", "delay"]


def test_worker_renders_handed_over_without_a_copy_equal_the_in_process_ones(dry_a, monkeypatch):
    """A render this large (any, here) leaves the workers' shared memory as the caller's own array, and the audio
    reaches the workers as raw bytes: the same samples as rendering in this process, render after render."""
    import numpy as np

    from stito_server.effects.specs import chain_from_dict
    from stito_server.engine import render

    monkeypatch.setattr(render, "HANDOVER_BYTES", 0)
    # no reverb: JUCE's reverb ramps from the previous candidate's settings, which differ between the two renderers
    chain = chain_from_dict({"name": "t", "effects": [{"builtin": "parametric_eq"}, {"builtin": "compressor"},
                                                      {"builtin": "delay"}]})
    xs = np.random.default_rng(2).uniform(0, 1, (3, len(chain)))
    whole = [render.Clip(dry_a, 0)]
    with render.Renderer(chain, 1) as here:
        expected, _ = here.render(xs, whole, RATE)
    with render.ProcessRenderer(chain, 2) as workers:
        first, errors = workers.render(xs, whole, RATE)
        second, _ = workers.render(xs[::-1], whole, RATE)  # a new segment after the hand-over
        first_again = first.copy()
    assert errors == [None] * 3 and isinstance(first.base, __import__("mmap").mmap)
    assert np.array_equal(first, expected) and np.array_equal(second, expected[::-1])
    assert np.array_equal(first, first_again)  # the workers' later renders did not write into it


def test_the_activity_of_a_long_file_is_measured_in_blocks(monkeypatch):
    import numpy as np

    from stito_server.engine import excerpts
    from stito_server.examples import phrase

    x = phrase(30.0, RATE, seed=9)
    blocked = excerpts.activity(x)
    assert len(blocked) > excerpts.ACTIVITY_BLOCK  # more than one block
    monkeypatch.setattr(excerpts, "ACTIVITY_BLOCK", 10 ** 9)
    assert np.allclose(blocked, excerpts.activity(x), atol=1e-9)


def test_a_long_input_keeps_one_whole_render_and_gets_the_same_match(monkeypatch, dry_a, dry_b):
    import numpy as np

    from stito_server.audio import Audio
    from stito_server.effects.specs import load_chain
    from stito_server.engine import match as match_module
    from stito_server.examples import styled
    from stito_server.metrics import get_metric

    opts = match_module.MatchOptions.fast(time_budget_s=None, seed=0, restraint="off", max_generations=3)
    run = lambda: match_module.match(Audio(dry_a, RATE), Audio(styled(dry_b, RATE), RATE),
                                     load_chain("pedalboard-strip"), get_metric("stats"), opts)
    together = run()
    monkeypatch.setattr(match_module, "SEQUENTIAL_WHOLE_S", 1.0)  # the 6 s input counts as long
    one_at_a_time = run()
    assert together.report()["similarity"] == one_at_a_time.report()["similarity"]
    assert np.array_equal(together.output, one_at_a_time.output)


def test_plugin_chatter_stays_out_of_the_console(files, tmp_path):
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "stito_server", "match", str(files["input"]), str(files["reference"]),
                          "--chain", "zam-strip", "--out", str(tmp_path / "o.wav"), "--quiet", *FAST],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "DPF" not in run.stderr and "fIsActive" not in run.stderr, run.stderr
    assert (tmp_path / "o.wav").is_file()


def test_a_render_worker_that_died_is_named_not_a_broken_pipe(dry_a):
    import numpy as np

    from stito_server.effects.specs import load_chain
    from stito_server.engine.render import Clip, ProcessRenderer
    from stito_server.errors import WorkerCrashed

    chain = load_chain("zam-strip")
    with ProcessRenderer(chain, workers=1) as renderer:
        renderer.wait_ready()
        proc = renderer._workers[0][0]
        proc.kill()
        proc.join()
        with pytest.raises(WorkerCrashed, match="render worker died"):
            renderer.render(chain.get_vector()[None], [Clip(dry_a[:, :RATE], 0)], RATE)
    assert not np.isnan(chain.get_vector()).any()


def test_a_broken_pipe_that_is_not_stdout_is_an_error(monkeypatch, capsys):
    from stito_server import cli

    def broken() -> int:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "cmd_chains", broken)
    assert cli.main(["chains"]) == 2
    assert capsys.readouterr().err.strip() == "stito: error: a pipe closed unexpectedly ([Errno 32] Broken pipe)"


# --- item 1: a peer without the key cannot make the server buffer anything ---

def _peak_rss_mb(pid: int) -> float:
    status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status").read().splitlines() if ":" in line)
    return int(status["VmHWM"].split()[0]) / 1024


def test_an_unauthenticated_peer_cannot_make_the_server_buffer_its_message(tmp_path):
    """4 frames of 600 MiB each, unsigned, sent by a peer without the key (no CURVE, and CURVE with the wrong
    key): the server process's peak RSS stays flat and it reads none of it; a key holder is still served."""
    import subprocess
    import sys
    import time

    import numpy as np
    import zmq

    from stito_server.client import StitoClient
    from stito_server.protocol import load_or_create_key, secure_socket
    from .reaper_emulator.fixtures import free_port

    key_file = tmp_path / "key"
    key = load_or_create_key(key_file)
    address = f"tcp://127.0.0.1:{free_port()}"
    proc = subprocess.Popen([sys.executable, "-m", "stito_server.server", "--bind", address, "--key-file",
                             str(key_file), "--workers", "1"], stderr=subprocess.PIPE, text=True)
    ctx = zmq.Context()
    try:
        with StitoClient(address, key, timeout_s=60) as c:
            assert c.server_info()["status"] == "ok"
        idle = _peak_rss_mb(proc.pid)
        frame = np.zeros(600 << 20, np.uint8)  # pages never touched: the sender itself stays small
        senders = []
        for how in ("plain", "wrong key"):
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            if how == "wrong key":
                secure_socket(sock, b"0" * 64, "client")
            sock.connect(address)
            sock.send_multipart([b"<IDS|MSG>", b"", b"{}", b"{}", b"{}", frame, frame, frame, frame], copy=False)
            senders.append(sock)
        time.sleep(3.0)  # time enough to take in 2.4 GB over loopback, were it read
        for sock in senders:
            assert not sock.poll(500), "an unauthenticated peer was answered"
            sock.close(0)
        with StitoClient(address, key, timeout_s=60) as c:
            assert c.server_info()["status"] == "ok"  # still serving
        assert _peak_rss_mb(proc.pid) - idle < 300.0, (idle, _peak_rss_mb(proc.pid))
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
        ctx.term()


# --- the probe re-run (2026-12-04): malformed chain fields, frame-level refusals, server options ---

@pytest.mark.parametrize("field, message", [
    ('start = "abc"', "effect #1: 'start' must be a table of parameter = value, got 'abc'"),
    ("ranges = 5", "effect #1: 'ranges' must be a table of parameter = [low, high], got 5"),
    ("search = 5", "effect #1: 'search' must be a list of parameter names, got 5"),
    ("exclude = [5]", "effect #1: 'exclude' must list parameter names (strings), got 5"),
])
def test_a_malformed_chain_field_is_one_line(files, tmp_path, capsys, field, message):
    spec = tmp_path / "m.toml"
    spec.write_text(f'[[effects]]\nbuiltin = "compressor"\n{field}\n')
    _refused(files, capsys, tmp_path, ["--chain", str(spec), "--out", str(tmp_path / "o.wav")], message, ["m.toml"])


def test_malformed_chain_objects_are_named_not_internal_errors():
    for desc, message in (({"spec": {"effects": [{"builtin": "compressor", "search": 5}]}}, "'search' must be"),
                          ({"spec": {"effects": ["compressor"]}}, "effect #1 must be a table"),
                          ({"fx": [{"type": "VST3", "name": "ZamEQ2", "index": "abc"}]}, "FX #1 index must be a whole"),
                          ({"fx": [{"type": "VST3", "name": "ZamEQ2", "params": 5}]}, "FX #1 params must be a list")):
        with pytest.raises(ChainError, match=message):
            build_chain(desc)


def test_a_refused_message_reaches_the_request_it_answers(tmp_path, dry_a, dry_b):
    """TooLarge (and any refusal of the message itself) names the request, so the client says it at once
    instead of waiting for a reply that never comes."""
    import threading
    import time

    from stito_server.client import ServerError, StitoClient
    from stito_server.protocol import load_or_create_key
    from stito_server.server import Server, ServerOptions

    key_file = tmp_path / "key"
    key = load_or_create_key(key_file)
    srv = Server(ServerOptions(bind="tcp://127.0.0.1:0", workers=1, key_file=key_file, quiet=True,
                               max_message_bytes=1 << 20))
    thread = threading.Thread(target=srv.serve, daemon=True)
    thread.start()
    try:
        with StitoClient(srv.address, key, timeout_s=30) as c:
            t0 = time.monotonic()
            req = c.start_match(dry_a, RATE, dry_b, RATE, {"spec": "pedalboard-strip"})  # 2 x 2.3 MB of audio
            with pytest.raises(ServerError) as err:
                c.wait_match(req, idle_timeout_s=30)
            assert err.value.ename == "TooLarge" and time.monotonic() - t0 < 5
    finally:
        srv.stop()
        thread.join(timeout=60)


@pytest.mark.parametrize("args, message", [
    (["--max-message-mb", "0"], "--max-message-mb must be at least 1, got 0"),
    (["--workers", "0"], "--workers must be at least 1, got 0"),
    (["--bind", "tcp://127.0.0.1:99999"], "the port must be 0-65535"),
])
def test_bad_server_options_are_one_line(tmp_path, args, message):
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "stito_server.server", "--key-file", str(tmp_path / "key"), *args],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr, run.stderr


def test_a_dc_only_file_is_refused_in_one_line(files, tmp_path, capsys):
    import numpy as np

    dc = write(tmp_path / "dc.wav", np.full((2, 3 * RATE), 0.5, np.float32))
    rc = main(["match", str(dc), str(files["reference"]), "--chain", "pedalboard-strip", "--out",
               str(tmp_path / "o.wav"), *FAST])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "is a constant offset (DC at -6.0 dBFS)" in err, err
    assert not (tmp_path / "o.wav").exists()


def test_a_plot_that_is_not_a_png_is_refused_before_the_match(files, tmp_path, capsys):
    _refused(files, capsys, tmp_path, ["--chain", "pedalboard-strip", "--out", str(tmp_path / "o.wav"),
                                       "--plot", str(tmp_path / "o.txt")],
             f"--plot {tmp_path / 'o.txt'}: the plot is a PNG image; give a file name ending in .png")
