"""`stito-reaper install|uninstall`: copy the stito ReaScripts into REAPER and register them in reaper-kb.ini."""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from .resources import package_dir

SUBDIR = "stito"
PATHS_FILE = "stito_paths.txt"
# (file, action id, action name, default key or None). Ids are fixed so install is idempotent.
ACTIONS = (
    ("stito_match_style.py", "RSstito_match_style", "stito: Match Style", ("13", "77")),  # Ctrl+Shift+M: 1 virtkey + 4 Shift + 8 Ctrl (A9)
    ("stito_cancel_match_style.py", "RSstito_cancel_match_style", "stito: Cancel Match Style", None),
    ("stito_settings.py", "RSstito_settings", "stito settings", None),
)
LIBRARY = ("stito_bootstrap.py", "stito_config.py", "stito_gather.py", "stito_apply.py", "stito_fxchain.py",
           "stito_match.py", "capture_fixture.py")


def default_resource_path() -> Path:
    """REAPER's resource folder on this OS (Options > Show REAPER resource path)."""
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "REAPER"
    if sys.platform.startswith("win"):
        return Path(os.environ.get("APPDATA", Path.home())) / "REAPER"
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "REAPER"


def reaper_running() -> bool:
    """Whether a REAPER process runs (it rewrites reaper-kb.ini on exit, losing our edits)."""
    try:
        if sys.platform.startswith("win"):
            out = subprocess.run(["tasklist"], capture_output=True, text=True, timeout=10).stdout
            return "reaper.exe" in out.lower()
        return subprocess.run(["pgrep", "-x", "-i", "reaper"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def kb_lines(script_dir: Path) -> list[str]:
    """The reaper-kb.ini lines install adds: one SCR per action, one KEY for Match Style."""
    lines = []
    for file, ident, name, key in ACTIONS:
        lines.append(f'SCR 4 0 {ident} "Custom: {name}" "{script_dir / file}"')
        if key is not None:
            lines.append(f"KEY {key[0]} {key[1]} _{ident} 0")
    return lines


def _ours(line: str) -> bool:
    parts = line.split()
    ids = {ident for _, ident, _, _ in ACTIONS}
    return (len(parts) >= 4 and parts[0] == "SCR" and parts[3] in ids) or \
           (len(parts) >= 4 and parts[0] == "KEY" and parts[3].lstrip("_") in ids)


def _backup(path: Path) -> Path | None:
    if not path.exists():
        return None
    backup = path.with_name(f"{path.name}.stito-backup-{time.strftime('%Y%m%d-%H%M%S')}")
    n = 1
    while backup.exists():
        backup = path.with_name(f"{path.name}.stito-backup-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
        n += 1
    shutil.copy2(path, backup)
    return backup


def _write_kb(kb: Path, keep: list[str], add: list[str]) -> tuple[bool, Path | None]:
    """Write ``keep + add`` (atomically, after a backup) unless the file already says exactly that."""
    new = keep + add
    old = kb.read_text(encoding="utf-8", errors="surrogateescape").splitlines() if kb.exists() else []
    if new == old and kb.exists():
        return False, None
    backup = _backup(kb)
    kb.parent.mkdir(parents=True, exist_ok=True)
    tmp = kb.with_name(kb.name + ".stito-tmp")
    tmp.write_text("".join(line + "\n" for line in new), encoding="utf-8", errors="surrogateescape")
    os.replace(tmp, kb)
    return True, backup


def site_paths() -> list[str]:
    """Folders REAPER's Python needs on sys.path: stito_server's parent and the site-packages of zmq, numpy, reapy."""
    folders = [str(Path(__file__).resolve().parent.parent)]
    for module in ("zmq", "numpy", "reapy"):
        spec = importlib.util.find_spec(module)  # located, not imported (reapy warns when imported outside REAPER)
        if spec is None or spec.origin is None:
            continue
        folder = str(Path(spec.origin).resolve().parent.parent)
        if folder not in folders:
            folders.append(folder)
    return folders


def install(resource: Path, force: bool = False) -> list[str]:
    """Copy the scripts and register them; returns what was done, one line each.

    Raises:
        RuntimeError: REAPER is running (and ``force`` is False), or the scripts are missing.
    """
    if not force and reaper_running():
        raise RuntimeError("REAPER is running; it rewrites reaper-kb.ini when it quits. Quit REAPER and run "
                           "`stito-reaper install` again.")
    scripts = package_dir("reaper_scripts")
    if not (scripts / ACTIONS[0][0]).exists():
        raise RuntimeError(f"the stito ReaScripts are not at {scripts}; reinstall stito")
    done = []
    dest = resource / "Scripts" / SUBDIR
    dest.mkdir(parents=True, exist_ok=True)
    for name in [a[0] for a in ACTIONS] + list(LIBRARY):
        shutil.copy2(scripts / name, dest / name)
    (dest / PATHS_FILE).write_text("# written by stito-reaper install: folders added to REAPER's sys.path\n"
                                   + "".join(p + "\n" for p in site_paths()), encoding="utf-8")
    done.append(f"copied {len(ACTIONS) + len(LIBRARY)} scripts to {dest}")
    kb = resource / "reaper-kb.ini"
    old = kb.read_text(encoding="utf-8", errors="surrogateescape").splitlines() if kb.exists() else []
    changed, backup = _write_kb(kb, [line for line in old if not _ours(line)], kb_lines(dest))
    done.append((f"registered {len(ACTIONS)} actions in {kb}" + (f" (backup: {backup.name})" if backup else ""))
                if changed else f"{kb} already registers the stito actions")
    return done


def uninstall(resource: Path, force: bool = False) -> list[str]:
    """Remove exactly what ``install`` added: its kb lines, its script files, the stito folder if empty."""
    if not force and reaper_running():
        raise RuntimeError("REAPER is running; quit it and run `stito-reaper uninstall` again.")
    done = []
    kb = resource / "reaper-kb.ini"
    if kb.exists():
        old = kb.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
        keep = [line for line in old if not _ours(line)]
        _, backup = _write_kb(kb, keep, [])
        done.append(f"removed {len(old) - len(keep)} line(s) from {kb}" + (f" (backup: {backup.name})" if backup else ""))
    dest = resource / "Scripts" / SUBDIR
    removed = 0
    for name in [a[0] for a in ACTIONS] + list(LIBRARY) + [PATHS_FILE]:
        if (dest / name).exists():
            (dest / name).unlink()
            removed += 1
    pycache = dest / "__pycache__"
    if pycache.is_dir():
        shutil.rmtree(pycache)
    if dest.is_dir() and not any(dest.iterdir()):
        dest.rmdir()
    done.append(f"removed {removed} file(s) from {dest}")
    return done


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stito-reaper", description="Install the stito actions into REAPER.")
    p.add_argument("command", choices=("install", "uninstall"))
    p.add_argument("--resource-path", type=Path, default=None,
                   help="REAPER's resource folder (default: %s)" % default_resource_path())
    p.add_argument("--force", action="store_true", help="edit even if a REAPER process seems to run")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    resource = args.resource_path or default_resource_path()
    if not resource.is_dir():
        print(f"stito-reaper: error: REAPER resource folder {resource} does not exist; give --resource-path "
              "(REAPER: Options > Show REAPER resource path in explorer/finder)", file=sys.stderr)
        return 2
    try:
        done = install(resource, args.force) if args.command == "install" else uninstall(resource, args.force)
    except (RuntimeError, OSError) as exc:
        print(f"stito-reaper: error: {exc}", file=sys.stderr)
        return 1
    for line in done:
        print(f"stito-reaper: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
