"""Effects: one Effect interface over built-in pedalboard effects and hosted VST3 plugins, and the Chain."""

from .base import Effect
from .chain import Chain

__all__ = ["Chain", "Effect"]
