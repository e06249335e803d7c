"""`stito data eval [--quick] [--cache DIR]`: fetch the evaluation packages and cut the 48 kHz clips."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable

from ..errors import StitoError
from .clips import ClipPlan, build_source, write_manifests
from .fetch import cache_dir, fetch_packages
from .sources import packages, sources


def eval_root(cache: str | Path | None = None) -> Path:
    """Folder of the evaluation clips and manifests inside the data cache."""
    return cache_dir(cache) / "eval"


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
    root = cache_dir(cache)
    src = [s for s in sources("eval") if s.quick or not quick]
    fetched = fetch_packages(packages(sources("eval"), quick), root, log)
    plan = ClipPlan(seed=seed, quick=quick)
    out = eval_root(root)
    entries: list[dict] = []
    for s in src:
        folder, version = fetched[s.package]
        entries += build_source(s, folder, version, out, plan, log)
    return out, write_manifests(out, entries, plan)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``data`` with its ``eval`` sub-command to a CLI's sub-parsers."""
    p = subparsers.add_parser("data", help="fetch evaluation audio from Debian packages and cut clips")
    sub = p.add_subparsers(dest="data_command", required=True)
    e = sub.add_parser("eval", help="fetch the held-out evaluation packages and cut 48 kHz clips + manifests")
    e.add_argument("--quick", action="store_true", help="a small subset (a few small packages) for CI")
    e.add_argument("--cache", default=None,
                   help="data cache folder (default: $STITO_DATA_DIR or ~/.cache/stito/data)")
    e.add_argument("--seed", type=int, default=0, help="seed of clip choice (default 0)")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``stito data ...``; returns the exit status."""
    if args.data_command != "eval":
        raise SystemExit(f"unknown data command {args.data_command!r}; valid: eval")
    t0 = time.perf_counter()
    try:
        out, hours = build_eval(quick=args.quick, cache=args.cache, seed=args.seed)
    except FileNotFoundError as exc:  # a package no longer holds the listed files
        raise StitoError(str(exc)) from None
    for ct, h in hours.items():
        print(f"{ct:8s} {h * 60:7.1f} min")
    print(f"clips and manifests in {out} ({time.perf_counter() - t0:.1f} s)")
    return 0
