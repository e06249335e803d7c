"""Match Style end to end: the real ReaScript under the real reapy in the emulator, a real stito-server on 127.0.0.1."""

from __future__ import annotations

import json
import sys
import threading
import time

import numpy as np
import pytest
import zmq

from stito_server.distances import multi_resolution_stft_distance
from stito_server.examples import phrase
from stito_server.protocol import Signer, deserialize, new_message, secure_socket, serialize

from .reaper_emulator.fixtures import (RATE, SCRIPTS, build_chain, free_port, plugin, register_marker,
                                       running_reaper, start_server, style_project, write)
from .reaper_emulator.model import JSFX

register_marker()
MATCH = SCRIPTS / "stito_match_style.py"
ONLY_TWO_KNOBS = "*:*; +ZamEQ2:Boost/Cut H; +ZamEQ2:Boost/Cut L"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from start_server(tmp_path_factory)


@pytest.fixture()
def reaper(tmp_path, server):
    yield from running_reaper(tmp_path, server.config_home)


def settings(reaper, server, **values):
    base = {"address": server.address, "effort": "fast", "skip": ONLY_TWO_KNOBS}
    for key, value in {**base, **values}.items():
        reaper.ext_state[("stito", key)] = str(value)


def assert_ticks_fast(reaper, limit_s: float = 0.050) -> None:
    """No call into the script used more than ``limit_s`` of CPU, and (allowing for preemption on a busy
    shared machine, at most 2% of calls) none took longer than that on the wall clock."""
    slowest = sorted(reaper.tick_log, key=lambda t: t[1])[-3:]
    assert max(reaper.tick_cpu_seconds) < limit_s, slowest
    late = sum(t > limit_s for t in reaper.tick_seconds)
    assert late <= len(reaper.tick_seconds) // 50, (late, len(reaper.tick_seconds), slowest)


@pytest.mark.reaper_assumption
def test_match_style_end_to_end(reaper, server, tmp_path):
    dry_in, dry_ref = phrase(6.0, RATE, seed=11), phrase(6.0, RATE, seed=12)
    inp, ref, oracle = style_project(reaper, tmp_path, dry_in, dry_ref)
    # the whole chain searched: every ZamEQ2 and ZamCompX2 parameter, Threshold included; the "normal" effort (24 x 24,
    # no time budget: with "fast" this 1-worker server ran 9 of 16 generations in its budget, and the EQ's gain,
    # +0.064, stayed under its floor, 0.075: nothing changed)
    settings(reaper, server, skip="", save_chain="whole chain", effort="normal")
    before_values = reaper.fx_values()
    before_render = inp.render(dry_in, RATE)

    reaper.run_script(MATCH, timeout_s=120)

    assert reaper.errors == [] and reaper.message_boxes == [], (reaper.errors, reaper.message_boxes)
    # Every call REAPER made into the script returned fast; the job really ran over many deferred ticks.
    assert len(reaper.tick_seconds) > 5
    assert_ticks_fast(reaper)
    # Only searched parameters may move: nothing on the [stito:skip] reverb.
    after_values = reaper.fx_values()
    moved = {(f, inp.fx[f].param_name(i)) for f in range(3) for i in range(inp.fx[f].n_params)
             if after_values[f][i] != before_values[f][i]}
    assert all(f in (0, 1) for f, _ in moved), moved
    # Closer to the hidden style (issue 18's bar) by more than 0.25 dB (the unchanged input's distance varies by 0.04 dB
    # from run to run), by a distance the optimiser did not use (it used the stats metric).
    # The reference is another phrase through the hidden EQ and the room; the [stito:skip] room is rendered at its
    # settings by the server, so the match hears what the user hears. Dragonfly's reverbs are not deterministic
    # (README), so neither is this seeded match: 3.11-3.14 -> 0.85-1.78 dB in five runs here (2026-12-06), and once
    # 3.10 -> 2.35 dB in a clean-clone CI run, which an earlier "30 % closer" assertion failed.
    after_render = inp.render(dry_in, RATE)
    d_before = multi_resolution_stft_distance(before_render, oracle, RATE)
    d_after = multi_resolution_stft_distance(after_render, oracle, RATE)
    assert d_after < d_before - 0.25, (d_before, d_after, "".join(reaper.console)[-1500:])
    assert any(f == 0 for f, _ in moved)  # the EQ carries the hidden style
    # The console says what changed, the similarity before -> after and, per effect, whether the restraint kept
    # it engaged and on what evidence (its gain against its floor).
    text = "".join(reaper.console)
    assert "style similarity to the reference:" in text and "generation" in text
    assert "restraint: " in text and "ZamEQ2: " in text and "ZamCompX2: " in text and " against a floor of " in text
    assert all(f"{short} / " in text for short in {"ZamEQ2" if f == 0 else "ZamCompX2" for f, _ in moved})
    assert "1:ZamEQ2: engaged" in text
    assert (reaper.resource_path / "FXChains" / "stito" / "whole chain.RfxChain").is_file()
    # One undo point, named as the issue says; no parameter set outside an undo block.
    assert [u.name for u in reaper.project.undo] == ["stito: Match Style"]
    assert reaper.unblocked_changes == []
    # One undo restores every original value exactly.
    assert reaper.project.undo and reaper.pointers  # the project is still the same one
    from reapy import reascript_api as RPR

    with reaper._as_main(reaper._new_main(None)):
        assert RPR.Undo_CanUndo2(0) == "stito: Match Style"
        assert RPR.Undo_DoUndo2(0) == 1
    assert reaper.fx_values() == before_values
    d_undone = multi_resolution_stft_distance(inp.render(dry_in, RATE), oracle, RATE)
    assert abs(d_undone - d_before) < 0.05 * d_before, (d_undone, d_before)  # the reverb is not bit-exact


