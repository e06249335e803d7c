"""The emulated REAPER process: runs ReaScripts as ``__main__`` under the real reapy, pumps defer/atexit ticks.

REAPER's own model imposes process-wide state, mirrored here: one ``reaper_python`` module per process
(reapy copies its functions once, at import) and one active REAPER whose project those functions act on
(``_ACTIVE``, set by ``with Reaper(...)``).
"""

from __future__ import annotations

import sys
import time
import traceback
import types
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from . import shim
from .model import Project, Source, Track
from .shim import EmulatorError, Pointers

_ACTIVE: "Reaper | None" = None
_MODULE: types.ModuleType | None = None


def active() -> "Reaper":
    """The emulated REAPER that RPR_* calls act on now."""
    if _ACTIVE is None:
        raise EmulatorError("an RPR_* function was called while no emulated REAPER is running")
    return _ACTIVE


class Reaper:
    """One emulated REAPER instance with its current project.

    Attributes:
        project: Tracks, FX, items, undo history.
        console: Every ShowConsoleMsg text, in order.
        message_boxes: (title, text, type) of every ShowMessageBox.
        answers: Scripted ShowMessageBox return values, consumed in order (default 1 = OK).
        user_inputs: Scripted GetUserInputs answers (a CSV string, a callable of the defaults, or None
            for Cancel), consumed in order; none left means the user pressed Cancel.
        ext_state: (section, key) -> value; ``persisted`` holds the keys saved with persist=True.
        errors: Script exceptions and API misuse (unpaired undo blocks, ...). A test expects none.
        tick_seconds: Wall time of every script run and deferred call (``tick_cpu_seconds``: its CPU time).
    """

    def __init__(self, resource_path: Path) -> None:
        self.resource_path = Path(resource_path)
        self.resource_path.mkdir(parents=True, exist_ok=True)
        self.project = Project()
        self.project_file = ""
        self.pointers = Pointers()
        self.console: list[str] = []
        self.message_boxes: list[tuple[str, str, int]] = []
        self.answers: list[int] = []
        self.user_inputs: list[Any] = []
        self.user_input_prompts: list[tuple[str, int, str, str]] = []
        self.ext_state: dict[tuple[str, str], str] = {}
        self.persisted: set[tuple[str, str]] = set()
        self.accessors: list[dict[str, Any]] = []
        self.registered_scripts: list[tuple[bool, int, str]] = []
        self.calls: list[str] = []
        self.errors: list[str] = []
        self.unblocked_changes: list[tuple[str, float]] = []
        self.tick_seconds: list[float] = []
        self.tick_cpu_seconds: list[float] = []  # CPU time of the same calls (immune to a busy machine)
        self.tick_log: list[tuple[str, float, float, int]] = []  # (what ran, wall s, CPU s, API calls so far)
        self._deferred: list[tuple[types.ModuleType, str]] = []
        self._at_exit: list[tuple[types.ModuleType, str]] = []
        self._audio: dict[Path, np.ndarray] = {}

    # --- lifetime -------------------------------------------------------------------------------
    def __enter__(self) -> "Reaper":
        global _ACTIVE, _MODULE
        if _ACTIVE is not None:
            raise EmulatorError("another emulated REAPER is already running in this process")
        _ACTIVE = self
        if _MODULE is None:
            _MODULE = shim.build(active)
        sys.modules["reaper_python"] = _MODULE
        with self._as_main(self._new_main(None)):
            _import_reapy_inside()
        return self

    def __exit__(self, *exc: Any) -> None:
        global _ACTIVE
        _ACTIVE = None

    # --- scripts and ticks ----------------------------------------------------------------------
    def _new_main(self, path: Path | None) -> types.ModuleType:
        """A ``__main__`` as REAPER gives a script: every RPR_* name, RPR_defer/RPR_atexit, and ``obj``
        (reapy's inside-REAPER test)."""
        main = types.ModuleType("__main__")
        main.__dict__.update({k: getattr(_MODULE, k) for k in _MODULE.__all__})
        main.obj = _MODULE
        main.RPR_defer = lambda code: self._deferred.append((main, str(code)))
        main.RPR_atexit = lambda code: self._at_exit.append((main, str(code)))
        if path is not None:
            main.__file__ = str(path)
        return main

    @contextmanager
    def _as_main(self, main: types.ModuleType) -> Iterator[None]:
        saved = sys.modules.get("__main__")
        sys.modules["__main__"] = main
        try:
            yield
        finally:
            sys.modules["__main__"] = saved

    def _run(self, main: types.ModuleType, code: Any, what: str) -> None:
        start, cpu = time.perf_counter(), time.thread_time()
        with self._as_main(main):
            try:
                exec(code, main.__dict__)
            except Exception:  # REAPER prints the traceback and stops that script's defer chain
                self.errors.append(f"{what} raised:\n{traceback.format_exc()}")
        self.tick_seconds.append(time.perf_counter() - start)
        self.tick_cpu_seconds.append(time.thread_time() - cpu)
        self.tick_log.append((what, self.tick_seconds[-1], self.tick_cpu_seconds[-1], len(self.calls)))
        if self.project.undo_depth != 0:
            self.errors.append(f"{what} left {self.project.undo_depth} undo block(s) open at the end of a cycle")
            self.project.undo_depth = 0

    def run_script(self, path: Path, pump: bool = True, timeout_s: float = 120.0) -> None:
        """Run a ReaScript as REAPER does (fresh ``__main__``), then its deferred ticks until they stop."""
        path = Path(path)
        main = self._new_main(path)
        self._run(main, compile(path.read_text(), str(path), "exec"), f"script {path.name}")
        if pump:
            self.pump(timeout_s)

    def pump(self, timeout_s: float = 120.0, interval_s: float = 0.02, max_ticks: int | None = None) -> int:
        """Run deferred calls, one cycle at a time (each registered call once per cycle, as REAPER's
        ~30 Hz timer does), until none is re-armed; then the atexit calls. Returns the cycles run."""
        deadline, cycles = time.monotonic() + timeout_s, 0
        while self._deferred:
            if time.monotonic() > deadline:
                self.errors.append(f"defer chain still running after {timeout_s:g} s")
                self._deferred.clear()
                break
            batch, self._deferred = self._deferred, []
            for main, code in batch:
                self._run(main, code, f"deferred {code!r}")
            cycles += 1
            if max_ticks is not None and cycles >= max_ticks:
                return cycles
            time.sleep(interval_s)
        for main, code in self._at_exit:
            self._run(main, code, f"atexit {code!r}")
        self._at_exit.clear()
        return cycles

    @property
    def deferred_pending(self) -> int:
        return len(self._deferred)

    # --- helpers for tests ----------------------------------------------------------------------
    def source_audio(self, source: Source) -> np.ndarray:
        if source.path not in self._audio:
            self._audio[source.path] = source.read()
        return self._audio[source.path]

    def render(self, track: Track, audio: np.ndarray, rate: int) -> np.ndarray:
        """``audio`` through ``track``'s FX as REAPER would play it."""
        return track.render(audio, rate)

    def fx_values(self) -> list[list[float]]:
        """Every parameter value of every FX, in project order."""
        return [fx.snapshot() for fx in self.project.all_fx]


def _import_reapy_inside() -> None:
    """Import the real reapy in inside-REAPER mode (re-importing it if it was loaded outside)."""
    rs = sys.modules.get("reapy.reascript_api")
    if rs is not None and hasattr(rs, "ShowConsoleMsg"):
        return
    for name in [m for m in sys.modules if m == "reapy" or m.startswith("reapy.")]:
        del sys.modules[name]
    import reapy  # noqa: F401  (inside mode: __main__ has ``obj``)

    if not reapy.is_inside_reaper() or not hasattr(reapy.reascript_api, "ShowConsoleMsg"):
        raise EmulatorError("reapy did not start in inside-REAPER mode")
