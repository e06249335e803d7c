"""The corpora: fetch the evaluation or training packages and cut their clips (`stito data` runs these)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from .clips import ClipPlan, build_source, write_manifests
from .fetch import cache_dir, fetch_packages
from .sources import packages, sources

TRAIN_CLIP_SECONDS = 6.0  # the encoder issue asks for training clips of at least 6 s
TRAIN_MAX_CLIPS_PER_FILE = 40


def eval_root(cache: str | Path | None = None) -> Path:
    """Folder of the evaluation clips and manifests inside the data cache."""
    return cache_dir(cache) / "eval"


def train_root(cache: str | Path | None = None) -> Path:
    """Folder of the training clips and manifests inside the data cache."""
    return cache_dir(cache) / "train"


def _build(which: str, plan: ClipPlan, cache: str | Path | None, log: Callable[[str], None],
           max_clips_per_file: int | None = None) -> tuple[Path, dict[str, float]]:
    root = cache_dir(cache)
    src = [s for s in sources(which) if s.quick or not plan.quick]
    if max_clips_per_file is not None:
        src = [dataclasses.replace(s, max_clips_per_file=max_clips_per_file) for s in src]
    fetched = fetch_packages(packages(src), root, log)
    out = root / which
    entries: list[dict] = []
    for s in src:
        folder, version = fetched[s.package]
        entries += build_source(s, folder, version, out, plan, log)
    return out, write_manifests(out, entries, plan)


def build_eval(quick: bool = False, cache: str | Path | None = None, seed: int = 0,
               log: Callable[[str], None] = print) -> tuple[Path, dict[str, float]]:
    """Fetch the evaluation packages and cut their clips (idempotent and resumable).

    Args:
        quick: Only the quick subset (a few small packages, a few clips each).
        cache: Data cache folder (default ``$STITO_DATA_DIR`` or ``~/.cache/stito/data``).
        seed: Seed of clip choice.
        log: Progress printer.

    Returns:
        The evaluation folder (manifests in ``CONTENT/manifest[-quick].json``) and hours per content type.
    """
    return _build("eval", ClipPlan(seed=seed, quick=quick), cache, log)


def build_train(quick: bool = False, cache: str | Path | None = None, seed: int = 0,
                log: Callable[[str], None] = print) -> tuple[Path, dict[str, float]]:
    """Fetch the training packages (disjoint from the evaluation ones) and cut 6 s clips (idempotent, resumable).

    Args:
        quick: Only the quick subset of the training sources.
        cache: Data cache folder (default ``$STITO_DATA_DIR`` or ``~/.cache/stito/data``).
        seed: Seed of clip choice.
        log: Progress printer.

    Returns:
        The training folder (manifests in ``CONTENT/manifest[-quick].json``) and hours per content type.
    """
    return _build("train", ClipPlan(clip_seconds=TRAIN_CLIP_SECONDS, seed=seed, quick=quick), cache, log,
                  max_clips_per_file=TRAIN_MAX_CLIPS_PER_FILE)
