"""The emulated ``reaper_python`` module: RPR_* functions with the ctypes shim's calling conventions.

Conventions copied from REAPER's shim (field notes §4): pointers are strings such as
``"(MediaItem*)0x0000000000001234"`` (NULL is the all-zero string, which is truthy); a function with
out-parameters returns a tuple echoing every argument (after the return value, when there is one);
strings come back truncated to the size argument minus the terminating NUL; ``proj`` may be 0 (or None)
for the current project. ``RPR_defer``/``RPR_atexit`` are not in this module: REAPER puts them in
``__main__`` only (see host.py).
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .model import FX, Item, Take, Track

if TYPE_CHECKING:
    from .host import Reaper


class EmulatorError(AssertionError):
    """A call that REAPER would crash on or silently ignore (bad pointer, unpaired undo block, ...)."""


def pointer(type_name: str, address: int) -> str:
    """REAPER's pointer string, upper-case hex, 16 digits (reapy's ``packp`` parses exactly this)."""
    return f"({type_name}*)0x{address:016X}"


def null(type_name: str) -> str:
    return pointer(type_name, 0)


class Pointers:
    """Two-way map between emulated objects and their pointer strings."""

    def __init__(self) -> None:
        self._by_str: dict[str, Any] = {}
        self._by_id: dict[int, str] = {}
        self._next = 0x7F3A10000000

    def of(self, type_name: str, obj: Any) -> str:
        if obj is None:
            return null(type_name)
        key = id(obj)
        if key not in self._by_id:
            self._next += 0x1F0
            s = pointer(type_name, self._next)
            self._by_id[key], self._by_str[s] = s, obj
        return self._by_id[key]

    def get(self, s: Any, type_name: str, func: str) -> Any:
        if not isinstance(s, str) or not s.startswith(f"({type_name}*)0x"):
            raise EmulatorError(f"{func}: expected a {type_name}* pointer string, got {s!r}")
        if s == null(type_name):
            raise EmulatorError(f"{func}: NULL {type_name}* passed; REAPER would crash or do nothing")
        if s not in self._by_str:
            raise EmulatorError(f"{func}: {s} is not a live {type_name}*")
        return self._by_str[s]

    def valid(self, s: Any) -> bool:
        return isinstance(s, str) and s in self._by_str


def _trunc(text: str, size: Any) -> str:
    n = int(size)
    return text[:max(n - 1, 0)]


class _Current:
    """Forwards attribute access to whatever ``get()`` returns now (the active emulated REAPER)."""

    def __init__(self, get: Callable[[], Any]) -> None:
        object.__setattr__(self, "_get", get)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)


def build(current: Callable[[], "Reaper"]) -> types.ModuleType:
    """The ``reaper_python`` module; its RPR_* functions act on ``current()``, the active emulated REAPER.

    Built once per process: reapy copies the functions at import, as it does inside REAPER.
    """
    reaper: Any = _Current(current)
    P: Any = _Current(lambda: current().pointers)
    mod = types.ModuleType("reaper_python")
    mod.__doc__ = "Emulated REAPER ReaScript API (tests/reaper_emulator)."
    api: dict[str, Callable[..., Any]] = {}

    def export(fn: Callable[..., Any]) -> Callable[..., Any]:
        name = fn.__name__

        def logged(*args: Any) -> Any:
            reaper.calls.append(name)
            return fn(*args)

        logged.__name__ = "RPR_" + name
        api["RPR_" + name] = logged
        return fn

    def proj_of(proj: Any, func: str) -> Any:
        if proj in (0, None, "", P.of("ReaProject", reaper.project)):
            return reaper.project
        raise EmulatorError(f"{func}: proj must be 0 or the current ReaProject*, got {proj!r}")

    def track_of(t: Any, func: str) -> Track:
        return P.get(t, "MediaTrack", func)

    def fx_of(t: Any, i: Any, func: str) -> FX | None:
        track = track_of(t, func)
        i = int(i)
        return track.fx[i] if 0 <= i < len(track.fx) else None

    # --- projects, tracks, items, takes, sources -------------------------------------------------
    @export
    def EnumProjects(idx, projfn, projfn_sz):
        found = idx in (-1, 0)
        return (P.of("ReaProject", reaper.project) if found else null("ReaProject"), idx,
                _trunc(str(reaper.project_file) if found else "", projfn_sz), projfn_sz)

    @export
    def CountTracks(proj):
        return len(proj_of(proj, "CountTracks").tracks)

    @export
    def GetTrack(proj, idx):
        tracks = proj_of(proj, "GetTrack").tracks
        return P.of("MediaTrack", tracks[idx] if 0 <= idx < len(tracks) else None)

    @export
    def GetTrackName(track, buf, buf_sz):
        return (True, track, _trunc(track_of(track, "GetTrackName").name, buf_sz), buf_sz)

    @export
    def IsTrackSelected(track):
        return bool(track_of(track, "IsTrackSelected").selected)

    @export
    def GetSelectedTrack(proj, seltrackidx):
        chosen = [t for t in proj_of(proj, "GetSelectedTrack").tracks if t.selected]
        return P.of("MediaTrack", chosen[seltrackidx] if 0 <= seltrackidx < len(chosen) else None)

    @export
    def CountSelectedTracks(proj):
        return sum(t.selected for t in proj_of(proj, "CountSelectedTracks").tracks)

    @export
    def CountSelectedMediaItems(proj):
        return len(proj_of(proj, "CountSelectedMediaItems").selected_items())

    @export
    def GetSelectedMediaItem(proj, selitem):
        items = proj_of(proj, "GetSelectedMediaItem").selected_items()
        return P.of("MediaItem", items[selitem] if 0 <= selitem < len(items) else None)

    @export
    def GetMediaItem_Track(item):
        return P.of("MediaTrack", P.get(item, "MediaItem", "GetMediaItem_Track").track)

    @export
    def GetMediaItemTrack(item):
        return P.of("MediaTrack", P.get(item, "MediaItem", "GetMediaItemTrack").track)

    @export
    def GetActiveTake(item):
        return P.of("MediaItem_Take", P.get(item, "MediaItem", "GetActiveTake").take)

    @export
    def GetMediaItemNumTakes(item):
        return len(P.get(item, "MediaItem", "GetMediaItemNumTakes").takes)

    @export
    def GetMediaItemInfo_Value(item, parmname):
        it: Item = P.get(item, "MediaItem", "GetMediaItemInfo_Value")
        if parmname == "B_UISEL":
            return float(it.selected)
        return float(it.info.get(parmname, 0.0))

    @export
    def GetMediaItemTakeInfo_Value(take, parmname):
        tk: Take = P.get(take, "MediaItem_Take", "GetMediaItemTakeInfo_Value")
        return float(tk.info.get(parmname, 0.0))

    @export
    def GetMediaItemTake_Source(take):
        return P.of("PCM_source", P.get(take, "MediaItem_Take", "GetMediaItemTake_Source").source)

    @export
    def GetMediaItemTake_Item(take):
        return P.of("MediaItem", P.get(take, "MediaItem_Take", "GetMediaItemTake_Item").item)

    @export
    def GetMediaItemTake_Track(take):
        return P.of("MediaTrack", P.get(take, "MediaItem_Take", "GetMediaItemTake_Track").item.track)

    @export
    def GetMediaSourceFileName(source, filenamebuf, filenamebuf_sz):
        src = P.get(source, "PCM_source", "GetMediaSourceFileName")
        return (source, _trunc(str(src.path), filenamebuf_sz), filenamebuf_sz)

    @export
    def GetMediaSourceSampleRate(source):
        return int(P.get(source, "PCM_source", "GetMediaSourceSampleRate").rate)

    @export
    def GetMediaSourceNumChannels(source):
        return int(P.get(source, "PCM_source", "GetMediaSourceNumChannels").channels)

    @export
    def GetMediaSourceLength(source, lengthIsQNOut):
        return (float(P.get(source, "PCM_source", "GetMediaSourceLength").length), source, False)

    @export
    def GetMediaSourceType(source, typebuf, typebuf_sz):
        P.get(source, "PCM_source", "GetMediaSourceType")
        return (source, _trunc("WAVE", typebuf_sz), typebuf_sz)

    @export
    def ValidatePtr(pointer_, ctypename):
        return P.valid(pointer_) and pointer_.startswith(f"({ctypename.rstrip('*')}*)")

    @export
    def ValidatePtr2(proj, pointer_, ctypename):
        proj_of(proj, "ValidatePtr2")
        return P.valid(pointer_) and pointer_.startswith(f"({ctypename.rstrip('*')}*)")

    # --- audio accessors (ASSUMPTIONS.md A5) ------------------------------------------------------
    @export
    def CreateTakeAudioAccessor(take):
        tk = P.get(take, "MediaItem_Take", "CreateTakeAudioAccessor")
        acc = {"take": tk}
        reaper.accessors.append(acc)
        return P.of("AudioAccessor", acc)

    @export
    def DestroyAudioAccessor(accessor):
        acc = P.get(accessor, "AudioAccessor", "DestroyAudioAccessor")
        reaper.accessors.remove(acc)

    @export
    def GetAudioAccessorStartTime(accessor):
        P.get(accessor, "AudioAccessor", "GetAudioAccessorStartTime")
        return 0.0

    @export
    def GetAudioAccessorEndTime(accessor):
        acc = P.get(accessor, "AudioAccessor", "GetAudioAccessorEndTime")
        return float(acc["take"].item.info["D_LENGTH"])

    @export
    def GetAudioAccessorSamples(accessor, samplerate, numchannels, starttime_sec, numsamplesperchannel,
                                samplebuffer):
        acc = P.get(accessor, "AudioAccessor", "GetAudioAccessorSamples")
        n, nch, rate = int(numsamplesperchannel), int(numchannels), float(samplerate)
        if len(samplebuffer) < n * nch:
            raise EmulatorError(f"GetAudioAccessorSamples: buffer of {len(samplebuffer)} < {n} x {nch}")
        tk: Take = acc["take"]
        src = tk.source
        data = reaper.source_audio(src)
        t = float(starttime_sec) + np.arange(n) / rate  # seconds from the item start
        inside = (t >= 0) & (t < tk.item.info["D_LENGTH"])
        pos = (tk.info["D_STARTOFFS"] + t * tk.info["D_PLAYRATE"]) * src.rate
        out = np.zeros((nch, n))
        for c in range(nch):
            chan = data[min(c, data.shape[0] - 1)]
            vals = np.interp(pos, np.arange(chan.size), chan, left=0.0, right=0.0)
            out[c] = np.where(inside & (pos <= chan.size - 1), vals, 0.0)
        filled = out.T.reshape(-1).tolist() + list(samplebuffer[n * nch:])
        return (int(inside.any()), accessor, samplerate, numchannels, starttime_sec, numsamplesperchannel, filled)

    # --- track FX ------------------------------------------------------------------------------
    @export
    def TrackFX_GetCount(track):
        return len(track_of(track, "TrackFX_GetCount").fx)

    @export
    def TrackFX_GetFXName(track, fx, buf, buf_sz):
        f = fx_of(track, fx, "TrackFX_GetFXName")
        return (f is not None, track, fx, _trunc(f.display_name if f else "", buf_sz), buf_sz)

    @export
    def TrackFX_GetNamedConfigParm(track, fx, parmname, bufOut, bufOut_sz):
        f = fx_of(track, fx, "TrackFX_GetNamedConfigParm")
        values = {} if f is None else {"fx_type": f.kind, "fx_ident": f.ident, "fx_name": f.fx_name,
                                       "renamed_name": f.renamed}
        ok = parmname in values
        return (ok, track, fx, parmname, _trunc(values.get(parmname, ""), bufOut_sz), bufOut_sz)

    @export
    def GetTrackStateChunk(track, str_, str_sz, isundoOptional):
        chunk = track_of(track, "GetTrackStateChunk").state_chunk()
        return (True, track, _trunc(chunk, str_sz), str_sz, isundoOptional)

    @export
    def TrackFX_GetNumParams(track, fx):
        f = fx_of(track, fx, "TrackFX_GetNumParams")
        return f.n_params if f else 0

    @export
    def TrackFX_GetParamName(track, fx, param, buf, buf_sz):
        f = fx_of(track, fx, "TrackFX_GetParamName")
        ok = f is not None and 0 <= param < f.n_params
        return (ok, track, fx, param, _trunc(f.param_name(param) if ok else "", buf_sz), buf_sz)

    @export
    def TrackFX_GetParamNormalized(track, fx, param):
        f = fx_of(track, fx, "TrackFX_GetParamNormalized")
        return f.get(int(param)) if f and 0 <= param < f.n_params else -1.0

    @export
    def TrackFX_GetParam(track, fx, param, minvalOut, maxvalOut):
        f = fx_of(track, fx, "TrackFX_GetParam")
        value = f.get(int(param)) if f and 0 <= param < f.n_params else -1.0
        return (value, track, fx, param, 0.0, 1.0)

    @export
    def TrackFX_SetParamNormalized(track, fx, param, value):
        f = fx_of(track, fx, "TrackFX_SetParamNormalized")
        if f is None or not 0 <= param < f.n_params:
            return False
        if reaper.project.undo_depth == 0:
            reaper.unblocked_changes.append((f.param_name(int(param)), float(value)))
        f.set(int(param), float(value))
        return True

    @export
    def TrackFX_GetFormattedParamValue(track, fx, param, buf, buf_sz):
        f = fx_of(track, fx, "TrackFX_GetFormattedParamValue")
        ok = f is not None and 0 <= param < f.n_params
        return (ok, track, fx, param, _trunc(f.formatted(int(param)) if ok else "", buf_sz), buf_sz)

    @export
    def TrackFX_GetParamFromIdent(track, fx, ident_str):
        f = fx_of(track, fx, "TrackFX_GetParamFromIdent")
        return f.ident_index(ident_str) if f else -1

    @export
    def TrackFX_GetEnabled(track, fx):
        f = fx_of(track, fx, "TrackFX_GetEnabled")
        return bool(f and f.enabled)

    @export
    def TrackFX_GetOffline(track, fx):
        f = fx_of(track, fx, "TrackFX_GetOffline")
        return bool(f and f.offline)

    @export
    def TrackFX_GetIOSize(track, fx, inputPinsOut, outputPinsOut):
        f = fx_of(track, fx, "TrackFX_GetIOSize")
        if f is None:
            return (-1, track, fx, 0, 0)
        pins = 1 if f.mono else 2
        return (6, track, fx, pins, pins)  # 6 = VST3 (ASSUMPTIONS.md A6)

    @export
    def TrackFX_GetPinMappings(track, fx, isoutput, pin, high32Out):
        f = fx_of(track, fx, "TrackFX_GetPinMappings")
        pins = 0 if f is None else (1 if f.mono else 2)
        return ((1 << pin) if pin < pins else 0, track, fx, isoutput, pin, 0)

    # --- undo (pairing is checked; ASSUMPTIONS.md A7) -------------------------------------------
    @export
    def Undo_BeginBlock2(proj):
        p = proj_of(proj, "Undo_BeginBlock2")
        if p.undo_depth == 0:
            p._block_before = p.fx_state()
        p.undo_depth += 1

    @export
    def Undo_BeginBlock():
        Undo_BeginBlock2(0)

    @export
    def Undo_EndBlock2(proj, descchange, extraflags):
        p = proj_of(proj, "Undo_EndBlock2")
        if p.undo_depth <= 0:
            reaper.errors.append(f"Undo_EndBlock2({descchange!r}) without Undo_BeginBlock2")
            return
        p.undo_depth -= 1
        if p.undo_depth == 0:
            after = p.fx_state()
            if after != p._block_before:
                from .model import UndoPoint
                p.undo.append(UndoPoint(str(descchange), p._block_before or {}, after))
            p._block_before = None

    @export
    def Undo_EndBlock(descchange, extraflags):
        Undo_EndBlock2(0, descchange, extraflags)

    @export
    def Undo_CanUndo2(proj):
        p = proj_of(proj, "Undo_CanUndo2")
        return p.undo[-1].name if p.undo else ""

    @export
    def Undo_DoUndo2(proj):
        p = proj_of(proj, "Undo_DoUndo2")
        if not p.undo:
            return 0
        point = p.undo.pop()
        for fx in p.all_fx:
            if id(fx) in point.before:
                fx.restore(point.before[id(fx)])
        return 1

    # --- UI, console, state ---------------------------------------------------------------------
    @export
    def ShowConsoleMsg(msg):
        reaper.console.append(str(msg))

    @export
    def ClearConsole():
        reaper.console.clear()

    @export
    def ShowMessageBox(msg, title, type_):
        reaper.message_boxes.append((str(title), str(msg), int(type_)))
        return reaper.answers.pop(0) if reaper.answers else 1

    @export
    def GetUserInputs(title, num_inputs, captions_csv, retvals_csv, retvals_csv_sz):
        reaper.user_input_prompts.append((str(title), int(num_inputs), str(captions_csv), str(retvals_csv)))
        if not reaper.user_inputs:
            return (False, title, num_inputs, captions_csv, retvals_csv, retvals_csv_sz)
        answer = reaper.user_inputs.pop(0)
        if callable(answer):
            answer = answer(retvals_csv)
        if answer is None:
            return (False, title, num_inputs, captions_csv, retvals_csv, retvals_csv_sz)
        return (True, title, num_inputs, captions_csv, _trunc(answer, retvals_csv_sz), retvals_csv_sz)

    @export
    def UpdateArrange():
        return None

    @export
    def GetResourcePath():
        return str(reaper.resource_path)

    @export
    def GetAppVersion():
        return "7.27/linux-x86_64"

    @export
    def SetExtState(section, key, value, persist):
        reaper.ext_state[(str(section), str(key))] = str(value)
        if persist:
            reaper.persisted.add((str(section), str(key)))

    @export
    def GetExtState(section, key):
        return reaper.ext_state.get((str(section), str(key)), "")

    @export
    def HasExtState(section, key):
        return (str(section), str(key)) in reaper.ext_state

    @export
    def DeleteExtState(section, key, persist):
        reaper.ext_state.pop((str(section), str(key)), None)
        reaper.persisted.discard((str(section), str(key)))

    @export
    def AddRemoveReaScript(add, sectionID, scriptfn, commit):
        reaper.registered_scripts.append((bool(add), int(sectionID), str(scriptfn)))
        return 50000 + len(reaper.registered_scripts)

    @export
    def NamedCommandLookup(command_name):
        return 0

    for name, fn in api.items():
        setattr(mod, name, fn)
    mod.__all__ = list(api)
    return mod
