"""Exception types that carry one clear, user-facing sentence."""

from __future__ import annotations


class StitoError(Exception):
    """Base class: the message is a complete sentence that names the bad value and the valid options."""


class AudioError(StitoError):
    """An audio file is missing, unreadable, silent, non-finite, too short or has an unsupported layout."""


class ChainError(StitoError):
    """A chain spec names an unknown effect or parameter, a bad value, or a plugin that fails to load."""


class RenderError(StitoError):
    """A plugin produced non-finite, silent or runaway audio for settings that had to be rendered."""


class CancelledError(StitoError):
    """The caller cancelled a running match."""


def did_you_mean(value: str, options: list[str], limit: int = 12) -> str:
    """Format the valid options for an error message, closest ones first.

    Args:
        value: The bad value the user gave.
        options: Every valid option.
        limit: How many options to list before eliding the rest.

    Returns:
        A string like "valid: a, b, c (and 4 more)".
    """
    import difflib

    close = difflib.get_close_matches(value, options, n=3, cutoff=0.5)
    ordered = close + [o for o in options if o not in close]
    shown = ", ".join(ordered[:limit])
    more = len(ordered) - limit
    return f"valid: {shown}" + (f" (and {more} more)" if more > 0 else "")
