"""Process-wide allocator setting for long files: large arrays go back to the system when they are freed."""

from __future__ import annotations

import ctypes

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
MMAP_THRESHOLD_BYTES = 4 << 20


def return_large_blocks() -> bool:
    """Have glibc serve every allocation of ``MMAP_THRESHOLD_BYTES`` or more by its own mapping.

    glibc raises its mapping threshold as large blocks are freed (up to 32 MiB), after which blocks of a few
    MiB (blocks of a long render, windows being embedded, on several threads) come from heaps that are not
    given back: a 10-minute match held ~150 MB more at its peak than its arrays (measured with tracemalloc).
    A fixed threshold keeps the excerpts' renders (about 1-2 MiB) on the heap, so the search runs as fast.
    Call once, early, in a process's entry point; elsewhere than glibc it does nothing.

    Returns:
        Whether the setting was applied.
    """
    try:
        return bool(ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))  # the C library in use
    except (OSError, AttributeError, TypeError):
        return False
