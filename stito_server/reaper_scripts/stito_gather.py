"""Read what Match Style needs from REAPER: which item is input/reference, their audio, the track FX description.

Runs inside REAPER: reapy and RPR_* calls, numpy for the audio arrays; no engine code.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

import reapy
from reapy import reascript_api as RPR

from stito_config import Settings, UserError, fx_excluded

REAPER_ADDED = (":bypass", ":wet", ":delta")
CHUNK_FRAMES = 1 << 13  # frames per accessor call (about 0.17 s at 48 kHz)
TICK_BUDGET_S = 0.012  # reading stops for this tick once it has taken this long
CHANMODES = {0: "normal", 1: "reverse stereo", 2: "mono (downmix)", 3: "left only", 4: "right only"}


@dataclass
class ItemPlan:
    """What one selected item plays, as far as stito honours it.

    Honoured: item position/length, take start offset, take and item volume (take volume < 0 flips
    polarity), take channel mode 0-4; playrate as REAPER's take accessor delivers it (ASSUMPTIONS A5).
    Not honoured: fades, envelopes, take FX, pitch shift, channel modes above 4 (first two channels used).
    """

    item: str
    take: str
    track: str
    track_name: str
    source_file: str
    rate: int
    channels: int
    length: float
    gain: float
    chanmode: int
    notes: list[str] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return max(int(round(self.length * self.rate)), 0)


MAX_REFERENCES = 3  # reference items per match (protocol 3.2 carries up to 3)


def selected_items() -> tuple[ItemPlan, list[ItemPlan]]:
    """(input, references) from the selected items: the input and one to ``MAX_REFERENCES`` references.

    The rule: the input is the item whose track carries the FX chain stito will set. If only one of the
    items' tracks has FX, that one; if several have FX, the one on the selected track (exactly one of those
    tracks must be selected); every other item is a reference (several references: processed alike, each
    from another recording; the match's target is their mean). A reference on the input's own track is
    refused (it would play through the same FX).

    Raises:
        UserError: not two to four items, no FX, ambiguous, or an item stito cannot read.
    """
    project = reapy.Project()
    items = project.selected_items
    if not 2 <= len(items) <= MAX_REFERENCES + 1:
        raise UserError(f"Select two to {MAX_REFERENCES + 1} items: the input (on the track whose FX stito should "
                        f"set) and one to {MAX_REFERENCES} references (the sound to match; several: processed alike, "
                        f"each from another recording). {len(items)} item(s) are selected.")
    plans = [_plan(item.id) for item in items]
    with_fx = [p for p in plans if RPR.TrackFX_GetCount(p.track) > 0]
    names = ", ".join(f"'{n}'" for n in dict.fromkeys(p.track_name for p in plans))
    if not with_fx:
        raise UserError(f"None of the items' tracks ({names}) has FX. Add the FX stito should set (e.g. an EQ and a "
                        "compressor) to the input item's track and run Match Style again.")
    fx_tracks = list(dict.fromkeys(p.track for p in with_fx))
    if len(fx_tracks) == 1:
        track = fx_tracks[0]
    else:
        chosen = [t for t in fx_tracks if RPR.IsTrackSelected(t)]
        if len(chosen) != 1:
            fx_names = ", ".join(f"'{n}'" for n in dict.fromkeys(p.track_name for p in with_fx))
            raise UserError(f"Several of the items' tracks ({fx_names}) have FX, so stito cannot tell which item "
                            "is the input. Select only the track whose FX stito should set (click its name) and "
                            "run Match Style again.")
        track = chosen[0]
    on_track = [p for p in plans if p.track == track]
    if len(on_track) > 1:
        raise UserError(f"{len(on_track)} selected items are on track '{on_track[0].track_name}', whose FX stito "
                        "sets. Keep only the input there: move each reference to another track (one whose FX "
                        "stito should not touch) and run Match Style again.")
    inp = on_track[0]
    refs = [p for p in plans if p is not inp]
    for ref in refs:
        if RPR.TrackFX_GetCount(ref.track) > 0:
            ref.notes.append(f"the reference track '{ref.track_name}' has FX; stito uses the reference item's own "
                             "audio, before its track FX")
    return inp, refs


def _plan(item: str) -> ItemPlan:
    take = RPR.GetActiveTake(item)
    if not RPR.ValidatePtr(take, "MediaItem_Take*"):
        raise UserError("A selected item has no take (an empty item). Select two items that hold audio.")
    source = RPR.GetMediaItemTake_Source(take)
    path = RPR.GetMediaSourceFileName(source, "", 4096)[1]
    rate = int(RPR.GetMediaSourceSampleRate(source))
    channels = int(RPR.GetMediaSourceNumChannels(source))
    track = RPR.GetMediaItem_Track(item)
    track_name = RPR.GetTrackName(track, "", 256)[2]
    if rate <= 0 or channels <= 0:
        raise UserError(f"The item on track '{track_name}' is not audio (MIDI or empty). Select two audio items.")
    item_vol = RPR.GetMediaItemInfo_Value(item, "D_VOL")
    take_vol = RPR.GetMediaItemTakeInfo_Value(take, "D_VOL")
    chanmode = int(RPR.GetMediaItemTakeInfo_Value(take, "I_CHANMODE"))
    length = float(RPR.GetMediaItemInfo_Value(item, "D_LENGTH"))
    plan = ItemPlan(item, take, track, track_name, path, rate, min(channels, 2), length, item_vol * take_vol,
                    chanmode)
    if channels > 2:
        plan.notes.append(f"'{os.path.basename(path)}' has {channels} channels; stito uses the first two")
    if chanmode not in CHANMODES:
        plan.notes.append(f"take channel mode {chanmode} is not honoured; stito uses channels 1-2")
    playrate = RPR.GetMediaItemTakeInfo_Value(take, "D_PLAYRATE")
    if abs(playrate - 1.0) > 1e-9:
        plan.notes.append(f"playrate {playrate:g} is taken as REAPER's take accessor renders it")
    fades = RPR.GetMediaItemInfo_Value(item, "D_FADEINLEN") + RPR.GetMediaItemInfo_Value(item, "D_FADEOUTLEN")
    if fades > 0:
        plan.notes.append("item fades are not applied to the audio stito analyses")
    if plan.frames < rate // 2:
        raise UserError(f"The item on track '{track_name}' is {length:.2f} s long; stito needs at least 0.5 s.")
    return plan


class AudioReader:
    """Reads one item's audio through a take accessor, a chunk per call, so no defer tick runs long."""

    def __init__(self, plan: ItemPlan) -> None:
        self.plan = plan
        self.accessor = RPR.CreateTakeAudioAccessor(plan.take)
        self.pos = 0
        self.chunks: list[Any] = []

    def step(self, deadline: float) -> bool:
        """Read chunks until ``deadline`` (time.perf_counter) has passed; True when everything is read."""
        while self.pos < self.plan.frames and time.perf_counter() < deadline:
            self._read_chunk()
        return self.pos >= self.plan.frames

    def _read_chunk(self) -> None:
        import numpy as np

        p = self.plan
        n = min(CHUNK_FRAMES, p.frames - self.pos)
        if n > 0:
            buf = [0.0] * (n * p.channels)
            result = RPR.GetAudioAccessorSamples(self.accessor, p.rate, p.channels, self.pos / p.rate, n, buf)
            samples = result[-1]  # the echoed, filled buffer (ASSUMPTIONS A5)
            self.chunks.append(np.asarray(samples[:n * p.channels], dtype=np.float32).reshape(n, p.channels).T)
            self.pos += n

    def close(self) -> None:
        if self.accessor is not None:
            RPR.DestroyAudioAccessor(self.accessor)
            self.accessor = None

    def audio(self) -> Any:
        """``(channels, frames)`` float32 with gain and channel mode applied."""
        import numpy as np

        p = self.plan
        x = np.concatenate(self.chunks, axis=1) * np.float32(p.gain)
        if x.shape[0] == 2:
            if p.chanmode == 1:
                x = x[::-1]
            elif p.chanmode == 2:
                x = x.mean(axis=0, keepdims=True)
            elif p.chanmode in (3, 4):
                x = x[p.chanmode - 3:p.chanmode - 2]
        return np.ascontiguousarray(x, dtype=np.float32)


def describe_fx(track: str, settings: Settings) -> list[dict[str, Any]]:
    """The track's FX chain in the protocol's FX description format (docs/protocol.md)."""
    out = []
    for i in range(RPR.TrackFX_GetCount(track)):
        display = RPR.TrackFX_GetFXName(track, i, "", 512)[3]
        fx_type = _config(track, i, "fx_type") or _type_from_name(display)
        fx_name = _config(track, i, "fx_name") or display
        ident = _config(track, i, "fx_ident")
        m = re.search(r"([^/\\<>|]+\.vst3)", ident, re.I)
        vendor = re.search(r"\(([^()]*)\)\s*$", fx_name)
        added = {RPR.TrackFX_GetParamFromIdent(track, i, x) for x in REAPER_ADDED} - {-1}
        params = []
        for p in range(RPR.TrackFX_GetNumParams(track, i)):
            pname = RPR.TrackFX_GetParamName(track, i, p, "", 256)[4]
            params.append({"index": p, "name": pname, "value": float(RPR.TrackFX_GetParamNormalized(track, i, p)),
                           "reaper_added": p in added,
                           "exclude": p in added or settings.param_excluded(display, pname)
                           or settings.param_excluded(fx_name, pname)})
        io = RPR.TrackFX_GetIOSize(track, i, 0, 0)
        out.append({"index": i, "type": fx_type, "name": fx_name, "display_name": display, "ident": ident,
                    "file": m.group(1) if m else "", "vendor": vendor.group(1) if vendor else "",
                    "enabled": bool(RPR.TrackFX_GetEnabled(track, i)), "offline": bool(RPR.TrackFX_GetOffline(track, i)),
                    "exclude": fx_excluded(display), "params": params,
                    "channel_config": {"inputs": int(io[3]), "outputs": int(io[4])}})
    return out


def fx_signature(track: str) -> list[tuple[str, int]]:
    """(name, parameter count) per FX: compared before applying, to notice a chain edited mid-match."""
    return [(RPR.TrackFX_GetFXName(track, i, "", 512)[3], RPR.TrackFX_GetNumParams(track, i))
            for i in range(RPR.TrackFX_GetCount(track))]


def _config(track: str, fx: int, name: str) -> str:
    result = RPR.TrackFX_GetNamedConfigParm(track, fx, name, "", 4096)
    return str(result[4]) if result[0] else ""


def _type_from_name(display: str) -> str:
    m = re.match(r"^\s*(VST3|VST|JS|CLAP|LV2|AU|DX)i?:", display)
    return m.group(1) if m else ""