@pytest.mark.reaper_assumption
def test_match_style_with_three_selected_items(reaper, server, tmp_path):
    # the input and two references, each another phrase through the hidden style, on tracks without FX
    dry_in = phrase(6.0, RATE, seed=11)
    inp, _, oracle = style_project(reaper, tmp_path, dry_in, phrase(6.0, RATE, seed=12),
                                   more_refs=(phrase(6.0, RATE, seed=13),))
    settings(reaper, server)
    before_render = inp.render(dry_in, RATE)

    reaper.run_script(MATCH, timeout_s=120)

    assert reaper.errors == [] and reaper.message_boxes == [], (reaper.errors, reaper.message_boxes)
    assert_ticks_fast(reaper)
    text = "".join(reaper.console)
    # both references were read and sent: the server's report combines two
    assert "matching 'Guitar' (6.0 s) to the mean of 'Reference' (6.0 s), 'Reference 2' (6.0 s)" in text, text
    assert "2 references, combined (each weighted alike)" in text, text
    assert "restraint: " in text
    d_before = multi_resolution_stft_distance(before_render, oracle, RATE)
    d_after = multi_resolution_stft_distance(inp.render(dry_in, RATE), oracle, RATE)
    assert d_after <= d_before * 1.02, (d_before, d_after)  # never further from the style (the reverb is not bit-exact)
    assert [u.name for u in reaper.project.undo] in ([], ["stito: Match Style"])


