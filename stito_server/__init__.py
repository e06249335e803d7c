"""stito: production style transfer over real audio-effect plugins (ST-ITO), engine and services."""

__version__ = "0.1.0"
