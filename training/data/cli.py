"""`stito data eval|train [--quick] [--cache DIR]`: fetch the evaluation or training packages and cut 48 kHz clips."""

from __future__ import annotations

import argparse
import time
from typing import Sequence

from stito_server.cli import run_lab_parser
from stito_server.errors import StitoError

from .corpus import build_eval, build_train


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``data`` with its ``eval`` sub-command to a CLI's sub-parsers."""
    p = subparsers.add_parser("data", help="fetch audio from Debian packages and cut clips")
    sub = p.add_subparsers(dest="data_command", required=True)
    for name, text in (("eval", "fetch the held-out evaluation packages and cut 5 s 48 kHz clips + manifests"),
                       ("train", "fetch the encoder's training packages (disjoint from eval) and cut 6 s clips")):
        e = sub.add_parser(name, help=text)
        e.add_argument("--quick", action="store_true", help="a small subset (a few small packages) for CI")
        e.add_argument("--cache", default=None,
                       help="data cache folder (default: $STITO_DATA_DIR or ~/.cache/stito/data)")
        e.add_argument("--seed", type=int, default=0, help="seed of clip choice (default 0)")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``stito data ...``; returns the exit status."""
    builders = {"eval": build_eval, "train": build_train}
    if args.data_command not in builders:
        raise SystemExit(f"unknown data command {args.data_command!r}; valid: {', '.join(builders)}")
    t0 = time.perf_counter()
    try:
        out, hours = builders[args.data_command](quick=args.quick, cache=args.cache, seed=args.seed)
    except FileNotFoundError as exc:  # a package no longer holds the listed files
        raise StitoError(str(exc)) from None
    for ct, h in hours.items():
        print(f"{ct:8s} {h * 60:7.1f} min")
    print(f"clips and manifests in {out} ({time.perf_counter() - t0:.1f} s)")
    return 0


def main(argv: Sequence[str]) -> int:
    """`stito data ARGS`: the entry point `stito` loads for its `data` command (ARGS follow the name)."""
    return run_lab_parser("data", add_parser, run, argv)
