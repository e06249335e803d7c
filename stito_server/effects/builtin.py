"""Built-in effects: pedalboard's own processors behind hand-written parameter specs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pedalboard as pb

from ..errors import ChainError, did_you_mean
from ..params import Param
from .base import Effect
from .fast_dsp import Biquad, DryGain, Processor, TanhDrive, run_processors

NYQUIST_FRACTION = 0.45  # filter frequencies are clamped below this fraction of the sample rate


def lin(name: str, unit: str, lo: float, hi: float, default: float) -> Param:
    return Param(name, unit, lo, hi, default, "linear")


def log(name: str, unit: str, lo: float, hi: float, default: float) -> Param:
    return Param(name, unit, lo, hi, default, "log")


@dataclass(frozen=True)
class Stage:
    """One processor inside a built-in effect: a pedalboard plugin or a numpy equivalent of one.

    Attributes:
        make: Creates the processor: a ``pedalboard.Plugin``, or one of ``fast_dsp``'s equivalents of one
            (same attributes, called as ``(audio, sample_rate)``).
        attrs: processor attribute -> (parameter name, converter(value, sample_rate) -> attribute value).
        active: Optional rule on the parameter values; the stage is skipped when it returns False.
    """

    make: Callable[[], Processor]
    attrs: dict[str, tuple[str, Callable[[float, int], float]]]
    active: Callable[[dict[str, float]], bool] | None = None


def same(v: float, sr: int) -> float:
    return v


def ms_to_s(v: float, sr: int) -> float:
    return v / 1000.0


def freq(v: float, sr: int) -> float:
    return min(v, NYQUIST_FRACTION * sr)


@dataclass(frozen=True)
class BuiltinSpec:
    """A built-in effect: its parameters, its stages, and an optional dry/wet parameter."""

    name: str
    description: str
    params: tuple[Param, ...]
    stages: tuple[Stage, ...]
    mix: str | None = None  # name of a [0, 1] dry/wet parameter applied around all stages


def _band(prefix: str, kind: str, f_lo: float, f_hi: float, f_def: float,
          q_def: float = 0.707) -> tuple[list[Param], Stage]:
    params = [
        lin(f"{prefix}_gain_db", "dB", -18.0, 18.0, 0.0),
        log(f"{prefix}_cutoff_hz", "Hz", f_lo, f_hi, f_def),
        log(f"{prefix}_q", "", 0.3, 6.0, q_def),
    ]
    stage = Stage(lambda: Biquad(kind), {
        "gain_db": (f"{prefix}_gain_db", same),
        "cutoff_frequency_hz": (f"{prefix}_cutoff_hz", freq),
        "q": (f"{prefix}_q", same),
    })
    return params, stage


def _parametric_eq() -> BuiltinSpec:
    params: list[Param] = [log("low_cut_hz", "Hz", 20.0, 1000.0, 20.0)]
    stages: list[Stage] = [Stage(lambda: Biquad("highpass"), {"cutoff_frequency_hz": ("low_cut_hz", freq)},
                                 active=lambda v: v["low_cut_hz"] > 20.0 * 1.001)]
    bands = [
        ("low_shelf", "low_shelf", 30.0, 500.0, 100.0),
        ("peak1", "peak", 50.0, 800.0, 200.0),
        ("peak2", "peak", 150.0, 3000.0, 800.0),
        ("peak3", "peak", 600.0, 8000.0, 2500.0),
        ("peak4", "peak", 1500.0, 16000.0, 6000.0),
        ("high_shelf", "high_shelf", 1500.0, 16000.0, 8000.0),
    ]
    for prefix, cls, lo, hi, default in bands:
        p, s = _band(prefix, cls, lo, hi, default)
        params += p
        stages.append(s)
    params.append(log("high_cut_hz", "Hz", 1000.0, 20000.0, 20000.0))
    stages.append(Stage(lambda: Biquad("lowpass"), {"cutoff_frequency_hz": ("high_cut_hz", freq)},
                        active=lambda v: v["high_cut_hz"] < 20000.0 / 1.001))
    return BuiltinSpec("parametric_eq", "low cut, low shelf, 4 peaking bands, high shelf, high cut (20 params)",
                       tuple(params), tuple(stages))


BUILTINS: dict[str, BuiltinSpec] = {s.name: s for s in [
    BuiltinSpec(
        "distortion", "tanh drive with dry/wet and output level",
        (lin("drive_db", "dB", 0.0, 40.0, 0.0), lin("mix", "", 0.0, 1.0, 1.0),
         lin("output_gain_db", "dB", -24.0, 12.0, 0.0)),
        (Stage(TanhDrive, {"drive_db": ("drive_db", same)}),
         Stage(pb.Gain, {"gain_db": ("output_gain_db", same)})),
        mix="mix",
    ),
    _parametric_eq(),
    BuiltinSpec(
        "compressor", "feed-forward compressor with make-up gain",
        (lin("threshold_db", "dB", -60.0, 0.0, 0.0), log("ratio", "", 1.0, 20.0, 1.0),
         log("attack_ms", "ms", 0.1, 100.0, 10.0), log("release_ms", "ms", 10.0, 1000.0, 100.0),
         lin("makeup_gain_db", "dB", 0.0, 24.0, 0.0)),
        (Stage(pb.Compressor, {"threshold_db": ("threshold_db", same), "ratio": ("ratio", same),
                               "attack_ms": ("attack_ms", same), "release_ms": ("release_ms", same)}),
         Stage(pb.Gain, {"gain_db": ("makeup_gain_db", same)})),
    ),
    BuiltinSpec(
        "delay", "feedback delay",
        (log("delay_ms", "ms", 10.0, 1000.0, 250.0), lin("feedback", "", 0.0, 0.9, 0.3),
         lin("mix", "", 0.0, 1.0, 0.0)),
        (Stage(pb.Delay, {"delay_seconds": ("delay_ms", ms_to_s), "feedback": ("feedback", same),
                          "mix": ("mix", same)}),),
    ),
    BuiltinSpec(
        "reverb", "Freeverb-style algorithmic reverb",
        (lin("room_size", "", 0.0, 1.0, 0.5), lin("damping", "", 0.0, 1.0, 0.5),
         lin("wet_level", "", 0.0, 1.0, 0.0), lin("dry_level", "", 0.0, 1.0, 1.0),
         lin("width", "", 0.0, 1.0, 1.0)),
        (Stage(pb.Reverb, {"room_size": ("room_size", same), "damping": ("damping", same),
                           "wet_level": ("wet_level", same), "dry_level": ("dry_level", same),
                           "width": ("width", same)}, active=lambda v: v["wet_level"] > 0.0),
         # no wet signal: the dry path alone, without JUCE's ramp-in (so the dry start is transparent)
         Stage(DryGain, {"dry_level": ("dry_level", same)}, active=lambda v: v["wet_level"] <= 0.0)),
    ),
    BuiltinSpec("gain", "level change", (lin("gain_db", "dB", -24.0, 24.0, 0.0),),
                (Stage(pb.Gain, {"gain_db": ("gain_db", same)}),)),
    BuiltinSpec("highpass", "first-order (6 dB/oct) high-pass", (log("cutoff_hz", "Hz", 20.0, 2000.0, 20.0),),
                (Stage(lambda: Biquad("highpass"), {"cutoff_frequency_hz": ("cutoff_hz", freq)}),)),
    BuiltinSpec("lowpass", "first-order (6 dB/oct) low-pass", (log("cutoff_hz", "Hz", 500.0, 20000.0, 20000.0),),
                (Stage(lambda: Biquad("lowpass"), {"cutoff_frequency_hz": ("cutoff_hz", freq)}),)),
    BuiltinSpec(
        "chorus", "modulated-delay chorus",
        (log("rate_hz", "Hz", 0.1, 10.0, 1.0), lin("depth", "", 0.0, 1.0, 0.25),
         log("centre_delay_ms", "ms", 1.0, 30.0, 7.0), lin("feedback", "", 0.0, 0.9, 0.0),
         lin("mix", "", 0.0, 1.0, 0.0)),
        (Stage(pb.Chorus, {"rate_hz": ("rate_hz", same), "depth": ("depth", same),
                           "centre_delay_ms": ("centre_delay_ms", same), "feedback": ("feedback", same),
                           "mix": ("mix", same)}),),
    ),
    BuiltinSpec(
        "phaser", "stereo phaser",
        (log("rate_hz", "Hz", 0.1, 10.0, 1.0), lin("depth", "", 0.0, 1.0, 0.5),
         log("centre_frequency_hz", "Hz", 200.0, 5000.0, 1300.0), lin("feedback", "", 0.0, 0.9, 0.0),
         lin("mix", "", 0.0, 1.0, 0.0)),
        (Stage(pb.Phaser, {"rate_hz": ("rate_hz", same), "depth": ("depth", same),
                           "centre_frequency_hz": ("centre_frequency_hz", freq),
                           "feedback": ("feedback", same), "mix": ("mix", same)}),),
    ),
    BuiltinSpec(
        "limiter", "brick-wall limiter",
        (lin("threshold_db", "dB", -30.0, 0.0, 0.0), log("release_ms", "ms", 10.0, 1000.0, 100.0)),
        (Stage(pb.Limiter, {"threshold_db": ("threshold_db", same), "release_ms": ("release_ms", same)}),),
    ),
    BuiltinSpec("bitcrush", "bit-depth reduction", (lin("bit_depth", "bits", 4.0, 16.0, 16.0),),
                (Stage(pb.Bitcrush, {"bit_depth": ("bit_depth", same)}),)),
    BuiltinSpec(
        "noise_gate", "downward expander / gate",
        (lin("threshold_db", "dB", -80.0, 0.0, -80.0), log("ratio", "", 1.0, 20.0, 10.0),
         log("attack_ms", "ms", 0.1, 100.0, 1.0), log("release_ms", "ms", 10.0, 1000.0, 100.0)),
        (Stage(pb.NoiseGate, {"threshold_db": ("threshold_db", same), "ratio": ("ratio", same),
                              "attack_ms": ("attack_ms", same), "release_ms": ("release_ms", same)}),),
    ),
]}


def settle_reverb(reverb: pb.Reverb, sample_rate: int) -> None:
    """Let JUCE's reverb reach its current settings before a render.

    Its parameters glide for 10 ms from wherever the last render left them (measured: the first 440 samples at
    44.1 kHz differ by up to 0.26 between two renders of the same settings after others), so a render would depend
    on the one before it; 20 ms of silence, rendered from a reset state, settles them (the render that follows
    resets the reverb's audio again).
    """
    reverb.process(np.zeros((2, max(1, int(0.02 * sample_rate))), np.float32), sample_rate, reset=True)


class BuiltinEffect(Effect):
    """A built-in effect: pedalboard processors configured from a BuiltinSpec."""

    def __init__(self, kind: str, name: str | None = None) -> None:
        """Create a built-in effect at its default settings.

        Args:
            kind: One of ``BUILTINS`` (e.g. "compressor").
            name: Label in the chain; defaults to ``kind``.

        Raises:
            ChainError: unknown kind; the message lists the built-in effects.
        """
        if kind not in BUILTINS:
            raise ChainError(f"unknown built-in effect {kind!r}; " + did_you_mean(kind, sorted(BUILTINS), 40))
        self.spec = BUILTINS[kind]
        self.name = name or kind
        self.source = f"builtin:{kind}"
        self.params = self.spec.params
        self._x = np.array([p.to_normalized(p.default) for p in self.params])
        self._plugins = [stage.make() for stage in self.spec.stages]
        self._stream: dict[int, np.ndarray] = {}  # filter states of a stream being rendered (process_block)

    def get_normalized(self) -> np.ndarray:
        return self._x.copy()

    def set_normalized(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (len(self.params),):
            raise ValueError(f"effect {self.name!r} takes {len(self.params)} positions, got shape {x.shape}")
        self._x = np.array([p.snap(v) for p, v in zip(self.params, x)])

    def values(self) -> dict[str, float]:
        """Current parameter values in their units, by name."""
        return {p.name: p.from_normalized(v) for p, v in zip(self.params, self._x)}

    def process(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        return self._render(audio, sample_rate, None, True)

    @property
    def streams(self) -> bool:
        return True

    def process_block(self, audio: np.ndarray, sample_rate: int, first: bool) -> np.ndarray:
        if first:
            self._stream = {}
        return self._render(audio, sample_rate, self._stream, first)

    def _render(self, audio: np.ndarray, sample_rate: int, stream: dict[int, np.ndarray] | None,
                first: bool) -> np.ndarray:
        """``audio`` rendered whole (``stream`` None) or as the next block of a stream (``run_processors``)."""
        values = self.values()
        active = []
        for stage, plugin in zip(self.spec.stages, self._plugins):
            if stage.active is not None and not stage.active(values):
                continue
            for attr, (pname, convert) in stage.attrs.items():
                setattr(plugin, attr, convert(values[pname], sample_rate))
            active.append(plugin)
        if first:  # a whole render, or a stream's first block: from settled settings, whatever came before
            for plugin in active:
                if isinstance(plugin, pb.Reverb):
                    settle_reverb(plugin, sample_rate)
        wet = run_processors(active, audio, sample_rate, stream, first)
        if self.spec.mix is not None:  # in place on our own render: one whole-length temporary, not three
            m = values[self.spec.mix]
            wet = np.multiply(wet, np.float32(m), out=wet, dtype=np.float32)
            wet += np.float32(1.0 - m) * audio
        return wet.astype(np.float32, copy=False)

    def clone(self) -> "BuiltinEffect":
        other = BuiltinEffect(self.spec.name, self.name)
        other.set_normalized(self._x)
        return other
