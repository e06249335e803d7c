"""Do-no-harm: the search's prior and level penalties, effect parsimony and the acceptance rule."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..resources import package_dir
from .scoring import Scorer

FLOORS_FILE = "restraint.json"  # in the package's models folder, written by `stito train restraint`


@dataclass(frozen=True)
class Floors:
    """How much a match must gain, in objective units (similarity minus penalties), to change anything.

    Measured per metric on the training corpus (``stito train restraint``): matches whose reference is another
    recording left unprocessed, so every gain they find is the metric fitting the other recording's content.
    With ``relative``, the floors and the weights are per unit of the start's distance to the reference
    (``StyleMetric.distance``): two recordings that differ more leave more content for a chain to fit, so the
    gain a match needs, and what moving away from the start costs, grow with how far apart input and reference
    are to begin with (``scaled``).

    Attributes:
        gain: Gain over the starting settings (validation excerpts) below which nothing changes.
        effect: Contribution of one effect (the objective with the effect against it back at its start)
            below which that effect goes back to its start.
        source: Where the figures come from (shown in the report).
        prior_weight: The prior penalty's weight chosen with them (``Objective``; in the metric's units).
        level_weight: The level penalty's weight per dB squared (in the metric's units).
        effects: Contribution floors of the effect kinds measured on their own (``effect_kind``): an EQ fits
            another recording's spectrum far more than a delay fits anything, so each kind is held to its own
            noise; a kind not listed is held to ``effect``.
        relative: The floors are shares of the start's distance (else objective units).
        evidence: What gains and contributions are measured in: "objective" (the similarity minus the prior
            and level penalties) or "similarity" (minus the level penalty only: the prior shapes the search
            but is not charged again when the gain is weighed against a floor measured the same way).
    """

    gain: float
    effect: float
    source: str
    prior_weight: float = 0.0
    level_weight: float = 0.0
    effects: dict[str, float] = field(default_factory=dict)
    relative: bool = False
    evidence: str = "objective"

    def for_effect(self, kind: str) -> float:
        """The contribution floor of an effect of ``kind`` (a share of the start's distance when ``relative``)."""
        return self.effects.get(kind, self.effect)

    def scaled(self, start_distance: float) -> "Floors":
        """The floors in objective units for a start ``start_distance`` from the reference."""
        if not self.relative:
            return self
        k = max(float(start_distance), 0.0)
        return Floors(self.gain * k, self.effect * k, self.source, self.prior_weight * k, self.level_weight * k,
                      {kind: v * k for kind, v in self.effects.items()}, False, self.evidence)


def effect_kind(source: str) -> str:
    """What a floor is kept per: "builtin:<kind>" for a built-in effect, "vst3:<bundle name>" for a plugin.

    Args:
        source: ``Effect.source`` ("builtin:compressor", "vst3:/usr/lib/vst3/ZamEQ2.vst3", ...).
    """
    if source.startswith("vst3:"):
        return "vst3:" + Path(source[5:]).stem
    return source


def load_floors(metric_name: str) -> Floors | None:
    """The calibrated floors of a metric, or None when it has none (e.g. a blend or a user's own metric)."""
    path = package_dir("models") / FLOORS_FILE
    if not path.is_file():
        return None
    entry = json.loads(path.read_text(encoding="utf-8")).get("metrics", {}).get(metric_name)
    if entry is None:
        return None
    return Floors(float(entry["gain_floor"]), float(entry["effect_floor"]),
                  f"{FLOORS_FILE}: {entry['cases']} no-style training matches, quantile {entry['quantile']:g}",
                  float(entry["prior_weight"]), float(entry["level_weight"]),
                  {k: float(v) for k, v in entry.get("effect_floors", {}).items()}, bool(entry.get("relative", False)),
                  str(entry.get("evidence", "objective")))


class Objective:
    """What the search maximises: a Scorer's similarity minus a prior and a level penalty.

    The prior (MAP with a Gaussian centred on the starting settings, one per parameter) costs ``prior_weight``
    times the squared distance from the start in the normalised [0, 1] space, summed over the parameters (a
    chain with more parameters, more room to fit noise, is held back more); the level penalty costs ``level_weight``
    per dB squared that the renders' level departs from the unprocessed clips' by more than
    ``level_tolerance_db`` (the metric is peak-normalised: without it gains, make-up and output levels would be
    free dimensions it cannot see).
    """

    def __init__(self, scorer: Scorer, start: np.ndarray, prior_weight: float, level_tolerance_db: float,
                 level_weight: float) -> None:
        self.scorer, self.start = scorer, np.asarray(start, dtype=np.float64)
        self.prior_weight, self.level_tolerance_db, self.level_weight = prior_weight, level_tolerance_db, level_weight
        self.last_similarity = np.zeros(0)

    @property
    def errors(self) -> list[str]:
        return self.scorer.errors

    @property
    def last_errors(self) -> list[str | None]:
        return self.scorer.last_errors

    @property
    def last_levels_db(self) -> np.ndarray:
        return self.scorer.last_levels_db

    def dry(self) -> float:
        return self.scorer.dry()

    def penalty(self, xs: np.ndarray, levels_db: np.ndarray) -> np.ndarray:
        """``(k,)`` penalties of settings ``(k, dims)`` whose renders changed the level by ``levels_db``."""
        prior = self.prior(xs)
        excess = np.maximum(np.abs(levels_db) - self.level_tolerance_db, 0.0)
        return prior + self.level_weight * np.square(excess)

    def __call__(self, xs: np.ndarray) -> np.ndarray:
        """``(k,)`` objective values of settings ``(k, dims)`` (NaN where a render failed)."""
        xs = np.atleast_2d(xs)
        self.last_similarity = self.scorer(xs)
        return self.last_similarity - self.penalty(xs, self.scorer.last_levels_db)

    def evidence(self, xs: np.ndarray) -> np.ndarray:
        """``(k,)`` similarities of settings ``(k, dims)`` minus the level penalty alone (no prior)."""
        return self(xs) + self.prior(xs)

    def prior(self, xs: np.ndarray) -> np.ndarray:
        """``(k,)`` prior penalties of settings ``(k, dims)``."""
        return self.prior_weight * np.sum(np.square(np.atleast_2d(xs) - self.start), axis=1)


@dataclass(frozen=True)
class EffectEvidence:
    """Why one effect of the chain was engaged or left at its start.

    Attributes:
        effect: Effect name in the chain.
        kind: Its ``effect_kind``.
        moved: Whether the search moved any of its parameters.
        engaged: Whether it keeps the matched values.
        contribution: Objective with the effect as matched minus with it back at its start (validation
            excerpts), the other effects as kept; None when it did not move.
        floor: The contribution it needed.
    """

    effect: str
    kind: str
    moved: bool
    engaged: bool
    contribution: float | None
    floor: float

    def line(self) -> str:
        """One line for a console: the effect, engaged or not, and the evidence."""
        if not self.moved:
            return f"{self.effect}: left at its start (the search did not move it)"
        state = "engaged" if self.engaged else "back at its start"
        if self.contribution is None:
            return f"{self.effect}: {state} (its contribution could not be measured)"
        return f"{self.effect}: {state} (gain {self.contribution:+.4f} against a floor of {self.floor:.4f})"


@dataclass(frozen=True)
class Verdict:
    """The acceptance rule's decision on a match.

    Attributes:
        accepted: Whether any change is kept.
        gain: Objective of the kept settings minus the start's, on the validation excerpts.
        floor: The gain needed (``Floors.gain``; 0 without calibrated floors).
        reason: One sentence for the user.
        effects: Per effect of the chain with a searched parameter, in chain order.
        source: Where the floors come from.
    """

    accepted: bool
    gain: float | None
    floor: float
    reason: str
    effects: list[EffectEvidence]
    source: str

    def report(self) -> dict[str, Any]:
        """A JSON-serialisable form of the verdict; "lines" is what a console shows (the CLI and REAPER alike)."""
        return {"accepted": self.accepted, "gain": self.gain, "floor": self.floor, "reason": self.reason,
                "source": self.source, "effects": [e.__dict__ for e in self.effects], "lines": self.lines()}

    def lines(self) -> list[str]:
        """The reason, then one line per effect."""
        return [f"restraint: {self.reason}"] + [f"  {e.line()}" for e in self.effects]


def restrain(matched: np.ndarray, start: np.ndarray, effect_of_dim: np.ndarray, effect_names: list[str],
             effect_kinds: list[str], evaluate: Callable[[np.ndarray], np.ndarray], start_value: float,
             floors: Floors) -> tuple[np.ndarray, Verdict]:
    """Effect parsimony, then the acceptance rule, on the matched settings.

    Every effect whose contribution falls below its floor (``floors.for_effect``) goes back to its start (all such at once,
    then the rest re-measured, until none falls below); the result is kept only when its gain over the start
    reaches ``floors.gain``, else the start is returned.

    Args:
        matched: Matched settings ``(dims,)`` in [0, 1].
        start: Starting settings ``(dims,)``.
        effect_of_dim: ``(dims,)`` index of the effect each coordinate belongs to.
        effect_names: Name of every effect of the chain.
        effect_kinds: ``effect_kind`` of every effect of the chain.
        evaluate: Objective of settings ``(k, dims)`` -> ``(k,)`` on the validation excerpts (NaN: failed).
        start_value: The objective of ``start`` (already measured).
        floors: The floors to apply.

    Returns:
        The kept settings ``(dims,)`` and the verdict.
    """
    x = np.asarray(matched, dtype=np.float64).copy()
    moved = [bool(np.any(np.abs(x[effect_of_dim == e] - start[effect_of_dim == e]) > 1e-6))
             for e in range(len(effect_names))]
    active = [e for e in range(len(effect_names)) if moved[e]]
    contribution: dict[int, float] = {}
    engaged: dict[int, bool] = {}
    value = start_value

    def reset(v: np.ndarray, effects: list[int]) -> np.ndarray:
        out = v.copy()
        for e in effects:
            out[effect_of_dim == e] = start[effect_of_dim == e]
        return out

    while active:
        values = evaluate(np.stack([x] + [reset(x, [e]) for e in active]))
        value = float(values[0])
        if not np.isfinite(value):
            break
        weak = []
        for e, v in zip(active, values[1:]):
            # a failed render with the effect reset counts as the effect being needed
            contribution[e] = value - float(v) if np.isfinite(v) else float("inf")
            if contribution[e] < floors.for_effect(effect_kinds[e]):
                weak.append(e)
        if not weak:
            break
        for e in weak:
            engaged[e] = False
        x = reset(x, weak)
        active = [e for e in active if e not in weak]
        if not active:
            value = start_value
    for e in active:
        engaged[e] = True
    gain = value - start_value if np.isfinite(value) else float("-inf")
    accepted = bool(active and gain >= floors.gain and np.isfinite(gain))
    if not accepted:
        x = start.astype(np.float64).copy()
        engaged = {e: False for e in engaged}
        if not any(moved):
            reason = "the search found nothing better than the starting settings; nothing changed"
        elif not active:
            reason = ("no effect's contribution reached the floor (a gain a reference from another, unprocessed "
                      "recording also brings); nothing changed")
        else:
            reason = (f"the match gained {gain:+.4f} over the starting settings, below the floor of {floors.gain:.4f} "
                      "(what a reference from another, unprocessed recording also gains); nothing changed")
    else:
        reason = f"the match gained {gain:+.4f} over the starting settings, above the floor of {floors.gain:.4f}"
    effects = [EffectEvidence(name, effect_kinds[e], moved[e], engaged.get(e, False),
                              None if e not in contribution else finite_or_none(contribution[e]),
                              floors.for_effect(effect_kinds[e]))
               for e, name in enumerate(effect_names) if np.any(effect_of_dim == e)]  # effects with nothing searched:
    # not the restraint's to judge (an FX the user excluded, rendered at its settings)
    return x, Verdict(accepted, finite_or_none(gain), floors.gain, reason, effects, floors.source)


def finite_or_none(v: float) -> float | None:
    """``v`` as a float, or None when it is NaN or infinite (what a JSON report can hold)."""
    return float(v) if np.isfinite(v) else None
