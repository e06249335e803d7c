"""run_batch: a batch of matches on Dask distributed (a LocalCluster, or a user's scheduler), resumable and safe.

The client side: what runs, on which workers, and what became of it; ``worker.py`` is what each job does."""

from __future__ import annotations

import glob
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import StitoError
from .manifest import BatchJob
from .summary import JobResult, BatchSummary
from .worker import check_worker, outputs_of, run_job

SUMMARY_NAME = "batch-summary"  # <out-dir>/batch-summary.csv and .json
INSTALL_HINT = ("stito batch runs on Dask distributed, which is not installed: pip install 'stito[batch]' "
                "(in a checkout: pip install -e '.[batch]', which `make setup` does)")


def dask_modules():
    """``(dask, distributed)``, or a StitoError that says how to install them."""
    try:
        import dask
        import distributed
        import threadpoolctl  # noqa: F401  (each job's BLAS pools)
    except ImportError:
        raise StitoError(INSTALL_HINT) from None
    return dask, distributed


@dataclass(frozen=True)
class BatchSettings:
    """Where and how a batch runs.

    Attributes:
        scheduler: A Dask scheduler's address (``tcp://HOST:8786``) whose workers run the jobs; None: a
            ``LocalCluster`` on this machine.
        workers: Worker processes of the LocalCluster (one thread each); None: one per core.
        match_workers: Render workers of each match; None: the cores shared out between the LocalCluster's workers
            (``cores // workers``, at least 1); with ``scheduler``, each match takes one per core of its machine.
        allow_python: Chains may name Python effects (``stito match --allow-python-effects``).
        retries: Dask retries of a job whose match raised an error other than a user error (a crashed render
            worker, a lost worker), on whichever worker is free.
    """

    scheduler: str | None = None
    workers: int | None = None
    match_workers: int | None = None
    allow_python: bool = False
    retries: int = 1

    def __post_init__(self) -> None:
        for name in ("workers", "match_workers"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise StitoError(f"{name} must be a whole number at least 1, got {value!r}")
        if self.scheduler is not None and not self.scheduler.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
            raise StitoError(f"scheduler {self.scheduler!r}: give a Dask scheduler address such as tcp://HOST:8786")


def plan(jobs: list[BatchJob], out_dir: Path) -> tuple[list[tuple[BatchJob, str]], list[JobResult]]:
    """Which jobs run and which are already settled, before any work.

    Returns:
        ``(to_run, settled)``: jobs to run with their fingerprints; results of jobs skipped (finished earlier with
        the same fingerprint) or failed before starting (their ``problem``).

    Raises:
        StitoError: an output would overwrite an input, or an output file exists that this batch did not write for
            that job with these settings (nothing is overwritten: the message names it).
    """
    from .. import __version__

    inputs = {Path(p).resolve(): job.id for job in jobs for p in (job.input, *job.references)}
    to_run, settled, stale = [], [], []
    hashes: dict[str, str] = {}
    for job in jobs:
        if job.id == SUMMARY_NAME:
            raise StitoError(f"{job.where}: id {SUMMARY_NAME!r} is the batch summary's name; give the job another id")
        out, report = outputs_of(job, out_dir)
        for path in (out, report):
            if path.resolve() in inputs:
                raise StitoError(f"{job.where}: output {path} is an input of job {inputs[path.resolve()]!r}; stito "
                                 "never overwrites its inputs: give another --out-dir")
        if job.problem:
            settled.append(JobResult.of(job, "failed", error=job.problem))
            continue
        fingerprint = job.fingerprint(hashes)
        made_by = _fingerprint_in(report)
        if made_by == fingerprint and out.is_file():
            settled.append(JobResult.finished(job, "skipped", _read_json(report), out, report))
        elif (made_by is not None and made_by != fingerprint) or (out.exists() and made_by is None):
            stale.append(out if made_by is None else report)
        else:
            to_run.append((job, fingerprint))
    if stale:
        old = (_read_json(stale[0]) or {}).get("batch", {}) if stale[0].suffix == ".json" else {}
        why = ("it was made by stito " + str(old.get("version")) + f", this is {__version__}"
               if isinstance(old, dict) and old.get("version") not in (None, __version__) else
               "it was made from another input or with other settings" if stale[0].suffix == ".json" else
               "it has no report: stito did not write it")
        raise StitoError(f"{stale[0]} exists and is not this batch's output for its job ({why})"
                         + (f"; and {len(stale) - 1} more" if len(stale) > 1 else "")
                         + "; stito does not overwrite: remove them or give another --out-dir")
    return to_run, settled


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _fingerprint_in(report: Path) -> str | None:
    data = _read_json(report) if report.exists() else None
    if data is None:
        return None if not report.exists() else ""  # a report that is not ours: stale
    batch = data.get("batch") if isinstance(data, dict) else None
    return batch.get("fingerprint", "") if isinstance(batch, dict) else ""


@contextmanager
def dask_client(settings: BatchSettings) -> Iterator[Any]:
    """A Dask client: of a LocalCluster on 127.0.0.1 (``settings.workers`` processes, one thread each, not daemonic
    so that a match may start its own worker processes; a job whose worker dies is retried once), or connected to
    ``settings.scheduler``."""
    import logging

    dask, distributed = dask_modules()
    # Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in its workers: glibc then gives memory back after nearly every
    # large free, and the renders' arrays are faulted in again on every candidate (measured: 6.4 s instead of 4.1 s a
    # job). It is left unset, and each job sets the allocator itself (memory.allocator_for), as stito match does.
    config = {"distributed.worker.daemon": False, "distributed.scheduler.allowed-failures": settings.retries,
              "distributed.worker.preload": ["stito_server.batch.worker_setup"],
              "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
    with dask.config.set(config):
        if settings.scheduler:
            try:
                client = distributed.Client(settings.scheduler, timeout="15s")
            except (OSError, TimeoutError) as exc:
                raise StitoError(f"--scheduler {settings.scheduler}: no Dask scheduler answers there ({exc})") from None
            try:
                yield client
            finally:
                client.close()
            return
        cluster = distributed.LocalCluster(n_workers=settings.workers or os.cpu_count() or 1, threads_per_worker=1,
                                           processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                           silence_logs=logging.ERROR)
        client = distributed.Client(cluster)
        try:
            yield client
        finally:
            client.close()
            cluster.close()


def run_batch(jobs: list[BatchJob], out_dir: str | Path, settings: BatchSettings | None = None,
              progress: Callable[[JobResult, int, int], None] | None = None,
              log: Callable[[str], None] | None = None) -> BatchSummary:
    """Run a batch's jobs on Dask and write each job's output and report, then the batch summary, under ``out_dir``.

    Jobs finished by an earlier run with the same fingerprint are skipped; a job that fails (a bad file, a chain
    whose plugins are missing, a match that fails after a retry) fails alone and the summary says why. Every file
    is written whole under a temporary name and renamed; a run stopped with Ctrl-C keeps the jobs finished, writes
    the summary, and leaves no partial file (run it again to resume).

    Args:
        jobs: From ``load_manifest`` or ``folder_jobs``.
        out_dir: The output folder (made if missing).
        settings: Where and how the jobs run (default: a LocalCluster with one worker per core).
        progress: Called with each settled job and the counts ``(settled, total)``.
        log: Called with lines worth showing (workers that cannot load a chain).

    Raises:
        StitoError: an output would overwrite an input or a file this batch did not write; Dask is not installed;
            the scheduler does not answer.
        KeyboardInterrupt: (and any other exception once jobs have started) after the summary of what finished is
            written, the unfinished jobs marked "interrupted".
    """
    settings = settings or BatchSettings()
    out = Path(out_dir).absolute()  # workers elsewhere write to the same path on shared storage
    if out.exists() and not out.is_dir():
        raise StitoError(f"--out-dir {out} is a file; give a folder")
    parent = next(p for p in (out, *out.parents) if p.exists())
    if not os.access(parent, os.W_OK):
        raise StitoError(f"--out-dir {out}: {parent} is not writable")
    to_run, settled = plan(jobs, out)
    dask_modules()
    summary = BatchSummary(jobs=list(settled), total=len(jobs))
    started = time.perf_counter()
    count = [0]

    def settle(result: JobResult) -> None:
        summary.add(result)
        count[0] += 1
        if progress:
            progress(result, count[0], len(jobs))

    for result in settled:
        count[0] += 1
        if progress:
            progress(result, count[0], len(jobs))
    running = not to_run  # whether the summary is written: no folder or summary for a cluster that never came up
    try:
        if to_run:
            with dask_client(settings) as client:
                out.mkdir(parents=True, exist_ok=True)
                running = True
                summary.workers = _submit_and_collect(client, to_run, out, settings, settle, log)
    except BaseException:  # Ctrl-C, SIGTERM (the CLI raises it as an exception), a lost scheduler: keep what finished
        if running:
            summary.interrupted = True
            _settle_unfinished(summary, to_run, out)
        raise
    finally:
        summary.wall_s = time.perf_counter() - started
        if running:
            out.mkdir(parents=True, exist_ok=True)
            summary.write(out / f"{SUMMARY_NAME}.csv", out / f"{SUMMARY_NAME}.json")
    return summary


def _submit_and_collect(client: Any, to_run: list[tuple[BatchJob, str]], out: Path, settings: BatchSettings,
                        settle: Callable[[JobResult], None], log: Callable[[str], None] | None) -> dict[str, Any]:
    """Check every worker's plugins, then run the jobs (each preferring workers that load its chain), no more at a time
    than the workers have threads, settling each as it finishes; returns the workers' check results.

    Jobs are handed to Dask as threads free up, not all at once: a job assigned to a worker counts a failure when that
    worker dies, so only the jobs running there (one per thread) share the fate of a plugin that crashes it.
    """
    import uuid

    _, distributed = dask_modules()
    chains = sorted({job.chain for job, _ in to_run})
    answers = client.run(check_worker, chains, settings.allow_python, on_error="return")
    checks: dict[str, dict[str, str]] = {
        address: answer if isinstance(answer, dict) else {c: f"the check failed there: {answer!r}" for c in chains}
        for address, answer in answers.items()}
    for address, result in sorted(checks.items()):
        for chain, verdict in result.items():
            if verdict != "ok" and log:
                log(f"worker {address} cannot load chain {chain}: {verdict}; its jobs go to the other workers")
    match_workers = settings.match_workers
    if match_workers is None and settings.scheduler is None:
        match_workers = max(1, (os.cpu_count() or 1) // max(1, len(checks)))
    batch_key = uuid.uuid4().hex[:12]  # keys of this run only: another batch on the same scheduler never shares them
    waiting = []
    for job, fingerprint in to_run:
        able = [a for a, result in checks.items() if result.get(job.chain) == "ok"]
        if able:
            waiting.append((job, fingerprint, able))
            continue
        first = next(iter(sorted(checks.items())), ("(no worker)", {job.chain: "no worker is connected"}))
        settle(JobResult.of(job, "failed", error=f"no worker can load chain {job.chain} ({first[0]}: "
                                                 f"{first[1].get(job.chain)})"))
    slots = max(1, sum(client.nthreads().values()))
    futures: dict[Any, BatchJob] = {}
    running = distributed.as_completed()

    def submit_next() -> None:
        job, fingerprint, able = waiting.pop(0)
        future = client.submit(run_job, job, str(out), fingerprint, match_workers, settings.allow_python,
                               key=f"stito-{job.id}-{batch_key}", pure=False, retries=settings.retries,
                               **({"workers": able, "allow_other_workers": True} if len(able) < len(checks) else {}))
        futures[future] = job
        running.add(future)

    try:
        while waiting and len(futures) < slots:
            submit_next()
        for future in running:
            job = futures[future]
            result = _outcome(future, job, settings)
            if result is None:  # its result was lost with a worker: Dask computes it again
                running.add(future)
                continue
            del futures[future]
            settle(result)
            if waiting:
                submit_next()
    except BaseException:
        client.cancel(list(futures), force=True)
        raise
    return checks


def _outcome(future: Any, job: BatchJob, settings: BatchSettings) -> JobResult | None:
    """A finished future's job result; None when it is no longer finished (a result lost with its worker)."""
    status = future.status
    if status == "finished":
        try:
            return JobResult(**future.result(timeout=60))
        except Exception:  # lost before it could be read
            return None
    if status == "cancelled":
        return JobResult.of(job, "failed", error="Dask cancelled the job (the scheduler lost it or was restarted)")
    if status != "error":
        return None
    exc = future.exception()
    name = type(exc).__name__
    why = ("the workers running it died" + (f" (Dask allows {settings.retries} retr"
                                            f"{'y' if settings.retries == 1 else 'ies'} of that here)"
                                            if settings.scheduler is None else
                                            " (as often as the scheduler's allowed-failures permits)")
           if name == "KilledWorker" else
           f"after {settings.retries} retr{'y' if settings.retries == 1 else 'ies'}")
    return JobResult.of(job, "failed", error=f"{name}: {' '.join(str(exc).split())} ({why})")


def _settle_unfinished(summary: BatchSummary, to_run: list[tuple[BatchJob, str]], out: Path) -> None:
    """After a stop: temporaries removed; each job not settled is "done" if its files were completed as the batch
    stopped, else "interrupted"."""
    _remove_partials(out, [job for job, _ in to_run])
    finished = {r.id for r in summary.jobs}
    for job, fingerprint in to_run:
        if job.id in finished:
            continue
        output, report = outputs_of(job, out)
        if _fingerprint_in(report) == fingerprint and output.is_file():
            summary.add(JobResult.finished(job, "done", _read_json(report), output, report))
        else:
            summary.add(JobResult.of(job, "interrupted", error="the batch was stopped before this job finished"))


def _remove_partials(out: Path, jobs: list[BatchJob]) -> None:
    """Temporary files of unfinished writes (``save_atomically``'s ``.<name>.<pid>.<hex><suffix>``) of these jobs."""
    for job in jobs:
        for name in (f"{job.id}.wav", f"{job.id}.json"):
            for tmp in out.glob(f".{glob.escape(name)}.*"):
                tmp.unlink(missing_ok=True)
