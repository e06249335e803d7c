"""stito: capture REAPER facts (run once in a real REAPER): dumps what tests/reaper_emulator/ASSUMPTIONS.md guesses."""
# @description stito: capture REAPER facts for the developers
# @author stito
# @version 0.1.0
# @about
#   Select one track holding the FX to examine (e.g. ZamEQ2, ZamCompX2) and one or two audio items,
#   run this action, and send the JSON file it names (in REAPER's resource folder) to the stito
#   developers. Reads only; changes nothing. Uses REAPER's API and the standard library only.

import json
import os
import sys
import time

RPR = sys.modules["__main__"].__dict__  # REAPER's RPR_* functions live in __main__


def call(name, *args):
    """An RPR_ function's result, or the error text (a missing function is itself a fact)."""
    fn = RPR.get("RPR_" + name)
    if fn is None:
        return {"missing": name}
    try:
        result = fn(*args)
        return list(result) if isinstance(result, tuple) else result
    except Exception as exc:  # keep going: every other fact is still worth having
        return {"error": f"{type(exc).__name__}: {exc}"}


def capture_fx(track, i):
    fx = {"index": i, "name": call("TrackFX_GetFXName", track, i, "", 512)}
    for parm in ("fx_type", "fx_ident", "fx_name", "renamed_name", "channel_config", "vst_chunk"):
        fx[parm] = call("TrackFX_GetNamedConfigParm", track, i, parm, "", 65536 if parm == "vst_chunk" else 4096)
    fx["idents"] = {x: call("TrackFX_GetParamFromIdent", track, i, x) for x in (":bypass", ":wet", ":delta")}
    fx["io_size"] = call("TrackFX_GetIOSize", track, i, 0, 0)
    fx["pins"] = {f"{'out' if out else 'in'}{pin}": call("TrackFX_GetPinMappings", track, i, out, pin, 0)
                  for out in (0, 1) for pin in range(4)}
    n = call("TrackFX_GetNumParams", track, i)
    fx["params"] = [{"name": call("TrackFX_GetParamName", track, i, p, "", 256),
                     "normalized": call("TrackFX_GetParamNormalized", track, i, p),
                     "formatted": call("TrackFX_GetFormattedParamValue", track, i, p, "", 256),
                     "range": call("TrackFX_GetParam", track, i, p, 0.0, 0.0)}
                    for p in range(n if isinstance(n, int) else 0)]
    return fx


def capture_item(item):
    take = call("GetActiveTake", item)
    source = call("GetMediaItemTake_Source", take)
    rate = call("GetMediaSourceSampleRate", source)
    info = {"item": {k: call("GetMediaItemInfo_Value", item, k) for k in
                     ("D_POSITION", "D_LENGTH", "D_VOL", "D_FADEINLEN", "D_FADEOUTLEN", "B_LOOPSRC")},
            "take": {k: call("GetMediaItemTakeInfo_Value", take, k) for k in
                     ("D_STARTOFFS", "D_PLAYRATE", "D_VOL", "I_CHANMODE", "D_PITCH")},
            "source": {"file": call("GetMediaSourceFileName", source, "", 4096), "rate": rate,
                       "channels": call("GetMediaSourceNumChannels", source)}}
    acc = call("CreateTakeAudioAccessor", take)
    info["accessor"] = {"pointer": acc, "start": call("GetAudioAccessorStartTime", acc),
                        "end": call("GetAudioAccessorEndTime", acc)}
    samples = call("GetAudioAccessorSamples", acc, rate if isinstance(rate, int) and rate > 0 else 48000, 2, 0.0,
                   64, [0.0] * 128)
    info["accessor"]["first_64_frames_call"] = samples  # which tuple element holds the samples?
    call("DestroyAudioAccessor", acc)
    return info


def main():
    facts = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "app_version": call("GetAppVersion"),
             "python": sys.version, "has___file__": "__file__" in RPR,
             "defer_in_reaper_python": hasattr(sys.modules.get("reaper_python"), "RPR_defer"),
             "null_item": call("GetSelectedMediaItem", 0, 9999), "tracks": [], "items": []}
    for t in range(call("CountSelectedTracks", 0) or 0):
        track = call("GetSelectedTrack", 0, t)
        facts["tracks"].append({"name": call("GetTrackName", track, "", 256),
                                "fx": [capture_fx(track, i) for i in range(call("TrackFX_GetCount", track))],
                                "state_chunk": call("GetTrackStateChunk", track, "", 1 << 24, False)})
    for k in range(call("CountSelectedMediaItems", 0) or 0):
        facts["items"].append(capture_item(call("GetSelectedMediaItem", 0, k)))
    path = os.path.join(call("GetResourcePath"), f"stito_capture_{time.strftime('%Y%m%d_%H%M%S')}.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(facts, f, indent=1, default=str)
    call("ShowConsoleMsg", f"stito: REAPER facts written to {path}\n")


main()
