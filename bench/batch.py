"""`stito bench batch`: jobs per minute of `stito batch` on a LocalCluster of 1 and 2 workers and on two `dask worker`
processes against a `dask scheduler` on 127.0.0.1, against the same matches in a plain loop."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from stito_server.audio import save_audio
from stito_server.batch.manifest import BatchJob, folder_jobs
from stito_server.batch.runner import BatchSettings, run_batch
from stito_server.batch.worker import run_job
from stito_server.batch.summary import JobResult
from stito_server.examples import phrase, styled

from .common import RESULTS_DIR
from .search_quality import BOOTSTRAP_RESAMPLES, CI_LEVEL

TASK = "batch"
RATE = 44100
FULL = {"jobs": 16, "seconds": 8.0, "options": {}}  # the product's defaults: the fast preset, its 6.5 s budget
QUICK = {"jobs": 4, "seconds": 3.0, "options": {"max_generations": 2, "popsize": 6, "excerpt_seconds": 1.5,
                                                "time_budget_s": 0}}
CHAIN = "pedalboard-strip"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The benchmark's options."""
    p.add_argument("--quick", action="store_true", help="4 jobs of 3 s with tiny searches (exercises every path)")
    p.add_argument("--jobs", type=int, default=None, help="jobs per configuration (default 16; quick 4)")
    p.add_argument("--out", type=Path, default=None,
                   help="results folder (default: bench/results, or bench/results/quick with --quick)")


