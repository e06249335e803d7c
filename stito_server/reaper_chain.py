"""A REAPER track FX chain description (protocol terms) -> a hostable Chain and the map back to REAPER indices."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .effects.chain import Chain
from .effects.specs import chain_from_dict
from .effects.vst3 import resolve_vst3
from .errors import ChainError, UnsupportedFX

HOSTABLE_TYPES = ("VST3",)
WHY_NOT = {
    "JS": "JSFX run only inside REAPER",
    "VST": "VST2 plugins cannot be hosted (pedalboard hosts VST3 only)",
    "LV2": "LV2 plugins cannot be hosted (pedalboard hosts VST3 only)",
    "CLAP": "CLAP plugins cannot be hosted (pedalboard hosts VST3 only)",
    "AU": "Audio Units exist only on macOS",
    "DX": "DirectX plugins cannot be hosted",
    "VIDEO": "video processors are not audio effects",
}


@dataclass
class ReaperChain:
    """A hosted chain built from REAPER's FX list.

    Attributes:
        chain: The hosted chain, at REAPER's current parameter values, searching the mapped parameters.
        fx_index: For each effect of ``chain``, its index in REAPER's FX list.
        param_index: For each effect, {effect parameter index: REAPER parameter index}; empty for an FX the user
            excluded (rendered at its settings, never written back).
        skipped: FX left out (bypassed, offline, excluded and not hostable) or left alone (excluded: rendered at
            its settings, nothing searched) with the reason.
        unmapped: Parameters REAPER lists that the hosted plugin does not expose as audio controls.
    """

    chain: Chain
    fx_index: list[int]
    param_index: list[dict[int, int]]
    skipped: list[dict[str, Any]]
    unmapped: list[dict[str, Any]]


def bundle_name(fx: dict[str, Any]) -> str | None:
    """The VST3 bundle (file stem) an FX refers to: ``file``, else the ``*.vst3`` name inside ``ident``,
    else the plugin name in REAPER's "VST3: Name (Vendor)" label."""
    for text in (fx.get("file"), fx.get("ident")):
        if text:
            m = re.search(r"([^/\\<>{}|]+)\.vst3", str(text), re.I)
            if m:
                return m.group(1)
    m = re.match(r"^\s*VST3i?:\s*(.+?)(\s*\(.*\))?\s*$", str(fx.get("name", "")))
    return m.group(1) if m else None


def chain_from_reaper(fx_list: list[dict[str, Any]], vst3_paths: list[Path] | None = None) -> ReaperChain:
    """Map REAPER's FX list to hosted effects (see docs/protocol.md, "FX description").

    Raises:
        UnsupportedFX: an enabled FX cannot be hosted (every such FX is listed).
        ChainError: nothing left to optimise, or a malformed description.
    """
    if not isinstance(fx_list, list):
        raise ChainError("chain.fx must be a list of FX descriptions")
    entries, fx_index, skipped, unsupported, wanted, fixed = [], [], [], [], [], []
    for pos, fx in enumerate(fx_list):
        if not isinstance(fx, dict):
            raise ChainError(f"FX #{pos + 1} is not an object")
        index, name = _whole(fx.get("index", pos), f"FX #{pos + 1} index"), str(fx.get("name", f"FX {pos + 1}"))
        if not isinstance(fx.get("params", []), list):
            raise ChainError(f"FX #{pos + 1} params must be a list of parameter objects, got {fx['params']!r}")
        if not fx.get("enabled", True) or fx.get("offline", False):
            skipped.append({"index": index, "name": name, "reason": "offline" if fx.get("offline") else "bypassed"})
            continue
        excluded = bool(fx.get("exclude", False))
        kind = str(fx.get("type", "")).upper()
        bundle = bundle_name(fx)
        why_not = WHY_NOT.get(kind, f"FX type {kind or 'unknown'!r} cannot be hosted")
        path = None
        if kind in HOSTABLE_TYPES:
            try:
                path = resolve_vst3(bundle or name, vst3_paths)
            except ChainError:
                why_not = f"VST3 {bundle or name!r} is not installed on the server's VST3 paths"
        if path is None:
            if excluded:  # the user's way round an FX stito cannot host: left out, and the match does not hear it
                skipped.append({"index": index, "name": name,
                                "reason": f"excluded; not heard by the match ({why_not})"})
            else:
                unsupported.append({"index": index, "name": name, "reason": why_not})
            continue
        if excluded:  # left alone, and rendered at its settings: the match hears the chain the user hears
            skipped.append({"index": index, "name": name, "reason": "excluded; rendered at its settings"})
        params = [p for p in fx.get("params", []) if isinstance(p, dict)]
        entries.append({"vst3": str(path), "name": f"{index + 1}:{bundle or name}"})
        fx_index.append(index)
        wanted.append([dict(p, exclude=True) for p in params] if excluded else params)
        fixed.append(excluded)
    if unsupported:
        raise UnsupportedFX(unsupported)
    if not entries:
        raise ChainError("no enabled VST3 FX on the track to optimise")
    # Build once to learn each plugin's own parameter list, then decide what to search.
    probe = chain_from_dict({"name": "reaper-track", "effects": entries}, vst3_paths=vst3_paths)
    param_index: list[dict[int, int]] = []
    unmapped: list[dict[str, Any]] = []
    states = probe.get_state()
    for e, (fx, params) in enumerate(zip(probe.effects, wanted)):
        names = {p.name: i for i, p in enumerate(fx.params)}
        mapping: dict[int, int] = {}
        search: list[str] = []
        for p in params:
            pname = str(p.get("name", ""))
            if p.get("reaper_added", False):
                continue
            if pname not in names:
                if not fixed[e]:
                    unmapped.append({"fx": fx_index[e], "index": p.get("index"), "name": pname})
                continue
            i = names[pname]
            if not fixed[e]:  # an excluded FX's values never go back to REAPER
                mapping[i] = _whole(p.get("index", i), f"parameter {pname!r} index")
            value = p.get("value")
            if isinstance(value, (int, float)) and np.isfinite(value):
                states[e][i] = min(max(float(value), 0.0), 1.0)
            if not p.get("exclude", False):
                search.append(pname)
        entries[e]["search"] = search
        param_index.append(mapping)
    if not any(entries[e]["search"] for e in range(len(entries))):
        raise ChainError("every parameter of the track's FX is excluded; nothing to optimise")
    spec = {"name": "reaper-track", "effects": entries}
    chain = chain_from_dict(spec, vst3_paths=vst3_paths)
    chain.set_state(states)
    return ReaperChain(chain, fx_index, param_index, skipped, unmapped)


def _whole(value: Any, what: str) -> int:
    """``value`` as a non-negative whole number, or ChainError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0 \
            or value != int(value):
        raise ChainError(f"{what} must be a whole number at least 0, got {value!r}")
    return int(value)
