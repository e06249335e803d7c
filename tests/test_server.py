"""stito-server over real ZeroMQ sockets on 127.0.0.1: every message type, security, hostile input, jobs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from stito_server.audio import Audio
from stito_server.client import ServerError, StitoClient
from stito_server.effects.specs import chain_from_dict
from stito_server.engine.match import MatchOptions, match
from stito_server.metrics import get_metric
from stito_server.engine.optimize import OptimizerOptions
from stito_server.protocol import (DELIMITER, Signer, load_or_create_key, new_message, secure_socket, serialize)
from stito_server.server import Server, ServerOptions

from .conftest import RATE

SMALL = {"popsize": 8, "max_generations": 2, "excerpt_seconds": 2.0, "excerpts": 1, "metric": "mfcc"}
EQ_SPEC = {"name": "eq", "effects": [{"builtin": "parametric_eq", "search": ["high_shelf_gain_db", "peak2_gain_db"]}]}


@pytest.fixture()
def key(tmp_path, monkeypatch) -> tuple[bytes, Path]:
    """A fresh per-user key in a private config dir (so the CLI's client finds it too)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    path = tmp_path / "config" / "stito" / "key"
    return load_or_create_key(path), path


def serving(key_file: Path, **options):
    """A real server on 127.0.0.1 in a thread, with ``options``; stopped (and its thread joined) afterwards."""
    srv = Server(ServerOptions(bind="tcp://127.0.0.1:0", key_file=key_file, quiet=True, **options))
    thread = threading.Thread(target=srv.serve, daemon=True)
    thread.start()
    yield srv
    srv.stop()
    thread.join(timeout=60)
    assert not thread.is_alive()


@pytest.fixture()
def server(key):
    yield from serving(key[1], jobs=2, workers=1, allow_python_effects=True)


@pytest.fixture()
def client(server, key):
    with StitoClient(server.address, key[0], timeout_s=20) as c:
        yield c


def eq_ref(dry, gain_db: float) -> np.ndarray:
    chain = chain_from_dict(EQ_SPEC)
    chain.effects[0].set_values({"high_shelf_gain_db": gain_db})
    return chain.process(dry, RATE)


def test_key_file_is_private_and_loose_modes_refused(tmp_path):
    path = tmp_path / "cfg" / "key"
    key = load_or_create_key(path)
    assert len(key) == 64 and (path.stat().st_mode & 0o777) == 0o600
    assert load_or_create_key(path) == key
    path.chmod(0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        load_or_create_key(path)


def test_non_loopback_bind_refused_without_key(tmp_path):
    with pytest.raises(ValueError, match="listens beyond this machine; give --key-file"):
        Server(ServerOptions(bind="tcp://0.0.0.0:0", quiet=True))


def test_info_plugins_match_cancel_round_trip(client, dry_a, dry_b):
    info = client.server_info()
    assert info["protocol_version"] == "3.4" and info["jobs"]["max_concurrent"] == 2
    plugins = client.list_plugins()
    assert any(b["name"] == "compressor" for b in plugins["builtins"])
    assert any(p["name"] == "ZamEQ2" for p in plugins["plugins"])
    ref = eq_ref(dry_b, 9.0)
    progress = []
    req = client.start_match(dry_a, RATE, ref, RATE, {"spec": EQ_SPEC}, SMALL, return_audio=True)
    reply = client.wait_match(req, progress.append)
    states = [p["state"] for p in progress]
    assert states[0] == "queued" and "running" in states
    assert [p["generation"] for p in progress if "generation" in p] == [1, 2]
    out, rate = client.output_audio(reply)
    assert out.shape == dry_a.shape and rate == RATE
    (fx,) = reply.content["fx"]
    assert [p["name"] for p in fx["params"]][:4] == ["low_cut_hz", "low_shelf_gain_db", "low_shelf_cutoff_hz",
                                                     "low_shelf_q"]
    # the same match in-process gives the same parameters
    local = match(Audio(dry_a, RATE), Audio(ref, RATE), chain_from_dict(EQ_SPEC), get_metric("mfcc"),
                  MatchOptions(optimizer=OptimizerOptions(popsize=8, max_generations=2), excerpt_seconds=2.0,
                               excerpts=1))
    assert reply.content["report"]["vector"] == pytest.approx(local.vector.tolist(), abs=1e-12)
    assert np.allclose(out, local.output, atol=1e-6)
    # the report lists the options the match ran with, as an in-process report does
    options = reply.content["report"]["options"]
    assert options["popsize"] == 8 and options["max_generations"] == 2 and options["excerpt_seconds"] == 2.0
    # cancel: a long job stops within one generation after the cancel
    req = client.start_match(dry_a, RATE, ref, RATE, {"spec": EQ_SPEC}, {**SMALL, "max_generations": 200})
    job_id = None
    while True:
        (m,) = [client.wait_for(req, ("progress",))]
        job_id = m.content["job_id"]
        if m.content.get("generation"):
            break
    assert client.cancel(job_id)["status"] == "ok"
    with pytest.raises(ServerError) as err:
        client.wait_match(req)
    assert err.value.ename == "Cancelled"
    with pytest.raises(ServerError, match="UnknownJob"):
        client.cancel("nope")


def test_tampered_unsigned_replayed_and_wrong_key_rejected(server, key, client):
    signer = Signer(key[0])
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    secure_socket(sock, key[0], "client")
    sock.connect(server.address)

    def ask(frames):
        sock.send_multipart(frames)
        assert sock.poll(5000), "no answer"
        reply = sock.recv_multipart()
        return json.loads(reply[4])

    good = serialize(new_message("server_info_request"), signer)
    assert ask(good)["status"] == "ok"
    assert ask(good)["ename"] == "Replay"  # the very same message again
    tampered = serialize(new_message("server_info_request", {"x": 1}), signer)
    tampered[4] = tampered[4].replace(b"1", b"2")
    assert ask(tampered)["ename"] == "BadSignature"
    unsigned = serialize(new_message("server_info_request"), signer)
    unsigned[1] = b""
    assert ask(unsigned)["ename"] == "BadSignature"
    wrong = serialize(new_message("server_info_request"), Signer(b"0" * 64))
    assert ask(wrong)["ename"] == "BadSignature"
    # bytes moved from the end of one frame to the start of the next: same bytes in the same order, other frames
    shifted = serialize(new_message("server_info_request", {"x": 1}), signer)
    shifted[3], shifted[4] = shifted[3][:-1], shifted[3][-1:] + shifted[4]
    assert ask(shifted)["ename"] == "BadSignature"
    stale = new_message("server_info_request")
    stale.header["date"] = "2020-01-01T00:00:00+00:00"
    assert ask(serialize(stale, signer))["ename"] == "Replay"
    future = new_message("server_info_request")
    future.header["version"] = "4.0"
    assert ask(serialize(future, signer))["ename"] == "BadVersion"
    sock.close(0)
    assert client.server_info()["status"] == "ok"


def hostile_messages(signer: Signer, dry: np.ndarray, rng: np.random.Generator) -> list[tuple[str, list[bytes]]]:
    """(expected outcome, frames) pairs: 'error' must be answered with status error, 'drop' may be dropped."""
    out: list[tuple[str, list[bytes]]] = []
    audio = dry[:, : RATE * 2].astype("<f4")
    good_meta = {"sample_rate": RATE, "channels": 2, "samples": audio.shape[1]}
    for _ in range(200):  # random bytes, random frame counts without a delimiter
        out.append(("drop", [rng.bytes(int(rng.integers(0, 64))) for _ in range(int(rng.integers(1, 6)))]))
    for _ in range(150):  # a delimiter followed by the wrong number of frames
        out.append(("error", [DELIMITER] + [rng.bytes(8) for _ in range(int(rng.integers(0, 4)))]))
    for _ in range(150):  # correctly signed, wrong JSON types
        bad = rng.choice([b"[]", b"1", b'"x"', b"null", b"{", b"\xff\xfe"])
        frames = [json.dumps(new_message("server_info_request").header).encode(), b"{}", bytes(bad)]
        if rng.random() < 0.5:
            frames = [bytes(bad), b"{}", b"{}"]
        out.append(("error", [DELIMITER, signer.sign(frames)] + frames))
    for _ in range(100):  # signed headers missing fields / unknown types
        header = new_message(str(rng.choice(["nope_request", "match_reply", ""]))).header
        if rng.random() < 0.3:
            header.pop(str(rng.choice(["msg_id", "date", "version"])))
        frames = [json.dumps(header).encode(), b"{}", b"{}"]
        out.append(("error", [DELIMITER, signer.sign(frames)] + frames))

    def match_msg(content, buffers):
        return serialize(new_message("match_request", content, buffers=buffers), signer)

    for _ in range(100):  # huge declared sizes / inconsistent audio descriptions
        meta = dict(good_meta, samples=int(rng.choice([10 ** 12, 2 ** 40, -5, 0])))
        out.append(("error", match_msg({"input": {"buffer": 0, **meta}, "reference": {"buffer": 0, **good_meta},
                                        "chain": {"spec": "pedalboard-strip"}}, [audio.tobytes()])))
    for k in range(100):  # NaN/Inf audio and zero-length audio
        bad_audio = audio.copy()
        bad_audio[k % 2, int(rng.integers(0, audio.shape[1]))] = [np.nan, np.inf, -np.inf][k % 3]
        if k % 4 == 0:
            content = {"input": {"buffer": 0, "sample_rate": RATE, "channels": 2, "samples": 0},
                       "reference": {"buffer": 1, **good_meta}, "chain": {"spec": "pedalboard-strip"}}
            out.append(("error", match_msg(content, [b"", audio.tobytes()])))
        else:
            content = {"input": {"buffer": 0, **good_meta}, "reference": {"buffer": 1, **good_meta},
                       "chain": {"spec": "pedalboard-strip"}}
            out.append(("error", match_msg(content, [bad_audio.tobytes(), audio.tobytes()])))
    for k in range(100):  # unknown plugins, bad chains, wrong option types
        chain = [{"fx": [{"type": "VST3", "name": "VST3: NoSuchPlugin (Nobody)", "ident": "NoSuchPlugin.vst3"}]},
                 {"spec": {"effects": [{"vst3": "NoSuchPlugin"}]}}, {"spec": "no-such-chain"}, {"fx": "x"},
                 {"spec": {"effects": [{"python": "os:system"}]}}][k % 5]
        content = {"input": {"buffer": 0, **good_meta}, "reference": {"buffer": 1, **good_meta}, "chain": chain,
                   "options": {"popsize": "many"} if k % 7 == 0 else {}}
        out.append(("error", match_msg(content, [audio.tobytes(), audio.tobytes()])))
    for _ in range(100):  # non-object content / chain / options
        content = rng.choice([None, 5, "s"])
        out.append(("error", match_msg({"input": content, "reference": content, "chain": content}, [])))
    return out


def test_a_thousand_hostile_messages_then_still_serving(key, dry_a):
    srv = Server(ServerOptions(bind="tcp://127.0.0.1:0", jobs=2, workers=1, key_file=key[1], quiet=True,
                               allow_python_effects=False))
    thread = threading.Thread(target=srv.serve, daemon=True)
    thread.start()
    try:
        msgs = hostile_messages(Signer(key[0]), dry_a, np.random.default_rng(0))
        assert len(msgs) >= 1000
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        secure_socket(sock, key[0], "client")
        sock.connect(srv.address)
        for _, frames in msgs:
            sock.send_multipart(frames)
        expected = sum(kind == "error" for kind, _ in msgs)
        replies = []
        deadline = time.monotonic() + 120
        while len(replies) < expected and time.monotonic() < deadline:
            if sock.poll(500):
                replies.append(json.loads(sock.recv_multipart()[4]))
        progress = [r for r in replies if "state" in r]
        finals = [r for r in replies if "state" not in r]
        while len(finals) < expected and time.monotonic() < deadline:  # progress messages came too
            if sock.poll(500):
                r = json.loads(sock.recv_multipart()[4])
                (progress if "state" in r else finals).append(r)
        assert len(finals) == expected, (len(finals), expected)
        assert all(r["status"] == "error" and r["ename"] for r in finals)
        names = {r["ename"] for r in finals}
        assert {"BadFrames", "BadJSON", "BadHeader", "BadAudio", "AudioError", "UnsupportedFX", "ChainError",
                "NotAllowed", "BadRequest"} <= names, names
        sock.close(0)
        with StitoClient(srv.address, key[0], timeout_s=10) as c:
            assert c.server_info()["status"] == "ok"
    finally:
        srv.stop()
        thread.join(timeout=60)


def test_eight_concurrent_clients_get_their_own_results(server, key, dry_a, dry_b):
    gains = [-9.0, 0.0, 6.0, 12.0]
    refs = [eq_ref(dry_b, g) for g in gains]
    expected = [match(Audio(dry_a, RATE), Audio(r, RATE), chain_from_dict(EQ_SPEC), get_metric("mfcc"),
                      MatchOptions(optimizer=OptimizerOptions(popsize=8, max_generations=2), excerpt_seconds=2.0,
                                   excerpts=1)).vector for r in refs]
    results: dict[int, list[float]] = {}
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            with StitoClient(server.address, key[0], timeout_s=30) as c:
                req = c.start_match(dry_a, RATE, refs[i % 4], RATE, {"spec": EQ_SPEC}, SMALL)
                results[i] = c.wait_match(req, idle_timeout_s=120).content["report"]["vector"]
        except BaseException as exc:  # collected and re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    for i in range(8):
        assert results[i] == pytest.approx(expected[i % 4].tolist(), abs=1e-12)


def test_crashing_effect_fails_one_job_and_the_next_succeeds(client, dry_a, dry_b):
    crash_spec = {"name": "crashy", "effects": [{"python": "tests.crashing_effect:make", "name": "crashing_gain",
                                                 "search": ["gain_db"]}]}
    req = client.start_match(dry_a, RATE, dry_b, RATE, {"spec": crash_spec}, SMALL)
    with pytest.raises(ServerError) as err:
        client.wait_match(req, idle_timeout_s=60)
    assert err.value.ename == "WorkerCrashed"
    assert "effect 'crashing_gain'" in err.value.evalue and "exit code -11" in err.value.evalue
    req = client.start_match(dry_a, RATE, eq_ref(dry_b, 6.0), RATE, {"spec": EQ_SPEC}, SMALL)
    assert client.wait_match(req, idle_timeout_s=60).content["status"] == "ok"
    assert client.server_info()["status"] == "ok"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children_of(pid: int) -> set[int]:
    kids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.add(int(entry.name))
    return kids


@pytest.mark.parametrize("how", ["shutdown_request", "SIGTERM"])
def test_stopping_ends_running_jobs_and_leaves_no_child_process(tmp_path, key, dry_a, dry_b, how):
    address = f"tcp://127.0.0.1:{free_port()}"
    proc = subprocess.Popen([sys.executable, "-m", "stito_server.server", "--bind", address,
                             "--key-file", str(key[1]), "--workers", "2", "--quiet"],
                            stderr=subprocess.PIPE, text=True)
    try:
        with StitoClient(address, key[0], timeout_s=30) as c:
            c.server_info(timeout_s=60)
            req = c.start_match(dry_a, RATE, dry_b, RATE, {"spec": "zam-strip"}, {**SMALL, "max_generations": 500})
            while True:
                m = c.wait_for(req, ("progress",), 120)
                if m.content.get("generation"):
                    break
            workers = children_of(proc.pid)
            assert len(workers) >= 2  # render worker processes (plus multiprocessing's tracker)
            if how == "SIGTERM":
                proc.send_signal(signal.SIGTERM)
            else:
                assert c.shutdown()["status"] == "ok"
            with pytest.raises(ServerError) as err:
                c.wait_match(req, idle_timeout_s=60)
            assert err.value.ename == "ServerShutdown"
        assert proc.wait(timeout=60) == 0
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{w}").exists() for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [w for w in workers if Path(f"/proc/{w}").exists()]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_client_and_protocol_import_without_torch_or_pedalboard():
    code = ("import sys, stito_server.client, stito_server.protocol; "
            "bad = [m for m in ('torch', 'pedalboard', 'scipy') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_timeout_when_no_server(key):
    with StitoClient(f"tcp://127.0.0.1:{free_port()}", key[0], timeout_s=0.5) as c:
        t0 = time.monotonic()
        with pytest.raises(Exception, match="is stito-server running"):
            c.server_info()
        assert time.monotonic() - t0 < 3


def test_an_amount_per_effect_over_the_socket(client, dry_a, dry_b):
    spec = {"name": "two", "effects": [{"builtin": "parametric_eq", "search": ["high_shelf_gain_db"]},
                                       {"builtin": "gain", "name": "trim"}]}
    req = client.start_match(dry_a, RATE, eq_ref(dry_b, 9.0), RATE, {"spec": spec},
                             {**SMALL, "amount": "trim=0", "restraint": "off"})
    report = client.wait_match(req).content["report"]
    assert report["amounts"] == {"parametric_eq": 1.0, "trim": 0.0}
    assert report["vector"][1] == report["start_vector"][1] and report["vector"][0] == report["matched_vector"][0]
    req = client.start_match(dry_a, RATE, dry_b, RATE, {"spec": spec}, {**SMALL, "amount": "reverb=1"})
    with pytest.raises(ServerError) as err:
        client.wait_match(req)
    assert "amount names 'reverb', which is no effect of chain 'two'; its effects: parametric_eq, trim" in \
        err.value.evalue


def test_several_references_over_the_socket(client, dry_a, dry_b):
    from stito_server.examples import phrase

    other = eq_ref(phrase(6.0, RATE, seed=35), 9.0)
    req = client.start_match(dry_a, RATE, [eq_ref(dry_b, 9.0), other], [RATE, RATE], {"spec": EQ_SPEC}, SMALL)
    report = client.wait_match(req).content["report"]
    assert len(report["references"]) == 2 and set(report["references"][0]) == {"loudness_lufs", "similarity_to_target"}
    assert report["loudness_lufs"]["reference"] == pytest.approx(
        np.mean([r["loudness_lufs"] for r in report["references"]]))


def test_cli_match_through_server_equals_in_process(server, tmp_path, dry_a, dry_b):
    from stito_server.cli import main
    from .conftest import write

    inp = write(tmp_path / "in.wav", dry_a)
    ref = write(tmp_path / "ref.wav", eq_ref(dry_b, 9.0))
    spec = tmp_path / "eq.toml"
    spec.write_text('name = "eq"\n[[effects]]\nbuiltin = "parametric_eq"\n'
                    'search = ["high_shelf_gain_db", "peak2_gain_db"]\n')
    args = [str(inp), str(ref), "--chain", str(spec), "--max-generations", "2", "--popsize", "8",
            "--excerpt-seconds", "2", "--excerpts", "1", "--time-budget", "0", "--quiet"]
    assert main(["match", *args, "--out", str(tmp_path / "local.wav"), "--report", str(tmp_path / "local.json"),
                 "--save-chain", str(tmp_path / "local.toml")]) == 0
    assert main(["match", *args, "--out", str(tmp_path / "served.wav"), "--report", str(tmp_path / "served.json"),
                 "--server", server.address, "--save-chain", str(tmp_path / "served.toml")]) == 0
    local = json.loads((tmp_path / "local.json").read_text())
    served = json.loads((tmp_path / "served.json").read_text())
    assert served["vector"] == pytest.approx(local["vector"], abs=1e-12)
    import soundfile as sf
    a, _ = sf.read(str(tmp_path / "local.wav"))
    b, _ = sf.read(str(tmp_path / "served.wav"))
    assert np.allclose(a, b, atol=1e-6)
    # --save-chain with --server: the saved chain holds the server's matched values, and stito apply renders the
    # match's output again from it
    from stito_server.effects.saved import load_saved

    saved, here = load_saved(tmp_path / "served.toml"), load_saved(tmp_path / "local.toml")
    assert saved.chain.get_vector() == pytest.approx(here.chain.get_vector(), abs=1e-9)
    assert saved.gain_db == pytest.approx(here.gain_db, abs=1e-9)
    assert main(["apply", str(inp), "--chain", str(tmp_path / "served.toml"), "--out-dir", str(tmp_path / "applied"),
                 "--quiet"]) == 0
    c, _ = sf.read(str(tmp_path / "applied" / "in.wav"))
    assert np.allclose(c, b, atol=1e-6)


def test_job_timeout_stops_the_match(client, dry_a, dry_b):
    req = client.start_match(dry_a, RATE, eq_ref(dry_b, 6.0), RATE, {"spec": EQ_SPEC},
                             {**SMALL, "max_generations": 200, "timeout_s": 0.5})
    with pytest.raises(ServerError) as err:
        client.wait_match(req, idle_timeout_s=60)
    assert err.value.ename == "Timeout" and "time limit" in err.value.evalue


def test_bad_time_budget_is_refused_and_null_means_no_limit(client, dry_a, dry_b):
    req = client.start_match(dry_a, RATE, eq_ref(dry_b, 6.0), RATE, {"spec": EQ_SPEC}, {**SMALL, "time_budget_s": -1})
    with pytest.raises(ServerError) as err:
        client.wait_match(req, idle_timeout_s=60)
    assert err.value.ename == "BadRequest" and "time_budget_s must be above 0 seconds" in err.value.evalue
    req = client.start_match(dry_a, RATE, eq_ref(dry_b, 6.0), RATE, {"spec": EQ_SPEC}, {**SMALL, "time_budget_s": None})
    assert client.wait_match(req, idle_timeout_s=60).content["report"]["search"]["stop_reason"] == "max_generations"


def test_a_request_cannot_name_an_encoder_file(client, dry_a, dry_b, tmp_path):
    """``afx:PATH`` is for local benchmarking; over the wire only the listed metric names are accepted."""
    for name in (f"afx:{tmp_path / 'afx-rep-00000000.pt'}", "mfc"):
        req = client.start_match(dry_a, RATE, eq_ref(dry_b, 6.0), RATE, {"spec": EQ_SPEC}, {**SMALL, "metric": name})
        with pytest.raises(ServerError) as err:
            client.wait_match(req, idle_timeout_s=60)
        assert err.value.ename == "BadRequest"
        assert f"unknown metric {name!r}; valid: afx, mfcc, mir, random, stats" in err.value.evalue


def test_gpu_without_cuda_is_a_clear_error(key):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(RuntimeError, match="torch sees no CUDA device; run with --device cpu"):
        Server(ServerOptions(bind="tcp://127.0.0.1:0", device="cuda", key_file=key[1], quiet=True))


def test_a_metric_blend_and_start_run_over_the_socket_as_in_process(server, tmp_path, dry_a, dry_b):
    """`stito match --metric mfcc+mir --server` was refused although get_metric and the protocol accept blends,
    and `--start center` was not sent (the wire options were written out by hand, apart from the CLI's)."""
    from stito_server.cli import main
    from .conftest import write

    inp = write(tmp_path / "in.wav", dry_a)
    ref = write(tmp_path / "ref.wav", eq_ref(dry_b, 9.0))
    args = [str(inp), str(ref), "--chain", "pedalboard-strip", "--max-generations", "2", "--popsize", "4",
            "--excerpt-seconds", "2", "--excerpts", "1", "--time-budget", "0", "--quiet", "--metric", "mfcc+mir", "--start", "center"]
    assert main(["match", *args, "--out", str(tmp_path / "local.wav"), "--report", str(tmp_path / "local.json")]) == 0
    assert main(["match", *args, "--out", str(tmp_path / "served.wav"), "--report", str(tmp_path / "served.json"),
                 "--server", server.address]) == 0
    local = json.loads((tmp_path / "local.json").read_text())
    served = json.loads((tmp_path / "served.json").read_text())
    assert served["metric"] == local["metric"] == "mfcc+mir"
    assert served["vector"] == pytest.approx(local["vector"], abs=1e-12)
    assert served["similarity"]["after"] == pytest.approx(local["similarity"]["after"], abs=1e-9)
    assert served["start_vector"] == local["start_vector"] == [0.5] * len(local["start_vector"])


def test_a_blend_naming_an_unknown_metric_or_one_twice_is_a_bad_request(client, dry_a, dry_b):
    for name, says in (("mfcc+mfc", "unknown metric 'mfcc+mfc'; valid: afx, mfcc, mir, random, stats, or names joined"),
                       ("mfcc+mfcc", "a blend joins different metric names")):
        req = client.start_match(dry_a, RATE, eq_ref(dry_b, 6.0), RATE, {"spec": EQ_SPEC}, {**SMALL, "metric": name})
        with pytest.raises(ServerError) as err:
            client.wait_match(req, idle_timeout_s=60)
        assert err.value.ename == "BadRequest" and says in err.value.evalue


def test_a_bad_timeout_is_a_bad_request_naming_it(client, dry_a, dry_b):
    req = client.start_match(dry_a, RATE, eq_ref(dry_b, 6.0), RATE, {"spec": EQ_SPEC}, {**SMALL, "timeout_s": "abc"})
    with pytest.raises(ServerError) as err:
        client.wait_match(req, idle_timeout_s=60)
    assert err.value.ename == "BadRequest"
    assert err.value.evalue == "options.timeout_s must be a number of seconds above 0, got 'abc'"


def test_every_error_is_a_stito_error_with_its_wire_name():
    from stito_server import errors

    names = {cls.__name__: cls.wire_name for cls in vars(errors).values()
             if isinstance(cls, type) and issubclass(cls, Exception)}
    assert all(issubclass(getattr(errors, n), errors.StitoError) for n in names)
    assert names["WorkerCrashed"] == "WorkerCrashed" and names["UnsupportedFX"] == "UnsupportedFX"
    assert names["CancelledError"] == "Cancelled" and names["StitoError"] == "BadRequest"
    assert errors.ProtocolError("TooLarge", "too  big\n x").wire_name == "TooLarge"
    assert errors.ProtocolError("TooLarge", "too  big\n x").evalue == "too big x"
    crash = errors.UnsupportedFX([{"index": 0, "name": "JS: x", "reason": "JSFX"}])
    assert crash.wire_extra() == {"unsupported": [{"index": 0, "name": "JS: x", "reason": "JSFX"}]}


# --- issue 19 items 4 and 9: the server bounds what a client may ask for, and names every bad value ---

@pytest.fixture()
def strict_server(key):
    """A server with small limits: 1 s per job, popsize 64, 50 generations, 8 s of audio, one request waiting."""
    yield from serving(key[1], jobs=1, workers=1, job_timeout_s=1.0, max_popsize=64, max_generations=50,
                       max_audio_seconds=8.0, max_queued=1)


def _refusal(c: StitoClient, dry_a, dry_b, options: dict, input_audio=None) -> ServerError:
    req = c.start_match(dry_a if input_audio is None else input_audio, RATE, eq_ref(dry_b, 6.0), RATE,
                        {"spec": EQ_SPEC}, options)
    with pytest.raises(ServerError) as err:
        c.wait_match(req, idle_timeout_s=60)
    return err.value


def test_the_servers_time_limit_is_the_ceiling_of_a_clients(strict_server, key, dry_a, dry_b):
    with StitoClient(strict_server.address, key[0], timeout_s=20) as c:
        t0 = time.monotonic()
        err = _refusal(c, dry_a, dry_b, {**SMALL, "max_generations": 50, "timeout_s": 1000})
        assert err.ename == "Timeout" and time.monotonic() - t0 < 15
        for bad in (-5, 0, True, 1e999):
            err = _refusal(c, dry_a, dry_b, {**SMALL, "timeout_s": bad} if bad != 1e999 else {**SMALL, "timeout_s": "1e999"})
            shown = repr(bad) if bad != 1e999 else "'1e999'"
            assert err.ename == "BadRequest" and err.evalue == (
                f"options.timeout_s must be a number of seconds above 0, got {shown}")
    # NaN and Infinity are not JSON: a client that writes them anyway is answered BadJSON
    signer = Signer(key[0])
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    secure_socket(sock, key[0], "client")
    sock.connect(strict_server.address)
    for token in (b"NaN", b"Infinity", b"-Infinity"):
        msg = new_message("server_info_request", {"timeout_s": 1})
        frames = serialize(msg, signer)
        frames[4] = frames[4].replace(b"1", token)
        frames[1] = signer.sign(frames[2:])
        sock.send_multipart(frames)
        assert sock.poll(5000), "no answer"
        reply = json.loads(sock.recv_multipart()[4])
        assert reply["ename"] == "BadJSON" and f"{token.decode()} is not a JSON number" in reply["evalue"]
    sock.close(0)


def test_caps_on_popsize_generations_and_audio_length(strict_server, key, dry_a, dry_b):
    with StitoClient(strict_server.address, key[0], timeout_s=20) as c:
        err = _refusal(c, dry_a, dry_b, {**SMALL, "popsize": 3000})
        assert (err.ename, err.evalue) == ("BadRequest", "options.popsize must be at most 64 on this server, got 3000")
        err = _refusal(c, dry_a, dry_b, {**SMALL, "max_generations": 51})
        assert err.evalue == "options.max_generations must be at most 50 on this server, got 51"
        err = _refusal(c, dry_a, dry_b, SMALL, input_audio=np.tile(dry_a, 2))  # 12 s against an 8 s limit
        assert err.ename == "BadRequest" and err.evalue == "the input is 12 s long; this server takes at most 8 s"


def _raw_match(address: str, secret: bytes, options_json: bytes, dry_a, dry_b) -> dict:
    """A match_request whose options are the given JSON text (as any client could write it), signed; the reply."""
    from stito_server.protocol import audio_to_buffer

    m_in, b_in = audio_to_buffer(dry_a, RATE)
    m_ref, b_ref = audio_to_buffer(eq_ref(dry_b, 6.0), RATE)
    msg = new_message("match_request", {"input": {"buffer": 0, **m_in}, "reference": {"buffer": 1, **m_ref},
                                        "chain": {"spec": EQ_SPEC}, "options": {"__options__": 0}},
                      buffers=[b_in, b_ref])
    signer = Signer(secret)
    frames = serialize(msg, signer)
    frames[4] = frames[4].replace(b'{"__options__":0}', options_json)
    frames[1] = signer.sign(frames[2:])
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    secure_socket(sock, secret, "client")
    sock.connect(address)
    try:
        sock.send_multipart(frames)
        for _ in range(100):  # progress messages, then the reply
            assert sock.poll(30000), "no answer"
            reply = sock.recv_multipart()
            header = json.loads(reply[2])
            if header["msg_type"] in ("match_reply", "error_reply"):
                return json.loads(reply[4])
        raise AssertionError("no match_reply")
    finally:
        sock.close(0)


def test_bad_option_values_are_bad_requests_naming_them(server, key, dry_a, dry_b):
    small = json.dumps(SMALL)[1:-1].encode()
    for options, says in ((b'"seed": -1', "seed must be a whole number at least 0, got -1"),
                          (b'"excerpt_seconds": 1e999', "excerpt_seconds must be a finite number, got inf"),
                          (b'"popsize": 1e999', "options.popsize must be an integer, got inf"),
                          (b'"popsize": 2.7', "options.popsize must be an integer, got 2.7"),
                          (b'"amount": -1e999', "amount must be a finite number, got -inf"),
                          (b'"timeout_s": 1e999', "options.timeout_s must be a number of seconds above 0, got inf")):
        reply = _raw_match(server.address, key[0], b"{" + small + b", " + options + b"}", dry_a, dry_b)
        assert reply["ename"] == "BadRequest" and says in reply["evalue"], (options, reply)
    reply = _raw_match(server.address, key[0], b"[1, 2]", dry_a, dry_b)
    assert (reply["ename"], reply["evalue"]) == ("BadRequest", "options must be an object, got list")
    reply = _raw_match(server.address, key[0], b'{"excerpt_seconds": NaN}', dry_a, dry_b)
    assert reply["ename"] == "BadJSON" and "NaN is not a JSON number" in reply["evalue"]


def test_a_full_queue_answers_busy_at_once(strict_server, key, dry_a, dry_b):
    with StitoClient(strict_server.address, key[0], timeout_s=20) as c:
        long = {**SMALL, "max_generations": 50}
        reqs = [c.start_match(dry_a, RATE, eq_ref(dry_b, 6.0), RATE, {"spec": EQ_SPEC}, long) for _ in range(3)]
        outcomes = []
        for req in reqs:
            try:
                c.wait_match(req, idle_timeout_s=60)
                outcomes.append("ok")
            except ServerError as exc:
                outcomes.append(exc.ename if exc.ename != "Busy" else f"Busy: {exc.evalue}")
        # one runs (until the 1 s limit), one waits, the third is refused with the reason
        assert outcomes[2] == ("Busy: the server's queue is full (1 requests waiting, at most 1); try again when a "
                               "match has finished"), outcomes
        assert set(outcomes[:2]) <= {"ok", "Timeout"}


def test_a_client_that_disconnects_has_its_job_cancelled(server, key, dry_a, dry_b):
    c = StitoClient(server.address, key[0], timeout_s=20)
    req = c.start_match(dry_a, RATE, eq_ref(dry_b, 6.0), RATE, {"spec": EQ_SPEC},
                        {**SMALL, "max_generations": 400, "time_budget_s": None})
    while c.wait_for(req, ("progress",), 30).content.get("state") != "running":
        pass
    assert server.info()["jobs"]["running"] == 1
    c.close()  # gone without a cancel_request
    deadline = time.monotonic() + 20
    while server.info()["jobs"]["running"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.info()["jobs"] == {"running": 0, "queued": 0, "max_concurrent": 2}
    # the server goes on serving others
    with StitoClient(server.address, key[0], timeout_s=20) as other:
        assert other.server_info()["status"] == "ok"


@pytest.fixture()
def big_server(key):
    """A server that allows popsize 1200 (the default cap is 256)."""
    yield from serving(key[1], jobs=1, workers=2, max_popsize=2000)


def test_cancel_takes_effect_within_a_generation_of_a_large_population(big_server, key, dry_a, dry_b):
    """Cancel used to wait for the whole generation (27-30 s at popsize 1200-3000); now the renders stop."""
    with StitoClient(big_server.address, key[0], timeout_s=20) as c:
        req = c.start_match(dry_a, RATE, eq_ref(dry_b, 6.0), RATE, {"spec": EQ_SPEC},
                            {**SMALL, "popsize": 1200, "max_generations": 4, "time_budget_s": None})
        seen = []
        while True:
            msg = c.wait_for(req, ("progress",), 60)
            seen.append(msg.content)
            if msg.content.get("state") == "running":
                break
        time.sleep(1.0)  # inside the first generation's renders
        job_id = seen[0]["job_id"]
        t0 = time.monotonic()
        assert c.request("cancel_request", {"job_id": job_id})["status"] == "ok"
        with pytest.raises(ServerError) as err:
            c.wait_match(req, on_progress=seen.append, idle_timeout_s=60)
        latency = time.monotonic() - t0
        assert err.value.ename == "Cancelled"
        # no generation finished: the cancel stopped the first one's renders (latency printed, not asserted)
        assert not any(p.get("generation") for p in seen), seen
        print(f"cancel latency at popsize 1200: {latency:.2f} s")


def test_cancelled_queued_requests_do_not_fill_the_queue(strict_server, key, dry_a, dry_b):
    with StitoClient(strict_server.address, key[0], timeout_s=20) as c:
        long = {**SMALL, "max_generations": 50}
        running = c.start_match(dry_a, RATE, eq_ref(dry_b, 6.0), RATE, {"spec": EQ_SPEC}, long)
        queued = c.start_match(dry_a, RATE, eq_ref(dry_b, 6.0), RATE, {"spec": EQ_SPEC}, long)
        job_id = c.wait_for(queued, ("progress",), 30).content["job_id"]
        assert c.request("cancel_request", {"job_id": job_id})["status"] == "ok"
        third = c.start_match(dry_a, RATE, eq_ref(dry_b, 6.0), RATE, {"spec": EQ_SPEC}, long)
        outcomes = []
        for req in (running, queued, third):
            try:
                c.wait_match(req, idle_timeout_s=60)
                outcomes.append("ok")
            except ServerError as exc:
                outcomes.append(exc.ename)
        assert outcomes[1] == "Cancelled" and outcomes[2] != "Busy", outcomes


def test_audio_rendered_per_candidate_is_capped(strict_server, key, dry_a, dry_b):
    with StitoClient(strict_server.address, key[0], timeout_s=20) as c:
        err = _refusal(c, dry_a, dry_b, {**SMALL, "excerpts": 40, "excerpt_seconds": 4.0})
        assert (err.ename, err.evalue) == ("BadRequest", "options.excerpts x options.excerpt_seconds must be at most "
                                                         "120 s of audio per candidate on this server, got 40 x 4 s")
