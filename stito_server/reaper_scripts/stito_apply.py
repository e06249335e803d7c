"""Apply a match_reply to the track FX inside one undo block and describe what changed."""

from __future__ import annotations

from typing import Any

from reapy import reascript_api as RPR

from stito_config import UNDO_NAME, short_fx_name

UNDO_STATE_FX = 2  # REAPER's UNDO_STATE_FX flag: track/master FX (ASSUMPTIONS A7)


def apply(track: str, content: dict[str, Any]) -> list[dict[str, Any]]:
    """Set every returned parameter with TrackFX_SetParamNormalized, all in one undo block.

    REAPER's parameter API is used directly: reapy's ``FXParam.normalized`` setter raises AttributeError.

    Returns:
        One row per parameter whose value moved: fx, fx_name, param, name, old, new, before_text, text.
    """
    rows: list[dict[str, Any]] = []
    RPR.Undo_BeginBlock2(0)
    try:
        _set_all(track, content, rows)
    except Exception:
        for r in reversed(rows):  # leave the project as it was, then let the caller report the error
            RPR.TrackFX_SetParamNormalized(track, r["fx"], r["param"], r["old"])
        raise
    finally:
        RPR.Undo_EndBlock2(0, UNDO_NAME, UNDO_STATE_FX)
    return rows


def _set_all(track: str, content: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    for fx in content.get("fx", []):
        i = int(fx["index"])
        fx_name = RPR.TrackFX_GetFXName(track, i, "", 512)[3]
        for p in fx.get("params", []):
            j, new = int(p["index"]), min(max(float(p["value"]), 0.0), 1.0)
            old = float(RPR.TrackFX_GetParamNormalized(track, i, j))
            if abs(new - old) <= 1e-7:
                continue
            RPR.TrackFX_SetParamNormalized(track, i, j, new)
            rows.append({"fx": i, "fx_name": fx_name, "param": j, "name": p.get("name", f"#{j}"),
                         "old": old, "new": new, "before_text": p.get("before_text", f"{old:.3f}"),
                         "text": p.get("text", f"{new:.3f}")})


def report(track_name: str, rows: list[dict[str, Any]], content: dict[str, Any]) -> str:
    """Console text: every change (FX, parameter, old -> new in units) and the similarity."""
    lines = [f"stito: Match Style set {len(rows)} parameter(s) on track '{track_name}' "
             f"(undo: '{UNDO_NAME}')"]
    for r in rows:
        lines.append(f"  #{r['fx'] + 1} {short_fx_name(r['fx_name'])} / {r['name']}: "
                     f"{r['before_text']} -> {r['text']}")
    sim = content.get("similarity", {})
    if sim:
        lines.append(f"  style similarity to the reference: {sim.get('before', float('nan')):.3f} -> "
                     f"{sim.get('after', float('nan')):.3f}")
    refs = (content.get("report") or {}).get("references") or []
    if len(refs) > 1:
        lines.append(f"  {len(refs)} references, combined (each weighted alike); each one's similarity to the "
                     "combined target: " + ", ".join(f"{float(r['similarity_to_target']):+.4f}" for r in refs))
    same = (content.get("report") or {}).get("same_performance") or {}
    if same.get("detected"):
        lines.append(f"  {same.get('line')}")
    restraint = (content.get("report") or {}).get("restraint") or {}
    lines += [f"  {line}" for line in restraint.get("lines", [])]
    for s in content.get("skipped", []):
        lines.append(f"  left alone: #{int(s['index']) + 1} {s['name']} ({s['reason']})")
    unmapped = content.get("unmapped", [])
    if unmapped:
        names = ", ".join(str(u.get("name")) for u in unmapped[:8])
        lines.append(f"  {len(unmapped)} parameter(s) not controlled (not audio controls of the hosted plugin): "
                     f"{names}{' ...' if len(unmapped) > 8 else ''}")
    return "\n".join(lines) + "\n"
