"""The emulated REAPER project: tracks, FX backed by real pedalboard VST3 instances, items over real audio files."""

from __future__ import annotations

import base64
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
import numpy as np
import soundfile as sf

# Parameters REAPER appends after a plugin's own (ASSUMPTIONS.md A3): name and identifier.
REAPER_ADDED = (("Bypass", ":bypass"), ("Wet", ":wet"), ("Delta", ":delta"))


class FX:
    """One track FX: a real pedalboard VST3 instance plus REAPER's own state (enabled, offline, name, wet).

    Parameter ``i`` < n is the plugin's ``_parameters[i]`` (ASSUMPTIONS.md A2); the last three are
    REAPER's Bypass, Wet and Delta.
    """

    kind = "VST3"

    def __init__(self, path: Path, vendor: str = "Damien Zammit", renamed: str = "") -> None:
        import pedalboard

        self.path = Path(path)
        self.plugin = pedalboard.load_plugin(str(self.path))
        self.vendor = vendor
        self.renamed = renamed
        self.enabled = True
        self.offline = False
        self.added = {":bypass": 0.0, ":wet": 1.0, ":delta": 0.0}
        self.mono = self._probe_mono()

    def _probe_mono(self) -> bool:
        try:
            self.plugin(np.zeros((2, 64), np.float32), 48000)
            return False
        except Exception as exc:  # pedalboard: "does not support 2-channel output"
            if "channel" in str(exc):
                return True
            raise

    @property
    def plugin_name(self) -> str:
        return self.path.stem

    @property
    def fx_name(self) -> str:
        """REAPER's original label, e.g. "VST3: ZamEQ2 (Damien Zammit)" (ASSUMPTIONS.md A1)."""
        return f"VST3: {self.plugin_name} ({self.vendor})"

    @property
    def display_name(self) -> str:
        """What TrackFX_GetFXName returns: the instance name if the user renamed it."""
        return self.renamed or self.fx_name

    @property
    def ident(self) -> str:
        """fx_ident (ASSUMPTIONS.md A1): bundle path, '<', a class id."""
        return f"{self.path}<{abs(hash(self.plugin_name)) % 10**32:032X}"

    @property
    def n_plugin_params(self) -> int:
        return len(self.plugin._parameters)

    @property
    def n_params(self) -> int:
        return self.n_plugin_params + len(REAPER_ADDED)

    def param_name(self, index: int) -> str:
        n = self.n_plugin_params
        if index < n:
            return str(self.plugin._parameters[index].name)
        return REAPER_ADDED[index - n][0]

    def get(self, index: int) -> float:
        n = self.n_plugin_params
        if index < n:
            return float(self.plugin._parameters[index].raw_value)
        return self.added[REAPER_ADDED[index - n][1]]

    def set(self, index: int, value: float) -> None:
        value = min(max(float(value), 0.0), 1.0)
        n = self.n_plugin_params
        if index < n:
            self.plugin._parameters[index].raw_value = value
        else:
            self.added[REAPER_ADDED[index - n][1]] = value

    def formatted(self, index: int) -> str:
        n = self.n_plugin_params
        if index < n:
            p = self.plugin._parameters[index]
            return f"{p.string_value.strip()} {(p.label or '').strip()}".strip()
        return f"{self.get(index):.2f}"

    def param_index(self, name: str) -> int:
        for i in range(self.n_params):
            if self.param_name(i) == name:
                return i
        raise KeyError(f"{self.plugin_name} has no parameter {name!r}")

    def ident_index(self, ident: str) -> int:
        for k, (_, key) in enumerate(REAPER_ADDED):
            if key == ident:
                return self.n_plugin_params + k
        return -1

    def snapshot(self) -> list[float]:
        return [self.get(i) for i in range(self.n_params)]

    def restore(self, values: list[float]) -> None:
        for i, v in enumerate(values):
            if self.get(i) != v:
                self.set(i, v)

    def state_lines(self) -> list[str]:
        """This FX's lines in a track chunk's ``<FXCHAIN`` block (ASSUMPTIONS.md A15): BYPASS, the ``<VST`` block with
        the plugin's state in base64, FXID, WAK. REAPER's audio engine has run the plugin since its parameters were
        set, so the state carries them (a VST3 hands set parameters to its processor on the next block)."""
        self.plugin(np.zeros((1 if self.mono else 2, 64), np.float32), 48000)
        state = base64.b64encode(bytes(self.plugin.raw_state)).decode("ascii")
        return [f"BYPASS {int(not self.enabled)} {int(self.offline)} 0",
                f'<VST "{self.fx_name}" {self.path.name} 0 "{self.renamed}" 1234567890{{{self.ident[-32:]}}} ""',
                *textwrap.wrap(state, 128), ">", 'PRESETNAME ""', "FLOATPOS 0 0 0 0",
                f"FXID {{{abs(hash((id(self), 'fx'))) % 10**12:012d}}}", "WAK 0 0"]

    def load_state(self, state: bytes) -> None:
        """Set the plugin's whole state, as REAPER does when it loads a chunk."""
        self.plugin.raw_state = state

    def process(self, audio: np.ndarray, rate: int) -> np.ndarray:
        """REAPER-style processing: skipped when bypassed/offline, dual mono for a mono plugin
        (ASSUMPTIONS.md A4), then the Wet mix."""
        if not self.enabled or self.offline or self.added[":bypass"] >= 0.5:
            return audio
        self.plugin.reset()
        if self.mono:
            wet = np.concatenate([self.plugin(audio[c:c + 1], rate) for c in range(audio.shape[0])], axis=0)
        else:
            wet = self.plugin(audio, rate)
        mix = self.added[":wet"]
        return (mix * wet + (1.0 - mix) * audio).astype(np.float32)


