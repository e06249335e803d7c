"""Make the stito client importable inside REAPER's Python: add the folders listed in stito_paths.txt (stdlib only)."""

from __future__ import annotations

import os
import sys

PATHS_FILE = "stito_paths.txt"  # written by `stito-reaper install`, one folder per line


def add_paths(script_dir: str) -> list[str]:
    """Append the folders named in ``script_dir/stito_paths.txt`` to ``sys.path`` (once each).

    The file names the folder holding the ``stito_server`` package and the site-packages holding
    pyzmq, numpy and reapy of the Python environment ``stito-reaper install`` ran from. REAPER's
    Python (Options > Preferences > Plug-ins > ReaScript) must be the same Python version.

    Returns:
        The folders added now.
    """
    added = []
    path = os.path.join(script_dir, PATHS_FILE)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                folder = line.strip()
                if folder and not folder.startswith("#") and folder not in sys.path:
                    sys.path.append(folder)
                    added.append(folder)
    return added
