"""Renderers: candidate vectors rendered through per-worker chain copies, in parallel threads or worker processes."""

from __future__ import annotations

import os
import queue
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..audio import peak_dbfs
from ..effects.chain import STREAM_ABOVE, Chain
from ..errors import CancelledError, RenderError, WorkerCrashed
from ..memory import fast_allocator, return_large_blocks

SILENT_DBFS = -90.0


@dataclass(frozen=True)
class Clip:
    """An excerpt to render: audio with a pre-roll that warms effect state and is then dropped.

    Attributes:
        audio: ``(channels, preroll + n)`` float32.
        preroll: Leading samples to drop after rendering.
        start: Where the scored part (after the pre-roll) begins in the whole input, in samples.
    """

    audio: np.ndarray
    preroll: int
    start: int = 0


def render_candidate(chain: Chain, x: np.ndarray, clips: list[tuple[np.ndarray, int]], sample_rate: int,
                     out: np.ndarray, on_effect: Callable[[int], None] | None = None) -> str | None:
    """Render one search vector on every clip into ``out``.

    Args:
        chain: The chain to set and render (its settings change).
        x: Search vector ``(dims,)``.
        clips: (audio ``(channels, preroll + n)``, preroll) pairs.
        sample_rate: In Hz.
        out: ``(len(clips), channels, n)`` destination.
        on_effect: Passed to ``Chain.process`` (crash watchdog).

    Returns:
        None, or why the render failed (non-finite, runaway or silent output, naming the effect).
    """
    try:
        chain.set_vector(x)
        for c, (audio, pre) in enumerate(clips):
            if pre:
                out[c] = chain.process(audio, sample_rate, on_effect)[:, pre:]
            else:  # e.g. the whole input: rendered straight into its place
                chain.process(audio, sample_rate, on_effect, out=out[c])
            if peak_dbfs(out[c]) < SILENT_DBFS:
                raise RenderError(f"chain {chain.name!r} silenced the audio")
    except RenderError as exc:
        return str(exc)
    return None


HANDOVER_BYTES = 64 << 20  # renders this large leave the workers' shared memory without a copy (``_hand_over``)
MAX_BLOCK_ROWS = 64  # candidates per block at most: what is done per block (embedding) stays short, so a cancel
# waits for one small block, not for a big population's half (popsize 1200 on one worker: 23 s before)


