"""Match Style as a defer-driven job: read audio, send to stito-server, poll, apply in one undo block.

Every call from REAPER (the script run and each deferred tick) does a bounded amount of work and
returns: audio is read a chunk per tick and the server is polled without waiting, so REAPER's UI never
blocks, even when the server stalls.

Process-wide state (imposed by REAPER's model, where deferred code strings run later in the same
Python process): ``_JOB``, the one running match. A second Match Style run while it is set is refused.

C extensions (pyzmq, numpy) are imported by this module only, once per process, through ``import``
(cached in ``sys.modules``); nothing here reloads or deletes modules, and the Cancel and settings actions
import none. Reports exist of REAPER crashing when a Python script that loads C extensions runs twice;
keeping one import per process is the mitigation (docs/reaper-manual-test.md checks it).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from reapy import reascript_api as RPR

import stito_apply
import stito_fxchain
import stito_gather
from stito_config import SECTION, UNDO_NAME, Settings, UserError, load

TICK_CODE = "import stito_match; stito_match.tick()"
CANCEL_GRACE_S = 10.0

_JOB: "MatchJob | None" = None


def console(text: str) -> None:
    RPR.ShowConsoleMsg(text if text.endswith("\n") else text + "\n")


def message(text: str, title: str = "stito") -> None:
    RPR.ShowMessageBox(text, title, 0)


def defer(code: str) -> None:
    """REAPER's defer lives in ``__main__`` (as reapy's own defer assumes)."""
    sys.modules["__main__"].RPR_defer(code)


class MatchJob:
    """One Match Style run, advanced by ``step`` from deferred ticks."""

    def __init__(self, settings: Settings, inp: stito_gather.ItemPlan, refs: list[stito_gather.ItemPlan],
                 fx: list[dict[str, Any]]) -> None:
        self.settings, self.inp, self.refs, self.fx = settings, inp, refs, fx
        self.signature = stito_gather.fx_signature(inp.track)
        self.readers = [stito_gather.AudioReader(p) for p in [inp, *refs]]
        self.audio: list[Any] = []
        self.client: Any = None
        self.request: Any = None
        self.job_id = ""
        self.started = time.monotonic()
        self.sent_at = 0.0
        self.last_heard = 0.0
        self.cancel_wanted = False
        self.cancel_sent_at = 0.0
        self.state = "reading"

    def close(self) -> None:
        for r in self.readers:
            r.close()
        if self.client is not None:
            self.client.close()  # LINGER 0: a request never delivered is dropped, not sent later
            self.client = None

    def step(self) -> bool:
        """Advance a bounded amount; True while the job needs more ticks.

        Raises:
            UserError: the job failed; the message says what to do. Nothing was changed.
        """
        if RPR.GetExtState(SECTION, "cancel") == "1":
            RPR.SetExtState(SECTION, "cancel", "", False)
            self.cancel_wanted = True
        if self.state == "reading":
            if self.cancel_wanted:
                console("stito: cancelled before sending; nothing changed")
                return False
            deadline = time.perf_counter() + stito_gather.TICK_BUDGET_S
            if all(r.step(deadline) for r in self.readers):
                self.audio = [r.audio() for r in self.readers]  # the send comes next tick
                for r in self.readers:
                    r.close()
                self.state = "sending"
            return True
        if self.state == "sending":
            if self.cancel_wanted:
                console("stito: cancelled before sending; nothing changed")
                return False
            self._send()
            return True
        return self._wait()

    def _send(self) -> None:
        from stito_server.client import StitoClient  # pyzmq + numpy: imported once per process
        from stito_server.protocol import load_or_create_key

        try:
            key = load_or_create_key(create=False)
        except (FileNotFoundError, PermissionError) as exc:
            raise UserError(f"{exc}. Start stito-server once (run `stito-server` in a terminal), then run Match "
                            "Style again. Nothing was changed.") from None
        x, *rs = self.audio
        self.client = StitoClient(self.settings.address, key)
        chain = {"fx": [{k: v for k, v in fx.items() if k != "display_name"} for fx in self.fx]}
        # one reference goes as one object (any 3.x server), several as a list (protocol 3.2)
        self.request = self.client.start_match(x, self.inp.rate, rs, [p.rate for p in self.refs], chain,
                                               self.settings.options())
        self.sent_at = self.last_heard = time.monotonic()
        self.state = "waiting"
        refs = ", ".join(f"'{p.track_name}' ({r.shape[1] / p.rate:.1f} s)" for p, r in zip(self.refs, rs))
        console(f"stito: matching '{self.inp.track_name}' ({x.shape[1] / self.inp.rate:.1f} s) to "
                f"{'the mean of ' if len(rs) > 1 else ''}{refs} (effort {self.settings.effort}, amount "
                f"{self.settings.amount}) at {self.settings.address}")
        for note in self.inp.notes + [n for p in self.refs for n in p.notes]:
            console(f"stito: note: {note}")

    def _wait(self) -> bool:
        now = time.monotonic()
        if self.cancel_wanted and not self.cancel_sent_at and self.job_id:
            self.client.send("cancel_request", {"job_id": self.job_id})
            self.cancel_sent_at = now
            console("stito: cancelling...")
        for msg in self.client.poll(0):
            if msg.parent_header.get("msg_id") != self.request.msg_id:
                continue
            self.last_heard = now
            if msg.msg_type == "progress":
                self._progress(msg.content)
                continue
            return self._finish(msg.content)
        s = self.settings
        if self.cancel_sent_at and now - self.cancel_sent_at > CANCEL_GRACE_S:
            console("stito: cancelled (the server did not confirm); nothing changed")
            return False
        if self.last_heard == self.sent_at and now - self.sent_at > s.connect_timeout_s:
            raise UserError(f"stito-server did not answer at {s.address} within {s.connect_timeout_s:g} s. "
                            "Start it with `stito-server` in a terminal (or fix the address with the 'stito "
                            "settings' action), then run Match Style again. Nothing was changed.")
        if now - self.last_heard > s.idle_timeout_s:
            if self.job_id:
                self.client.send("cancel_request", {"job_id": self.job_id})
            raise UserError(f"stito-server stopped reporting progress for {s.idle_timeout_s:g} s, so the match "
                            "was abandoned. Check the terminal running stito-server, restart it if it hangs, and "
                            "run Match Style again. Nothing was changed.")
        return True

    def _progress(self, c: dict[str, Any]) -> None:
        self.job_id = str(c.get("job_id", self.job_id))
        if c.get("state") == "queued":
            console(f"stito: queued (position {c.get('queue_position', '?')})")
        elif c.get("generation") is None:
            console("stito: started")
        else:
            best = c.get("best_similarity")
            console(f"stito: generation {c.get('generation')}/{c.get('max_generations')}"
                    + (f", similarity {best:.3f}" if isinstance(best, (int, float)) else "")
                    + f" ({float(c.get('elapsed_s', 0.0)):.1f} s)")

    def _finish(self, c: dict[str, Any]) -> bool:
        if c.get("status") != "ok":
            ename, evalue = str(c.get("ename", "Error")), str(c.get("evalue", "unknown error"))
            if ename == "Cancelled":
                console("stito: cancelled; nothing changed")
                return False
            if ename == "UnsupportedFX":
                listed = "\n".join(f"  #{int(u['index']) + 1} {u['name']}: {u['reason']}"
                                   for u in c.get("unsupported", []))
                raise UserError("stito cannot host these FX, so it would optimise a chain that differs from what "
                                f"you hear:\n{listed}\nBypass them, or rename them to include [stito:skip], "
                                "and run Match Style again. Nothing was changed.")
            raise UserError(f"stito-server could not match ({ename}): {evalue}\nNothing was changed.")
        track = self.inp.track
        if not RPR.ValidatePtr(track, "MediaTrack*"):  # reapy replaces ValidatePtr2 with a broken ctypes call
            raise UserError("The input track was deleted during the match. Nothing was changed.")
        if stito_gather.fx_signature(track) != self.signature:
            raise UserError(f"The FX chain on '{self.inp.track_name}' changed during the match, so the result no "
                            "longer fits it. Nothing was changed; run Match Style again.")
        rows = stito_apply.apply(track, c)
        console(stito_apply.report(self.inp.track_name, rows, c))
        if self.settings.save_chain:
            if not rows:
                console("stito: nothing changed, so no FX chain was saved\n")
            else:
                resource = RPR.GetResourcePath()
                try:
                    path = stito_fxchain.save(track, self.settings.save_chain, resource)
                except UserError as exc:
                    raise UserError(f"The match was applied (undo: '{UNDO_NAME}'), but: {exc}") from None
                console(stito_fxchain.describe(path, resource))
        return False


def start() -> None:
    """The Match Style action: validate the selection, build the job, arm the first tick."""
    global _JOB
    if _JOB is not None:
        message(f"A match is already running ({time.monotonic() - _JOB.started:.0f} s). Wait for it, or run "
                "'stito: Cancel Match Style'.")
        return
    try:
        settings = load(RPR.GetExtState)
        inp, refs = stito_gather.selected_items()
        fx = stito_gather.describe_fx(inp.track, settings)
        job = MatchJob(settings, inp, refs, fx)
    except UserError as exc:
        message(str(exc), exc.title)
        return
    RPR.SetExtState(SECTION, "cancel", "", False)
    RPR.SetExtState(SECTION, "running", "1", False)
    _JOB = job
    console(f"stito: reading audio for Match Style (undo name '{UNDO_NAME}')")
    defer(TICK_CODE)


def tick() -> None:
    """One deferred step; re-arms itself while the job runs. Never raises into REAPER."""
    global _JOB
    job = _JOB
    if job is None:
        return
    try:
        again = job.step()
    except UserError as exc:
        _end(job)
        message(str(exc), exc.title)
        return
    except Exception as exc:  # a bug: say so, keep REAPER and the project intact
        _end(job)
        message(f"stito failed unexpectedly: {type(exc).__name__}: {exc}\nNothing was changed. Please report "
                "this with the REAPER console output.")
        return
    if again:
        defer(TICK_CODE)
    else:
        _end(job)


def _end(job: MatchJob) -> None:
    global _JOB
    job.close()
    _JOB = None
    RPR.SetExtState(SECTION, "running", "", False)
    RPR.SetExtState(SECTION, "cancel", "", False)
