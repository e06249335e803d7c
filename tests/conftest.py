"""Shared fixtures: generated real audio (written to real files where needed) and plugin lookups."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stito_server.effects.vst3 import find_vst3
from stito_server.examples import phrase

RATE = 48000


def bench_parser() -> argparse.ArgumentParser:
    """A `stito` parser holding only the `bench` commands."""
    from bench import cli as bench_cli

    parser = argparse.ArgumentParser(prog="stito")
    bench_cli.add_parser(parser.add_subparsers(dest="command"))
    return parser


def run_quick_bench(task: str, out: Path, capsys, *args: str) -> tuple[dict, str, str]:
    """Run `stito bench TASK --quick --out OUT ARGS...` through the CLI.

    Asserts it exits 0 and writes TASK.md, .json and .png (each over 200 bytes).

    Returns:
        (the JSON report, the markdown, what it printed).
    """
    from bench import cli as bench_cli

    assert bench_cli.run(bench_parser().parse_args(["bench", task, "--quick", "--out", str(out), *args])) == 0
    printed = capsys.readouterr().out
    for suffix in ("md", "json", "png"):
        assert (out / f"{task}.{suffix}").stat().st_size > 200
    return json.loads((out / f"{task}.json").read_text()), (out / f"{task}.md").read_text(), printed


def vst3_path(name: str) -> Path:
    """Path of a test VST3 plugin; skips the test only when the plugin is absent."""
    found = find_vst3()
    if name not in found:
        pytest.skip(f"VST3 plugin {name} not installed (run `make setup`)")
    return found[name]


@pytest.fixture(scope="session")
def dry_a() -> np.ndarray:
    """6 s stereo dry phrase, ``(2, n)`` float32 at 48 kHz."""
    return phrase(6.0, RATE, seed=11)


@pytest.fixture(scope="session")
def dry_b() -> np.ndarray:
    """A different 6 s stereo dry phrase (other notes and timing)."""
    return phrase(6.0, RATE, seed=12)


def write(path: Path, x: np.ndarray, rate: int = RATE, subtype: str = "FLOAT") -> Path:
    sf.write(str(path), x.T, rate, subtype=subtype)
    return path


@pytest.fixture(scope="session")
def phrase_corpus(tmp_path_factory) -> Path:
    """A training root (as ``stito data train`` lays it out) with 6 generated 2 s clips: music and drums, 3 each."""
    root = tmp_path_factory.mktemp("train")
    for ct, seeds in (("music", (1, 2, 3)), ("drums", (4, 5, 6))):
        (root / ct).mkdir()
        clips = []
        for s in seeds:
            sf.write(str(root / ct / f"c{s}.flac"), phrase(2.0, RATE, seed=s).T, RATE, subtype="PCM_24")
            clips.append({"id": f"c{s}", "path": f"{ct}/c{s}.flac", "recording": f"r{s}", "content_type": ct,
                          "duration_s": 2.0})
        (root / ct / "manifest.json").write_text(json.dumps({"clips": clips}))
    return root