@pytest.mark.reaper_assumption
def test_the_matched_chain_is_saved_as_a_reaper_fx_chain_and_loads_back(reaper, server, tmp_path):
    # the reference is the input's own phrase through the hidden style: the match changes the two EQ knobs
    dry_in = phrase(6.0, RATE, seed=11)
    inp, _, oracle = style_project(reaper, tmp_path, dry_in, dry_in)
    settings(reaper, server, save_chain="guitar matched")
    start_eq = {n: inp.fx[0].get(inp.fx[0].param_index(n)) for n in ("Boost/Cut H", "Boost/Cut L")}
    start_render = inp.render(dry_in, RATE)
    folder = reaper.resource_path / "FXChains" / "stito"
    folder.mkdir(parents=True)
    (folder / "guitar matched.RfxChain").write_text("the user's own chain\n")  # a name already taken

    reaper.run_script(MATCH, timeout_s=120)

    assert reaper.errors == [] and reaper.message_boxes == [], (reaper.errors, reaper.message_boxes)
    assert [u.name for u in reaper.project.undo] == ["stito: Match Style"], "".join(reaper.console)
    # nothing overwritten: the taken name keeps its file, the match goes beside it
    assert (folder / "guitar matched.RfxChain").read_text() == "the user's own chain\n"
    saved = folder / "guitar matched 2.RfxChain"
    assert sorted(p.name for p in folder.iterdir()) == ["guitar matched 2.RfxChain", "guitar matched.RfxChain"]
    text = "".join(reaper.console)
    assert "saved the matched FX chain as FXChains/stito/guitar matched 2.RfxChain" in text, text
    # the reference is the input's own phrase, processed: the console says it was matched moment by moment
    assert "same performance: the reference is the input's own performance, processed" in text, text
    # REAPER's FX chain file: the three FX in order, the [stito:skip] room included, without the window lines
    body = saved.read_text()
    assert [line.split('" ', 1)[1].split(" ")[0] for line in body.splitlines() if line.startswith("<VST ")] == \
        ["ZamEQ2.vst3", "ZamCompX2.vst3", "DragonflyRoomReverb.vst3"]
    assert not any(line.split(" ")[0] in ("WNDRECT", "SHOW", "LASTSEL", "DOCKED", "<FXCHAIN", "<TRACK", "<ITEM")
                   for line in body.splitlines()), body[:400]
    # "Add FX chain" on a new track gives the matched values and the matched sound
    copy = reaper.project.add_track("Copy")
    loaded = reaper.project.add_fx_chain(copy, saved, [plugin("ZamEQ2").parent])
    matched = inp.fx
    for a, b in zip(matched, loaded):
        names = [a.param_name(i) for i in range(a.n_plugin_params)
                 if a.param_name(i) not in ("Buffer Size", "Sample Rate", "Current Program")]
        assert {n: round(b.get(b.param_index(n)), 5) for n in names} == \
               {n: round(a.get(a.param_index(n)), 5) for n in names}, a.plugin_name
    assert loaded[2].renamed == "Room [stito:skip]"
    eq = matched[0]
    assert any(abs(eq.get(eq.param_index(n)) - v) > 1e-4 for n, v in start_eq.items()), start_eq  # the EQ moved
    heard, copied = inp.render(dry_in, RATE), copy.render(dry_in, RATE)
    # the same sound: what differs is 30 dB below the signal (Dragonfly's late reverb is not bit-exact: -35 dB)
    assert np.mean(np.square(copied - heard)) < 1e-3 * np.mean(np.square(heard))
    # and the match brought the track closer to the hidden style (the [stito:skip] room rendered at its settings)
    d_start = multi_resolution_stft_distance(start_render, oracle, RATE)
    assert multi_resolution_stft_distance(heard, oracle, RATE) < 0.8 * d_start


@pytest.mark.reaper_assumption
def test_a_match_that_changes_nothing_saves_no_fx_chain(reaper, server, tmp_path):
    # the input's own audio as the reference: the restraint keeps every start
    p = reaper.project
    inp = p.add_track("Guitar")
    build_chain(reaper, inp, room=False)
    audio = write(tmp_path / "input.wav", phrase(3.0, RATE, seed=1))
    p.add_item(inp, audio, position=0.0)
    p.add_item(p.add_track("Reference"), audio, position=5.0)
    settings(reaper, server, effort="preview", save_chain="never written")
    before = reaper.fx_values()

    reaper.run_script(MATCH, timeout_s=60)

    assert reaper.errors == [] and reaper.message_boxes == [], (reaper.errors, reaper.message_boxes)
    text = "".join(reaper.console)
    assert "nothing changed, so no FX chain was saved" in text, text
    assert reaper.fx_values() == before and reaper.project.undo == []
    assert not (reaper.resource_path / "FXChains").exists()