def mean_interval(values: list[float], seed: int = 0) -> tuple[float, float]:
    """A ``CI_LEVEL`` bootstrap interval of the mean."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return float(x.mean()), float(x.mean())
    means = np.random.default_rng(seed).choice(x, (BOOTSTRAP_RESAMPLES, len(x))).mean(axis=1)
    lo, hi = np.quantile(means, [(1 - CI_LEVEL) / 2, (1 + CI_LEVEL) / 2])
    return float(lo), float(hi)


def _material(folder: Path, jobs: int, seconds: float) -> tuple[Path, Path]:
    """``jobs`` dry phrases (each other notes) in ``folder/inputs`` and one styled reference from another phrase."""
    inputs = folder / "inputs"
    inputs.mkdir()
    for i in range(jobs):
        save_audio(inputs / f"take{i:02d}.wav", phrase(seconds, RATE, seed=100 + i), RATE)
    reference = folder / "reference.wav"
    save_audio(reference, styled(phrase(seconds, RATE, seed=99), RATE), RATE)
    return inputs, reference


def _generations(results: list[JobResult]) -> list[float]:
    out = []
    for r in results:
        if r.report and Path(r.report).exists():
            out.append(float(json.loads(Path(r.report).read_text())["search"]["generations"]))
    return out


def _row(name: str, results: list[JobResult], wall_s: float, detail: str) -> dict[str, Any]:
    job_walls = [r.wall_s for r in results if r.wall_s is not None]
    gains = [r.similarity_matched - r.similarity_start for r in results
             if r.similarity_matched is not None and r.similarity_start is not None]
    return {"name": name, "detail": detail, "jobs": len(results),
            "done": sum(1 for r in results if r.status == "done"), "wall_s": wall_s,
            "jobs_per_min": 60.0 * len(results) / wall_s, "job_wall_s": float(np.mean(job_walls)),
            "job_wall_ci": mean_interval(job_walls), "generations": float(np.mean(_generations(results) or [0])),
            "similarity_gain": float(np.mean(gains or [0.0]))}


def _plain_loop(jobs: list[BatchJob], out: Path) -> tuple[list[JobResult], float]:
    """The same jobs one after another in this process, no Dask: each match on every core."""
    out.mkdir(parents=True)
    t0 = time.perf_counter()
    results = [JobResult(**run_job(job, str(out), job.fingerprint(), None, False)) for job in jobs]
    return results, time.perf_counter() - t0


def _batch(jobs: list[BatchJob], out: Path, settings: BatchSettings) -> tuple[list[JobResult], float]:
    t0 = time.perf_counter()
    summary = run_batch(jobs, out, settings)
    return summary.jobs, time.perf_counter() - t0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def dask_processes(workers: int = 2) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """A `dask scheduler` and ``workers`` `dask worker` processes (one thread each, no nanny, non-daemonic, a job
    retried once) on 127.0.0.1, started from this venv and ready when yielded; all stopped on leaving.

    Yields:
        ``(scheduler address, the worker processes)``.
    """
    from distributed import Client

    dask = str(Path(sys.executable).parent / "dask")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False", "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"}
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for _ in range(workers):
            procs.append(subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--no-nanny", "--host",
                                           "127.0.0.1", "--no-dashboard"], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(workers, timeout=120)
        yield address, procs[1:]
    finally:
        _stop(address, procs)


def _stop(address: str, procs: list[subprocess.Popen]) -> None:
    """Stop a cluster: the scheduler asked to shut itself and its workers down, then whatever is left terminated,
    and killed after 30 s (a worker sent SIGTERM alone sometimes takes the whole 30 s to go)."""
    from distributed import Client

    try:
        with Client(address, timeout="5s") as client:
            client.shutdown()
    except Exception:  # noqa: BLE001 - the scheduler may be gone already; the processes are stopped below anyway
        pass
    deadline = time.monotonic() + 10.0
    for p in procs:
        try:
            p.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            pass
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()


def _distributed(jobs: list[BatchJob], out: Path, workers: int = 2) -> tuple[list[JobResult], float, float]:
    """The jobs on ``dask_processes(workers)``, each match on the cores divided between the workers.

    Returns:
        ``(results, wall_s of the batch, seconds the cluster took to start)``.
    """
    t0 = time.perf_counter()
    with dask_processes(workers) as (address, _):
        started = time.perf_counter() - t0
        cores = os.cpu_count() or 1
        results, wall = _batch(jobs, out, BatchSettings(scheduler=address, match_workers=max(1, cores // workers)))
    return results, wall, started


def run(quick: bool = False, jobs: int | None = None, out_dir: Path | None = None,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the benchmark; writes ``batch.md`` and ``batch.json`` into ``out_dir`` and returns the report."""
    settings = dict(QUICK if quick else FULL)
    n = jobs or settings["jobs"]
    out_dir = Path(out_dir or (RESULTS_DIR / "quick" if quick else RESULTS_DIR))
    cores = os.cpu_count() or 1
    rows = []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="stito-bench-batch-") as tmp:
        folder = Path(tmp)
        inputs, reference = _material(folder, n, settings["seconds"])
        defaults = {"reference": [str(reference)], "chain": CHAIN, "options": dict(settings["options"])}
        batch_jobs = folder_jobs(inputs, defaults)
        log(f"{n} jobs of {settings['seconds']:g} s, {CHAIN}, on {cores} cores: plain loop ...")
        results, wall = _plain_loop(batch_jobs, folder / "loop")
        rows.append(_row("plain loop", results, wall, f"in one process, each match on all {cores} cores"))
        for workers in (1, 2):
            log(f"LocalCluster, {workers} worker(s) ...")
            results, wall = _batch(batch_jobs, folder / f"local{workers}", BatchSettings(workers=workers))
            rows.append(_row(f"LocalCluster {workers} worker{'s' if workers > 1 else ''}", results, wall,
                             f"each match on {max(1, cores // workers)} core(s); cluster start included"))
        log("dask scheduler + 2 dask worker processes on 127.0.0.1 ...")
        results, wall, started = _distributed(batch_jobs, folder / "distributed")
        rows.append(_row("dask scheduler + 2 dask worker", results, wall,
                         f"separate processes, each match on {max(1, cores // 2)} core(s); cluster started "
                         f"beforehand in {started:.1f} s (not counted)"))
    loop, local1 = rows[0], rows[1]
    for row in rows:
        row["throughput_vs_local1"] = row["jobs_per_min"] / local1["jobs_per_min"]
        row["overhead_per_job_s"] = (row["wall_s"] - loop["wall_s"]) / n if row is local1 else None
    report = {"task": TASK, "quick": quick, "jobs": n, "seconds": settings["seconds"], "chain": CHAIN,
              "options": settings["options"] or "the product's defaults (fast preset, 6.5 s search budget)",
              "cores": cores, "load_1min": os.getloadavg()[0], "rows": rows,
              "wall_s": time.perf_counter() - t_start}
    out_dir.mkdir(parents=True, exist_ok=True)
    md = markdown(report)
    (out_dir / f"{TASK}.md").write_text(md)
    (out_dir / f"{TASK}.json").write_text(json.dumps(report, indent=1) + "\n")
    report["files"] = [str(out_dir / f"{TASK}.md"), str(out_dir / f"{TASK}.json")]
    return report


