"""stito's REAPER settings: stored with Set/GetExtState, validated, turned into match options (stdlib only)."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import asdict, dataclass, fields
from typing import Callable

SECTION = "stito"
UNDO_NAME = "stito: Match Style"
# Put this in an FX's name (FX chain window: right-click the FX, "Rename FX instance") to leave it alone.
FX_MARKER = "[stito:skip]"
DEFAULT_ADDRESS = "tcp://127.0.0.1:5557"  # the same as stito_server.protocol.DEFAULT_ADDRESS
FXCHAIN_FOLDER = ("FXChains", "stito")  # under REAPER's resource folder: where a matched chain is saved
BAD_NAME_CHARS = '/\\:*?"<>|'

# Search effort -> options sent to stito-server (see docs/protocol.md, match_request.options): a named
# search preset of the server ("fast": seconds on 2 cores; "paper": the ST-ITO paper's search, minutes),
# optionally with overrides.
EFFORTS: dict[str, dict[str, object]] = {
    "preview": {"preset": "fast", "popsize": 8, "max_generations": 4, "excerpt_seconds": 2.0},
    "fast": {"preset": "fast"},
    "normal": {"preset": "fast", "popsize": 24, "max_generations": 24, "time_budget_s": None},
    "thorough": {"preset": "paper"},
}


class UserError(Exception):
    """Something the user can fix; the message says what happened and what to do."""

    def __init__(self, message: str, title: str = "stito") -> None:
        super().__init__(message)
        self.title = title


@dataclass
class Settings:
    """Everything the stito actions read from REAPER's ExtState section "stito".

    Attributes:
        address: stito-server endpoint.
        amount: Match amount, 0 (leave as is) .. 1 (full match), for every FX; or per FX as text,
            "ZamEQ2=0.5,DragonflyRoomReverb=1" (FX not named take 1), as ``stito match --amount``.
        effort: One of EFFORTS.
        skip: Parameters to leave alone: ``;``-separated ``FX:param`` glob patterns (case-insensitive;
            ``FX`` matches the FX's name or its short plugin name; a pattern without ``:`` means any FX);
            a leading ``+`` re-includes; the last matching pattern wins.
        connect_timeout_s: No answer at all within this -> "server not running".
        idle_timeout_s: No progress for this long -> "server stopped answering".
        job_timeout_s: Longest match the server should run.
        save_chain: After a match that changed something, save the track's FX chain as
            ``<resource>/FXChains/stito/<save_chain>.RfxChain`` (REAPER's FX chain preset; a taken name gets " 2",
            " 3" ...); empty: save nothing.
    """

    address: str = DEFAULT_ADDRESS
    amount: float | str = 1.0
    effort: str = "fast"
    skip: str = ""
    connect_timeout_s: float = 5.0
    idle_timeout_s: float = 120.0
    job_timeout_s: float = 1800.0  # "thorough" (the paper preset) can run over 10 min on 30 s of zam-strip, 2 cores
    save_chain: str = ""

    def options(self) -> dict[str, object]:
        """Match options for the request."""
        return {**EFFORTS[self.effort], "amount": self.amount, "timeout_s": self.job_timeout_s}

    def param_excluded(self, fx_name: str, param_name: str) -> bool:
        """Whether ``skip`` leaves this parameter alone."""
        excluded = False
        names = {fx_name.lower(), short_fx_name(fx_name).lower()}
        for raw in self.skip.split(";"):
            pattern = raw.strip()
            if not pattern:
                continue
            include = pattern.startswith("+")
            pattern = pattern.lstrip("+-").strip()
            fx_pat, _, param_pat = pattern.rpartition(":")
            fx_pat = fx_pat.strip().lower() or "*"
            if any(fnmatch.fnmatchcase(n, fx_pat) for n in names) and \
                    fnmatch.fnmatchcase(param_name.lower(), param_pat.strip().lower()):
                excluded = not include
        return excluded


def short_fx_name(name: str) -> str:
    """ "VST3: ZamEQ2 (Damien Zammit)" -> "ZamEQ2"."""
    m = re.match(r"^\s*[A-Za-z0-9]+i?:\s*(.+?)(\s*\([^()]*\))?\s*$", name)
    return m.group(1) if m else name.strip()


def fx_excluded(display_name: str) -> bool:
    """Whether the FX's (possibly renamed) name carries FX_MARKER."""
    return FX_MARKER in display_name.lower()


def parse(values: dict[str, str]) -> Settings:
    """Validate text values (from ExtState or the settings dialog) into Settings.

    Raises:
        UserError: names the bad value and what is allowed.
    """
    s = Settings()
    for f in fields(Settings):
        text = values.get(f.name, "")
        if text is None or str(text).strip() == "":
            continue
        text = str(text).strip()
        if f.name == "amount" and "=" in text:  # per FX: checked as the server will read it
            from stito_server.amounts import parse_amounts
            from stito_server.errors import StitoError

            try:
                parse_amounts(text)
            except StitoError as exc:
                raise UserError(f"stito setting amount: {exc}. Fix it with the 'stito settings' action.") from None
            s.amount = text
            continue
        if f.type in ("float", float, "float | str"):
            try:
                value = float(text)
            except ValueError:
                raise UserError(f"stito setting {f.name} = {text!r} is not a number. "
                                "Fix it with the 'stito settings' action.") from None
            setattr(s, f.name, value)
        else:
            setattr(s, f.name, text)
    if not isinstance(s.amount, str) and not 0.0 <= s.amount <= 1.0:
        raise UserError(f"stito setting amount = {s.amount:g} is outside 0..1 (0 = leave as is, 1 = full match). "
                        "Fix it with the 'stito settings' action.")
    if s.effort not in EFFORTS:
        raise UserError(f"stito setting effort = {s.effort!r} is not one of {', '.join(EFFORTS)}. "
                        "Fix it with the 'stito settings' action.")
    if not re.match(r"^(tcp|ipc)://\S+$", s.address):
        raise UserError(f"stito setting address = {s.address!r} is not a ZeroMQ endpoint like {DEFAULT_ADDRESS}. "
                        "Fix it with the 'stito settings' action.")
    bad = sorted({c for c in s.save_chain if c in BAD_NAME_CHARS or ord(c) < 32})
    if bad or s.save_chain.startswith(".") or len(s.save_chain) > 120:
        why = (f"may not contain {', '.join(repr(c) for c in bad)}" if bad
               else "may not start with '.'" if s.save_chain.startswith(".") else "is longer than 120 characters")
        raise UserError(f"stito setting save_chain = {s.save_chain!r} {why}: it is a file name (without .RfxChain), "
                        f"e.g. 'vocal matched'; empty saves nothing. Fix it with the 'stito settings' action.")
    for name in ("connect_timeout_s", "idle_timeout_s", "job_timeout_s"):
        if not getattr(s, name) > 0:
            raise UserError(f"stito setting {name} = {getattr(s, name):g} must be more than 0 seconds.")
    return s


def load(get_ext_state: Callable[[str, str], str]) -> Settings:
    """Settings from ExtState (``get_ext_state`` is RPR_GetExtState); unset keys keep their defaults."""
    return parse({f.name: get_ext_state(SECTION, f.name) for f in fields(Settings)})


def save(settings: Settings, set_ext_state: Callable[[str, str, str, bool], None]) -> None:
    """Store every setting with persist=True (kept in reaper-extstate.ini across sessions)."""
    for key, value in asdict(settings).items():
        set_ext_state(SECTION, key, f"{value:g}" if isinstance(value, float) else str(value), True)