def test_fx_chain_text_keeps_the_fx_and_drops_the_window_lines():
    sys.path.insert(0, str(SCRIPTS))
    from stito_fxchain import fx_chain_text

    chunk = ("<TRACK\nNAME x\n<FXCHAIN\nWNDRECT 1 2 3 4\nSHOW 0\nLASTSEL 0\nDOCKED 0\nBYPASS 0 0 0\n"
             '<VST "VST3: A" A.vst3 0 "" 1{X} ""\nQUJD\n>\nWAK 0 0\n>\n<FXCHAIN_REC\nSHOW 0\n>\n>\n')
    assert fx_chain_text(chunk) == 'BYPASS 0 0 0\n<VST "VST3: A" A.vst3 0 "" 1{X} ""\nQUJD\n>\nWAK 0 0\n'
    with pytest.raises(ValueError, match="no FX chain"):
        fx_chain_text("<TRACK\nNAME x\n>\n")
    with pytest.raises(ValueError, match="does not close"):
        fx_chain_text("<TRACK\n<FXCHAIN\nBYPASS 0 0 0\n<VST a\n>\n")


# --- error paths: each shows a message box saying what to do and leaves every FX parameter unchanged ---

CANCEL = SCRIPTS / "stito_cancel_match_style.py"
SETTINGS = SCRIPTS / "stito_settings.py"


@pytest.fixture()
def project(reaper, server, tmp_path):
    """Input track (ZamEQ2 + ZamCompX2) with a dry item, reference track with another item; settings set."""
    inp, ref, _ = style_project(reaper, tmp_path, phrase(3.0, RATE, seed=1), phrase(3.0, RATE, seed=2), room=False)
    settings(reaper, server, effort="preview", connect_timeout_s=1.5)
    return inp, ref


def run_expecting_box(reaper, script=MATCH, timeout_s=60.0) -> str:
    """Run ``script``; assert one message box, no script error, no change to any FX, no undo point."""
    before = reaper.fx_values()
    reaper.run_script(script, timeout_s=timeout_s)
    assert reaper.errors == [], reaper.errors
    assert len(reaper.message_boxes) == 1, (reaper.message_boxes, "".join(reaper.console))
    assert reaper.fx_values() == before
    assert reaper.project.undo == [] and reaper.unblocked_changes == []
    assert sys.modules["stito_match"]._JOB is None and reaper.ext_state.get(("stito", "running"), "") == ""
    return reaper.message_boxes[0][1]


@pytest.mark.parametrize("selected", [0, 1, 5])
def test_not_two_to_four_items(reaper, project, tmp_path, selected):
    inp, ref = project
    items = [inp.items[0], ref.items[0]]
    for k in range(3 if selected == 5 else 0):
        items.append(reaper.project.add_item(ref, ref.items[0].takes[0].source.path, position=30.0 + 10 * k))
    for k, item in enumerate(items):
        item.selected = k < selected
    text = run_expecting_box(reaper)
    assert "Select two to 4 items" in text and "one to 3 references" in text
    assert f"{selected} item(s) are selected" in text


def test_no_fx(reaper, project):
    inp, _ = project
    inp.fx.clear()
    assert "None of the items' tracks ('Guitar', 'Reference') has FX" in run_expecting_box(reaper)


def test_a_reference_on_the_input_track(reaper, project):
    inp, ref = project
    item = ref.items.pop()
    item.track = inp
    inp.items.append(item)
    assert "2 selected items are on track 'Guitar'" in run_expecting_box(reaper)


