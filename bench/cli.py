"""`stito bench classification|retrieval|parameters|transfer|ranking|references|all [--quick]` (into bench/results/); `throughput`, `speed`, `batch`, `server`, `visibility`, `separation`."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Sequence

from stito_server.cli import run_lab_parser

from .common import RESULTS_DIR

TASKS = {"classification": "bench.classification", "retrieval": "bench.retrieval",
         "parameters": "bench.parameters", "transfer": "bench.transfer",
         "ranking": "bench.setting_ranking", "references": "bench.references"}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``bench`` with one sub-command per task to a CLI's sub-parsers."""
    p = subparsers.add_parser("bench", help="benchmarks on held-out real audio (results in bench/results/)")
    sub = p.add_subparsers(dest="bench_task", required=True)
    for task in (*TASKS, "all"):
        t = sub.add_parser(task, help=f"task: {task}" if task != "all" else f"every task in turn: {', '.join(TASKS)}")
        t.add_argument("--quick", action="store_true", help="quick data subset and few trials (for CI)")
        t.add_argument("--out", type=Path, default=None,
                       help="results folder (default: bench/results, or bench/results/quick with --quick)")
        t.add_argument("--metrics", default="mfcc,mir", help="comma-separated metric names (default mfcc,mir)")
        t.add_argument("--seed", type=int, default=0, help="seed of everything random (default 0)")
        t.add_argument("--cache", default=None,
                       help="data cache folder (default: $STITO_DATA_DIR or ~/.cache/stito/data)")
    th = sub.add_parser("throughput", help="each metric's embedding speed in x real time (stereo clips, mid+side)")
    th.add_argument("--metrics", default="afx,mfcc,mir,random", help="comma-separated metric names")
    th.add_argument("--batch", type=int, default=128, help="stereo clips per call (default 128)")
    th.add_argument("--seconds", type=float, default=5.46, help="clip length in seconds (default 5.46)")
    th.add_argument("--repeats", type=int, default=3, help="timed calls; the median is reported (default 3)")
    from .speed import add_arguments as add_speed_arguments

    add_speed_arguments(sub.add_parser("speed", help="match speed: fast preset vs naive paper settings vs Matchering"))
    from .batch import add_arguments as add_batch_arguments

    add_batch_arguments(sub.add_parser("batch", help="stito batch throughput: LocalCluster 1 and 2 workers, dask "
                                                     "worker processes, a plain loop"))
    vi = sub.add_parser("visibility", help="how far each style (the training ones and task 4's) moves each stats "
                        "descriptor and a few candidate ones, against how far training recordings differ")
    vi.add_argument("--clips", type=int, default=24, help="training clips per content type (default %(default)s)")
    vi.add_argument("--seed", type=int, default=5, help="(default %(default)s)")
    vi.add_argument("--cache", default=None, help="data cache folder (default: $STITO_DATA_DIR or ~/.cache/stito/data)")
    vi.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    se = sub.add_parser("separation", help="whether the input and a reference alone tell a reference through a style "
                        "(the training ones and task 4's) from another recording left unprocessed: AUC of statistics "
                        "of the stats descriptors' gaps, on training clips")
    se.add_argument("--clips", type=int, default=24, help="training clips per content type (default %(default)s)")
    se.add_argument("--calibration", type=int, default=24,
                    help="unprocessed pairs per content type for the gaps' quantiles (default %(default)s)")
    se.add_argument("--seed", type=int, default=7, help="(default %(default)s)")
    se.add_argument("--prior", type=Path, default=None,
                    help="a stats prior file (`stito train stats-prior --out`): measure its descriptors (default: the "
                         "shipped one)")
    se.add_argument("--candidates", action="store_true",
                    help="also the candidate descriptors of `stito bench visibility` (amplitude histogram, frame crest, "
                         "echo strength), with each one's AUC alone")
    se.add_argument("--cache", default=None, help="data cache folder (default: $STITO_DATA_DIR or ~/.cache/stito/data)")
    se.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    s = sub.add_parser("server", help="server_info latency and match overhead vs in-process")
    s.add_argument("--repeats", type=int, default=200, help="server_info round trips to time (default: 200)")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``stito bench TASK``; prints the markdown table and returns the exit status."""
    if args.bench_task == "server":
        from .server import run_server_bench

        return run_server_bench(args.repeats)
    if args.bench_task == "batch":
        from .batch import run_args as run_batch_args

        return run_batch_args(args)
    if args.bench_task == "speed":
        from .speed import run_args

        return run_args(args)
    if args.bench_task == "visibility":
        return _visibility(args)
    if args.bench_task == "separation":
        return _separation(args)
    if args.bench_task == "throughput":
        import os

        from .throughput import metric_throughput

        print(f"| metric | batch | clip s | median s | x real time |  ({os.cpu_count()} CPUs, load "
              f"{os.getloadavg()[0]:.1f})\n|---|---|---|---|---|")
        for name in (m.strip() for m in args.metrics.split(",") if m.strip()):
            r = metric_throughput(name, args.batch, args.seconds, args.repeats)
            print(f"| {name} | {r['batch']} | {r['seconds']:g} | {r['median_s']:.2f} | {r['x_real_time']:.0f} |")
        return 0
    if args.bench_task not in TASKS and args.bench_task != "all":
        raise SystemExit(f"unknown benchmark task {args.bench_task!r}; valid: {', '.join(TASKS)}, all, speed, throughput, server, "
                         "visibility, separation")
    out = args.out or (RESULTS_DIR / "quick" if args.quick else RESULTS_DIR)
    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    for task in TASKS if args.bench_task == "all" else (args.bench_task,):
        module = importlib.import_module(TASKS[task])
        report = module.run(quick=args.quick, out_dir=out, metrics=metrics, seed=args.seed, cache=args.cache)
        print(Path(report["files"][0]).read_text())
        print(f"wrote {', '.join(report['files'])} in {report['wall_s']:.0f} s")
    return 0


def _visibility(args: argparse.Namespace) -> int:
    """``stito bench visibility``: the training styles and task 4's (as definitions) on training clips only."""
    import json
    import time

    from training.data.corpus import train_root
    from training.visibility import table, visibility

    if args.clips < 2:
        raise SystemExit(f"stito bench visibility: --clips must be at least 2 (a spread needs two gaps), got {args.clips}")
    t0 = time.perf_counter()
    res = visibility(train_root(args.cache), _study_styles(), args.clips, args.seed)
    print("\n".join(table(res)))
    if args.out:
        args.out.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    print(f"done ({time.perf_counter() - t0:.0f} s)")
    return 0


