"""Renderer: candidate vectors rendered through per-worker chain copies, in parallel threads."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .audio import peak_dbfs
from .effects.chain import Chain
from .errors import RenderError

SILENT_DBFS = -90.0


@dataclass(frozen=True)
class Clip:
    """An excerpt to render: audio with a pre-roll that warms effect state and is then dropped.

    Attributes:
        audio: ``(channels, preroll + n)`` float32.
        preroll: Leading samples to drop after rendering.
    """

    audio: np.ndarray
    preroll: int


class Renderer:
    """Renders populations of search vectors on clips, with one independent chain copy per worker.

    pedalboard releases the GIL while processing, so threads render in parallel. The caller's chain is
    never touched. Use as a context manager (or call ``close``).
    """

    def __init__(self, chain: Chain, workers: int | None = None) -> None:
        """Make ``workers`` copies of ``chain`` (default: one per CPU core).

        A chain holding a plugin that may only be reset on the main thread (``Chain.thread_safe`` is
        False) gets one copy, rendered on the calling thread.
        """
        self.workers = max(1, workers or os.cpu_count() or 1) if chain.thread_safe else 1
        self.chains = [chain.clone() for _ in range(self.workers)]
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
        xs = np.atleast_2d(xs)
        n = clips[0].audio.shape[1] - clips[0].preroll
        out = np.zeros((len(xs), len(clips), clips[0].audio.shape[0], n), np.float32)
        errors: list[str | None] = [None] * len(xs)
        chunks = np.array_split(np.arange(len(xs)), self.workers)

        def work(chain: Chain, rows: np.ndarray) -> None:
            for r in rows:
                try:
                    chain.set_vector(xs[r])
                    for c, clip in enumerate(clips):
                        y = chain.process(clip.audio, sample_rate)[:, clip.preroll:]
                        if peak_dbfs(y) < SILENT_DBFS:
                            raise RenderError(f"chain {chain.name!r} silenced the audio")
                        out[r, c] = y
                except RenderError as exc:
                    errors[r] = str(exc)

        if self._pool is None:
            work(self.chains[0], np.arange(len(xs)))
        else:
            futures = [self._pool.submit(work, ch, rows) for ch, rows in zip(self.chains, chunks) if len(rows)]
            for f in futures:
                f.result()
        return out, errors
