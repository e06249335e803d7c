"""Param: one effect control with its unit, range, scale and kind, mapped to and from [0, 1]."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Scale = Literal["linear", "log", "table"]
Kind = Literal["continuous", "bool", "choice"]


@dataclass(frozen=True)
class Param:
    """An effect parameter in real units.

    The normalized position ``x`` in [0, 1] is the parameter's own control space: for a built-in effect
    it follows ``scale`` (log for Hz and ms), for a VST3 plugin it is the plugin's normalized value
    (``raw_value``) and ``table`` holds the measured mapping from it to the plugin's displayed unit.

    Attributes:
        name: Parameter name; for built-ins it ends with the unit (``threshold_db``, ``cutoff_hz``).
        unit: Unit symbol for display ("dB", "Hz", "ms", "s", "%", "" for unitless).
        min: Value at x = 0, in ``unit``.
        max: Value at x = 1, in ``unit`` (may be smaller than ``min`` for a decreasing plugin control).
        default: Default value, in ``unit``.
        scale: "linear", "log" (needs min, max > 0) or "table" (piecewise-linear over ``table``).
        kind: "continuous", "bool" (two positions) or "choice" (``steps`` evenly spaced positions).
        steps: Number of positions for bool/choice kinds, 0 for continuous.
        choices: Optional labels of the positions of a choice parameter.
        table: For scale "table": (x points ascending in [0, 1], values in ``unit`` at those points).
    """

    name: str
    unit: str
    min: float
    max: float
    default: float
    scale: Scale = "linear"
    kind: Kind = "continuous"
    steps: int = 0
    choices: tuple[str, ...] = ()
    table: tuple[tuple[float, ...], tuple[float, ...]] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.scale not in ("linear", "log", "table"):
            raise ValueError(f"Param {self.name!r}: scale {self.scale!r} is not one of linear, log, table")
        if self.kind not in ("continuous", "bool", "choice"):
            raise ValueError(f"Param {self.name!r}: kind {self.kind!r} is not one of continuous, bool, choice")
        if self.scale == "log" and (self.min <= 0 or self.max <= 0):
            raise ValueError(f"Param {self.name!r}: log scale needs a positive range, got {self.min}..{self.max}")
        if self.scale == "table" and (self.table is None or len(self.table[0]) < 2):
            raise ValueError(f"Param {self.name!r}: table scale needs at least two (x, value) points")
        if self.kind == "bool" and self.steps not in (0, 2):
            raise ValueError(f"Param {self.name!r}: a bool has 2 steps, got {self.steps}")
        if self.kind == "choice" and self.steps < 2:
            raise ValueError(f"Param {self.name!r}: a choice needs at least 2 steps, got {self.steps}")
        if self.choices and len(self.choices) != self.n_steps:
            raise ValueError(f"Param {self.name!r}: {len(self.choices)} choice labels for {self.n_steps} steps")

    @property
    def n_steps(self) -> int:
        """Number of discrete positions (0 for a continuous parameter)."""
        return 2 if self.kind == "bool" else self.steps

    @property
    def label(self) -> str:
        """Name with unit for display, e.g. "Threshold [dB]"."""
        return f"{self.name} [{self.unit}]" if self.unit and not self.name.endswith(_suffix(self.unit)) else self.name

    def snap(self, x: float) -> float:
        """Snap a normalized position to the nearest allowed one (identity for continuous)."""
        x = float(min(max(x, 0.0), 1.0))
        n = self.n_steps
        if n:
            return round(x * (n - 1)) / (n - 1)
        return x

    def to_normalized(self, value: float) -> float:
        """Map a value in ``unit`` (or a choice label) to its normalized position in [0, 1].

        Raises:
            ValueError: the value lies outside [min, max] or is not a valid choice label.
        """
        if isinstance(value, str):
            if value not in self.choices:
                raise ValueError(f"{self.name}: {value!r} is not a choice; valid: {', '.join(self.choices)}")
            return self.choices.index(value) / (self.n_steps - 1)
        value = float(value)
        lo, hi = sorted((self.min, self.max))
        tol = 1e-9 * max(1.0, abs(lo), abs(hi))
        if not (lo - tol <= value <= hi + tol):
            raise ValueError(f"{self.name}: {value:g} {self.unit} is outside its range {lo:g}..{hi:g} {self.unit}".rstrip())
        if self.scale == "table":
            xs, vs = self.table  # type: ignore[misc]
            if vs[-1] < vs[0]:
                x = float(np.interp(value, vs[::-1], xs[::-1]))
            else:
                x = float(np.interp(value, vs, xs))
        elif self.max == self.min:
            x = 0.0
        elif self.scale == "log":
            x = math.log(value / self.min) / math.log(self.max / self.min)
        else:
            x = (value - self.min) / (self.max - self.min)
        return self.snap(x)

    def from_normalized(self, x: float) -> float:
        """Map a normalized position in [0, 1] (clipped, snapped) to a value in ``unit``."""
        x = self.snap(x)
        if self.scale == "table":
            xs, vs = self.table  # type: ignore[misc]
            return float(np.interp(x, xs, vs))
        if self.scale == "log":
            return float(self.min * (self.max / self.min) ** x)
        return float(self.min + x * (self.max - self.min))

    def format(self, x: float) -> str:
        """Human text of a normalized position, e.g. "-12.0 dB" or a choice label."""
        x = self.snap(x)
        if self.choices:
            return self.choices[round(x * (self.n_steps - 1))]
        if self.kind == "bool":
            return "on" if x >= 0.5 else "off"
        value = self.from_normalized(x)
        text = f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"
        return f"{text} {self.unit}".rstrip()

    def with_range(self, lo: float, hi: float) -> tuple[float, float]:
        """Normalized sub-range [x_lo, x_hi] for a range override given in units.

        Raises:
            ValueError: a bound lies outside the parameter's own range or the range is empty.
        """
        x_lo, x_hi = self.to_normalized(lo), self.to_normalized(hi)
        if x_lo == x_hi:
            raise ValueError(f"{self.name}: range {lo:g}..{hi:g} {self.unit} is empty".rstrip())
        return (min(x_lo, x_hi), max(x_lo, x_hi))


def _suffix(unit: str) -> str:
    return "_" + unit.lower().replace("%", "pct")
