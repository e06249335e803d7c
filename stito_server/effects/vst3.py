"""VST3 plugins hosted with pedalboard: discovery, parameter reading/filtering, dual-mono routing."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ChainError, RenderError, did_you_mean
from ..params import Param
from .base import Effect

# Parameters that are not audio controls: host/transport values, programs, bypass, MIDI CC slots.
NON_AUDIO = re.compile(r"^(buffer size|sample rate|current program|program|bypass|midi cc.*|p\d{3}|latency)$", re.I)
MAX_CHOICE_STEPS = 64  # a parameter with at most this many steps is discrete (bool/choice)
TABLE_POINTS = 33  # positions probed to map a continuous parameter's normalized value to its unit
PROJECT_PLUGIN_DIR = Path(__file__).resolve().parents[2] / ".plugins" / "vst3"


def vst3_search_paths(env: dict[str, str] | None = None) -> list[Path]:
    """Folders searched for ``*.vst3`` bundles, in order.

    ``$VST3_PATH`` (colon-separated), the project-local test folder (``.plugins/vst3``, filled by
    ``scripts/install-test-plugins.sh``), then the standard Linux VST3 folders.
    """
    env = dict(os.environ) if env is None else env
    paths = [Path(p).expanduser() for p in env.get("VST3_PATH", "").split(os.pathsep) if p]
    paths += [PROJECT_PLUGIN_DIR, Path("~/.vst3").expanduser(), Path("/usr/local/lib/vst3"), Path("/usr/lib/vst3")]
    seen: list[Path] = []
    for p in paths:
        if p not in seen:
            seen.append(p)
    return seen


def find_vst3(paths: list[Path] | None = None) -> dict[str, Path]:
    """All VST3 bundles on the search paths, by name (file stem); the first found wins."""
    found: dict[str, Path] = {}
    for folder in vst3_search_paths() if paths is None else paths:
        if not folder.is_dir():
            continue
        for bundle in sorted(folder.rglob("*.vst3")):
            found.setdefault(bundle.stem, bundle)
    return found


def resolve_vst3(name_or_path: str, paths: list[Path] | None = None) -> Path:
    """Find a plugin by file path or by name (case-insensitive, spaces ignored) on the search paths.

    Raises:
        ChainError: not found; the message lists the plugins that were found and where it looked.
    """
    p = Path(name_or_path).expanduser()
    if p.suffix == ".vst3" or os.sep in name_or_path:
        if p.exists():
            return p
        raise ChainError(f"VST3 plugin file not found: {p}")
    found = find_vst3(paths)
    key = name_or_path.lower().replace(" ", "")
    for name, path in found.items():
        if name.lower().replace(" ", "") == key:
            return path
    where = ", ".join(str(f) for f in (vst3_search_paths() if paths is None else paths))
    options = did_you_mean(name_or_path, sorted(found), 30) if found else "no VST3 plugins were found"
    raise ChainError(f"VST3 plugin {name_or_path!r} not found in {where}; {options}")


def _parse_number(text: str) -> float | None:
    m = re.match(r"^\s*([-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)", text)
    return float(m.group(1)) if m else None


@dataclass(frozen=True)
class _Slot:
    index: int  # index in the plugin's own parameter list
    param: Param


def _read_params(plugin) -> list[_Slot]:
    """Describe the plugin's audio parameters, probing each one's display text to learn its units."""
    slots: list[_Slot] = []
    for index, prm in enumerate(plugin._parameters):
        if not prm.is_automatable or NON_AUDIO.match(prm.name.strip()):
            continue
        start = float(prm.raw_value)
        unit = (prm.label or "").strip()
        steps = int(prm.num_steps)
        try:
            if 2 <= steps <= MAX_CHOICE_STEPS:
                texts = []
                for k in range(steps):
                    prm.raw_value = k / (steps - 1)
                    texts.append(prm.string_value.strip())
                numbers = [_parse_number(t) for t in texts]
                numeric = all(n is not None for n in numbers)
                kind = "bool" if steps == 2 else "choice"
                lo, hi = (numbers[0], numbers[-1]) if numeric else (0.0, float(steps - 1))
                labels = tuple(f"{t} {unit}".strip() for t in texts) if len(set(texts)) == steps else ()
                param = Param(prm.name.strip(), unit if numeric else "", lo, hi, lo, "linear", kind,
                              steps if kind == "choice" else 0, labels)
                param = _with_default(param, start)
            else:
                xs = np.linspace(0.0, 1.0, TABLE_POINTS)
                values = []
                for x in xs:
                    prm.raw_value = float(x)
                    values.append(_parse_number(prm.string_value))
                if all(v is not None for v in values) and _monotone(values):
                    table = (tuple(float(x) for x in xs), tuple(float(v) for v in values))
                    param = Param(prm.name.strip(), unit, values[0], values[-1], values[0], "table", table=table)
                else:
                    param = Param(prm.name.strip(), "", 0.0, 1.0, 0.0, "linear")
                param = _with_default(param, start)
        finally:
            prm.raw_value = start
        slots.append(_Slot(index, param))
    return slots


def _with_default(param: Param, x: float) -> Param:
    from dataclasses import replace

    return replace(param, default=param.from_normalized(x))


def _monotone(values: list[float | None]) -> bool:
    d = np.diff(np.asarray(values, dtype=float))
    return bool(np.all(d >= 0) or np.all(d <= 0)) and values[0] != values[-1]


class VST3Effect(Effect):
    """A VST3 plugin hosted by pedalboard.

    Positions are the plugin's own VST3 normalized values (``raw_value``), the same numbers a DAW
    sets with ``TrackFX_SetParamNormalized``. A plugin with a mono main bus is run once per channel
    (dual mono). Non-audio parameters are excluded from ``params``.
    """

    def __init__(self, path: str | os.PathLike, name: str | None = None) -> None:
        """Load a plugin.

        Args:
            path: Path of the ``.vst3`` bundle.
            name: Label in the chain; defaults to the bundle name.

        Raises:
            ChainError: the plugin failed to load.
        """
        import pedalboard

        self.path = Path(path)
        try:
            self._plugin = pedalboard.load_plugin(str(self.path))
        except Exception as exc:
            reason = " ".join(str(exc).split())  # pedalboard's messages span lines
            raise ChainError(f"VST3 plugin {self.path} failed to load: {reason}") from None
        self.name = name or self.path.stem
        self.source = f"vst3:{self.path}"
        self.plugin_name = str(getattr(self._plugin, "name", self.path.stem))
        self._slots = _read_params(self._plugin)
        self.params = tuple(s.param for s in self._slots)
        self.mono = self._detect_mono()

    @property
    def version(self) -> str:
        """The plugin's own version string (a saved match names it: another version may map its values otherwise)."""
        return str(getattr(self._plugin, "version", "") or "")

    def _detect_mono(self) -> bool:
        try:
            self._plugin(np.zeros((2, 64), np.float32), 48000)
            return False
        except Exception as exc:
            if "channel" in str(exc):
                return True
            raise ChainError(f"VST3 plugin {self.name!r} failed a test render: {exc}") from None

    @property
    def plugin_indices(self) -> list[int]:
        """Index of each of ``params`` in the plugin's full parameter list (REAPER's numbering may differ)."""
        return [s.index for s in self._slots]

    def get_normalized(self) -> np.ndarray:
        prms = self._plugin._parameters
        return np.array([float(prms[s.index].raw_value) for s in self._slots])

    def set_normalized(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (len(self._slots),):
            raise ValueError(f"effect {self.name!r} takes {len(self._slots)} positions, got shape {x.shape}")
        prms = self._plugin._parameters
        for s, v in zip(self._slots, x):
            prms[s.index].raw_value = s.param.snap(float(v))

    def param_text(self, index: int) -> str:
        prm = self._plugin._parameters[self._slots[index].index]
        return f"{prm.string_value.strip()} {(prm.label or '').strip()}".strip()

    @property
    def thread_safe(self) -> bool:
        """Whether renders may run off the main thread.

        pedalboard resets a plugin that keeps audio across ``reset()`` (Dragonfly reverbs do) by
        re-creating it, which JUCE allows only on the main thread; such a plugin is rendered there.
        """
        import pedalboard

        return self._plugin._reload_type == pedalboard.ExternalPluginReloadType.ClearsAudioOnReset

    def preset_data(self) -> bytes:
        """The plugin's current state as a VST3 preset file (``.vstpreset``: its class ID, component and controller
        state), as pedalboard's ``VST3Plugin.preset_data`` writes it; any VST3 host loads it.

        A parameter set from here reaches the plugin's processor only with the next block it processes (measured with
        ZamEQ2: the state read before one still holds the old value), so a block of silence is processed first."""
        self.process(np.zeros((2, 256), np.float32), 48000)
        return bytes(self._plugin.preset_data)

    def process(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        try:
            if self.mono:
                out = [self._plugin(audio[c:c + 1], sample_rate) for c in range(audio.shape[0])]
                return np.concatenate(out, axis=0)
            return self._plugin(audio, sample_rate)
        except RuntimeError as exc:
            raise RenderError(f"VST3 plugin {self.name!r} failed to render: {exc}") from None

    @property
    def streams(self) -> bool:
        """A plugin that reports latency renders whole (pedalboard compensates it only then)."""
        return int(getattr(self._plugin, "reported_latency_samples", 1)) == 0

    def process_block(self, audio: np.ndarray, sample_rate: int, first: bool) -> np.ndarray:
        """The next block of a stream (pedalboard keeps the plugin's state with ``reset=False``). A mono plugin
        renders each channel on its own instance: this one for the first, a clone with the same settings,
        made on the stream's first block, for each other (a whole render runs the channels in turn)."""
        if first:
            self._twins = [self.clone() for _ in range(audio.shape[0] - 1)] if self.mono else []
        try:
            if self.mono:
                return np.concatenate([fx._plugin.process(audio[c:c + 1], sample_rate, reset=first)
                                       for c, fx in enumerate([self, *self._twins])], axis=0)
            return self._plugin.process(audio, sample_rate, reset=first)
        except RuntimeError as exc:
            raise RenderError(f"VST3 plugin {self.name!r} failed to render: {exc}") from None

    def clone(self) -> "VST3Effect":
        other = VST3Effect.__new__(VST3Effect)
        import pedalboard

        other.path, other.name, other.source = self.path, self.name, self.source
        other.plugin_name, other._slots, other.params, other.mono = (
            self.plugin_name, self._slots, self.params, self.mono)
        other._plugin = pedalboard.load_plugin(str(self.path))
        other.set_normalized(self.get_normalized())
        return other
