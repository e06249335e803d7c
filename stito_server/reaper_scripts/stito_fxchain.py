"""Save a track's FX chain as a REAPER FX chain file (.RfxChain): REAPER's own preset for a whole chain."""

from __future__ import annotations

import os
from pathlib import Path

from reapy import reascript_api as RPR

from stito_config import FXCHAIN_FOLDER, UserError

# FX-chain window state at the top of a track's <FXCHAIN block: REAPER's own .RfxChain files leave it out
# (ASSUMPTIONS A15)
WINDOW_KEYS = ("WNDRECT", "SHOW", "LASTSEL", "DOCKED")
CHUNK_BYTES = 1 << 24  # buffer for GetTrackStateChunk; a chunk that fills it is refused, never cut short


def fx_chain_text(track_chunk: str) -> str:
    """The body of a track's ``<FXCHAIN`` block as an .RfxChain file holds it.

    Every FX of the chain with REAPER's own serialisation of its state (the plugin's state as REAPER saves it in
    the project); the window lines of the block (``WINDOW_KEYS``) are left out. The input FX chain
    (``<FXCHAIN_REC``) is not part of it.

    Args:
        track_chunk: ``GetTrackStateChunk``'s text.

    Raises:
        ValueError: the chunk has no FX chain, or its block does not close.
    """
    lines = track_chunk.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip().split(" ", 1)[0] == "<FXCHAIN"), None)
    if start is None:
        raise ValueError("the track has no FX chain")
    body, depth = [], 0
    for line in lines[start + 1:]:
        text = line.strip()
        if text == ">":
            if depth == 0:
                return "".join(f"{b}\n" for b in body)
            depth -= 1
        elif text.startswith("<"):
            depth += 1
        elif depth == 0 and text.split(" ", 1)[0] in WINDOW_KEYS:
            continue
        body.append(text)
    raise ValueError("the track's FX chain block does not close")


def free_path(folder: Path, name: str) -> Path:
    """``folder/<name>.RfxChain``, or ``<name> 2``, ``<name> 3`` ... when taken: an existing file is never replaced."""
    path, k = folder / f"{name}.RfxChain", 1
    while path.exists():
        k += 1
        path = folder / f"{name} {k}.RfxChain"
    return path


def save(track: str, name: str, resource_path: str) -> Path:
    """Write the track's FX chain, as it is now, to ``<resource>/FXChains/stito/<name>.RfxChain``.

    REAPER lists it in the FX browser's "FX Chains" folder; "Add FX chain..." (FX window) or "Load FX chain" puts the
    matched chain on any track. The whole chain is saved, FX marked [stito:skip] included, as REAPER's own "Save FX
    chain" does.

    Args:
        track: The ``MediaTrack*`` pointer string.
        name: File name without extension (``stito_config`` checked it).
        resource_path: ``GetResourcePath()``.

    Returns:
        The file written.

    Raises:
        UserError: the chunk could not be read or is too large, or the file could not be written.
    """
    ok, _, chunk, *_ = RPR.GetTrackStateChunk(track, "", CHUNK_BYTES, False)
    if not ok or len(chunk) >= CHUNK_BYTES - 1:
        raise UserError("REAPER did not give the track's FX chain" + ("" if not ok else
                        f" (its state is over {CHUNK_BYTES >> 20} MB)") + ", so it was not saved.")
    try:
        text = fx_chain_text(chunk)
    except ValueError as exc:
        raise UserError(f"The FX chain was not saved: {exc}.") from None
    folder = Path(resource_path, *FXCHAIN_FOLDER)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        while True:
            path = free_path(folder, name)
            try:
                with open(path, "x", encoding="utf-8", newline="\n") as f:  # "x": never over another file
                    f.write(text)
                return path
            except FileExistsError:
                continue
    except OSError as exc:
        raise UserError(f"The FX chain could not be saved in {folder}: {exc.strerror or exc}.") from None


def describe(path: Path, resource_path: str) -> str:
    """Console line for a saved chain: where it is and how to load it."""
    try:
        shown = os.path.relpath(path, resource_path)
    except ValueError:
        shown = str(path)
    return (f"stito: saved the matched FX chain as {shown} (REAPER's resource folder); load it onto any track with "
            "'Add FX chain...' in the FX window, or from the FX browser's FX Chains folder\n")
