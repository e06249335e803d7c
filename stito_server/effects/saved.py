"""Saved matches: a chain spec with every parameter fixed, written by `stito match --save-chain`, read by `stito apply`."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

from ..errors import ChainError
from .chain import Chain
from .vst3 import VST3Effect

APPLY_KEY = "apply"  # the top-level table of a saved match: what the match did to the file after the chain


@dataclass(frozen=True)
class SavedMatch:
    """A match to render again without searching.

    Attributes:
        chain: The chain, every parameter at its matched value.
        gain_db: The gain the match put on its output after the chain (its loudness gain, less any cut for the
            ceiling), in dB.
        ceiling_dbtp: The match's true-peak ceiling (None: none); a file that would peak above it after the gain
            is turned down as a whole, as the match does.
    """

    chain: Chain
    gain_db: float
    ceiling_dbtp: float | None

    def render(self, samples: "np.ndarray", sample_rate: int) -> "np.ndarray":
        """The saved match on other audio: the chain, the match's gain, and its ceiling (another file may peak higher
        than the match's own, whose output sat at the ceiling: that one gets no new cut).

        Args:
            samples: ``(channels, samples)`` float32; not modified.
            sample_rate: In Hz.

        Returns:
            ``(channels, samples)`` float32.
        """
        from ..audio import gain_under_ceiling

        output = self.chain.process(samples, sample_rate)
        output, _, _ = gain_under_ceiling(output, sample_rate, self.gain_db, self.ceiling_dbtp, tolerance_db=1e-6)
        return output


def saved_spec(chain: Chain, gain_db: float, ceiling_dbtp: float | None, note: str = "") -> dict[str, Any]:
    """The chain's current settings as a spec with every parameter fixed, in units.

    Built-in effects are named by kind, VST3 plugins by bundle name with the plugin's version (a different
    version fails on loading: its parameters may mean other things).

    Args:
        chain: A chain whose effects hold the settings to save (e.g. after ``match``).
        gain_db: ``MatchResult.output_gain_db``.
        ceiling_dbtp: ``MatchOptions.ceiling_dbtp``.
        note: A line kept as the spec's description.
    """
    effects = []
    for fx in chain.effects:
        x = fx.get_normalized()
        values = {p.name: (p.format(float(v)) if p.choices else p.from_normalized(float(v)))
                  for p, v in zip(fx.params, x)}
        if fx.source.startswith("builtin:"):
            entry: dict[str, Any] = {"builtin": fx.source[len("builtin:"):]}
        elif isinstance(fx, VST3Effect):
            entry = {"vst3": fx.path.stem, "version": fx.version}
        else:
            raise ChainError(f"effect {fx.name!r} ({fx.source}) cannot be saved: only built-in and VST3 effects can")
        effects.append({**entry, "name": fx.name, "fix": values})
    apply: dict[str, Any] = {"gain_db": float(gain_db)}
    if ceiling_dbtp is not None:
        apply["ceiling_dbtp"] = float(ceiling_dbtp)
    return {"name": f"{chain.name}-matched", "description": note, APPLY_KEY: apply, "effects": effects}


def preset_paths(chain: Chain, path: str | Path) -> dict[str, Path]:
    """Where ``write_presets`` puts each VST3 effect's preset: beside the saved chain ``DIR/NAME.toml``, as
    ``DIR/NAME.<effect>.vstpreset`` (by effect name)."""
    p = Path(path)
    return {fx.name: p.with_name(f"{p.stem}.{fx.name}.vstpreset") for fx in chain.effects if isinstance(fx, VST3Effect)}


def write_presets(chain: Chain, path: str | Path) -> list[Path]:
    """Write each VST3 effect's current state as a ``.vstpreset`` beside the saved chain ``path`` (``preset_paths``),
    each atomically, so that a DAW can load the matched settings into its own instance of the plugin.

    Returns:
        The files written.
    """
    from ..audio import save_atomically

    written = []
    targets = preset_paths(chain, path)
    try:
        for fx in chain.effects:
            if fx.name in targets:
                data = fx.preset_data()
                save_atomically(targets[fx.name], lambda tmp: Path(tmp).write_bytes(data))
                written.append(targets[fx.name])
    except BaseException:
        for w in written:
            w.unlink(missing_ok=True)
        raise
    return written


def write_spec(spec: dict[str, Any], path: str | Path) -> None:
    """Write a spec (strings, finite numbers, tables and lists of tables) as TOML, atomically."""
    from ..audio import save_atomically

    lines = [f"{_key(k)} = {_value(v)}" for k, v in spec.items() if not isinstance(v, (dict, list))]
    for k, v in spec.items():
        if isinstance(v, dict):
            lines += ["", f"[{_key(k)}]"] + [f"{_key(a)} = {_value(b)}" for a, b in v.items()]
    for entry in spec.get("effects", []):
        lines += ["", "[[effects]]"]
        lines += [f"{_key(k)} = {_value(v)}" for k, v in entry.items() if not isinstance(v, dict)]
        lines += [f"{_key(k)} = {_value(v)}" for k, v in entry.items() if isinstance(v, dict)]
    text = "\n".join(lines) + "\n"
    save_atomically(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def load_saved(path: str | Path) -> SavedMatch:
    """A match saved by ``--save-chain``.

    Raises:
        ChainError: not a saved match (no ``[apply]`` table), a missing plugin, another plugin version, a bad value.
    """
    import tomllib

    from .specs import chain_from_dict

    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ChainError(f"saved chain not found: {p}") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ChainError(f"cannot read saved chain {p}: {exc}") from None
    apply = data.get(APPLY_KEY)
    if not isinstance(apply, dict) or not _finite(apply.get("gain_db")):
        raise ChainError(f"{p} is not a saved match (no [{APPLY_KEY}] table with gain_db); write one with "
                         "`stito match ... --save-chain FILE.toml`")
    ceiling = apply.get("ceiling_dbtp")
    if ceiling is not None and not _finite(ceiling):
        raise ChainError(f"{p}: [{APPLY_KEY}] ceiling_dbtp must be a number, got {ceiling!r}")
    chain = chain_from_dict({k: v for k, v in data.items() if k != APPLY_KEY}, default_name=p.stem)
    return SavedMatch(chain, float(apply["gain_db"]), None if ceiling is None else float(ceiling))


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _key(name: str) -> str:
    return name if name.replace("_", "").replace("-", "").isalnum() and name.isascii() else json.dumps(name)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        if not math.isfinite(v):
            raise ChainError(f"cannot save a non-finite value {v!r}")
        return repr(float(v)) if isinstance(v, float) else str(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + " }"
    raise ChainError(f"cannot save {type(v).__name__} value {v!r}")