def _separation(args: argparse.Namespace) -> int:
    """``stito bench separation``: the training styles and task 4's (as definitions) on training clips only."""
    import json
    import time

    from training.data.corpus import train_root
    from training.separation import separation, table

    if args.clips < 1 or args.calibration < 1:
        raise SystemExit(f"stito bench separation: --clips and --calibration must be at least 1, got {args.clips} and "
                         f"{args.calibration}")
    if args.prior is not None and not args.prior.is_file():
        raise SystemExit(f"stito bench separation: --prior {args.prior}: no such file")
    t0 = time.perf_counter()
    res = separation(train_root(args.cache), _study_styles(), args.clips, args.calibration, args.seed, args.prior,
                     args.candidates)
    print("\n".join(table(res)))
    if args.out:
        args.out.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    print(f"done ({time.perf_counter() - t0:.0f} s)")
    return 0


def _study_styles() -> dict:
    """The training styles and task 4's, as chains (the studies run them on training clips only)."""
    from stito_server.effects.specs import chain_from_dict
    from training.restraint import STYLES

    from .transfer import STYLE_NAMES, style_chain

    styles = {n: chain_from_dict({"name": n, "effects": e}) for n, e in STYLES.items()}
    return styles | {f"task4:{n}": style_chain(n) for n in STYLE_NAMES}


def main(argv: Sequence[str]) -> int:
    """`stito bench ARGS`: the entry point `stito` loads for its `bench` command (ARGS follow the name)."""
    return run_lab_parser("bench", add_parser, run, argv)
