"""Effect: the one interface every effect (built-in or VST3) presents to the chain and the optimiser."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod

import numpy as np

from ..errors import ChainError, did_you_mean
from ..params import Param


def snake(name: str) -> str:
    """pedalboard-style key of a parameter name: "Boost/Cut 1" -> "boost_cut_1"."""
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


class Effect(ABC):
    """An audio effect with ordered parameters, each at a normalized position in [0, 1].

    Subclasses set ``name`` (the label shown to users), ``source`` (e.g. "builtin:compressor" or
    "vst3:/path/ZamEQ2.vst3") and ``params`` (every controllable parameter, in order).
    """

    name: str
    source: str
    params: tuple[Param, ...]

    @abstractmethod
    def get_normalized(self) -> np.ndarray:
        """Current positions, ``(len(params),)`` float64 in [0, 1]."""

    @abstractmethod
    def set_normalized(self, x: np.ndarray) -> None:
        """Set every parameter from positions ``(len(params),)`` in [0, 1]; discrete ones are snapped."""

    @abstractmethod
    def process(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Render ``(2, n)`` float32 audio (stereo in, stereo out) with the current settings, from a reset state.

        Returns a new array; ``audio`` is not modified.
        """

    @property
    def streams(self) -> bool:
        """Whether ``process_block`` can render a stream (else the chain renders long audio whole)."""
        return False

    def process_block(self, audio: np.ndarray, sample_rate: int, first: bool) -> np.ndarray:
        """Render the next ``(2, n)`` float32 block of a stream with the current settings, keeping the effect's
        state across calls (``first``: from a reset state). The blocks of a stream, joined, equal ``process`` of
        the whole (``Chain.process`` renders long audio this way, so no effect holds whole-length copies).

        Returns:
            A new array; ``audio`` is not modified.
        """
        raise NotImplementedError(f"effect {self.name!r} cannot render a stream")

    @abstractmethod
    def clone(self) -> "Effect":
        """An independent copy with the same settings (a new plugin instance for VST3)."""

    @property
    def thread_safe(self) -> bool:
        """Whether ``process`` may be called from a thread other than the main thread."""
        return True

    def param_text(self, index: int) -> str:
        """Display text of parameter ``index`` at its current position, e.g. "-12.0 dB"."""
        return self.params[index].format(float(self.get_normalized()[index]))

    def param_value(self, index: int) -> float:
        """Value of parameter ``index`` in its unit."""
        return self.params[index].from_normalized(float(self.get_normalized()[index]))

    def param_index(self, name: str) -> int:
        """Index of a parameter given by its name or its snake-case key (case-insensitive).

        Raises:
            ChainError: no such parameter; the message lists the valid names.
        """
        key = snake(name)
        for i, p in enumerate(self.params):
            if p.name == name or snake(p.name) == key:
                return i
        raise ChainError(
            f"effect {self.name!r} has no parameter {name!r}; "
            + did_you_mean(name, [p.name for p in self.params], limit=60)
        )

    def set_values(self, values: dict[str, float | str]) -> None:
        """Set parameters by name, values in their units (or choice labels).

        Raises:
            ChainError: unknown parameter or value out of range.
        """
        x = self.get_normalized()
        for name, value in values.items():
            i = self.param_index(name)
            try:
                x[i] = self.params[i].to_normalized(value)
            except ValueError as exc:
                raise ChainError(f"effect {self.name!r}: {exc}") from None
        self.set_normalized(x)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} ({len(self.params)} params)>"
