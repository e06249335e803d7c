"""Shared fixtures: generated real audio (written to real files where needed) and plugin lookups."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stito_server.effects.vst3 import find_vst3
from stito_server.examples import phrase

RATE = 48000


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