def _blocks(n: int, workers: int, per_worker: int) -> list[np.ndarray]:
    """Consecutive row blocks of a population of ``n``: ``per_worker`` per worker (more when a block would hold
    over ``MAX_BLOCK_ROWS`` candidates), none empty."""
    count = max(1, workers * per_worker, -(-n // MAX_BLOCK_ROWS))
    return [b for b in np.array_split(np.arange(n), count) if len(b)]


class Renderer:
    """Renders populations of search vectors on clips, with one independent chain copy per worker.

    pedalboard releases the GIL while processing, so threads render in parallel. Each worker keeps its
    chain copy for the renderer's life (plugins are reset between renders, not re-created, unless
    ``recreate``). The caller's chain is never touched. Use as a context manager (or call ``close``).
    """

    def __init__(self, chain: Chain, workers: int | None = None, recreate: bool = False) -> None:
        """Make ``workers`` copies of ``chain`` (default: one per CPU core).

        A chain holding a plugin that may only be reset on the main thread (``Chain.thread_safe`` is
        False) gets one copy, rendered on the calling thread.

        Args:
            chain: The chain to copy.
            workers: Rendering threads.
            recreate: Render every candidate on a fresh copy of the chain (new plugin instances), as a
                naive host would; only for measuring what keeping the copies saves.
        """
        self.workers = max(1, workers or os.cpu_count() or 1) if chain.thread_safe else 1
        self.recreate = recreate
        # polled before every candidate: True stops a population mid-way with CancelledError (set by match())
        self.cancelled: Callable[[], bool] | None = None
        self.chains = [chain.clone() for _ in range(self.workers)]
        self._free: queue.SimpleQueue[Chain] = queue.SimpleQueue()
        for c in self.chains:
            self._free.put(c)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="stito-render") if self.workers > 1 else None

    def __enter__(self) -> "Renderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def render(self, xs: np.ndarray, clips: list[Clip], sample_rate: int) -> tuple[np.ndarray, list[str | None]]:
        """Render every candidate on every clip.

        Args:
            xs: ``(pop, dims)`` search vectors.
            clips: Clips of equal length after the pre-roll.
            sample_rate: In Hz.

        Returns:
            ``(pop, len(clips), channels, n)`` float32 renders (zeros where failed) and, per candidate,
            None or the reason it failed (non-finite, runaway or silent output, naming the effect).
        """
        out, errors, _ = self._run(xs, clips, sample_rate, None, 1)
        return out, errors

    def render_map(self, xs: np.ndarray, clips: list[Clip], sample_rate: int,
                   fn: Callable[[np.ndarray], Any], per_worker: int = 2) -> tuple[list[Any], list[str | None]]:
        """Render every candidate on every clip and apply ``fn`` to each block of renders as it completes.

        Blocks are consecutive candidates; ``fn`` runs in the worker thread that rendered the block, so
        it overlaps with the other workers' rendering (e.g. embedding: the whole population is never
        waited for, and a single-threaded step does not leave a core idle).

        Args:
            xs: ``(pop, dims)`` search vectors.
            clips: Clips of equal length after the pre-roll.
            sample_rate: In Hz.
            fn: Called with a block's ``(rows, len(clips), channels, n)`` float32 renders (zeros where failed).
            per_worker: Blocks per worker.

        Returns:
            ``fn``'s results in candidate order (one per block) and, per candidate, None or why it failed.
        """
        _, errors, results = self._run(xs, clips, sample_rate, fn, per_worker)
        return results, errors

    def _run(self, xs, clips, sample_rate, fn, per_worker):
        xs = np.atleast_2d(xs)
        n = clips[0].audio.shape[1] - clips[0].preroll
        out = np.zeros((len(xs), len(clips), clips[0].audio.shape[0], n), np.float32)
        errors: list[str | None] = [None] * len(xs)
        pairs = [(c.audio, c.preroll) for c in clips]

        def work(rows: np.ndarray) -> Any:
            chain = self._free.get()
            try:
                for r in rows:
                    if self.cancelled is not None and self.cancelled():
                        raise CancelledError("cancelled while rendering candidates")
                    target = chain.clone() if self.recreate else chain
                    errors[r] = render_candidate(target, xs[r], pairs, sample_rate, out[r])
            finally:
                self._free.put(chain)
            return fn(out[rows[0]:rows[-1] + 1]) if fn is not None else None

        blocks = _blocks(len(xs), self.workers, per_worker)
        if self._pool is None:
            results = [work(rows) for rows in blocks]
        else:
            futures = [self._pool.submit(work, rows) for rows in blocks]
            results = [f.result() for f in futures]
        return out, errors, results


class ProcessRenderer:
    """Renders like ``Renderer`` but in worker processes, each with its own copy of the chain.

    A plugin that crashes or hangs takes down only its worker: ``render`` raises ``WorkerCrashed``
    naming the effect that was rendering, and the renderer is unusable afterwards (make a new one;
    the server does so per job). Each worker renders on its own main thread, so plugins that must be
    reset there (Dragonfly) still render in parallel. Renders come back through shared memory. The
    workers load the chain while the caller goes on (their readiness is awaited by the first render).
    """

    def __init__(self, chain: Chain, workers: int | None = None, render_timeout_s: float = 300.0,
                 recreate: bool = False) -> None:
        """Start ``workers`` processes (default one per core) rebuilding ``chain`` from its spec.

        Args:
            chain: The chain to rebuild (its spec and current state).
            workers: Worker processes.
            render_timeout_s: A worker silent for this long is killed and reported as hung.
            recreate: Render every candidate on a fresh copy of the chain (see ``Renderer``).

        Raises:
            ValueError: the chain has no spec to rebuild it from.
        """
        import multiprocessing as mp

        if chain.spec is None:
            raise ValueError(f"chain {chain.name!r} was not built from a spec; worker processes cannot rebuild it")
        self.chain_name = chain.name
        self.effect_names = [fx.name for fx in chain.effects]
        self.render_timeout_s = render_timeout_s
        ctx = mp.get_context("spawn")
        n = max(1, workers or os.cpu_count() or 1)
        recipe = (chain.spec, [x.tolist() for x in chain.get_state()], recreate)
        self._workers = []
        for i in range(n):
            parent, child = ctx.Pipe()
            current = ctx.Value("i", -1, lock=False)
            proc = ctx.Process(target=_worker_main, args=(child, recipe, current), daemon=True,
                               name=f"stito-render-{i}")
            proc.start()
            child.close()
            self._workers.append((proc, parent, current))
        self._loading = True
        # polled while workers render (every 50 ms): True kills them and raises CancelledError (set by match());
        # the renderer cannot render again afterwards
        self.cancelled: Callable[[], bool] | None = None
        self._clip_sets: dict[int, int] = {}
        self._clip_refs: list[list[Clip]] = []
        self._shm = None
        self._shape: tuple[int, ...] = ()

    def __enter__(self) -> "ProcessRenderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p, _, _ in self._workers]

    def wait_ready(self) -> None:
        """Wait until every worker has loaded the chain.

        Raises:
            WorkerCrashed: a worker died or hung while loading the chain.
            RenderError: a worker could not build the chain.
        """
        if self._loading:
            for w in self._workers:
                self._receive(w, "loading the chain")
            self._loading = False

    def close(self) -> None:
        """Stop the workers (killing any that do not stop within 5 s) and free shared memory."""
        for proc, conn, _ in self._workers:
            try:
                conn.send(("stop",))
            except (OSError, EOFError):
                pass
        for proc, conn, _ in self._workers:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
            conn.close()
        self._workers = []
        if self._shm is not None:
            self._shm.close()
            self._shm.unlink()
            self._shm = None

    def _receive(self, worker, doing: str):
        proc, conn, current = worker
        deadline = time.monotonic() + self.render_timeout_s
        while True:
            if conn.poll(0.05):
                try:
                    reply = conn.recv()
                except (EOFError, OSError):
                    reply = None
                if reply is not None:
                    if reply[0] == "error":
                        raise RenderError(reply[1])
                    return reply
            if not proc.is_alive() or (conn.closed if hasattr(conn, "closed") else False):
                proc.join(timeout=1)
                raise WorkerCrashed(self._blame(current.value, f"crashed (exit code {proc.exitcode})", doing))
            if time.monotonic() > deadline:
                proc.kill()
                raise WorkerCrashed(self._blame(current.value, f"hung for {self.render_timeout_s:g} s", doing))

    def _send(self, worker, message: tuple | np.ndarray, raw: bool = False) -> None:
        """Send a request to a worker (``raw``: an array's bytes, as they are); a worker that has died is a
        WorkerCrashed naming what it was doing."""
        proc, conn, current = worker
        try:
            if raw:
                conn.send_bytes(memoryview(message).cast("B"))
            else:
                conn.send(message)
        except (BrokenPipeError, EOFError, OSError):
            proc.join(timeout=1)
            raise WorkerCrashed(self._blame(current.value, f"died (exit code {proc.exitcode})",
                                            "being sent " + ("audio" if raw else repr(message[0])))) from None

    def _blame(self, index: int, what: str, doing: str) -> str:
        fx = f"effect {self.effect_names[index]!r}" if 0 <= index < len(self.effect_names) else "the chain"
        return f"render worker {what} while {doing}, in {fx} of chain {self.chain_name!r}"

    def render(self, xs: np.ndarray, clips: list[Clip], sample_rate: int) -> tuple[np.ndarray, list[str | None]]:
        """Same contract as ``Renderer.render``."""
        out, errors, _ = self._run(xs, clips, sample_rate, None, 1)
        return out, errors

    def render_map(self, xs: np.ndarray, clips: list[Clip], sample_rate: int,
                   fn: Callable[[np.ndarray], Any], per_worker: int = 2) -> tuple[list[Any], list[str | None]]:
        """Same contract as ``Renderer.render_map``; ``fn`` runs in this process while the workers go on."""
        _, errors, results = self._run(xs, clips, sample_rate, fn, per_worker)
        return results, errors

    def _run(self, xs, clips, sample_rate, fn, per_worker):
        from multiprocessing import shared_memory

        self.wait_ready()
        xs = np.atleast_2d(xs)
        n = clips[0].audio.shape[1] - clips[0].preroll
        shape = (len(xs), len(clips), clips[0].audio.shape[0], n)
        key = id(clips)
        if key not in self._clip_sets:
            self._clip_sets[key] = len(self._clip_sets)
            self._clip_refs.append(clips)  # keeps the list alive, so its id is never reused for another
            for w in self._workers:  # the audio goes as raw bytes after the message: no pickled copy of a long file
                self._send(w, ("clips", self._clip_sets[key], [(c.audio.shape, c.preroll) for c in clips],
                               sample_rate))
                for c in clips:
                    self._send(w, np.ascontiguousarray(c.audio, np.float32), raw=True)
        if self._shm is None or np.prod(shape) > np.prod(self._shape):
            if self._shm is not None:
                self._shm.close()
                self._shm.unlink()
            self._shm = shared_memory.SharedMemory(create=True, size=int(np.prod(shape)) * 4)
            self._shape = shape
        for w in self._workers:
            self._send(w, ("shm", self._shm.name, shape))
        out = np.ndarray(shape, np.float32, buffer=self._shm.buf)
        # Worker k takes blocks k, k + workers, ...: each worker's first block is done early, so ``fn``
        # starts while the rest render.
        blocks = _blocks(len(xs), len(self._workers), per_worker)
        queues: list[list[int]] = [[] for _ in self._workers]
        for b, rows in enumerate(blocks):
            k = b % len(self._workers)
            self._send(self._workers[k], ("render", self._clip_sets[key], b, rows.tolist(), xs[rows]))
            queues[k].append(b)
        errors: list[str | None] = [None] * len(xs)
        results: list[Any] = [None] * len(blocks)
        try:
            for b, errs in self._replies(queues):
                for r, e in errs.items():
                    errors[r] = e
                if fn is not None:
                    rows = blocks[b]
                    results[b] = fn(out[rows[0]:rows[-1] + 1])
            big = out.nbytes >= HANDOVER_BYTES
            result = None if big else out.copy()
        finally:
            del out
        return self._hand_over(shape) if result is None else result, errors, results

    def _hand_over(self, shape: tuple[int, ...]) -> np.ndarray:
        """The renders in their shared pages as the caller's own array, not copied (a whole-file render): the
        segment is mapped once more, then unlinked and dropped here (the next render makes a new one); its pages
        go when the array and the workers' views do."""
        import mmap

        shm, self._shm, self._shape = self._shm, None, None
        fd = getattr(shm, "_fd", -1)  # POSIX shared memory; elsewhere, a copy
        if fd < 0:
            result = np.ndarray(shape, np.float32, buffer=shm.buf).copy()
        else:
            result = np.ndarray(shape, np.float32, buffer=mmap.mmap(fd, shm.size))
        shm.close()
        shm.unlink()
        return result

    def _replies(self, queues: list[list[int]]):
        """Yield (block, errors) as workers finish blocks, in whatever order they finish.

        Raises:
            WorkerCrashed: a worker died, or sent nothing for ``render_timeout_s``.
        """
        from multiprocessing.connection import wait

        doing = "rendering candidates"
        pending = {k: list(q) for k, q in enumerate(queues) if q}
        since = {k: time.monotonic() for k in pending}
        while pending:
            if self.cancelled is not None and self.cancelled():
                for proc, _, _ in self._workers:  # mid-block: a stop message would wait for the block's end
                    proc.kill()
                raise CancelledError("cancelled while rendering candidates")
            by_conn = {id(self._workers[k][1]): k for k in pending}
            ready = wait([self._workers[k][1] for k in pending], timeout=0.05)
            for conn in ready:
                k = by_conn[id(conn)]
                _, b, errs = self._receive(self._workers[k], doing)  # raises WorkerCrashed on EOF
                since[k] = time.monotonic()
                pending[k].remove(b)
                if not pending[k]:
                    del pending[k]
                yield b, errs
            for k in list(pending):
                proc, _, current = self._workers[k]
                if not proc.is_alive():
                    proc.join(timeout=1)
                    raise WorkerCrashed(self._blame(current.value, f"crashed (exit code {proc.exitcode})", doing))
                if time.monotonic() - since[k] > self.render_timeout_s:
                    proc.kill()
                    raise WorkerCrashed(self._blame(current.value, f"hung for {self.render_timeout_s:g} s", doing))


def silence_plugin_stderr() -> None:
    """In a worker process: point fd 2 at /dev/null unless ``STITO_PLUGIN_STDERR`` is set.

    Plugins write C-level chatter to fd 2 on every reset (DPF: "asked to delete component ...", "assertion
    failure: ! fIsActive"); a worker whose errors travel to its parent by other means can drop it.
    """
    if not os.environ.get("STITO_PLUGIN_STDERR"):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)


