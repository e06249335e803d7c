"""Every exception the product raises: one base, each type with the wire name a server replies with (stdlib only)."""

from __future__ import annotations

from typing import Any


class StitoError(Exception):
    """Base class: the message is a complete sentence that names the bad value and the valid options.

    ``wire_name`` is the protocol's ``ename`` for it (docs/protocol.md): the server replies with that name and
    ``wire_extra()``, so a new error type needs no change to the server.
    """

    wire_name = "BadRequest"

    @property
    def evalue(self) -> str:
        """The message on one line, as it goes over the wire."""
        return " ".join(str(self).split())

    def wire_extra(self) -> dict[str, Any]:
        """Fields the error reply carries besides ``ename`` and ``evalue``."""
        return {}


class AudioError(StitoError):
    """An audio file is missing, unreadable, silent, non-finite, too short or has an unsupported layout."""

    wire_name = "AudioError"


class ChainError(StitoError):
    """A chain spec names an unknown effect or parameter, a bad value, or a plugin that fails to load."""

    wire_name = "ChainError"


class UnsupportedFX(StitoError):
    """Enabled FX that the server cannot host; ``items`` lists each with its index, name and reason."""

    wire_name = "UnsupportedFX"

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items
        parts = [f"#{i['index'] + 1} {i['name']} ({i['reason']})" for i in items]
        super().__init__("the track has FX stito cannot host, so it would optimise a chain that differs from "
                         "what you hear: " + "; ".join(parts) + ". Bypass or remove them, or exclude them.")

    def wire_extra(self) -> dict[str, Any]:
        return {"unsupported": self.items}


class RenderError(StitoError):
    """A plugin produced non-finite, silent or runaway audio for settings that had to be rendered."""

    wire_name = "RenderError"


class WorkerCrashed(RenderError):
    """A render worker process died or hung; the message names the effect it was rendering."""

    wire_name = "WorkerCrashed"


class CancelledError(StitoError):
    """The caller cancelled a running match."""

    wire_name = "Cancelled"


class NamedError(StitoError):
    """An error whose wire name is chosen where it is raised (``name: sentence``)."""

    def __init__(self, ename: str, evalue: str) -> None:
        super().__init__(f"{ename}: {evalue}")
        self.wire_name, self.ename, self._evalue = ename, ename, evalue

    @property
    def evalue(self) -> str:
        return " ".join(self._evalue.split())


class ProtocolError(NamedError):
    """A message that cannot be accepted: BadFrames, TooLarge, BadSignature, BadJSON, BadVersion, BadAudio, ..."""


class RequestError(NamedError):
    """A request the server refuses before any work: BadRequest, NotAllowed, ..."""


class JobStopped(NamedError):
    """A job ended before its result: Cancelled, Timeout or ServerShutdown (the sentence says nothing changed)."""

    SENTENCES = {"Cancelled": "the match was cancelled; nothing was changed",
                 "ServerShutdown": "the server is shutting down; nothing was changed",
                 "Timeout": "the match ran past its time limit; nothing was changed",
                 "ClientGone": "the client disconnected; the match was cancelled"}

    def __init__(self, reason: str) -> None:
        super().__init__(reason, self.SENTENCES[reason])
        self.reason = reason


class ServerError(NamedError):
    """The server answered ``status: error``; ``ename``/``evalue`` are its error name and sentence."""

    def __init__(self, ename: str, evalue: str, content: dict[str, Any] | None = None) -> None:
        super().__init__(ename, evalue)
        self.content = content or {}


class ServerTimeout(StitoError):
    """No answer within the timeout; the server may not be running."""

    wire_name = "ServerTimeout"


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