def markdown(report: dict[str, Any]) -> str:
    """The results table."""
    lines = [f"# stito batch: throughput on Dask ({'quick' if report['quick'] else 'full'} run)", "",
             f"`stito bench batch{' --quick' if report['quick'] else ''}`: {report['jobs']} jobs, each a "
             f"{report['seconds']:g} s stereo phrase (44.1 kHz) matched to one styled reference with {report['chain']}; "
             f"options: {report['options']}; {report['cores']} cores, load {report['load_1min']:.1f} at the start; "
             f"{report['wall_s']:.0f} s in all. Job wall time: mean with a {CI_LEVEL:.0%} bootstrap interval over the "
             "jobs.", "",
             "| how | jobs done | wall s | jobs/min | vs LocalCluster 1 | job wall s (interval) | generations/match "
             "| similarity gain | note |", "|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lo, hi = r["job_wall_ci"]
        lines.append(f"| {r['name']} | {r['done']}/{r['jobs']} | {r['wall_s']:.1f} | {r['jobs_per_min']:.2f} | "
                     f"{r['throughput_vs_local1']:.2f}x | {r['job_wall_s']:.2f} ({lo:.2f}-{hi:.2f}) | "
                     f"{r['generations']:.1f} | {r['similarity_gain']:+.3f} | {r['detail']} |")
    loop, local1 = report["rows"][0], report["rows"][1]
    lines += ["", f"Overhead of the batch path against the plain loop (LocalCluster of 1 worker, cluster start and "
                  f"per-worker chain check included): {local1['overhead_per_job_s']:+.2f} s per job "
                  f"({local1['wall_s']:.1f} s vs {loop['wall_s']:.1f} s for {report['jobs']} jobs).", "",
              f"On one machine the workers share its {report['cores']} cores: with 2 workers each match renders on "
              f"{max(1, report['cores'] // 2)} core(s) and takes longer (job wall {report['rows'][2]['job_wall_s']:.2f} "
              f"s against {local1['job_wall_s']:.2f} s), so jobs per minute rise only by what a single match leaves "
              f"idle ({report['rows'][2]['throughput_vs_local1']:.2f}x); the 6.5 s budget may also cut a shared match's "
              "generations (column 'generations/match'). What Dask adds is machines: on several, each worker's match "
              "keeps its own cores."]
    return "\n".join(lines) + "\n"


def run_args(args: argparse.Namespace) -> int:
    """`stito bench batch`: run and print the table."""
    if args.jobs is not None and args.jobs < 1:
        raise SystemExit(f"--jobs must be at least 1, got {args.jobs}")
    report = run(quick=args.quick, jobs=args.jobs, out_dir=args.out)
    print(Path(report["files"][0]).read_text())
    print(f"wrote {', '.join(report['files'])} in {report['wall_s']:.0f} s")
    return 0
