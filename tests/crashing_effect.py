"""Test-only effects that crash or hang their process, to prove a bad plugin fails one job, not the server."""

import os
import signal

from stito_server.effects.builtin import BuiltinEffect


class CrashingGain(BuiltinEffect):
    """A gain that kills its own process (SIGSEGV, like a crashing plugin) when gain_db goes above +6 dB."""

    def __init__(self, name=None):
        super().__init__("gain", name or "crashing_gain")

    def process(self, audio, sample_rate):
        if self.values()["gain_db"] > 6.0:
            os.kill(os.getpid(), signal.SIGSEGV)
        return super().process(audio, sample_rate)

    def clone(self):
        other = CrashingGain(self.name)
        other.set_normalized(self.get_normalized())
        return other


def make(name=None):
    return CrashingGain(name)
