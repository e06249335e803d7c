"""run_job: one batch job as a Dask worker runs it (the match or the saved match, its files written atomically), and
the check of a worker's plugins before a batch starts."""

from __future__ import annotations

import gc
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..errors import RenderError, StitoError
from .manifest import BatchJob
from .summary import JobResult


def outputs_of(job: BatchJob, out_dir: Path) -> tuple[Path, Path]:
    """``(<out-dir>/<id>.wav, <out-dir>/<id>.json)``: a job's output audio and report."""
    return out_dir / f"{job.id}.wav", out_dir / f"{job.id}.json"


def run_job(job: BatchJob, out_dir: str, fingerprint: str, match_workers: int | None,
            allow_python: bool) -> dict[str, Any]:
    """Run one job on a Dask worker (or anywhere): the match, then its report and output written atomically.

    The report is written first and the output after it, so an output file always has its report (a job stopped
    between the two leaves a report without output, which the next run re-does).

    Returns:
        ``JobResult`` fields as a dict: "done", or "failed" with the error for a user error (a bad file, a chain that
        does not load here: retrying cannot help).

    Raises:
        Exception: anything else (a crashed render worker): Dask retries the job.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # BLAS pools of one thread, as in stito match (memory.single_threaded_blas)
        return _run_job(job, out_dir, fingerprint, match_workers, allow_python)


def _run_job(job: BatchJob, out_dir: str, fingerprint: str, match_workers: int | None,
             allow_python: bool) -> dict[str, Any]:
    from .. import __version__
    from ..audio import load_audio
    from ..effects.specs import load_chain
    from ..engine.match import effect_amounts, match
    from ..engine.options import MatchOptions, option_values
    from ..memory import allocator_for
    from ..metrics import get_metric

    worker = _worker_address()
    out, report_path = outputs_of(job, Path(out_dir))
    started = time.perf_counter()
    chain = None
    try:
        if job.apply:
            data, output, rate = _apply(job)
            data["batch"] = {"id": job.id, "fingerprint": fingerprint, "worker": worker, "version": __version__}
            _write(data, output, rate, out, report_path)
            return asdict(JobResult.finished(job, "done", None, out, report_path, worker=worker,
                                             wall_s=time.perf_counter() - started))
        opts = MatchOptions.preset(job.preset, **job.options, workers=match_workers)
        audio = load_audio(job.input, role="input")
        refs = [load_audio(r, role="reference" if len(job.references) == 1 else f"reference {i + 1}")
                for i, r in enumerate(job.references)]
        allocator_for(max(a.samples.shape[-1] for a in (audio, *refs)))  # as stito match (memory.py)
        metric = get_metric(job.metric)
        if "torch" in sys.modules:  # as stito match: torch's own threads would oversubscribe the render workers
            import torch

            torch.set_num_threads(1)
        chain = load_chain(job.chain, allow_python=allow_python)
        effect_amounts(chain, opts.amount)
        result = match(audio, refs[0] if len(refs) == 1 else refs, chain, metric, opts)
        data = result.report(input=job.input, reference=job.references[0] if len(refs) == 1 else list(job.references),
                             chain=job.chain, preset=job.preset, chain_name=chain.name, metric=metric.name,
                             sample_rate=result.sample_rate, options=option_values(opts, wire_only=True),
                             batch={"id": job.id, "fingerprint": fingerprint, "worker": worker, "version": __version__})
        _write(data, result.output, result.sample_rate, out, report_path)
    except RenderError:
        raise  # a crashed or failing render: Dask retries the job
    except StitoError as exc:
        return asdict(JobResult.of(job, "failed", error=" ".join(str(exc).split()), worker=worker,
                                   wall_s=time.perf_counter() - started))
    finally:
        del chain
        gc.collect()  # the plugins of this job released before the next job loads its own
    return asdict(JobResult.finished(job, "done", data, out, report_path, worker=worker,
                                     wall_s=time.perf_counter() - started))


def _apply(job: BatchJob) -> tuple[dict[str, Any], Any, int]:
    """An ``apply`` job's report, output and rate: the saved match rendered onto the input, as ``stito apply``."""
    from ..audio import load_audio
    from ..effects.saved import load_saved

    from ..memory import allocator_for

    saved = load_saved(job.chain)
    audio = load_audio(job.input, role="input")
    allocator_for(audio.samples.shape[-1])
    try:
        output = saved.render(audio.samples, audio.sample_rate)
    finally:
        del saved
    return {"input": job.input, "applied": job.chain, "sample_rate": audio.sample_rate}, output, audio.sample_rate


def _write(data: dict[str, Any], output: Any, rate: int, out: Path, report_path: Path) -> None:
    """The report, then the output audio, each atomically; the report is removed again if the audio fails."""
    from ..audio import save_atomically, save_audio

    text = json.dumps(data, indent=2, allow_nan=False, default=_json_default)
    save_atomically(report_path, lambda tmp: Path(tmp).write_text(text))
    try:
        save_audio(out, output, rate)
    except BaseException:
        report_path.unlink(missing_ok=True)
        raise


def _json_default(x: Any) -> Any:
    import numpy as np

    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"cannot serialise {type(x).__name__}")


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return "local"


def check_worker(chains: list[str], allow_python: bool) -> dict[str, str]:
    """On a worker: each chain loaded (its plugins found and instantiated), "ok" or the error naming what is
    missing."""
    from ..effects.specs import load_chain

    import multiprocessing

    out = {}
    for spec in chains:
        try:
            chain = load_chain(spec, allow_python=allow_python)
            needs_processes = not chain.thread_safe and chain.spec is not None  # as make_renderer's "auto" decides
            del chain
            out[spec] = "ok"
            if needs_processes and multiprocessing.current_process().daemon:
                out[spec] = ("this worker is a daemonic process, which cannot start the render processes the chain "
                             "needs (a plugin that renders only on a main thread): start `dask worker` with "
                             "DASK_DISTRIBUTED__WORKER__DAEMON=False, or with --no-nanny")
        except Exception as exc:  # a plugin that fails to load in another way is reported the same, not raised
            out[spec] = " ".join(str(exc).split()) if isinstance(exc, StitoError) else f"{type(exc).__name__}: {exc}"
    gc.collect()
    return out
