"""Where the package's own files are: chains, encoder weights and REAPER scripts, found as package data."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from .errors import StitoError

PACKAGE_DATA = ("chains", "models", "reaper_scripts")


def package_dir(name: str) -> Path:
    """A folder of package data, as a file-system path (a wheel, an editable install or a checkout alike).

    Args:
        name: One of ``PACKAGE_DATA``.

    Raises:
        StitoError: an unknown name, or the package is not installed as plain files (e.g. inside a zip).
    """
    if name not in PACKAGE_DATA:
        raise StitoError(f"unknown package folder {name!r}; valid: {', '.join(PACKAGE_DATA)}")
    folder = files("stito_server") / name
    if not isinstance(folder, Path):
        raise StitoError(f"stito_server is installed as {type(folder).__name__}, not as plain files; "
                         "reinstall it with pip (not zipped) so its chains, models and scripts can be read")
    return folder
