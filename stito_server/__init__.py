"""stito: production style transfer over real audio-effect plugins (ST-ITO); the engine's public API.

Each name of ``__all__`` is imported on first use (PEP 562), so ``import stito_server`` stays light: REAPER's
Python imports ``stito_server.client`` through this file and must not load pedalboard or torch.

    from stito_server import MatchOptions, get_metric, load_audio, load_chain, match
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module of the package that defines it
_API = {
    "match": "engine.match", "score_settings": "engine.match", "MatchOptions": "engine.options",
    "MatchResult": "engine.match", "ParamChange": "engine.match", "OptimizerOptions": "engine.optimize",
    "Audio": "audio", "load_audio": "audio", "save_audio": "audio",
    "Chain": "effects.chain", "load_chain": "effects.specs", "named_chains": "effects.specs",
    "StyleMetric": "metrics", "get_metric": "metrics", "metric_names": "metrics", "DEFAULT_METRIC": "metrics",
    "StitoError": "errors", "AudioError": "errors", "ChainError": "errors", "RenderError": "errors",
    "CancelledError": "errors",
    "run_batch": "batch.runner", "BatchSettings": "batch.runner", "BatchJob": "batch.manifest",
    "load_manifest": "batch.manifest", "folder_jobs": "batch.manifest",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'stito_server' has no attribute {name!r}; its API: {', '.join(__all__)}")
    return getattr(importlib.import_module(f".{_API[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