class JSFX(FX):
    """A JS effect (REAPER's own script FX, which stito cannot host): named parameters, no audio change."""

    kind = "JS"

    def __init__(self, name: str, params: dict[str, float]) -> None:
        self.path = Path(name)
        self._names, self._values = list(params), list(params.values())
        self.vendor, self.renamed, self.enabled, self.offline = "", "", True, False
        self.added = {":bypass": 0.0, ":wet": 1.0, ":delta": 0.0}
        self.mono = False

    @property
    def fx_name(self) -> str:
        return f"JS: {self.path.name}"

    @property
    def ident(self) -> str:
        return str(self.path)

    @property
    def n_plugin_params(self) -> int:
        return len(self._names)

    def param_name(self, index: int) -> str:
        n = self.n_plugin_params
        return self._names[index] if index < n else REAPER_ADDED[index - n][0]

    def get(self, index: int) -> float:
        n = self.n_plugin_params
        return self._values[index] if index < n else self.added[REAPER_ADDED[index - n][1]]

    def set(self, index: int, value: float) -> None:
        n = self.n_plugin_params
        value = min(max(float(value), 0.0), 1.0)
        if index < n:
            self._values[index] = value
        else:
            self.added[REAPER_ADDED[index - n][1]] = value

    def formatted(self, index: int) -> str:
        return f"{self.get(index):.2f}"

    def state_lines(self) -> list[str]:
        return [f"BYPASS {int(not self.enabled)} {int(self.offline)} 0", f'<JS {self.path.name} "{self.renamed}"',
                " ".join(f"{v:g}" for v in self._values), ">", "FLOATPOS 0 0 0 0", "WAK 0 0"]

    def process(self, audio: np.ndarray, rate: int) -> np.ndarray:
        return audio


@dataclass
class Source:
    """A PCM source: a real audio file on disk."""

    path: Path

    def __post_init__(self) -> None:
        info = sf.info(str(self.path))
        self.rate, self.channels, self.frames = int(info.samplerate), int(info.channels), int(info.frames)

    @property
    def length(self) -> float:
        return self.frames / self.rate

    def read(self) -> np.ndarray:
        """``(channels, frames)`` float64."""
        data, _ = sf.read(str(self.path), dtype="float64", always_2d=True)
        return data.T


@dataclass
class Take:
    source: Source
    item: "Item"
    info: dict[str, float] = field(default_factory=lambda: {"D_STARTOFFS": 0.0, "D_PLAYRATE": 1.0, "D_VOL": 1.0,
                                                            "I_CHANMODE": 0.0, "D_PITCH": 0.0})


@dataclass
class Item:
    track: "Track"
    selected: bool = False
    info: dict[str, float] = field(default_factory=dict)
    takes: list[Take] = field(default_factory=list)
    active: int = 0

    @property
    def take(self) -> Take | None:
        return self.takes[self.active] if self.takes else None


