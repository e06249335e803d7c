"""The pretext effects the encoder learns from: built-ins and test VST3s, minus the benchmark's unseen ones."""

from __future__ import annotations

from stito_server.effects.base import Effect
from stito_server.errors import ChainError, did_you_mean

# Left out besides the unseen ones: "gain" (invisible after peak normalisation); slow renderers (measured per
# 3 s of stereo: ZamGEQ31 941 ms, ZaMaximX2 216 ms, ZamTube ~13x real time); ZamHeadX2 (pedalboard cannot
# scan it); ZamAutoSat (no controls); ZamGrains (a granular instrument); mono twins of stereo plugins
# (ZamComp, ZaMultiComp); ZamGate (the mono twin of the unseen ZamGateX2, which would leak it).
BUILTIN_EFFECTS: tuple[str, ...] = ("distortion", "parametric_eq", "compressor", "delay", "reverb", "highpass",
                                    "lowpass", "chorus", "phaser", "limiter", "noise_gate", "bitcrush")
VST3_EFFECTS: tuple[str, ...] = ("ZamEQ2", "ZamCompX2", "ZamDelay", "DragonflyRoomReverb", "DragonflyHallReverb",
                                 "DragonflyEarlyReflections", "ZaMultiCompX2", "ZamDynamicEQ", "ZamPhono",
                                 "ZamGateX2", "DragonflyPlateReverb")
# Held out of training, so benchmark task 3 also measures generalisation (its tasks marked ``unseen`` are
# these effects: tests/test_encoder.py holds the two lists together).
UNSEEN_EFFECTS: frozenset[str] = frozenset({"builtin:bitcrush", "vst3:DragonflyPlateReverb", "vst3:ZamGateX2"})


def pretext_effects() -> list[str]:
    """Effect ids ("builtin:NAME" / "vst3:NAME") used for training, in a fixed order (unseen ones removed)."""
    ids = [f"builtin:{n}" for n in BUILTIN_EFFECTS] + [f"vst3:{n}" for n in VST3_EFFECTS]
    return [i for i in ids if i not in UNSEEN_EFFECTS]


def make_effect(effect_id: str) -> Effect:
    """Create an effect from its id.

    Args:
        effect_id: "builtin:KIND" or "vst3:PLUGIN" (a plugin name found on the VST3 search path).

    Raises:
        ChainError: malformed id, unknown built-in or plugin not found.
    """
    kind, _, name = effect_id.partition(":")
    if kind == "builtin":
        from stito_server.effects.builtin import BuiltinEffect

        return BuiltinEffect(name)
    if kind == "vst3":
        from stito_server.effects.vst3 import VST3Effect, resolve_vst3

        return VST3Effect(resolve_vst3(name))
    raise ChainError(f"effect id {effect_id!r} must start with one of: " + did_you_mean(kind, ["builtin", "vst3"]))
