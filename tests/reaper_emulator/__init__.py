"""An in-process stand-in for REAPER's ``reaper_python`` (under the real reapy) for testing the ReaScripts."""

from .host import Reaper, active
from .model import FX, Item, Project, Track
from .shim import EmulatorError

__all__ = ["Reaper", "active", "FX", "Item", "Project", "Track", "EmulatorError"]