def test_ambiguous_when_both_tracks_have_fx_and_no_track_selected(reaper, project):
    inp, ref = project
    reaper.project.add_fx(ref, plugin("ZamCompX2"))
    assert "Select only the track whose FX stito should set" in run_expecting_box(reaper)


@pytest.mark.reaper_assumption
def test_unsupported_fx_named_by_the_server(reaper, project):
    inp, _ = project
    inp.fx.append(JSFX("Saturation", {"Drive (dB)": 0.3}))
    text = run_expecting_box(reaper)
    assert "cannot host these FX" in text and "#3 JS: Saturation: JSFX run only inside REAPER" in text


def test_server_not_running(reaper, project, server):
    settings(reaper, server, effort="preview", connect_timeout_s=1.0, address=f"tcp://127.0.0.1:{free_port()}")
    text = run_expecting_box(reaper)
    assert "did not answer" in text and "Start it with `stito-server`" in text


def test_server_error_reported(reaper, project, server):
    settings(reaper, server, effort="preview", skip="*:*")
    text = run_expecting_box(reaper)
    assert "stito-server could not match (ChainError)" in text and "nothing to optimise" in text


def test_no_key_file(reaper, project, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "empty-config"))
    assert "start stito-server once" in run_expecting_box(reaper)


@pytest.mark.reaper_assumption
def test_stalled_server_times_out_without_blocking_ticks(reaper, project, server):
    """A real ROUTER on 127.0.0.1 that answers with one signed progress message, then says nothing."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    secure_socket(sock, server.key, "server")  # no ZAP handler in this context: libzmq admits any CURVE client
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    settings(reaper, server, effort="preview", idle_timeout_s=1.0, address=f"tcp://127.0.0.1:{port}")
    signer = Signer(server.key)

    def stall() -> None:
        if sock.poll(10000):
            frames = sock.recv_multipart()
            ident, request = frames[0], deserialize(frames[1:], signer)
            progress = new_message("progress", {"job_id": "j1", "state": "queued", "queue_position": 0}, request)
            sock.send_multipart([ident] + serialize(progress, signer))

    thread = threading.Thread(target=stall)
    thread.start()
    try:
        text = run_expecting_box(reaper)
    finally:
        thread.join()
        sock.close(0)
        ctx.term()
    assert "stopped reporting progress for 1 s" in text
    assert "stito: queued" in "".join(reaper.console)
    assert len(reaper.tick_seconds) > 20  # it kept ticking while waiting
    assert_ticks_fast(reaper, limit_s=0.050)


@pytest.mark.reaper_assumption
def test_cancel_stops_the_match_and_changes_nothing(reaper, project, server):
    settings(reaper, server, effort="thorough", skip="")
    before = reaper.fx_values()
    reaper.run_script(MATCH, pump=False)
    deadline = time.monotonic() + 60
    while not sys.modules["stito_match"]._JOB.job_id and time.monotonic() < deadline:
        reaper.pump(max_ticks=1)
    reaper.run_script(MATCH, pump=False)  # a second run while one is running is refused
    assert "already running" in reaper.message_boxes[-1][1]
    reaper.run_script(CANCEL, pump=False)
    reaper.pump(timeout_s=60)
    assert reaper.errors == [] and len(reaper.message_boxes) == 1
    assert "stito: cancelled; nothing changed" in "".join(reaper.console)
    assert reaper.fx_values() == before and reaper.project.undo == []
    assert sys.modules["stito_match"]._JOB is None
    reaper.run_script(CANCEL)  # nothing running now
    assert reaper.message_boxes[-1][1] == "No stito match is running."


def test_fx_chain_edited_during_the_match_is_not_overwritten(reaper, project):
    inp, _ = project
    reaper.run_script(MATCH, pump=False)
    reaper.pump(max_ticks=3)
    inp.fx[1].renamed = "Comp (renamed by the user)"
    assert "changed during the match" in run_expecting_box_after_pump(reaper)


def run_expecting_box_after_pump(reaper) -> str:
    before = reaper.fx_values()
    reaper.pump(timeout_s=60)
    assert reaper.errors == [] and len(reaper.message_boxes) == 1, reaper.errors
    assert reaper.fx_values() == before and reaper.project.undo == []
    return reaper.message_boxes[0][1]


@pytest.mark.reaper_assumption
def test_settings_dialog_stores_values_and_refuses_a_bad_amount(reaper):
    reaper.user_inputs = [lambda defaults: defaults.replace("\n1\n", "\n0.5\n", 1).replace("fast", "normal")]
    reaper.run_script(SETTINGS)
    assert reaper.errors == [] and reaper.message_boxes == []
    assert reaper.ext_state[("stito", "amount")] == "0.5" and reaper.ext_state[("stito", "effort")] == "normal"
    assert ("stito", "amount") in reaper.persisted
    prompt = reaper.user_input_prompts[0]
    assert prompt[1] == 6 and prompt[3].split("\n") == ["tcp://127.0.0.1:5557", "1", "fast", "", "120", ""]
    reaper.user_inputs = ["tcp://127.0.0.1:5557\n1.7\nfast\n\n120\n"]
    reaper.run_script(SETTINGS)
    assert "amount = 1.7 is outside 0..1" in reaper.message_boxes[-1][1]
    assert reaper.ext_state[("stito", "amount")] == "0.5"  # nothing saved
    # per FX, as `stito match --amount`: stored as given; a bad one named, nothing saved
    reaper.user_inputs = ["tcp://127.0.0.1:5557\nZamEQ2=0.5,Room=1\nfast\n\n120\nvocal matched"]
    reaper.run_script(SETTINGS)
    assert reaper.ext_state[("stito", "amount")] == "ZamEQ2=0.5,Room=1"
    assert reaper.ext_state[("stito", "save_chain")] == "vocal matched"
    reaper.user_inputs = ["tcp://127.0.0.1:5557\nZamEQ2=2\nfast\n\n120\n"]
    reaper.run_script(SETTINGS)
    assert "amount 'ZamEQ2=2': give effect=amount with an amount from 0 to 1" in reaper.message_boxes[-1][1]
    assert reaper.ext_state[("stito", "amount")] == "ZamEQ2=0.5,Room=1"
    # the chain's name is a file name: a path in it is refused, named, and nothing is saved
    reaper.user_inputs = ["tcp://127.0.0.1:5557\n1\nfast\n\n120\n../vocal"]
    reaper.run_script(SETTINGS)
    assert "save_chain = '../vocal' may not contain '/'" in reaper.message_boxes[-1][1]
    assert reaper.ext_state[("stito", "save_chain")] == "vocal matched" and reaper.ext_state[("stito", "amount")] != "1"
    # emptied: saves nothing again
    reaper.user_inputs = ["tcp://127.0.0.1:5557\n1\nfast\n\n120\n"]
    reaper.run_script(SETTINGS)
    assert reaper.ext_state[("stito", "save_chain")] == ""


@pytest.mark.reaper_assumption
def test_capture_fixture_dumps_reaper_facts(reaper, project):
    inp, _ = project
    inp.selected = True
    reaper.run_script(SCRIPTS / "capture_fixture.py")
    assert reaper.errors == []
    (path,) = reaper.resource_path.glob("stito_capture_*.json")
    facts = json.loads(path.read_text())
    eq = facts["tracks"][0]["fx"][0]
    names = [p["name"][4] for p in eq["params"]]
    assert names[:4] == ["Buffer Size", "Sample Rate", "Current Program", "Boost/Cut 1"]
    assert names[-3:] == ["Bypass", "Wet", "Delta"] and eq["fx_type"][4] == "VST3"
    assert len(facts["items"]) == 2 and len(facts["items"][0]["accessor"]["first_64_frames_call"][-1]) == 128
    assert "<FXCHAIN" in facts["tracks"][0]["state_chunk"][2]
    path.unlink()