@dataclass
class Track:
    name: str
    fx: list[FX] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)
    selected: bool = False

    def state_chunk(self) -> str:
        """What GetTrackStateChunk gives (ASSUMPTIONS.md A15): the track's lines, its ``<FXCHAIN`` block with the
        FX window's lines first, then its items (shortened here to their position)."""
        lines = ["<TRACK {00000000-0000-0000-0000-000000000001}", f'NAME "{self.name}"', "VOLPAN 1 0 -1 -1 1",
                 "NCHAN 2"]
        if self.fx:
            lines += ["<FXCHAIN", "WNDRECT 24 52 655 408", "SHOW 0", "LASTSEL 0", "DOCKED 0"]
            lines += [line for fx in self.fx for line in fx.state_lines()] + [">"]
        for item in self.items:
            lines += ["<ITEM", f"POSITION {item.info.get('D_POSITION', 0.0):g}", ">"]
        return "\n".join(lines + [">"]) + "\n"

    def render(self, audio: np.ndarray, rate: int) -> np.ndarray:
        """``audio`` through this track's FX chain as REAPER plays it."""
        out = np.asarray(audio, dtype=np.float32)
        for fx in self.fx:
            out = fx.process(out, rate)
        return out


@dataclass
class UndoPoint:
    name: str
    before: dict[int, list[float]]  # id(FX) -> every parameter value before the block
    after: dict[int, list[float]]


class Project:
    """The current project: tracks, undo history of FX parameter states."""

    def __init__(self) -> None:
        self.tracks: list[Track] = []
        self.undo: list[UndoPoint] = []
        self.undo_depth = 0
        self._block_before: dict[int, list[float]] | None = None

    def add_track(self, name: str) -> Track:
        track = Track(name)
        self.tracks.append(track)
        return track

    def add_fx(self, track: Track, path: Path, renamed: str = "", values: dict[str, float] | None = None) -> FX:
        """Add a real VST3 to ``track``; ``values`` sets plugin parameters by name (normalized)."""
        fx = FX(path, renamed=renamed)
        for name, value in (values or {}).items():
            fx.set(fx.param_index(name), value)
        track.fx.append(fx)
        return fx

    def add_item(self, track: Track, audio_file: Path, position: float = 0.0, length: float | None = None,
                 start_offset: float = 0.0, selected: bool = True) -> Item:
        source = Source(Path(audio_file))
        item = Item(track, selected, {"D_POSITION": position,
                                      "D_LENGTH": length if length is not None else source.length - start_offset,
                                      "D_VOL": 1.0, "D_FADEINLEN": 0.0, "D_FADEOUTLEN": 0.0, "B_MUTE": 0.0})
        take = Take(source, item)
        take.info["D_STARTOFFS"] = start_offset
        item.takes.append(take)
        track.items.append(item)
        return item

    def add_fx_chain(self, track: Track, rfxchain: Path, plugin_dirs: list[Path]) -> list[FX]:
        """REAPER's "Add FX chain...": every ``<VST`` block of an .RfxChain file added to ``track`` with its state
        (a plugin found by its bundle name in ``plugin_dirs``; JS blocks are not emulated)."""
        added, lines = [], Path(rfxchain).read_text(encoding="utf-8").splitlines()
        k = 0
        while k < len(lines):
            if lines[k].startswith("<VST "):
                bundle = lines[k].split('" ', 1)[1].split(" ", 1)[0]
                end = lines.index(">", k)
                path = next(d / bundle for d in plugin_dirs if (d / bundle).exists())
                fx = FX(path, renamed=lines[k].split(" 0 \"", 1)[1].split('"', 1)[0])
                fx.load_state(base64.b64decode("".join(lines[k + 1:end])))
                track.fx.append(fx)
                added.append(fx)
                k = end
            k += 1
        return added

    @property
    def all_fx(self) -> list[FX]:
        return [fx for t in self.tracks for fx in t.fx]

    def fx_state(self) -> dict[int, list[float]]:
        return {id(fx): fx.snapshot() for fx in self.all_fx}

    def selected_items(self) -> list[Item]:
        return [it for t in self.tracks for it in t.items if it.selected]
