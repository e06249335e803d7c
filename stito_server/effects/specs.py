"""Chain spec files (TOML): which effects, which parameters to search or fix, range overrides."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from ..errors import ChainError, did_you_mean
from ..resources import package_dir
from .base import Effect
from .builtin import BuiltinEffect
from .chain import Chain, SearchDim
from .vst3 import VST3Effect, resolve_vst3

EFFECT_KEYS = ("builtin", "vst3", "python", "name", "search", "exclude", "fix", "start", "ranges", "version")
TOP_KEYS = ("name", "description", "effects", "apply")  # "apply": a saved match's gain (effects/saved.py)


def named_chains() -> dict[str, Path]:
    """Chains shipped with stito, by name."""
    return {p.stem: p for p in sorted(package_dir("chains").glob("*.toml"))}


def load_chain(spec: str | Path, vst3_paths: list[Path] | None = None, allow_python: bool = False) -> Chain:
    """Build a chain from a shipped chain name or a TOML file.

    A chain file is data: an effect given as ``python = "module:factory"`` imports and runs that code, so a
    file (shared like a preset) may only use it with ``allow_python`` (``stito match --allow-python-effects``).

    Spec format::

        name = "my-chain"
        [[effects]]
        vst3 = "ZamCompX2"                 # plugin name on the VST3 paths, or a path to a .vst3
        search = ["Threshold", "Ratio"]    # default: every parameter not fixed
        exclude = ["Knee"]                 # or: every parameter but these
        fix = { Makeup = 0.0 }             # set (in units or choice label) and never searched
        start = { Attack = 5.0 }           # starting value, still searched
        ranges = { Threshold = [-40, 0] }  # search only this range (in units)
        [[effects]]
        builtin = "reverb"                 # see `stito plugins builtins`

    A saved match (``stito match --save-chain``) also has ``version`` on its VST3 effects (another version of the
    plugin is refused) and an ``[apply]`` table (the gain after the chain, read by ``stito apply``).

    Raises:
        ChainError: unknown chain name, unreadable file, unknown key, effect or parameter, bad value.
    """
    path = Path(spec)
    if not path.suffix and not path.is_file():  # a folder that happens to share a chain's name is no spec
        shipped = named_chains()
        if str(spec) not in shipped:
            raise ChainError(f"unknown chain {str(spec)!r}; give a .toml file or a shipped chain: "
                             + did_you_mean(str(spec), sorted(shipped)))
        path = shipped[str(spec)]
    if not path.exists():
        raise ChainError(f"chain file not found: {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ChainError(f"cannot read chain file {path}: not UTF-8 text (a chain file is TOML)") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ChainError(f"cannot read chain file {path}: {exc}") from None
    coded = python_effects(data)
    if coded and not allow_python:
        raise ChainError(f"chain file {path}: effect {', '.join(f'#{k}' for k in coded)} names Python code "
                         "('python' key), which "
                         "would run on loading; refused (pass --allow-python-effects only for a file you trust)")
    return chain_from_dict(data, default_name=path.stem, vst3_paths=vst3_paths)


def python_effects(data: Any) -> list[int]:
    """1-based numbers of a parsed spec's effects given as Python code (``python = "module:factory"``), which
    would run on building the chain."""
    effects = data.get("effects") if isinstance(data, dict) and isinstance(data.get("effects"), list) else []
    return [k + 1 for k, e in enumerate(effects) if isinstance(e, dict) and "python" in e]


def chain_from_dict(data: dict[str, Any], default_name: str = "custom",
                    vst3_paths: list[Path] | None = None) -> Chain:
    """Build a chain from a parsed spec (see ``load_chain`` for the format)."""
    _check_keys(data, TOP_KEYS, "chain spec")
    entries = data.get("effects")
    if not isinstance(entries, list) or not entries:
        raise ChainError("chain spec needs at least one [[effects]] entry")
    effects: list[Effect] = []
    dims: list[SearchDim] = []
    for e, entry in enumerate(entries):
        where = f"effect #{e + 1}"
        if not isinstance(entry, dict):
            raise ChainError(f"{where} must be a table ([[effects]] with keys), got {type(entry).__name__}")
        _check_keys(entry, EFFECT_KEYS, where)
        _check_types(entry, where)
        fx = _make_effect(entry, where, vst3_paths)
        effects.append(fx)
        fixed = {fx.param_index(n) for n in entry.get("fix", {})}
        fx.set_values(entry.get("fix", {}))
        fx.set_values(entry.get("start", {}))
        if "search" in entry and "exclude" in entry:
            raise ChainError(f"{where} ({fx.name}): give either 'search' or 'exclude', not both")
        if "search" in entry:
            chosen = [fx.param_index(n) for n in entry["search"]]
        else:
            excluded = {fx.param_index(n) for n in entry.get("exclude", [])}
            chosen = [i for i in range(len(fx.params)) if i not in excluded]
        both = sorted(set(chosen) & fixed)
        if both and "search" in entry:
            names = ", ".join(fx.params[i].name for i in both)
            raise ChainError(f"{where} ({fx.name}): {names} is both searched and fixed")
        ranges = {fx.param_index(n): r for n, r in entry.get("ranges", {}).items()}
        for i in chosen:
            if i in fixed:
                continue
            lo, hi = 0.0, 1.0
            if i in ranges:
                r = ranges[i]
                if not (isinstance(r, list) and len(r) == 2):
                    raise ChainError(f"{where} ({fx.name}): range of {fx.params[i].name} must be [low, high]")
                try:
                    lo, hi = fx.params[i].with_range(float(r[0]), float(r[1]))
                except ValueError as exc:
                    raise ChainError(f"{where} ({fx.name}): {exc}") from None
            dims.append(SearchDim(len(effects) - 1, i, lo, hi))
    names = [fx.name for fx in effects]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ChainError(f"effect names must be unique in a chain; repeated: {', '.join(dupes)} (set 'name')")
    return Chain(effects, dims, name=str(data.get("name", default_name)), spec=data)


def _make_effect(entry: dict[str, Any], where: str, vst3_paths: list[Path] | None) -> Effect:
    kinds = [k for k in ("builtin", "vst3", "python") if k in entry]
    if len(kinds) != 1:
        raise ChainError(f"{where}: give exactly one of 'builtin' (a built-in effect), 'vst3' (a plugin) "
                         "or 'python' (module:factory of an Effect)")
    if "python" in entry:
        return _python_effect(str(entry["python"]), entry.get("name"), where)
    if "builtin" in entry:
        return BuiltinEffect(str(entry["builtin"]), entry.get("name"))
    fx = VST3Effect(resolve_vst3(str(entry["vst3"]), vst3_paths), entry.get("name"))
    if "version" in entry and fx.version != entry["version"]:
        raise ChainError(f"{where}: VST3 plugin {entry['vst3']!r} is version {fx.version or '(none given)'} here, "
                         f"but the chain was saved with version {entry['version']}; its parameters may mean other "
                         "things: re-run the match with this version")
    return fx


def _python_effect(target: str, name: str | None, where: str) -> Effect:
    """An Effect from ``module:factory`` (custom effects, and test-only ones such as a crashing plugin)."""
    import importlib

    module_name, _, attr = target.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ChainError(f"{where}: cannot import effect factory {target!r}: {exc}") from None
    fx = factory(name) if name else factory()
    if not isinstance(fx, Effect):
        raise ChainError(f"{where}: {target!r} returned {type(fx).__name__}, not an Effect")
    return fx


FIELD_KINDS = {"fix": (dict, "a table of parameter = value"), "start": (dict, "a table of parameter = value"),
               "ranges": (dict, "a table of parameter = [low, high]"), "search": (list, "a list of parameter names"),
               "exclude": (list, "a list of parameter names"), "name": (str, "a string"),
               "builtin": (str, "a string"), "vst3": (str, "a string"), "python": (str, "a string"),
               "version": (str, "a string")}


def _check_types(entry: dict[str, Any], where: str) -> None:
    """Each field of an effect entry is of its kind (a file is data: a wrong type is one clear line, never a crash)."""
    for key, (kind, says) in FIELD_KINDS.items():
        if key in entry and not isinstance(entry[key], kind):
            raise ChainError(f"{where}: '{key}' must be {says}, got {entry[key]!r}")
    for key in ("search", "exclude"):
        bad = [n for n in entry.get(key, []) if not isinstance(n, str)]
        if bad:
            raise ChainError(f"{where}: '{key}' must list parameter names (strings), got {bad[0]!r}")


def _check_keys(data: dict[str, Any], valid: tuple[str, ...], where: str) -> None:
    for key in data:
        if key not in valid:
            raise ChainError(f"{where}: unknown key {key!r}; " + did_you_mean(key, list(valid)))
