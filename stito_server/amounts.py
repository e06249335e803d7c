"""Match amounts: one number for every effect, or "effect=amount,..." per effect (stdlib only: REAPER loads it)."""

from __future__ import annotations

import math
from typing import Any

from .errors import StitoError


def amount_value(value: Any) -> float | str:
    """``amount`` as given on the command line or the wire: a number (every effect) or "effect=amount,..."."""
    if isinstance(value, bool):
        raise TypeError("not a number")
    if isinstance(value, str) and "=" in value:
        return value.strip()
    return float(value)


def parse_amounts(amount: float | str) -> dict[str, float]:
    """Per-effect amounts of "eq=0.5,reverb=1" ({} for a plain number, which applies to every effect).

    Raises:
        StitoError: a malformed entry or an amount that is not a number from 0 to 1 (named).
    """
    if not isinstance(amount, str):
        return {}
    out: dict[str, float] = {}
    for part in amount.split(","):
        name, eq, value = part.partition("=")
        name = name.strip()
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not eq or not name or not (0.0 <= number <= 1.0):
            raise StitoError(f"amount {part.strip()!r}: give effect=amount with an amount from 0 to 1, e.g. "
                             "--amount eq=0.5,reverb=1 (or one number for every effect)")
        if name in out:
            raise StitoError(f"amount names effect {name!r} twice")
        out[name] = number
    return out
