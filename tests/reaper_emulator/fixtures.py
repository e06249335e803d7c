"""Shared pieces for the REAPER tests: a real stito-server process on 127.0.0.1, emulated projects, audio files."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import soundfile as sf

from stito_server.client import ServerTimeout, StitoClient
from stito_server.effects.vst3 import find_vst3
from stito_server.protocol import load_or_create_key

from .host import Reaper
from .model import FX, Track

SCRIPTS = Path(__file__).resolve().parents[2] / "stito_server" / "reaper_scripts"
RATE = 48000


def register_marker() -> None:
    """Register the ``reaper_assumption`` marker (tests whose truth rests on ASSUMPTIONS.md)."""
    config = getattr(pytest.mark, "_config", None)
    if config is not None:
        config.addinivalue_line("markers", "reaper_assumption: rests on an unverified REAPER behaviour "
                                           "listed in tests/reaper_emulator/ASSUMPTIONS.md")


def plugin(name: str) -> Path:
    found = find_vst3()
    if name not in found:
        pytest.skip(f"VST3 plugin {name} not installed (run scripts/install-test-plugins.sh)")
    return found[name]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`stito-server` in a child process, bound to 127.0.0.1 with a private key."""

    def __init__(self, config_home: Path) -> None:
        self.config_home = config_home
        self.key_file = config_home / "stito" / "key"
        self.key = load_or_create_key(self.key_file)
        self.address = f"tcp://127.0.0.1:{free_port()}"
        env = {**os.environ, "XDG_CONFIG_HOME": str(config_home)}
        self.proc = subprocess.Popen([sys.executable, "-m", "stito_server.server", "--bind", self.address,
                                      "--key-file", str(self.key_file), "--workers", "1", "--quiet",
                                      "--timeout", "120"], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        with StitoClient(self.address, self.key, timeout_s=2) as c:
            while True:
                try:
                    c.server_info(timeout_s=2)
                    break
                except ServerTimeout:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"stito-server did not start: {self.proc.stderr.read().decode()}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("config"))
    yield srv
    srv.stop()


def write(path: Path, x: np.ndarray, rate: int = RATE) -> Path:
    sf.write(str(path), np.asarray(x).T, rate, subtype="FLOAT")
    return path


def running_reaper(tmp_path: Path, config_home: Path | None = None) -> Iterator[Reaper]:
    """An emulated REAPER whose scripts find the key under ``config_home``; cleans stito's job state."""
    saved = os.environ.get("XDG_CONFIG_HOME")
    os.environ["XDG_CONFIG_HOME"] = str(config_home or tmp_path / "no-config")
    try:
        with Reaper(tmp_path / "reaper-resources") as r:
            yield r
            job_module = sys.modules.get("stito_match")
            if job_module is not None and job_module._JOB is not None:
                job_module._JOB.close()
                job_module._JOB = None
    finally:
        if saved is None:
            os.environ.pop("XDG_CONFIG_HOME", None)
        else:
            os.environ["XDG_CONFIG_HOME"] = saved


# Raw (normalized) values; ZamEQ2 renders NaN with a peak band at exactly 0 dB (raw 0.7142857).
EQ_START = {"Boost/Cut 1": 0.70, "Boost/Cut 2": 0.70}
COMP_START = {"Ratio": 0.35}
ROOM_START = {"Dry Level": 0.9, "Late Level": 0.15}
HIDDEN_EQ = {"Boost/Cut H": 0.83, "Boost/Cut L": 0.63}  # about +8 dB high shelf, -6 dB low shelf
HIDDEN_COMP: dict[str, float] = {}     # the compressor keeps its settings (MFCC barely sees threshold)


def build_chain(reaper: Reaper, track: Track, eq: dict[str, float] | None = None,
                comp: dict[str, float] | None = None, room: bool = True) -> list[FX]:
    """ZamEQ2 + ZamCompX2 (+ Dragonfly Room renamed to carry [stito:skip]) on ``track``."""
    p = reaper.project
    fxs = [p.add_fx(track, plugin("ZamEQ2"), values={**EQ_START, **(eq or {})}),
           p.add_fx(track, plugin("ZamCompX2"), values={**COMP_START, **(comp or {})})]
    if room:
        fxs.append(p.add_fx(track, plugin("DragonflyRoomReverb"), renamed="Room [stito:skip]", values=ROOM_START))
    return fxs


def style_project(reaper: Reaper, tmp_path: Path, dry_in: np.ndarray, dry_ref: np.ndarray,
                  room: bool = True, more_refs: tuple[np.ndarray, ...] = ()) -> tuple[Track, Track, np.ndarray]:
    """Input track (FX at start values, dry item) and reference track (item = dry_ref through the same
    chain at hidden settings); each of ``more_refs`` through it too, on tracks "Reference 2", "Reference 3", ...
    (items selected). Returns (input track, reference track, oracle = dry_in at hidden settings)."""
    p = reaper.project
    hidden = p.add_track("hidden (not in the project's items)")
    build_chain(reaper, hidden, HIDDEN_EQ, HIDDEN_COMP, room)
    references = [hidden.render(r, RATE) for r in (dry_ref, *more_refs)]
    oracle = hidden.render(dry_in, RATE)
    p.tracks.remove(hidden)
    inp = p.add_track("Guitar")
    build_chain(reaper, inp, None, None, room)
    ref = p.add_track("Reference")
    p.add_item(inp, write(tmp_path / "input.wav", dry_in), position=0.0)
    p.add_item(ref, write(tmp_path / "reference.wav", references[0]), position=10.0)
    for k, audio in enumerate(references[1:], start=2):
        p.add_item(p.add_track(f"Reference {k}"), write(tmp_path / f"reference{k}.wav", audio), position=10.0 * k)
    return inp, ref, oracle
