"""Style metrics: embed audio into mid/side production-style embeddings and compare them by cosine."""

from .base import Embedding, StyleMetric
from .registry import DEFAULT_METRIC, get_metric, metric_names

__all__ = ["DEFAULT_METRIC", "Embedding", "StyleMetric", "get_metric", "metric_names"]