def _worker_main(conn, recipe, current) -> None:
    """Render worker: rebuild the chain, then serve clips/shm/render/stop requests until told to stop."""
    import signal
    from multiprocessing import shared_memory

    from ..effects.specs import chain_from_dict

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent decides
    fast_allocator()  # until it is handed a long file (below)
    silence_plugin_stderr()  # errors reach the parent through the pipe and crashes through the exit code
    spec, state, recreate = recipe
    try:
        chain = chain_from_dict(spec)
        chain.set_state([np.asarray(x) for x in state])
    except Exception as exc:  # reported to the parent as a one-line error
        conn.send(("error", f"render worker could not build chain: {exc}"))
        return
    conn.send(("ready",))
    clip_sets: dict[int, tuple[list[tuple[np.ndarray, int]], int]] = {}
    shm = None
    out = None

    def mark(i: int) -> None:
        current.value = i

    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            break
        kind = msg[0]
        if kind == "stop":
            break
        if kind == "clips":  # each clip's audio follows as raw bytes
            if any(shape[-1] > STREAM_ABOVE for shape, _ in msg[2]):
                return_large_blocks()  # a long file's peak memory is its arrays', not the allocator's leftovers
            clips = []
            for shape, preroll in msg[2]:
                audio = np.empty(shape, np.float32)
                conn.recv_bytes_into(memoryview(audio).cast("B"))
                clips.append((audio, preroll))
            clip_sets[msg[1]] = (clips, msg[3])
        elif kind == "shm":
            if shm is None or shm.name != msg[1]:
                if shm is not None:
                    out = None
                    shm.close()
                shm = shared_memory.SharedMemory(name=msg[1])
            out = np.ndarray(msg[2], np.float32, buffer=shm.buf)
        elif kind == "render":
            clips, rate = clip_sets[msg[1]]
            errors: dict[int, str] = {}
            for r, x in zip(msg[3], msg[4]):
                target = chain.clone() if recreate else chain
                error = render_candidate(target, x, clips, rate, out[r], on_effect=mark)
                if error is not None:
                    errors[r] = error
            current.value = -1
            conn.send(("done", msg[2], errors))
    out = None
    if shm is not None:
        shm.close()
