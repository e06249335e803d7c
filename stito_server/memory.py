"""Process-wide settings of stito's own processes (CLI, server, render and batch workers): the allocator, BLAS threads."""

from __future__ import annotations

import ctypes
import os
from typing import MutableMapping

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 4 << 20
FAST_MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's own ceiling for its moving threshold (64-bit)
FAST_TRIM_THRESHOLD_BYTES = 64 << 20  # twice that, as glibc moves it
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _mallopt(*settings: tuple[int, int]) -> bool:
    try:
        libc = ctypes.CDLL(None)  # the C library in use
        return all(bool(libc.mallopt(param, value)) for param, value in settings)
    except (OSError, AttributeError, TypeError):
        return False


def fast_allocator() -> bool:
    """Keep the blocks a match allocates and frees on every candidate (renders, spectrograms of a block of candidates,
    a few MiB to tens of MiB) in the process's heap instead of mapping and unmapping them each time.

    glibc's threshold moves up to these values by itself as large blocks are freed, but a fixed mapping threshold
    (``return_large_blocks``) or ``MALLOC_TRIM_THRESHOLD_`` in the environment (Dask's nanny sets 64 KiB) stops it at
    the bottom, and every large array is then faulted in page by page: measured on 8 s matches with pedalboard-strip,
    4.0 s a match here against 5.3 s with a 4 MiB threshold and 6.4 s with Dask's variable. Call it early in an entry
    point; ``return_large_blocks`` replaces it for long files. Elsewhere than glibc it does nothing.

    Returns:
        Whether the settings were applied.
    """
    return _mallopt((M_MMAP_THRESHOLD, FAST_MMAP_THRESHOLD_BYTES), (M_TRIM_THRESHOLD, FAST_TRIM_THRESHOLD_BYTES))


def return_large_blocks() -> bool:
    """Have glibc serve every allocation of ``MMAP_THRESHOLD_BYTES`` or more by its own mapping (for long files).

    glibc raises its mapping threshold as large blocks are freed (up to 32 MiB), after which blocks of a few
    MiB (blocks of a long render, windows being embedded, on several threads) come from heaps that are not
    given back: a 10-minute match held ~150 MB more at its peak than its arrays (measured with tracemalloc).
    It costs speed (the blocks of a block of candidates are mapped anew each time), so the entry points call it
    only for audio longer than ``effects.chain.STREAM_ABOVE`` samples, and ``fast_allocator`` otherwise. Elsewhere
    than glibc it does nothing.

    Returns:
        Whether the setting was applied.
    """
    return _mallopt((M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES), (M_TRIM_THRESHOLD, 128 << 10))


def allocator_for(samples: int) -> bool:
    """``return_large_blocks`` for audio longer than ``STREAM_ABOVE`` samples (per channel), else ``fast_allocator``: for
    a process that runs one match (the CLI, a batch job). A server that may run a long match beside others calls
    ``return_large_blocks`` when one comes, and never goes back."""
    from .effects.chain import STREAM_ABOVE

    return return_large_blocks() if samples > STREAM_ABOVE else fast_allocator()


def single_threaded_blas(environ: MutableMapping[str, str] = os.environ) -> None:
    """BLAS and OpenMP pools of one thread each, unless the user set their sizes: a match already renders and scores
    candidates on a thread per core, and BLAS threads on top of those oversubscribe the cores (OpenBLAS's threads
    spin while they wait). Measured on 8 s matches with pedalboard-strip: 4.1 s a match against 5.9 s. Takes effect
    only before numpy (and scipy, torch) are first imported; worker processes inherit it."""
    for name in BLAS_THREAD_VARIABLES:
        environ.setdefault(name, "1")
