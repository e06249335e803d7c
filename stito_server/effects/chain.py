"""Chain: effects in series, and the flat [0, 1] search vector the optimiser sees."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..audio import peak_dbfs, to_channels, to_stereo
from ..errors import RenderError
from .base import Effect

RUNAWAY_DBFS = 60.0  # a render peaking above this is treated as a failure (feedback blow-up)
STREAM_BLOCK = 1 << 16  # samples per block of a streamed render (a multiple of pedalboard's 8192-sample buffer)
STREAM_ABOVE = 1 << 22  # longer audio is rendered as a stream (about 95 s at 44.1 kHz): excerpts render whole


@dataclass(frozen=True)
class SearchDim:
    """One searched parameter: vector coordinate u in [0, 1] maps to position lo + u * (hi - lo).

    Attributes:
        effect: Index of the effect in the chain.
        param: Index of the parameter in that effect's ``params``.
        lo: Lowest normalized position searched (a range override narrows it from 0).
        hi: Highest normalized position searched (a range override narrows it from 1).
    """

    effect: int
    param: int
    lo: float = 0.0
    hi: float = 1.0


class Chain:
    """Effects in series, owning the flat search vector.

    Audio always flows in stereo inside the chain (mono input is duplicated and folded back at the
    end), so mono stays mono at the output and stereo plugins see a stereo bus.
    """

    def __init__(self, effects: list[Effect], dims: list[SearchDim] | None = None, name: str = "custom",
                 spec: dict[str, Any] | None = None) -> None:
        """Build a chain.

        Args:
            effects: Effects in processing order.
            dims: Searched parameters; default every parameter of every effect, full range.
            name: Chain name for reports.
            spec: The chain spec it was built from (``specs.chain_from_dict`` rebuilds it, e.g. in a
                worker process); None for a chain assembled in code.
        """
        self.effects = list(effects)
        self.name = name
        self.spec = spec
        if dims is None:
            dims = [SearchDim(e, p) for e, fx in enumerate(self.effects) for p in range(len(fx.params))]
        for d in dims:
            if not (0 <= d.effect < len(self.effects) and 0 <= d.param < len(self.effects[d.effect].params)):
                raise ValueError(f"search dimension {d} does not exist in chain {name!r}")
            if not 0.0 <= d.lo < d.hi <= 1.0:
                raise ValueError(f"search dimension {d} has an empty or out-of-[0,1] range")
        self.dims = list(dims)

    def __len__(self) -> int:
        return len(self.dims)

    def dim_names(self) -> list[str]:
        """``"effect.parameter"`` for each vector coordinate."""
        return [f"{self.effects[d.effect].name}.{self.effects[d.effect].params[d.param].name}" for d in self.dims]

    def get_vector(self) -> np.ndarray:
        """Current settings as a search vector ``(len(self),)`` in [0, 1] (clipped into each range)."""
        states = [fx.get_normalized() for fx in self.effects]
        u = [(states[d.effect][d.param] - d.lo) / (d.hi - d.lo) for d in self.dims]
        return np.clip(np.array(u, dtype=np.float64), 0.0, 1.0)

    def set_vector(self, u: np.ndarray) -> None:
        """Apply a search vector; coordinates are clipped to [0, 1] and discrete parameters snapped.

        Raises:
            ValueError: wrong length or non-finite values.
        """
        u = np.asarray(u, dtype=np.float64)
        if u.shape != (len(self.dims),):
            raise ValueError(
                f"chain {self.name!r} takes a vector of {len(self.dims)} values "
                f"({', '.join(self.dim_names()[:6])}{', ...' if len(self.dims) > 6 else ''}), got shape {u.shape}"
            )
        if not np.all(np.isfinite(u)):
            raise ValueError(f"chain {self.name!r}: the vector contains NaN/Inf")
        u = np.clip(u, 0.0, 1.0)
        states = [fx.get_normalized() for fx in self.effects]
        for d, v in zip(self.dims, u):
            states[d.effect][d.param] = d.lo + v * (d.hi - d.lo)
        for fx, x in zip(self.effects, states):
            fx.set_normalized(x)

    @property
    def thread_safe(self) -> bool:
        """Whether every effect may render off the main thread (else renders stay on the caller's thread)."""
        return all(fx.thread_safe for fx in self.effects)

    def get_state(self) -> list[np.ndarray]:
        """Every parameter's position, per effect (searched or not)."""
        return [fx.get_normalized() for fx in self.effects]

    def set_state(self, state: list[np.ndarray]) -> None:
        """Restore positions saved by ``get_state``."""
        for fx, x in zip(self.effects, state):
            fx.set_normalized(x)

    def process(self, audio: np.ndarray, sample_rate: int, on_effect: Callable[[int], None] | None = None,
                out: np.ndarray | None = None) -> np.ndarray:
        """Render ``(channels, n)`` float32 audio (1 or 2 channels) through every effect.

        ``on_effect(i)`` is called before effect ``i`` renders (a crash watchdog records it). Audio longer than
        ``STREAM_ABOVE`` samples is rendered ``STREAM_BLOCK`` samples at a time through the whole chain, each
        effect keeping its state from block to block (``Effect.process_block``), when every effect can: the
        memory is the output's, not a whole-length copy per effect.

        Args:
            audio: ``(channels, n)`` float32.
            sample_rate: In Hz.
            on_effect: Called with each effect's index before it renders.
            out: Where to write the render (``audio``'s shape, float32); default a new array.

        Returns:
            The render ``(channels, n)`` float32 (``out`` when given); ``audio`` is not modified.

        Raises:
            RenderError: an effect produced NaN/Inf or runaway level (the message names it).
        """
        n = audio.shape[-1]
        if n > STREAM_ABOVE and self.streams:
            out = np.empty((audio.shape[0], n), np.float32) if out is None else out
            for start in range(0, n, STREAM_BLOCK):
                block = slice(start, min(start + STREAM_BLOCK, n))
                out[:, block] = self._render(audio[:, block], sample_rate, on_effect, start == 0)
            return out
        y = self._render(audio, sample_rate, on_effect, None)
        if out is None:
            return y
        out[...] = y
        return out

    @property
    def streams(self) -> bool:
        """Whether every effect can render a stream block by block (``Effect.process_block``)."""
        return all(fx.streams for fx in self.effects)

    def _render(self, audio: np.ndarray, sample_rate: int, on_effect: Callable[[int], None] | None,
                first: bool | None) -> np.ndarray:
        """``audio`` through every effect: whole (``first`` None) or as the next block of a stream."""
        x = to_stereo(np.asarray(audio, dtype=np.float32))
        for i, fx in enumerate(self.effects):
            if on_effect is not None:
                on_effect(i)
            x = fx.process(x, sample_rate) if first is None else fx.process_block(x, sample_rate, first)
            if not np.all(np.isfinite(x)):
                raise RenderError(f"effect {fx.name!r} produced NaN/Inf audio with its current settings")
            if peak_dbfs(x) > RUNAWAY_DBFS:
                raise RenderError(f"effect {fx.name!r} ran away to {peak_dbfs(x):.0f} dBFS")
        return to_channels(x, audio.shape[0]).astype(np.float32, copy=False)

    def clone(self) -> "Chain":
        """An independent copy (new plugin instances) with the same settings and search space."""
        return Chain([fx.clone() for fx in self.effects], list(self.dims), self.name, self.spec)

    def describe(self) -> list[dict[str, Any]]:
        """Every parameter in real units, searched or not.

        Returns:
            One dict per parameter: effect, param, unit, value (in unit), text (display text; for VST3
            the plugin's own), normalized (position in [0, 1]), searched, min, max.
        """
        searched = {(d.effect, d.param) for d in self.dims}
        rows = []
        for e, fx in enumerate(self.effects):
            x = fx.get_normalized()
            for i, p in enumerate(fx.params):
                rows.append({
                    "effect": fx.name, "effect_index": e, "param": p.name, "param_index": i, "unit": p.unit,
                    "value": p.from_normalized(float(x[i])), "text": fx.param_text(i), "normalized": float(x[i]),
                    "searched": (e, i) in searched, "min": p.min, "max": p.max,
                })
        return rows
